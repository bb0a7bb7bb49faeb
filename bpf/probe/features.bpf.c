// SPDX-License-Identifier: GPL-2.0-only
/*
 * Feature probes: tiny programs loaded once at start-up to learn what this kernel really
 * allows. A kernel can list a program type yet refuse to load it (fentry/fexit and BPF-LSM
 * under lockdown), so only a real load tells. Never attached.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "kread.bpf.h"

SEC("fentry/do_unlinkat")
int BPF_PROG(nj_probe_fentry)
{
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(nj_probe_lsm, struct file *file)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(nj_probe_tp_btf)
{
	return 0;
}

/* bpf_rdonly_cast from a raw tracepoint, the way the hook programs use it (kread.bpf.h). */
SEC("raw_tp/sys_exit")
int nj_probe_kfunc_cast(void *ctx)
{
	struct task_struct *task = nj_kcast(bpf_get_current_task(), struct task_struct);

	return task->pid == 0;
}

char LICENSE[] SEC("license") = "GPL";
