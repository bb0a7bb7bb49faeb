//! The TC flow table: attached programs count packets per flow in an LRU hash; this polls it
//! and turns flows into [`Event`]s when they end (FIN/RST), go idle, or every report interval.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use nightjar_abi::*;
use nightjar_core::time::BootClock;
use nightjar_core::{Event, EventBody, FlowEndpoint, FlowRecord};

/// Key and value of `nj_flows`, wrapped so Aya may copy them (the ABI types live in another
/// crate, so the Pod impl must sit on a local type).
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct FlowKey(pub nj_flow_key);
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct FlowStats(pub nj_flow_stats);

// SAFETY: repr(transparent) over bindgen repr(C) structs of integers and byte arrays.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowStats {}

/// When flows are reported.
#[derive(Debug, Clone, Copy)]
pub struct FlowTimers {
    /// A flow with no packet for this long is reported and forgotten.
    pub idle_timeout: Duration,
    /// A long flow is reported (cumulative counters) this often.
    pub report_interval: Duration,
    /// After FIN or RST, wait this long for the last packets before reporting the end.
    pub end_grace: Duration,
}

impl Default for FlowTimers {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            report_interval: Duration::from_secs(60),
            end_grace: Duration::from_secs(1),
        }
    }
}

/// Reads and prunes the kernel flow table.
pub struct FlowTable {
    map: BpfHashMap<MapData, FlowKey, FlowStats>,
    /// Flows the kernel created (per CPU).
    created: PerCpuArray<MapData, u64>,
    /// Flows this table reported and removed.
    removed: u64,
    /// Flows the LRU evicted before they were reported (highest estimate so far).
    evicted: u64,
    /// Flows in the kernel table at the last poll.
    live: usize,
    /// `created` as read at the last poll.
    created_seen: u64,
    timers: FlowTimers,
    interfaces: HashMap<u32, Arc<str>>,
    /// Boot-time ns of the last periodic report per flow (bounded by the kernel map's size).
    reported: HashMap<[u8; 48], u64>,
    /// Packets and bytes of each live flow already added to the traffic totals.
    counted: HashMap<[u8; 48], (u64, u64)>,
    /// Packets and bytes of each live flow as its last periodic record carried them.
    in_records: HashMap<[u8; 48], (u64, u64)>,
    /// Growth since the last `take_traffic`, per (ifindex, direction).
    traffic: HashMap<(u32, u8), (u64, u64)>,
    clock: BootClock,
    node: Arc<str>,
    /// False once the kernel refused a batch lookup: read entry by entry from then on.
    batch_reads: bool,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("timers", &self.timers)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

fn key_bytes(key: &nj_flow_key) -> [u8; 48] {
    // SAFETY: nj_flow_key is 48 bytes of plain integers (asserted below).
    unsafe { core::mem::transmute_copy(key) }
}

const _: () = assert!(core::mem::size_of::<nj_flow_key>() == 48);

/// An address of an ABI record that keeps IPv4 in the first 4 of 16 bytes (flow keys, TCP
/// records).
pub(crate) fn addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if u32::from(family) == NJ_AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

fn tcp_flag_names(flags: u32) -> Vec<&'static str> {
    const NAMES: &[(u32, &str)] = &[
        (NJ_TCP_SYN, "SYN"),
        (NJ_TCP_ACK, "ACK"),
        (NJ_TCP_PSH, "PSH"),
        (NJ_TCP_FIN, "FIN"),
        (NJ_TCP_RST, "RST"),
        (NJ_TCP_URG, "URG"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// The name of an interface attached after start (a new veth), asked of the kernel once per
/// reported flow; `None` once the interface is gone.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into buf.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        _ => "other",
    }
}

impl FlowTable {
    pub(crate) fn new(
        map: BpfHashMap<MapData, FlowKey, FlowStats>,
        created: PerCpuArray<MapData, u64>,
        interfaces: HashMap<u32, Arc<str>>,
        timers: FlowTimers,
        clock: BootClock,
        node: Arc<str>,
    ) -> Self {
        Self {
            map,
            created,
            removed: 0,
            evicted: 0,
            live: 0,
            created_seen: 0,
            timers,
            interfaces,
            reported: HashMap::new(),
            counted: HashMap::new(),
            in_records: HashMap::new(),
            traffic: HashMap::new(),
            clock,
            node,
            batch_reads: true,
        }
    }

    fn event(
        &mut self,
        key: &nj_flow_key,
        stats: &nj_flow_stats,
        reason: &'static str,
        now_ns: u64,
    ) -> Event {
        let id = key_bytes(key);
        let (before_packets, before_bytes) = if reason == "periodic" {
            self.in_records
                .insert(id, (stats.packets, stats.bytes))
                .unwrap_or((0, 0))
        } else {
            self.in_records.remove(&id).unwrap_or((0, 0))
        };
        let record = FlowRecord {
            reason,
            interface: self
                .interfaces
                .get(&key.ifindex)
                .map(|n| n.to_string())
                .or_else(|| interface_name(key.ifindex))
                .unwrap_or_else(|| format!("if{}", key.ifindex)),
            direction: if u32::from(key.direction) == NJ_FLOW_EGRESS {
                "egress"
            } else {
                "ingress"
            },
            protocol: protocol_name(key.protocol),
            source: FlowEndpoint {
                addr: addr(key.family, &key.saddr),
                port: key.sport,
            },
            destination: FlowEndpoint {
                addr: addr(key.family, &key.daddr),
                port: key.dport,
            },
            packets: stats.packets,
            bytes: stats.bytes,
            tcp_flags: tcp_flag_names(stats.tcp_flags),
            first_seen: self.clock.rfc3339(stats.first_ns),
            last_seen: self.clock.rfc3339(stats.last_ns),
            verdict: "forwarded",
            socket_end: None,
            new_packets: stats.packets.saturating_sub(before_packets),
            new_bytes: stats.bytes.saturating_sub(before_bytes),
        };
        let mut record = record;
        // A flow sent from a local socket carries its cgroup from the kernel: its source is
        // that socket's end, whether or not a socket event names the process too.
        if stats.cgroup_id != 0 {
            record.socket_end = Some("source");
        }
        let mut event = Event::unattributed(
            self.clock.rfc3339(now_ns),
            now_ns,
            self.node.clone(),
            EventBody::Flow(Box::new(record)),
        );
        event.cgroup_id = stats.cgroup_id;
        event
    }

    /// Flows due now: ended (FIN/RST and quiet for `end_grace`) and idle ones are reported and
    /// removed; long ones are reported every `report_interval`.
    pub fn poll(&mut self, now_ns: u64) -> Vec<Event> {
        self.collect(now_ns, false)
    }

    /// Packets and bytes seen since the last call, per interface name and direction
    /// (`ingress`/`egress`); the source of per-interface packets/s and bytes/s.
    pub fn take_traffic(&mut self) -> Vec<(String, &'static str, u64, u64)> {
        let traffic = std::mem::take(&mut self.traffic);
        traffic
            .into_iter()
            .map(|((ifindex, direction), (packets, bytes))| {
                let name = self
                    .interfaces
                    .get(&ifindex)
                    .map(|n| n.to_string())
                    .or_else(|| interface_name(ifindex))
                    .unwrap_or_else(|| format!("if{ifindex}"));
                let direction = if u32::from(direction) == NJ_FLOW_EGRESS {
                    "egress"
                } else {
                    "ingress"
                };
                (name, direction, packets, bytes)
            })
            .collect()
    }

    /// Every flow left, reported and removed (at shutdown).
    pub fn flush(&mut self, now_ns: u64) -> Vec<Event> {
        self.collect(now_ns, true)
    }

    /// Flows the kernel evicted unreported so far: created, minus reported and removed, minus
    /// still live. `created` is read before the table, so a flow born in between counts as
    /// live but not created: the estimate can only lag, never overcount, and is exact once
    /// traffic stops.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Flows the kernel created, as of the last poll.
    pub fn created(&self) -> u64 {
        self.created_seen
    }

    /// Flows in the kernel table at the last poll.
    pub fn live(&self) -> usize {
        self.live
    }

    fn created_total(&self) -> u64 {
        self.created
            .get(&0, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }

    /// Every entry of the kernel table: in chunks with one syscall each where the kernel has
    /// batch lookups, else one entry (two syscalls) at a time.
    fn read_table(&mut self) -> Vec<(FlowKey, FlowStats)> {
        use aya::maps::IterableMap;
        if self.batch_reads {
            match crate::map_batch::lookup_all(self.map.map()) {
                Ok(entries) => return entries,
                Err(err) => {
                    tracing::warn!(error = %err, "No batch map lookups: reading the flow table entry by entry (more CPU per poll)");
                    self.batch_reads = false;
                }
            }
        }
        self.map.iter().filter_map(Result::ok).collect()
    }

    fn collect(&mut self, now_ns: u64, all: bool) -> Vec<Event> {
        let created = self.created_total();
        let entries = self.read_table();
        let estimate = created
            .saturating_sub(self.removed)
            .saturating_sub(entries.len() as u64);
        self.evicted = self.evicted.max(estimate);
        self.created_seen = created;
        self.live = entries.len();
        let mut events = Vec::new();
        for (FlowKey(key), FlowStats(stats)) in entries {
            let quiet = now_ns.saturating_sub(stats.last_ns);
            let ended = stats.tcp_flags & (NJ_TCP_FIN | NJ_TCP_RST) != 0
                && quiet >= self.timers.end_grace.as_nanos() as u64;
            let idle = quiet >= self.timers.idle_timeout.as_nanos() as u64;
            let id = key_bytes(&key);
            let (seen_packets, seen_bytes) = self.counted.get(&id).copied().unwrap_or((0, 0));
            let grown = self
                .traffic
                .entry((key.ifindex, key.direction))
                .or_default();
            grown.0 += stats.packets.saturating_sub(seen_packets);
            grown.1 += stats.bytes.saturating_sub(seen_bytes);
            self.counted.insert(id, (stats.packets, stats.bytes));
            let reason = if all {
                Some("agent_stop")
            } else if ended {
                Some("end")
            } else if idle {
                Some("idle")
            } else {
                None
            };
            if let Some(reason) = reason {
                events.push(self.event(&key, &stats, reason, now_ns));
                if self.map.remove(&FlowKey(key)).is_ok() {
                    self.removed += 1;
                    self.live = self.live.saturating_sub(1);
                }
                self.reported.remove(&id);
                self.counted.remove(&id);
                continue;
            }
            let since = self.reported.get(&id).copied().unwrap_or(stats.first_ns);
            if now_ns.saturating_sub(since) >= self.timers.report_interval.as_nanos() as u64 {
                // A flow quiet since its last record has nothing new to say until it ends.
                let grown = self.in_records.get(&id).map(|c| c.0) != Some(stats.packets);
                if grown {
                    events.push(self.event(&key, &stats, "periodic", now_ns));
                }
                self.reported.insert(id, now_ns);
            }
        }
        events
    }
}
