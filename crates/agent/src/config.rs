//! The agent's configuration: a YAML file, overridden by flags.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a typo never silently does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nightjar_core::filter::EventFilter;
use nightjar_loader::connect_rules::{Cidr, ConnectAction, ConnectRule};
use nightjar_loader::flows::FlowTimers;
use nightjar_loader::probes::{DEFAULT_FILE_PREFIXES, DEFAULT_FILE_WRITE_PREFIXES};
use nightjar_loader::xdp::BlockEntry;
use nightjar_loader::{Group, ProbeConfig};
use serde::Deserialize;

use crate::cli::{AgentArgs, OutputFormat};

/// Everything the agent needs to run, after merging file and flags.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub probes: ProbeConfig,
    pub output: OutputFormat,
    pub output_file: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub filter: EventFilter,
    pub duration: Option<std::time::Duration>,
    /// Interfaces with TC flow accounting.
    pub tc_interfaces: Vec<String>,
    /// Also every veth that exists or appears.
    pub tc_veths: bool,
    pub flow_timers: FlowTimers,
    /// Connect rules, in configuration order (a rule's index is its id in events).
    pub connect_rules: Vec<ConnectRule>,
    /// Interfaces with XDP counters and the blocklist.
    pub xdp_interfaces: Vec<String>,
    /// Blocklist entries at start; more come and go through the control socket.
    pub blocklist: Vec<BlockEntry>,
    /// The control socket (`nightjar blocklist` talks to it); `None` disables it.
    pub control_socket: Option<PathBuf>,
    /// Kubernetes objects from the static metadata file, checked at start.
    pub kube_objects: Vec<nightjar_k8s::Object>,
    /// Where to watch the Kubernetes API from, if at all.
    pub kube_api: Option<KubeApi>,
    /// Kubernetes roll-ups per pod too.
    pub pod_metrics: bool,
    /// The container runtime's CRI socket, if it is asked.
    pub cri_socket: Option<PathBuf>,
    /// How often `network_rates` events are emitted; `None`: never.
    pub rates_interval: Option<std::time::Duration>,
    /// How often pods' CPU and memory are read.
    pub resource_interval: std::time::Duration,
    /// How the agent's own threads are scheduled.
    pub cpu_priority: crate::sched::CpuPriority,
}

/// How to reach the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeApi {
    /// A kubeconfig file; `None`: the pod's service account (in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Only this node's pods are watched.
    pub node_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub binaries: Vec<String>,
    #[serde(default)]
    pub pids: Vec<u32>,
    #[serde(default)]
    pub containers: Vec<String>,
}

/// The YAML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    groups: Option<Vec<String>>,
    file_prefixes: Option<Vec<String>>,
    file_write_prefixes: Option<Vec<String>>,
    ringbuf_bytes: Option<u32>,
    probe_read: Option<bool>,
    cpu_priority: Option<crate::sched::CpuPriority>,
    flow_table_size: Option<u32>,
    xdp_source_prefix4: Option<u32>,
    xdp_source_prefix6: Option<u32>,
    output: Option<String>,
    output_file: Option<PathBuf>,
    metrics_addr: Option<SocketAddr>,
    #[serde(default)]
    filter: FilterConfig,
    #[serde(default)]
    tc_interfaces: Vec<String>,
    #[serde(default)]
    tc_veths: bool,
    flow_idle_timeout_secs: Option<u64>,
    flow_report_interval_secs: Option<u64>,
    #[serde(default)]
    connect_rules: Vec<ConnectRuleConfig>,
    #[serde(default)]
    xdp_interfaces: Vec<String>,
    #[serde(default)]
    blocklist: Vec<BlockConfig>,
    control_socket: Option<PathBuf>,
    kube_metadata: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    node_name: Option<String>,
    #[serde(default)]
    pod_metrics: bool,
    resource_interval_secs: Option<u64>,
    cri_socket: Option<PathBuf>,
    rates_interval_secs: Option<u64>,
}

/// One blocklist entry in the YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockConfig {
    cidr: String,
    #[serde(default)]
    audit: bool,
}

/// One connect rule in the YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectRuleConfig {
    /// CIDR[:PORT], as on the command line.
    destination: String,
    action: RuleAction,
    /// Only for processes in this cgroup v2 subtree (path under the cgroup2 mount).
    cgroup: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RuleAction {
    Audit,
    Deny,
}

pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

fn read_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("in {}", path.display()))
}

/// The flag's list when given, else the file's.
fn pick(flags: &[String], file: &Option<Vec<String>>) -> Option<Vec<String>> {
    if flags.is_empty() {
        file.clone()
    } else {
        Some(flags.to_vec())
    }
}

fn parse_groups(names: &[String]) -> Result<Vec<Group>> {
    names
        .iter()
        .map(|n| {
            Group::parse(n.trim()).with_context(|| {
                let known: Vec<_> = Group::ALL.iter().map(|g| g.name()).collect();
                format!("unknown group {n:?}; known groups: {}", known.join(", "))
            })
        })
        .collect()
}

impl AgentConfig {
    pub fn from_args(args: &AgentArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut probes = ProbeConfig::default();
        let groups = if !args.groups.is_empty() {
            Some(args.groups.clone())
        } else {
            file.groups.clone()
        };
        if let Some(groups) = groups {
            probes.groups = parse_groups(&groups)?.into_iter().collect();
            probes.groups.insert(Group::Process);
        }
        let defaults = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Flags replace the file's lists; a list given by neither keeps its default unless
        // the other list was given (then only what was asked for is watched).
        let (any, write) = match (
            pick(&args.file_prefixes, &file.file_prefixes),
            pick(&args.file_write_prefixes, &file.file_write_prefixes),
        ) {
            (None, None) => (
                defaults(DEFAULT_FILE_PREFIXES),
                defaults(DEFAULT_FILE_WRITE_PREFIXES),
            ),
            (any, write) => (any.unwrap_or_default(), write.unwrap_or_default()),
        };
        // "/" means every open: no in-kernel filter at all (cheaper than a trie lookup).
        if any.iter().any(|p| p == "/") {
            probes.file_prefixes = Vec::new();
            probes.file_write_prefixes = Vec::new();
        } else {
            probes.file_prefixes = any;
            probes.file_write_prefixes = write;
        }
        if let Some(v4) = args.xdp_source_prefix4.or(file.xdp_source_prefix4) {
            probes.xdp_source_prefixes.0 = v4;
        }
        if let Some(v6) = args.xdp_source_prefix6.or(file.xdp_source_prefix6) {
            probes.xdp_source_prefixes.1 = v6;
        }
        if let Some(entries) = args.flow_table_size.or(file.flow_table_size) {
            probes.flow_table_entries = entries;
        }
        if let Some(bytes) = args.ringbuf_bytes.or(file.ringbuf_bytes) {
            probes.ringbuf_bytes = bytes;
        }
        probes.probe_read_only = args.probe_read || file.probe_read.unwrap_or(false);
        let output = match (args.output, file.output.as_deref()) {
            (Some(o), _) => o,
            (None, None | Some("json")) => OutputFormat::Json,
            (None, Some("none")) => OutputFormat::None,
            (None, Some(other)) => bail!("unknown output {other:?}; expected json or none"),
        };
        let metrics_addr = if args.no_metrics {
            None
        } else {
            Some(
                args.metrics_addr
                    .or(file.metrics_addr)
                    .unwrap_or_else(|| DEFAULT_METRICS_ADDR.parse().expect("valid default")),
            )
        };
        let mut filter = file.filter;
        filter.types.extend(args.types.iter().cloned());
        filter.binaries.extend(args.binaries.iter().cloned());
        filter.pids.extend(args.pids.iter().copied());
        filter.containers.extend(args.containers.iter().cloned());
        let filter = EventFilter::new(
            &filter.types,
            &filter.binaries,
            &filter.pids,
            &filter.containers,
        )?;
        probes.validate()?;
        let mut connect_rules = Vec::new();
        for rule in &file.connect_rules {
            let action = match rule.action {
                RuleAction::Audit => ConnectAction::Audit,
                RuleAction::Deny => ConnectAction::Deny,
            };
            let entry = match &rule.cgroup {
                Some(cgroup) => format!("{}@{cgroup}", rule.destination),
                None => rule.destination.clone(),
            };
            connect_rules.push(ConnectRule::parse(&entry, action)?);
        }
        for entry in &args.deny_connect {
            connect_rules.push(ConnectRule::parse(entry, ConnectAction::Deny)?);
        }
        for entry in &args.audit_connect {
            connect_rules.push(ConnectRule::parse(entry, ConnectAction::Audit)?);
        }
        let mut blocklist = Vec::new();
        for entry in &file.blocklist {
            blocklist.push(BlockEntry {
                cidr: Cidr::parse(&entry.cidr)?,
                audit: entry.audit,
            });
        }
        for (entries, audit) in [(&args.block, false), (&args.block_audit, true)] {
            for entry in entries {
                blocklist.push(BlockEntry {
                    cidr: Cidr::parse(entry)?,
                    audit,
                });
            }
        }
        // One network, one mode: a network listed twice is a conflict, named.
        let mut seen = std::collections::HashMap::new();
        for entry in &blocklist {
            let mode = if entry.audit { "audit" } else { "drop" };
            if let Some(first) = seen.insert(entry.cidr.to_string(), mode) {
                bail!(
                    "blocklist entry {} is listed twice (as {first} and as {mode})",
                    entry.cidr
                );
            }
        }
        let mut destinations = std::collections::HashMap::new();
        for rule in &connect_rules {
            let key = rule.to_string();
            if let Some(first) = destinations.insert(key.clone(), rule.action) {
                bail!(
                    "connect rule {key} is listed twice (as {} and as {})",
                    first.name(),
                    rule.action.name()
                );
            }
        }
        let xdp_interfaces = if args.xdp_interfaces.is_empty() {
            file.xdp_interfaces.clone()
        } else {
            args.xdp_interfaces.clone()
        };
        if !blocklist.is_empty() && xdp_interfaces.is_empty() {
            bail!("blocklist entries need an XDP interface (--xdp-interface or xdp_interfaces)");
        }
        let mut flow_timers = FlowTimers::default();
        if let Some(secs) = args.flow_idle_timeout.or(file.flow_idle_timeout_secs) {
            flow_timers.idle_timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(secs) = args.flow_report_interval.or(file.flow_report_interval_secs) {
            if secs == 0 {
                bail!("flow report interval must be at least 1 second");
            }
            flow_timers.report_interval = std::time::Duration::from_secs(secs);
        }
        Ok(Self {
            probes,
            output,
            output_file: args.output_file.clone().or(file.output_file),
            metrics_addr,
            filter,
            duration: args.duration.map(std::time::Duration::from_secs),
            tc_interfaces: if args.tc_interfaces.is_empty() {
                file.tc_interfaces
            } else {
                args.tc_interfaces.clone()
            },
            tc_veths: args.tc_veths || file.tc_veths,
            flow_timers,
            connect_rules,
            xdp_interfaces,
            blocklist,
            pod_metrics: args.pod_metrics || file.pod_metrics,
            rates_interval: match args
                .rates_interval
                .or(file.rates_interval_secs)
                .unwrap_or(10)
            {
                0 => None,
                secs => Some(std::time::Duration::from_secs(secs)),
            },
            cri_socket: if args.no_cri {
                None
            } else {
                args.cri_socket.clone().or(file.cri_socket).or_else(|| {
                    let default = PathBuf::from(nightjar_k8s::cri::DEFAULT_SOCKET);
                    default.exists().then_some(default)
                })
            },
            cpu_priority: args.cpu_priority.or(file.cpu_priority).unwrap_or_default(),
            resource_interval: {
                let secs = args
                    .resource_interval
                    .or(file.resource_interval_secs)
                    .unwrap_or(10);
                if secs == 0 {
                    bail!("resource interval must be at least 1 second");
                }
                std::time::Duration::from_secs(secs)
            },
            kube_api: {
                let kubeconfig = args.kubeconfig.clone().or(file.kubeconfig);
                // In a pod, the service account's environment says where the API is.
                let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
                (kubeconfig.is_some() || in_cluster).then(|| KubeApi {
                    kubeconfig,
                    node_name: args
                        .node_name
                        .clone()
                        .or(file.node_name)
                        .or_else(|| std::env::var("NODE_NAME").ok())
                        .unwrap_or_else(|| {
                            std::fs::read_to_string("/proc/sys/kernel/hostname")
                                .map(|h| h.trim().to_string())
                                .unwrap_or_default()
                        }),
                })
            },
            kube_objects: match args.kube_metadata.clone().or(file.kube_metadata) {
                Some(path) => nightjar_k8s::load_metadata(&path)?,
                None => Vec::new(),
            },
            control_socket: if args.no_control_socket {
                None
            } else {
                Some(
                    args.control_socket
                        .clone()
                        .or(file.control_socket)
                        .unwrap_or_else(|| PathBuf::from(crate::control::DEFAULT_SOCKET)),
                )
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(argv: &[&str]) -> AgentArgs {
        let mut full = vec!["nightjar", "agent"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Agent(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults() {
        let c = AgentConfig::from_args(&args(&[])).unwrap();
        assert_eq!(c.output, OutputFormat::Json);
        assert_eq!(c.probes.groups.len(), Group::ALL.len());
        assert!(c.probes.file_prefixes.contains(&"/etc/shadow".to_string()));
        assert!(c.probes.file_write_prefixes.contains(&"/etc/".to_string()));
        assert_eq!(c.metrics_addr, Some(DEFAULT_METRICS_ADDR.parse().unwrap()));
    }

    #[test]
    fn cpu_priority_is_adaptive_unless_told() {
        use crate::sched::CpuPriority;
        let c = AgentConfig::from_args(&args(&[])).unwrap();
        assert_eq!(c.cpu_priority, CpuPriority::Adaptive);
        let c = AgentConfig::from_args(&args(&["--cpu-priority", "normal"])).unwrap();
        assert_eq!(c.cpu_priority, CpuPriority::Normal);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "cpu_priority: normal\n").unwrap();
        let c = AgentConfig::from_args(&args(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(c.cpu_priority, CpuPriority::Normal);
        std::fs::write(&path, "cpu_priority: low\n").unwrap();
        let err = AgentConfig::from_args(&args(&["--config", path.to_str().unwrap()])).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("low") && text.contains("adaptive"), "{text}");
        let err = Cli::try_parse_from(["nightjar", "agent", "--cpu-priority", "low"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn root_prefix_means_every_open() {
        let c = AgentConfig::from_args(&args(&["--file-prefix", "/"])).unwrap();
        assert!(c.probes.file_prefixes.is_empty());
        assert!(c.probes.file_write_prefixes.is_empty());
    }

    #[test]
    fn one_list_given_replaces_both_defaults() {
        let c = AgentConfig::from_args(&args(&["--file-write-prefix", "/srv/"])).unwrap();
        assert!(c.probes.file_prefixes.is_empty());
        assert_eq!(c.probes.file_write_prefixes, vec!["/srv/"]);
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["nightjar", "agent", "--bogus"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn unknown_config_key_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "groups: [file]\nfile_prefixs: [/etc/]\n").unwrap();
        let err = AgentConfig::from_args(&args(&["--config", path.to_str().unwrap()])).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("file_prefixs"), "{text}");
        assert!(text.contains("c.yaml"), "{text}");
    }

    #[test]
    fn config_file_and_flags_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "groups: [file]\nfilter:\n  types: [file_open]\nmetrics_addr: 127.0.0.1:9999\n",
        )
        .unwrap();
        let c = AgentConfig::from_args(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--type",
            "process_exec",
        ]))
        .unwrap();
        assert_eq!(
            c.probes.groups.iter().copied().collect::<Vec<_>>(),
            vec![Group::Process, Group::File]
        );
        assert!(!c.filter.is_empty());
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9999".parse().unwrap()));
    }

    #[test]
    fn connect_rules_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "connect_rules:\n  - destination: 10.9.0.0/16:443\n    action: audit\n",
        )
        .unwrap();
        let c = AgentConfig::from_args(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--deny-connect",
            "10.9.1.1",
        ]))
        .unwrap();
        assert_eq!(c.connect_rules.len(), 2);
        assert_eq!(c.connect_rules[0].action, ConnectAction::Audit);
        assert_eq!(c.connect_rules[1].action, ConnectAction::Deny);
        let err = AgentConfig::from_args(&args(&["--deny-connect", "10.9.1.1/40"])).unwrap_err();
        assert!(err.to_string().contains("10.9.1.1/40"), "{err}");
    }

    #[test]
    fn unknown_group_is_an_error() {
        let err = AgentConfig::from_args(&args(&["--groups", "file,netwrk"])).unwrap_err();
        assert!(err.to_string().contains("netwrk"));
    }
}
