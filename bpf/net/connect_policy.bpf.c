// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup/connect4 and cgroup/connect6, attached to the cgroup v2 root so they see every
 * connect() on the host, in the connecting task's own context. Two jobs:
 *  - connect rules: a match against the nj_connect_rules trie is reported, and refused with
 *    EPERM when the rule says deny. Runs before the kernel routes anything, so a denied
 *    connect sends no packet;
 *  - the owner of each TCP connect (process and cgroup) is reported under the socket cookie
 *    (NJ_KIND_TCP_FOLLOW), for the agent to join the sock_ops lifecycle records to.
 */
#include "nj.bpf.h"
#include "tcp_conn.bpf.h"

#define NJ_SOCK_STREAM 1

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nj_connect_rule_key);
	__type(value, struct nj_connect_rule);
} nj_connect_rules SEC(".maps");

/* cgroups that scope at least one rule: the ancestors worth a trie lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} nj_connect_scopes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nj_connect_config);
} nj_connect_config SEC(".maps");

/* Longest match for (scope, port, addr), then for (scope, any port, addr). */
static __always_inline struct nj_connect_rule *nj_match_in(__u64 scope, __u16 port,
							  const __u8 *addr)
{
	struct nj_connect_rule_key key = { .prefixlen = 64 + 16 + 128, .port = port };

	__builtin_memcpy(key.scope, &scope, 8);
	__builtin_memcpy(key.addr, addr, 16);
	struct nj_connect_rule *rule = bpf_map_lookup_elem(&nj_connect_rules, &key);
	if (rule)
		return rule;
	key.port = 0;
	return bpf_map_lookup_elem(&nj_connect_rules, &key);
}

/*
 * Rules scoped to the caller's cgroup or its nearest ancestor with rules win, then rules
 * that apply everywhere. A scope covers its whole subtree: a rule on a pod's cgroup binds
 * every container in it.
 */
static __always_inline struct nj_connect_rule *nj_match(__u16 port, const __u8 *addr)
{
	__u32 zero = 0;
	struct nj_connect_config *config = bpf_map_lookup_elem(&nj_connect_config, &zero);

	/* Every connect on the host passes here: without rules, no lookups at all. */
	if (!config || config->rules == 0)
		return NULL;
	if (config->scoped == 0)
		return nj_match_in(0, port, addr);
	#pragma unroll
	for (int level = NJ_CONNECT_SCOPE_DEPTH; level > 0; level--) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id || !bpf_map_lookup_elem(&nj_connect_scopes, &id))
			continue;
		struct nj_connect_rule *rule = nj_match_in(id, port, addr);
		if (rule)
			return rule;
	}
	return nj_match_in(0, port, addr);
}

/* Returns the verdict for the hook: 1 lets the connect go on, 0 refuses it with EPERM. */
static __always_inline int nj_check(__u16 family, __u16 port_be, const __u8 *addr,
				    __u32 scope_id)
{
	struct nj_connect_rule *rule = nj_match(port_be, addr);
	if (!rule)
		return 1;
	__u32 action = rule->action;

	/*
	 * On the stack, not in the per-CPU scratch buffer: cgroup programs run with only
	 * migration disabled, so a preempting task's program on this CPU could overwrite it.
	 */
	struct nj_connect_policy_event ev = {};
	nj_fill_header(&ev.hdr, NJ_KIND_CONNECT_POLICY, sizeof(ev));
	ev.action = action;
	ev.rule_id = rule->rule_id;
	ev.remote.family = family;
	ev.remote.port = __builtin_bswap16(port_be);
	ev.remote.scope_id = scope_id;
	if (family == NJ_AF_INET)
		__builtin_memcpy(ev.remote.addr, &addr[12], 4);
	else
		__builtin_memcpy(ev.remote.addr, addr, 16);
	nj_submit(&ev, sizeof(ev), NJ_KIND_CONNECT_POLICY);
	return action == NJ_CONNECT_DENY ? 0 : 1;
}

/*
 * Reports who connects a TCP socket, unless it is the agent itself. Only TCP: an MPTCP
 * socket's own cookie never reaches sock_ops (its subflows have theirs), so it would never
 * be closed.
 */
static __always_inline void nj_report_owner(struct bpf_sock_addr *ctx)
{
	if (ctx->type != NJ_SOCK_STREAM || ctx->protocol != IPPROTO_TCP || nj_is_agent())
		return;
	struct nj_tcp_event ev = {};
	nj_fill_header(&ev.hdr, NJ_KIND_TCP_FOLLOW, sizeof(ev));
	ev.cookie = bpf_get_socket_cookie(ctx);
	ev.start_ns = ev.hdr.ktime_ns;
	ev.direction = NJ_TCP_ACTIVE;
	ev.owner = NJ_TCP_OWNER_CONNECT;
	nj_submit(&ev, sizeof(ev), NJ_KIND_TCP_FOLLOW);
}

SEC("cgroup/connect4")
int nj_connect4(struct bpf_sock_addr *ctx)
{
	__u8 addr[16] = {};
	__u32 ip = ctx->user_ip4;

	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip, 4);
	if (!nj_check(NJ_AF_INET, (__u16)ctx->user_port, addr, 0))
		return 0;
	nj_report_owner(ctx);
	return 1;
}

SEC("cgroup/connect6")
int nj_connect6(struct bpf_sock_addr *ctx)
{
	__u32 words[4];

	/* Context fields must be read one 32-bit word at a time at constant offsets. */
	words[0] = ctx->user_ip6[0];
	words[1] = ctx->user_ip6[1];
	words[2] = ctx->user_ip6[2];
	words[3] = ctx->user_ip6[3];
	if (!nj_check(NJ_AF_INET6, (__u16)ctx->user_port, (const __u8 *)words, 0))
		return 0;
	nj_report_owner(ctx);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
