/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shared by every Nightjar BPF program: the ring buffer, loss counters, per-CPU scratch space
 * and load-time settings. Maps and globals are __weak so that each hook family compiles on its
 * own and the static linker (bpftool gen object) folds them into one instance.
 */
#ifndef NJ_BPF_H
#define NJ_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "abi/common.h"
#include "abi/process.h"
#include "abi/syscall.h"
#include "abi/maps.h"
#include "abi/flow.h"

/* Default ring-buffer size; userspace may resize it before load. */
#define NJ_RINGBUF_BYTES (16 * 1024 * 1024)

/* All events go through one ring buffer so their order per CPU is preserved. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NJ_RINGBUF_BYTES);
} nj_events SEC(".maps") __weak;

/* Failure counters by enum nj_error_reason; exported by userspace as lost/failed events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NJ_ERR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} nj_errors SEC(".maps") __weak;

/* Ring-buffer losses by event kind, so a loss can be named. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NJ_KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} nj_lost_by_kind SEC(".maps") __weak;

/* The largest record; events are built here, then copied into the ring buffer in one call. */
union nj_any_event {
	struct nj_exec_event exec;
	struct nj_syscall_event sys;
	struct nj_path_event path;
	struct nj_sock_event sock;
	struct nj_fork_event fork;
	struct nj_exit_event exit;
	struct nj_cgroup_event cgroup;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union nj_any_event);
} nj_event_scratch SEC(".maps") __weak;

/* tgid of the agent itself: its own syscalls are never reported (no feedback loops). */
const volatile __u32 nj_agent_tgid __weak = 0;

static __always_inline void nj_count_error(__u32 reason)
{
	__u64 *count = bpf_map_lookup_elem(&nj_errors, &reason);

	if (count)
		*count += 1;
}

static __always_inline union nj_any_event *nj_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&nj_event_scratch, &zero);
}

/* Fills the common header from the current task. */
static __always_inline void nj_fill_header(struct nj_event_header *hdr, __u16 kind, __u16 size)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	hdr->kind = kind;
	hdr->size = size;
	hdr->flags = 0;
	hdr->ktime_ns = bpf_ktime_get_boot_ns();
	hdr->tgid = pid_tgid >> 32;
	hdr->pid = (__u32)pid_tgid;
	hdr->cgroup_id = bpf_get_current_cgroup_id();
}

/*
 * Wake the consumer once per this much backlog. A wakeup per record (the default) costs
 * microseconds of irq_work and scheduling on every event; userspace also drains on a short
 * timer, which bounds latency when traffic is light.
 */
#define NJ_WAKEUP_BYTES (256 * 1024)

/*
 * Copies a built record into the ring buffer; a full buffer is counted, never silent.
 *
 * Only the record that takes the backlog across a multiple of NJ_WAKEUP_BYTES wakes the
 * consumer. Waking on every record once the backlog passed the mark made each event behind a
 * busy consumer pay a forced wakeup: with the agent stopped, a connect storm ran at 1.56x of
 * no monitor, 1.08x with this rule. A crossing two CPUs race past unseen is caught at the
 * next multiple, or by the consumer's timer.
 */
static __always_inline void nj_submit(void *event, __u32 size, __u16 kind)
{
	__u64 waiting = bpf_ringbuf_query(&nj_events, BPF_RB_AVAIL_DATA);
	__u64 flags = waiting / NJ_WAKEUP_BYTES != (waiting + size) / NJ_WAKEUP_BYTES
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_output(&nj_events, event, size, flags) == 0)
		return;
	nj_count_error(NJ_ERR_RINGBUF_FULL);
	__u32 key = kind;
	__u64 *lost = bpf_map_lookup_elem(&nj_lost_by_kind, &key);
	if (lost)
		*lost += 1;
}

static __always_inline bool nj_is_agent(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == nj_agent_tgid;
}

#endif
