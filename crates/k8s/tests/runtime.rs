//! Pods learned from the container runtime: a container's first events ask the runtime
//! instead of going out bare; the API's (or file's) view of a pod always wins over the
//! runtime's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::{Container, ContainerMetadata, ImageSpec, PodSandboxMetadata};
use nightjar_core::*;
use nightjar_k8s::annotate::RuntimeLookup;
use nightjar_k8s::cri::pod_object;
use nightjar_k8s::{load_metadata, Change, ClusterStore, KubeAnnotator, Object};

const NEW_UID: &str = "12121212-3434-5656-7878-909090909090";
const NEW_CONTAINER: &str = "cccc000000000000000000000000000000000000000000000000000000000009";

fn store() -> ClusterStore {
    let mut store = ClusterStore::new();
    for o in
        load_metadata(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/shop.yaml")).unwrap()
    {
        store.apply(Change::Applied(o));
    }
    store
}

fn runtime_pod(uid: &str, name: &str, container_id: &str) -> Object {
    let container = Container {
        id: container_id.to_string(),
        pod_sandbox_id: "sb1".into(),
        metadata: Some(ContainerMetadata {
            name: "worker".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "shop/worker:3".into(),
            ..ImageSpec::default()
        }),
        ..Container::default()
    };
    let labels = HashMap::from([
        ("app".to_string(), "worker".to_string()),
        ("io.kubernetes.pod.name".to_string(), name.to_string()),
    ]);
    pod_object(
        "sb1",
        Some(&PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "shop".into(),
            attempt: 0,
        }),
        &labels,
        &[&container],
        "containerd",
    )
    .unwrap()
}

fn event(container: &Arc<ContainerInfo>) -> Event {
    let fork = EventBody::ProcessFork {
        child_pid: 2,
        child_start_time_ns: 0,
    };
    let mut event = Event::unattributed(String::new(), 0, Arc::from("node-1"), fork);
    (event.pid, event.tid, event.cgroup_id) = (1, 1, 1);
    event.container = Some(container.clone());
    event
}

#[test]
fn a_new_containers_first_event_asks_the_runtime_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut annotator = KubeAnnotator::new(store()).with_runtime_lookup(RuntimeLookup(Box::new(
        move |id: &str| {
            counter.fetch_add(1, Ordering::Relaxed);
            (id == NEW_CONTAINER).then(|| runtime_pod(NEW_UID, "worker-0", NEW_CONTAINER))
        },
    )));
    let container = Arc::new(ContainerInfo {
        id: Some(NEW_CONTAINER.into()),
        runtime: Runtime::Unknown,
        pod_uid: Some(NEW_UID.into()),
        unit: None,
        cgroup: format!("/kubepods/pod{NEW_UID}/{NEW_CONTAINER}"),
    });
    let mut first = event(&container);
    annotator.annotate(&mut first, Duration::ZERO);
    let k = first
        .kubernetes
        .expect("the runtime's answer, not a bare event");
    assert_eq!(
        (&*k.pod, k.container.as_deref()),
        ("worker-0", Some("worker"))
    );
    assert_eq!(k.image.as_deref(), Some("shop/worker:3"));
    // No owner known from the runtime: the pod is its own workload.
    assert_eq!(&*k.workload.kind, "Pod");
    let mut second = event(&container);
    annotator.annotate(&mut second, Duration::from_millis(1));
    assert!(second.kubernetes.is_some());
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "asked once, then the store knows"
    );

    // A container the runtime does not know either: asked once per retry interval, counted.
    let stranger = Arc::new(ContainerInfo {
        id: Some("d".repeat(64)),
        pod_uid: Some("00000000-0000-0000-0000-00000000dead".into()),
        ..(*container).clone()
    });
    for ms in [2, 3, 4] {
        let mut e = event(&stranger);
        annotator.annotate(&mut e, Duration::from_millis(ms));
        assert!(e.kubernetes.is_none());
    }
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(annotator.stats().unresolved, 3);
}

#[test]
fn the_apis_view_of_a_pod_wins_over_the_runtimes() {
    let mut store = store();
    // The runtime reports web-a's sandbox under another name and without its owner.
    let uid = "11111111-1111-1111-1111-111111111111";
    store.apply(Change::Applied(runtime_pod(
        uid,
        "sandbox-name",
        &"a".repeat(64),
    )));
    let pod = store.pod(uid).unwrap();
    assert_eq!(&*pod.name, "web-7d4b9c-aaaaa");
    assert!(!pod.from_runtime);
    // ...and forgets it: the API's pod stays.
    store.apply(Change::Deleted(runtime_pod(
        uid,
        "sandbox-name",
        &"a".repeat(64),
    )));
    assert!(store.pod(uid).is_some());
    // A runtime-only pod is replaced when the API describes it.
    store.apply(Change::Applied(runtime_pod(
        NEW_UID,
        "worker-0",
        NEW_CONTAINER,
    )));
    assert!(store.pod(NEW_UID).unwrap().from_runtime);
}

/// A runtime socket that accepts connections and never answers (a hung runtime): each
/// accepted connection is counted and held open.
struct SilentRuntime {
    accepted: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentRuntime {
    fn start(socket: &Path) -> Self {
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_runtime_that_does_not_answer_is_asked_once_then_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hung.sock");
    let runtime = SilentRuntime::start(&socket);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answers = tokio.block_on(async move {
        // The annotator calls the lookup from the pipeline task, a worker of this runtime.
        tokio::spawn(async move {
            let mut lookup =
                nightjar_k8s::runtime_lookup::blocking(socket, Duration::from_millis(100));
            (0..5)
                .map(|i| (lookup.0)(&format!("{i:064}")).is_some())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    });
    assert_eq!(answers, [false; 5], "a silent runtime names no pod");
    // The first new container waited for its timeout; the next four did not ask at all.
    assert_eq!(runtime.accepted.load(Ordering::Relaxed), 1);
}
