/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Per-flow accounting kept by the TC programs in an LRU hash, read by userspace. */
#ifndef NJ_ABI_FLOW_H
#define NJ_ABI_FLOW_H

#include "common.h"

/* nj_flow_key.direction */
#define NJ_FLOW_INGRESS 0
#define NJ_FLOW_EGRESS 1

/* TCP flag bits as on the wire (nj_flow_stats.tcp_flags). */
#define NJ_TCP_FIN 0x01
#define NJ_TCP_SYN 0x02
#define NJ_TCP_RST 0x04
#define NJ_TCP_PSH 0x08
#define NJ_TCP_ACK 0x10
#define NJ_TCP_URG 0x20

/* A flow as one interface sees it in one direction. 48 bytes. */
struct nj_flow_key {
	/* IPv4 in the first 4 bytes; network byte order. */
	__u8 saddr[16];
	__u8 daddr[16];
	/* Host byte order; ICMP: type and code in sport, echo id in dport. */
	__u16 sport;
	__u16 dport;
	/* AF_INET (2) or AF_INET6 (10); IPPROTO_* */
	__u8 family;
	__u8 protocol;
	__u8 direction;
	__u8 _pad0;
	__u32 ifindex;
	__u32 _pad1;
};

/* Counters of one flow. 48 bytes. */
struct nj_flow_stats {
	__u64 packets;
	/* skb->len: the frame as TC sees it, link-layer header included. */
	__u64 bytes;
	/*
	 * bpf_ktime_get_boot_ns() of the first packet, and of the first packet in the latest
	 * jiffy (scheduler tick) that saw one: last_ns trails the latest packet by less than a
	 * tick (4 ms at HZ=250), and a busy flow reads the clock once a tick, not per packet.
	 */
	__u64 first_ns;
	__u64 last_ns;
	/* OR of the TCP flags seen. */
	__u32 tcp_flags;
	/* Low 32 bits of the jiffy last_ns was taken in. */
	__u32 last_jiffy;
	/*
	 * Egress only: the cgroup of the socket that sent the flow's first packet, when it was
	 * sent from this network namespace (0 otherwise). Attributes flows no socket event
	 * named, such as unconnected UDP.
	 */
	__u64 cgroup_id;
};

/* nj_connect_rule.action */
#define NJ_CONNECT_AUDIT 1
#define NJ_CONNECT_DENY 2

/*
 * Key of nj_connect_rules, an LPM trie: the scope (a cgroup id, native byte order; 0 for
 * rules that apply everywhere) and the destination port (network order; 0 = any port) are
 * always matched in full, then the address by prefix. IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d) so one trie serves both families. prefixlen counts the 64 scope bits, the
 * 16 port bits and the address bits. 32 bytes.
 */
struct nj_connect_rule_key {
	__u32 prefixlen;
	__u8 scope[8];
	__u16 port;
	__u8 addr[16];
	__u16 _pad0;
};

/* Deepest cgroup levels searched for a scoped connect rule (a pod's container is ~5 deep). */
#define NJ_CONNECT_SCOPE_DEPTH 12

/* Value of nj_connect_rules. */
struct nj_connect_rule {
	/* NJ_CONNECT_AUDIT or NJ_CONNECT_DENY */
	__u32 action;
	/* Index of the rule in the agent's configuration, reported with each match. */
	__u32 rule_id;
};

/*
 * Value of nj_connect_config, an array of one: how many rules the connect hook has to match,
 * so that with none (the default) it skips the trie, and with no scoped rule the walk up
 * the caller's cgroup ancestors. 8 bytes.
 */
struct nj_connect_config {
	/* Rules in nj_connect_rules. */
	__u32 rules;
	/* Of those, rules scoped to a cgroup. */
	__u32 scoped;
};

/* Most blocklist entries (sizes the per-entry counters). */
#define NJ_BLOCKLIST_MAX 1024

/* Key of nj_blocklist, an LPM trie over source addresses (IPv4-mapped for IPv4). 20 bytes. */
struct nj_cidr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of nj_blocklist. */
struct nj_block_entry {
	/* Index into nj_block_stats; the entry's position in the configuration. */
	__u32 rule_id;
	/* Non-zero: count only (audit mode), never drop. */
	__u32 audit;
};

/*
 * Key of nj_xdp_sources: the source network of packets XDP saw on one interface, cut to the
 * configured prefix length (IPv4-mapped for IPv4). 24 bytes.
 */
struct nj_source_key {
	__u32 ifindex;
	/* Prefix length in the address's own family (24 for an IPv4 /24). */
	__u32 prefixlen;
	__u8 addr[16];
};

/* Packet and byte counters (per-CPU values in nj_block_stats and nj_xdp_if_stats). */
struct nj_counter {
	__u64 packets;
	__u64 bytes;
};

/* nj_tcp_event.direction */
#define NJ_TCP_ACTIVE 1
#define NJ_TCP_PASSIVE 2

/* nj_tcp_event.owner: how the owning process was learned. */
/* Not yet: a passive connection nobody has accepted; tgid 0, cgroup of the socket. */
#define NJ_TCP_OWNER_NONE 0
/* The task that called connect() (cgroup/connect4 and connect6, in its own context). */
#define NJ_TCP_OWNER_CONNECT 1
/* The task that accepted it (accept/accept4 exit tracepoint). */
#define NJ_TCP_OWNER_ACCEPT 2

/*
 * The TCP connection records, all keyed by the socket cookie. The kernel keeps no state per
 * connection: the agent joins them (crates/loader/src/tcp_conns.rs), because the hash-map
 * updates, deletes and lookups that did it here were a fifth to a third of a connection's BPF time.
 *
 * NJ_KIND_TCP_FOLLOW: a connection begins. Active: from the connect hook, in the connecting
 * task (hdr is the owner; start_ns the connect). Passive: at establishment, from sock_ops
 * (hdr.tgid 0, hdr.cgroup_id the listener's cgroup; start_ns and established_ns both then).
 * Never an event of its own.
 *
 * NJ_KIND_TCP_ESTABLISHED: active, from sock_ops at establishment (hdr.tgid 0: softirq runs
 * on behalf of any task; established_ns now). Passive, when accepted (hdr is the accepting
 * task, the new owner; start_ns and established_ns 0: the agent has them).
 *
 * NJ_KIND_TCP_CLOSE: the socket reached TCP_CLOSE (after FIN, RST, a refused or timed-out
 * connect), from sock_ops: hdr.tgid 0, direction and owner 0, the rest the agent's.
 *
 * Counters are the kernel's (struct tcp_sock) at the time of the record. 136 bytes.
 */
struct nj_tcp_event {
	struct nj_event_header hdr;
	__u64 cookie;
	__u64 start_ns;
	/* 0: never established (a failed connect). */
	__u64 established_ns;
	__u64 bytes_acked;
	__u64 bytes_received;
	/* Smoothed RTT in microseconds (the kernel keeps it << 3; this is unscaled). */
	__u32 srtt_us;
	__u32 total_retrans;
	__u32 segs_in;
	__u32 segs_out;
	/* sk_err at close: ECONNREFUSED, ETIMEDOUT, ECONNRESET...; 0 for an orderly close. */
	__u32 error;
	__u8 direction;
	__u8 owner;
	/* TCP state before TCP_CLOSE (TCP_SYN_SENT = 2: the connect failed). */
	__u8 old_state;
	/* AF_INET or AF_INET6 */
	__u8 family;
	/* IPv4 in the first 4 bytes; network byte order. */
	__u8 saddr[16];
	__u8 daddr[16];
	/* Host byte order. */
	__u16 sport;
	__u16 dport;
	__u32 _pad0;
};

#endif
