//! Per-container network metrics: TCP connections by outcome, retransmits and RTT from
//! `tcp_established`/`tcp_close`, and packets and bytes each way from attributed flow
//! records. Runs after enrichment, so it can name the container.
//!
//! Label values are bounded: past [`MAX_CONTAINERS`] distinct containers, new ones count
//! under `other`, so a churning node cannot grow the registry without limit.

use std::sync::Arc;

use crate::event::{Event, EventBody};
use crate::pipeline::Transform;
use crate::telemetry::{
    ConnectionLabel, ContainerDirectionLabel, ContainerLabel, LabelBudget, Telemetry,
};

/// Distinct container label values kept before new ones fold into `other`.
pub const MAX_CONTAINERS: usize = 1024;

/// The label for the host itself and for events with no container context.
pub const HOST: &str = "host";
/// The label for containers past the budget.
pub const OTHER: &str = "other";

/// Updates connection metrics as events pass; never drops or changes an event.
#[derive(Debug)]
pub struct NetworkMetrics {
    telemetry: Arc<Telemetry>,
    containers: LabelBudget,
    rates: Option<crate::rates::SharedRates>,
}

impl NetworkMetrics {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            telemetry,
            containers: LabelBudget::new(MAX_CONTAINERS),
            rates: None,
        }
    }

    /// Also gathers counts for `network_rates` events.
    pub fn with_rates(mut self, rates: crate::rates::SharedRates) -> Self {
        self.rates = Some(rates);
        self
    }

    fn tally(&self, container: &str, update: impl FnOnce(&mut crate::rates::RateCounts)) {
        if let Some(rates) = &self.rates {
            let mut table = rates.lock().unwrap_or_else(|e| e.into_inner());
            update(table.entry(container.to_string()).or_default());
        }
    }

    /// The container label of an event: short id, `host`, or `other` past the budget.
    fn label(&mut self, event: &Event) -> String {
        let Some(id) = event.container.as_ref().and_then(|c| c.id.as_deref()) else {
            return HOST.to_string();
        };
        // Ids are hex; `get` keeps an odd one from splitting a character.
        let short = id.get(..12).unwrap_or(id);
        if self.containers.admit(short) {
            short.to_string()
        } else {
            OTHER.to_string()
        }
    }
}

impl Transform for NetworkMetrics {
    fn name(&self) -> &'static str {
        "network_metrics"
    }

    fn apply(&mut self, event: &mut Event) -> bool {
        let (connection, closing) = match &event.body {
            EventBody::TcpEstablished(c) => (c, false),
            EventBody::TcpClose(c) => (c, true),
            EventBody::Flow(flow) => {
                let Some(end) = flow.socket_end else {
                    return true;
                };
                let direction = if end == "source" { "sent" } else { "received" };
                let (packets, bytes) = (flow.new_packets, flow.new_bytes);
                let label = ContainerDirectionLabel {
                    container: self.label(event),
                    direction,
                };
                self.tally(&label.container, |c| {
                    if end == "source" {
                        c.packets_sent += packets;
                        c.bytes_sent += bytes;
                    } else {
                        c.packets_received += packets;
                        c.bytes_received += bytes;
                    }
                });
                self.telemetry
                    .container_packets
                    .get_or_create(&label)
                    .inc_by(packets);
                self.telemetry
                    .container_bytes
                    .get_or_create(&label)
                    .inc_by(bytes);
                return true;
            }
            _ => return true,
        };
        let what = if !closing {
            if connection.direction == "inbound" {
                "accepted"
            } else {
                "opened"
            }
        } else if connection.failed() {
            "failed"
        } else {
            "closed"
        };
        let retransmits = u64::from(connection.retransmits);
        let rtt = (closing && !connection.failed() && connection.srtt_us > 0)
            .then(|| f64::from(connection.srtt_us) / 1e6);
        let container = self.label(event);
        self.tally(&container, |c| {
            match what {
                "accepted" => c.accepted += 1,
                "opened" => c.opened += 1,
                "failed" => c.failed += 1,
                _ => c.closed += 1,
            }
            if closing {
                c.retransmits += retransmits;
            }
        });
        let t = &self.telemetry;
        t.tcp_connections
            .get_or_create(&ConnectionLabel {
                container: container.clone(),
                event: what,
            })
            .inc();
        if closing {
            let label = ContainerLabel { container };
            if retransmits > 0 {
                t.tcp_retransmits.get_or_create(&label).inc_by(retransmits);
            }
            if let Some(rtt) = rtt {
                t.tcp_rtt.get_or_create(&label).observe(rtt);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ContainerInfo, FlowEndpoint, FlowRecord, Runtime, TcpConnection};

    fn event(body: EventBody, container: Option<&str>) -> Event {
        Event {
            time: String::new(),
            ktime_ns: 0,
            node: Arc::from("n"),
            pid: 1,
            tid: 1,
            cgroup_id: 1,
            flags: Vec::new(),
            process: None,
            parent: None,
            ancestors: Vec::new(),
            container: container.map(|id| {
                Arc::new(ContainerInfo {
                    id: Some(id.to_string()),
                    runtime: Runtime::Containerd,
                    pod_uid: None,
                    unit: None,
                    cgroup: String::new(),
                })
            }),
            kubernetes: None,
            peer: None,
            body,
        }
    }

    fn connection(direction: &'static str, outcome: Option<&'static str>) -> TcpConnection {
        let end = FlowEndpoint {
            addr: "10.0.0.1".parse().unwrap(),
            port: 1,
        };
        TcpConnection {
            cookie: 1,
            direction,
            owner: "connect",
            local: end.clone(),
            remote: end,
            handshake_us: None,
            duration_ms: (outcome != Some("refused")).then_some(5),
            srtt_us: 250,
            retransmits: 2,
            bytes_acked: 0,
            bytes_received: 0,
            segments_in: 0,
            segments_out: 0,
            outcome,
            previous_state: None,
            error: None,
        }
    }

    #[test]
    fn counts_by_container_and_outcome() {
        let t = Arc::new(Telemetry::new());
        let mut m = NetworkMetrics::new(t.clone());
        let id = "a".repeat(64);
        for (body, container) in [
            (
                EventBody::TcpEstablished(Box::new(connection("outbound", None))),
                Some(id.as_str()),
            ),
            (
                EventBody::TcpClose(Box::new(connection("outbound", Some("closed")))),
                Some(id.as_str()),
            ),
            (
                EventBody::TcpEstablished(Box::new(connection("inbound", None))),
                None,
            ),
            (
                EventBody::TcpClose(Box::new(connection("outbound", Some("refused")))),
                None,
            ),
        ] {
            assert!(m.apply(&mut event(body, container)));
        }
        let text = t.encode();
        let short = &id[..12];
        for line in [
            format!("nightjar_tcp_connections_total{{container=\"{short}\",event=\"opened\"}} 1"),
            format!("nightjar_tcp_connections_total{{container=\"{short}\",event=\"closed\"}} 1"),
            "nightjar_tcp_connections_total{container=\"host\",event=\"accepted\"} 1".into(),
            "nightjar_tcp_connections_total{container=\"host\",event=\"failed\"} 1".into(),
            // Retransmits of both closes; RTT only of the established one.
            format!("nightjar_tcp_retransmits_total{{container=\"{short}\"}} 2"),
            "nightjar_tcp_retransmits_total{container=\"host\"} 2".into(),
            format!("nightjar_tcp_rtt_seconds_count{{container=\"{short}\"}} 1"),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("nightjar_tcp_rtt_seconds_count{container=\"host\"}"));
    }

    #[test]
    fn attributed_flows_add_their_new_traffic_each_way() {
        let t = Arc::new(Telemetry::new());
        let mut m = NetworkMetrics::new(t.clone());
        let end = FlowEndpoint {
            addr: "10.0.0.1".parse().unwrap(),
            port: 1,
        };
        let flow = |socket_end, new_packets, new_bytes| {
            EventBody::Flow(Box::new(FlowRecord {
                reason: "periodic",
                interface: "eth0".into(),
                direction: "egress",
                protocol: "tcp",
                source: end.clone(),
                destination: end.clone(),
                // Cumulative on periodic records: never what the metrics add.
                packets: 1000,
                bytes: 1000,
                tcp_flags: Vec::new(),
                first_seen: String::new(),
                last_seen: String::new(),
                verdict: "forwarded",
                socket_end,
                new_packets,
                new_bytes,
            }))
        };
        for body in [
            flow(Some("source"), 3, 300),
            flow(Some("source"), 2, 200),
            flow(Some("destination"), 4, 400),
            flow(None, 7, 700),
        ] {
            m.apply(&mut event(body, None));
        }
        let text = t.encode();
        for line in [
            "nightjar_container_packets_total{container=\"host\",direction=\"sent\"} 5",
            "nightjar_container_bytes_total{container=\"host\",direction=\"sent\"} 500",
            "nightjar_container_packets_total{container=\"host\",direction=\"received\"} 4",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn container_labels_are_bounded() {
        let t = Arc::new(Telemetry::new());
        let mut m = NetworkMetrics::new(t.clone());
        for i in 0..MAX_CONTAINERS + 5 {
            let id = format!("{i:012x}{}", "f".repeat(52));
            let mut e = event(
                EventBody::TcpEstablished(Box::new(connection("outbound", None))),
                Some(&id),
            );
            m.apply(&mut e);
        }
        assert_eq!(m.containers.len(), MAX_CONTAINERS);
        let text = t.encode();
        assert!(
            text.contains("nightjar_tcp_connections_total{container=\"other\",event=\"opened\"} 5"),
            "{text}"
        );
    }
}
