//! Benchmarks' kernel side: the drain benchmark's generator, which emits bursts of records
//! through the real ring-buffer path when the benchmark process calls getppid(), and the hook
//! floor, an empty program on the agent's syscall hook.

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{Program, ProgramError, RawTracePoint, TracePoint};
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
    let mut ebpf = load_and_attach(
        tgid,
        ringbuf_bytes,
        "nj_bench_burst",
        |prog: &mut TracePoint| {
            prog.load()?;
            prog.attach("syscalls", "sys_enter_getppid").map(drop)
        },
    )?;
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
    // The object's ring buffer is never written here: one page.
    let ebpf = load_and_attach(
        0,
        4096,
        "nj_bench_hook_floor",
        |prog: &mut RawTracePoint| {
            prog.load()?;
            prog.attach("sys_exit").map(drop)
        },
    )?;
    Ok(HookFloor { _ebpf: ebpf })
}

/// Loads drain.bpf.o, the benchmarks' object (`nj_bench_tgid` = `tgid`, a ring buffer of
/// `ringbuf_bytes`), and loads and attaches its program `name` with `attach`; the other
/// program stays unloaded.
fn load_and_attach<P>(
    tgid: u32,
    ringbuf_bytes: u32,
    name: &'static str,
    attach: impl FnOnce(&mut P) -> Result<(), ProgramError>,
) -> Result<Ebpf, LoadError>
where
    for<'a> &'a mut Program: TryInto<&'a mut P, Error = ProgramError>,
{
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
        name: name.into(),
        source,
    };
    let program = ebpf.program_mut(name).ok_or_else(|| LoadError::Map {
        name: "programs",
        detail: format!("{name} missing from drain.bpf.o"),
    })?;
    attach(program.try_into().map_err(program_error)?).map_err(program_error)?;
    Ok(ebpf)
}
