/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Process lifecycle records: exec, fork, exit (sched_process_* tracepoints). */
#ifndef NJ_ABI_PROCESS_H
#define NJ_ABI_PROCESS_H

#include "common.h"

/* Longest path kept (bytes, NUL included); longer paths are cut and flagged. */
#define NJ_PATH_MAX 256
/* argv bytes kept: NUL-separated arguments as in /proc/<pid>/cmdline. */
#define NJ_ARGS_MAX 1024
#define NJ_COMM_LEN 16

/* Credentials of a task at the time of the event. 32 bytes. */
struct nj_creds {
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 suid;
	__u32 sgid;
	__u32 fsuid;
	/* Login uid from audit (4294967295 when unset). */
	__u32 auid;
};

/* NJ_KIND_PROCESS_EXEC: a task replaced its image (sched_process_exec). */
struct nj_exec_event {
	struct nj_event_header hdr;
	struct nj_creds creds;
	__u32 ppid;
	/* Bytes of argv the process really has (may exceed args_len when truncated). */
	__u32 args_size;
	/* Bytes of argv copied into args. */
	__u32 args_len;
	__u32 _pad0;
	/* task->start_time of the process (ns since boot, monotonic). */
	__u64 start_time_ns;
	/* Effective, permitted capability sets after exec. */
	__u64 cap_effective;
	__u64 cap_permitted;
	char comm[NJ_COMM_LEN];
	/* Resolved path of the executable (mm->exe_file). */
	char binary[NJ_PATH_MAX];
	/* Working directory at exec (fs->pwd). */
	char cwd[NJ_PATH_MAX];
	char args[NJ_ARGS_MAX];
};

/* NJ_KIND_PROCESS_FORK: a new process (not a thread) was created. hdr describes the parent. */
struct nj_fork_event {
	struct nj_event_header hdr;
	__u32 child_tgid;
	__u32 _pad0;
	__u64 child_start_time_ns;
	char comm[NJ_COMM_LEN];
};

/* NJ_KIND_PROCESS_EXIT: the last thread of a process exited. */
struct nj_exit_event {
	struct nj_event_header hdr;
	__u32 ppid;
	/* Exit status as wait(2) reports it: code in bits 8-15, terminating signal in 0-6. */
	__u32 exit_code;
	__u64 start_time_ns;
	char comm[NJ_COMM_LEN];
};

/*
 * NJ_KIND_CGROUP_MKDIR: a cgroup v2 directory was created (cgroup/cgroup_mkdir). Lets userspace
 * name a new cgroup id before the first process in it does anything, without a tree walk.
 */
struct nj_cgroup_event {
	struct nj_event_header hdr;
	/* Id (inode) of the new cgroup and its depth below the root. */
	__u64 id;
	__u32 level;
	__u32 _pad0;
	/* Path relative to the cgroup2 mount, as /proc/<pid>/cgroup shows it. */
	char path[NJ_PATH_MAX];
};

#endif
