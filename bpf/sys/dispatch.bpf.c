// SPDX-License-Identifier: GPL-2.0-only
/*
 * The one program on syscall exit: looks up the program of the syscall that is returning
 * (by its number, in the table of the ABI it came through; the loader fills both with the
 * enabled groups' programs) and tail-calls it. Syscalls nobody traces cost a bitmap test and
 * nothing else; an openat of a file outside the open filter's prefixes is dropped here too
 * (open_filter.bpf.h). See syscall.bpf.h for why this beats a tracepoint per syscall.
 */
#include "nj.bpf.h"
#include "syscall.bpf.h"
#include "open_filter.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NJ_SYS_EXIT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} nj_sys_exit_progs SEC(".maps");

/*
 * The same programs by ia32 number, for 32-bit syscalls (int 0x80 from any program, or a
 * 32-bit program). The per-syscall tracepoints never fire for those (trace_get_syscall_nr),
 * which left them a way around a tracepoint-based monitor.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NJ_SYS_EXIT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} nj_sys_exit_ia32_progs SEC(".maps");

SEC("raw_tp/sys_exit")
int nj_sys_exit(nj_sys_exit_ctx *ctx)
{
	struct pt_regs *regs = nj_syscall_regs(ctx);
	__u64 nr = regs->orig_ax;

	if (nr >= NJ_SYS_EXIT_SLOTS)
		return 0;
	/* Which ABI the syscall came through costs a helper call: asked only when it matters. */
	if (nj_sys_exit_traced(nj_sys_exit_ia32_traced, nr)) {
		if (nj_task_in_ia32_syscall(nj_syscall_task(ctx))) {
			bpf_tail_call(ctx, &nj_sys_exit_ia32_progs, (__u32)nr);
			return 0;
		}
	} else if (!nj_sys_exit_traced(nj_sys_exit_x86_traced, nr)) {
		return 0;
	}
	/* Possibly a 32-bit syscall: the program turns it away (nj_ia32_misrouted). */
	if (nr == NJ_X86_NR_OPENAT) {
		/* An open no prefix can select ends here, without a tail call. */
		if (nj_openat_outside_prefixes(ctx, regs))
			return 0;
		bpf_tail_call(ctx, &nj_sys_exit_progs, NJ_X86_NR_OPENAT);
		/* Keeps clang from merging the two calls into one with a variable key. */
		asm volatile("" ::: "memory");
		return 0;
	}
	bpf_tail_call(ctx, &nj_sys_exit_progs, (__u32)nr);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
