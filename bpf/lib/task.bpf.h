/* SPDX-License-Identifier: GPL-2.0-only */
/* Reading identity from task_struct: parent, credentials, start time. */
#ifndef NJ_TASK_BPF_H
#define NJ_TASK_BPF_H

#include "nj.bpf.h"

static __always_inline struct task_struct *nj_current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

/* Process (thread-group) id of the real parent. */
static __always_inline __u32 nj_task_ppid(struct task_struct *task)
{
	return BPF_CORE_READ(task, real_parent, tgid);
}

/*
 * Start time of the task's thread group in ns since boot, suspend included (start_boottime),
 * the clock /proc/<pid>/stat reports, so seeded and live processes compare.
 */
static __always_inline __u64 nj_task_start_time(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

static __always_inline void nj_task_creds(struct task_struct *task, struct nj_creds *creds)
{
	const struct cred *cred = BPF_CORE_READ(task, cred);

	creds->uid = BPF_CORE_READ(cred, uid.val);
	creds->gid = BPF_CORE_READ(cred, gid.val);
	creds->euid = BPF_CORE_READ(cred, euid.val);
	creds->egid = BPF_CORE_READ(cred, egid.val);
	creds->suid = BPF_CORE_READ(cred, suid.val);
	creds->sgid = BPF_CORE_READ(cred, sgid.val);
	creds->fsuid = BPF_CORE_READ(cred, fsuid.val);
	creds->auid = (__u32)-1;
	if (bpf_core_field_exists(task->loginuid))
		creds->auid = BPF_CORE_READ(task, loginuid.val);
}

#endif
