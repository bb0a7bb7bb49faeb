/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Keys and values of maps that userspace reads or writes: loss counters and filters. */
#ifndef NJ_ABI_MAPS_H
#define NJ_ABI_MAPS_H

#include "common.h"

/* Index of nj_errors, a per-CPU array of __u64 counters. */
enum nj_error_reason {
	/* bpf_ringbuf_reserve failed: the consumer fell behind; the event is lost. */
	NJ_ERR_RINGBUF_FULL = 0,
	/* 1 and 2 are retired (the enter->exit pairing map, replaced by saved registers). */
	/* A bpf_probe_read_* failed; the event is sent with NJ_FLAG_READ_FAILED. */
	NJ_ERR_READ_FAILED = 3,
	NJ_ERR_MAX = 8,
};

/* Name of the per-CPU array counting ring-buffer losses by event kind. */
#define NJ_LOST_BY_KIND_MAP "nj_lost_by_kind"

/* Longest path prefix in the file-open filter (bytes). */
#define NJ_PREFIX_MAX 64

/*
 * Key of nj_file_prefixes, an LPM trie over path bytes: prefixlen is in bits (8 per byte).
 * An open is reported when its resolved path starts with any prefix in the trie.
 */
struct nj_prefix_key {
	__u32 prefixlen;
	char path[NJ_PREFIX_MAX];
};

/* Values of nj_file_prefixes and nj_file_topdirs entries. */
enum nj_prefix_mode {
	/* Report every open under the prefix. */
	NJ_PREFIX_ANY_ACCESS = 1,
	/* Report only opens that may write: O_WRONLY, O_RDWR, O_CREAT or O_TRUNC. */
	NJ_PREFIX_WRITE_ONLY = 2,
};

/* Bytes of a top-level directory name kept in struct nj_topdir (NUL included). */
#define NJ_TOPDIR_MAX 16

/* Most distinct top-level directories the file prefixes may name. */
#define NJ_TOPDIRS_MAX 64

/*
 * The first component of a file prefix ("etc" for "/etc/"), cut to NJ_TOPDIR_MAX - 1 bytes
 * and NUL-padded, as two little-endian words. mode is NJ_PREFIX_ANY_ACCESS when any prefix
 * under that directory is, else NJ_PREFIX_WRITE_ONLY, so read-only opens there are dropped
 * as early as opens elsewhere.
 */
struct nj_topdir {
	__u64 name[2];
	__u8 mode;
	__u8 _pad[7];
};

/*
 * The only value of nj_file_topdirs (an array of one): every top-level directory any prefix
 * starts with. An open whose resolved path starts with another one cannot match a prefix and
 * is dropped before its full path is built. A filter, then a scan in order: a handful of
 * entries compare faster than a hash map's lookup, and the name needs no copy
 * (bpf/lib/path.bpf.h).
 */
struct nj_topdirs {
	__u32 count;
	__u32 _pad;
	/*
	 * Bit h of this 256-bit filter is set for each directory whose name hashes to h, so most
	 * names that are no prefix's first component are turned away before the scan. The hash
	 * of name[2]: ((name[0] ^ (name[1] * NJ_TOPDIR_HASH_MUL)) * NJ_TOPDIR_HASH_MUL) >> 56,
	 * in 64-bit wrapping arithmetic, computed alike by the programs and the loader.
	 */
	__u64 filter[4];
	struct nj_topdir dirs[NJ_TOPDIRS_MAX];
};

/* Multiplier of the top-level directory name hash (2^64 / golden ratio, odd). */
#define NJ_TOPDIR_HASH_MUL 0x9E3779B97F4A7C15ULL

#endif
