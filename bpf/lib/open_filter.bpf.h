/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The open filter's first look (the file's top-level directory against the prefixes' first
 * components), shared by the open programs and the syscall-exit dispatcher, which drops most
 * openat calls with it before the open program is ever called. The full prefix match on the
 * resolved path is in bpf/file/file.bpf.c.
 */
#ifndef NJ_OPEN_FILTER_BPF_H
#define NJ_OPEN_FILTER_BPF_H

#include "nj.bpf.h"
#include "path.bpf.h"
#include "syscall.bpf.h"

/*
 * When set at load, an open is reported only if its path starts with a prefix in
 * nj_file_prefixes (bpf/file/file.bpf.c); otherwise every open is reported.
 */
const volatile __u32 nj_file_filter_enabled __weak = 0;

/* First components of the prefixes; see struct nj_topdirs. Filled by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nj_topdirs);
} nj_file_topdirs SEC(".maps") __weak;

/* The access mode bits of open flags (O_RDONLY 0, O_WRONLY 1, O_RDWR 2). */
#define NJ_O_ACCMODE 03
/* Open flags that may modify the file. */
#define NJ_O_WRITE_INTENT (01 | 02 | 0100 | 01000) /* O_WRONLY O_RDWR O_CREAT O_TRUNC */

static __always_inline bool nj_mode_allows(const __u8 *mode, bool writes)
{
	return mode && (*mode == NJ_PREFIX_ANY_ACCESS || writes);
}

/* A top-level directory name's bit in nj_topdirs.filter (the hash its header defines). */
static __always_inline __u32 nj_topdir_hash(const __u64 *name)
{
	return ((name[0] ^ (name[1] * NJ_TOPDIR_HASH_MUL)) * NJ_TOPDIR_HASH_MUL) >> 56;
}

/*
 * Cheap first look for the prefix filter: false when the file's top-level directory is not
 * the first component of any prefix, so the full path is never built for it (the common case
 * for busy opens under /tmp or an application's data directory).
 */
static __always_inline bool nj_topdir_may_match(struct task_struct *task, struct file *file,
						bool writes)
{
	struct dentry *top = nj_top_dentry(task, __builtin_preserve_access_index(&file->f_path));
	if (!top)
		return true;

	__u32 zero = 0;
	struct nj_topdirs *dirs = bpf_map_lookup_elem(&nj_file_topdirs, &zero);
	if (!dirs)
		return true;
	__u64 name[2];
	/* Unreadable: let the full path decide rather than drop what may be a watched file. */
	if (!nj_dentry_name_words(top, name))
		return true;
	__u32 hash = nj_topdir_hash(name);
	if (!((dirs->filter[(hash / 64) & 3] >> (hash % 64)) & 1))
		return false;
	__u32 count = dirs->count;
	for (__u32 i = 0; i < NJ_TOPDIRS_MAX; i++) {
		if (i >= count)
			break;
		struct nj_topdir *dir = &dirs->dirs[i];
		if (dir->name[0] == name[0] && dir->name[1] == name[1])
			return nj_mode_allows(&dir->mode, writes);
	}
	return false;
}

/*
 * Whether the openat returning to @ctx opened a file no prefix can select, so the dispatcher
 * drops it without calling the open program. False whenever in doubt (failed open, no file,
 * unreadable names): the open program decides then. A 32-bit syscall of openat's number
 * (nj_ia32_misrouted) ends up dropped here or turned away by the open program.
 */
static __always_inline bool nj_openat_outside_prefixes(nj_sys_exit_ctx *ctx, struct pt_regs *regs)
{
	if (!nj_file_filter_enabled || NJ_RET(ctx) < 0)
		return false;
	struct task_struct *task = nj_syscall_task(ctx);
	struct file *file = nj_task_file(task, NJ_RET(ctx));
	if (!file)
		return false;
	/* openat(dfd, path, flags, mode): the flags are in rdx. */
	return !nj_topdir_may_match(task, file, regs->dx & NJ_O_WRITE_INTENT);
}

#endif
