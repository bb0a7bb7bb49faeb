//! The BPF objects built by build.rs, embedded in the binary.

/// All hook families linked into one object (shared ring buffer and counters), reading kernel
/// structs through bpf_rdonly_cast (placeholders patched by crate::kfunc before loading).
pub(crate) static NIGHTJAR: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nightjar.bpf.o"));

/// The same programs with probe reads instead, for kernels without bpf_rdonly_cast.
pub(crate) static NIGHTJAR_PROBE_READ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nightjar-probe-read.bpf.o"));

/// Feature probes (fentry, BPF-LSM, tp_btf), loaded only to learn what the kernel allows.
pub(crate) static FEATURES: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/features.bpf.o"));

/// The drain benchmark's generator (bench only; never loaded by the agent).
pub(crate) static DRAIN_BENCH: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/drain.bpf.o"));
