//! Which process owns the socket behind a flow.
//!
//! TC sees packets, not processes: on a pod's veth the socket lives in another network
//! namespace, and on ingress no socket is attached yet. So flows are attributed in userspace,
//! by 5-tuple, from what the socket events already said: `tcp_established`/`tcp_close` (with
//! the owner the kernel joined by socket cookie), `sock_connect` (connected UDP) and
//! `sock_bind` (UDP servers, matched on their local address and port).
//!
//! Bounded: at most `capacity` sockets; the oldest is forgotten first. A closed connection
//! stays for `linger` so the flow records that follow its close are still attributed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use nightjar_core::pipeline::Transform;
use nightjar_core::{Event, EventBody, FlowEndpoint, SockAddr};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// One end's view of a socket: protocol, local and (for connected sockets) remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SocketKey {
    protocol: u8,
    local: (IpAddr, u16),
    /// `None` for a bound, unconnected socket (a UDP server).
    remote: Option<(IpAddr, u16)>,
}

/// The process that owns a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    pub pid: u32,
    pub tid: u32,
    pub cgroup_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    owner: SocketOwner,
    /// Insertion generation; matches the queue entry that may evict it.
    generation: u64,
    /// When the connection closed (monotonic), if it did.
    closed_at: Option<Duration>,
}

/// Which end of a flow the owning socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketEnd {
    Source,
    Destination,
}

impl SocketEnd {
    pub fn name(self) -> &'static str {
        match self {
            SocketEnd::Source => "source",
            SocketEnd::Destination => "destination",
        }
    }
}

/// Settings of [`SocketOwners`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwnersConfig {
    pub capacity: usize,
    pub linger: Duration,
}

impl Default for SocketOwners {
    fn default() -> Self {
        Self::new(SocketOwnersConfig::default())
    }
}

impl Default for SocketOwnersConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            // Flow records follow a close after the end grace and one poll (about 2 s).
            linger: Duration::from_secs(30),
        }
    }
}

/// 5-tuple -> owning process, learned from socket events, applied to flow records.
#[derive(Debug)]
pub struct SocketOwners {
    config: SocketOwnersConfig,
    entries: HashMap<SocketKey, Entry>,
    order: VecDeque<(SocketKey, u64)>,
    /// Closed connections in the order they closed (so oldest first): expiry pops from the
    /// front instead of scanning the table at every batch.
    closed: VecDeque<(SocketKey, u64, Duration)>,
    generation: u64,
    /// Flows attributed and not, for the agent's metrics.
    pub attributed: u64,
    pub unattributed: u64,
}

fn endpoint(addr: &SockAddr) -> Option<(IpAddr, u16)> {
    match addr {
        SockAddr::Inet { addr, port } | SockAddr::Inet6 { addr, port, .. } => Some((*addr, *port)),
        _ => None,
    }
}

fn pair(e: &FlowEndpoint) -> (IpAddr, u16) {
    (e.addr, e.port)
}

fn unspecified(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

impl SocketOwners {
    pub fn new(config: SocketOwnersConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            order: VecDeque::new(),
            closed: VecDeque::new(),
            generation: 0,
            attributed: 0,
            unattributed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, key: SocketKey, owner: SocketOwner) {
        if owner.pid == 0 && owner.cgroup_id == 0 {
            return;
        }
        self.generation += 1;
        self.entries.insert(
            key,
            Entry {
                owner,
                generation: self.generation,
                closed_at: None,
            },
        );
        self.order.push_back((key, self.generation));
        while self.entries.len() > self.config.capacity {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            self.remove_if_current(old, generation);
        }
        // Stale queue entries (re-inserted keys) are skipped above; keep the queue bounded.
        if self.order.len() > 2 * self.config.capacity {
            let entries = &self.entries;
            self.order.retain(|&(k, g)| is_current(entries, k, g));
        }
    }

    /// Learns from a socket event; other events are ignored.
    pub fn learn(&mut self, event: &Event, now: Duration) {
        let owner = SocketOwner {
            pid: event.pid,
            tid: event.tid,
            cgroup_id: event.cgroup_id,
        };
        match &event.body {
            EventBody::TcpEstablished(c) => {
                let key = SocketKey {
                    protocol: TCP,
                    local: pair(&c.local),
                    remote: Some(pair(&c.remote)),
                };
                self.insert(key, owner);
            }
            EventBody::TcpClose(c) => {
                let key = SocketKey {
                    protocol: TCP,
                    local: pair(&c.local),
                    remote: Some(pair(&c.remote)),
                };
                // Never established (refused): its SYNs are still a flow of that process.
                if !self.entries.contains_key(&key) {
                    self.insert(key, owner);
                }
                self.mark_closed(key, now);
            }
            EventBody::SockConnect(op) if op.protocol == Some("udp") => {
                let succeeded = op.result.ret == 0;
                if let (true, Some(local), Some(remote)) = (
                    succeeded,
                    op.local.as_ref().and_then(endpoint),
                    op.remote.as_ref().and_then(endpoint),
                ) {
                    let key = SocketKey {
                        protocol: UDP,
                        local,
                        remote: Some(remote),
                    };
                    self.insert(key, owner);
                }
            }
            EventBody::SockBind(op) if op.protocol == Some("udp") && op.result.ret == 0 => {
                if let Some(local) = op.local.as_ref().and_then(endpoint) {
                    let key = SocketKey {
                        protocol: UDP,
                        local,
                        remote: None,
                    };
                    self.insert(key, owner);
                }
            }
            _ => {}
        }
    }

    /// The owner of a flow's socket on this host, if a socket event named it. Egress flows
    /// start at the local end, ingress flows end there; on a pod's host-side veth it is the
    /// other way round, so both readings are tried, the likely one first.
    pub fn owner_of(
        &self,
        protocol: u8,
        source: &FlowEndpoint,
        destination: &FlowEndpoint,
        egress: bool,
    ) -> Option<(SocketOwner, SocketEnd)> {
        let (src, dst) = (pair(source), pair(destination));
        let readings = if egress {
            [
                (src, dst, SocketEnd::Source),
                (dst, src, SocketEnd::Destination),
            ]
        } else {
            [
                (dst, src, SocketEnd::Destination),
                (src, dst, SocketEnd::Source),
            ]
        };
        for (local, remote, end) in readings {
            let exact = SocketKey {
                protocol,
                local,
                remote: Some(remote),
            };
            let bound = SocketKey {
                protocol,
                local,
                remote: None,
            };
            let wildcard = SocketKey {
                protocol,
                local: (unspecified(local.0), local.1),
                remote: None,
            };
            for key in [exact, bound, wildcard] {
                if let Some(entry) = self.entries.get(&key) {
                    return Some((entry.owner, end));
                }
            }
        }
        None
    }

    fn mark_closed(&mut self, key: SocketKey, now: Duration) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.closed_at.is_none() {
            entry.closed_at = Some(now);
            self.closed.push_back((key, entry.generation, now));
        }
    }

    /// Forgets connections closed more than `linger` ago. Costs the number expired, not the
    /// table size: it runs after every batch.
    pub fn expire(&mut self, now: Duration) {
        let linger = self.config.linger;
        while let Some(&(key, generation, at)) = self.closed.front() {
            if now.saturating_sub(at) < linger {
                break;
            }
            self.closed.pop_front();
            // The key may have been evicted, or reused by a newer connection since.
            self.remove_if_current(key, generation);
        }
        // Entries closed and then evicted leave stale queue items; keep the queue bounded.
        if self.closed.len() > 2 * self.config.capacity {
            let entries = &self.entries;
            self.closed.retain(|&(k, g, _)| is_current(entries, k, g));
        }
    }

    /// Removes `key` if it is still the entry queued at `generation`, not a newer one.
    fn remove_if_current(&mut self, key: SocketKey, generation: u64) {
        if is_current(&self.entries, key, generation) {
            self.entries.remove(&key);
        }
    }
}

/// Whether a queue item (key, generation) still names the live entry for that key.
fn is_current(entries: &HashMap<SocketKey, Entry>, key: SocketKey, generation: u64) -> bool {
    entries
        .get(&key)
        .is_some_and(|e| e.generation == generation)
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(TCP),
        "udp" => Some(UDP),
        _ => None,
    }
}

/// Attributes flow records to the process and cgroup of their socket, before enrichment
/// turns those into process and container context.
#[derive(Debug)]
pub struct FlowAttribution {
    owners: SocketOwners,
    started: std::time::Instant,
    telemetry: Option<std::sync::Arc<nightjar_core::telemetry::Telemetry>>,
}

impl FlowAttribution {
    pub fn new(config: SocketOwnersConfig) -> Self {
        Self {
            owners: SocketOwners::new(config),
            started: std::time::Instant::now(),
            telemetry: None,
        }
    }

    /// Counts flows by attribution result in `nightjar_flow_attribution_total`.
    pub fn with_telemetry(
        mut self,
        telemetry: std::sync::Arc<nightjar_core::telemetry::Telemetry>,
    ) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn count(&self, result: &'static str) {
        if let Some(t) = &self.telemetry {
            t.flow_attribution
                .get_or_create(&nightjar_core::telemetry::ResultLabel { result })
                .inc();
        }
    }

    pub fn owners(&self) -> &SocketOwners {
        &self.owners
    }
}

impl Transform for FlowAttribution {
    fn name(&self) -> &'static str {
        "flow_attribution"
    }

    fn apply(&mut self, event: &mut Event) -> bool {
        if !matches!(event.body, EventBody::Flow(_)) {
            self.owners.learn(event, self.started.elapsed());
            return true;
        }
        let EventBody::Flow(flow) = &mut event.body else {
            return true;
        };
        let owner = protocol_number(flow.protocol).and_then(|protocol| {
            self.owners.owner_of(
                protocol,
                &flow.source,
                &flow.destination,
                flow.direction == "egress",
            )
        });
        match owner {
            Some((owner, end)) => {
                flow.socket_end = Some(end.name());
                event.pid = owner.pid;
                event.tid = owner.tid;
                event.cgroup_id = owner.cgroup_id;
                self.owners.attributed += 1;
                self.count("socket");
            }
            // The kernel may still have named the sending socket's cgroup (egress flows).
            None if event.cgroup_id != 0 => self.count("cgroup"),
            None => {
                self.owners.unattributed += 1;
                self.count("none");
            }
        }
        true
    }

    fn end_batch(&mut self) {
        self.owners.expire(self.started.elapsed());
        if let Some(t) = &self.telemetry {
            t.socket_owner_entries.set(self.owners.len() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightjar_core::{FlowRecord, SockOp, SyscallResult, TcpConnection};
    use std::sync::Arc;

    fn ep(addr: &str, port: u16) -> FlowEndpoint {
        FlowEndpoint {
            addr: addr.parse().unwrap(),
            port,
        }
    }

    fn event(pid: u32, cgroup_id: u64, body: EventBody) -> Event {
        let mut event = Event::unattributed(String::new(), 0, Arc::from("n"), body);
        (event.pid, event.tid, event.cgroup_id) = (pid, pid, cgroup_id);
        event
    }

    fn tcp(
        local: FlowEndpoint,
        remote: FlowEndpoint,
        outcome: Option<&'static str>,
    ) -> Box<TcpConnection> {
        Box::new(TcpConnection {
            cookie: 1,
            direction: "outbound",
            owner: "connect",
            local,
            remote,
            handshake_us: None,
            duration_ms: Some(1),
            srtt_us: 0,
            retransmits: 0,
            bytes_acked: 0,
            bytes_received: 0,
            segments_in: 0,
            segments_out: 0,
            outcome,
            previous_state: None,
            error: None,
        })
    }

    fn flow(
        direction: &'static str,
        protocol: &'static str,
        src: FlowEndpoint,
        dst: FlowEndpoint,
    ) -> Event {
        event(
            0,
            0,
            EventBody::Flow(Box::new(FlowRecord {
                reason: "end",
                interface: "eth0".into(),
                direction,
                protocol,
                source: src,
                destination: dst,
                packets: 1,
                bytes: 1,
                tcp_flags: Vec::new(),
                first_seen: String::new(),
                last_seen: String::new(),
                verdict: "forwarded",
                socket_end: None,
                new_packets: 1,
                new_bytes: 1,
            })),
        )
    }

    fn udp_op(local: Option<SockAddr>, remote: Option<SockAddr>) -> SockOp {
        SockOp {
            result: SyscallResult {
                syscall: "connect",
                ret: 0,
                error: None,
            },
            fd: 3,
            sock_type: Some("dgram"),
            protocol: Some("udp"),
            local,
            remote,
            backlog: None,
            cookie: None,
        }
    }

    #[test]
    fn both_ends_of_a_loopback_connection_get_their_own_process() {
        let mut t = FlowAttribution::new(SocketOwnersConfig::default());
        let (client, server) = (ep("127.0.0.1", 40000), ep("127.0.0.1", 80));
        t.apply(&mut event(
            10,
            100,
            EventBody::TcpEstablished(tcp(client.clone(), server.clone(), None)),
        ));
        t.apply(&mut event(
            20,
            200,
            EventBody::TcpEstablished(tcp(server.clone(), client.clone(), None)),
        ));
        // Client -> server: egress belongs to the client, ingress to the server.
        let mut out = flow("egress", "tcp", client.clone(), server.clone());
        t.apply(&mut out);
        assert_eq!((out.pid, out.cgroup_id), (10, 100));
        let EventBody::Flow(record) = &out.body else {
            unreachable!()
        };
        assert_eq!(record.socket_end, Some("source"));
        let mut inbound = flow("ingress", "tcp", client.clone(), server.clone());
        t.apply(&mut inbound);
        assert_eq!((inbound.pid, inbound.cgroup_id), (20, 200));
        // A pod's host-side veth: the pod's egress is the host's ingress; only one end is
        // local to a known socket, and the other reading finds it.
        let mut t = FlowAttribution::new(SocketOwnersConfig::default());
        t.apply(&mut event(
            10,
            100,
            EventBody::TcpEstablished(tcp(client.clone(), ep("10.0.0.9", 443), None)),
        ));
        let mut veth = flow("ingress", "tcp", client, ep("10.0.0.9", 443));
        t.apply(&mut veth);
        assert_eq!(veth.pid, 10);
        let EventBody::Flow(record) = &veth.body else {
            unreachable!()
        };
        assert_eq!(record.socket_end, Some("source"));
        assert_eq!(t.owners().attributed, 1);
    }

    #[test]
    fn udp_servers_match_on_their_bound_port_and_unknown_flows_stay_bare() {
        let mut t = FlowAttribution::new(SocketOwnersConfig::default());
        let bind = SockOp {
            result: SyscallResult {
                syscall: "bind",
                ret: 0,
                error: None,
            },
            ..udp_op(
                Some(SockAddr::Inet {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 53,
                }),
                None,
            )
        };
        t.apply(&mut event(30, 300, EventBody::SockBind(bind)));
        let mut query = flow("ingress", "udp", ep("10.0.0.5", 5353), ep("10.0.0.1", 53));
        t.apply(&mut query);
        assert_eq!(query.pid, 30);
        let mut other = flow("ingress", "udp", ep("10.0.0.5", 5353), ep("10.0.0.1", 54));
        t.apply(&mut other);
        assert_eq!(other.pid, 0);
        assert_eq!(t.owners().unattributed, 1);
        // A connected UDP socket matches exactly.
        let connect = udp_op(
            Some(SockAddr::Inet {
                addr: "10.0.0.1".parse().unwrap(),
                port: 6000,
            }),
            Some(SockAddr::Inet {
                addr: "10.0.0.7".parse().unwrap(),
                port: 9999,
            }),
        );
        t.apply(&mut event(40, 400, EventBody::SockConnect(connect)));
        let mut sent = flow("egress", "udp", ep("10.0.0.1", 6000), ep("10.0.0.7", 9999));
        t.apply(&mut sent);
        assert_eq!(sent.pid, 40);
    }

    #[test]
    fn a_port_reused_after_close_is_not_expired_with_the_old_connection() {
        let mut owners = SocketOwners::default();
        let (local, remote) = (ep("10.0.0.1", 5000), ep("10.0.0.2", 80));
        let established = |pid| {
            event(
                pid,
                1,
                EventBody::TcpEstablished(tcp(local.clone(), remote.clone(), None)),
            )
        };
        let closed = event(
            7,
            1,
            EventBody::TcpClose(tcp(local.clone(), remote.clone(), Some("closed"))),
        );
        owners.learn(&established(7), Duration::ZERO);
        owners.learn(&closed, Duration::from_secs(1));
        // The same 5-tuple, a new connection of another process, before the old one expires.
        owners.learn(&established(8), Duration::from_secs(2));
        owners.expire(Duration::from_secs(40));
        assert_eq!(
            owners.owner_of(TCP, &local, &remote, true).map(|o| o.0.pid),
            Some(8),
            "the new connection outlives the old one's linger"
        );
    }

    #[test]
    fn closed_connections_linger_then_go_and_the_table_is_bounded() {
        let config = SocketOwnersConfig {
            capacity: 4,
            linger: Duration::from_secs(30),
        };
        let mut owners = SocketOwners::new(config);
        let remote = ep("10.0.0.2", 80);
        for port in 1..=6u16 {
            let local = ep("10.0.0.1", port);
            owners.learn(
                &event(
                    u32::from(port),
                    1,
                    EventBody::TcpEstablished(tcp(local, remote.clone(), None)),
                ),
                Duration::ZERO,
            );
        }
        assert_eq!(owners.len(), 4, "the oldest two are forgotten");
        assert!(owners
            .owner_of(TCP, &ep("10.0.0.1", 1), &remote, true)
            .is_none());
        assert_eq!(
            owners
                .owner_of(TCP, &ep("10.0.0.1", 6), &remote, true)
                .map(|o| o.0.pid),
            Some(6)
        );
        owners.learn(
            &event(
                6,
                1,
                EventBody::TcpClose(tcp(ep("10.0.0.1", 6), remote.clone(), Some("closed"))),
            ),
            Duration::from_secs(1),
        );
        owners.expire(Duration::from_secs(20));
        assert!(owners
            .owner_of(TCP, &ep("10.0.0.1", 6), &remote, true)
            .is_some());
        owners.expire(Duration::from_secs(31));
        assert!(owners
            .owner_of(TCP, &ep("10.0.0.1", 6), &remote, true)
            .is_none());
        assert_eq!(owners.len(), 3);
    }
}
