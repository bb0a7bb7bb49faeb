// SPDX-License-Identifier: GPL-2.0-only
/*
 * Privilege changes and cross-process interference from syscall tracepoints: the set*id family,
 * capset, ptrace, and signals sent to other processes.
 */
#include "nj.bpf.h"
#include "syscall.bpf.h"

/* Integer-only syscalls: every argument is reported as is (no pointers to mask). */
static __always_inline int nj_plain_exit(nj_sys_exit_ctx *ctx, __u16 kind,
					 __u32 syscall, __u32 ptr_mask)
{
	__u64 args[6];

	if (!nj_syscall_args(ctx, args))
		return 0;
	struct nj_syscall_event *ev = nj_begin_syscall_event(ctx, kind, syscall, args, ptr_mask);
	if (ev)
		nj_submit(ev, sizeof(*ev), kind);
	return 0;
}

#define NJ_PLAIN(name, kind, id, ptr_mask)                                                \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		return nj_plain_exit(ctx, kind, id, ptr_mask);                            \
	}

NJ_PLAIN(setuid, NJ_KIND_CRED_CHANGE, NJ_SYS_SETUID, 0)
NJ_PLAIN(setgid, NJ_KIND_CRED_CHANGE, NJ_SYS_SETGID, 0)
NJ_PLAIN(setreuid, NJ_KIND_CRED_CHANGE, NJ_SYS_SETREUID, 0)
NJ_PLAIN(setregid, NJ_KIND_CRED_CHANGE, NJ_SYS_SETREGID, 0)
NJ_PLAIN(setresuid, NJ_KIND_CRED_CHANGE, NJ_SYS_SETRESUID, 0)
NJ_PLAIN(setresgid, NJ_KIND_CRED_CHANGE, NJ_SYS_SETRESGID, 0)
NJ_PLAIN(ptrace, NJ_KIND_PTRACE, NJ_SYS_PTRACE, (1u << 2) | (1u << 3))

/*
 * capset(hdrp, datap): reports the effective, permitted and inheritable sets (in args[0..2])
 * instead of the pointers. A capset that succeeded changed the caller's own credentials, so
 * the sets are read from those: the caller's buffer, read now, may have been rewritten by
 * another thread since the kernel copied it. A failed one reports the sets as passed.
 */
NJ_SYSCALL_EXIT(capset)
{
	__u64 args[6];

	if (!nj_syscall_args(ctx, args))
		return 0;
	struct nj_syscall_event *ev =
		nj_begin_syscall_event(ctx, NJ_KIND_CRED_CHANGE, NJ_SYS_CAPSET, args, 0x3f);
	if (!ev)
		return 0;
	if (NJ_RET(ctx) == 0) {
		const struct cred *cred = NJ_KREAD(nj_syscall_task(ctx), cred);
		ev->args[0] = BPF_CORE_READ(cred, cap_effective.val);
		ev->args[1] = BPF_CORE_READ(cred, cap_permitted.val);
		ev->args[2] = BPF_CORE_READ(cred, cap_inheritable.val);
	} else {
		struct __user_cap_data_struct data[2] = {};
		if (args[1] && bpf_probe_read_user(&data, sizeof(data), (void *)args[1]) == 0) {
			ev->args[0] = data[0].effective | ((__u64)data[1].effective << 32);
			ev->args[1] = data[0].permitted | ((__u64)data[1].permitted << 32);
			ev->args[2] = data[0].inheritable | ((__u64)data[1].inheritable << 32);
		}
	}
	nj_submit(ev, sizeof(*ev), NJ_KIND_CRED_CHANGE);
	return 0;
}

/* Signals aimed at another process only: a process signalling itself is not interference. */
static __always_inline int nj_kill_exit(nj_sys_exit_ctx *ctx, __u32 syscall)
{
	__u64 args[6];

	if (!nj_syscall_args(ctx, args))
		return 0;
	/* The target pid is the first argument of kill, tkill and tgkill alike. */
	__s32 target = (__s32)args[0];
	if (target == 0 || target == (__s32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	struct nj_syscall_event *ev =
		nj_begin_syscall_event(ctx, NJ_KIND_KILL, syscall, args, 0);
	if (ev)
		nj_submit(ev, sizeof(*ev), NJ_KIND_KILL);
	return 0;
}

#define NJ_KILL(name, id)                                                                 \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		return nj_kill_exit(ctx, id);                                             \
	}

NJ_KILL(kill, NJ_SYS_KILL)
NJ_KILL(tkill, NJ_SYS_TKILL)
NJ_KILL(tgkill, NJ_SYS_TGKILL)

char LICENSE[] SEC("license") = "GPL";
