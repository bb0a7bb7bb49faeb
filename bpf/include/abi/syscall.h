/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Security-relevant syscall records, emitted at syscall exit so each carries its return value.
 * One layout serves the file, credential, ptrace, kill, mount, module, bpf, memfd and namespace
 * kinds; what args[] and the two strings mean is fixed per syscall (see docs/events.md).
 */
#ifndef NJ_ABI_SYSCALL_H
#define NJ_ABI_SYSCALL_H

#include "common.h"
#include "process.h"

/*
 * Slots of each syscall-exit dispatch table (nj_sys_exit_progs by x86-64 number,
 * nj_sys_exit_ia32_progs by ia32 number): above the highest number any hooked syscall has.
 */
#define NJ_SYS_EXIT_SLOTS 512

/*
 * openat's x86-64 number, the one the dispatcher tail-calls with a constant key: opens are
 * the busiest traced syscall, and a constant key makes the tail call a direct jump instead of
 * an indirect one (a retpoline here). Checked against the catalog (crates/loader).
 */
#define NJ_X86_NR_OPENAT 257

/* Words of the bitmaps of traced syscall numbers (nj_sys_exit_*_traced), one bit a slot. */
#define NJ_SYS_EXIT_WORDS (NJ_SYS_EXIT_SLOTS / 64)

/* Which syscall produced the record (nj_syscall_event.syscall). Never renumbered. */
enum nj_syscall_id {
	NJ_SYS_OPEN = 1,
	NJ_SYS_OPENAT = 2,
	NJ_SYS_OPENAT2 = 3,
	NJ_SYS_UNLINK = 10,
	NJ_SYS_UNLINKAT = 11,
	NJ_SYS_RMDIR = 12,
	NJ_SYS_RENAME = 13,
	NJ_SYS_RENAMEAT = 14,
	NJ_SYS_RENAMEAT2 = 15,
	NJ_SYS_CHMOD = 16,
	NJ_SYS_FCHMODAT = 17,
	NJ_SYS_FCHMOD = 18,
	NJ_SYS_CHOWN = 19,
	NJ_SYS_LCHOWN = 20,
	NJ_SYS_FCHOWNAT = 21,
	NJ_SYS_FCHOWN = 22,
	NJ_SYS_SETUID = 30,
	NJ_SYS_SETGID = 31,
	NJ_SYS_SETREUID = 32,
	NJ_SYS_SETREGID = 33,
	NJ_SYS_SETRESUID = 34,
	NJ_SYS_SETRESGID = 35,
	NJ_SYS_CAPSET = 36,
	NJ_SYS_PTRACE = 40,
	NJ_SYS_KILL = 41,
	NJ_SYS_TKILL = 42,
	NJ_SYS_TGKILL = 43,
	NJ_SYS_MOUNT = 50,
	NJ_SYS_UMOUNT2 = 51,
	NJ_SYS_INIT_MODULE = 52,
	NJ_SYS_FINIT_MODULE = 53,
	NJ_SYS_BPF = 54,
	NJ_SYS_MEMFD_CREATE = 55,
	NJ_SYS_SETNS = 56,
	NJ_SYS_UNSHARE = 57,
	NJ_SYS_CONNECT = 60,
	NJ_SYS_ACCEPT = 61,
	NJ_SYS_ACCEPT4 = 62,
	NJ_SYS_BIND = 63,
	NJ_SYS_LISTEN = 64,
};

/* Longest string argument kept by syscall records (paths, memfd names, fs types). */
#define NJ_STR_MAX NJ_PATH_MAX

/* Generic syscall record. 608 bytes. */
struct nj_syscall_event {
	struct nj_event_header hdr;
	/* Syscall return value (negative errno on failure). */
	__s64 ret;
	/* Raw integer arguments of the syscall, in syscall order; pointers are zeroed. */
	__u64 args[6];
	/* enum nj_syscall_id */
	__u32 syscall;
	__u32 _pad0;
	/* First and second string argument, NUL-terminated (path, new path, mount target...). */
	char str0[NJ_STR_MAX];
	char str1[NJ_STR_MAX];
};

/*
 * Record of the path syscalls (file_unlink, file_rename, file_chmod, file_chown): the generic
 * record, plus the directory each relative path argument was resolved against (the cwd, or
 * the directory descriptor of an *at call), resolved by the kernel at syscall exit. Empty for
 * an absolute path or no path. 1120 bytes.
 */
struct nj_path_event {
	struct nj_syscall_event sys;
	/* Base directory of str0, of str1. */
	char dir0[NJ_PATH_MAX];
	char dir1[NJ_PATH_MAX];
};

/* Address families as the kernel numbers them (AF_*). */
#define NJ_AF_UNIX 1
#define NJ_AF_INET 2
#define NJ_AF_INET6 10
#define NJ_UNIX_PATH_MAX 108

/* A socket address, normalised. Port in host byte order. 136 bytes. */
struct nj_sockaddr {
	__u16 family;
	__u16 port;
	__u32 scope_id;
	/* IPv4 in the first 4 bytes, network byte order; IPv6 all 16. */
	__u8 addr[16];
	/* AF_UNIX path; abstract names start with a NUL byte, as in sockaddr_un. */
	char unix_path[NJ_UNIX_PATH_MAX];
	__u32 _pad0;
};

/* connect/accept/accept4/bind/listen. 336 bytes. */
struct nj_sock_event {
	struct nj_event_header hdr;
	__s64 ret;
	/* enum nj_syscall_id */
	__u32 syscall;
	/* The socket's file descriptor (for accept: the new one on success). */
	__s32 fd;
	/* Socket type (SOCK_STREAM=1, SOCK_DGRAM=2...) and protocol, read from the socket. */
	__u16 sock_type;
	__u16 protocol;
	/* listen backlog; accept4 flags. */
	__u32 extra;
	/* The socket's cookie (joins nj_tcp_event records); 0 when none was assigned yet. */
	__u64 cookie;
	struct nj_sockaddr local;
	struct nj_sockaddr remote;
};

/* NJ_KIND_CONNECT_POLICY: a connect() matched a connect rule (cgroup/connect4, connect6). */
struct nj_connect_policy_event {
	struct nj_event_header hdr;
	/* NJ_CONNECT_AUDIT (allowed, reported) or NJ_CONNECT_DENY (refused with EPERM). */
	__u32 action;
	__u32 rule_id;
	struct nj_sockaddr remote;
};

#endif
