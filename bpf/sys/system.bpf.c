// SPDX-License-Identifier: GPL-2.0-only
/*
 * Changes to the system itself from syscall tracepoints: mounts, kernel modules, bpf(),
 * memfd_create (fileless execution) and namespace changes (setns, unshare).
 */
#include "nj.bpf.h"
#include "path.bpf.h"
#include "syscall.bpf.h"

static __always_inline int nj_system_exit(nj_sys_exit_ctx *ctx, __u16 kind,
					  __u32 syscall, int str0, int str1, __u32 ptr_mask)
{
	__u64 args[6];

	if (!nj_syscall_args(ctx, args))
		return 0;
	struct nj_syscall_event *ev = nj_begin_syscall_event(ctx, kind, syscall, args, ptr_mask);
	if (!ev)
		return 0;
	if (str0 >= 0)
		ev->hdr.flags |= nj_read_user_str(ev->str0, args[str0 & 7], NJ_FLAG_PATH_TRUNCATED);
	if (str1 >= 0)
		ev->hdr.flags |= nj_read_user_str(ev->str1, args[str1 & 7], NJ_FLAG_PATH2_TRUNCATED);
	nj_submit(ev, sizeof(*ev), kind);
	return 0;
}

#define NJ_SYSTEM(name, kind, id, str0, str1, ptr_mask)                                   \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		return nj_system_exit(ctx, kind, id, str0, str1, ptr_mask);               \
	}

/* mount(source, target, fstype, flags, data): source and target as strings. */
NJ_SYSTEM(mount, NJ_KIND_MOUNT, NJ_SYS_MOUNT, 0, 1, 0x17)
/* umount2(target, flags) */
NJ_SYSTEM(umount, NJ_KIND_UMOUNT, NJ_SYS_UMOUNT2, 0, -1, 0x1)
/* init_module(image, len, params): the parameters string. */
NJ_SYSTEM(init_module, NJ_KIND_MODULE_LOAD, NJ_SYS_INIT_MODULE, 2, -1, 0x5)
/* finit_module(fd, params, flags) */
NJ_SYSTEM(finit_module, NJ_KIND_MODULE_LOAD, NJ_SYS_FINIT_MODULE, 1, -1, 0x2)
/* bpf(cmd, attr, size) */
NJ_SYSTEM(bpf, NJ_KIND_BPF, NJ_SYS_BPF, -1, -1, 0x2)
/* The kernel names a memfd's file "memfd:" followed by the name it was created with. */
#define NJ_MEMFD_PREFIX 0x3a64666d656dULL /* "memfd:", little-endian */
#define NJ_MEMFD_PREFIX_LEN 6

/*
 * The name memfd @fd was created with, from its file's dentry into @dst: the kernel's copy,
 * which the caller cannot rewrite after the call as it can its own buffer. False when @fd is
 * not such a file.
 */
static __always_inline bool nj_memfd_name(nj_sys_exit_ctx *ctx, __s64 fd, char *dst)
{
	struct file *file = fd >= 0 ? nj_syscall_file(ctx, fd) : NULL;
	if (!file)
		return false;
	struct dentry *dentry = NJ_KREAD(file, f_path.dentry);
	const unsigned char *name = dentry ? NJ_KREAD(dentry, d_name.name) : NULL;
	/* Eight bytes are always there: "memfd:" and its NUL at least, in the dentry or after. */
	__u64 prefix = 0;
	if (!name || bpf_probe_read_kernel(&prefix, sizeof(prefix), name) != 0 ||
	    (prefix & NJ_LOW_BYTES(NJ_MEMFD_PREFIX_LEN)) != NJ_MEMFD_PREFIX)
		return false;
	return bpf_probe_read_kernel_str(dst, NJ_STR_MAX, name + NJ_MEMFD_PREFIX_LEN) > 0;
}

/* memfd_create(name, flags): the name as the kernel keeps it; as passed if the call failed. */
NJ_SYSCALL_EXIT(memfd_create)
{
	__u64 args[6];

	if (!nj_syscall_args(ctx, args))
		return 0;
	struct nj_syscall_event *ev =
		nj_begin_syscall_event(ctx, NJ_KIND_MEMFD_CREATE, NJ_SYS_MEMFD_CREATE, args, 0x1);
	if (!ev)
		return 0;
	if (!nj_memfd_name(ctx, NJ_RET(ctx), ev->str0))
		ev->hdr.flags |= nj_read_user_str(ev->str0, args[0], NJ_FLAG_PATH_TRUNCATED);
	nj_submit(ev, sizeof(*ev), NJ_KIND_MEMFD_CREATE);
	return 0;
}
/* setns(fd, nstype), unshare(flags) */
NJ_SYSTEM(setns, NJ_KIND_NAMESPACE, NJ_SYS_SETNS, -1, -1, 0)
NJ_SYSTEM(unshare, NJ_KIND_NAMESPACE, NJ_SYS_UNSHARE, -1, -1, 0)

char LICENSE[] SEC("license") = "GPL";
