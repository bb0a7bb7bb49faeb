/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Umbrella header for bindgen: everything in the kernel/user ABI. */
#ifndef NJ_ABI_H
#define NJ_ABI_H

#include "common.h"
#include "process.h"
#include "syscall.h"
#include "maps.h"
#include "flow.h"

#endif
