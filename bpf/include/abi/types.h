/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Fixed-width integer types for the ABI headers. BPF programs get them from vmlinux.h; bindgen
 * and any userspace C get them from here. Kept tiny on purpose: the ABI uses nothing else.
 */
#ifndef NJ_ABI_TYPES_H
#define NJ_ABI_TYPES_H

#ifndef __VMLINUX_H__
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
#endif

#endif
