// SPDX-License-Identifier: GPL-2.0-only
/*
 * File activity from syscall tracepoints: open (with an in-kernel path-prefix filter), unlink,
 * rename, chmod and chown. Successful opens report the path the kernel resolved (from the new
 * descriptor); everything else reports the path as the caller passed it, flagged as such.
 */
#include "nj.bpf.h"
#include "path.bpf.h"
#include "syscall.bpf.h"
#include "open_filter.bpf.h"

/* The prefixes (LPM keys, NJ_PREFIX_MAX bytes); filled by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nj_prefix_key);
	__type(value, __u8);
} nj_file_prefixes SEC(".maps") __weak;

static __always_inline bool nj_path_selected(const char *path, bool writes)
{
	if (!nj_file_filter_enabled)
		return true;

	struct nj_prefix_key key = { .prefixlen = NJ_PREFIX_MAX * 8 };
	/* The trie compares bits, so bytes past the NUL must not matter: copy the string only. */
	bpf_probe_read_kernel_str(key.path, sizeof(key.path), path);
	return nj_mode_allows(bpf_map_lookup_elem(&nj_file_prefixes, &key), writes);
}

/* openat(dfd, filename, flags, mode) and friends: the path argument index differs. */
static __always_inline int nj_open_exit(nj_sys_exit_ctx *ctx, __u32 syscall,
					int path_arg, int flags_arg)
{
	struct task_struct *task = nj_syscall_task(ctx);
	__u64 args[6];

	if (!nj_task_syscall_args(task, ctx, args))
		return 0;

	struct file *file = NJ_RET(ctx) >= 0 ? nj_task_file(task, NJ_RET(ctx)) : NULL;
	/* openat2 passes a struct open_how pointer: its flags and mode stand in for the args. */
	__u64 open_flags = args[flags_arg & 7];
	__u64 open_mode = args[(flags_arg + 1) & 7];
	if (syscall == NJ_SYS_OPENAT2) {
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)args[2]);
		open_flags = how.flags;
		open_mode = how.mode;
		/*
		 * how is the caller's memory, read after the kernel's copy: another thread may have
		 * rewritten it since (a write open passed off as a read, past a write-only prefix).
		 * The access mode the file was opened with is the kernel's to tell.
		 */
		if (file)
			open_flags = (open_flags & ~NJ_O_ACCMODE) |
				     (NJ_KREAD(file, f_flags) & NJ_O_ACCMODE);
	}
	bool writes = open_flags & NJ_O_WRITE_INTENT;

	/*
	 * The first look at the top directory: an x86-64 openat had it in the dispatcher already
	 * (nj_openat_outside_prefixes, same file, same flags) and only got here by passing it.
	 */
	bool looked = syscall == NJ_SYS_OPENAT && !nj_task_in_ia32_syscall(task);
	if (file && nj_file_filter_enabled && !looked && !nj_topdir_may_match(task, file, writes))
		return 0;

	struct nj_syscall_event *ev =
		nj_begin_syscall_event(ctx, NJ_KIND_FILE_OPEN, syscall, args, 1u << path_arg);
	if (!ev)
		return 0;
	ev->args[flags_arg & 7] = open_flags;
	ev->args[(flags_arg + 1) & 7] = open_mode;

	__u32 flags = 0;
	if (file) {
		flags = nj_resolve_path(__builtin_preserve_access_index(&file->f_path), ev->str0);
	} else {
		flags = NJ_FLAG_PATH_AS_PASSED |
			nj_read_user_str(ev->str0, args[path_arg & 7], NJ_FLAG_PATH_TRUNCATED);
	}
	/*
	 * A resolved path cut at the top (deeper than the walk goes) has lost the part the
	 * prefixes name: reported, flagged, rather than dropped, so depth cannot hide an open.
	 */
	bool top_cut = file && (flags & NJ_FLAG_PATH_TRUNCATED);
	if (!top_cut && !nj_path_selected(ev->str0, writes))
		return 0;
	ev->hdr.flags |= flags;
	nj_submit(ev, sizeof(*ev), NJ_KIND_FILE_OPEN);
	return 0;
}

/* The dirfd value that stands for the cwd (linux/fcntl.h). */
#define NJ_AT_FDCWD -100

/*
 * Writes into @out the directory a relative path argument was resolved against: the file of
 * the directory descriptor in argument @dfd_arg of an *at call, or the cwd (no such argument,
 * or AT_FDCWD). The kernel's own state at exit, not the caller's memory. Returns header
 * flags, with a cut path flagged @truncated_flag.
 */
static __always_inline __u32 nj_resolve_base(struct task_struct *task, int dfd_arg,
					     const __u64 *args, char *out, __u32 truncated_flag)
{
	__u32 flags;

	out[0] = 0;
	if (dfd_arg >= 0 && (__s32)args[dfd_arg & 7] != NJ_AT_FDCWD) {
		struct file *dir = nj_task_file(task, (__s32)args[dfd_arg & 7]);
		if (!dir)
			return NJ_FLAG_READ_FAILED;
		flags = nj_resolve_path(__builtin_preserve_access_index(&dir->f_path), out);
	} else {
		struct fs_struct *fs = task->fs;
		flags = nj_resolve_path(__builtin_preserve_access_index(&fs->pwd), out);
	}
	if (flags & NJ_FLAG_PATH_TRUNCATED)
		flags = (flags & ~NJ_FLAG_PATH_TRUNCATED) | truncated_flag;
	return flags;
}

/*
 * Reads path argument @path_arg into @str and, when it is relative (or empty, as with
 * AT_EMPTY_PATH), its base directory into @dir. Returns header flags.
 */
static __always_inline __u32 nj_path_arg(struct task_struct *task, const __u64 *args,
					 int path_arg, int dfd_arg, char *str, char *dir,
					 __u32 truncated_flag)
{
	__u64 user_ptr = args[path_arg & 7];
	__u32 flags = nj_read_user_str(str, user_ptr, truncated_flag);

	dir[0] = 0;
	if (user_ptr && !(flags & NJ_FLAG_READ_FAILED) && str[0] != '/')
		flags |= nj_resolve_base(task, dfd_arg, args, dir, truncated_flag);
	return flags;
}

/* A path record: the generic record started by nj_begin_syscall_event, grown to its size. */
static __always_inline struct nj_path_event *nj_begin_path_event(nj_sys_exit_ctx *ctx, __u16 kind,
								 __u32 syscall, const __u64 *args,
								 __u32 ptr_mask)
{
	struct nj_syscall_event *ev = nj_begin_syscall_event(ctx, kind, syscall, args, ptr_mask);
	if (!ev)
		return NULL;
	/* The generic record is the first member of both, in the same scratch union. */
	struct nj_path_event *pev = (struct nj_path_event *)ev;
	pev->sys.hdr.size = sizeof(*pev);
	pev->dir0[0] = 0;
	pev->dir1[0] = 0;
	return pev;
}

/*
 * Syscalls with one or two path arguments: each as passed, with the directory a relative one
 * was resolved against (@dfd0, @dfd1: the argument holding its dirfd, or -1 for the cwd).
 */
static __always_inline int nj_path_exit(nj_sys_exit_ctx *ctx, __u16 kind, __u32 syscall,
					int path0, int dfd0, int path1, int dfd1)
{
	struct task_struct *task = nj_syscall_task(ctx);
	__u64 args[6];

	if (!nj_task_syscall_args(task, ctx, args))
		return 0;

	__u32 mask = (path0 >= 0 ? 1u << path0 : 0) | (path1 >= 0 ? 1u << path1 : 0);
	struct nj_path_event *ev = nj_begin_path_event(ctx, kind, syscall, args, mask);
	if (!ev)
		return 0;
	if (path0 >= 0)
		ev->sys.hdr.flags |= NJ_FLAG_PATH_AS_PASSED |
				     nj_path_arg(task, args, path0, dfd0, ev->sys.str0, ev->dir0,
						 NJ_FLAG_PATH_TRUNCATED);
	if (path1 >= 0)
		ev->sys.hdr.flags |= nj_path_arg(task, args, path1, dfd1, ev->sys.str1, ev->dir1,
						 NJ_FLAG_PATH2_TRUNCATED);
	nj_submit(ev, sizeof(*ev), kind);
	return 0;
}

/* Syscalls on a descriptor (fchmod, fchown): report the file the descriptor names. */
static __always_inline int nj_fd_exit(nj_sys_exit_ctx *ctx, __u16 kind,
				      __u32 syscall)
{
	__u64 args[6];

	if (!nj_syscall_args(ctx, args))
		return 0;
	struct nj_path_event *ev = nj_begin_path_event(ctx, kind, syscall, args, 0);
	if (!ev)
		return 0;
	struct file *file = nj_syscall_file(ctx, args[0]);
	if (file)
		ev->sys.hdr.flags |= nj_resolve_path(
			__builtin_preserve_access_index(&file->f_path), ev->sys.str0);
	nj_submit(ev, sizeof(*ev), kind);
	return 0;
}

#define NJ_OPEN(name, id, path_arg, flags_arg)                                            \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		return nj_open_exit(ctx, id, path_arg, flags_arg);                        \
	}

/* path0/path1: argument index of each path (-1: none); dfd0/dfd1: of its dirfd (-1: cwd). */
#define NJ_PATHS(name, kind, id, path0, dfd0, path1, dfd1)                                \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		return nj_path_exit(ctx, kind, id, path0, dfd0, path1, dfd1);             \
	}

#define NJ_FD(name, kind, id)                                                             \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		return nj_fd_exit(ctx, kind, id);                                         \
	}

NJ_OPEN(open, NJ_SYS_OPEN, 0, 1)
NJ_OPEN(openat, NJ_SYS_OPENAT, 1, 2)
NJ_OPEN(openat2, NJ_SYS_OPENAT2, 1, 2)

NJ_PATHS(unlink, NJ_KIND_FILE_UNLINK, NJ_SYS_UNLINK, 0, -1, -1, -1)
NJ_PATHS(unlinkat, NJ_KIND_FILE_UNLINK, NJ_SYS_UNLINKAT, 1, 0, -1, -1)
NJ_PATHS(rmdir, NJ_KIND_FILE_UNLINK, NJ_SYS_RMDIR, 0, -1, -1, -1)
NJ_PATHS(rename, NJ_KIND_FILE_RENAME, NJ_SYS_RENAME, 0, -1, 1, -1)
NJ_PATHS(renameat, NJ_KIND_FILE_RENAME, NJ_SYS_RENAMEAT, 1, 0, 3, 2)
NJ_PATHS(renameat2, NJ_KIND_FILE_RENAME, NJ_SYS_RENAMEAT2, 1, 0, 3, 2)
NJ_PATHS(chmod, NJ_KIND_FILE_CHMOD, NJ_SYS_CHMOD, 0, -1, -1, -1)
NJ_PATHS(fchmodat, NJ_KIND_FILE_CHMOD, NJ_SYS_FCHMODAT, 1, 0, -1, -1)
NJ_FD(fchmod, NJ_KIND_FILE_CHMOD, NJ_SYS_FCHMOD)
NJ_PATHS(chown, NJ_KIND_FILE_CHOWN, NJ_SYS_CHOWN, 0, -1, -1, -1)
NJ_PATHS(lchown, NJ_KIND_FILE_CHOWN, NJ_SYS_LCHOWN, 0, -1, -1, -1)
NJ_PATHS(fchownat, NJ_KIND_FILE_CHOWN, NJ_SYS_FCHOWNAT, 1, 0, -1, -1)
NJ_FD(fchown, NJ_KIND_FILE_CHOWN, NJ_SYS_FCHOWN)

char LICENSE[] SEC("license") = "GPL";
