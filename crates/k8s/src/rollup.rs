//! Roll-ups: what events say about pods, summed to workloads and services (and to pods when
//! asked), and the service map's edges. Runs after [`KubeAnnotator`](crate::KubeAnnotator).
//!
//! Label cardinality is bounded twice: pod-level series only with `--pod-metrics`, and at
//! most [`MAX_SERIES`] distinct units or edges; past that, new ones count under `other`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightjar_core::pipeline::Transform;
use nightjar_core::telemetry::{
    EdgeLabel, ImportanceLabel, LabelBudget, ObjectEventLabel, ObjectLabel, Telemetry,
};
use nightjar_core::{Event, EventBody, PeerIdentity, PodContext};

/// Distinct units (workloads, services, pods) and edges kept as label sets.
pub const MAX_SERIES: usize = 10_000;

/// Importance gauges of pods that went away are dropped this often (the live ones come back
/// with their next event).
const IMPORTANCE_RESET: Duration = Duration::from_secs(60);

/// The units an event counts towards: its workload, each of its services, and its pod when
/// pod-level metrics are on.
pub fn units(k: &PodContext, pods: bool) -> Vec<ObjectLabel> {
    let mut out = Vec::with_capacity(2 + k.services.len());
    out.push(ObjectLabel {
        namespace: k.namespace.to_string(),
        kind: k.workload.kind.to_string(),
        name: k.workload.name.to_string(),
    });
    for s in &k.services {
        out.push(ObjectLabel {
            namespace: s.namespace.to_string(),
            kind: "Service".into(),
            name: s.name.to_string(),
        });
    }
    if pods {
        out.push(ObjectLabel {
            namespace: k.namespace.to_string(),
            kind: "Pod".into(),
            name: k.pod.to_string(),
        });
    }
    out
}

/// The unit as labelled, or folded into `other` once `budget` is spent.
pub fn admit(budget: &mut LabelBudget, unit: ObjectLabel) -> ObjectLabel {
    let key = format!("{}/{}/{}", unit.namespace, unit.kind, unit.name);
    if budget.admit(&key) {
        return unit;
    }
    ObjectLabel {
        namespace: "other".into(),
        kind: unit.kind,
        name: "other".into(),
    }
}

/// The roll-up transform.
#[derive(Debug)]
pub struct KubeRollup {
    telemetry: Arc<Telemetry>,
    pods: bool,
    units: LabelBudget,
    edges: LabelBudget,
    importance_reset: Instant,
    /// The context each pod's importance gauges were last set from: they are set again only
    /// when it changes, not on every event.
    importance_from: HashMap<Arc<str>, Arc<PodContext>>,
}

impl KubeRollup {
    /// `pods`: also report per pod (off by default: one series per pod churns).
    pub fn new(telemetry: Arc<Telemetry>, pods: bool) -> Self {
        Self {
            telemetry,
            pods,
            units: LabelBudget::new(MAX_SERIES),
            edges: LabelBudget::new(MAX_SERIES),
            importance_reset: Instant::now(),
            importance_from: HashMap::new(),
        }
    }

    fn count(&mut self, k: &PodContext, what: &'static str, family: Family, n: u64) {
        if n == 0 {
            return;
        }
        for unit in units(k, self.pods) {
            let unit = admit(&mut self.units, unit);
            let label = ObjectEventLabel {
                namespace: unit.namespace,
                kind: unit.kind,
                name: unit.name,
                event: what,
            };
            let t = &self.telemetry;
            match family {
                Family::Connections => t.k8s_connections.get_or_create(&label).inc_by(n),
                Family::Bytes => t.k8s_bytes.get_or_create(&label).inc_by(n),
                Family::Packets => t.k8s_packets.get_or_create(&label).inc_by(n),
            };
        }
    }

    /// The service-map edges of a connection or flow to a service: one per service the
    /// calling pod backs (or one with an empty client service when it backs none).
    fn edges(&mut self, k: &PodContext, peer: Option<&PeerIdentity>) -> Vec<EdgeLabel> {
        let Some(PeerIdentity::Service { namespace, name }) = peer else {
            return Vec::new();
        };
        let client = format!("{}/{}/{}", k.namespace, k.workload.kind, k.workload.name);
        let mut client_services: Vec<String> = k
            .services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        if client_services.is_empty() {
            client_services.push(String::new());
        }
        client_services
            .into_iter()
            .map(|client_service| {
                let key = format!("{client} {client_service} {namespace}/{name}");
                if self.edges.admit(&key) {
                    EdgeLabel {
                        client: client.clone(),
                        client_service,
                        service_namespace: namespace.to_string(),
                        service: name.to_string(),
                    }
                } else {
                    EdgeLabel {
                        client: "other".into(),
                        client_service: String::new(),
                        service_namespace: "other".into(),
                        service: "other".into(),
                    }
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Family {
    Connections,
    Bytes,
    Packets,
}

impl Transform for KubeRollup {
    fn name(&self) -> &'static str {
        "kubernetes_rollup"
    }

    fn apply(&mut self, event: &mut Event) -> bool {
        let Some(k) = event.kubernetes.clone() else {
            return true;
        };
        let fresh = !self
            .importance_from
            .get(&k.pod_uid)
            .is_some_and(|last| Arc::ptr_eq(last, &k));
        if fresh {
            for s in &k.services {
                self.telemetry
                    .pod_importance
                    .get_or_create(&ImportanceLabel {
                        namespace: k.namespace.to_string(),
                        pod: k.pod.to_string(),
                        service: s.name.to_string(),
                    })
                    .set(s.importance.score);
            }
            self.importance_from.insert(k.pod_uid.clone(), k.clone());
        }
        match &event.body {
            EventBody::TcpEstablished(c) => {
                let what = if c.direction == "inbound" {
                    "accepted"
                } else {
                    "opened"
                };
                self.count(&k, what, Family::Connections, 1);
                if c.direction == "outbound" {
                    for edge in self.edges(&k, event.peer.as_deref()) {
                        self.telemetry
                            .service_map_connections
                            .get_or_create(&edge)
                            .inc();
                    }
                }
            }
            EventBody::TcpClose(c) => {
                let what = if c.failed() { "failed" } else { "closed" };
                self.count(&k, what, Family::Connections, 1);
            }
            EventBody::Flow(f) => {
                let what = match f.socket_end {
                    Some("source") => "sent",
                    Some("destination") => "received",
                    _ => return true,
                };
                self.count(&k, what, Family::Bytes, f.new_bytes);
                self.count(&k, what, Family::Packets, f.new_packets);
                for edge in self.edges(&k, event.peer.as_deref()) {
                    self.telemetry
                        .service_map_bytes
                        .get_or_create(&edge)
                        .inc_by(f.new_bytes);
                }
            }
            _ => {}
        }
        true
    }

    fn end_batch(&mut self) {
        if self.importance_reset.elapsed() >= IMPORTANCE_RESET {
            self.telemetry.pod_importance.clear();
            self.importance_from.clear();
            self.importance_reset = Instant::now();
        }
    }
}
