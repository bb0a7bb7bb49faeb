//! The container runtime as a metadata source: CRI (gRPC) over the runtime's Unix socket;
//! containerd by default, CRI-O speaks the same protocol.
//!
//! The runtime knows every pod sandbox and container on this node the moment it starts them,
//! before the API has reported them. Its pods are fed into the same [`ClusterStore`] marked as
//! coming from the runtime ([`RUNTIME_SOURCE`]): the API or the metadata file, which know
//! owners, IPs and readiness, always win over them. A container's first events ask the
//! runtime directly ([`CriClient::pod_of_container`]) rather than going out bare.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandboxStatusRequest,
    VersionRequest,
};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::annotate::SharedStore;
use crate::objects::{Change, Object};

/// The annotation marking a pod the store learned from the runtime, not the API.
pub const RUNTIME_SOURCE: &str = "nightjar.dev/source";

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// Why the runtime could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("connecting to the container runtime at {}: {detail}", socket.display())]
    Connect { socket: PathBuf, detail: String },
    #[error("CRI {call}: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
}

/// A CRI runtime service client on a Unix socket.
#[derive(Debug, Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    runtime_name: String,
}

fn call_error(call: &'static str) -> impl Fn(tonic::Status) -> CriError {
    move |status| CriError::Call {
        call,
        status: Box::new(status),
    }
}

/// The Pod object the store gets for a sandbox and its containers (`runtime`: the scheme of
/// container ids, `containerd`). `None` for a sandbox without metadata.
pub fn pod_object(
    sandbox_id: &str,
    metadata: Option<&k8s_cri::v1::PodSandboxMetadata>,
    labels: &HashMap<String, String>,
    containers: &[&k8s_cri::v1::Container],
    runtime: &str,
) -> Option<Object> {
    let metadata = metadata?;
    if metadata.uid.is_empty() {
        return None;
    }
    // The kubelet's own bookkeeping labels are not the pod's.
    let labels: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| !k.starts_with("io.kubernetes.") && !k.starts_with("io.cri-containerd."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut annotations = BTreeMap::new();
    annotations.insert(RUNTIME_SOURCE.to_string(), "cri".to_string());
    annotations.insert("nightjar.dev/sandbox".to_string(), sandbox_id.to_string());
    let spec_containers = containers
        .iter()
        .map(|c| Container {
            name: c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            image: c.image.as_ref().map(|i| i.image.clone()),
            ..Container::default()
        })
        .collect();
    let statuses = containers
        .iter()
        .map(|c| ContainerStatus {
            name: c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            container_id: Some(format!("{runtime}://{}", c.id)),
            image: c
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            ..ContainerStatus::default()
        })
        .collect();
    Some(Object::Pod(Box::new(Pod {
        metadata: ObjectMeta {
            name: Some(metadata.name.clone()),
            namespace: Some(metadata.namespace.clone()),
            uid: Some(metadata.uid.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: spec_containers,
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(statuses),
            ..PodStatus::default()
        }),
    })))
}

impl CriClient {
    /// Connects to the runtime at `socket` and asks its version (so a wrong socket fails
    /// here, with the path in the message). `timeout` bounds every call.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, CriError> {
        let fail = |detail: String| CriError::Connect {
            socket: socket.to_path_buf(),
            detail,
        };
        let path = socket.to_path_buf();
        // The URI is a placeholder: the connector below always dials the socket.
        let channel = Endpoint::from_static("http://[::]:50051")
            .timeout(timeout)
            .connect_timeout(timeout)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut runtime = RuntimeServiceClient::new(channel);
        let version = runtime
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|e| fail(e.message().to_string()))?
            .into_inner();
        Ok(Self {
            runtime,
            runtime_name: version.runtime_name,
        })
    }

    /// The runtime's name (`containerd`, `cri-o`), the scheme of its container ids.
    pub fn runtime_name(&self) -> &str {
        &self.runtime_name
    }

    /// Every pod sandbox on this node with its containers, as Pod objects for the store.
    pub async fn pods(&mut self) -> Result<Vec<Object>, CriError> {
        let sandboxes = self
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map_err(call_error("ListPodSandbox"))?
            .into_inner()
            .items;
        let containers = self
            .runtime
            .list_containers(ListContainersRequest { filter: None })
            .await
            .map_err(call_error("ListContainers"))?
            .into_inner()
            .containers;
        let mut by_sandbox: HashMap<&str, Vec<&k8s_cri::v1::Container>> = HashMap::new();
        for c in &containers {
            by_sandbox
                .entry(c.pod_sandbox_id.as_str())
                .or_default()
                .push(c);
        }
        Ok(sandboxes
            .iter()
            .filter_map(|s| {
                let cs = by_sandbox
                    .get(s.id.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                pod_object(
                    &s.id,
                    s.metadata.as_ref(),
                    &s.labels,
                    cs,
                    &self.runtime_name,
                )
            })
            .collect())
    }

    /// The pod of one container, asked of the runtime now (a container's first events).
    pub async fn pod_of_container(&mut self, id: &str) -> Result<Option<Object>, CriError> {
        let containers = self
            .runtime
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    id: id.to_string(),
                    ..ContainerFilter::default()
                }),
            })
            .await
            .map_err(call_error("ListContainers"))?
            .into_inner()
            .containers;
        let Some(container) = containers.iter().find(|c| c.id == id) else {
            return Ok(None);
        };
        let sandbox = container.pod_sandbox_id.clone();
        let status = self
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.clone(),
                verbose: false,
            })
            .await
            .map_err(call_error("PodSandboxStatus"))?
            .into_inner()
            .status;
        let Some(status) = status else {
            return Ok(None);
        };
        // All the sandbox's containers, so the pod entry is complete.
        let siblings = self
            .runtime
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: sandbox.clone(),
                    ..ContainerFilter::default()
                }),
            })
            .await
            .map_err(call_error("ListContainers"))?
            .into_inner()
            .containers;
        let refs: Vec<&k8s_cri::v1::Container> = siblings.iter().collect();
        Ok(pod_object(
            &sandbox,
            status.metadata.as_ref(),
            &status.labels,
            &refs,
            &self.runtime_name,
        ))
    }
}

/// How the runtime source is doing.
#[derive(Debug, Default)]
pub struct RuntimeStatus {
    pub up: AtomicBool,
    pub errors: AtomicU64,
    /// Pods the runtime reported at the last poll.
    pub pods: AtomicU64,
}

fn apply(store: &SharedStore, change: Change) {
    store
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .apply(change);
}

/// Polls the runtime every `interval`: its pods go into the store (where the API has not
/// already described them), pods it no longer has come out. Reconnects with backoff.
pub async fn poll_runtime(
    socket: PathBuf,
    store: SharedStore,
    interval: Duration,
    status: Arc<RuntimeStatus>,
) {
    let mut client: Option<CriClient> = None;
    // Each pod's identity -> what was last applied for it: an unchanged pod is not applied
    // again, so the index's generation (and every cached context) survives quiet polls.
    let mut known: HashMap<(String, String, String), String> = HashMap::new();
    let mut backoff = interval;
    loop {
        if client.is_none() {
            match CriClient::connect(&socket, Duration::from_secs(2)).await {
                Ok(c) => {
                    tracing::info!(socket = %socket.display(), runtime = c.runtime_name(), "Container runtime connected");
                    client = Some(c);
                    backoff = interval;
                }
                Err(err) => {
                    if status.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(error = %err, "Container runtime unavailable; retrying with backoff");
                    }
                    status.up.store(false, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        match c.pods().await {
            Ok(pods) => {
                status.up.store(true, Ordering::Relaxed);
                status.pods.store(pods.len() as u64, Ordering::Relaxed);
                let mut now = HashMap::new();
                for pod in pods {
                    let meta = pod.metadata();
                    let key = (
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default(),
                        meta.uid.clone().unwrap_or_default(),
                    );
                    let Object::Pod(inner) = &pod else { continue };
                    let fingerprint = serde_json::to_string(inner).unwrap_or_default();
                    if known.get(&key) != Some(&fingerprint) {
                        apply(&store, Change::Applied(pod));
                    }
                    now.insert(key, fingerprint);
                }
                for (namespace, name, uid) in known.keys().filter(|k| !now.contains_key(*k)) {
                    let gone = Pod {
                        metadata: ObjectMeta {
                            namespace: Some(namespace.clone()),
                            name: Some(name.clone()),
                            uid: Some(uid.clone()),
                            annotations: Some(BTreeMap::from([(
                                RUNTIME_SOURCE.to_string(),
                                "cri".to_string(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        ..Pod::default()
                    };
                    apply(&store, Change::Deleted(Object::Pod(Box::new(gone))));
                }
                known = now;
            }
            Err(err) => {
                status.errors.fetch_add(1, Ordering::Relaxed);
                status.up.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, "Container runtime poll failed; reconnecting");
                client = None;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
