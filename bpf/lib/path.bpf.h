/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Path resolution without bpf_d_path (which only fentry/LSM programs may call, and those are
 * refused on locked-down kernels): walk dentry->d_parent up to the task's root, crossing mount
 * points, writing names backwards into a per-CPU buffer.
 */
#ifndef NJ_PATH_BPF_H
#define NJ_PATH_BPF_H

#include "nj.bpf.h"

/* Deepest path we walk; deeper paths are cut at the top and flagged truncated. */
#define NJ_PATH_DEPTH 48

/* Twice NJ_PATH_MAX so that a masked offset plus a masked length always stays inside. */
struct nj_path_buf {
	char buf[NJ_PATH_MAX * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nj_path_buf);
} nj_path_scratch SEC(".maps") __weak;

/*
 * Writes the absolute path of @path (as seen from the current task's root) into @out, which
 * holds NJ_PATH_MAX bytes. Returns NJ_FLAG_PATH_TRUNCATED when the path was cut, 0 otherwise,
 * or NJ_FLAG_READ_FAILED when nothing could be resolved.
 */
static __always_inline __u32 nj_resolve_path(const struct path *path, char *out)
{
	__u32 zero = 0;
	struct nj_path_buf *scratch = bpf_map_lookup_elem(&nj_path_scratch, &zero);

	if (!scratch)
		return NJ_FLAG_READ_FAILED;

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);

	struct dentry *dentry = BPF_CORE_READ(path, dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	/* Read once per mount, not per component: each helper call costs on hot paths. */
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	__u32 pos = NJ_PATH_MAX - 1;
	__u32 flags = 0;

	if (!dentry)
		return NJ_FLAG_READ_FAILED;
	scratch->buf[pos] = 0;

	for (int i = 0; i < NJ_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt)
			break;

		if (dentry == mnt_root) {
			/* At the root of a mount: continue from where it is mounted. */
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt)
				break;
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = (struct vfsmount *)__builtin_preserve_access_index(&parent->mnt);
			mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
			continue;
		}

		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		if (parent == dentry)
			break;

		/* Length and name pointer in one read. */
		struct qstr name;
		if (bpf_core_read(&name, sizeof(name), &dentry->d_name) != 0)
			return flags | NJ_FLAG_READ_FAILED;
		__u32 len = name.len;
		if (len + 1 > pos) {
			flags |= NJ_FLAG_PATH_TRUNCATED;
			break;
		}
		pos -= len;
		bpf_probe_read_kernel(&scratch->buf[pos & (NJ_PATH_MAX - 1)], len & (NJ_PATH_MAX - 1),
				      name.name);
		pos -= 1;
		scratch->buf[pos & (NJ_PATH_MAX - 1)] = '/';
		dentry = parent;
		if (i == NJ_PATH_DEPTH - 1)
			flags |= NJ_FLAG_PATH_TRUNCATED;
	}

	if (pos == NJ_PATH_MAX - 1) {
		/* Nothing above the root: the path is "/". */
		pos -= 1;
		scratch->buf[pos & (NJ_PATH_MAX - 1)] = '/';
	}
	__u32 off = pos & (NJ_PATH_MAX - 1);
	__u32 size = NJ_PATH_MAX - off;
	if (size > NJ_PATH_MAX)
		size = NJ_PATH_MAX;
	bpf_probe_read_kernel(out, size, &scratch->buf[off]);
	return flags;
}

/* The struct file behind a descriptor of the current task, or NULL. */
static __always_inline struct file *nj_file_from_fd(__s64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd < 0 || fd >= max_fds || !fds)
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

#endif
