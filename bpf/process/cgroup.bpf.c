// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup lifecycle: cgroup_mkdir on the unified (v2) hierarchy. Container runtimes create a
 * container's cgroup before they start its first process, so this record reaches userspace
 * ahead of every event from inside the container and names its cgroup id at once.
 */
#include "nj.bpf.h"

/* hierarchy_id of the cgroup v2 (default) hierarchy; v1 hierarchies count from 1. */
#define NJ_CGROUP2_HIERARCHY 0

SEC("tracepoint/cgroup/cgroup_mkdir")
int nj_cgroup_mkdir(struct trace_event_raw_cgroup *ctx)
{
	if (ctx->root != NJ_CGROUP2_HIERARCHY)
		return 0;

	union nj_any_event *any = nj_scratch();
	if (!any)
		return 0;
	struct nj_cgroup_event *ev = &any->cgroup;

	nj_fill_header(&ev->hdr, NJ_KIND_CGROUP_MKDIR, sizeof(*ev));
	ev->id = ctx->id;
	ev->level = ctx->level;
	ev->_pad0 = 0;
	/* __data_loc: the low 16 bits are the string's offset from the start of the record. */
	__u32 offset = ctx->__data_loc_path & 0xffff;
	long n = bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), (void *)ctx + offset);
	if (n < 0) {
		ev->path[0] = 0;
		ev->hdr.flags |= NJ_FLAG_READ_FAILED;
	} else if (n == sizeof(ev->path)) {
		ev->hdr.flags |= NJ_FLAG_PATH_TRUNCATED;
	}
	nj_submit(ev, sizeof(*ev), NJ_KIND_CGROUP_MKDIR);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
