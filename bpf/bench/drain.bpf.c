// SPDX-License-Identifier: GPL-2.0-only
/*
 * Benchmark-only programs, never loaded by the agent.
 *
 * Drain benchmark generator: each getppid() from the benchmark's own process emits a burst of
 * fork records through the same ring-buffer path as real events (nj_submit), so the consumer
 * can be measured at rates no real workload on two cores reaches.
 */
#include "nj.bpf.h"

/* Records per getppid() call. */
#define NJ_BENCH_BURST 32

const volatile __u32 nj_bench_tgid = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int nj_bench_burst(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != nj_bench_tgid)
		return 0;
	union nj_any_event *any = nj_scratch();
	if (!any)
		return 0;
	struct nj_fork_event *ev = &any->fork;

	nj_fill_header(&ev->hdr, NJ_KIND_PROCESS_FORK, sizeof(*ev));
	ev->child_start_time_ns = 0;
	ev->_pad0 = 0;
	__builtin_memset(ev->comm, 0, sizeof(ev->comm));
	for (int i = 0; i < NJ_BENCH_BURST; i++) {
		ev->child_tgid = i;
		nj_submit(ev, sizeof(*ev), NJ_KIND_PROCESS_FORK);
	}
	return 0;
}

/*
 * The hook floor: an empty program on the raw tracepoint the agent's syscall dispatcher uses.
 * Attached alone (nj-hook-floor), it measures what the hook costs every syscall before a
 * monitor does any work: the syscall slow path, the tracepoint and the program call.
 */
SEC("raw_tp/sys_exit")
int nj_bench_hook_floor(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
