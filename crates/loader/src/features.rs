//! What this kernel lets us do, learned at start-up by trying.
//!
//! Some answers need a real load: a locked-down kernel lists fentry and BPF-LSM program types
//! yet refuses to load them. Each probe records a reason so `nightjar doctor` can say why a
//! fallback is in use.

use std::fmt;
use std::path::Path;

use aya::maps::MapType;
use aya::programs::{FEntry, Lsm, ProgramType};
use aya::sys::{is_map_supported, is_program_supported};
use aya::util::KernelVersion;
use aya::{Btf, EbpfLoader};

use crate::{kfunc, objects};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: &'static str,
    pub available: bool,
    /// Why not, or what was found.
    pub detail: String,
}

/// Everything probed, in a fixed order.
#[derive(Debug, Clone)]
pub struct KernelFeatures {
    pub kernel: String,
    pub probes: Vec<Probe>,
}

impl KernelFeatures {
    pub fn get(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some_and(|p| p.available)
    }

    /// Fallbacks in force, as (wanted, used instead) pairs.
    pub fn fallbacks(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if !self.has("fentry") {
            out.push((
                "fentry/fexit on kernel functions",
                "the sys_exit raw tracepoint (arguments from the saved registers)",
            ));
        }
        if !self.has("bpf_lsm") {
            out.push((
                "BPF-LSM hooks for enforcement",
                "bpf_send_signal from tracepoints, cgroup/connect verdicts",
            ));
        }
        if !self.has("kfunc_cast") {
            out.push((
                "kernel structs read through bpf_rdonly_cast pointers",
                "one bpf_probe_read_kernel call per field",
            ));
        }
        if !self.has("tcx") {
            out.push(("tcx links for TC programs", "netlink clsact qdisc filters"));
        }
        out
    }

    /// Probes the running kernel. Never fails: a probe that errors is reported unavailable.
    pub fn probe() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let btf = Btf::from_sys_fs();
        let mut probes = vec![Probe {
            name: "btf",
            available: btf.is_ok(),
            detail: match &btf {
                Ok(_) => "/sys/kernel/btf/vmlinux".into(),
                Err(e) => format!("no kernel BTF ({e}); CO-RE programs cannot load"),
            },
        }];
        probes.push(map_probe("ringbuf", MapType::RingBuf));
        probes.push(map_probe("lpm_trie", MapType::LpmTrie));
        probes.push(map_probe("lru_hash", MapType::LruHash));
        probes.push(map_probe("percpu_array", MapType::PerCpuArray));
        probes.push(map_probe("stack_trace", MapType::StackTrace));
        probes.push(program_probe("tracepoint", ProgramType::TracePoint));
        probes.push(program_probe("raw_tracepoint", ProgramType::RawTracePoint));
        probes.push(program_probe("tc", ProgramType::SchedClassifier));
        probes.push(program_probe("xdp", ProgramType::Xdp));
        probes.push(program_probe("sock_ops", ProgramType::SockOps));
        let tcx = KernelVersion::current()
            .map(|v| v >= KernelVersion::new(6, 6, 0))
            .unwrap_or(false);
        probes.push(Probe {
            name: "tcx",
            available: tcx,
            detail: if tcx {
                "kernel >= 6.6".into()
            } else {
                "kernel < 6.6".into()
            },
        });
        match &btf {
            Ok(btf) => {
                probes.push(load_probe("fentry", |loader| {
                    let prog: &mut FEntry = program(loader, "nj_probe_fentry")?;
                    prog.load("do_unlinkat", btf).map_err(|e| e.to_string())
                }));
                let mut lsm = load_probe("bpf_lsm", |loader| {
                    let prog: &mut Lsm = program(loader, "nj_probe_lsm")?;
                    prog.load("file_open", btf).map_err(|e| e.to_string())
                });
                if lsm.available && !lsm_enabled() {
                    lsm.available = false;
                    lsm.detail = "loads, but \"bpf\" is not in /sys/kernel/security/lsm".into();
                }
                probes.push(lsm);
                probes.push(kfunc_cast_probe(btf));
                probes.push(load_probe("tp_btf", |loader| {
                    let prog: &mut aya::programs::BtfTracePoint =
                        program(loader, "nj_probe_tp_btf")?;
                    prog.load("sched_process_exec", btf)
                        .map_err(|e| e.to_string())
                }));
            }
            Err(_) => {
                for name in ["fentry", "bpf_lsm", "kfunc_cast", "tp_btf"] {
                    probes.push(Probe {
                        name,
                        available: false,
                        detail: "needs kernel BTF".into(),
                    });
                }
            }
        }
        let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        probes.push(Probe {
            name: "lockdown",
            available: !lockdown.contains("[integrity]") && !lockdown.contains("[confidentiality]"),
            detail: lockdown,
        });
        probes.push(mount_probe("bpffs", "/sys/fs/bpf", "bpf"));
        probes.push(mount_probe("tracefs", "/sys/kernel/tracing", "tracefs"));
        Self { kernel, probes }
    }
}

impl fmt::Display for KernelFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kernel {}", self.kernel)?;
        for p in &self.probes {
            let mark = if p.available { "yes" } else { "no " };
            writeln!(f, "  {mark}  {:<15} {}", p.name, p.detail)?;
        }
        let fallbacks = self.fallbacks();
        if !fallbacks.is_empty() {
            writeln!(f, "fallbacks in use:")?;
            for (wanted, instead) in fallbacks {
                writeln!(f, "  {wanted} -> {instead}")?;
            }
        }
        Ok(())
    }
}

fn map_probe(name: &'static str, map_type: MapType) -> Probe {
    match is_map_supported(map_type) {
        Ok(available) => Probe {
            name,
            available,
            detail: if available { "" } else { "map type refused" }.into(),
        },
        Err(e) => Probe {
            name,
            available: false,
            detail: e.to_string(),
        },
    }
}

fn program_probe(name: &'static str, program_type: ProgramType) -> Probe {
    match is_program_supported(program_type) {
        Ok(available) => Probe {
            name,
            available,
            detail: if available {
                ""
            } else {
                "program type refused"
            }
            .into(),
        },
        Err(e) => Probe {
            name,
            available: false,
            detail: e.to_string(),
        },
    }
}

fn program<'a, T>(loader: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    let prog = loader
        .program_mut(name)
        .ok_or_else(|| format!("{name} missing from features.bpf.o"))?;
    prog.try_into()
        .map_err(|_| format!("{name} has an unexpected program type"))
}

/// Loads the probe object and runs `f` on it; the object (and any loaded program) is dropped.
fn load_probe(name: &'static str, f: impl FnOnce(&mut aya::Ebpf) -> Result<(), String>) -> Probe {
    load_probe_from(name, objects::FEATURES, f)
}

fn load_probe_from(
    name: &'static str,
    object: &[u8],
    f: impl FnOnce(&mut aya::Ebpf) -> Result<(), String>,
) -> Probe {
    let result = EbpfLoader::new()
        .load(object)
        .map_err(|e| e.to_string())
        .and_then(|mut ebpf| f(&mut ebpf));
    match result {
        Ok(()) => Probe {
            name,
            available: true,
            detail: "loaded".into(),
        },
        Err(detail) => Probe {
            name,
            available: false,
            detail: format!("refused: {}", first_line(&detail)),
        },
    }
}

/// bpf_rdonly_cast from a tracepoint program, as the hook programs call it (crate::kfunc).
fn kfunc_cast_probe(btf: &Btf) -> Probe {
    let Some(id) = kfunc::rdonly_cast_id(btf) else {
        return Probe {
            name: "kfunc_cast",
            available: false,
            detail: "no bpf_rdonly_cast in the kernel's BTF (added in 6.2)".into(),
        };
    };
    let object = match kfunc::patch_rdonly_cast(objects::FEATURES, id) {
        Ok((object, _)) => object,
        Err(e) => {
            return Probe {
                name: "kfunc_cast",
                available: false,
                detail: format!("features.bpf.o: {e}"),
            }
        }
    };
    let mut probe = load_probe_from("kfunc_cast", object.bytes(), |loader| {
        let prog: &mut aya::programs::RawTracePoint = program(loader, "nj_probe_kfunc_cast")?;
        prog.load().map_err(|e| e.to_string())
    });
    if probe.available {
        probe.detail = format!("bpf_rdonly_cast (BTF id {id}) loaded from a raw tracepoint");
    }
    probe
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn lsm_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|s| s.split(',').any(|l| l.trim() == "bpf"))
        .unwrap_or(false)
}

fn mount_probe(name: &'static str, path: &str, fstype: &str) -> Probe {
    let mounted = is_mounted(path, fstype);
    Probe {
        name,
        available: mounted,
        detail: if mounted {
            path.into()
        } else {
            format!("not mounted at {path}")
        },
    }
}

/// True when `path` is a mount point of type `fstype` (per /proc/self/mounts).
pub fn is_mounted(path: &str, fstype: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|mounts| {
            mounts.lines().any(|line| {
                let mut fields = line.split_whitespace();
                let _source = fields.next();
                fields.next() == Some(path) && fields.next() == Some(fstype)
            })
        })
        .unwrap_or(false)
}

/// Mounts tracefs (tracepoint ids are read from it) and bpffs if they are missing.
pub fn ensure_kernel_filesystems() -> Result<(), String> {
    for (path, fstype) in [("/sys/kernel/tracing", "tracefs"), ("/sys/fs/bpf", "bpf")] {
        if is_mounted(path, fstype) || !Path::new(path).exists() {
            continue;
        }
        let c_path = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
        let c_type = std::ffi::CString::new(fstype).map_err(|e| e.to_string())?;
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                c_type.as_ptr(),
                c_path.as_ptr(),
                c_type.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mounting {fstype} at {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
