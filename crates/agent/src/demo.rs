//! `nightjar demo`: the agent on this machine while a short workload runs in a cgroup of its
//! own, so a newcomer sees live, attributed events at once.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use nightjar_enrich::mountinfo::find_cgroup2_mount;

use crate::cli::DemoArgs;
use crate::config::AgentConfig;
use crate::run::{run_agent_with, RunHooks};

/// The demo pod's uid and container id, as a kubelet and containerd would have made them.
const DEMO_POD_UID: &str = "6e6a6465-6d6f-4000-8000-000000000001";
const DEMO_CONTAINER_ID: &str = "6e6a64656d6f0000000000000000000000000000000000000000000000000001";

/// The demo's cgroups, removed afterwards: `nightjar-demo-<pid>` with, inside it, the path a
/// pod's container gets (`kubepods/pod<uid>/<container id>`), where the workload runs.
struct DemoCgroup {
    /// Outermost first.
    dirs: Vec<PathBuf>,
    path: PathBuf,
    id: u64,
}

impl DemoCgroup {
    fn create() -> Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let root = find_cgroup2_mount(&mountinfo).context("no cgroup2 mount found")?;
        let top = root.join(format!("nightjar-demo-{}", std::process::id()));
        let pod = top.join("kubepods").join(format!("pod{DEMO_POD_UID}"));
        let path = pod.join(DEMO_CONTAINER_ID);
        let mut dirs = Vec::new();
        for dir in [top.clone(), top.join("kubepods"), pod, path.clone()] {
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dirs.push(dir);
        }
        let id = std::fs::metadata(&path)?.ino();
        Ok(Self { dirs, path, id })
    }
}

impl Drop for DemoCgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The cluster the demo pretends to run in: a one-replica Deployment behind a Service, in the
/// static metadata file format (`kubectl get -o yaml`), so events show pod, workload, service
/// and importance without a cluster.
fn demo_metadata() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: demo-web-6d5f8
  namespace: demo
  ownerReferences:
    - {{apiVersion: apps/v1, kind: Deployment, name: demo-web, uid: 6e6a6465-6d6f-4000-8000-0000000000d1, controller: true}}
spec:
  selector:
    matchLabels: {{app: demo-web}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo-web
  namespace: demo
spec:
  selector:
    matchLabels: {{app: demo-web}}
  template:
    metadata:
      labels: {{app: demo-web}}
    spec:
      containers: [{{name: web, image: "nightjar/demo:1"}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: demo-web-6d5f8-x1y2z
  namespace: demo
  uid: {DEMO_POD_UID}
  labels: {{app: demo-web, pod-template-hash: 6d5f8}}
  ownerReferences:
    - {{apiVersion: apps/v1, kind: ReplicaSet, name: demo-web-6d5f8, uid: 6e6a6465-6d6f-4000-8000-0000000000e1, controller: true}}
spec:
  containers: [{{name: web, image: "nightjar/demo:1"}}]
status:
  podIP: 10.250.0.10
  conditions: [{{type: Ready, status: "True"}}]
  containerStatuses:
    - {{name: web, ready: true, restartCount: 0, image: "nightjar/demo:1", imageID: "", containerID: "containerd://{DEMO_CONTAINER_ID}"}}
---
apiVersion: v1
kind: Service
metadata:
  name: demo-web
  namespace: demo
spec:
  clusterIP: 10.250.255.10
  selector: {{app: demo-web}}
"#
    )
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let cgroup = DemoCgroup::create()?;
    let metadata = std::env::temp_dir().join(format!("nightjar-demo-{}.yaml", std::process::id()));
    std::fs::write(&metadata, demo_metadata())
        .with_context(|| format!("writing {}", metadata.display()))?;
    // The demo is self-contained: no metrics port, no control socket.
    let agent_args = crate::cli::AgentArgs {
        no_metrics: true,
        no_control_socket: true,
        kube_metadata: Some(metadata.clone()),
        ..Default::default()
    };
    let config = AgentConfig::from_args(&agent_args);
    let _ = std::fs::remove_file(&metadata);
    let config = config?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let hooks = RunHooks {
        ready: Some(ready_tx),
        stop: Some(stop_rx),
        cgroup_ids: if args.all { vec![] } else { vec![cgroup.id] },
    };
    let agent = tokio::spawn(run_agent_with(config, hooks));
    if ready_rx.await.is_err() {
        // The agent failed before it was ready; its error says why.
        return agent.await.context("agent task")?;
    }
    eprintln!(
        "nightjar demo: agent ready; running the demo workload in cgroup {}",
        cgroup.path.display()
    );
    let exe = std::env::current_exe()?;
    let procs = cgroup.path.join("cgroup.procs");
    let status = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("demo-workload");
        // SAFETY: only async-signal-safe work (sched_setscheduler, open/write/close) between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Forked from an agent thread that may run at idle priority: not the workload.
                crate::sched::reset_current_thread()?;
                std::fs::write(&procs, b"0")?;
                Ok(())
            });
        }
        cmd.status()
    })
    .await??;
    eprintln!("nightjar demo: workload finished ({status}); stopping the agent");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(());
    agent.await.context("agent task")?
}
