/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Path resolution without bpf_d_path (which only fentry/LSM programs may call, and those are
 * refused on locked-down kernels): walk dentry->d_parent up to the task's root, crossing mount
 * points, writing names backwards into a per-CPU buffer.
 */
#ifndef NJ_PATH_BPF_H
#define NJ_PATH_BPF_H

#include "nj.bpf.h"
#include "kread.bpf.h"

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
#if NJ_KCAST
	link->parent = dentry->d_parent;
	link->name = dentry->d_name;
	return 0;
#else
	if (bpf_core_field_offset(struct dentry, d_name) ==
	    bpf_core_field_offset(struct dentry, d_parent) + sizeof(struct dentry *))
		return bpf_core_read(link, sizeof(*link), &dentry->d_parent);
	if (bpf_core_read(&link->parent, sizeof(link->parent), &dentry->d_parent) != 0)
		return -1;
	return bpf_core_read(&link->name, sizeof(link->name), &dentry->d_name);
#endif
}

/* Where a walk up the dentry tree stands: the dentry and the mount it is seen through. */
struct nj_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	/* Root dentry of the current mount, read once per mount, not per component. */
	struct dentry *mnt_root;
};

static __always_inline void nj_walk_start(struct nj_walk *w, struct dentry *dentry,
					  struct vfsmount *vfsmnt)
{
	w->dentry = dentry;
	w->vfsmnt = vfsmnt;
	/* container_of leaves the verifier's view of vfsmnt's type: cast the result afresh. */
	w->mnt = nj_kcast(container_of(vfsmnt, struct mount, mnt), struct mount);
	w->mnt_root = NJ_KREAD(vfsmnt, mnt_root);
}

/*
 * At the root of a mount, moves to the dentry it is mounted on in the parent mount and
 * returns 1; returns 0 when not at a mount root, -1 at the top of the mount tree.
 */
static __always_inline int nj_walk_cross_mount(struct nj_walk *w)
{
	/* Locals, not w->...: BPF_CORE_READ would record relocations against struct nj_walk. */
	struct mount *mnt = w->mnt;
	if (w->dentry != w->mnt_root)
		return 0;
	struct mount *parent = NJ_KREAD(mnt, mnt_parent);
	if (parent == mnt)
		return -1;
	struct vfsmount *vfsmnt = (struct vfsmount *)__builtin_preserve_access_index(&parent->mnt);
	w->dentry = NJ_KREAD(mnt, mnt_mountpoint);
	w->mnt = parent;
	w->vfsmnt = vfsmnt;
	w->mnt_root = NJ_KREAD(vfsmnt, mnt_root);
	return 1;
}

/*
 * Finds the top-level directory of @path as seen from @task's root (the current task's): the
 * dentry of "etc" for /etc/passwd, without building the path, one read per level and no name
 * copies. Returns NULL when the path is the root itself, cannot be walked or is deeper than
 * NJ_PATH_DEPTH.
 */
static __always_inline struct dentry *nj_top_dentry(struct task_struct *task,
						    const struct path *path)
{
	struct dentry *root_dentry = task->fs->root.dentry;
	struct vfsmount *root_mnt = task->fs->root.mnt;
	struct dentry *top = NULL;
	struct path p;

	if (nj_kcopy(&p, sizeof(p), path) != 0 || !p.dentry)
		return NULL;
	/*
	 * The common case: the file is on the mount of the task's root, and that root is the
	 * mount's own root (no chroot into a subdirectory of it). Then no mount is crossed and
	 * the top directory is the last dentry below the root: d_parent loads and nothing else.
	 */
	if (p.mnt == root_mnt && NJ_KREAD(root_mnt, mnt_root) == root_dentry) {
		struct dentry *dentry = p.dentry;
		for (int i = 0; i < NJ_PATH_DEPTH; i++) {
			if (dentry == root_dentry)
				return top;
			struct dentry *parent = NJ_KREAD(dentry, d_parent);
			if (!parent || parent == dentry)
				return NULL;
			top = dentry;
			dentry = parent;
		}
		return dentry == root_dentry ? top : NULL;
	}
	struct nj_walk w;

	nj_walk_start(&w, p.dentry, p.mnt);
	for (int i = 0; i < NJ_PATH_DEPTH; i++) {
		if (w.dentry == root_dentry && w.vfsmnt == root_mnt)
			return top;
		int crossed = nj_walk_cross_mount(&w);
		if (crossed < 0)
			return top;
		if (crossed > 0)
			continue;
		struct dentry *dentry = w.dentry;
		struct dentry *parent = NJ_KREAD(dentry, d_parent);
		if (!parent || parent == dentry)
			return top;
		top = dentry;
		w.dentry = parent;
	}
	if (w.dentry == root_dentry && w.vfsmnt == root_mnt)
		return top;
	/* Deeper than the walk goes: no top directory to judge by. */
	return NULL;
}

/* Mask of the low @n bytes of a little-endian word (n < 8). */
#define NJ_LOW_BYTES(n) ((1ULL << ((n) * 8)) - 1)

/*
 * The first 15 bytes of @dentry's name, NUL-padded, as two little-endian words: the form of
 * nj_topdir keys. Names shorter than the kernel's inline buffer (all but the longest) live in
 * the dentry itself and are two loads; the bytes past a name's end there may be left over
 * from a longer earlier name, hence the masks. Returns false when the name cannot be read.
 */
static __always_inline bool nj_dentry_name_words(struct dentry *dentry, __u64 *words)
{
	struct qstr name;

	if (nj_kcopy(&name, sizeof(name), &dentry->d_name) != 0)
		return false;
#if NJ_KCAST
	if (bpf_core_field_exists(dentry->d_shortname) &&
	    (__u64)name.name == (__u64)&dentry->d_shortname) {
		words[0] = dentry->d_shortname.words[0];
		words[1] = dentry->d_shortname.words[1];
	} else
#endif
	if (bpf_probe_read_kernel(words, 2 * sizeof(__u64), name.name) != 0)
		return false;

	__u32 len = name.len < NJ_TOPDIR_MAX - 1 ? name.len : NJ_TOPDIR_MAX - 1;
	if (len < 8) {
		words[0] &= NJ_LOW_BYTES(len);
		words[1] = 0;
	} else {
		words[1] &= NJ_LOW_BYTES(len - 8);
	}
	return true;
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

	if (nj_kcopy(&p, sizeof(p), path) != 0)
		return NJ_FLAG_READ_FAILED;
	__u32 pos = NJ_PATH_MAX - 1;
	__u32 flags = 0;
	struct nj_walk w;

	if (!p.dentry)
		return NJ_FLAG_READ_FAILED;
	nj_walk_start(&w, p.dentry, p.mnt);
	scratch->buf[pos] = 0;
	/* Set once the walk reaches the root; a walk that runs out of steps cut the path. */
	bool complete = false;

	for (int i = 0; i < NJ_PATH_DEPTH; i++) {
		if (w.dentry == root_dentry && w.vfsmnt == root_mnt) {
			complete = true;
			break;
		}
		/* At the root of a mount: continue from where it is mounted. */
		int crossed = nj_walk_cross_mount(&w);
		if (crossed < 0) {
			complete = true;
			break;
		}
		if (crossed > 0)
			continue;

		struct nj_dentry_link link;
		if (nj_read_dentry_link(w.dentry, &link) != 0)
			return flags | NJ_FLAG_READ_FAILED;
		struct dentry *parent = link.parent;
		if (parent == w.dentry) {
			complete = true;
			break;
		}
		struct qstr name = link.name;
		__u32 len = name.len;
		if (len + 1 > pos)
			break;
		pos -= len;
		bpf_probe_read_kernel(&scratch->buf[pos & (NJ_PATH_MAX - 1)], len & (NJ_PATH_MAX - 1),
				      name.name);
		pos -= 1;
		scratch->buf[pos & (NJ_PATH_MAX - 1)] = '/';
		w.dentry = parent;
	}
	/* The last step may have landed on the root itself: then nothing was cut. */
	if (!complete && !(w.dentry == root_dentry && w.vfsmnt == root_mnt))
		flags |= NJ_FLAG_PATH_TRUNCATED;

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

/*
 * The struct file behind descriptor @fd of @task (the current task), or NULL. The fd table's
 * slots are an array indexed by a variable, which the verifier does not let a program load
 * through; with the cast kfunc the slot is cast to struct kiocb, whose first field is a
 * struct file * on every kernel, so the slot is one guarded load instead of a helper call.
 */
static __always_inline struct file *nj_task_file(struct task_struct *task, __s64 fd)
{
	struct fdtable *fdt = task->files->fdt;
	unsigned int max_fds = fdt->max_fds;
	struct file **fds = fdt->fd;

	if (fd < 0 || fd >= max_fds || !fds)
		return NULL;
#if NJ_KCAST
	return nj_kcast(&fds[fd], struct kiocb)->ki_filp;
#else
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
#endif
}

#endif
