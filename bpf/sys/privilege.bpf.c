// SPDX-License-Identifier: GPL-2.0-only
/*
 * Privilege changes and cross-process interference from syscall tracepoints: the set*id family,
 * capset, ptrace, and signals sent to other processes.
 */
#include "nj.bpf.h"
#include "syscall.bpf.h"

/* Integer-only syscalls: every argument is reported as is (no pointers to mask). */
static __always_inline int nj_plain_exit(struct trace_event_raw_sys_exit *ctx, __u16 kind,
					 __u32 syscall, __u32 ptr_mask)
{
	__u64 args[6];

	if (!nj_take_args(args))
		return 0;
	struct nj_syscall_event *ev = nj_begin_syscall_event(kind, syscall, ctx->ret, args, ptr_mask);
	if (ev)
		nj_submit(ev, sizeof(*ev), kind);
	return 0;
}

#define NJ_PLAIN(name, nargs, kind, id, ptr_mask)                                                \
	NJ_SYSCALL_ENTER(name, nargs)                                                     \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                        \
	int nj_exit_##name(struct trace_event_raw_sys_exit *ctx)                          \
	{                                                                                 \
		return nj_plain_exit(ctx, kind, id, ptr_mask);                            \
	}

NJ_PLAIN(setuid, 1, NJ_KIND_CRED_CHANGE, NJ_SYS_SETUID, 0)
NJ_PLAIN(setgid, 1, NJ_KIND_CRED_CHANGE, NJ_SYS_SETGID, 0)
NJ_PLAIN(setreuid, 2, NJ_KIND_CRED_CHANGE, NJ_SYS_SETREUID, 0)
NJ_PLAIN(setregid, 2, NJ_KIND_CRED_CHANGE, NJ_SYS_SETREGID, 0)
NJ_PLAIN(setresuid, 3, NJ_KIND_CRED_CHANGE, NJ_SYS_SETRESUID, 0)
NJ_PLAIN(setresgid, 3, NJ_KIND_CRED_CHANGE, NJ_SYS_SETRESGID, 0)
NJ_PLAIN(ptrace, 4, NJ_KIND_PTRACE, NJ_SYS_PTRACE, (1u << 2) | (1u << 3))

/*
 * capset(hdrp, datap): report the effective and permitted sets requested (first 32-bit word
 * pair of each, in args[2..3]) instead of the pointers.
 */
NJ_SYSCALL_ENTER(capset, 2)
SEC("tracepoint/syscalls/sys_exit_capset")
int nj_exit_capset(struct trace_event_raw_sys_exit *ctx)
{
	__u64 args[6];

	if (!nj_take_args(args))
		return 0;
	struct nj_syscall_event *ev =
		nj_begin_syscall_event(NJ_KIND_CRED_CHANGE, NJ_SYS_CAPSET, ctx->ret, args, 0x3f);
	if (!ev)
		return 0;
	struct __user_cap_data_struct data[2] = {};
	if (args[1] && bpf_probe_read_user(&data, sizeof(data), (void *)args[1]) == 0) {
		ev->args[0] = data[0].effective | ((__u64)data[1].effective << 32);
		ev->args[1] = data[0].permitted | ((__u64)data[1].permitted << 32);
		ev->args[2] = data[0].inheritable | ((__u64)data[1].inheritable << 32);
	}
	nj_submit(ev, sizeof(*ev), NJ_KIND_CRED_CHANGE);
	return 0;
}

/* Signals aimed at another process only: a process signalling itself is not interference. */
static __always_inline int nj_kill_enter(struct trace_event_raw_sys_enter *ctx, const int nargs)
{
	/* The target pid is the first argument of kill, tkill and tgkill alike. */
	__s32 target = (__s32)ctx->args[0];
	__u32 self = bpf_get_current_pid_tgid() >> 32;

	if (target == (__s32)self || target == 0)
		return 0;
	return nj_save_args(ctx, nargs);
}

#define NJ_KILL(name, nargs, id)                                                        \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                       \
	int nj_enter_##name(struct trace_event_raw_sys_enter *ctx)                        \
	{                                                                                 \
		return nj_kill_enter(ctx, nargs);                                       \
	}                                                                                 \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                        \
	int nj_exit_##name(struct trace_event_raw_sys_exit *ctx)                          \
	{                                                                                 \
		__u64 key = bpf_get_current_pid_tgid();                                   \
		/* Most calls were filtered at enter: a miss here is normal, not a loss. */ \
		if (!bpf_map_lookup_elem(&nj_pending, &key))                              \
			return 0;                                                         \
		return nj_plain_exit(ctx, NJ_KIND_KILL, id, 0);                           \
	}

NJ_KILL(kill, 2, NJ_SYS_KILL)
NJ_KILL(tkill, 2, NJ_SYS_TKILL)
NJ_KILL(tgkill, 3, NJ_SYS_TGKILL)

char LICENSE[] SEC("license") = "GPL";
