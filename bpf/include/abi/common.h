/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Nightjar kernel/user ABI: the common record header and the event kinds.
 *
 * This header is the single source of truth for records that cross the ring buffer. It is
 * included by the BPF programs and turned into Rust by bindgen (crates/abi). Rules that keep
 * both sides in step: fixed-width types only, explicit padding, every struct a multiple of
 * 8 bytes, no bool/long/bitfield/enum-typed fields. Kind numbers are never reused.
 */
#ifndef NJ_ABI_COMMON_H
#define NJ_ABI_COMMON_H

#include "types.h"

/* Bumped when a record layout changes incompatibly. */
#define NJ_ABI_VERSION 1

/*
 * Immediate of the placeholder call the programs make to the bpf_rdonly_cast kfunc
 * (bpf/lib/kread.bpf.h). The loader replaces it with the kfunc's BTF id in the running
 * kernel before loading; Aya cannot resolve kfunc externs itself.
 */
#define NJ_KFUNC_RDONLY_CAST_IMM 0x6e6a4331

/* Event kinds (nj_event_header.kind). Grouped by decade; a retired number is never reused. */
enum nj_event_kind {
	NJ_KIND_PROCESS_EXEC = 1,
	NJ_KIND_PROCESS_FORK = 2,
	NJ_KIND_PROCESS_EXIT = 3,

	NJ_KIND_FILE_OPEN = 10,
	NJ_KIND_FILE_UNLINK = 11,
	NJ_KIND_FILE_RENAME = 12,
	NJ_KIND_FILE_CHMOD = 13,
	NJ_KIND_FILE_CHOWN = 14,

	NJ_KIND_CRED_CHANGE = 20,
	NJ_KIND_PTRACE = 21,
	NJ_KIND_KILL = 22,

	NJ_KIND_MOUNT = 30,
	NJ_KIND_UMOUNT = 31,
	NJ_KIND_MODULE_LOAD = 32,
	NJ_KIND_BPF = 33,
	NJ_KIND_MEMFD_CREATE = 34,
	NJ_KIND_NAMESPACE = 35,

	NJ_KIND_SOCK_CONNECT = 40,
	NJ_KIND_SOCK_ACCEPT = 41,
	NJ_KIND_SOCK_BIND = 42,
	NJ_KIND_SOCK_LISTEN = 43,
	NJ_KIND_CONNECT_POLICY = 44,
	NJ_KIND_TCP_ESTABLISHED = 45,
	NJ_KIND_TCP_CLOSE = 46,
	/* Internal: a TCP connection begins (nj_tcp_event); the agent joins the others to it. */
	NJ_KIND_TCP_FOLLOW = 47,

	NJ_KIND_CGROUP_MKDIR = 50,

	/* One past the largest kind; sizes the per-kind loss counters. */
	NJ_KIND_MAX = 64,
};

/* nj_event_header.flags bits. */
enum nj_event_flags {
	NJ_FLAG_ARGS_TRUNCATED = 1 << 0,
	NJ_FLAG_PATH_TRUNCATED = 1 << 1,
	NJ_FLAG_PATH2_TRUNCATED = 1 << 2,
	/* A path could not be read (faulted user memory, missing dentry). */
	NJ_FLAG_READ_FAILED = 1 << 3,
	/* The path is as the caller passed it (maybe relative), not resolved by the kernel. */
	NJ_FLAG_PATH_AS_PASSED = 1 << 4,
	/* Made through the 32-bit syscall ABI (int 0x80 or a 32-bit program): ia32 numbers. */
	NJ_FLAG_IA32_SYSCALL = 1 << 5,
};

/* Every record starts with this header. 32 bytes. */
struct nj_event_header {
	__u16 kind;
	/* Size of the whole record in bytes, header included. */
	__u16 size;
	__u32 flags;
	/* bpf_ktime_get_boot_ns() when the event happened (for exits of syscalls: the exit). */
	__u64 ktime_ns;
	/* Thread group id (userspace "pid") and thread id of the task that caused the event. */
	__u32 tgid;
	__u32 pid;
	/* cgroup v2 id (inode of the cgroup directory) of that task. */
	__u64 cgroup_id;
};

#endif
