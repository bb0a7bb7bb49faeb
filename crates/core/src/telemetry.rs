//! The agent's own metrics: events by type, losses by reason, decode errors, cache sizes.
//!
//! Every stage reports here; the Prometheus sink renders the registry. Losses are never
//! silent: each place that can drop an event has a reason label of its own.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindReasonLabel {
    pub r#type: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabel {
    pub interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceDirectionLabel {
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabel {
    /// The entry's CIDR as configured.
    pub entry: String,
    /// `drop` or `audit`.
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabel {
    /// Short container id (12 hex), `host`, or `other` past the label budget.
    pub container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabel {
    pub container: String,
    /// `opened` (outbound established), `accepted` (inbound established), `closed`, `failed`
    /// (never established: refused, timed out, aborted).
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerDirectionLabel {
    pub container: String,
    /// `sent` or `received`, as the container's socket sees it.
    pub direction: &'static str,
}

/// A workload (`kind`/`workload`) or a service (`kind` = `Service`), or with `--pod-metrics` a
/// pod (`kind` = `Pod`), in a namespace: the unit Kubernetes roll-ups are reported by.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabel {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectEventLabel {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// Connections: `opened`, `accepted`, `closed`, `failed`; traffic: `sent`, `received`;
    /// utilisation: `request`, `limit`.
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabel {
    /// The calling workload: `namespace/Kind/name`.
    pub client: String,
    /// A service the calling pod backs (one series per such service), empty when none: the
    /// service-to-service view of the same edge.
    pub client_service: String,
    pub service_namespace: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImportanceLabel {
    pub namespace: String,
    pub pod: String,
    pub service: String,
}

/// Bounds the label values a metric family may grow: the first `capacity` distinct keys are
/// admitted, later ones are to be folded into an `other` series by the caller.
#[derive(Debug)]
pub struct LabelBudget {
    seen: std::collections::HashSet<String>,
    capacity: usize,
}

impl LabelBudget {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: std::collections::HashSet::new(),
            capacity,
        }
    }

    /// True when `key` has its own series (already, or newly within the budget).
    pub fn admit(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return true;
        }
        if self.seen.len() >= self.capacity {
            return false;
        }
        self.seen.insert(key.to_string());
        true
    }

    /// Keys admitted so far.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A float gauge family.
pub type FloatGauges<L> = Family<L, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// A histogram family with fixed buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn rtt_histogram() -> Histogram {
    // 10 us to ~5 s: loopback, LAN, WAN and the pathological.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// Why an event was lost. Kernel-side reasons come from the BPF error map.
pub mod loss {
    /// The BPF ring buffer was full when the kernel tried to write.
    pub const RINGBUF_FULL: &str = "ringbuf_full";
    /// A ring-buffer record could not be decoded.
    pub const DECODE_ERROR: &str = "decode_error";
    /// A followed TCP connection was forgotten to make room: its later records are dropped.
    pub const TCP_TABLE_FULL: &str = "tcp_table_full";
}

/// Shared metrics of one agent. Cheap to update from any task.
#[derive(Debug)]
pub struct Telemetry {
    registry: Mutex<Registry>,
    pub events: Family<TypeLabel, Counter>,
    pub lost: Family<ReasonLabel, Counter>,
    pub lost_by_type: Family<KindReasonLabel, Counter>,
    pub decode_errors: Family<ReasonLabel, Counter>,
    pub kernel_read_failures: Counter,
    pub process_cache_size: Gauge,
    pub cgroup_cache_size: Gauge,
    pub ringbuf_bytes: Gauge<i64, AtomicI64>,
    pub programs_attached: Gauge,
    /// 1 for how the programs read kernel structs (mode: kfunc_cast or probe_read).
    pub kernel_reads: Family<ModeLabel, Gauge>,
    pub sink_write_errors: Family<ReasonLabel, Counter<u64, AtomicU64>>,
    pub xdp_packets: Family<InterfaceLabel, Counter>,
    pub xdp_bytes: Family<InterfaceLabel, Counter>,
    pub blocklist_packets: Family<BlockLabel, Counter>,
    pub blocklist_bytes: Family<BlockLabel, Counter>,
    pub interface_packets: Family<InterfaceDirectionLabel, Counter>,
    pub interface_bytes: Family<InterfaceDirectionLabel, Counter>,
    pub tcp_connections: Family<ConnectionLabel, Counter>,
    pub tcp_retransmits: Family<ContainerLabel, Counter>,
    pub tcp_rtt: HistogramFamily<ContainerLabel>,
    pub container_packets: Family<ContainerDirectionLabel, Counter>,
    pub container_bytes: Family<ContainerDirectionLabel, Counter>,
    pub flow_attribution: Family<ResultLabel, Counter>,
    pub socket_owner_entries: Gauge,
    pub tcp_connections_followed: Gauge,
    pub flows_evicted: Counter,
    pub kubernetes_pods: Gauge,
    pub k8s_connections: Family<ObjectEventLabel, Counter>,
    pub k8s_bytes: Family<ObjectEventLabel, Counter>,
    pub k8s_packets: Family<ObjectEventLabel, Counter>,
    pub k8s_cpu_seconds: Family<ObjectLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub k8s_memory_bytes: Family<ObjectLabel, Gauge>,
    pub k8s_cpu_utilization: FloatGauges<ObjectEventLabel>,
    pub k8s_memory_utilization: FloatGauges<ObjectEventLabel>,
    pub service_map_connections: Family<EdgeLabel, Counter>,
    pub service_map_bytes: Family<EdgeLabel, Counter>,
    pub pod_importance: FloatGauges<ImportanceLabel>,
    pub kubernetes_api_up: Gauge,
    pub container_runtime_up: Gauge,
    pub kubernetes_unresolved: Counter,
    pub flows_created: Counter,
    pub flow_table_entries: Gauge,
    /// Passes of the ring-buffer drain (one per wakeup or tick): a drain that stops
    /// advancing is not getting CPU.
    pub drain_passes: Counter,
    /// Drain batches that came back full: the backlog was larger than one batch.
    pub drain_full_batches: Counter,
    /// 1 for the scheduling policy the agent's threads run under (mode: idle or normal).
    pub cpu_policy: Family<ModeLabel, Gauge>,
    /// Times the agent went from yielding the CPU to claiming its fair share.
    pub cpu_policy_promotions: Counter,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let t = Self {
            registry: Mutex::new(Registry::with_prefix("nightjar")),
            events: Family::default(),
            lost: Family::default(),
            lost_by_type: Family::default(),
            decode_errors: Family::default(),
            kernel_read_failures: Counter::default(),
            process_cache_size: Gauge::default(),
            cgroup_cache_size: Gauge::default(),
            ringbuf_bytes: Gauge::default(),
            programs_attached: Gauge::default(),
            kernel_reads: Family::default(),
            sink_write_errors: Family::default(),
            xdp_packets: Family::default(),
            xdp_bytes: Family::default(),
            blocklist_packets: Family::default(),
            blocklist_bytes: Family::default(),
            interface_packets: Family::default(),
            interface_bytes: Family::default(),
            tcp_connections: Family::default(),
            tcp_retransmits: Family::default(),
            tcp_rtt: Family::new_with_constructor(rtt_histogram),
            container_packets: Family::default(),
            container_bytes: Family::default(),
            flow_attribution: Family::default(),
            socket_owner_entries: Gauge::default(),
            tcp_connections_followed: Gauge::default(),
            flows_evicted: Counter::default(),
            kubernetes_pods: Gauge::default(),
            k8s_connections: Family::default(),
            k8s_bytes: Family::default(),
            k8s_packets: Family::default(),
            k8s_cpu_seconds: Family::default(),
            k8s_memory_bytes: Family::default(),
            k8s_cpu_utilization: Family::default(),
            k8s_memory_utilization: Family::default(),
            service_map_connections: Family::default(),
            service_map_bytes: Family::default(),
            pod_importance: Family::default(),
            kubernetes_api_up: Gauge::default(),
            container_runtime_up: Gauge::default(),
            kubernetes_unresolved: Counter::default(),
            flows_created: Counter::default(),
            flow_table_entries: Gauge::default(),
            drain_passes: Counter::default(),
            drain_full_batches: Counter::default(),
            cpu_policy: Family::default(),
            cpu_policy_promotions: Counter::default(),
        };
        {
            let mut r = t.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register("events", "Events emitted, by type", t.events.clone());
            r.register(
                "lost_events",
                "Events lost, by reason (kernel ring buffer full, undecodable record)",
                t.lost.clone(),
            );
            r.register(
                "lost_events_by_type",
                "Events lost in the kernel, by event type and reason",
                t.lost_by_type.clone(),
            );
            r.register(
                "decode_errors",
                "Ring-buffer records that could not be decoded, by error",
                t.decode_errors.clone(),
            );
            r.register(
                "kernel_read_failures",
                "bpf_probe_read failures in the kernel (event sent with a read_failed flag)",
                t.kernel_read_failures.clone(),
            );
            r.register(
                "process_cache_entries",
                "Processes in the process cache",
                t.process_cache_size.clone(),
            );
            r.register(
                "cgroup_cache_entries",
                "cgroups in the cgroup id -> path cache",
                t.cgroup_cache_size.clone(),
            );
            r.register(
                "ringbuf_size_bytes",
                "Size of the BPF ring buffer",
                t.ringbuf_bytes.clone(),
            );
            r.register(
                "programs_attached",
                "BPF programs attached",
                t.programs_attached.clone(),
            );
            r.register(
                "bpf_kernel_reads",
                "How the BPF programs read kernel structs: kfunc_cast (plain loads through \
                 bpf_rdonly_cast pointers) or probe_read (the fallback); 1 for the mode in use",
                t.kernel_reads.clone(),
            );
            r.register(
                "ringbuf_drain_passes",
                "Passes of the ring-buffer drain (one per wakeup or tick)",
                t.drain_passes.clone(),
            );
            r.register(
                "ringbuf_drain_full_batches",
                "Drain batches that came back full: the backlog exceeded one batch",
                t.drain_full_batches.clone(),
            );
            r.register(
                "agent_cpu_policy",
                "Scheduling policy of the agent's threads: idle (yields to every workload while \
                 it keeps up) or normal; 1 for the policy in force",
                t.cpu_policy.clone(),
            );
            r.register(
                "agent_cpu_policy_promotions",
                "Times the agent fell behind or was starved and took back its fair CPU share",
                t.cpu_policy_promotions.clone(),
            );
            r.register(
                "xdp_packets",
                "Packets seen by XDP, by interface",
                t.xdp_packets.clone(),
            );
            r.register(
                "xdp_bytes",
                "Bytes seen by XDP, by interface",
                t.xdp_bytes.clone(),
            );
            r.register(
                "blocklist_packets",
                "Packets matching a blocklist entry (dropped unless mode=audit)",
                t.blocklist_packets.clone(),
            );
            r.register(
                "blocklist_bytes",
                "Bytes matching a blocklist entry (dropped unless mode=audit)",
                t.blocklist_bytes.clone(),
            );
            r.register(
                "interface_packets",
                "IP packets counted by TC flow accounting, by interface and direction",
                t.interface_packets.clone(),
            );
            r.register(
                "interface_bytes",
                "Frame bytes counted by TC flow accounting, by interface and direction",
                t.interface_bytes.clone(),
            );
            r.register(
                "tcp_connections",
                "TCP connections opened, accepted, closed and failed, by container",
                t.tcp_connections.clone(),
            );
            r.register(
                "tcp_retransmits",
                "TCP segments retransmitted over closed connections, by container",
                t.tcp_retransmits.clone(),
            );
            r.register(
                "tcp_rtt_seconds",
                "Smoothed RTT of TCP connections at close, by container",
                t.tcp_rtt.clone(),
            );
            r.register(
                "container_packets",
                "Packets of attributed flows, by container and direction (sent/received)",
                t.container_packets.clone(),
            );
            r.register(
                "container_bytes",
                "Frame bytes of attributed flows, by container and direction (sent/received)",
                t.container_bytes.clone(),
            );
            r.register(
                "flow_attribution",
                "Flow records by attribution: socket (matched a socket event) or none",
                t.flow_attribution.clone(),
            );
            r.register(
                "socket_owner_entries",
                "Sockets in the 5-tuple -> process table used to attribute flows",
                t.socket_owner_entries.clone(),
            );
            r.register(
                "tcp_connections_followed",
                "TCP connections in the agent's owner table (from connect or establishment to close)",
                t.tcp_connections_followed.clone(),
            );
            r.register(
                "flows_evicted",
                "Flows the full kernel flow table (LRU) evicted before they were reported",
                t.flows_evicted.clone(),
            );
            r.register(
                "kubernetes_pods",
                "Pods in the Kubernetes metadata index",
                t.kubernetes_pods.clone(),
            );
            r.register(
                "k8s_tcp_connections",
                "TCP connections by workload, service (kind=Service) or pod (--pod-metrics)",
                t.k8s_connections.clone(),
            );
            r.register(
                "k8s_network_bytes",
                "Bytes sent and received by workload, service or pod (attributed flows)",
                t.k8s_bytes.clone(),
            );
            r.register(
                "k8s_network_packets",
                "Packets sent and received by workload, service or pod (attributed flows)",
                t.k8s_packets.clone(),
            );
            r.register(
                "k8s_cpu_seconds",
                "CPU time of the containers of a workload, service or pod (cgroup cpu usage)",
                t.k8s_cpu_seconds.clone(),
            );
            r.register(
                "k8s_memory_bytes",
                "Memory in use by the containers of a workload, service or pod (cgroup)",
                t.k8s_memory_bytes.clone(),
            );
            r.register(
                "k8s_cpu_utilization",
                "CPU in use over the pods' CPU requests or limits (event=request|limit)",
                t.k8s_cpu_utilization.clone(),
            );
            r.register(
                "k8s_memory_utilization",
                "Memory in use over the pods' memory requests or limits (event=request|limit)",
                t.k8s_memory_utilization.clone(),
            );
            r.register(
                "service_map_connections",
                "TCP connections from a workload to a service (the service map's edges)",
                t.service_map_connections.clone(),
            );
            r.register(
                "service_map_bytes",
                "Bytes between a workload and a service (the service map's edges)",
                t.service_map_bytes.clone(),
            );
            r.register(
                "pod_importance",
                "How important a pod on this node is to each of its services (0-1)",
                t.pod_importance.clone(),
            );
            r.register(
                "kubernetes_api_up",
                "1 while the Kubernetes API watchers get answers, 0 while they retry",
                t.kubernetes_api_up.clone(),
            );
            r.register(
                "container_runtime_up",
                "1 while the container runtime (CRI) answers, 0 while it is retried",
                t.container_runtime_up.clone(),
            );
            r.register(
                "kubernetes_unresolved",
                "Events from a container the Kubernetes metadata does not know",
                t.kubernetes_unresolved.clone(),
            );
            r.register(
                "flows_created",
                "Flows the TC programs created in the kernel flow table",
                t.flows_created.clone(),
            );
            r.register(
                "flow_table_entries",
                "Flows in the kernel flow table",
                t.flow_table_entries.clone(),
            );
            r.register(
                "sink_write_errors",
                "Errors writing to a sink, by sink",
                t.sink_write_errors.clone(),
            );
        }
        t
    }

    pub fn count_event(&self, type_name: &'static str) {
        self.events
            .get_or_create(&TypeLabel { r#type: type_name })
            .inc();
    }

    pub fn count_lost(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.lost.get_or_create(&ReasonLabel { reason }).inc_by(n);
        }
    }

    /// Renders the registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Total of a lost-events reason so far (tests and the benchmark read this).
    pub fn lost_total(&self, reason: &'static str) -> u64 {
        self.lost.get_or_create(&ReasonLabel { reason }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let t = Telemetry::new();
        t.count_event("file_open");
        t.count_event("file_open");
        t.count_lost(loss::RINGBUF_FULL, 3);
        t.count_lost(loss::DECODE_ERROR, 0);
        let text = t.encode();
        assert!(
            text.contains("nightjar_events_total{type=\"file_open\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("nightjar_lost_events_total{reason=\"ringbuf_full\"} 3"),
            "{text}"
        );
        assert_eq!(t.lost_total(loss::RINGBUF_FULL), 3);
    }
}
