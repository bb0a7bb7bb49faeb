//! Benchmarks' kernel side: the drain benchmark's generator, which emits bursts of records
//! through the real ring-buffer path when the benchmark process calls getppid(), and the hook
//! floor, an empty program on the agent's syscall hook.

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::counters::KernelCounters;
use crate::objects;
use crate::probes::{check_privileges, LoadError};

/// Records emitted per getppid() call (NJ_BENCH_BURST in bpf/bench/drain.bpf.c).
pub const BURST: u64 = 32;

/// The loaded generator; dropping it detaches.
#[derive(Debug)]
pub struct DrainGenerator {
    _ebpf: Ebpf,
}

/// Loads the generator for process `tgid` with a ring buffer of `ringbuf_bytes`; returns it
/// with the ring buffer and the loss counters.
pub fn load_drain_generator(
    tgid: u32,
    ringbuf_bytes: u32,
) -> Result<(DrainGenerator, RingBuf<MapData>, KernelCounters), LoadError> {
    check_privileges()?;
    crate::features::ensure_kernel_filesystems().map_err(LoadError::Filesystem)?;
    let btf = Btf::from_sys_fs().map_err(|e| LoadError::NoBtf(e.to_string()))?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global("nj_bench_tgid", &tgid, true)
        .map_max_entries("nj_events", ringbuf_bytes)
        .load(objects::DRAIN_BENCH)
        .map_err(LoadError::Object)?;
    let program_error = |source| LoadError::Program {
        name: "nj_bench_burst".into(),
        source,
    };
    let prog: &mut TracePoint = ebpf
        .program_mut("nj_bench_burst")
        .ok_or_else(|| LoadError::Map {
            name: "programs",
            detail: "nj_bench_burst missing from drain.bpf.o".into(),
        })?
        .try_into()
        .map_err(program_error)?;
    prog.load().map_err(program_error)?;
    prog.attach("syscalls", "sys_enter_getppid")
        .map_err(program_error)?;
    let take = |ebpf: &mut Ebpf, name: &'static str| {
        ebpf.take_map(name).ok_or(LoadError::Map {
            name,
            detail: "missing from drain.bpf.o".into(),
        })
    };
    let ring = RingBuf::try_from(take(&mut ebpf, "nj_events")?).map_err(|e| LoadError::Map {
        name: "nj_events",
        detail: e.to_string(),
    })?;
    let per_cpu = |map| {
        PerCpuArray::try_from(map).map_err(|e: aya::maps::MapError| LoadError::Map {
            name: "nj_errors",
            detail: e.to_string(),
        })
    };
    let errors = per_cpu(take(&mut ebpf, "nj_errors")?)?;
    let by_kind = per_cpu(take(&mut ebpf, "nj_lost_by_kind")?)?;
    Ok((
        DrainGenerator { _ebpf: ebpf },
        ring,
        KernelCounters::new(errors, by_kind),
    ))
}

/// The empty program on the agent's syscall hook, attached; dropping it detaches.
#[derive(Debug)]
pub struct HookFloor {
    _ebpf: Ebpf,
}

/// Attaches an empty program to the sys_exit raw tracepoint (the agent's syscall dispatcher
/// hook), so a benchmark can measure what the hook alone costs every syscall.
pub fn attach_hook_floor() -> Result<HookFloor, LoadError> {
    check_privileges()?;
    crate::features::ensure_kernel_filesystems().map_err(LoadError::Filesystem)?;
    let btf = Btf::from_sys_fs().map_err(|e| LoadError::NoBtf(e.to_string()))?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        // The object's ring buffer is never written here: keep it at one page.
        .map_max_entries("nj_events", 4096)
        .load(objects::DRAIN_BENCH)
        .map_err(LoadError::Object)?;
    let program_error = |source| LoadError::Program {
        name: "nj_bench_hook_floor".into(),
        source,
    };
    let prog: &mut RawTracePoint = ebpf
        .program_mut("nj_bench_hook_floor")
        .ok_or_else(|| LoadError::Map {
            name: "programs",
            detail: "nj_bench_hook_floor missing from drain.bpf.o".into(),
        })?
        .try_into()
        .map_err(program_error)?;
    prog.load().map_err(program_error)?;
    prog.attach("sys_exit").map_err(program_error)?;
    Ok(HookFloor { _ebpf: ebpf })
}
