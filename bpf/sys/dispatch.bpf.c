// SPDX-License-Identifier: GPL-2.0-only
/*
 * The one program on syscall exit: looks up the program of the syscall that is returning
 * (by x86-64 number, the table filled by the loader with the enabled groups' programs) and
 * tail-calls it. Syscalls nobody traces cost this lookup and nothing else. See syscall.bpf.h
 * for why this beats a tracepoint per syscall.
 */
#include "nj.bpf.h"
#include "syscall.bpf.h"

/* x86 thread_info.status bit for a 32-bit (ia32) syscall: its numbers are another table. */
#define NJ_TS_COMPAT 0x0002

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NJ_SYS_EXIT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} nj_sys_exit_progs SEC(".maps");

SEC("raw_tp/sys_exit")
int nj_sys_exit(nj_sys_exit_ctx *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();

	/* The per-syscall tracepoints skip compat syscalls too (trace_get_syscall_nr). */
	if (task->thread_info.status & NJ_TS_COMPAT)
		return 0;
	__u64 nr = nj_syscall_regs(ctx)->orig_ax;

	if (nr < NJ_SYS_EXIT_SLOTS)
		bpf_tail_call(ctx, &nj_sys_exit_progs, (__u32)nr);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
