// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process lifecycle: exec, fork and exit, from the scheduler tracepoints. These three keep the
 * userspace process cache exact; everything else Nightjar reports is attributed through it.
 */
#include "nj.bpf.h"
#include "path.bpf.h"
#include "task.bpf.h"

/*
 * sched_process_exec fires in the new image's context after a successful execve/execveat
 * (fs/exec.c: exec_binprm), so current->mm already holds the new argv and exe_file.
 */
SEC("tracepoint/sched/sched_process_exec")
int nj_process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	union nj_any_event *any = nj_scratch();
	if (!any)
		return 0;
	struct nj_exec_event *ev = &any->exec;
	struct task_struct *task = nj_current_task();

	nj_fill_header(&ev->hdr, NJ_KIND_PROCESS_EXEC, sizeof(*ev));
	nj_task_creds(task, &ev->creds);
	ev->ppid = nj_task_ppid(task);
	ev->start_time_ns = nj_task_start_time(task);
	ev->cap_effective = BPF_CORE_READ(task, cred, cap_effective.val);
	ev->cap_permitted = BPF_CORE_READ(task, cred, cap_permitted.val);
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));

	/* BTF pointers (plain loads) for what the path walk starts from: see kread.bpf.h. */
	struct task_struct *btf_task = bpf_get_current_task_btf();
	struct mm_struct *mm = btf_task->mm;
	struct file *exe = mm->exe_file;
	ev->binary[0] = 0;
	if (exe)
		ev->hdr.flags |= nj_resolve_path(__builtin_preserve_access_index(&exe->f_path),
						 ev->binary);
	ev->cwd[0] = 0;
	struct fs_struct *fs = btf_task->fs;
	ev->hdr.flags |= nj_resolve_path(__builtin_preserve_access_index(&fs->pwd), ev->cwd) &
			 ~NJ_FLAG_PATH_TRUNCATED;

	__u64 arg_start = mm->arg_start;
	__u64 arg_end = mm->arg_end;
	__u64 size = arg_end > arg_start ? arg_end - arg_start : 0;
	__u32 len = size > NJ_ARGS_MAX ? NJ_ARGS_MAX : size;

	ev->args_size = size > 0xffffffff ? 0xffffffff : size;
	ev->args_len = 0;
	if (len > 0 && len <= NJ_ARGS_MAX) {
		if (bpf_probe_read_user(ev->args, len, (void *)arg_start) == 0) {
			ev->args_len = len;
		} else {
			ev->hdr.flags |= NJ_FLAG_READ_FAILED;
			nj_count_error(NJ_ERR_READ_FAILED);
		}
	}
	if (size > NJ_ARGS_MAX)
		ev->hdr.flags |= NJ_FLAG_ARGS_TRUNCATED;

	nj_submit(ev, sizeof(*ev), NJ_KIND_PROCESS_EXEC);
	return 0;
}

/*
 * sched_process_fork fires in the parent after copy_process(); the raw tracepoint hands us both
 * task_structs so threads (CLONE_THREAD: same tgid) can be told apart from new processes.
 */
SEC("raw_tracepoint/sched_process_fork")
int nj_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	/*
	 * args is a flexible array in vmlinux.h; index it as plain memory so no CO-RE
	 * relocation is recorded against it (Aya rejects index 1 of a zero-length array).
	 */
	struct task_struct *child = (struct task_struct *)((__u64 *)ctx)[1];
	__u32 child_tgid = BPF_CORE_READ(child, tgid);

	if (BPF_CORE_READ(child, pid) != child_tgid)
		return 0;

	union nj_any_event *any = nj_scratch();
	if (!any)
		return 0;
	struct nj_fork_event *ev = &any->fork;

	nj_fill_header(&ev->hdr, NJ_KIND_PROCESS_FORK, sizeof(*ev));
	ev->child_tgid = child_tgid;
	ev->_pad0 = 0;
	ev->child_start_time_ns = BPF_CORE_READ(child, start_boottime);
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	nj_submit(ev, sizeof(*ev), NJ_KIND_PROCESS_FORK);
	return 0;
}

/*
 * sched_process_exit fires for every exiting thread (kernel/exit.c: do_exit); only the last
 * thread of a group (group_dead) ends the process.
 */
SEC("tracepoint/sched/sched_process_exit")
int nj_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	struct task_struct *task = nj_current_task();
	bool group_dead;

	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = BPF_CORE_READ(ctx, group_dead);
	else
		group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;
	if (!group_dead)
		return 0;

	union nj_any_event *any = nj_scratch();
	if (!any)
		return 0;
	struct nj_exit_event *ev = &any->exit;

	nj_fill_header(&ev->hdr, NJ_KIND_PROCESS_EXIT, sizeof(*ev));
	ev->ppid = nj_task_ppid(task);
	ev->exit_code = BPF_CORE_READ(task, exit_code);
	ev->start_time_ns = nj_task_start_time(task);
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	nj_submit(ev, sizeof(*ev), NJ_KIND_PROCESS_EXIT);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
