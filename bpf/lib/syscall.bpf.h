/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Syscall enter/exit pairing. The enter tracepoint saves the raw arguments per thread; the exit
 * tracepoint builds the record with the return value. Each traced syscall costs its own
 * tracepoint pair only, not a hook on every syscall of the system.
 */
#ifndef NJ_SYSCALL_BPF_H
#define NJ_SYSCALL_BPF_H

#include "nj.bpf.h"

struct nj_pending_syscall {
	__u64 args[6];
};

/*
 * Arguments saved at enter, keyed by pid_tgid. LRU so that threads that die inside a syscall
 * cannot fill it for good; an eviction shows up as NJ_ERR_PENDING_MISSING at exit.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, struct nj_pending_syscall);
} nj_pending SEC(".maps") __weak;

/*
 * Saves the first @nargs arguments (a compile-time constant). Reading past a syscall's real
 * argument count makes the kernel refuse to attach: the tracepoint's record is shorter.
 */
static __always_inline int nj_save_args(struct trace_event_raw_sys_enter *ctx, const int nargs)
{
	if (nj_is_agent())
		return 0;

	__u64 key = bpf_get_current_pid_tgid();
	struct nj_pending_syscall pending = {};

	/* Constant offsets only: the verifier rejects arithmetic on the context pointer. */
	if (nargs > 0)
		pending.args[0] = ctx->args[0];
	if (nargs > 1)
		pending.args[1] = ctx->args[1];
	if (nargs > 2)
		pending.args[2] = ctx->args[2];
	if (nargs > 3)
		pending.args[3] = ctx->args[3];
	if (nargs > 4)
		pending.args[4] = ctx->args[4];
	if (nargs > 5)
		pending.args[5] = ctx->args[5];
	if (bpf_map_update_elem(&nj_pending, &key, &pending, BPF_ANY) != 0)
		nj_count_error(NJ_ERR_PENDING_FULL);
	return 0;
}

/* Takes the saved arguments of the current thread's syscall into @args; false if none. */
static __always_inline bool nj_take_args(__u64 *args)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct nj_pending_syscall *pending = bpf_map_lookup_elem(&nj_pending, &key);

	if (!pending) {
		if (!nj_is_agent())
			nj_count_error(NJ_ERR_PENDING_MISSING);
		return false;
	}
	#pragma unroll
	for (int i = 0; i < 6; i++)
		args[i] = pending->args[i];
	bpf_map_delete_elem(&nj_pending, &key);
	return true;
}

/* Reads a user string argument into @dst (NJ_STR_MAX bytes); returns header flags to set. */
static __always_inline __u32 nj_read_user_str(char *dst, __u64 user_ptr, __u32 truncated_flag)
{
	dst[0] = 0;
	if (!user_ptr)
		return 0;
	long n = bpf_probe_read_user_str(dst, NJ_STR_MAX, (const void *)user_ptr);
	if (n < 0) {
		nj_count_error(NJ_ERR_READ_FAILED);
		dst[0] = 0;
		return NJ_FLAG_READ_FAILED;
	}
	/* A string that filled the buffer exactly may have been cut. */
	return n == NJ_STR_MAX ? truncated_flag : 0;
}

/*
 * Starts a generic syscall record: header, return value, syscall id and the raw arguments
 * with the pointer arguments (mask bit i set) zeroed, so no kernel-side address leaks out.
 */
static __always_inline struct nj_syscall_event *
nj_begin_syscall_event(__u16 kind, __u32 syscall, __s64 ret, const __u64 *args, __u32 ptr_mask)
{
	union nj_any_event *any = nj_scratch();
	if (!any)
		return NULL;
	struct nj_syscall_event *ev = &any->sys;

	nj_fill_header(&ev->hdr, kind, sizeof(*ev));
	ev->ret = ret;
	ev->syscall = syscall;
	ev->_pad0 = 0;
	#pragma unroll
	for (int i = 0; i < 6; i++)
		ev->args[i] = (ptr_mask & (1u << i)) ? 0 : args[i];
	ev->str0[0] = 0;
	ev->str1[0] = 0;
	return ev;
}

/* Declares the enter program of a syscall tracepoint that only saves its arguments. */
#define NJ_SYSCALL_ENTER(name, nargs)                                                     \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                       \
	int nj_enter_##name(struct trace_event_raw_sys_enter *ctx)                        \
	{                                                                                 \
		return nj_save_args(ctx, nargs);                                          \
	}

#endif
