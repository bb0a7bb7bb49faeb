//! XDP: per-interface counters and the source-address blocklist (drop or audit per entry;
//! the live set is [`Blocklist`]).

use std::collections::HashMap;

use aya::maps::{LpmTrie, MapData, PerCpuArray, PerCpuHashMap};
use aya::programs::{Xdp, XdpMode};
use nightjar_abi::nj_source_key;
use nightjar_core::telemetry::{InterfaceLabel, Telemetry};

// The source key is read as raw bytes: ifindex, prefix length, 16 address bytes.
const _: () = assert!(core::mem::size_of::<nj_source_key>() == 24);

use crate::blocklist::Blocklist;
use crate::connect_rules::Cidr;
use crate::probes::{KernelProbes, LoadError};

/// One blocklist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    pub cidr: Cidr,
    /// Count only; never drop.
    pub audit: bool,
}

/// Packets and bytes XDP saw from one source network on one interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceCount {
    pub interface: String,
    /// The source network, cut to the configured prefix length (`10.1.2.0/24`).
    pub source: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Reads the per-interface XDP counters and feeds their growth into [`Telemetry`]; lists the
/// per-source-network counters on request.
pub struct XdpCounters {
    per_interface: PerCpuHashMap<MapData, u32, [u64; 2]>,
    per_source: PerCpuHashMap<MapData, [u8; 24], [u64; 2]>,
    interfaces: HashMap<u32, String>,
    reported: HashMap<u32, [u64; 2]>,
}

impl std::fmt::Debug for XdpCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpCounters")
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

/// Packets and bytes summed over the per-CPU values of a counter.
pub(crate) fn sum(values: impl Iterator<Item = [u64; 2]>) -> [u64; 2] {
    values.fold([0, 0], |acc, v| [acc[0] + v[0], acc[1] + v[1]])
}

impl XdpCounters {
    /// The busiest source networks by bytes, at most `limit`. Not in Prometheus: the set of
    /// sources is unbounded, a label per source would be too.
    pub fn sources(&self, limit: usize) -> Vec<SourceCount> {
        let mut out: Vec<SourceCount> = self
            .per_source
            .iter()
            .filter_map(Result::ok)
            .map(|(key, values)| {
                let [packets, bytes] = sum(values.iter().copied());
                let ifindex = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
                let prefix = u32::from_ne_bytes([key[4], key[5], key[6], key[7]]);
                let mut addr = [0u8; 16];
                addr.copy_from_slice(&key[8..24]);
                let v6 = std::net::Ipv6Addr::from(addr);
                let network = match v6.to_ipv4_mapped() {
                    Some(v4) => std::net::IpAddr::V4(v4),
                    None => std::net::IpAddr::V6(v6),
                };
                SourceCount {
                    interface: self
                        .interfaces
                        .get(&ifindex)
                        .cloned()
                        .unwrap_or_else(|| format!("if{ifindex}")),
                    source: format!("{network}/{prefix}"),
                    packets,
                    bytes,
                }
            })
            .collect();
        out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.source.cmp(&b.source)));
        out.truncate(limit);
        out
    }

    /// Adds what grew since the last call to the telemetry counters.
    pub fn report(&mut self, telemetry: &Telemetry) {
        for (ifindex, name) in &self.interfaces {
            let Ok(values) = self.per_interface.get(ifindex, 0) else {
                continue;
            };
            let now = sum(values.iter().copied());
            let before = self.reported.insert(*ifindex, now).unwrap_or([0, 0]);
            let label = InterfaceLabel {
                interface: name.clone(),
            };
            telemetry
                .xdp_packets
                .get_or_create(&label)
                .inc_by(now[0] - before[0]);
            telemetry
                .xdp_bytes
                .get_or_create(&label)
                .inc_by(now[1] - before[1]);
        }
    }
}

impl KernelProbes {
    /// Fills the blocklist and attaches the XDP program to each interface (the kernel picks
    /// driver mode where the driver has it, generic otherwise). An interface that already has
    /// an XDP program is refused, never replaced. Returns the interface counters and the live
    /// blocklist, which takes changes while the agent runs.
    pub fn attach_xdp(
        &mut self,
        interfaces: &[String],
        entries: &[BlockEntry],
    ) -> Result<(XdpCounters, Blocklist), LoadError> {
        let ebpf = self.ebpf_mut();
        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or(LoadError::Map {
                name,
                detail: "missing from nightjar.bpf.o".into(),
            })
        };
        let trie =
            LpmTrie::try_from(take("nj_blocklist")?).map_err(|e| map_error("nj_blocklist", e))?;
        let per_entry = PerCpuArray::try_from(take("nj_block_stats")?)
            .map_err(|e| map_error("nj_block_stats", e))?;
        let per_interface = PerCpuHashMap::try_from(take("nj_xdp_if_stats")?)
            .map_err(|e| map_error("nj_xdp_if_stats", e))?;
        let per_source = PerCpuHashMap::try_from(take("nj_xdp_sources")?)
            .map_err(|e| map_error("nj_xdp_sources", e))?;
        let mut blocklist = Blocklist::new(trie, per_entry);
        for entry in entries {
            blocklist
                .add(*entry)
                .map_err(|e| LoadError::Config(e.to_string()))?;
        }
        let mut names = HashMap::new();
        let prog: &mut Xdp = self.program("nj_xdp")?;
        prog.load()
            .map_err(|source| crate::probes::program_error("nj_xdp", source))?;
        for iface in interfaces {
            let c_name = std::ffi::CString::new(iface.as_str()).map_err(|_| {
                LoadError::Config(format!("interface name {iface:?} has a NUL byte"))
            })?;
            // SAFETY: a valid NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
            if index == 0 {
                return Err(LoadError::Config(format!("unknown interface {iface:?}")));
            }
            prog.attach(iface, XdpMode::default()).map_err(|source| {
                let busy = matches!(&source, aya::programs::ProgramError::SyscallError(e)
                    if e.io_error.raw_os_error() == Some(libc::EBUSY) || e.io_error.raw_os_error() == Some(libc::EEXIST));
                if busy {
                    LoadError::Config(format!(
                        "interface {iface:?} already has an XDP program; Nightjar never replaces another program"
                    ))
                } else {
                    crate::probes::program_error("nj_xdp", source)
                }
            })?;
            names.insert(index, iface.clone());
        }
        Ok((
            XdpCounters {
                per_interface,
                per_source,
                interfaces: names,
                reported: HashMap::new(),
            },
            blocklist,
        ))
    }
}

fn map_error(name: &'static str, e: aya::maps::MapError) -> LoadError {
    LoadError::Map {
        name,
        detail: e.to_string(),
    }
}
