//! Roll-ups: per workload and per service, traffic, connections, CPU and memory equal the
//! sums of their pods.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nightjar_core::pipeline::Transform;
use nightjar_core::telemetry::Telemetry;
use nightjar_core::*;
use nightjar_k8s::resources::{CgroupMounts, ResourceSampler};
use nightjar_k8s::rollup::KubeRollup;
use nightjar_k8s::{load_metadata, Change, ClusterStore, KubeAnnotator};

const WEB_PODS: [&str; 3] = ["web-7d4b9c-aaaaa", "web-7d4b9c-bbbbb", "web-7d4b9c-ccccc"];
const WEB_IPS: [&str; 3] = ["10.244.1.10", "10.244.1.11", "10.244.1.12"];
const A: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
const B: &str = "bbbb000000000000000000000000000000000000000000000000000000000002";

fn store() -> ClusterStore {
    let mut store = ClusterStore::new();
    let objects =
        load_metadata(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/shop.yaml")).unwrap();
    for o in objects {
        store.apply(Change::Applied(o));
    }
    store
}

fn endpoint(addr: &str, port: u16) -> FlowEndpoint {
    FlowEndpoint {
        addr: addr.parse().unwrap(),
        port,
    }
}

fn bare(body: EventBody) -> Event {
    Event::unattributed(String::new(), 0, Arc::from("node-1"), body)
}

fn flow(src: &str, dst: &str, bytes: u64, packets: u64) -> Event {
    bare(EventBody::Flow(Box::new(FlowRecord {
        reason: "end",
        interface: "veth".into(),
        direction: "ingress",
        protocol: "tcp",
        source: endpoint(src, 80),
        destination: endpoint(dst, 5000),
        packets,
        bytes,
        tcp_flags: Vec::new(),
        first_seen: String::new(),
        last_seen: String::new(),
        verdict: "forwarded",
        socket_end: None,
        new_packets: packets,
        new_bytes: bytes,
    })))
}

/// `name{labels} value` lines of a family whose labels contain all of `with`.
fn total(text: &str, family: &str, with: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn traffic_rolls_up_from_pods_to_workload_and_service() {
    let telemetry = Arc::new(Telemetry::new());
    let mut annotator = KubeAnnotator::new(store());
    let mut rollup = KubeRollup::new(telemetry.clone(), true);
    // Each web pod sends and receives a different amount (flows seen at its address).
    for (i, ip) in WEB_IPS.iter().enumerate() {
        let n = i as u64 + 1;
        for mut e in [
            flow(ip, "10.0.0.99", 1000 * n, 10 * n),
            flow("10.0.0.99", ip, 300 * n, 3 * n),
        ] {
            annotator.annotate(&mut e, Duration::ZERO);
            assert!(e.kubernetes.is_some());
            rollup.apply(&mut e);
        }
    }
    let text = telemetry.encode();
    for (family, what) in [
        ("nightjar_k8s_network_bytes_total", "sent"),
        ("nightjar_k8s_network_bytes_total", "received"),
        ("nightjar_k8s_network_packets_total", "sent"),
        ("nightjar_k8s_network_packets_total", "received"),
    ] {
        let event = format!("event=\"{what}\"");
        let pods: f64 = WEB_PODS
            .iter()
            .map(|p| {
                total(
                    &text,
                    family,
                    &["kind=\"Pod\"", &format!("name=\"{p}\""), &event],
                )
            })
            .sum();
        let workload = total(
            &text,
            family,
            &["kind=\"Deployment\"", "name=\"web\"", &event],
        );
        let service = total(&text, family, &["kind=\"Service\"", "name=\"web\"", &event]);
        assert!(pods > 0.0, "{family} {what}: {text}");
        assert_eq!(pods, workload, "{family} {what}");
        assert_eq!(pods, service, "{family} {what}");
    }
    assert_eq!(
        total(
            &text,
            "nightjar_k8s_network_bytes_total",
            &["kind=\"Deployment\"", "name=\"web\"", "event=\"sent\""]
        ),
        6000.0
    );
}

#[test]
fn cpu_and_memory_roll_up_from_container_cgroups() {
    // A cgroup v2 tree with web pods a and b's containers (c has no container id yet).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("unified");
    let cgroup = |uid: &str, id: &str| {
        let path = root.join(format!("kubepods/burstable/pod{uid}/{id}"));
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let a = cgroup("11111111-1111-1111-1111-111111111111", A);
    let b = cgroup("22222222-2222-2222-2222-222222222222", B);
    let write = |dir: &Path, usage_usec: u64, memory: u64| {
        std::fs::write(dir.join("cpu.stat"), format!("usage_usec {usage_usec}\n")).unwrap();
        std::fs::write(dir.join("memory.current"), format!("{memory}\n")).unwrap();
        std::fs::write(dir.join("memory.stat"), "inactive_file 0\n").unwrap();
    };
    write(&a, 1_000_000, 50 << 20);
    write(&b, 5_000_000, 30 << 20);
    let telemetry = Arc::new(Telemetry::new());
    let mounts = CgroupMounts {
        v2: Some(root.clone()),
        v1_cpuacct: None,
        v1_memory: None,
    };
    let mut sampler = ResourceSampler::new(mounts, telemetry.clone(), true);
    let store = store();
    // The fixture's other running containers (pods of other workloads) get cgroups too, empty
    // ones: every container is then where the sampler last found it.
    for (i, id) in store
        .pods()
        .flat_map(|pod| pod.containers.iter())
        .filter_map(|c| c.id.as_deref())
        .filter(|id| ![A, B].contains(id))
        .enumerate()
    {
        std::fs::create_dir_all(root.join(format!("kubepods/other{i}/{id}"))).unwrap();
    }
    let running = store
        .pods()
        .flat_map(|pod| pod.containers.iter())
        .filter(|c| c.id.is_some())
        .count();
    assert_eq!(sampler.sample(&store, Duration::from_secs(10)), running);
    // Ten seconds later a used 2.5 s of CPU, b 0.5 s.
    write(&a, 3_500_000, 60 << 20);
    write(&b, 5_500_000, 30 << 20);
    sampler.sample(&store, Duration::from_secs(10));
    let text = telemetry.encode();
    let cpu = |with: &[&str]| total(&text, "nightjar_k8s_cpu_seconds_total", with);
    let pod_a = cpu(&["kind=\"Pod\"", "name=\"web-7d4b9c-aaaaa\""]);
    let pod_b = cpu(&["kind=\"Pod\"", "name=\"web-7d4b9c-bbbbb\""]);
    assert_eq!((pod_a, pod_b), (2.5, 0.5));
    assert_eq!(cpu(&["kind=\"Deployment\"", "name=\"web\""]), pod_a + pod_b);
    assert_eq!(cpu(&["kind=\"Service\"", "name=\"web\""]), pod_a + pod_b);
    let memory = |with: &[&str]| total(&text, "nightjar_k8s_memory_bytes", with);
    assert_eq!(
        memory(&["kind=\"Deployment\"", "name=\"web\""]),
        (90 << 20) as f64
    );
    // Pod a requests 250m CPU and 64 MiB (limits 1 CPU, 128 MiB): 0.25 cores used is 100% of
    // its request and 25% of its limit; 60 MiB is 93.75% of its memory request.
    let util = |family: &str, of: &str| {
        total(
            &text,
            family,
            &[
                "kind=\"Pod\"",
                "name=\"web-7d4b9c-aaaaa\"",
                &format!("event=\"{of}\""),
            ],
        )
    };
    assert!((util("nightjar_k8s_cpu_utilization", "request") - 1.0).abs() < 1e-9);
    assert!((util("nightjar_k8s_cpu_utilization", "limit") - 0.25).abs() < 1e-9);
    assert!((util("nightjar_k8s_memory_utilization", "request") - 0.9375).abs() < 1e-9);

    // The sampler remembers where containers live; b's cgroup moving (a restart under another
    // parent) sends it back to the tree, so b is still read.
    let moved = root.join("kubepods/besteffort/pod22222222-2222-2222-2222-222222222222");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(&b, moved.join(B)).unwrap();
    write(&moved.join(B), 6_000_000, 40 << 20);
    assert_eq!(sampler.sample(&store, Duration::from_secs(10)), running);
    let text = telemetry.encode();
    assert_eq!(
        total(
            &text,
            "nightjar_k8s_memory_bytes",
            &["kind=\"Pod\"", "name=\"web-7d4b9c-bbbbb\""]
        ),
        (40 << 20) as f64,
        "b's memory is read from where its cgroup moved"
    );
}

#[test]
fn connections_to_a_service_become_service_map_edges() {
    let telemetry = Arc::new(Telemetry::new());
    let mut annotator = KubeAnnotator::new(store());
    let mut rollup = KubeRollup::new(telemetry.clone(), false);
    // The api pod (backing Service api) connects to web's cluster IP twice.
    let api = Arc::new(ContainerInfo {
        id: Some("dddd000000000000000000000000000000000000000000000000000000000004".into()),
        runtime: Runtime::Containerd,
        pod_uid: None,
        unit: None,
        cgroup: String::new(),
    });
    for _ in 0..2 {
        let mut e = bare(EventBody::TcpEstablished(Box::new(TcpConnection {
            cookie: 1,
            direction: "outbound",
            owner: "connect",
            local: endpoint("10.244.1.20", 40000),
            remote: endpoint("10.96.0.10", 80),
            handshake_us: None,
            duration_ms: Some(0),
            srtt_us: 1,
            retransmits: 0,
            bytes_acked: 1,
            bytes_received: 0,
            segments_in: 1,
            segments_out: 1,
            outcome: None,
            previous_state: None,
            error: None,
        })));
        e.container = Some(api.clone());
        annotator.annotate(&mut e, Duration::ZERO);
        rollup.apply(&mut e);
    }
    let text = telemetry.encode();
    let edge = "nightjar_service_map_connections_total{client=\"shop/Deployment/api\",client_service=\"shop/api\",service_namespace=\"shop\",service=\"web\"} 2";
    assert!(text.contains(edge), "missing {edge} in\n{text}");
    // No pod-level series without --pod-metrics.
    assert!(!text.contains("kind=\"Pod\""), "{text}");
}
