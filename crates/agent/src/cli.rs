//! Command-line interface. Unknown flags exit with status 2 (clap's usage error).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "nightjar",
    version,
    about = "eBPF runtime security and observability agent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the BPF programs and stream events until SIGINT/SIGTERM.
    Agent(Box<AgentArgs>),
    /// Print what this kernel supports and which fallbacks are in use.
    Doctor,
    /// Run the agent while a short built-in workload runs, printing its events.
    Demo(DemoArgs),
    /// Show or change a running agent's XDP blocklist.
    Blocklist(BlocklistArgs),
    /// Show what a running agent's XDP programs count.
    Xdp(XdpArgs),
    /// This node's pods as a running agent sees them: workload, services and importance.
    Pods(PodsArgs),
    /// The demo's workload (run by `nightjar demo` as a child process).
    #[command(hide = true)]
    DemoWorkload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line (docs/events.md).
    Json,
    /// No event output (metrics only).
    None,
}

#[derive(Debug, Default, Args)]
pub struct AgentArgs {
    /// YAML configuration file (docs/config.md); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Event output format.
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Write events to this file instead of stdout.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Disable the /metrics endpoint.
    #[arg(long)]
    pub no_metrics: bool,
    /// Hook groups to load (process is always on): process, file, privilege, system, network.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Report every open under these path prefixes (repeatable; "/" reports every open).
    #[arg(long = "file-prefix")]
    pub file_prefixes: Vec<String>,
    /// Report only opens that may write under these path prefixes (repeatable).
    #[arg(long = "file-write-prefix")]
    pub file_write_prefixes: Vec<String>,
    /// Only output events of these types (repeatable or comma-separated).
    #[arg(long = "type", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only output events of processes running this binary (path or file name).
    #[arg(long = "binary")]
    pub binaries: Vec<String>,
    /// Only output events of these pids.
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Only output events from containers with this id prefix ("host" for the host).
    #[arg(long = "container")]
    pub containers: Vec<String>,
    /// Account network flows on this interface with TC ingress and egress (repeatable).
    #[arg(long = "tc-interface")]
    pub tc_interfaces: Vec<String>,
    /// Also account every veth interface that exists or appears (pod interfaces), following
    /// link changes from rtnetlink.
    #[arg(long)]
    pub tc_veths: bool,
    /// Report and forget a flow after this many seconds without packets.
    #[arg(long)]
    pub flow_idle_timeout: Option<u64>,
    /// Report long flows (cumulative counters) this often, in seconds.
    #[arg(long)]
    pub flow_report_interval: Option<u64>,
    /// Count XDP source networks by this IPv4 prefix length (default 24).
    #[arg(long)]
    pub xdp_source_prefix4: Option<u32>,
    /// Count XDP source networks by this IPv6 prefix length (default 64).
    #[arg(long)]
    pub xdp_source_prefix6: Option<u32>,
    /// Emit `network_rates` events (per container, per second) this often, in seconds
    /// (default 10; 0 turns them off).
    #[arg(long)]
    pub rates_interval: Option<u64>,
    /// Entries of the kernel flow table (LRU; evictions are counted).
    #[arg(long)]
    pub flow_table_size: Option<u32>,
    /// Refuse connect() to CIDR[:PORT] with EPERM and report it (repeatable).
    #[arg(long = "deny-connect")]
    pub deny_connect: Vec<String>,
    /// Report connect() to CIDR[:PORT] without refusing it (repeatable).
    #[arg(long = "audit-connect")]
    pub audit_connect: Vec<String>,
    /// Attach XDP (counters and the blocklist) to this interface (repeatable).
    #[arg(long = "xdp-interface")]
    pub xdp_interfaces: Vec<String>,
    /// Drop packets from this source CIDR on the XDP interfaces (repeatable).
    #[arg(long = "block")]
    pub block: Vec<String>,
    /// Count, but do not drop, packets from this source CIDR (repeatable).
    #[arg(long = "block-audit")]
    pub block_audit: Vec<String>,
    /// Ring-buffer size in bytes (power of two).
    #[arg(long)]
    pub ringbuf_bytes: Option<u32>,
    /// Read kernel structs with one bpf_probe_read_kernel per field even where the kernel has
    /// the bpf_rdonly_cast kfunc (the fallback build; slower).
    #[arg(long)]
    pub probe_read: bool,
    /// The agent's CPU priority: adaptive (yields to every workload while it keeps up, normal
    /// when it falls behind or is starved) or normal.
    #[arg(long, value_enum)]
    pub cpu_priority: Option<crate::sched::CpuPriority>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Kubernetes objects in YAML (as `kubectl get -o yaml` prints them) standing in for the
    /// API: events get pod, workload and service context from them.
    #[arg(long)]
    pub kube_metadata: Option<PathBuf>,
    /// Watch the Kubernetes API with this kubeconfig (in a pod, the service account is used
    /// without this flag).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name, to watch only its pods (default: $NODE_NAME, else the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The container runtime's CRI socket, for pod and container names of containers the API
    /// has not reported yet (default: containerd's, when it exists).
    #[arg(long)]
    pub cri_socket: Option<PathBuf>,
    /// Do not ask the container runtime.
    #[arg(long)]
    pub no_cri: bool,
    /// Also report Kubernetes roll-ups per pod (one series per pod; off by default).
    #[arg(long)]
    pub pod_metrics: bool,
    /// Read pods' CPU and memory from their cgroups this often, in seconds (default 10).
    #[arg(long)]
    pub resource_interval: Option<u64>,
    /// Control socket for `nightjar blocklist` (default /run/nightjar/control.sock).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Do not open the control socket.
    #[arg(long)]
    pub no_control_socket: bool,
}

#[derive(Debug, Args)]
pub struct BlocklistArgs {
    /// The agent's control socket.
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub action: BlocklistAction,
}

#[derive(Debug, Args)]
pub struct PodsArgs {
    /// The agent's control socket.
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct XdpArgs {
    /// The agent's control socket.
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub action: XdpAction,
}

#[derive(Debug, Subcommand)]
pub enum XdpAction {
    /// The busiest source networks (per interface, by bytes).
    Sources {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BlocklistAction {
    /// List entries with the packets and bytes each matched.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Drop (or with --audit only count) packets from a source CIDR.
    Add {
        cidr: String,
        #[arg(long)]
        audit: bool,
    },
    /// Remove an entry; its traffic passes again.
    Remove { cidr: String },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Show every event, not only those of the demo workload.
    #[arg(long)]
    pub all: bool,
}
