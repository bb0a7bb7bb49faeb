//! Tier 1 network: TC flow accounting on a veth pair between two network namespaces the test
//! creates (10.x and ULA addresses exist only inside them). Counts must equal what was sent.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
struct NetPair {
    a: String,
    b: String,
    veth_a: String,
}

impl NetPair {
    fn veth_b(&self) -> String {
        self.veth_a.replacen("nja", "njb", 1)
    }
}

impl NetPair {
    fn new() -> Self {
        let id = std::process::id() % 100_000;
        let (a, b) = (format!("nj-a-{id}"), format!("nj-b-{id}"));
        let (veth_a, veth_b) = (format!("nja{id}"), format!("njb{id}"));
        // Leftovers of a run that was killed; usually there are none (quietly).
        for name in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        let pair = Self {
            a: a.clone(),
            b: b.clone(),
            veth_a: veth_a.clone(),
        };
        ip(&[
            "link", "add", &veth_a, "netns", &a, "type", "veth", "peer", "name", &veth_b, "netns",
            &b,
        ]);
        for (ns, dev, v4, v6) in [
            (&a, &veth_a, "10.213.0.1/24", "fd00:213::1/64"),
            (&b, &veth_b, "10.213.0.2/24", "fd00:213::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    fn in_a(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.a, program]);
        cmd
    }

    fn in_b(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.b, program]);
        cmd
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// The agent in namespace A's network (nsenter keeps the host's mounts, where `ip netns
/// exec` would remount /sys without the cgroup2 tree), run with `args` after `agent`. Waits
/// until it is ready; the receiver yields its later log lines.
fn agent_in_a(pair: &NetPair, args: &[&str]) -> (AgentGuard, mpsc::Receiver<String>) {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", pair.a))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_nightjar"))
        .arg("agent")
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let guard = AgentGuard(Some(child));
    wait_for_line(&rx, "Nightjar agent ready");
    (guard, rx)
}

fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no agent log line with {needle:?} within 60 s"));
        if line.contains(needle) {
            return;
        }
    }
}

/// Kills the agent if the test fails before stopping it.
struct AgentGuard(Option<Child>);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(mut agent: AgentGuard, output: &std::path::Path) -> Vec<Value> {
    let mut child = agent.0.take().expect("agent running");
    // SAFETY: signalling our own child (nsenter execs the agent in place).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(support::wait_within(&mut child, support::STOP_LIMIT, "the agent to stop").success());
    support::read_events(output)
}

/// Sum of packets and bytes over the non-periodic records of matching flows.
fn totals(events: &[Value], direction: &str, protocol: &str, src: &str, dst: &str) -> (u64, u64) {
    events
        .iter()
        .filter(|e| e["type"] == "flow" && e["reason"] != "periodic")
        .filter(|e| {
            e["direction"] == direction
                && e["protocol"] == protocol
                && e["source"]["addr"] == src
                && e["destination"]["addr"] == dst
        })
        .fold((0, 0), |(p, b), e| {
            (
                p + e["packets"].as_u64().unwrap(),
                b + e["bytes"].as_u64().unwrap(),
            )
        })
}

#[test]
fn tc_flows_count_exactly_what_was_sent() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("events.jsonl");
    let metrics_port = support::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let (agent, _log) = agent_in_a(
        &pair,
        &[
            "--metrics-addr",
            &metrics_addr,
            "--groups",
            "process",
            "--tc-interface",
            &pair.veth_a,
            "--output-file",
            output.to_str().unwrap(),
        ],
    );

    // ICMP echo: 5 requests out, 5 replies in; 84-byte IPv4 packets in 98-byte frames.
    let ping = pair
        .in_a("ping")
        .args(["-c", "5", "-i", "0.2", "-q", "10.213.0.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    // ICMPv6 echo: 104-byte IPv6 packets in 118-byte frames.
    let ping6 = pair
        .in_a("ping")
        .args(["-6", "-c", "3", "-i", "0.2", "-q", "fd00:213::2"])
        .output()
        .unwrap();
    assert!(ping6.status.success(), "{ping6:?}");
    // UDP: 20 datagrams of 100 bytes: 100 + 8 + 20 + 14 = 142-byte frames.
    let udp = pair
        .in_a(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["udp-send", "10.213.0.2:9999", "20", "100"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&udp.stdout).trim(), "20");
    // TCP: one connection to a server in B, closed by both sides.
    let mut server = pair
        .in_b(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["serve-once", "10.213.0.2:7777"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let connect = pair
        .in_a(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["connect", "10.213.0.2:7777"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&connect.stdout).trim(), "0");
    support::wait_within(
        &mut server,
        support::TRIGGER_LIMIT,
        "the server in namespace B",
    );
    // A FIN'd flow is reported once quiet for the end grace (1 s), at the next poll of the
    // flow table (every 1 s): up to 2 s after the last packet.
    std::thread::sleep(Duration::from_millis(2500));
    let metrics = metrics_in(&pair.a, metrics_port);
    let events = stop(agent, &output);
    // Per-interface totals in Prometheus equal the sum of the flow records.
    for direction in ["ingress", "egress"] {
        let flows: u64 = events
            .iter()
            .filter(|e| e["type"] == "flow" && e["reason"] != "periodic")
            .filter(|e| e["direction"] == direction)
            .map(|e| e["packets"].as_u64().unwrap())
            .sum();
        let prefix = format!(
            "nightjar_interface_packets_total{{interface=\"{}\",direction=\"{direction}\"}} ",
            pair.veth_a
        );
        let counted = metric(&metrics, &prefix).unwrap_or_else(|| panic!("{prefix}: {metrics}"));
        // The snapshot is taken just before the stop; an IPv6 neighbour-discovery packet can
        // still land in between and show up only in the final flow records.
        assert!(
            counted <= flows && flows - counted <= 2,
            "{direction}: metric {counted}, flow records {flows}"
        );
    }

    assert_eq!(
        totals(&events, "egress", "icmp", "10.213.0.1", "10.213.0.2"),
        (5, 5 * 98)
    );
    // Ingress ICMP holds the 5 echo replies (type 0: port 0) and B's rate-limited port
    // unreachables for the UDP below (type 3 code 3: port 0x0303, 170-byte frames).
    let icmp_in = |port: u64| {
        events
            .iter()
            .filter(|e| e["type"] == "flow" && e["protocol"] == "icmp")
            .filter(|e| e["direction"] == "ingress" && e["source"]["port"] == port)
            .fold((0, 0), |(p, b), e| {
                (
                    p + e["packets"].as_u64().unwrap(),
                    b + e["bytes"].as_u64().unwrap(),
                )
            })
    };
    assert_eq!(icmp_in(0), (5, 5 * 98));
    let (unreachable, unreachable_bytes) = icmp_in(0x0303);
    assert!(
        (1..=20).contains(&unreachable),
        "{unreachable} port unreachables"
    );
    assert_eq!(unreachable_bytes, unreachable * 170);
    assert_eq!(
        totals(&events, "egress", "icmpv6", "fd00:213::1", "fd00:213::2").0,
        3
    );
    assert_eq!(
        totals(&events, "egress", "icmpv6", "fd00:213::1", "fd00:213::2").1,
        3 * 118
    );
    assert_eq!(
        totals(&events, "egress", "udp", "10.213.0.1", "10.213.0.2"),
        (20, 20 * 142)
    );
    let udp_flow = events
        .iter()
        .find(|e| e["type"] == "flow" && e["protocol"] == "udp" && e["direction"] == "egress")
        .unwrap();
    assert_eq!(udp_flow["destination"]["port"], 9999);
    assert_eq!(udp_flow["interface"], pair.veth_a.as_str());
    assert_eq!(udp_flow["verdict"], "forwarded");

    let tcp: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "flow" && e["protocol"] == "tcp" && e["direction"] == "egress")
        .collect();
    assert_eq!(tcp.len(), 1, "{tcp:#?}");
    let flags: Vec<&str> = tcp[0]["tcp_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        flags.contains(&"SYN") && flags.contains(&"FIN"),
        "{flags:?}"
    );
    assert_eq!(
        tcp[0]["reason"], "end",
        "a FIN'd flow is reported as ended, not at stop"
    );
    assert_eq!(tcp[0]["destination"]["port"], 7777);
}

#[test]
fn connect_rules_deny_with_eperm_and_audit_without_refusing() {
    let _serial = support::serial();
    let pair = NetPair::new();
    // Only the test's own namespace addresses are named: nothing else is ever refused.
    // Port 7779 is denied only inside one cgroup subtree.
    let scoped = support::TestCgroup::new("connect-scope");
    let child_path = scoped.path.join("child");
    std::fs::create_dir(&child_path).unwrap();
    let child = support::TestCgroup {
        id: std::fs::metadata(&child_path).unwrap().ino(),
        path: child_path,
    };
    let scope = format!(
        "10.213.0.2:7779@/{}",
        scoped.path.file_name().unwrap().to_str().unwrap()
    );
    let agent = support::Agent::start(&[
        "--deny-connect",
        "10.213.0.2/32:7777",
        "--deny-connect",
        &scope,
        "--audit-connect",
        "10.213.0.2:7778",
    ]);
    let mut server = pair
        .in_b(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["serve-once", "10.213.0.2:7778"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let connect = |port: &str| {
        let out = pair
            .in_a(env!("CARGO_BIN_EXE_nj-trigger"))
            .args(["connect", &format!("10.213.0.2:{port}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(connect("7777"), -1, "a denied connect gets EPERM");
    assert_eq!(connect("7778"), 0, "an audited connect goes through");
    support::wait_within(
        &mut server,
        support::TRIGGER_LIMIT,
        "the server in namespace B",
    );
    // Outside the scope the port is untouched (refused by B's stack, not by us); inside it,
    // and in a cgroup below it, the connect gets EPERM.
    assert_eq!(connect("7779"), -111);
    for cgroup in [&scoped, &child] {
        let inside = trigger_in(&pair.a, cgroup, &["connect", "10.213.0.2:7779"]);
        assert_eq!(
            finish(inside),
            -1,
            "scoped deny in {}",
            cgroup.path.display()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let events = agent.stop();

    let policy: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "connect_policy")
        .collect();
    let denied = policy
        .iter()
        .find(|e| e["remote"]["port"] == 7777)
        .expect("denied connect reported");
    assert_eq!(denied["verdict"], "denied");
    assert_eq!(denied["rule"], 0);
    assert_eq!(denied["remote"]["addr"], "10.213.0.2");
    assert!(denied["process"]["binary"]
        .as_str()
        .unwrap()
        .ends_with("nj-trigger"));
    let audited = policy
        .iter()
        .find(|e| e["remote"]["port"] == 7778)
        .expect("audited connect reported");
    assert_eq!(audited["verdict"], "audited");
    assert_eq!(audited["rule"], 2);
    // The scoped rule fired twice, both times inside its subtree.
    let scoped_hits: Vec<_> = policy
        .iter()
        .filter(|e| e["remote"]["port"] == 7779)
        .collect();
    assert_eq!(scoped_hits.len(), 2, "{scoped_hits:?}");
    for hit in scoped_hits {
        assert_eq!(hit["rule"], 1);
        assert!(
            hit["cgroup_id"] == scoped.id || hit["cgroup_id"] == child.id,
            "{hit}"
        );
    }
    // The syscall tracepoint saw the same refusal from the caller's side.
    assert!(events.iter().any(|e| e["type"] == "sock_connect"
        && e["remote"]["port"] == 7777
        && e["error"] == "EPERM"));
}

/// GET /metrics from inside namespace `ns`.
fn metrics_in(ns: &str, port: u16) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .args([
            "--",
            "curl",
            "-s",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn xdp_blocklist_drops_listed_sources_and_audit_only_counts() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let port = support::free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let (agent, _log) = agent_in_a(
        &pair,
        &[
            "--output",
            "none",
            "--groups",
            "process",
            "--metrics-addr",
            &metrics_addr,
            "--xdp-interface",
            &pair.veth_a,
            "--block",
            "10.213.0.2/32",
            "--block-audit",
            "fd00:213::2/128",
        ],
    );

    // Every echo request from the blocked source is dropped before A's stack sees it.
    let blocked = pair
        .in_b("ping")
        .args(["-c", "5", "-i", "0.2", "-W", "1", "-q", "10.213.0.1"])
        .output()
        .unwrap();
    assert!(
        !blocked.status.success(),
        "ping through a drop entry succeeded"
    );
    // Audit mode counts and lets everything through.
    let audited = pair
        .in_b("ping")
        .args(["-6", "-c", "3", "-i", "0.2", "-q", "fd00:213::1"])
        .output()
        .unwrap();
    assert!(audited.status.success(), "{audited:?}");
    std::thread::sleep(Duration::from_millis(2500));
    let text = metrics_in(&pair.a, port);
    let dropped = metric(
        &text,
        "nightjar_blocklist_packets_total{entry=\"10.213.0.2/32\",mode=\"drop\"} ",
    );
    assert_eq!(dropped, Some(5), "{text}");
    let audit = metric(
        &text,
        "nightjar_blocklist_packets_total{entry=\"fd00:213::2/128\",mode=\"audit\"} ",
    )
    .unwrap_or(0);
    // The 3 echo requests, plus neighbour discovery sent from that address.
    assert!(audit >= 3, "{text}");
    let seen = metric(
        &text,
        &format!(
            "nightjar_xdp_packets_total{{interface=\"{}\"}} ",
            pair.veth_a
        ),
    )
    .unwrap_or(0);
    assert!(seen >= 5 + audit, "{text}");
    drop(agent);
}

#[test]
fn tc_follows_veths_that_exist_and_that_appear() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("events.jsonl");
    let (agent, log) = agent_in_a(
        &pair,
        &[
            "--no-metrics",
            "--groups",
            "process",
            "--tc-veths",
            "--output-file",
            output.to_str().unwrap(),
        ],
    );

    // A second veth pair created after the agent started, one end moved to B.
    let id = std::process::id() % 100_000;
    let (vx, vy) = (format!("njx{id}"), format!("njy{id}"));
    ip(&[
        "-n", &pair.a, "link", "add", &vx, "type", "veth", "peer", "name", &vy,
    ]);
    wait_for_line(&log, &format!("interface={vx}"));
    ip(&["-n", &pair.a, "link", "set", &vy, "netns", &pair.b]);
    ip(&["-n", &pair.a, "addr", "add", "10.214.0.1/24", "dev", &vx]);
    ip(&["-n", &pair.b, "addr", "add", "10.214.0.2/24", "dev", &vy]);
    ip(&["-n", &pair.a, "link", "set", &vx, "up"]);
    ip(&["-n", &pair.b, "link", "set", &vy, "up"]);
    let new_link = pair
        .in_a("ping")
        .args(["-c", "3", "-i", "0.2", "-q", "10.214.0.2"])
        .output()
        .unwrap();
    assert!(new_link.status.success(), "{new_link:?}");
    let old_link = pair
        .in_a("ping")
        .args(["-c", "2", "-i", "0.2", "-q", "10.213.0.2"])
        .output()
        .unwrap();
    assert!(old_link.status.success(), "{old_link:?}");
    std::thread::sleep(Duration::from_millis(500));
    let events = stop(agent, &output);

    let on = |iface: &str| {
        events
            .iter()
            .filter(|e| e["type"] == "flow" && e["interface"] == iface)
            .filter(|e| e["protocol"] == "icmp" && e["direction"] == "egress")
            .map(|e| e["packets"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(on(&vx), 3, "the veth created after start");
    assert_eq!(on(&pair.veth_a), 2, "the veth that existed at start");
}

#[test]
fn xdp_never_replaces_a_program_already_attached() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let args = [
        "--output",
        "none",
        "--no-metrics",
        "--groups",
        "process",
        "--xdp-interface",
        pair.veth_a.as_str(),
    ];
    // The first agent holds the interface's XDP hook.
    let (first, _log) = agent_in_a(&pair, &args);

    // A second one must refuse, naming the interface, and leave the first in place.
    let second = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", pair.a))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_nightjar"))
        .arg("agent")
        .args(args)
        .args(["--duration", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "second agent replaced XDP: {err}");
    assert!(
        err.contains("already has an XDP program") && err.contains(&pair.veth_a),
        "{err}"
    );
    let link = Command::new("ip")
        .args(["-n", &pair.a, "-d", "link", "show", &pair.veth_a])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("nj_xdp"),
        "the first agent's program must still be attached"
    );
    drop(first);
}

/// Runs nj-trigger in namespace `ns` and in `cgroup`; returns the child (its pid is the
/// trigger's: nsenter execs in place).
fn trigger_in(ns: &str, cgroup: &support::TestCgroup, args: &[&str]) -> Child {
    cgroup
        .command("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn nj-trigger")
}

fn finish(child: Child) -> i64 {
    let out = support::output_within(child, support::TRIGGER_LIMIT, "nj-trigger");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn tcp_lifecycle_is_joined_to_the_connecting_and_accepting_processes() {
    let _serial = support::serial();
    let pair = NetPair::new();
    // A second address in B whose replies A's XDP drops: connects to it time out.
    ip(&[
        "-n",
        &pair.b,
        "addr",
        "add",
        "10.213.0.3/24",
        "dev",
        &pair.veth_b(),
    ]);
    let syn_retries = pair
        .in_a("sysctl")
        .args(["-qw", "net.ipv4.tcp_syn_retries=1"])
        .status()
        .unwrap();
    assert!(syn_retries.success());
    let clients = support::TestCgroup::new("tcp-clients");
    let servers = support::TestCgroup::new("tcp-servers");
    let output = std::env::temp_dir().join(format!("nj-tcp-{}.json", std::process::id()));
    let metrics_port = support::free_port();
    let (agent, _log) = agent_in_a(
        &pair,
        &[
            "--output",
            "json",
            "--output-file",
            output.to_str().unwrap(),
            "--type",
            "tcp_established,tcp_close,sock_connect,sock_accept,flow,network_rates",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "--xdp-interface",
            &pair.veth_a,
            "--block",
            "10.213.0.3/32",
            "--tc-interface",
            &pair.veth_a,
            "--rates-interval",
            "1",
        ],
    );

    // 3 IPv4 and 2 IPv6 connections of 1000 bytes each, from A's client to B's servers.
    let server4 = trigger_in(&pair.b, &servers, &["tcp-serve", "10.213.0.2:7001", "3"]);
    let server6 = trigger_in(&pair.b, &servers, &["tcp-serve", "[fd00:213::2]:7002", "2"]);
    std::thread::sleep(Duration::from_millis(300));
    let (server4_pid, server6_pid) = (server4.id(), server6.id());
    let client4 = trigger_in(
        &pair.a,
        &clients,
        &["tcp-send", "10.213.0.2:7001", "3", "1000"],
    );
    let client4_pid = client4.id();
    assert_eq!(finish(client4), 3);
    let client6 = trigger_in(
        &pair.a,
        &clients,
        &["tcp-send", "[fd00:213::2]:7002", "2", "1000"],
    );
    let client6_pid = client6.id();
    assert_eq!(finish(client6), 2);
    assert_eq!(finish(server4), 3000);
    assert_eq!(finish(server6), 2000);
    // Unconnected UDP (no socket event names it): the kernel's cgroup of the sending socket.
    let udp = trigger_in(
        &pair.a,
        &clients,
        &["udp-send", "10.213.0.2:7005", "4", "10"],
    );
    assert_eq!(finish(udp), 4);
    // Refused: nothing listens on 7003. Timed out: the RST from 10.213.0.3 never arrives.
    let refused = trigger_in(&pair.a, &clients, &["connect", "10.213.0.2:7003"]);
    let refused_pid = refused.id();
    assert_eq!(finish(refused), -111);
    let timeout = trigger_in(&pair.a, &clients, &["connect", "10.213.0.3:7004"]);
    let timeout_pid = timeout.id();
    assert_eq!(finish(timeout), -110);
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = metrics_in(&pair.a, metrics_port);
    let events = stop(agent, &output);
    let _ = std::fs::remove_file(&output);

    let of = |ty: &str, cgroup: u64| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["type"] == ty && e["cgroup_id"] == cgroup)
            .collect()
    };
    // Outbound: established and closed in the client's process and cgroup, with the
    // kernel's byte counts: the 1000 bytes plus SYN and FIN acked, the server's FIN received.
    let opened = of("tcp_established", clients.id);
    let closed = of("tcp_close", clients.id);
    for (pid, count, remote) in [
        (client4_pid, 3, "10.213.0.2"),
        (client6_pid, 2, "fd00:213::2"),
    ] {
        let mine = |list: &[&Value]| -> Vec<Value> {
            list.iter()
                .filter(|e| e["pid"] == pid)
                .map(|e| (*e).clone())
                .collect()
        };
        let (up, down) = (mine(&opened), mine(&closed));
        assert_eq!(up.len(), count, "established of {pid}: {up:?}");
        assert_eq!(down.len(), count, "closed of {pid}: {down:?}");
        for e in &down {
            assert_eq!(e["direction"], "outbound", "{e}");
            assert_eq!(e["owner"], "connect", "{e}");
            assert_eq!(e["outcome"], "closed", "{e}");
            assert_eq!(e["remote"]["addr"], remote, "{e}");
            assert_eq!(e["bytes_acked"], 1002, "{e}");
            assert_eq!(e["bytes_received"], 1, "{e}");
            assert!(e["srtt_us"].as_u64().unwrap() > 0, "{e}");
            assert!(up.iter().any(|u| u["cookie"] == e["cookie"]), "{e}");
            // The connect() syscall record names the same socket.
            assert!(
                events
                    .iter()
                    .any(|c| c["type"] == "sock_connect" && c["cookie"] == e["cookie"]),
                "no sock_connect with the cookie of {e}"
            );
        }
    }
    // Flows on A's veth carry the client's process and cgroup, and count exactly the segments
    // the kernel says each connection sent and received.
    let completed: Vec<_> = closed.iter().filter(|e| e["outcome"] == "closed").collect();
    assert_eq!(completed.len(), 5);
    for e in completed {
        let port = e["local"]["port"].as_u64().unwrap();
        let flow = |direction: &str| -> &Value {
            events
                .iter()
                .find(|f| {
                    f["type"] == "flow"
                        && f["reason"] == "end"
                        && f["direction"] == direction
                        && (f["source"]["port"] == port || f["destination"]["port"] == port)
                        && f["protocol"] == "tcp"
                })
                .unwrap_or_else(|| panic!("no {direction} flow for port {port}"))
        };
        let (out, back) = (flow("egress"), flow("ingress"));
        for (f, end, segments) in [
            (out, "source", &e["segments_out"]),
            (back, "destination", &e["segments_in"]),
        ] {
            assert_eq!(f["pid"], e["pid"], "{f}");
            assert_eq!(f["cgroup_id"], clients.id, "{f}");
            assert_eq!(f["socket_end"], end, "{f}");
            assert_eq!(&f["packets"], segments, "flow {f} vs connection {e}");
        }
    }

    let udp_flow = events
        .iter()
        .find(|f| f["type"] == "flow" && f["destination"]["port"] == 7005)
        .expect("the UDP flow");
    assert_eq!(udp_flow["cgroup_id"], clients.id, "{udp_flow}");
    assert_eq!(udp_flow["socket_end"], "source", "{udp_flow}");
    assert_eq!(udp_flow["packets"], 4, "{udp_flow}");

    // Inbound: reported when accepted, in the server's process and cgroup.
    let accepted = of("tcp_established", servers.id);
    let ended = of("tcp_close", servers.id);
    for (pid, count, port) in [(server4_pid, 3, 7001), (server6_pid, 2, 7002)] {
        let n = accepted.iter().filter(|e| e["pid"] == pid).count();
        assert_eq!(n, count, "accepted by {pid}: {accepted:?}");
        let mine: Vec<_> = ended.iter().filter(|e| e["pid"] == pid).collect();
        assert_eq!(mine.len(), count, "closed by {pid}: {ended:?}");
        for e in mine {
            assert_eq!(e["direction"], "inbound", "{e}");
            assert_eq!(e["owner"], "accept", "{e}");
            assert_eq!(e["local"]["port"], port, "{e}");
            assert_eq!(e["bytes_received"], 1001, "{e}");
            assert_eq!(e["outcome"], "closed", "{e}");
        }
    }
    // The agent's own side of the scrape above is not reported (curl's side is).
    let scrape = |direction: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| {
                (e["type"] == "tcp_established" || e["type"] == "tcp_close")
                    && e["direction"] == direction
                    && (e["local"]["port"] == metrics_port || e["remote"]["port"] == metrics_port)
            })
            .collect()
    };
    assert!(scrape("inbound").is_empty(), "{:?}", scrape("inbound"));
    assert!(!scrape("outbound").is_empty(), "curl's connection is");
    // Failures, with the reason and the SYN retransmission of the timed-out one.
    let failure = |pid: u32| -> &Value {
        closed
            .iter()
            .find(|e| e["pid"] == pid)
            .unwrap_or_else(|| panic!("no tcp_close of {pid}: {closed:?}"))
    };
    let e = failure(refused_pid);
    assert_eq!(
        (&e["outcome"], &e["error"], &e["previous_state"]),
        (
            &"refused".into(),
            &"ECONNREFUSED".into(),
            &"syn_sent".into()
        ),
        "{e}"
    );
    let e = failure(timeout_pid);
    assert_eq!(
        (&e["outcome"], &e["error"]),
        (&"timeout".into(), &"ETIMEDOUT".into()),
        "{e}"
    );
    // Every SYN drew a RST that XDP dropped: one drop per segment sent, and every segment
    // after the first was a retransmission.
    let syns = e["segments_out"].as_u64().unwrap();
    assert!(syns >= 2, "{e}");
    assert_eq!(e["retransmits"].as_u64().unwrap(), syns - 1, "{e}");
    let resets = metric(
        &metrics,
        "nightjar_blocklist_packets_total{entry=\"10.213.0.3/32\",mode=\"drop\"} ",
    );
    assert_eq!(resets, Some(syns), "{metrics}");

    // The metrics count at least these (the agent sees the whole host).
    let count = |event: &str| {
        metric(
            &metrics,
            &format!("nightjar_tcp_connections_total{{container=\"host\",event=\"{event}\"}} "),
        )
        .unwrap_or(0)
    };
    assert!(count("opened") >= 5, "{metrics}");
    assert!(count("accepted") >= 5, "{metrics}");
    assert!(count("closed") >= 10, "{metrics}");
    assert!(count("failed") >= 2, "{metrics}");
    // The JSON stream's rates add up to at least the test's own connections and packets
    // (rates are rounded to 1/1000 per second and intervals to the millisecond: a little
    // slack).
    let rate_total = |field: &str| -> f64 {
        events
            .iter()
            .filter(|e| e["type"] == "network_rates" && e["scope"] == "host")
            .map(|e| e[field].as_f64().unwrap() * e["interval_ms"].as_f64().unwrap() / 1000.0)
            .sum()
    };
    assert!(
        rate_total("connections_opened_per_s") >= 4.9,
        "{}",
        rate_total("connections_opened_per_s")
    );
    assert!(rate_total("connections_accepted_per_s") >= 4.9);
    assert!(rate_total("connections_failed_per_s") >= 1.9);
    assert!(rate_total("packets_sent_per_s") >= 24.9);
    let sent = metric(
        &metrics,
        "nightjar_container_packets_total{container=\"host\",direction=\"sent\"} ",
    );
    assert!(sent.unwrap_or(0) >= 5 * 5, "{metrics}");
    assert!(
        metric(
            &metrics,
            "nightjar_tcp_retransmits_total{container=\"host\"} "
        )
        .unwrap_or(0)
            >= 1,
        "{metrics}"
    );
}

/// Runs `nightjar blocklist --socket SOCKET ARGS`; returns (success, stdout + stderr).
fn blocklist_cli(socket: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .arg("blocklist")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn pings_from_b(pair: &NetPair) -> bool {
    pair.in_b("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "1", "-q", "10.213.0.1"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn blocklist_changes_at_runtime_and_removing_an_entry_restores_traffic() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let socket = std::env::temp_dir().join(format!("nj-ctl-{}.sock", std::process::id()));
    let port = support::free_port();
    let (agent, _log) = agent_in_a(
        &pair,
        &[
            "--output",
            "none",
            "--groups",
            "process",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--xdp-interface",
            &pair.veth_a,
            "--control-socket",
            socket.to_str().unwrap(),
        ],
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is root's only");
    assert!(pings_from_b(&pair), "traffic passes before any entry");

    let (ok, text) = blocklist_cli(&socket, &["add", "10.213.0.2/32"]);
    assert!(ok, "{text}");
    assert!(!pings_from_b(&pair), "the added entry drops B's pings");
    let (ok, text) = blocklist_cli(&socket, &["list", "--json"]);
    assert!(ok, "{text}");
    let listed: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(listed[0]["cidr"], "10.213.0.2/32", "{listed}");
    assert_eq!(listed[0]["mode"], "drop", "{listed}");
    assert_eq!(listed[0]["packets"], 3, "{listed}");

    // Conflicts and nonsense are refused, naming the entry; nothing changes.
    let (ok, text) = blocklist_cli(&socket, &["add", "10.213.0.2", "--audit"]);
    assert!(
        !ok && text.contains("10.213.0.2/32") && text.contains("already listed"),
        "{text}"
    );
    let (ok, text) = blocklist_cli(&socket, &["add", "banana/8"]);
    assert!(!ok && text.contains("banana/8"), "{text}");

    let (ok, text) = blocklist_cli(&socket, &["remove", "10.213.0.2/32"]);
    assert!(ok, "{text}");
    assert!(pings_from_b(&pair), "removing the entry restores traffic");
    let (ok, text) = blocklist_cli(&socket, &["list", "--json"]);
    assert!(ok && text.trim() == "[]", "{text}");
    let (ok, text) = blocklist_cli(&socket, &["remove", "10.213.0.2/32"]);
    assert!(!ok && text.contains("not listed"), "{text}");

    // XDP counted B's network: 9 echo requests (3 passed, 3 dropped, 3 passed), 98-byte
    // frames. (B's IPv6 neighbour discovery shows up under its own /64.)
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args([
            "xdp",
            "--socket",
            socket.to_str().unwrap(),
            "sources",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sources: Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = sources
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "10.213.0.0/24")
        .unwrap_or_else(|| panic!("no 10.213.0.0/24 in {sources}"));
    assert_eq!(b["interface"], pair.veth_a.as_str(), "{b}");
    assert_eq!(
        (&b["packets"], &b["bytes"]),
        (&9.into(), &(9 * 98).into()),
        "{b}"
    );

    std::thread::sleep(Duration::from_millis(1500));
    let metrics = metrics_in(&pair.a, port);
    assert_eq!(
        metric(
            &metrics,
            "nightjar_blocklist_packets_total{entry=\"10.213.0.2/32\",mode=\"drop\"} "
        ),
        Some(3),
        "{metrics}"
    );
    let mut agent = agent;
    let mut child = agent.0.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(support::wait_within(&mut child, support::STOP_LIMIT, "the agent to stop").success());
    // A stopped agent leaves no socket; the CLI then says what is wrong.
    assert!(!socket.exists(), "control socket left behind");
    let (ok, text) = blocklist_cli(&socket, &["list"]);
    assert!(
        !ok && text.contains("is `nightjar agent` running?"),
        "{text}"
    );
}

#[test]
fn a_full_flow_table_evicts_and_counts_what_it_lost() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let port = support::free_port();
    let output = std::env::temp_dir().join(format!("nj-evict-{}.json", std::process::id()));
    let (agent, _log) = agent_in_a(
        &pair,
        &[
            "--output",
            "json",
            "--output-file",
            output.to_str().unwrap(),
            "--type",
            "flow",
            "--groups",
            "process",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--tc-interface",
            &pair.veth_a,
            "--flow-table-size",
            "64",
            "--flow-idle-timeout",
            "1",
        ],
    );
    // 2000 UDP flows out (and as many ICMP port-unreachable replies back) into 64 entries.
    let sent = pair
        .in_a(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["udp-ports", "10.213.0.2", "20000", "2000"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sent.stdout).trim(), "2000");
    // Idle flows are reported after 1 s; wait until the table is empty.
    std::thread::sleep(Duration::from_millis(3500));
    let metrics = metrics_in(&pair.a, port);
    let events = stop(agent, &output);
    let _ = std::fs::remove_file(&output);
    let evicted = metric(&metrics, "nightjar_flows_evicted_total ").expect("evicted metric");
    assert!(evicted > 0, "{metrics}");
    // Only background flows (IPv6 neighbour discovery) may still be live.
    let live = metric(&metrics, "nightjar_flow_table_entries ").expect("table metric");
    assert!(live <= 4, "{metrics}");
    // Every flow the kernel created was reported, evicted (and counted) or is still live.
    let created = metric(&metrics, "nightjar_flows_created_total ").expect("created metric");
    let records = metric(&metrics, "nightjar_events_total{type=\"flow\"} ").unwrap_or(0);
    assert_eq!(created, records + evicted + live, "{metrics}");
    // So every UDP flow the test made was reported or counted as evicted. (Replies and
    // neighbour traffic are flows too, so the total is at least 2000.)
    let reported = events.iter().filter(|e| e["type"] == "flow").count() as u64;
    assert!(
        reported + evicted >= 2000,
        "reported {reported} + evicted {evicted} < 2000"
    );
    let udp_reported = events
        .iter()
        .filter(|e| e["type"] == "flow" && e["protocol"] == "udp")
        .count();
    assert!(
        udp_reported < 2000,
        "a 64-entry table cannot have kept them all"
    );
}

#[test]
fn an_idle_flow_times_out_and_a_long_flow_reports_periodically() {
    let _serial = support::serial();
    let pair = NetPair::new();
    let output = std::env::temp_dir().join(format!("nj-timers-{}.json", std::process::id()));
    let (agent, _log) = agent_in_a(
        &pair,
        &[
            "--output",
            "json",
            "--output-file",
            output.to_str().unwrap(),
            "--type",
            "flow",
            "--groups",
            "process",
            "--no-metrics",
            "--tc-interface",
            &pair.veth_a,
            "--flow-idle-timeout",
            "2",
            "--flow-report-interval",
            "1",
        ],
    );
    // Three datagrams, then silence: reported as idle while the agent still runs.
    let udp = pair
        .in_a(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["udp-send", "10.213.0.2:9998", "3", "10"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&udp.stdout).trim(), "3");
    // Meanwhile a long flow: 20 echo requests over 4 s.
    let ping = pair
        .in_a("ping")
        .args(["-c", "20", "-i", "0.2", "-q", "10.213.0.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    std::thread::sleep(Duration::from_millis(4000));
    let events = stop(agent, &output);
    let _ = std::fs::remove_file(&output);

    // One final record, idle, with the 3 datagrams; at most one periodic record before it
    // (a flow quiet since its last record is not reported again until it ends).
    let udp: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "flow" && e["destination"]["port"] == 9998)
        .collect();
    let (periodic, last): (Vec<&&Value>, Vec<&&Value>) =
        udp.iter().partition(|e| e["reason"] == "periodic");
    assert!(periodic.len() <= 1, "{udp:?}");
    assert_eq!(last.len(), 1, "{udp:?}");
    assert_eq!(last[0]["reason"], "idle", "{}", last[0]);
    assert_eq!(last[0]["packets"], 3, "{}", last[0]);

    // The echo requests: periodic records with growing cumulative counts, then one final
    // record (idle) with all 20.
    let pings: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["type"] == "flow"
                && e["protocol"] == "icmp"
                && e["direction"] == "egress"
                && e["destination"]["addr"] == "10.213.0.2"
        })
        .collect();
    let periodic: Vec<u64> = pings
        .iter()
        .filter(|e| e["reason"] == "periodic")
        .map(|e| e["packets"].as_u64().unwrap())
        .collect();
    assert!(periodic.len() >= 2, "{pings:?}");
    assert!(periodic.windows(2).all(|w| w[0] <= w[1]), "{periodic:?}");
    assert!(*periodic.last().unwrap() <= 20);
    let finals: Vec<&&Value> = pings.iter().filter(|e| e["reason"] != "periodic").collect();
    assert_eq!(finals.len(), 1, "{pings:?}");
    assert_eq!(finals[0]["reason"], "idle");
    assert_eq!(finals[0]["packets"], 20);
}
