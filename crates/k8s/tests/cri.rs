//! containerd's CRI for real (tier 2, root): a pod and a container run through the CRI API of a
//! containerd started by the test harness, as the kubelet would run them, and what the agent
//! relies on is checked against the machine: CRI metadata, the container's cgroup v2 path, and
//! `parse_cgroup_path` on that path. Fails (never skips) when containerd cannot run.

#[allow(dead_code)]
mod support;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    ContainerFilter, ContainerState, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxFilter, PodSandboxState, PodSandboxStatusRequest,
};
use support::containerd::host::{cgroup2_mount, cgroup2_path_of, mounts_under};
use support::containerd::{Containerd, IMAGE};

/// A random version-4 UUID, as the API server gives pods.
fn pod_uid() -> String {
    let random = || RandomState::new().build_hasher().finish();
    let (a, b) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_pod_container_is_listed_with_pod_metadata_and_its_cgroup_names_pod_uid_and_container_id(
) {
    let started = Instant::now();
    let containerd = Containerd::start().await;
    println!(
        "containerd up in {:?} (snapshotter {}, socket {})",
        started.elapsed(),
        containerd.snapshotter(),
        containerd.socket().display()
    );
    let uid = pod_uid();
    let name = format!("sleeper-{}", &uid[..8]);
    let namespace = "nightjar-cri-test";

    let sandbox = containerd
        .run_pod(&name, namespace, &uid, &[("app", "sleeper")])
        .await;
    let container = containerd
        .run_container(&sandbox, "sleep", &["/bin/sleep", "1000000"])
        .await;
    println!("pod {namespace}/{name} uid {uid}: sandbox {sandbox}, container {container}");
    let mut cri = containerd.runtime();

    // ListPodSandbox: the pod's name, namespace, uid and labels, ready.
    let pods = cri
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: sandbox.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "{pods:#?}");
    let meta = pods[0].metadata.clone().expect("sandbox metadata");
    assert_eq!(
        (
            meta.name.as_str(),
            meta.namespace.as_str(),
            meta.uid.as_str()
        ),
        (name.as_str(), namespace, uid.as_str())
    );
    assert_eq!(pods[0].state, PodSandboxState::SandboxReady as i32);
    assert_eq!(
        pods[0].labels.get("app").map(String::as_str),
        Some("sleeper")
    );

    // ListContainers: the container's name and image, in that pod, running.
    let containers = cri
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: sandbox.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1, "{containers:#?}");
    let listed = &containers[0];
    assert_eq!(listed.id, container);
    assert_eq!(listed.pod_sandbox_id, sandbox);
    assert_eq!(
        listed.metadata.as_ref().map(|m| m.name.as_str()),
        Some("sleep")
    );
    assert_eq!(listed.image.as_ref().map(|i| i.image.as_str()), Some(IMAGE));
    assert_eq!(listed.state, ContainerState::ContainerRunning as i32);
    assert_eq!(
        listed.labels.get("io.kubernetes.pod.uid"),
        Some(&uid),
        "kubelet labels on the container"
    );

    // PodSandboxStatus: the same metadata (what a CRI client asks for a container's pod).
    let status = cri
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("sandbox status");
    assert_eq!(status.metadata, Some(meta.clone()));

    // The main process: `sleep`, in /kubepods/pod<uid>/<container id> of the cgroup2 tree.
    let pid = containerd.main_pid(&container).await;
    // StartContainer can return before `runc init` has exec'd the command.
    let cmdline = || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    wait_until(
        || cmdline() == b"/bin/sleep\x001000000\x00",
        "the container's main process to exec sleep",
    );
    let relative = cgroup2_path_of(pid).expect("main process has a cgroup v2 path");
    let absolute = cgroup2_mount().join(relative.trim_start_matches('/'));
    println!(
        "container main pid {pid} in cgroup v2 {}",
        absolute.display()
    );
    assert!(
        relative.contains(&format!("pod{uid}")),
        "{relative} names the pod"
    );
    assert!(
        relative.ends_with(&format!("/{container}")),
        "{relative} ends in the container id"
    );
    assert_eq!(relative, format!("/kubepods/pod{uid}/{container}"));
    let procs = std::fs::read_to_string(absolute.join("cgroup.procs")).expect("cgroup.procs");
    assert!(
        procs.lines().any(|p| p == pid.to_string()),
        "pid {pid} in {}/cgroup.procs: {procs}",
        absolute.display()
    );

    // What the agent derives from that path.
    let info = nightjar_enrich::parse_cgroup_path(&relative);
    assert_eq!(info.id.as_deref(), Some(container.as_str()), "{info:?}");
    assert_eq!(info.pod_uid.as_deref(), Some(uid.as_str()), "{info:?}");

    // Stop and remove through CRI: the process and its cgroup go away.
    containerd.stop_container(&container).await;
    containerd.remove_container(&container).await;
    containerd.stop_pod(&sandbox).await;
    containerd.remove_pod(&sandbox).await;
    let gone = cri
        .list_containers(ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert!(gone.is_empty(), "{gone:#?}");
    let gone = cri
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(gone.is_empty(), "{gone:#?}");
    wait_until(
        || !Path::new(&format!("/proc/{pid}")).exists(),
        "sleep to exit",
    );
    wait_until(
        || !absolute.exists(),
        "the container's cgroup to be removed",
    );
    let dir = containerd.dir().to_path_buf();
    assert!(
        mounts_under(&dir).is_empty(),
        "no mounts left once the pod is removed: {:?}",
        mounts_under(&dir)
    );

    // Teardown leaves nothing: no containerd, shim, runc or sleep, no mounts, cgroups or files.
    let left = containerd.shutdown();
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(!dir.exists());
    println!("done in {:?}", started.elapsed());
}

fn wait_until(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The harness's own promise: pods left running are stopped and removed through CRI on
/// teardown, and nothing stays on the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_teardown_removes_pods_left_running() {
    let containerd = Containerd::start().await;
    let uid = pod_uid();
    let sandbox = containerd
        .run_pod(
            &format!("left-{}", &uid[..8]),
            "nightjar-cri-test",
            &uid,
            &[],
        )
        .await;
    let container = containerd
        .run_container(&sandbox, "sleep", &["/bin/sleep", "1000000"])
        .await;
    let pid = containerd.main_pid(&container).await;
    let dir = containerd.dir().to_path_buf();

    let left = containerd.shutdown();
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(!alive(pid), "container process {pid} still alive");
    assert!(!dir.exists());
}

/// And when containerd itself is gone (crashed, killed), teardown still kills the shim and the
/// containers it started, unmounts their rootfs and removes their cgroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_teardown_cleans_up_after_containerd_is_killed() {
    let containerd = Containerd::start().await;
    let uid = pod_uid();
    let sandbox = containerd
        .run_pod(
            &format!("orphan-{}", &uid[..8]),
            "nightjar-cri-test",
            &uid,
            &[],
        )
        .await;
    let container = containerd
        .run_container(&sandbox, "sleep", &["/bin/sleep", "1000000"])
        .await;
    let pid = containerd.main_pid(&container).await;
    assert!(
        !mounts_under(containerd.dir()).is_empty(),
        "running containers have their rootfs mounted under the temp dir"
    );
    let daemon = containerd.pid().expect("containerd runs");
    // SAFETY: kill(2) on the containerd child this test started.
    unsafe { libc::kill(daemon as libc::pid_t, libc::SIGKILL) };

    let left = containerd.shutdown();
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(!alive(pid), "container process {pid} still alive");
}

/// Running (not exited, not a zombie awaiting its reaper).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Nightjar's own CRI client and runtime poller (crates/k8s/src/cri.rs) against the real
/// containerd: the pod and container come into the index with their names, image and
/// container id; the pod of a container can be asked for directly; and a pod the runtime
/// removes leaves the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_source_indexes_pods_and_forgets_removed_ones() {
    use nightjar_k8s::cri::{poll_runtime, CriClient, RuntimeStatus};
    use nightjar_k8s::{Change, ClusterStore, SharedStore};
    use std::sync::{Arc, RwLock};

    let containerd = Containerd::start().await;
    let uid = pod_uid();
    let name = format!("api-{}", &uid[..8]);
    let sandbox = containerd
        .run_pod(&name, "shop", &uid, &[("app", "api")])
        .await;
    let container = containerd
        .run_container(&sandbox, "api", &["/bin/sleep", "1000000"])
        .await;

    let mut client = CriClient::connect(containerd.socket(), Duration::from_secs(2))
        .await
        .expect("client connects");
    assert_eq!(client.runtime_name(), "containerd");
    let asked = client
        .pod_of_container(&container)
        .await
        .unwrap()
        .expect("the runtime knows the container");
    let mut store = ClusterStore::new();
    store.apply(Change::Applied(asked));
    let pod = store
        .pod_of_container(&container)
        .expect("indexed by container id");
    assert_eq!(
        (&*pod.name, &*pod.namespace, &*pod.uid),
        (name.as_str(), "shop", uid.as_str())
    );
    assert_eq!(pod.label("app"), Some("api"));
    assert!(pod.from_runtime);
    let spec = &pod.containers[0];
    assert_eq!(&*spec.name, "api");
    assert_eq!(&*spec.image, "docker.io/nightjar/busybox:test");
    // The container's real cgroup names the same container: events from it find this pod.
    let pid = containerd.main_pid(&container).await;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    let parsed = nightjar_enrich::parse_cgroup_path(v2);
    assert_eq!(parsed.id.as_deref(), Some(container.as_str()));
    assert_eq!(
        store
            .pod_of_container(parsed.id.as_deref().unwrap())
            .map(|p| &*p.name),
        Some(name.as_str())
    );

    // The poller keeps a shared index current, and forgets the pod once it is removed.
    let shared: SharedStore = Arc::new(RwLock::new(ClusterStore::new()));
    let status = Arc::new(RuntimeStatus::default());
    let poller = tokio::spawn(poll_runtime(
        containerd.socket().to_path_buf(),
        shared.clone(),
        Duration::from_millis(200),
        status.clone(),
    ));
    let known = |shared: &SharedStore| shared.read().unwrap().pod(&uid).is_some();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !known(&shared) {
        assert!(Instant::now() < deadline, "poller never indexed the pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    containerd.stop_container(&container).await;
    containerd.remove_container(&container).await;
    containerd.stop_pod(&sandbox).await;
    containerd.remove_pod(&sandbox).await;
    while known(&shared) {
        assert!(
            Instant::now() < deadline,
            "poller never forgot the removed pod"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    let left = containerd.shutdown();
    assert!(left.is_empty(), "{left:?}");
}
