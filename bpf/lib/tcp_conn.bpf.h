/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The TCP connections Nightjar follows, shared by the connect hook (owner of active
 * connections), the accept tracepoint (owner of passive ones) and sock_ops (lifecycle).
 * Keyed by the socket cookie, which every one of them can name.
 */
#ifndef NJ_TCP_CONN_BPF_H
#define NJ_TCP_CONN_BPF_H

#include "nj.bpf.h"
#include "kread.bpf.h"

/* Bounded: a connection whose close is never seen (connect failed before SYN) ages out. */
#define NJ_TCP_CONNS_MAX 65536

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NJ_TCP_CONNS_MAX);
	/* Per-CPU free lists: every connect on the host updates this map, and the common LRU
	 * list's lock is what an update costs most. Each CPU then evicts from its own share. */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u64);
	__type(value, struct nj_tcp_conn);
} nj_tcp_conns SEC(".maps") __weak;

/*
 * The cookie the kernel gave @sk, read in place: tracepoints may not call
 * bpf_get_socket_cookie. 0 when no program has asked for one yet; sock_ops asks at
 * establishment, so every socket accept() returns has one.
 */
static __always_inline __u64 nj_sock_cookie(struct sock *sk)
{
	return NJ_KREAD(sk, __sk_common.skc_cookie.counter);
}

#endif
