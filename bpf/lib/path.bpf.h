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

/* A dentry's parent and name, read in one call when the layout allows (it always has). */
struct nj_dentry_link {
	struct dentry *parent;
	struct qstr name;
};

static __always_inline int nj_read_dentry_link(struct dentry *dentry, struct nj_dentry_link *link)
{
	if (bpf_core_field_offset(struct dentry, d_name) ==
	    bpf_core_field_offset(struct dentry, d_parent) + sizeof(struct dentry *))
		return bpf_core_read(link, sizeof(*link), &dentry->d_parent);
	if (bpf_core_read(&link->parent, sizeof(link->parent), &dentry->d_parent) != 0)
		return -1;
	return bpf_core_read(&link->name, sizeof(link->name), &dentry->d_name);
}

/*
 * Finds the top-level component of @path as seen from the current task's root (the "etc"
 * of /etc/passwd), without building the path: one read per level and no name copies. Fills
 * @top and returns 0; returns -1 when the path is the root itself or cannot be walked.
 */
static __always_inline int nj_top_component(const struct path *path, struct qstr *top)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct dentry *root_dentry = task->fs->root.dentry;
	struct vfsmount *root_mnt = task->fs->root.mnt;
	struct path p;

	if (bpf_core_read(&p, sizeof(p), path) != 0 || !p.dentry)
		return -1;
	struct dentry *dentry = p.dentry;
	struct vfsmount *vfsmnt = p.mnt;
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	bool found = false;

	for (int i = 0; i < NJ_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt)
			break;
		if (dentry == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt)
				break;
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = (struct vfsmount *)__builtin_preserve_access_index(&parent->mnt);
			mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
			continue;
		}
		struct nj_dentry_link link;
		if (nj_read_dentry_link(dentry, &link) != 0 || link.parent == dentry)
			break;
		*top = link.name;
		found = true;
		dentry = link.parent;
	}
	return found ? 0 : -1;
}

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

	struct task_struct *task = bpf_get_current_task_btf();
	struct dentry *root_dentry = task->fs->root.dentry;
	struct vfsmount *root_mnt = task->fs->root.mnt;
	struct path p;

	if (bpf_core_read(&p, sizeof(p), path) != 0)
		return NJ_FLAG_READ_FAILED;
	struct dentry *dentry = p.dentry;
	struct vfsmount *vfsmnt = p.mnt;
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

		struct nj_dentry_link link;
		if (nj_read_dentry_link(dentry, &link) != 0)
			return flags | NJ_FLAG_READ_FAILED;
		struct dentry *parent = link.parent;
		if (parent == dentry)
			break;
		struct qstr name = link.name;
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
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	unsigned int max_fds = fdt->max_fds;
	struct file **fds = fdt->fd;
	struct file *file = NULL;

	if (fd < 0 || fd >= max_fds || !fds)
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

#endif
