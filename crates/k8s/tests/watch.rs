//! The kube-rs watcher path against the in-process API double: list then watch, this node's
//! pods only, changes mid-test (scale, delete, replace a pod reusing its IP), bookmarks, a
//! 410 Gone that forces a relist, and an API that is down at first.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use nightjar_core::*;
use nightjar_k8s::watch::{client, spawn_watchers, ApiStatus};
use nightjar_k8s::{ClusterStore, KubeAnnotator, SharedStore};
use serde_json::Value;
use support::api_double::{kubeconfig_for, ApiDouble};

const WEB_A_CONTAINER: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";

/// The fixture's objects as JSON values, Lists expanded.
fn fixture() -> Vec<Value> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/shop.yaml"))
            .unwrap();
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value["kind"] == "List" {
            out.extend(value["items"].as_array().unwrap().iter().cloned());
        } else if !value.is_null() {
            out.push(value);
        }
    }
    out
}

fn find(objects: &[Value], kind: &str, name: &str) -> Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in the fixture"))
        .clone()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pods(store: &SharedStore) -> Vec<String> {
    let store = store.read().unwrap();
    let mut names: Vec<String> = store.pods().map(|p| p.name.to_string()).collect();
    names.sort();
    names
}

fn fork_in(container: &str) -> Event {
    let fork = EventBody::ProcessFork {
        child_pid: 2,
        child_start_time_ns: 0,
    };
    let mut event = Event::unattributed(String::new(), 0, Arc::from("node-1"), fork);
    event.container = Some(Arc::new(ContainerInfo {
        id: Some(container.to_string()),
        runtime: Runtime::Containerd,
        pod_uid: None,
        unit: None,
        cgroup: String::new(),
    }));
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_list_then_follow_every_change_without_misattributing() {
    let objects = fixture();
    let double = ApiDouble::start("127.0.0.1:0", objects.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(Some(&double.kubeconfig(dir.path())))
        .await
        .expect("client");
    let store: SharedStore = Arc::new(RwLock::new(ClusterStore::new()));
    let status = Arc::new(ApiStatus::default());
    let tasks = spawn_watchers(client, Some("node-1"), store.clone(), status.clone());

    // Only node-1's pods (the field selector), every other kind in full.
    wait_until("synced", || status.synced()).await;
    assert_eq!(
        pods(&store),
        [
            "api-5f6d7-zzzzz",
            "web-7d4b9c-aaaaa",
            "web-7d4b9c-bbbbb",
            "web-7d4b9c-ccccc"
        ]
    );
    assert_eq!(store.read().unwrap().stats().services, 3);
    let mut annotator = KubeAnnotator::shared(store.clone());
    let importance = |a: &mut KubeAnnotator, now: u64| {
        let mut e = fork_in(WEB_A_CONTAINER);
        a.annotate(&mut e, Duration::from_secs(now));
        let k = e.kubernetes.expect("web pod context");
        assert_eq!(k.workload.name.as_ref(), "web");
        k.services[0].importance.clone()
    };
    assert_eq!(importance(&mut annotator, 0).level, "medium");

    // Scale web 3 -> 1: two pods deleted, the slice rewritten.
    double.delete("Pod", "shop", "web-7d4b9c-bbbbb");
    double.delete("Pod", "shop", "web-7d4b9c-ccccc");
    let mut slice = find(&objects, "EndpointSlice", "web-x7k2p");
    slice["endpoints"].as_array_mut().unwrap().truncate(1);
    double.apply(slice);
    wait_until("scaled to one", || {
        let s = store.read().unwrap();
        s.stats().pods == 2 && s.ready_endpoints(&(Arc::from("shop"), Arc::from("web"))) == 1
    })
    .await;
    let now = importance(&mut annotator, 1);
    assert_eq!(now.level, "critical", "{now:?}");

    // Replace web-a with a new pod reusing its IP; the old pod's deletion comes after.
    let mut replacement = find(&objects, "Pod", "web-7d4b9c-aaaaa");
    replacement["metadata"]["name"] = "web-7d4b9c-eeeee".into();
    replacement["metadata"]["uid"] = "99999999-9999-9999-9999-999999999999".into();
    replacement["status"]["containerStatuses"][0]["containerID"] =
        format!("containerd://{}", "f".repeat(64)).into();
    double.apply(replacement);
    double.delete("Pod", "shop", "web-7d4b9c-aaaaa");
    wait_until("replaced", || {
        pods(&store) == ["api-5f6d7-zzzzz", "web-7d4b9c-eeeee"]
    })
    .await;
    let ip: IpAddr = "10.244.1.10".parse().unwrap();
    match annotator.identity(&ip) {
        PeerIdentity::Pod { name, .. } => assert_eq!(name.as_ref(), "web-7d4b9c-eeeee"),
        other => panic!("{other:?}"),
    }
    let mut old = fork_in(WEB_A_CONTAINER);
    annotator.annotate(&mut old, Duration::from_secs(2));
    assert!(old.kubernetes.is_none(), "the old container is nobody now");

    // Bookmarks: pod watches ask for them, and they move the watch's resourceVersion past
    // changes of other kinds, so a restarted watch resumes from there.
    assert!(double
        .watches()
        .iter()
        .any(|(kind, _, bookmarks)| kind == "Pod" && *bookmarks));
    double.apply(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "later"}}),
    );
    let after_namespace = double.resource_version();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let seen = double.watches().len();
    let lists = status.lists.load(Ordering::Relaxed);
    double.drop_watches();
    wait_until("pods re-watched", || {
        double.watches()[seen..]
            .iter()
            .any(|(kind, _, _)| kind == "Pod")
    })
    .await;
    let rewatch = double.watches()[seen..]
        .iter()
        .find(|(kind, _, _)| kind == "Pod")
        .unwrap()
        .1;
    assert!(
        rewatch >= after_namespace,
        "pod watch resumed at {rewatch}, before the bookmark's {after_namespace}"
    );
    // ...by watching again, not by listing: the resourceVersion came from a bookmark.
    assert_eq!(status.lists.load(Ordering::Relaxed), lists);

    // 410 Gone: history compacted, and a deletion the watches never saw. Only a relist can
    // find it; the watcher must relist and drop the pod.
    let lists_before = status.lists.load(Ordering::Relaxed);
    double.compact();
    double.delete_silently("Pod", "shop", "api-5f6d7-zzzzz");
    double.drop_watches();
    wait_until("relisted without the api pod", || {
        pods(&store) == ["web-7d4b9c-eeeee"]
    })
    .await;
    assert!(status.lists.load(Ordering::Relaxed) > lists_before);
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_degrades_then_recovers_with_backoff() {
    // A port nobody listens on (yet).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client(Some(&kubeconfig_for(&addr, dir.path())))
        .await
        .expect("a client needs no server to exist");
    let store: SharedStore = Arc::new(RwLock::new(ClusterStore::new()));
    let status = Arc::new(ApiStatus::default());
    let tasks = spawn_watchers(client, Some("node-1"), store.clone(), status.clone());
    wait_until("errors counted", || {
        status.errors.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(!status.up.load(Ordering::Relaxed));
    assert!(store.read().unwrap().is_empty());

    let _double = ApiDouble::start(&addr.to_string(), fixture()).await;
    wait_until("synced after the API came up", || status.synced()).await;
    assert!(status.up.load(Ordering::Relaxed));
    assert_eq!(pods(&store).len(), 4);
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn a_bad_kubeconfig_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "clusters: [").unwrap();
    let err = match client(Some(&path)).await {
        Ok(_) => panic!("a broken kubeconfig was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(path.to_str().unwrap()), "{err}");
}
