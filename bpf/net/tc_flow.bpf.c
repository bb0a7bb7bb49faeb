// SPDX-License-Identifier: GPL-2.0-only
/*
 * Per-flow accounting on TC ingress and egress (tcx on kernels >= 6.6, a clsact qdisc
 * otherwise): packets, bytes, TCP flags and first/last time per 5-tuple, direction and
 * interface, in an LRU hash that userspace turns into flow records. Never drops or changes a
 * packet: always TC_ACT_UNSPEC, so the next program or the stack decides.
 */
#include "nj.bpf.h"
#include "abi/flow.h"

#define NJ_ETH_P_IP 0x0800
#define NJ_ETH_P_IPV6 0x86DD
#define NJ_TC_ACT_UNSPEC -1

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nj_flow_key);
	__type(value, struct nj_flow_stats);
} nj_flows SEC(".maps");

/*
 * Flows created in nj_flows (per CPU). Userspace knows what it reported and removed and what
 * is still live; the rest of what was created is what the LRU evicted unreported.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} nj_flows_created SEC(".maps");

/* Reads the L4 ports (or ICMP type/code and id) at @off; returns the TCP flags, if any. */
static __always_inline __u32 nj_read_l4(struct __sk_buff *skb, __u32 off, __u8 proto,
					struct nj_flow_key *key)
{
	__u8 l4[14] = {};

	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, off, l4, 14) != 0)
			return 0;
		key->sport = ((__u16)l4[0] << 8) | l4[1];
		key->dport = ((__u16)l4[2] << 8) | l4[3];
		return l4[13];
	}
	if (proto == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, off, l4, 4) == 0) {
			key->sport = ((__u16)l4[0] << 8) | l4[1];
			key->dport = ((__u16)l4[2] << 8) | l4[3];
		}
		return 0;
	}
	if (proto == IPPROTO_ICMP || proto == 58 /* IPPROTO_ICMPV6 */) {
		if (bpf_skb_load_bytes(skb, off, l4, 6) == 0) {
			key->sport = ((__u16)l4[0] << 8) | l4[1];
			key->dport = ((__u16)l4[4] << 8) | l4[5];
		}
	}
	return 0;
}

static __always_inline int nj_account(struct __sk_buff *skb, __u8 direction)
{
	struct nj_flow_key key = {};
	__u32 off = 14; /* Ethernet header; TC on an Ethernet-type device sees it. */
	__u32 tcp_flags = 0;

	if (skb->protocol == bpf_htons(NJ_ETH_P_IP)) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, off, ip, sizeof(ip)) != 0)
			return NJ_TC_ACT_UNSPEC;
		key.family = NJ_AF_INET;
		key.protocol = ip[9];
		__builtin_memcpy(key.saddr, &ip[12], 4);
		__builtin_memcpy(key.daddr, &ip[16], 4);
		/* Only the first fragment carries ports. */
		__u16 frag = ((__u16)ip[6] << 8) | ip[7];
		if ((frag & 0x1fff) == 0)
			tcp_flags = nj_read_l4(skb, off + (ip[0] & 0xf) * 4, key.protocol, &key);
	} else if (skb->protocol == bpf_htons(NJ_ETH_P_IPV6)) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, off, ip6, sizeof(ip6)) != 0)
			return NJ_TC_ACT_UNSPEC;
		key.family = NJ_AF_INET6;
		/* Extension headers are not walked: their flows count under that next-header. */
		key.protocol = ip6[6];
		__builtin_memcpy(key.saddr, &ip6[8], 16);
		__builtin_memcpy(key.daddr, &ip6[24], 16);
		tcp_flags = nj_read_l4(skb, off + 40, key.protocol, &key);
	} else {
		return NJ_TC_ACT_UNSPEC;
	}
	key.direction = direction;
	key.ifindex = skb->ifindex;

	__u64 now = bpf_ktime_get_boot_ns();
	struct nj_flow_stats *stats = bpf_map_lookup_elem(&nj_flows, &key);
	if (!stats) {
		struct nj_flow_stats fresh = { .first_ns = now };
		/* NOEXIST: another CPU may have created it meanwhile; then use theirs. */
		if (bpf_map_update_elem(&nj_flows, &key, &fresh, BPF_NOEXIST) == 0) {
			__u32 zero = 0;
			__u64 *created = bpf_map_lookup_elem(&nj_flows_created, &zero);
			if (created)
				*created += 1;
		}
		stats = bpf_map_lookup_elem(&nj_flows, &key);
		if (!stats)
			return NJ_TC_ACT_UNSPEC;
	}
	__sync_fetch_and_add(&stats->packets, 1);
	__sync_fetch_and_add(&stats->bytes, skb->len);
	stats->last_ns = now;
	if (tcp_flags)
		__sync_fetch_and_or(&stats->tcp_flags, tcp_flags);
	return NJ_TC_ACT_UNSPEC;
}

SEC("classifier")
int nj_tc_ingress(struct __sk_buff *skb)
{
	return nj_account(skb, NJ_FLOW_INGRESS);
}

SEC("classifier")
int nj_tc_egress(struct __sk_buff *skb)
{
	return nj_account(skb, NJ_FLOW_EGRESS);
}

char LICENSE[] SEC("license") = "GPL";
