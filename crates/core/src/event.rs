//! The domain event: what Nightjar saw, who did it, and where it ran.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

/// One observation, enriched as far as the pipeline could.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Wall-clock time of the event, RFC 3339 with nanoseconds.
    pub time: String,
    /// Nanoseconds since boot (suspend included), as the kernel stamped it.
    pub ktime_ns: u64,
    /// Host name of the node the agent runs on.
    pub node: Arc<str>,
    /// Process (thread-group) id and thread id of the task that caused the event.
    pub pid: u32,
    pub tid: u32,
    /// cgroup v2 id of that task.
    pub cgroup_id: u64,
    /// Truncation, read-failure and ABI markers carried from the kernel. Named
    /// `event_flags` in JSON: several bodies have syscall `flags` of their own.
    #[serde(rename = "event_flags", skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<&'static str>,
    /// The process, from the process cache (set by enrichment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Arc<ProcessInfo>>,
    /// Its parent, from the process cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Arc<ProcessInfo>>,
    /// Pids of the ancestors above the parent, nearest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<u32>,
    /// Where the process runs: a container, or the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<ContainerInfo>>,
    /// The pod, workload and services of that container, when Kubernetes metadata knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Arc<PodContext>>,
    /// Who is at the other end (network events): a pod, a service, a node, or the world.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Arc<PeerIdentity>>,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// An event no task caused (a flow record, a rates report): no pid, cgroup or context
    /// yet; attribution and enrichment may fill them in.
    pub fn unattributed(time: String, ktime_ns: u64, node: Arc<str>, body: EventBody) -> Self {
        Self {
            time,
            ktime_ns,
            node,
            pid: 0,
            tid: 0,
            cgroup_id: 0,
            flags: Vec::new(),
            process: None,
            parent: None,
            ancestors: Vec::new(),
            container: None,
            kubernetes: None,
            peer: None,
            body,
        }
    }

    /// The event's type name as it appears in JSON (`"process_exec"`, `"file_open"`...).
    pub fn type_name(&self) -> &'static str {
        self.body.type_name()
    }
}

/// A process as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in ns since boot; with pid, identifies the process across pid reuse.
    pub start_time_ns: u64,
    pub binary: String,
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    pub cwd: String,
    pub comm: String,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Login uid (audit); `None` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auid: Option<u32>,
    pub cgroup_id: u64,
    /// True when the entry was read from /proc at start rather than seen at exec.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_procfs: bool,
}

/// Where a task runs, derived from its cgroup path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// Container id (64 hex for containerd, CRI-O and docker); `None` on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub runtime: Runtime,
    /// Kubernetes pod UID when the cgroup path carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// systemd unit (`nginx.service`, `session-3.scope`) for host processes under systemd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The cgroup v2 path, relative to the cgroup2 mount.
    pub cgroup: String,
}

/// A workload: the top owner of a pod (`Deployment/web`, `StatefulSet/db`, `CronJob/backup`),
/// or the pod itself when nothing owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadRef {
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

/// How important a pod is to one of its services (docs/kubernetes.md has the formula).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Importance {
    /// 0 (the service would not notice) to 1 (the service is this pod).
    pub score: f64,
    /// `critical` (>= 0.75), `high` (>= 0.5), `medium` (>= 0.25) or `low`.
    pub level: &'static str,
    /// The inputs, in words: "1 of 1 ready endpoints, 100% of traffic, 2 callers".
    pub reason: String,
}

/// A service a pod backs, with the pod's importance to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceMembership {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub importance: Importance,
}

/// The Kubernetes context of an event's container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodContext {
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub pod_uid: Arc<str>,
    /// The container's name in the pod spec, when the container id is known to the metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// Direct owner (`ReplicaSet/web-7d4b9`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<WorkloadRef>,
    pub workload: WorkloadRef,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceMembership>,
}

/// What an IP address is, as far as the cluster knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerIdentity {
    Pod {
        namespace: Arc<str>,
        name: Arc<str>,
        /// Known for pods on this node; a pod elsewhere is known by name from the
        /// EndpointSlices that list its address.
        #[serde(skip_serializing_if = "Option::is_none")]
        workload: Option<WorkloadRef>,
    },
    Service {
        namespace: Arc<str>,
        name: Arc<str>,
    },
    Node {
        name: Arc<str>,
    },
    /// Outside the cluster (or not known to it).
    World,
}

/// Container runtime, or the host itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Host,
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A container whose runtime the path does not name (e.g. a bare `kubepods/.../<id>`).
    Unknown,
}

/// Result of a syscall: its name, return value and, on failure, the errno name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyscallResult {
    pub syscall: &'static str,
    pub ret: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// What an exec record carries; becomes the process's [`ProcessInfo`] in enrichment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecData {
    pub info: ProcessInfo,
    pub suid: u32,
    pub sgid: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
}

/// A socket address as reported in events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum SockAddr {
    Inet {
        addr: IpAddr,
        port: u16,
    },
    Inet6 {
        addr: IpAddr,
        port: u16,
        #[serde(skip_serializing_if = "is_zero")]
        scope_id: u32,
    },
    Unix {
        path: String,
    },
    Other {
        family_id: u16,
    },
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The kind-specific part of an event. Serialised flat, with `type` naming the variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// A process replaced its image; the new image is in [`Event::process`].
    ProcessExec {
        #[serde(skip)]
        exec: Box<ExecData>,
        cap_effective: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        setuid_from: Option<u32>,
    },
    /// A process created a new process (threads are not reported).
    ProcessFork {
        child_pid: u32,
        child_start_time_ns: u64,
    },
    /// The last thread of a process exited.
    ProcessExit {
        /// exit(2) status when the process exited normally.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Name of the signal that killed it (`SIGKILL`), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<&'static str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        core_dumped: bool,
        #[serde(skip)]
        start_time_ns: u64,
    },
    FileOpen {
        #[serde(flatten)]
        result: SyscallResult,
        path: String,
        flags: Vec<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    FileUnlink {
        #[serde(flatten)]
        result: SyscallResult,
        path: String,
    },
    FileRename {
        #[serde(flatten)]
        result: SyscallResult,
        path: String,
        new_path: String,
    },
    FileChmod {
        #[serde(flatten)]
        result: SyscallResult,
        path: String,
        mode: u32,
    },
    FileChown {
        #[serde(flatten)]
        result: SyscallResult,
        path: String,
        /// `None` when the call leaves it unchanged (-1).
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// set*uid/set*gid/capset; ids left unchanged (-1) are `None`.
    CredChange {
        #[serde(flatten)]
        result: SyscallResult,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ids: Vec<Option<u32>>,
        /// capset's sets (hex): the caller's credentials after a successful call.
        #[serde(skip_serializing_if = "Option::is_none")]
        cap_effective: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cap_permitted: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cap_inheritable: Option<String>,
    },
    Ptrace {
        #[serde(flatten)]
        result: SyscallResult,
        request: &'static str,
        target_pid: i32,
    },
    Kill {
        #[serde(flatten)]
        result: SyscallResult,
        target_pid: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        target_tid: Option<i32>,
        signal: &'static str,
    },
    Mount {
        #[serde(flatten)]
        result: SyscallResult,
        source: String,
        target: String,
        flags: u64,
    },
    Umount {
        #[serde(flatten)]
        result: SyscallResult,
        target: String,
        flags: u64,
    },
    ModuleLoad {
        #[serde(flatten)]
        result: SyscallResult,
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i32>,
        params: String,
    },
    Bpf {
        #[serde(flatten)]
        result: SyscallResult,
        command: &'static str,
    },
    MemfdCreate {
        #[serde(flatten)]
        result: SyscallResult,
        name: String,
        flags: u64,
    },
    Namespace {
        #[serde(flatten)]
        result: SyscallResult,
        namespaces: Vec<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i32>,
    },
    SockConnect(SockOp),
    SockAccept(SockOp),
    SockBind(SockOp),
    SockListen(SockOp),
    /// A cgroup v2 directory was created (container runtimes do this before a container
    /// starts). `new_cgroup_id` names it; the event's own `cgroup_id` is the creator's.
    CgroupMkdir {
        new_cgroup_id: u64,
        path: String,
    },
    /// A network flow as one interface saw it in one direction (TC accounting).
    Flow(Box<FlowRecord>),
    /// A TCP connection was established: outbound at the handshake, inbound when accepted
    /// (so the accepting process is known). The event's pid and cgroup are the owner's.
    TcpEstablished(Box<TcpConnection>),
    /// A TCP connection reached CLOSE: orderly, reset, refused or timed out, with the
    /// kernel's counters for its whole life.
    TcpClose(Box<TcpConnection>),
    /// Per-container network rates over the last interval (`--rates-interval`).
    NetworkRates(Box<crate::rates::NetworkRates>),
    /// A connect() matched a connect rule: `denied` (refused with EPERM) or `audited`.
    ConnectPolicy {
        verdict: &'static str,
        /// Index of the matching rule in the agent's configuration.
        rule: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        remote: Option<SockAddr>,
    },
}

/// One end of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowEndpoint {
    pub addr: IpAddr,
    /// Port; for ICMP the type (high byte) and code (low byte).
    pub port: u16,
}

/// A flow log record, in the spirit of Hubble's flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// Why it is reported now: `end` (FIN/RST), `idle`, `periodic` (a long flow, cumulative
    /// counters) or `agent_stop`.
    pub reason: &'static str,
    pub interface: String,
    /// `ingress` or `egress`, as the interface sees it.
    pub direction: &'static str,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or `other`.
    pub protocol: &'static str,
    pub source: FlowEndpoint,
    pub destination: FlowEndpoint,
    pub packets: u64,
    /// Frame bytes as TC sees them (link-layer header included).
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp_flags: Vec<&'static str>,
    pub first_seen: String,
    pub last_seen: String,
    /// `forwarded` (the accounting programs never drop).
    pub verdict: &'static str,
    /// Which end is the socket the flow is attributed to (`source` or `destination`), when
    /// the flow's 5-tuple matched a socket event; `pid` and `cgroup_id` are then its owner's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_end: Option<&'static str>,
    /// Packets and bytes since this flow's previous record (all of them for the first):
    /// what metrics add up, since `periodic` records repeat cumulative counters.
    #[serde(skip)]
    pub new_packets: u64,
    #[serde(skip)]
    pub new_bytes: u64,
}

/// A TCP connection as sock_ops sees it, with its owning process in the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpConnection {
    /// The kernel's socket cookie: joins `sock_connect`/`sock_accept` and both records.
    pub cookie: u64,
    /// `outbound` (this host connected) or `inbound` (accepted from a listener).
    pub direction: &'static str,
    /// How the owner was learned: `connect`, `accept`, or `unknown` (closed before any
    /// process accepted it; pid 0, the listener's cgroup).
    pub owner: &'static str,
    pub local: FlowEndpoint,
    pub remote: FlowEndpoint,
    /// connect() to established, outbound only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_us: Option<u64>,
    /// Established to this record (close: the connection's lifetime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Smoothed round-trip time, microseconds.
    pub srtt_us: u32,
    pub retransmits: u32,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub segments_in: u32,
    pub segments_out: u32,
    /// Close only: `closed` (orderly), `reset`, `refused`, `timeout`, `aborted` (closed
    /// before the handshake finished) or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// Close only: the TCP state it left for CLOSE (`syn_sent`, `fin_wait2`, `last_ack`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<&'static str>,
    /// Close only: the socket error (`ECONNREFUSED`...), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl TcpConnection {
    /// True for the close of a connection that was never established (refused, timed out,
    /// aborted).
    pub fn failed(&self) -> bool {
        self.outcome.is_some() && self.duration_ms.is_none()
    }
}

/// A socket syscall with the addresses involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SockOp {
    #[serde(flatten)]
    pub result: SyscallResult,
    pub fd: i32,
    /// `stream`, `dgram`, `raw`, `seqpacket`...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sock_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<SockAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SockAddr>,
    /// listen backlog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u32>,
    /// The socket's cookie (as in `tcp_established`/`tcp_close`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
}

impl EventBody {
    /// Every type name, in the order of the kind numbers; used to validate filters.
    pub const TYPE_NAMES: &'static [&'static str] = &[
        "process_exec",
        "process_fork",
        "process_exit",
        "file_open",
        "file_unlink",
        "file_rename",
        "file_chmod",
        "file_chown",
        "cred_change",
        "ptrace",
        "kill",
        "mount",
        "umount",
        "module_load",
        "bpf",
        "memfd_create",
        "namespace",
        "sock_connect",
        "sock_accept",
        "sock_bind",
        "sock_listen",
        "cgroup_mkdir",
        "flow",
        "connect_policy",
        "tcp_established",
        "tcp_close",
        "network_rates",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::ProcessExec { .. } => "process_exec",
            EventBody::ProcessFork { .. } => "process_fork",
            EventBody::ProcessExit { .. } => "process_exit",
            EventBody::FileOpen { .. } => "file_open",
            EventBody::FileUnlink { .. } => "file_unlink",
            EventBody::FileRename { .. } => "file_rename",
            EventBody::FileChmod { .. } => "file_chmod",
            EventBody::FileChown { .. } => "file_chown",
            EventBody::CredChange { .. } => "cred_change",
            EventBody::Ptrace { .. } => "ptrace",
            EventBody::Kill { .. } => "kill",
            EventBody::Mount { .. } => "mount",
            EventBody::Umount { .. } => "umount",
            EventBody::ModuleLoad { .. } => "module_load",
            EventBody::Bpf { .. } => "bpf",
            EventBody::MemfdCreate { .. } => "memfd_create",
            EventBody::Namespace { .. } => "namespace",
            EventBody::SockConnect(_) => "sock_connect",
            EventBody::SockAccept(_) => "sock_accept",
            EventBody::SockBind(_) => "sock_bind",
            EventBody::SockListen(_) => "sock_listen",
            EventBody::CgroupMkdir { .. } => "cgroup_mkdir",
            EventBody::Flow(_) => "flow",
            EventBody::ConnectPolicy { .. } => "connect_policy",
            EventBody::TcpEstablished(_) => "tcp_established",
            EventBody::TcpClose(_) => "tcp_close",
            EventBody::NetworkRates(_) => "network_rates",
        }
    }
}
