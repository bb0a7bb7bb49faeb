//! Tier 1: the agent watching a Kubernetes API (the in-process double, through the same
//! kube-rs path a cluster uses) attributes a process in a pod's container cgroup to that pod
//! and workload, and stops doing so when the pod is deleted mid-test.

mod support;

// The same double the k8s crate's watcher tests use; this test needs only part of it.
#[allow(dead_code)]
#[path = "../../k8s/tests/support/api_double.rs"]
mod api_double;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const POD_UID: &str = "0b5e3a1c-1d2e-4f50-8a6b-7c8d9e0f1a2b";
const CONTAINER_ID: &str = "c0ffee0000000000000000000000000000000000000000000000000000000001";

/// `nightjar-test-<pid>-k8s/kubepods/pod<uid>/<container id>`: a container's cgroup path as
/// the kubelet's cgroupfs driver lays it out. Removed innermost first.
/// On a hybrid host (cgroup v1 controllers beside the v2 tree, as here) the container also
/// gets the same path in the v1 memory hierarchy, as containerd does; the agent reads memory
/// from there.
const V1_MEMORY: &str = "/sys/fs/cgroup/memory";

struct PodCgroup {
    /// Each hierarchy's chain of directories, outermost first.
    chains: Vec<Vec<PathBuf>>,
}

impl PodCgroup {
    fn new() -> Self {
        let relative = PathBuf::from(format!("nightjar-test-{}-k8s", std::process::id()));
        let mut roots = vec![cgroup2_root()];
        let v1 = PathBuf::from(V1_MEMORY);
        if v1.join("memory.usage_in_bytes").exists() {
            roots.push(v1);
        }
        let chains = roots
            .into_iter()
            .map(|root| {
                let top = root.join(&relative);
                let pod = top.join("kubepods").join(format!("pod{POD_UID}"));
                let dirs = vec![
                    top.clone(),
                    top.join("kubepods"),
                    pod.clone(),
                    pod.join(CONTAINER_ID),
                ];
                for dir in &dirs {
                    let _ = std::fs::create_dir(dir);
                }
                dirs
            })
            .collect();
        Self { chains }
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let procs: Vec<PathBuf> = self
            .chains
            .iter()
            .map(|c| c.last().unwrap().join("cgroup.procs"))
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nj-trigger"));
        cmd.args(args).stdout(std::process::Stdio::null());
        // SAFETY: only write(2)s to cgroup.procs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    std::fs::write(p, b"0")?;
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn run(&self, args: &[&str]) -> u32 {
        let child = self.spawn(args);
        let pid = child.id();
        assert!(
            output_within(child, TRIGGER_LIMIT, "nj-trigger in the pod cgroup")
                .status
                .success()
        );
        pid
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for chain in &self.chains {
            for dir in chain.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn cluster() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "nginx"}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web-5c9d", "namespace": "shop",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "web", "uid": "d", "controller": true}]},
               "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-5c9d-k2x7q", "namespace": "shop", "uid": POD_UID,
                            "labels": {"app": "web", "pod-template-hash": "5c9d"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": "web-5c9d", "uid": "r", "controller": true}]},
               "spec": {"nodeName": "test-node", "containers": [{"name": "nginx", "image": "nginx:1.27"}]},
               "status": {"podIP": "10.244.9.9",
                          "conditions": [{"type": "Ready", "status": "True"}],
                          "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0,
                                                 "image": "nginx:1.27", "imageID": "",
                                                 "containerID": format!("containerd://{CONTAINER_ID}")}]}}),
        // A pod on another node: the field selector keeps it out.
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "elsewhere", "namespace": "shop", "uid": "e"},
               "spec": {"nodeName": "other-node", "containers": [{"name": "x"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"clusterIP": "10.96.9.9", "selector": {"app": "web"}}}),
    ]
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_for_metric(agent: &Agent, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = agent.metrics();
        if metric(&text, name) == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never {value}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn events_from_a_pods_container_carry_the_pod_from_the_api_until_it_is_deleted() {
    let _serial = serial();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let double = runtime.block_on(api_double::ApiDouble::start("127.0.0.1:0", cluster()));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.kubeconfig(dir.path());
    let cgroup = PodCgroup::new();
    let control = dir.path().join("control.sock");
    let agent = Agent::start(&[
        "--control-socket",
        control.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "test-node",
        "--type",
        "process_exec",
        "--pod-metrics",
        "--resource-interval",
        "1",
    ]);
    wait_for_metric(&agent, "nightjar_kubernetes_api_up ", 1);
    wait_for_metric(&agent, "nightjar_kubernetes_pods ", 1);

    let in_pod = cgroup.run(&["exit", "0"]);
    // The pod, its workload and its importance, queried from the running agent.
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(["pods", "--json", "--socket", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pods: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pod"] == "web-5c9d-k2x7q")
        .unwrap_or_else(|| panic!("pod not listed: {pods}"));
    assert_eq!(listed["workload"]["name"], "web", "{listed}");
    assert_eq!(
        listed["services"][0]["importance"]["level"], "critical",
        "{listed}"
    );
    let table = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(["pods", "--socket", control.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("Deployment/web") && table.contains("critical"),
        "{table}"
    );
    // CPU and memory from the container's cgroup: 2.5 s of spinning holding 64 MiB.
    let spinner = cgroup.spawn(&["spin", "2500", "64"]);
    std::thread::sleep(Duration::from_millis(2200));
    let during = agent.metrics();
    assert!(output_within(spinner, TRIGGER_LIMIT, "the spinner")
        .status
        .success());
    let value = |kind: &str, name: &str, family: &str| -> f64 {
        during
            .lines()
            .filter(|l| l.starts_with(family))
            .filter(|l| {
                l.contains(&format!("kind=\"{kind}\"")) && l.contains(&format!("name=\"{name}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let pod_cpu = value("Pod", "web-5c9d-k2x7q", "nightjar_k8s_cpu_seconds_total");
    assert!(pod_cpu >= 0.5, "pod CPU {pod_cpu} s:\n{during}");
    assert_eq!(
        value("Deployment", "web", "nightjar_k8s_cpu_seconds_total"),
        pod_cpu
    );
    assert_eq!(
        value("Service", "web", "nightjar_k8s_cpu_seconds_total"),
        pod_cpu
    );
    if PathBuf::from(V1_MEMORY)
        .join("memory.usage_in_bytes")
        .exists()
    {
        let memory = value("Pod", "web-5c9d-k2x7q", "nightjar_k8s_memory_bytes");
        assert!(
            memory >= (64 << 20) as f64,
            "pod memory {memory}:\n{during}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    // The pod goes away (scaled down); the same cgroup path is nobody's now.
    double.delete("Pod", "shop", "web-5c9d-k2x7q");
    wait_for_metric(&agent, "nightjar_kubernetes_pods ", 0);
    let after = cgroup.run(&["exit", "0"]);
    std::thread::sleep(Duration::from_millis(500));
    let metrics = agent.metrics();
    let events = agent.stop();

    let exec = |pid: u32| -> &Value {
        events
            .iter()
            .find(|e| e["type"] == "process_exec" && e["pid"] == pid)
            .unwrap_or_else(|| panic!("no exec of {pid}"))
    };
    let k = &exec(in_pod)["kubernetes"];
    assert_eq!(k["pod"], "web-5c9d-k2x7q", "{k}");
    assert_eq!(k["container"], "nginx", "{k}");
    assert_eq!(
        k["workload"],
        json!({"kind": "Deployment", "name": "web"}),
        "{k}"
    );
    assert_eq!(k["services"][0]["name"], "web", "{k}");
    assert_eq!(k["services"][0]["importance"]["level"], "critical", "{k}");
    let later = exec(after);
    assert!(later.get("kubernetes").is_none(), "{later}");
    assert!(
        metric(&metrics, "nightjar_kubernetes_unresolved_total ").unwrap_or(0) >= 1,
        "{metrics}"
    );
}

// The real-containerd harness of the k8s crate's runtime tests (an inline module with a
// path, so the harness's own submodules resolve beside it).
#[path = "../../k8s/tests/support"]
mod k8s_support {
    pub mod containerd;
}
use k8s_support::containerd;

#[test]
fn a_cri_containers_first_events_carry_its_pod_from_the_runtime() {
    let _serial = serial();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let harness = runtime.block_on(containerd::Containerd::start());
    let socket = harness.socket().to_str().unwrap().to_string();
    // The agent starts first: the pod below is new to it, and its first events must wait for
    // the runtime's answer (the poller has not seen it yet) rather than go out bare.
    let agent = Agent::start(&["--cri-socket", &socket, "--type", "process_exec"]);
    let uid = format!("5eed{:028x}", std::process::id());
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &uid[0..8],
        &uid[8..12],
        &uid[12..16],
        &uid[16..20],
        &uid[20..32]
    );
    let name = format!("cart-{}", std::process::id());
    let sandbox = runtime.block_on(harness.run_pod(&name, "shop", &uid, &[("app", "cart")]));
    let container =
        runtime.block_on(harness.run_container(&sandbox, "cart", &["/bin/sleep", "1000000"]));
    // A process started in the container (as `kubectl exec` would).
    let exec = runtime.block_on(async {
        harness
            .runtime()
            .exec_sync(k8s_cri::v1::ExecSyncRequest {
                container_id: container.clone(),
                cmd: vec!["/bin/sleep".into(), "0".into()],
                timeout: 10,
            })
            .await
    });
    assert!(exec.is_ok(), "{exec:?}");
    std::thread::sleep(Duration::from_millis(1000));
    let metrics = agent.metrics();
    let events = agent.stop();
    runtime.block_on(async {
        harness.stop_container(&container).await;
        harness.remove_container(&container).await;
        harness.stop_pod(&sandbox).await;
        harness.remove_pod(&sandbox).await;
    });
    let left = harness.shutdown();
    assert!(left.is_empty(), "{left:?}");

    assert_eq!(
        metric(&metrics, "nightjar_container_runtime_up "),
        Some(1),
        "{metrics}"
    );
    let in_container: Vec<&Value> = events
        .iter()
        .filter(|e| e["container"]["id"] == container.as_str())
        .collect();
    assert!(
        !in_container.is_empty(),
        "no exec seen in the container:\n{metrics}"
    );
    for e in in_container {
        let k = &e["kubernetes"];
        assert_eq!(k["pod"], name.as_str(), "{e}");
        assert_eq!(k["namespace"], "shop", "{e}");
        assert_eq!(k["pod_uid"], uid.as_str(), "{e}");
        assert_eq!(k["container"], "cart", "{e}");
        assert_eq!(k["image"], "docker.io/nightjar/busybox:test", "{e}");
    }
}
