/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Syscall records from the exit tracepoints: arguments from the saved user registers, the
 * return value from the tracepoint. Each traced syscall costs one program on its own exit
 * tracepoint, not a hook on every syscall of the system.
 */
#ifndef NJ_SYSCALL_BPF_H
#define NJ_SYSCALL_BPF_H

#include "nj.bpf.h"

/*
 * The current syscall's six arguments, from the user registers saved at syscall entry
 * (x86-64 ABI: rdi, rsi, rdx, r10, r8, r9). The syscalls traced here leave them untouched, so
 * the exit tracepoint alone sees arguments and return value: one program per syscall instead
 * of an enter/exit pair with a map in between, which halves the cost on hot paths. Returns
 * false for the agent's own syscalls.
 */
static __always_inline bool nj_syscall_args(__u64 *args)
{
	if (nj_is_agent())
		return false;

	/* A BTF pointer: plain loads below, no bpf_probe_read call per argument. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	args[0] = regs->di;
	args[1] = regs->si;
	args[2] = regs->dx;
	args[3] = regs->r10;
	args[4] = regs->r8;
	args[5] = regs->r9;
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


#endif
