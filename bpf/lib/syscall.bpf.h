/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Syscall records at syscall exit: arguments from the saved user registers, the return value
 * from the sys_exit raw tracepoint. One dispatcher (bpf/sys/dispatch.bpf.c) runs on every
 * syscall exit and tail-calls the program of a traced syscall by its number; each program
 * below is declared with NJ_SYSCALL_EXIT and only ever runs through that table.
 *
 * Why not the per-syscall tracepoints (syscalls/sys_exit_<name>): each one that fires costs the
 * perf tracepoint machinery (a record is built and copied before the program runs). Empty
 * programs on the open storm here: 1.104x on sys_exit_openat, 1.059x on sys_exit, though the
 * raw tracepoint also runs for every close (BENCHMARKS.md).
 */
#ifndef NJ_SYSCALL_BPF_H
#define NJ_SYSCALL_BPF_H

#include "nj.bpf.h"
#include "kread.bpf.h"
#include "path.bpf.h"

/*
 * sys_exit's raw arguments, (struct pt_regs *regs, long ret), as the raw tracepoint passes
 * them: one u64 each. Declared here, not as vmlinux.h's bpf_raw_tracepoint_args, whose
 * flexible array CO-RE (in Aya) refuses to index.
 */
struct nj_sys_exit_args {
	__u64 regs;
	__s64 ret;
};
typedef struct nj_sys_exit_args nj_sys_exit_ctx;

/* The syscall's return value. */
#define NJ_RET(ctx) ((ctx)->ret)

/*
 * The returning syscall's saved user registers as a BTF pointer. The raw tracepoint hands
 * them over; cast, they cost nothing, where bpf_task_pt_regs is a helper call on every syscall
 * (2% of an open storm's samples, for the dispatcher and the open program together).
 */
static __always_inline struct pt_regs *nj_syscall_regs(nj_sys_exit_ctx *ctx)
{
#if NJ_KCAST
	return nj_kcast(ctx->regs, struct pt_regs);
#else
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#endif
}

/*
 * The task whose syscall is returning, by its saved registers: this CPU's last answer from
 * bpf_get_current_task_btf, kept with the registers and kernel stack it had then.
 */
struct nj_syscall_task_memo {
	__u64 regs;
	__u64 task;
	__u64 stack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nj_syscall_task_memo);
} nj_syscall_task_memo SEC(".maps") __weak;

/*
 * The current task at syscall exit, without a helper call when this CPU saw the same task
 * last (the verifier inlines the per-CPU array lookup; bpf_get_current_task_btf is a real
 * call on 6.18, whose return goes through this machine's SRSO return thunk). On the open
 * storm it took the dispatcher from 76 to 67-68 ns a call (bpf_stats, openat and close
 * alike), about 17 ns per openat (BENCHMARKS.md).
 *
 * Why a hit is the current task: the registers sit at the top of the returning task's kernel
 * stack, so equal registers mean the same stack; a stack belongs to one live task, and a task
 * whose stack field still points at it is that task (free_thread_stack clears the field as it
 * hands the stack to this CPU's cache, before any fork here can take it). A memo that went stale (its task exited) fails that check and is
 * refilled. The pointer is read as untrusted (nj_kcast): loads through it are guarded, so even
 * a freed task_struct reads as data, never a fault.
 */
static __always_inline struct task_struct *nj_syscall_task(nj_sys_exit_ctx *ctx)
{
#if NJ_KCAST
	__u32 zero = 0;
	struct nj_syscall_task_memo *memo = bpf_map_lookup_elem(&nj_syscall_task_memo, &zero);

	if (memo && memo->regs == ctx->regs && memo->stack) {
		struct task_struct *task = nj_kcast(memo->task, struct task_struct);
		if ((__u64)task->stack == memo->stack)
			return task;
	}
	struct task_struct *current = bpf_get_current_task_btf();
	if (memo) {
		memo->regs = ctx->regs;
		memo->task = (__u64)current;
		memo->stack = (__u64)current->stack;
	}
	return nj_kcast(current, struct task_struct);
#else
	return bpf_get_current_task_btf();
#endif
}

/* x86 thread_info.status bit set while a task runs a 32-bit (ia32) syscall. */
#define NJ_TS_COMPAT 0x0002

/*
 * Whether @task's returning syscall came through the 32-bit ABI (int 0x80, or a 32-bit
 * program): its number is from the ia32 table and its arguments are in other registers.
 */
static __always_inline bool nj_task_in_ia32_syscall(struct task_struct *task)
{
	return task->thread_info.status & NJ_TS_COMPAT;
}

/* Whether the syscall returning to @ctx came through the 32-bit ABI. */
static __always_inline bool nj_syscall_is_ia32(nj_sys_exit_ctx *ctx)
{
	return nj_task_in_ia32_syscall(nj_syscall_task(ctx));
}

/* The struct file behind descriptor @fd of the task whose syscall returns to @ctx, or NULL. */
static __always_inline struct file *nj_syscall_file(nj_sys_exit_ctx *ctx, __s64 fd)
{
	return nj_task_file(nj_syscall_task(ctx), fd);
}

/*
 * ia32's first chown, lchown, fchown and set*id calls take 16-bit ids: the arguments (bit i
 * for argument i) that hold one, by ia32 number. Their 32-bit-id successors need nothing.
 */
static __always_inline __u32 nj_ia32_uid16_args(__u64 nr)
{
	switch (nr) {
	case 16:  /* lchown */
	case 95:  /* fchown */
	case 182: /* chown */
		return 0x6;
	case 23: /* setuid */
	case 46: /* setgid */
		return 0x1;
	case 70: /* setreuid */
	case 71: /* setregid */
		return 0x3;
	case 164: /* setresuid */
	case 170: /* setresgid */
		return 0x7;
	default:
		return 0;
	}
}

/* A 16-bit id as the kernel widens it (low2highuid): 0xffff ("unchanged") becomes -1. */
static __always_inline __u64 nj_uid16(__u64 id)
{
	return (__u16)id == 0xffff ? 0xffffffffULL : (__u16)id;
}

/*
 * Which numbers have a program in each dispatch table: bit nr % 64 of word nr / 64. Set at
 * load from the enabled groups (crates/loader/src/probes.rs), so the dispatcher turns away
 * untraced syscalls (most of them: close, read, write...) on one load, before any helper.
 */
const volatile __u64 nj_sys_exit_x86_traced[NJ_SYS_EXIT_WORDS] __weak = {};
const volatile __u64 nj_sys_exit_ia32_traced[NJ_SYS_EXIT_WORDS] __weak = {};

/* Whether @nr (below NJ_SYS_EXIT_SLOTS) is set in @traced. */
static __always_inline bool nj_sys_exit_traced(const volatile __u64 *traced, __u64 nr)
{
	return (traced[(nr / 64) & (NJ_SYS_EXIT_WORDS - 1)] >> (nr % 64)) & 1;
}

/*
 * Whether an ia32 syscall reached an x86-64 program: the dispatcher asks for the ABI (a
 * helper call) only for numbers the ia32 table traces, and sends every other traced number
 * to the x86-64 table, where a 32-bit syscall of that number must be turned away.
 */
static __always_inline bool nj_ia32_misrouted(struct task_struct *task, struct pt_regs *regs)
{
	return nj_task_in_ia32_syscall(task) &&
	       !nj_sys_exit_traced(nj_sys_exit_ia32_traced, regs->orig_ax % NJ_SYS_EXIT_SLOTS);
}

/* A syscall's exit program, reached by tail call from nj_sys_exit (never attached itself). */
#define NJ_SYSCALL_EXIT(name) SEC("raw_tp/sys_exit") int nj_exit_##name(nj_sys_exit_ctx *ctx)

/*
 * The current syscall's six arguments, from the user registers saved at syscall entry
 * (x86-64 ABI: rdi, rsi, rdx, r10, r8, r9). The syscalls traced here leave them untouched, so
 * the exit tracepoint alone sees arguments and return value: one program per syscall instead
 * of an enter/exit pair with a map in between, which halves the cost on hot paths. Returns
 * false for the agent's own syscalls and for a 32-bit syscall that is not this program's.
 * @task is the current task (nj_syscall_task), taken once by a caller that needs it again.
 */
static __always_inline bool nj_task_syscall_args(struct task_struct *task, nj_sys_exit_ctx *ctx,
						 __u64 *args)
{
	/* One task pointer answers both questions (the agent's own syscall? which ABI?). */
	if (task->tgid == nj_agent_tgid)
		return false;

	/* A BTF pointer: plain loads below, no bpf_probe_read call per argument. */
	struct pt_regs *regs = nj_syscall_regs(ctx);

	if (nj_task_in_ia32_syscall(task)) {
		if (nj_ia32_misrouted(task, regs))
			return false;
		/*
		 * ebx, ecx, edx, esi, edi, ebp, 32 bits each: zero-extended, which keeps pointers
		 * right; userspace reads descriptors and pids as i32, so negative ones stay right.
		 */
		args[0] = (__u32)regs->bx;
		args[1] = (__u32)regs->cx;
		args[2] = (__u32)regs->dx;
		args[3] = (__u32)regs->si;
		args[4] = (__u32)regs->di;
		args[5] = (__u32)regs->bp;
		__u32 uid16 = nj_ia32_uid16_args(regs->orig_ax);
		if (uid16 & 1)
			args[0] = nj_uid16(args[0]);
		if (uid16 & 2)
			args[1] = nj_uid16(args[1]);
		if (uid16 & 4)
			args[2] = nj_uid16(args[2]);
		return true;
	}
	args[0] = regs->di;
	args[1] = regs->si;
	args[2] = regs->dx;
	args[3] = regs->r10;
	args[4] = regs->r8;
	args[5] = regs->r9;
	return true;
}

/* nj_task_syscall_args for the current task, for programs that need no task pointer besides. */
static __always_inline bool nj_syscall_args(nj_sys_exit_ctx *ctx, __u64 *args)
{
	return nj_task_syscall_args(nj_syscall_task(ctx), ctx, args);
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
 * Starts a generic syscall record of the syscall returning to @ctx: header, return value,
 * syscall id and the raw arguments with the pointer arguments (mask bit i set) zeroed, so no
 * kernel-side address leaks out.
 */
static __always_inline struct nj_syscall_event *
nj_begin_syscall_event(nj_sys_exit_ctx *ctx, __u16 kind, __u32 syscall, const __u64 *args,
		       __u32 ptr_mask)
{
	union nj_any_event *any = nj_scratch();
	if (!any)
		return NULL;
	struct nj_syscall_event *ev = &any->sys;

	nj_fill_header(&ev->hdr, kind, sizeof(*ev));
	if (nj_syscall_is_ia32(ctx))
		ev->hdr.flags |= NJ_FLAG_IA32_SYSCALL;
	ev->ret = NJ_RET(ctx);
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
