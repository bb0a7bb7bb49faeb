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

/*
 * The flow key from headers read in place (direct packet access: no helper call per field);
 * packets whose headers are not all in the linear area take the bpf_skb_load_bytes path.
 * Returns false for packets that are not IPv4/IPv6.
 */
static __always_inline bool nj_key_direct(struct __sk_buff *skb, struct nj_flow_key *key,
					  __u32 *tcp_flags)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *l3 = data + 14;

	if (skb->protocol == bpf_htons(NJ_ETH_P_IP)) {
		/* IPv4 without options (ihl 5) plus 14 bytes of L4: the common case. */
		if ((void *)(l3 + 20 + 14) > data_end || (l3[0] & 0xf) != 5)
			return false;
		key->family = NJ_AF_INET;
		key->protocol = l3[9];
		__builtin_memcpy(key->saddr, &l3[12], 4);
		__builtin_memcpy(key->daddr, &l3[16], 4);
		if ((((__u16)l3[6] << 8 | l3[7]) & 0x1fff) != 0)
			return true; /* a later fragment: no ports */
	} else if (skb->protocol == bpf_htons(NJ_ETH_P_IPV6)) {
		if ((void *)(l3 + 40 + 14) > data_end)
			return false;
		key->family = NJ_AF_INET6;
		key->protocol = l3[6];
		__builtin_memcpy(key->saddr, &l3[8], 16);
		__builtin_memcpy(key->daddr, &l3[24], 16);
	} else {
		return false;
	}
	__u8 *l4 = l3 + (key->family == NJ_AF_INET ? 20 : 40);
	if ((void *)(l4 + 14) > data_end)
		return false;
	if (key->protocol == IPPROTO_TCP || key->protocol == IPPROTO_UDP) {
		key->sport = (__u16)l4[0] << 8 | l4[1];
		key->dport = (__u16)l4[2] << 8 | l4[3];
		if (key->protocol == IPPROTO_TCP)
			*tcp_flags = l4[13];
	} else if (key->protocol == IPPROTO_ICMP || key->protocol == 58 /* IPPROTO_ICMPV6 */) {
		key->sport = (__u16)l4[0] << 8 | l4[1];
		key->dport = (__u16)l4[4] << 8 | l4[5];
	}
	return true;
}

/* The flow key through bpf_skb_load_bytes, for any header layout. */
static __always_inline bool nj_key_copied(struct __sk_buff *skb, struct nj_flow_key *key,
					  __u32 *tcp_flags)
{
	__u32 off = 14; /* Ethernet header; TC on an Ethernet-type device sees it. */

	if (skb->protocol == bpf_htons(NJ_ETH_P_IP)) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, off, ip, sizeof(ip)) != 0)
			return false;
		key->family = NJ_AF_INET;
		key->protocol = ip[9];
		__builtin_memcpy(key->saddr, &ip[12], 4);
		__builtin_memcpy(key->daddr, &ip[16], 4);
		/* Only the first fragment carries ports. */
		__u16 frag = ((__u16)ip[6] << 8) | ip[7];
		if ((frag & 0x1fff) == 0)
			*tcp_flags = nj_read_l4(skb, off + (ip[0] & 0xf) * 4, key->protocol, key);
	} else if (skb->protocol == bpf_htons(NJ_ETH_P_IPV6)) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, off, ip6, sizeof(ip6)) != 0)
			return false;
		key->family = NJ_AF_INET6;
		/* Extension headers are not walked: their flows count under that next-header. */
		key->protocol = ip6[6];
		__builtin_memcpy(key->saddr, &ip6[8], 16);
		__builtin_memcpy(key->daddr, &ip6[24], 16);
		*tcp_flags = nj_read_l4(skb, off + 40, key->protocol, key);
	} else {
		return false;
	}
	return true;
}

static __always_inline int nj_account(struct __sk_buff *skb, __u8 direction)
{
	struct nj_flow_key key = {};
	__u32 tcp_flags = 0;

	if (!nj_key_direct(skb, &key, &tcp_flags)) {
		__builtin_memset(&key, 0, sizeof(key));
		tcp_flags = 0;
		if (!nj_key_copied(skb, &key, &tcp_flags))
			return NJ_TC_ACT_UNSPEC;
	}
	key.direction = direction;
	key.ifindex = skb->ifindex;

	/* bpf_jiffies64 is inlined into a load; the clock read costs about 40 ns here. */
	__u32 jiffy = (__u32)bpf_jiffies64();
	struct nj_flow_stats *stats = bpf_map_lookup_elem(&nj_flows, &key);
	if (!stats) {
		__u64 now = bpf_ktime_get_boot_ns();
		struct nj_flow_stats fresh = { .first_ns = now, .last_ns = now, .last_jiffy = jiffy };
		if (direction == NJ_FLOW_EGRESS)
			fresh.cgroup_id = bpf_skb_cgroup_id(skb);
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
	/* Two CPUs may both see a new jiffy and both write: either time is right. */
	if (stats->last_jiffy != jiffy) {
		stats->last_jiffy = jiffy;
		stats->last_ns = bpf_ktime_get_boot_ns();
	}
	/* Flags rarely change within a flow: skip the locked OR when nothing is new. */
	if (tcp_flags && (stats->tcp_flags & tcp_flags) != tcp_flags)
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
