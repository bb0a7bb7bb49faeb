/* SPDX-License-Identifier: GPL-2.0-only */
/* Socket addresses: from user sockaddr buffers and from the kernel's struct sock. */
#ifndef NJ_SOCK_BPF_H
#define NJ_SOCK_BPF_H

#include "nj.bpf.h"
#include "path.bpf.h"
#include "syscall.bpf.h"

static __always_inline __u16 nj_ntohs(__u16 v)
{
	return __builtin_bswap16(v);
}

/* Normalises a user sockaddr of @len bytes; unknown families keep only the family. */
static __always_inline void nj_read_user_sockaddr(struct nj_sockaddr *out, __u64 uaddr, __u64 len)
{
	__u16 family = 0;

	if (!uaddr || len < sizeof(family) ||
	    bpf_probe_read_user(&family, sizeof(family), (void *)uaddr) != 0)
		return;
	out->family = family;
	if (family == NJ_AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin = {};
		bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr);
		out->port = nj_ntohs(sin.sin_port);
		__builtin_memcpy(out->addr, &sin.sin_addr.s_addr, 4);
	} else if (family == NJ_AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6 = {};
		bpf_probe_read_user(&sin6, sizeof(sin6), (void *)uaddr);
		out->port = nj_ntohs(sin6.sin6_port);
		out->scope_id = sin6.sin6_scope_id;
		__builtin_memcpy(out->addr, &sin6.sin6_addr, 16);
	} else if (family == NJ_AF_UNIX && len > sizeof(family)) {
		__u64 path_len = len - sizeof(family);
		if (path_len > NJ_UNIX_PATH_MAX)
			path_len = NJ_UNIX_PATH_MAX;
		bpf_probe_read_user(out->unix_path, path_len & 0x7f, (void *)(uaddr + sizeof(family)));
	}
}

/* The struct sock behind a socket descriptor of the task returning to @ctx, or NULL. */
static __always_inline struct sock *nj_sock_from_fd(nj_sys_exit_ctx *ctx, __s64 fd)
{
	struct file *file = nj_syscall_file(ctx, fd);
	if (!file)
		return NULL;
	/* private_data is a void *: cast to what a socket file keeps there. */
	struct socket *socket = nj_kcast(NJ_KREAD(file, private_data), struct socket);
	if (!socket)
		return NULL;
	return NJ_KREAD(socket, sk);
}

/*
 * An inet socket's addresses (16 bytes each, IPv4 in the first 4) and ports (host order), as
 * the kernel holds them now. Returns the family; a socket of another family is left unread.
 */
static __always_inline __u16 nj_sock_addrs(struct sock *sk, __u8 *local, __u8 *remote,
					   __u16 *local_port, __u16 *remote_port)
{
	__u16 family = NJ_KREAD(sk, __sk_common.skc_family);

	/* Explicit sizes: BPF_CORE_READ_INTO would size the copy by one array element. */
	if (family == NJ_AF_INET) {
		nj_kcopy(local, 4, &sk->__sk_common.skc_rcv_saddr);
		nj_kcopy(remote, 4, &sk->__sk_common.skc_daddr);
	} else if (family == NJ_AF_INET6) {
		nj_kcopy(local, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		nj_kcopy(remote, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		return family;
	}
	*local_port = NJ_KREAD(sk, __sk_common.skc_num);
	*remote_port = nj_ntohs(NJ_KREAD(sk, __sk_common.skc_dport));
	return family;
}

/* Type, protocol, and local and remote addresses of an inet socket. */
static __always_inline void nj_read_sock(struct sock *sk, struct nj_sock_event *ev)
{
	ev->sock_type = NJ_KREAD(sk, sk_type);
	ev->protocol = NJ_KREAD(sk, sk_protocol);
	__u16 family = nj_sock_addrs(sk, ev->local.addr, ev->remote.addr, &ev->local.port,
				     &ev->remote.port);
	if (family == NJ_AF_INET || family == NJ_AF_INET6) {
		ev->local.family = family;
		ev->remote.family = family;
	}
}

/*
 * A unix socket's bound name (family and path) into @out; false when it has none. A connected
 * socket's peer carries the name the listener was bound to.
 */
static __always_inline bool nj_unix_name(struct sock *sk, struct nj_sockaddr *out)
{
	struct unix_sock *unix_sock = nj_kcast(sk, struct unix_sock);
	struct unix_address *addr = NJ_KREAD(unix_sock, addr);
	if (!addr)
		return false;
	/* len counts sun_family too (and a path name's NUL; an abstract name has none). */
	__s32 len = NJ_KREAD(addr, len) - (__s32)sizeof(__u16);
	if (len <= 0)
		return false;
	if (len > NJ_UNIX_PATH_MAX)
		len = NJ_UNIX_PATH_MAX;
	out->family = NJ_AF_UNIX;
	/* name is a flexible array of struct sockaddr_un, whose path follows the 2-byte family. */
	const void *path = (const void *)addr + bpf_core_field_offset(struct unix_address, name) +
			   sizeof(__u16);
	bpf_probe_read_kernel(out->unix_path, len & 0x7f, path);
	return true;
}

/*
 * The address a connect (@connect) or bind on @sk ended up with, as the kernel holds it, into
 * @out (nj_read_sock has filled an inet socket's already); false when the socket holds none.
 */
static __always_inline bool nj_sock_kernel_addr(struct sock *sk, struct nj_sockaddr *out,
						bool connect)
{
	if (out->family == NJ_AF_INET || out->family == NJ_AF_INET6) {
		/* A link-local peer is scoped to the device the connect bound the socket to. */
		if (out->family == NJ_AF_INET6 && out->addr[0] == 0xfe && (out->addr[1] & 0xc0) == 0x80)
			out->scope_id = NJ_KREAD(sk, __sk_common.skc_bound_dev_if);
		/* A bind always has a local port (the kernel picks one for port 0). */
		return !connect || out->port != 0;
	}
	if (NJ_KREAD(sk, __sk_common.skc_family) != NJ_AF_UNIX)
		return false;
	if (!connect)
		return nj_unix_name(sk, out);
	struct sock *peer = NJ_KREAD(nj_kcast(sk, struct unix_sock), peer);
	return peer && nj_unix_name(peer, out);
}

#endif
