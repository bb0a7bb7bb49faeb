/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reading kernel structures: direct loads through BTF pointers where the kernel allows the
 * bpf_rdonly_cast kfunc (built with NJ_KCAST=1), bpf_probe_read_kernel otherwise.
 *
 * A pointer a program reads out of the fd table or a void * field is a plain number to the
 * verifier, so every field behind it used to cost a helper call (about 45 ns each here, as a
 * program's time divided by its calls). Cast to
 * its BTF type it becomes a pointer the verifier lets the program load through; the JIT turns
 * each such load into one guarded move, a fault reading as zero. The cast itself is inlined
 * by the verifier into a register move. build.rs compiles every program both ways; the loader
 * picks the cast build when the kernel has the kfunc (`nightjar doctor`: kfunc_cast).
 */
#ifndef NJ_KREAD_BPF_H
#define NJ_KREAD_BPF_H

/* Standalone (no maps): the feature probes use it too. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "abi/common.h"

#ifndef NJ_KCAST
#define NJ_KCAST 0
#endif

#define NJ_STRINGIFY_(x) #x
#define NJ_STRINGIFY(x) NJ_STRINGIFY_(x)

#if NJ_KCAST
/*
 * bpf_rdonly_cast(obj, btf_id): a call instruction with src_reg BPF_PSEUDO_KFUNC_CALL (2) and
 * NJ_KFUNC_RDONLY_CAST_IMM as its immediate, written out as raw bytes because Aya 0.14 cannot
 * relocate a kfunc extern; the loader patches the immediate (crates/loader/src/kfunc.rs).
 * Little-endian: opcode 0x85 (BPF_JMP | BPF_CALL), registers byte 0x20, offset 0, immediate.
 */
static __always_inline void *nj_rdonly_cast(const void *obj, __u64 btf_id)
{
	register const void *r1 asm("r1") = obj;
	register __u64 r2 asm("r2") = btf_id;
	register void *r0 asm("r0");

	asm volatile(".quad (" NJ_STRINGIFY(NJ_KFUNC_RDONLY_CAST_IMM) " << 32) | 0x2085"
		     : "=r"(r0), "+r"(r1), "+r"(r2)
		     :
		     : "r3", "r4", "r5", "memory");
	return r0;
}

/* @ptr (any kernel address) as a pointer to @type that the program may load through. */
#define nj_kcast(ptr, type) \
	((type *)nj_rdonly_cast((const void *)(ptr), bpf_core_type_id_kernel(type)))
/* One field of a kernel struct. */
#define NJ_KREAD(ptr, field) ((ptr)->field)
/* @size bytes of a kernel struct into @dst (@src points into a cast struct); 0, as a read. */
#define nj_kcopy(dst, size, src) (__builtin_memcpy((dst), (src), (size)), 0)
#else
#define nj_kcast(ptr, type) ((type *)(ptr))
#define NJ_KREAD(ptr, field) BPF_CORE_READ(ptr, field)
#define nj_kcopy(dst, size, src) bpf_core_read((dst), (size), (src))
#endif

#endif
