//! The Kubernetes index and transform against a fixture cluster (testdata/shop.yaml):
//! workloads, services, importance, peer identities, and churn that must never misattribute.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nightjar_core::*;
use nightjar_k8s::{load_metadata, parse_metadata, Change, ClusterStore, KubeAnnotator, Object};

const WEB_A: &str = "11111111-1111-1111-1111-111111111111";
const WEB_A_CONTAINER: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
const API_CONTAINER: &str = "dddd000000000000000000000000000000000000000000000000000000000004";

fn fixture() -> Vec<Object> {
    load_metadata(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/shop.yaml"))
        .expect("fixture loads")
}

fn store() -> ClusterStore {
    let mut store = ClusterStore::new();
    for object in fixture() {
        store.apply(Change::Applied(object));
    }
    store
}

fn event(container_id: Option<&str>, pod_uid: Option<&str>, body: EventBody) -> Event {
    Event {
        time: String::new(),
        ktime_ns: 0,
        node: Arc::from("node-1"),
        pid: 10,
        tid: 10,
        cgroup_id: 5,
        flags: Vec::new(),
        process: None,
        parent: None,
        ancestors: Vec::new(),
        container: Some(Arc::new(ContainerInfo {
            id: container_id.map(String::from),
            runtime: Runtime::Containerd,
            pod_uid: pod_uid.map(String::from),
            unit: None,
            cgroup: String::new(),
        })),
        kubernetes: None,
        peer: None,
        body,
    }
}

fn fork() -> EventBody {
    EventBody::ProcessFork {
        child_pid: 11,
        child_start_time_ns: 0,
    }
}

fn endpoint(addr: &str, port: u16) -> FlowEndpoint {
    FlowEndpoint {
        addr: addr.parse().unwrap(),
        port,
    }
}

fn connection(remote: &str) -> EventBody {
    EventBody::TcpEstablished(Box::new(TcpConnection {
        cookie: 1,
        direction: "outbound",
        owner: "connect",
        local: endpoint("10.244.1.20", 40000),
        remote: endpoint(remote, 80),
        handshake_us: Some(50),
        duration_ms: Some(0),
        srtt_us: 50,
        retransmits: 0,
        bytes_acked: 1,
        bytes_received: 0,
        segments_in: 1,
        segments_out: 1,
        outcome: None,
        previous_state: None,
        error: None,
    }))
}

fn flow(src: &str, dst: &str, bytes: u64) -> EventBody {
    EventBody::Flow(Box::new(FlowRecord {
        reason: "end",
        interface: "veth1".into(),
        direction: "egress",
        protocol: "tcp",
        source: endpoint(src, 80),
        destination: endpoint(dst, 40000),
        packets: 1,
        bytes,
        tcp_flags: Vec::new(),
        first_seen: String::new(),
        last_seen: String::new(),
        verdict: "forwarded",
        socket_end: None,
        new_packets: 1,
        new_bytes: bytes,
    }))
}

fn workload(kind: &str, name: &str) -> WorkloadRef {
    WorkloadRef {
        kind: Arc::from(kind),
        name: Arc::from(name),
    }
}

#[test]
fn every_pod_resolves_to_its_top_workload() {
    let store = store();
    let stats = store.stats();
    assert_eq!(stats.pods, 8);
    assert_eq!(stats.services, 3);
    let by_name = |name: &str| {
        let pod = store.pods().find(|p| &*p.name == name).unwrap();
        store.workload_of(pod)
    };
    assert_eq!(by_name("web-7d4b9c-aaaaa"), workload("Deployment", "web"));
    // Its ReplicaSet is not in the file: the pod-template-hash names the Deployment.
    assert_eq!(by_name("api-5f6d7-zzzzz"), workload("Deployment", "api"));
    assert_eq!(by_name("report-2890-qqqqq"), workload("CronJob", "report"));
    assert_eq!(by_name("db-0"), workload("StatefulSet", "db"));
    assert_eq!(
        by_name("node-agent-x1"),
        workload("DaemonSet", "node-agent")
    );
    assert_eq!(by_name("debug"), workload("Pod", "debug"));
    // Requests and limits are kept in base units.
    let web = store.pod(WEB_A).unwrap();
    let nginx = &web.containers[0];
    assert_eq!(
        (nginx.cpu_request_millis, nginx.cpu_limit_millis),
        (250, 1000)
    );
    assert_eq!(nginx.memory_limit_bytes, 128 * 1024 * 1024);
}

#[test]
fn addresses_resolve_to_pods_services_nodes_or_the_world() {
    let store = store();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        store.identity(&ip("10.244.1.11")),
        PeerIdentity::Pod {
            namespace: Arc::from("shop"),
            name: Arc::from("web-7d4b9c-bbbbb"),
            workload: Some(workload("Deployment", "web")),
        }
    );
    assert_eq!(
        store.identity(&ip("10.96.0.20")),
        PeerIdentity::Service {
            namespace: Arc::from("shop"),
            name: Arc::from("api"),
        }
    );
    // A host-network pod's address is its node's.
    assert_eq!(
        store.identity(&ip("192.168.1.5")),
        PeerIdentity::Node {
            name: Arc::from("node-1")
        }
    );
    assert_eq!(store.identity(&ip("8.8.8.8")), PeerIdentity::World);
    // A pod on another node, from the EndpointSlice listing its address.
    assert_eq!(
        store.identity(&ip("10.244.2.7")),
        PeerIdentity::Pod {
            namespace: Arc::from("shop"),
            name: Arc::from("catalog-6b7c-abcde"),
            workload: None,
        }
    );
}

#[test]
fn events_carry_pod_workload_services_and_importance() {
    let mut annotator = KubeAnnotator::new(store());
    let mut e = event(Some(WEB_A_CONTAINER), None, fork());
    annotator.annotate(&mut e, Duration::ZERO);
    let k = e.kubernetes.as_ref().expect("context");
    assert_eq!((&*k.namespace, &*k.pod), ("shop", "web-7d4b9c-aaaaa"));
    assert_eq!(k.container.as_deref(), Some("nginx"));
    assert_eq!(k.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(k.workload, workload("Deployment", "web"));
    assert_eq!(k.owner, Some(workload("ReplicaSet", "web-7d4b9c")));
    assert_eq!(k.services.len(), 1);
    assert_eq!(&*k.services[0].name, "web");
    let importance = &k.services[0].importance;
    assert_eq!(importance.level, "medium", "{importance:?}");
    assert!(
        importance.reason.contains("1 of 3 ready endpoints"),
        "{importance:?}"
    );

    // Only the pod uid known (from the cgroup path, systemd style): pod, no container.
    let mut e = event(None, Some(&WEB_A.replace('-', "_")), fork());
    annotator.annotate(&mut e, Duration::ZERO);
    let k = e.kubernetes.as_ref().expect("context from the pod uid");
    assert_eq!(&*k.pod, "web-7d4b9c-aaaaa");
    assert_eq!(k.container, None);

    // The lone api replica is critical to its service (selector-matched: no slice).
    let mut e = event(Some(API_CONTAINER), None, fork());
    annotator.annotate(&mut e, Duration::ZERO);
    let k = e.kubernetes.as_ref().unwrap();
    assert_eq!(&*k.services[0].name, "api");
    assert_eq!(k.services[0].importance.level, "critical");

    // An unknown container is counted, not guessed.
    let mut e = event(Some(&"e".repeat(64)), None, fork());
    annotator.annotate(&mut e, Duration::ZERO);
    assert!(e.kubernetes.is_none());
    assert_eq!(annotator.stats().unresolved, 1);
}

#[test]
fn importance_rises_as_the_deployment_scales_from_three_to_one() {
    let objects = fixture();
    let mut annotator = KubeAnnotator::new(store());
    let level = |a: &mut KubeAnnotator, now: u64| {
        let mut e = event(Some(WEB_A_CONTAINER), None, fork());
        a.annotate(&mut e, Duration::from_secs(now));
        e.kubernetes.unwrap().services[0].importance.clone()
    };
    assert_eq!(level(&mut annotator, 0).level, "medium");
    // Scale to 1: two pods deleted and the slice rewritten, as the controllers would.
    for object in &objects {
        if let Object::Pod(p) = object {
            let name = p.metadata.name.as_deref().unwrap();
            if name == "web-7d4b9c-bbbbb" || name == "web-7d4b9c-ccccc" {
                annotator
                    .store()
                    .write()
                    .unwrap()
                    .apply(Change::Deleted(object.clone()));
            }
        }
    }
    let slice = objects
        .iter()
        .find_map(|o| match o {
            Object::EndpointSlice(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    let mut scaled = (*slice).clone();
    scaled.endpoints.as_mut().unwrap().truncate(1);
    annotator
        .store()
        .write()
        .unwrap()
        .apply(Change::Applied(Object::EndpointSlice(Box::new(scaled))));
    let now = level(&mut annotator, 1);
    assert_eq!(now.level, "critical", "{now:?}");
    assert!(now.reason.contains("1 of 1 ready endpoints"), "{now:?}");
}

#[test]
fn traffic_share_and_callers_move_importance() {
    let mut annotator = KubeAnnotator::new(store());
    // Web pod a served 90% of the bytes (flows seen at its address), b and c the rest.
    for (src, bytes) in [
        ("10.244.1.10", 9000),
        ("10.244.1.11", 500),
        ("10.244.1.12", 500),
    ] {
        let mut f = event(None, None, flow(src, "10.244.1.20", bytes));
        f.container = None;
        annotator.annotate(&mut f, Duration::from_secs(1));
        assert!(
            f.kubernetes.is_some(),
            "flow from {src} attributed by address"
        );
    }
    // The api workload calls web through its cluster IP.
    let mut call = event(Some(API_CONTAINER), None, connection("10.96.0.10"));
    annotator.annotate(&mut call, Duration::from_secs(1));
    assert_eq!(
        call.peer.as_deref(),
        Some(&PeerIdentity::Service {
            namespace: Arc::from("shop"),
            name: Arc::from("web")
        })
    );
    assert_eq!(annotator.edges(Duration::from_secs(1)).len(), 1);
    // After the refresh interval the context is rebuilt with the new inputs.
    let mut e = event(Some(WEB_A_CONTAINER), None, fork());
    annotator.annotate(&mut e, Duration::from_secs(10));
    let importance = &e.kubernetes.unwrap().services[0].importance;
    assert_eq!(importance.level, "critical", "{importance:?}");
    assert!(importance.reason.contains("(observed)"), "{importance:?}");
    assert!(
        importance.reason.contains("1 calling workloads"),
        "{importance:?}"
    );
}

#[test]
fn a_replacement_pod_reusing_an_ip_never_inherits_the_old_pods_events() {
    let mut store = store();
    let objects = fixture();
    let old = objects
        .iter()
        .find(|o| o.metadata().name.as_deref() == Some("web-7d4b9c-aaaaa"))
        .unwrap()
        .clone();
    // The replacement: new name, uid and container, same IP.
    let Object::Pod(pod) = &old else {
        unreachable!()
    };
    let mut new = (**pod).clone();
    new.metadata.name = Some("web-7d4b9c-ddddd".into());
    new.metadata.uid = Some("99999999-9999-9999-9999-999999999999".into());
    new.status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .container_id = Some(format!("containerd://{}", "f".repeat(64)));
    store.apply(Change::Applied(Object::Pod(Box::new(new))));
    // The old pod's deletion arrives late; the IP stays with the new pod.
    store.apply(Change::Deleted(old));
    let ip: IpAddr = "10.244.1.10".parse().unwrap();
    match store.identity(&ip) {
        PeerIdentity::Pod { name, .. } => assert_eq!(&*name, "web-7d4b9c-ddddd"),
        other => panic!("{other:?}"),
    }
    // The old container's events are no longer attributed to anything.
    let mut annotator = KubeAnnotator::new(store);
    let mut e = event(Some(WEB_A_CONTAINER), None, fork());
    annotator.annotate(&mut e, Duration::ZERO);
    assert!(e.kubernetes.is_none());
    let mut e = event(Some(&"f".repeat(64)), None, fork());
    annotator.annotate(&mut e, Duration::ZERO);
    assert_eq!(&*e.kubernetes.unwrap().pod, "web-7d4b9c-ddddd");
}

#[test]
fn malformed_metadata_names_the_file_and_the_object() {
    let path = Path::new("/etc/nightjar/cluster.yaml");
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\n  namespace: shop\nspec: 5\n";
    let text = format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\n{bad}");
    let err = parse_metadata(path, &text).unwrap_err().to_string();
    assert!(err.contains("/etc/nightjar/cluster.yaml"), "{err}");
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("Pod shop/broken"), "{err}");
    let err = parse_metadata(path, "kind: [").unwrap_err().to_string();
    assert!(err.contains("not YAML"), "{err}");
    let err = parse_metadata(path, "metadata: {name: x}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no kind"), "{err}");
    let err = parse_metadata(path, "kind: List\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("items"), "{err}");
}
