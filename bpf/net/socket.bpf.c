// SPDX-License-Identifier: GPL-2.0-only
/*
 * Socket syscalls with addresses: connect, accept/accept4, bind and listen. Addresses come from
 * the kernel's struct sock (the address a connect or bind took, the local port a connect was
 * given, the peer of an accepted socket); only a failed call's address is read from the
 * caller's memory.
 */
#include "nj.bpf.h"
#include "sock.bpf.h"
#include "syscall.bpf.h"
#include "tcp_conn.bpf.h"

static __always_inline struct nj_sock_event *nj_begin_sock_event(nj_sys_exit_ctx *ctx,
								  __u16 kind, __u32 syscall,
								  __s32 fd)
{
	union nj_any_event *any = nj_scratch();
	if (!any)
		return NULL;
	struct nj_sock_event *ev = &any->sock;

	__builtin_memset(ev, 0, sizeof(*ev));
	nj_fill_header(&ev->hdr, kind, sizeof(*ev));
	if (nj_syscall_is_ia32(ctx))
		ev->hdr.flags |= NJ_FLAG_IA32_SYSCALL;
	ev->ret = NJ_RET(ctx);
	ev->syscall = syscall;
	ev->fd = fd;
	return ev;
}

#define NJ_EINPROGRESS 115

/*
 * connect(fd, addr, addrlen) and bind(fd, addr, addrlen). The address reported is the one the
 * kernel acted on whenever the socket holds it: the caller's buffer can only be read now, after
 * the kernel copied it, and another thread of the caller may have rewritten it since (a
 * connect to one address reported as another: the "phantom" TOCTOU attack on syscall
 * monitors). A call that failed leaves the socket without it; that address is read as passed.
 */
static __always_inline int nj_addr_exit(nj_sys_exit_ctx *ctx, const __u64 *args, __u16 kind,
					__u32 syscall)
{
	struct nj_sock_event *ev = nj_begin_sock_event(ctx, kind, syscall, args[0]);
	if (!ev)
		return 0;
	bool connect = kind == NJ_KIND_SOCK_CONNECT;
	struct nj_sockaddr *addr = connect ? &ev->remote : &ev->local;
	bool took_effect = NJ_RET(ctx) == 0 || (connect && NJ_RET(ctx) == -NJ_EINPROGRESS);
	bool from_kernel = false;
	struct sock *sk = nj_sock_from_fd(ctx, args[0]);
	if (sk) {
		nj_read_sock(sk, ev);
		ev->cookie = nj_sock_cookie(sk);
		from_kernel = took_effect && nj_sock_kernel_addr(sk, addr, connect);
	}
	if (!from_kernel)
		nj_read_user_sockaddr(addr, args[1], args[2]);
	nj_submit(ev, sizeof(*ev), kind);
	return 0;
}

/*
 * The accepting task owns a passive TCP connection from now on: reports it established under
 * this task (the agent's own accepts too, so that the agent knows to drop their records).
 */
static __always_inline void nj_claim_accepted(struct sock *sk, __u64 cookie)
{
	/* No cookie: established before sock_ops was attached, so never announced. */
	if (cookie == 0)
		return;
	struct nj_tcp_event ev = {};
	nj_fill_header(&ev.hdr, NJ_KIND_TCP_ESTABLISHED, sizeof(ev));
	ev.cookie = cookie;
	ev.direction = NJ_TCP_PASSIVE;
	ev.owner = NJ_TCP_OWNER_ACCEPT;
	ev.family = nj_sock_addrs(sk, ev.saddr, ev.daddr, &ev.sport, &ev.dport);
	struct tcp_sock *tp = nj_kcast(sk, struct tcp_sock);
	ev.srtt_us = NJ_KREAD(tp, srtt_us) >> 3;
	ev.bytes_received = NJ_KREAD(tp, bytes_received);
	ev.bytes_acked = NJ_KREAD(tp, bytes_acked);
	ev.segs_in = NJ_KREAD(tp, segs_in);
	ev.segs_out = NJ_KREAD(tp, segs_out);
	ev.total_retrans = NJ_KREAD(tp, total_retrans);
	nj_submit(&ev, sizeof(ev), NJ_KIND_TCP_ESTABLISHED);
}

/*
 * accept(fd, addr, addrlen) and accept4(fd, addr, addrlen, flags): the new socket's view.
 * @report is false for the agent's own accepts: their connections are forgotten, not reported.
 */
static __always_inline int nj_accept_exit(nj_sys_exit_ctx *ctx, const __u64 *args,
					  __u32 syscall, bool report)
{
	struct sock *accepted = NULL;
	__u64 cookie = 0;

	if (NJ_RET(ctx) >= 0) {
		accepted = nj_sock_from_fd(ctx, NJ_RET(ctx));
		__u16 protocol = accepted ? NJ_KREAD(accepted, sk_protocol) : 0;
		if (accepted)
			cookie = nj_sock_cookie(accepted);
		if (protocol == IPPROTO_TCP)
			nj_claim_accepted(accepted, cookie);
	}
	if (!report)
		return 0;
	struct nj_sock_event *ev =
		nj_begin_sock_event(ctx, NJ_KIND_SOCK_ACCEPT, syscall, NJ_RET(ctx));
	if (!ev)
		return 0;
	if (syscall == NJ_SYS_ACCEPT4)
		ev->extra = args[3];
	/* The accepted socket, looked up once above; a failed accept names the listener. */
	struct sock *sk = NJ_RET(ctx) >= 0 ? accepted : nj_sock_from_fd(ctx, args[0]);
	if (sk) {
		nj_read_sock(sk, ev);
		ev->cookie = sk == accepted ? cookie : nj_sock_cookie(sk);
	}
	nj_submit(ev, sizeof(*ev), NJ_KIND_SOCK_ACCEPT);
	return 0;
}

/* listen(fd, backlog) */
static __always_inline int nj_listen_exit(nj_sys_exit_ctx *ctx, const __u64 *args)
{
	struct nj_sock_event *ev =
		nj_begin_sock_event(ctx, NJ_KIND_SOCK_LISTEN, NJ_SYS_LISTEN, args[0]);
	if (!ev)
		return 0;
	ev->extra = args[1];
	struct sock *sk = nj_sock_from_fd(ctx, args[0]);
	if (sk)
		nj_read_sock(sk, ev);
	nj_submit(ev, sizeof(*ev), NJ_KIND_SOCK_LISTEN);
	return 0;
}

/* Declares the exit program of a socket syscall that takes its arguments in registers. */
#define NJ_SOCK_SYSCALL(name, call)                                                       \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		__u64 args[6];                                                            \
		if (!nj_syscall_args(ctx, args))                                          \
			return 0;                                                         \
		return call;                                                              \
	}

NJ_SOCK_SYSCALL(connect, nj_addr_exit(ctx, args, NJ_KIND_SOCK_CONNECT, NJ_SYS_CONNECT))
NJ_SOCK_SYSCALL(bind, nj_addr_exit(ctx, args, NJ_KIND_SOCK_BIND, NJ_SYS_BIND))
NJ_SOCK_SYSCALL(listen, nj_listen_exit(ctx, args))

/*
 * The claim in nj_accept_exit runs for the agent too (nj_syscall_args refuses it), but not for
 * another 32-bit syscall of the same number.
 */
#define NJ_ACCEPT_SYSCALL(name, id)                                                       \
	NJ_SYSCALL_EXIT(name)                                                             \
	{                                                                                 \
		__u64 args[6] = {}; /* read only when traced, but all initialized */      \
		struct task_struct *task = nj_syscall_task(ctx);                          \
		if (nj_ia32_misrouted(task, nj_syscall_regs(ctx)))                        \
			return 0;                                                         \
		bool traced = nj_task_syscall_args(task, ctx, args);                      \
		return nj_accept_exit(ctx, args, id, traced);                             \
	}

NJ_ACCEPT_SYSCALL(accept, NJ_SYS_ACCEPT)
NJ_ACCEPT_SYSCALL(accept4, NJ_SYS_ACCEPT4)

/* socketcall(call, args): ia32's multiplexed socket entry (linux/net.h SYS_* numbers). */
#define NJ_SYS_SOCKETCALL_BIND 2
#define NJ_SYS_SOCKETCALL_CONNECT 3
#define NJ_SYS_SOCKETCALL_LISTEN 4
#define NJ_SYS_SOCKETCALL_ACCEPT 5
#define NJ_SYS_SOCKETCALL_ACCEPT4 18

/*
 * 32-bit programs may make their socket calls through socketcall, whose arguments are an
 * array of 32-bit words in user memory: read them, then report the call as its own syscall
 * would be (flagged ia32_syscall). Only in the ia32 table; x86-64 has no socketcall.
 */
NJ_SYSCALL_EXIT(socketcall)
{
	__u64 regs[6];

	if (!nj_syscall_args(ctx, regs))
		return 0;
	__u32 call = regs[0];
	__u32 words[4] = {};
	/* Exactly the call's words (listen 2, accept4 4, the others 3): no read past them. */
	__u32 size = call == NJ_SYS_SOCKETCALL_ACCEPT4 ? 16 : call == NJ_SYS_SOCKETCALL_LISTEN ? 8 : 12;
	if (bpf_probe_read_user(words, size & 31, (void *)regs[1]) != 0)
		return 0;
	__u64 args[6] = { words[0], words[1], words[2], words[3] };

	switch (call) {
	case NJ_SYS_SOCKETCALL_BIND:
		return nj_addr_exit(ctx, args, NJ_KIND_SOCK_BIND, NJ_SYS_BIND);
	case NJ_SYS_SOCKETCALL_CONNECT:
		return nj_addr_exit(ctx, args, NJ_KIND_SOCK_CONNECT, NJ_SYS_CONNECT);
	case NJ_SYS_SOCKETCALL_LISTEN:
		return nj_listen_exit(ctx, args);
	case NJ_SYS_SOCKETCALL_ACCEPT:
		return nj_accept_exit(ctx, args, NJ_SYS_ACCEPT, true);
	case NJ_SYS_SOCKETCALL_ACCEPT4:
		return nj_accept_exit(ctx, args, NJ_SYS_ACCEPT4, true);
	default:
		return 0;
	}
}

char LICENSE[] SEC("license") = "GPL";
