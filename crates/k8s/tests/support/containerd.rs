//! A real containerd for integration tests, driven through the CRI API.
//!
//! [`Containerd::start`] runs the Debian `containerd` as a child process with its own config,
//! root, state, runc root and socket in a temp dir, imports a locally built busybox image
//! ([`IMAGE`], also the sandbox image: nothing can be pulled), and hands out CRI clients over the
//! Unix socket. Pods use the host network (so no CNI) and the kubelet's cgroupfs layout: a
//! container lands at `/kubepods/pod<uid>/<64-hex id>` in every cgroup hierarchy.
//!
//! Needs root and the packages in [`PACKAGES`]; installs them with apt-get when missing and fails
//! with a clear message when that is impossible (never skips silently).
//!
//! Dropping the harness (or [`Containerd::shutdown`], which also reports) removes everything it
//! made: pods and containers through CRI, then containerd, then by force whatever is still there
//! (shims and runc by command line, container processes by cgroup), mounts under the temp dir,
//! the `kubepods/pod<uid>` cgroups of its pods, its shim sockets in `/run/containerd/s`, and the
//! temp dir. The last harness of the process also removes `kubepods` and `/run/containerd` when
//! they were not there before the first one started and are empty.
//!
//! Gotchas, from containerd 1.6 on this platform: pod sandboxes start only with
//! `restrict_oom_score_adj = true` (no CAP_SYS_RESOURCE); host-network pods need an empty
//! hostname; the runc v2 shim puts its socket in `/run/containerd/s/<sha256>` whatever the
//! config says; the images have no init, so their PID 1 ignores SIGTERM and containers are
//! stopped with a zero timeout (SIGKILL).

// Each test binary uses a different part of the support module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, ImageStatusRequest, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListContainersRequest, ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StatusRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

pub mod host;
mod image;

use host::{
    cgroup_hierarchies, contains, in_pod_cgroup, mounts_under, pids, pod_cgroups,
    remove_cgroup_tree, signal, unmount_under, zombie,
};
use image::{image_archive, sha256_hex, static_busybox};

/// The image built and imported by the harness: busybox-static as `/bin/busybox`, with `/bin/sh`
/// and `/bin/sleep` linked to it; default command `/bin/sleep 1000000`. Also the pause image.
pub const IMAGE: &str = "docker.io/nightjar/busybox:test";

/// Debian packages the harness needs (installed on demand).
pub const PACKAGES: &[&str] = &["containerd", "runc", "busybox-static"];

/// The containerd namespace the CRI plugin works in.
const CRI_NAMESPACE: &str = "k8s.io";

/// Where the runc v2 shim of containerd 1.6 puts its sockets, whatever the config says.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// How long containerd may take to open its socket, and CRI to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A containerd child process with everything in a temp dir. See the module docs.
#[derive(Debug)]
pub struct Containerd {
    /// `None` once torn down.
    dir: Option<tempfile::TempDir>,
    /// The temp dir's path, kept to report on it after it is gone.
    path: PathBuf,
    socket: PathBuf,
    snapshotter: &'static str,
    child: Option<Child>,
    channel: Channel,
    /// Sandbox id -> the config it was run with (CreateContainer wants it again).
    pods: Mutex<HashMap<String, PodSandboxConfig>>,
    /// UIDs of every pod ever asked for: their cgroups are ours to remove.
    uids: Mutex<Vec<String>>,
    /// Sandbox ids ever created: their shim sockets are ours to remove.
    sandboxes: Mutex<Vec<String>>,
    torn_down: bool,
}

/// Directories every harness of this process shares: `kubepods` in each cgroup hierarchy and
/// `/run/containerd{,/s}`. The last harness to go removes those that did not exist before the
/// first one started (and only when empty), so parallel tests never pull them from each other.
#[derive(Debug)]
struct Shared {
    live: usize,
    /// `kubepods` cgroup directories and `/run/containerd` as found by the first harness.
    before: Option<Vec<PathBuf>>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    live: 0,
    before: None,
});

/// Shared directories a harness may create.
fn shared_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join("kubepods"))
        .collect();
    dirs.push(PathBuf::from("/run/containerd"));
    dirs
}

fn enter_shared() {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if shared.before.is_none() {
        shared.before = Some(shared_dirs().into_iter().filter(|d| d.exists()).collect());
    }
    shared.live += 1;
}

fn leave_shared() {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    shared.live -= 1;
    if shared.live > 0 {
        return;
    }
    let before = shared.before.clone().unwrap_or_default();
    for dir in shared_dirs() {
        if !before.contains(&dir) {
            // rmdir only: fails harmlessly when something (another test binary's harness)
            // still uses the directory.
            if dir.ends_with("containerd") {
                let _ = fs::remove_dir(dir.join("s"));
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// What a harness left on the machine; empty after a clean teardown.
#[derive(Debug, Default)]
pub struct Footprint {
    /// `pid: command line` of processes that mention the temp dir or live in a pod cgroup.
    /// Zombies are not counted: they are dead, and only their parent (init, for a killed
    /// shim's children) can reap them.
    pub processes: Vec<String>,
    /// Mount points under the temp dir.
    pub mounts: Vec<PathBuf>,
    /// `kubepods/pod<uid>` cgroup directories of the harness's pods, in any hierarchy.
    pub cgroups: Vec<PathBuf>,
    /// The temp dir itself and shim sockets, when still there.
    pub files: Vec<PathBuf>,
}

impl Footprint {
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
            && self.files.is_empty()
    }
}

impl Containerd {
    /// Starts containerd (overlayfs snapshotter; native when overlayfs is unavailable or
    /// `NIGHTJAR_CONTAINERD_SNAPSHOTTER=native`), imports [`IMAGE`] and waits until CRI reports
    /// the runtime ready and the image present. Panics with the reason (and containerd's log)
    /// when any of that fails.
    pub async fn start() -> Containerd {
        require_root();
        ensure_installed();
        let busybox = static_busybox().unwrap_or_else(|why| {
            panic!("containerd harness: {why}; install the Debian package busybox-static")
        });
        let dir = tempfile::Builder::new()
            .prefix("nightjar-containerd-")
            .tempdir()
            .expect("containerd harness: create temp dir");
        let path = dir.path().to_path_buf();
        let socket = path.join("containerd.sock");
        enter_shared();
        let mut harness = Containerd {
            channel: connect(socket.clone()),
            dir: Some(dir),
            path,
            socket,
            snapshotter: "overlayfs",
            child: None,
            pods: Mutex::default(),
            uids: Mutex::default(),
            sandboxes: Mutex::default(),
            torn_down: false,
        };
        // From here on a panic drops `harness`, which tears down whatever was started.
        let archive = harness.path.join("image.tar");
        fs::write(&archive, image_archive(&busybox)).expect("containerd harness: write image");

        if std::env::var("NIGHTJAR_CONTAINERD_SNAPSHOTTER").as_deref() == Ok("native") {
            harness.snapshotter = "native";
        }
        harness.launch();
        if harness.snapshotter == "overlayfs"
            && !harness.plugin_ok("io.containerd.snapshotter.v1", "overlayfs")
        {
            eprintln!("containerd harness: overlayfs snapshotter unavailable, using native");
            harness.kill_containerd();
            for sub in ["root", "state"] {
                let _ = fs::remove_dir_all(harness.path.join(sub));
            }
            harness.snapshotter = "native";
            harness.launch();
        }
        let out = harness
            .ctr(&["images", "import", "--snapshotter", harness.snapshotter])
            .arg(&archive)
            .output()
            .expect("containerd harness: run ctr");
        assert!(
            out.status.success(),
            "containerd harness: ctr images import failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        harness.wait_ready().await;
        harness
    }

    /// The CRI socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir holding config, root, state, logs and the socket.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The snapshotter in use: `overlayfs` or `native`.
    pub fn snapshotter(&self) -> &'static str {
        self.snapshotter
    }

    /// The containerd process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// containerd's own log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path.join("containerd.log")).unwrap_or_default()
    }

    /// A CRI runtime client on the harness's channel.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// A CRI image client on the harness's channel.
    pub fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// Runs a host-network pod sandbox as the kubelet would (cgroupfs driver, no QoS class):
    /// cgroup parent `/kubepods/pod<uid>`, empty hostname, logs under the temp dir, the
    /// kubelet's `io.kubernetes.pod.*` labels plus `labels`. Returns the sandbox id.
    pub async fn run_pod(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        labels: &[(&str, &str)],
    ) -> String {
        let log_dir = self
            .path
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        fs::create_dir_all(&log_dir).expect("containerd harness: create pod log dir");
        let mut all_labels = owned(labels);
        all_labels.insert("io.kubernetes.pod.name".into(), name.into());
        all_labels.insert("io.kubernetes.pod.namespace".into(), namespace.into());
        all_labels.insert("io.kubernetes.pod.uid".into(), uid.into());
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // CRI refuses a hostname for host-network pods.
            hostname: String::new(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: all_labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces(NamespaceMode::Pod)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Recorded first, so teardown removes the cgroup even if the call fails half-way.
        self.uids.lock().unwrap().push(uid.to_owned());
        let id = self
            .runtime()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "RunPodSandbox {namespace}/{name}: {status}\ncontainerd log:\n{}",
                    self.log_tail()
                )
            })
            .into_inner()
            .pod_sandbox_id;
        self.sandboxes.lock().unwrap().push(id.clone());
        self.pods.lock().unwrap().insert(id.clone(), config);
        id
    }

    /// Creates (does not start) a container of [`IMAGE`] running `command` in a pod made by
    /// [`Containerd::run_pod`], with the kubelet's labels and its own PID namespace.
    /// Returns the container id.
    pub async fn create_container(&self, sandbox_id: &str, name: &str, command: &[&str]) -> String {
        let sandbox_config = self
            .pods
            .lock()
            .unwrap()
            .get(sandbox_id)
            .cloned()
            .unwrap_or_else(|| panic!("containerd harness: no pod {sandbox_id} of ours"));
        let pod = sandbox_config.metadata.clone().unwrap_or_default();
        let labels = owned(&[
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", &pod.name),
            ("io.kubernetes.pod.namespace", &pod.namespace),
            ("io.kubernetes.pod.uid", &pod.uid),
        ]);
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/0.log"),
            labels,
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces(NamespaceMode::Container)),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        self.runtime()
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "CreateContainer {name} in {sandbox_id}: {status}\ncontainerd log:\n{}",
                    self.log_tail()
                )
            })
            .into_inner()
            .container_id
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) {
        self.runtime()
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "StartContainer {id}: {status}\ncontainerd log:\n{}",
                    self.log_tail()
                )
            });
    }

    /// [`Containerd::create_container`] then [`Containerd::start_container`].
    pub async fn run_container(&self, sandbox_id: &str, name: &str, command: &[&str]) -> String {
        let id = self.create_container(sandbox_id, name, command).await;
        self.start_container(&id).await;
        id
    }

    /// Stops a container at once (SIGKILL: the image has no init to honour SIGTERM).
    pub async fn stop_container(&self, id: &str) {
        self.runtime()
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await
            .unwrap_or_else(|status| panic!("StopContainer {id}: {status}"));
    }

    pub async fn remove_container(&self, id: &str) {
        self.runtime()
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("RemoveContainer {id}: {status}"));
    }

    /// Stops a pod sandbox (and any container still running in it).
    pub async fn stop_pod(&self, sandbox_id: &str) {
        self.runtime()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("StopPodSandbox {sandbox_id}: {status}"));
    }

    pub async fn remove_pod(&self, sandbox_id: &str) {
        self.runtime()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("RemovePodSandbox {sandbox_id}: {status}"));
        self.pods.lock().unwrap().remove(sandbox_id);
    }

    /// The host PID of a running container's main process, from verbose ContainerStatus.
    /// Right after StartContainer it may still be `runc init`, about to exec the command.
    pub async fn main_pid(&self, container_id: &str) -> u32 {
        let response = self
            .runtime()
            .container_status(ContainerStatusRequest {
                container_id: container_id.into(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|status| panic!("ContainerStatus {container_id}: {status}"))
            .into_inner();
        let info = response
            .info
            .get("info")
            .unwrap_or_else(|| panic!("ContainerStatus {container_id}: no verbose info"));
        let info: serde_json::Value = serde_json::from_str(info).expect("verbose info is JSON");
        let pid = info["pid"].as_u64().unwrap_or(0);
        assert!(pid > 0, "ContainerStatus {container_id}: no pid in {info}");
        pid as u32
    }

    /// Stops everything and reports what is left behind (nothing, normally).
    pub fn shutdown(mut self) -> Footprint {
        self.teardown()
    }

    /// What this harness currently has on the machine.
    pub fn footprint(&self) -> Footprint {
        let uids = self.uids.lock().unwrap().clone();
        let mut footprint = Footprint::default();
        let needle = self.path.as_os_str().as_bytes();
        for pid in pids() {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = (contains(&cmdline, needle) || in_pod_cgroup(pid, &uids)) && !zombie(pid);
            if ours {
                let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                footprint
                    .processes
                    .push(format!("{pid}: {}", shown.trim_end()));
            }
        }
        footprint.mounts = mounts_under(&self.path);
        footprint.cgroups = pod_cgroups(&uids);
        if self.path.exists() {
            footprint.files.push(self.path.clone());
        }
        footprint
            .files
            .extend(self.shim_sockets().into_iter().filter(|p| p.exists()));
        footprint
    }

    /// Writes the config and starts containerd, then waits for its socket.
    fn launch(&mut self) {
        let _ = fs::remove_file(&self.socket);
        let config = self.path.join("config.toml");
        fs::write(&config, config_toml(&self.path, self.snapshotter))
            .expect("containerd harness: write config");
        let log = fs::File::create(self.path.join("containerd.log"))
            .expect("containerd harness: create log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("containerd harness: dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("containerd harness: cannot run containerd: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.socket.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "containerd harness: containerd exited ({status}) before opening {}:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "containerd harness: no socket after {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ctr` against this containerd, in the CRI namespace, with `args` first.
    fn ctr(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", CRI_NAMESPACE])
            .args(args);
        command
    }

    /// Whether `ctr plugins ls` lists the plugin with status `ok`.
    fn plugin_ok(&self, kind: &str, id: &str) -> bool {
        let out = self
            .ctr(&["plugins", "ls"])
            .output()
            .expect("containerd harness: run ctr plugins ls");
        String::from_utf8_lossy(&out.stdout).lines().any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() >= 3 && cols[0] == kind && cols[1] == id && cols.last() == Some(&"ok")
        })
    }

    /// Waits until CRI says the runtime is ready and knows [`IMAGE`].
    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = self
                .runtime()
                .status(StatusRequest { verbose: false })
                .await;
            let (runtime_ready, last) = match status {
                Ok(response) => {
                    let conditions = response
                        .into_inner()
                        .status
                        .map(|s| s.conditions)
                        .unwrap_or_default();
                    let ready = conditions
                        .iter()
                        .any(|c| c.r#type == "RuntimeReady" && c.status);
                    (ready, format!("{conditions:?}"))
                }
                Err(e) => (false, e.to_string()),
            };
            let image_known = runtime_ready
                && self
                    .images()
                    .image_status(ImageStatusRequest {
                        image: Some(ImageSpec {
                            image: IMAGE.into(),
                            ..Default::default()
                        }),
                        verbose: false,
                    })
                    .await
                    .map(|r| r.into_inner().image.is_some())
                    .unwrap_or(false);
            if image_known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd harness: CRI not ready with {IMAGE} after {START_TIMEOUT:?} \
                 (last status: {last}):\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps the child.
    fn kill_containerd(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Shim socket paths of our sandboxes: `/run/containerd/s/` + hex(sha256(`<grpc address>/
    /// <namespace>/<sandbox id>`)), as containerd 1.6 computes them (one shim per pod).
    fn shim_sockets(&self) -> Vec<PathBuf> {
        self.sandboxes
            .lock()
            .unwrap()
            .iter()
            .filter_map(|id| {
                let key = format!("{}/{CRI_NAMESPACE}/{id}", self.socket.display());
                sha256_hex(key.as_bytes()).map(|hash| Path::new(SHIM_SOCKET_DIR).join(hash))
            })
            .collect()
    }

    /// Removes everything; idempotent. Returns what is left (nothing, normally).
    fn teardown(&mut self) -> Footprint {
        if self.torn_down {
            return self.footprint();
        }
        self.torn_down = true;
        let alive = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        if alive {
            for problem in remove_all_via_cri(self.socket.clone()) {
                eprintln!("containerd harness: teardown: {problem}");
            }
        }
        self.kill_containerd();

        // Whatever CRI did not remove: shims and runc (their command lines name the temp dir),
        // then container processes (by pod cgroup). Only processes the harness started match.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.footprint().processes;
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("containerd harness: teardown: processes survive SIGKILL: {left:?}");
                break;
            }
            for entry in &left {
                eprintln!("containerd harness: teardown: killing {entry}");
                if let Some(pid) = entry.split(':').next().and_then(|p| p.parse().ok()) {
                    signal(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        unmount_under(&self.path);
        let uids = self.uids.lock().unwrap().clone();
        for cgroup in pod_cgroups(&uids) {
            remove_cgroup_tree(&cgroup);
        }
        for socket in self.shim_sockets() {
            let _ = fs::remove_file(socket);
        }
        leave_shared();
        if let Some(dir) = self.dir.take() {
            let still_mounted = mounts_under(&self.path);
            if !still_mounted.is_empty() {
                // Never delete through a mount: it may reach files of the host.
                eprintln!(
                    "containerd harness: teardown: keeping {} (still mounted: {still_mounted:?})",
                    self.path.display()
                );
                let _ = dir.keep();
            } else if let Err(e) = dir.close() {
                eprintln!("containerd harness: teardown: remove temp dir: {e}");
                let _ = fs::remove_dir_all(&self.path);
            }
        }
        self.footprint()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let left = self.teardown();
        if !left.is_empty() {
            eprintln!("containerd harness: left behind after teardown: {left:#?}");
        }
    }
}

/// The containerd config: everything under `dir`, CRI with cgroupfs and no CNI use.
pub fn config_toml(dir: &Path, snapshotter: &str) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{IMAGE}"
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "{snapshotter}"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{d}/runc"

    # Pods use the host network; CNI is never called. These dirs stay empty.
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/conf"
"#
    )
}

/// A tonic channel to the CRI socket (connects on first use).
fn connect(socket: PathBuf) -> Channel {
    Endpoint::from_static("http://[::]:50051")
        .timeout(Duration::from_secs(30))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
}

/// Stops and removes every container and pod sandbox in the containerd at `socket`, on a
/// thread of its own (Drop may run inside or outside a runtime). Returns the failures.
fn remove_all_via_cri(socket: PathBuf) -> Vec<String> {
    let worker = std::thread::spawn(move || -> Vec<String> {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => return vec![format!("tokio runtime: {e}")],
        };
        runtime.block_on(async move {
            let mut problems = Vec::new();
            let work = async {
                let mut cri = RuntimeServiceClient::new(connect(socket));
                let containers = cri
                    .list_containers(ListContainersRequest {
                        filter: Some(ContainerFilter::default()),
                    })
                    .await
                    .map(|r| r.into_inner().containers)
                    .unwrap_or_else(|e| {
                        problems.push(format!("ListContainers: {e}"));
                        Vec::new()
                    });
                for container in containers {
                    let id = container.id;
                    let stop = StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    };
                    if let Err(e) = cri.stop_container(stop).await {
                        problems.push(format!("StopContainer {id}: {e}"));
                    }
                    let remove = RemoveContainerRequest {
                        container_id: id.clone(),
                    };
                    if let Err(e) = cri.remove_container(remove).await {
                        problems.push(format!("RemoveContainer {id}: {e}"));
                    }
                }
                let pods = cri
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await
                    .map(|r| r.into_inner().items)
                    .unwrap_or_else(|e| {
                        problems.push(format!("ListPodSandbox: {e}"));
                        Vec::new()
                    });
                for pod in pods {
                    let id = pod.id;
                    let stop = StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    };
                    if let Err(e) = cri.stop_pod_sandbox(stop).await {
                        problems.push(format!("StopPodSandbox {id}: {e}"));
                    }
                    let remove = RemovePodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    };
                    if let Err(e) = cri.remove_pod_sandbox(remove).await {
                        problems.push(format!("RemovePodSandbox {id}: {e}"));
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(30), work)
                .await
                .is_err()
            {
                problems.push("CRI cleanup timed out after 30 s".into());
            }
            problems
        })
    });
    worker
        .join()
        .unwrap_or_else(|_| vec!["CRI cleanup thread panicked".into()])
}

/// Host network and IPC/PID as given: the kubelet's choices for a hostNetwork pod.
fn namespaces(pid: NamespaceMode) -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn owned(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "containerd harness: needs root (runs containerd, mounts, cgroups); run the test as root"
    );
}

/// Installs [`PACKAGES`] with apt-get when a binary is missing; panics when that fails.
fn ensure_installed() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let missing = || -> Vec<String> {
        let mut missing: Vec<String> = ["containerd", "containerd-shim-runc-v2", "ctr", "runc"]
            .into_iter()
            .filter(|b| which(b).is_none())
            .map(str::to_owned)
            .collect();
        if let Err(why) = static_busybox() {
            missing.push(why);
        }
        missing
    };
    if missing().is_empty() {
        return;
    }
    eprintln!(
        "containerd harness: missing {:?}; running apt-get install -y {}",
        missing(),
        PACKAGES.join(" ")
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        install();
    }
    let still = missing();
    assert!(
        still.is_empty(),
        "containerd harness: cannot install {} (missing: {still:?}); \
         run `apt-get install -y {}` as root before the tests",
        PACKAGES.join(" "),
        PACKAGES.join(" ")
    );
}

fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file());
    found
}
