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

/// A cgroup v2 directory created for the demo and removed afterwards.
struct DemoCgroup {
    path: PathBuf,
    id: u64,
}

impl DemoCgroup {
    fn create() -> Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let root = find_cgroup2_mount(&mountinfo).context("no cgroup2 mount found")?;
        let path = root.join(format!("nightjar-demo-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let id = std::fs::metadata(&path)?.ino();
        Ok(Self { path, id })
    }
}

impl Drop for DemoCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let cgroup = DemoCgroup::create()?;
    // The demo is self-contained: no metrics port, no control socket.
    let agent_args = crate::cli::AgentArgs {
        no_metrics: true,
        no_control_socket: true,
        ..Default::default()
    };
    let config = AgentConfig::from_args(&agent_args)?;
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
        // SAFETY: only async-signal-safe work (open/write/close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
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
