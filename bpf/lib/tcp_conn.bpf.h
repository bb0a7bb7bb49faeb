/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The TCP connection records, shared by the connect hook (owner of active connections), the
 * accept tracepoint (owner of passive ones) and sock_ops (lifecycle). Each names its
 * connection by the socket cookie; the agent joins them (abi/flow.h, NJ_KIND_TCP_FOLLOW).
 */
#ifndef NJ_TCP_CONN_BPF_H
#define NJ_TCP_CONN_BPF_H

#include "nj.bpf.h"
#include "kread.bpf.h"

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
