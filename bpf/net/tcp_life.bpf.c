// SPDX-License-Identifier: GPL-2.0-only
/*
 * TCP connection lifecycle from sock_ops on the cgroup v2 root: establishment (active and
 * passive), close with the kernel's own counters (smoothed RTT, retransmits, bytes acked and
 * received), and failures (refused, reset, timed out) from the socket error at close.
 *
 * sock_ops callbacks often run in softirq, on behalf of whichever task the CPU was running;
 * so the owner of a connection is never read here, and nothing is kept per connection. The
 * records name the socket by its cookie; the agent joins them to the owner that the connect
 * hook (in the connecting task) or the accept tracepoint (in the accepting task) reported.
 */
#include "nj.bpf.h"
#include "tcp_conn.bpf.h"

#define NJ_TCP_CLOSE_STATE 7 /* TCP_CLOSE */

/* Copies addresses and ports from the callback context (IPv4 in the first 4 bytes). */
static __always_inline void nj_tcp_addrs(struct bpf_sock_ops *skops, struct nj_tcp_event *ev)
{
	ev->family = skops->family;
	if (skops->family == NJ_AF_INET) {
		__u32 local = skops->local_ip4, remote = skops->remote_ip4;
		__builtin_memcpy(ev->saddr, &local, 4);
		__builtin_memcpy(ev->daddr, &remote, 4);
	} else {
		/* Context fields: one 32-bit word at a time, at constant offsets. */
		__u32 w[4];
		w[0] = skops->local_ip6[0];
		w[1] = skops->local_ip6[1];
		w[2] = skops->local_ip6[2];
		w[3] = skops->local_ip6[3];
		__builtin_memcpy(ev->saddr, w, 16);
		w[0] = skops->remote_ip6[0];
		w[1] = skops->remote_ip6[1];
		w[2] = skops->remote_ip6[2];
		w[3] = skops->remote_ip6[3];
		__builtin_memcpy(ev->daddr, w, 16);
	}
	ev->sport = skops->local_port;
	/* remote_port is the 16-bit port in network order, in a 32-bit big-endian word. */
	ev->dport = bpf_ntohl(skops->remote_port);
}

/* The full TCP socket behind the callback (a BTF pointer), or NULL. */
static __always_inline struct tcp_sock *nj_tcp_sock(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	return sk ? bpf_skc_to_tcp_sock(sk) : NULL;
}

/* The cgroup the socket was created in (a passive socket inherits its listener's). */
static __always_inline __u64 nj_sock_cgroup(struct bpf_sock_ops *skops)
{
	struct tcp_sock *tp = nj_tcp_sock(skops);
	if (!tp)
		return 0;
	/* tp is a BTF pointer: plain loads, no probe-read call per hop. */
	struct cgroup *cgroup = tp->inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup;
	return cgroup ? cgroup->kn->id : 0;
}

static __always_inline __u32 nj_sock_error(struct bpf_sock_ops *skops)
{
	struct tcp_sock *tp = nj_tcp_sock(skops);
	return tp ? tp->inet_conn.icsk_inet.sk.sk_err : 0;
}

/*
 * Builds and sends a record of the socket behind @skops. The header names no task (the agent
 * fills in the owner), except a passive connection's listener cgroup at NJ_KIND_TCP_FOLLOW.
 */
static __always_inline void nj_tcp_report(struct bpf_sock_ops *skops, __u16 kind, __u8 direction,
					  __u8 old_state)
{
	struct nj_tcp_event ev = {};
	__u64 now = bpf_ktime_get_boot_ns();

	ev.hdr.kind = kind;
	ev.hdr.size = sizeof(ev);
	ev.hdr.ktime_ns = now;
	ev.cookie = bpf_get_socket_cookie(skops);
	ev.direction = direction;
	ev.old_state = old_state;
	if (kind == NJ_KIND_TCP_FOLLOW) {
		/* An announcement: the agent keeps its times and cgroup, nothing else. */
		ev.hdr.cgroup_id = nj_sock_cgroup(skops);
		ev.start_ns = now;
		ev.established_ns = now;
		nj_submit(&ev, sizeof(ev), kind);
		return;
	}
	if (kind == NJ_KIND_TCP_ESTABLISHED)
		ev.established_ns = now;
	if (skops->is_fullsock) {
		ev.srtt_us = skops->srtt_us >> 3;
		ev.total_retrans = skops->total_retrans;
		ev.segs_in = skops->segs_in;
		ev.segs_out = skops->segs_out;
		ev.bytes_acked = skops->bytes_acked;
		ev.bytes_received = skops->bytes_received;
	}
	if (kind == NJ_KIND_TCP_CLOSE)
		ev.error = nj_sock_error(skops);
	nj_tcp_addrs(skops, &ev);
	nj_submit(&ev, sizeof(ev), kind);
}

SEC("sockops")
int nj_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;

	if (skops->family != NJ_AF_INET && skops->family != NJ_AF_INET6)
		return 1;
	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/*
		 * Every connect is followed to its close, the agent's own too: asking whether the
		 * connect hook reported it would cost a map per socket, and the agent drops the
		 * records of connections it was not told about.
		 */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		nj_tcp_report(skops, NJ_KIND_TCP_ESTABLISHED, NJ_TCP_ACTIVE, 0);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/* Announces the connection; the owner is known once accepted. */
		nj_tcp_report(skops, NJ_KIND_TCP_FOLLOW, NJ_TCP_PASSIVE, 0);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == NJ_TCP_CLOSE_STATE)
			nj_tcp_report(skops, NJ_KIND_TCP_CLOSE, 0, (__u8)skops->args[0]);
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
