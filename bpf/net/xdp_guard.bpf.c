// SPDX-License-Identifier: GPL-2.0-only
/*
 * XDP on chosen interfaces: per-interface and per-source-network packet and byte counters,
 * and the threat-defence blocklist, an LPM trie of source CIDRs whose packets are dropped (or, in audit mode, only
 * counted) before the stack allocates anything for them. Counts per entry.
 */
#include "nj.bpf.h"

#define NJ_ETH_P_IP 0x0800
#define NJ_ETH_P_IPV6 0x86DD

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NJ_BLOCKLIST_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nj_cidr_key);
	__type(value, struct nj_block_entry);
} nj_blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NJ_BLOCKLIST_MAX);
	__type(key, __u32);
	__type(value, struct nj_counter);
} nj_block_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct nj_counter);
} nj_xdp_if_stats SEC(".maps");

/*
 * Per source network (a /24 and a /64 by default), per interface. An LRU: a flood from many
 * networks keeps the busiest recent ones; the per-interface totals stay exact.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nj_source_key);
	__type(value, struct nj_counter);
} nj_xdp_sources SEC(".maps");

const volatile __u32 nj_xdp_source_prefix4 = 24;
const volatile __u32 nj_xdp_source_prefix6 = 64;

static __always_inline void nj_count(struct nj_counter *c, __u64 bytes)
{
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

SEC("xdp")
int nj_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	__u32 ifindex = ctx->ingress_ifindex;

	struct nj_counter *ifc = bpf_map_lookup_elem(&nj_xdp_if_stats, &ifindex);
	if (!ifc) {
		struct nj_counter zero = {};
		bpf_map_update_elem(&nj_xdp_if_stats, &ifindex, &zero, BPF_NOEXIST);
		ifc = bpf_map_lookup_elem(&nj_xdp_if_stats, &ifindex);
	}
	nj_count(ifc, len);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	struct nj_cidr_key key = { .prefixlen = 128 };
	__u32 is4 = 0;
	if (eth->h_proto == bpf_htons(NJ_ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->saddr, 4);
		is4 = 1;
	} else if (eth->h_proto == bpf_htons(NJ_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
	} else {
		return XDP_PASS;
	}

	/* Source network: the mapped address with host bits cleared. */
	struct nj_source_key src = { .ifindex = ifindex };
	__u32 plen = is4 ? nj_xdp_source_prefix4 : nj_xdp_source_prefix6;
	__u32 bits = is4 ? 96 + plen : plen;
	src.prefixlen = plen;
	#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u32 keep = bits > 8 * i ? bits - 8 * i : 0;
		__u8 mask = keep >= 8 ? 0xff : (__u8)(0xff << (8 - keep));
		src.addr[i] = key.addr[i] & (keep ? mask : 0);
	}
	struct nj_counter *sc = bpf_map_lookup_elem(&nj_xdp_sources, &src);
	if (!sc) {
		struct nj_counter zero = {};
		bpf_map_update_elem(&nj_xdp_sources, &src, &zero, BPF_NOEXIST);
		sc = bpf_map_lookup_elem(&nj_xdp_sources, &src);
	}
	nj_count(sc, len);

	struct nj_block_entry *entry = bpf_map_lookup_elem(&nj_blocklist, &key);
	if (!entry)
		return XDP_PASS;
	__u32 rule = entry->rule_id;
	nj_count(bpf_map_lookup_elem(&nj_block_stats, &rule), len);
	return entry->audit ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
