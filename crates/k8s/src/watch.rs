//! The production metadata source: kube-rs watchers (list, then watch from the list's
//! resourceVersion; bookmarks on; a 410 Gone relists) for every kind the index needs, feeding
//! the shared [`ClusterStore`]. Pods are only this node's (field selector on spec.nodeName).
//!
//! Never a request per event: the transform reads the index, these tasks keep it current.
//! An unreachable API leaves the agent running on what it has; each watcher retries with
//! kube-runtime's backoff, and [`ApiStatus`] says whether the API is answering.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::annotate::SharedStore;
use crate::objects::{Change, Object};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig {}: {detail}", path.display())]
    Kubeconfig {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// A client from a kubeconfig file, or from the pod's service account when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let fail = |detail: String| ClientError::Kubeconfig {
                path: path.to_path_buf(),
                detail,
            };
            let file =
                kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        None => kube::Config::incluster().map_err(|e| ClientError::InCluster(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClientError::Client(e.to_string()))
}

/// How the API watchers are doing.
#[derive(Debug, Default)]
pub struct ApiStatus {
    /// Kinds whose initial list has completed at least once.
    pub synced: AtomicU64,
    /// Watch errors so far (each is retried with backoff).
    pub errors: AtomicU64,
    /// Relists (the first list included): after a 410 Gone or a broken watch.
    pub lists: AtomicU64,
    /// False while the last request of some watcher failed.
    pub up: AtomicBool,
}

impl ApiStatus {
    /// All eleven kinds listed at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed) >= WATCHED_KINDS
    }
}

/// Kinds watched: Pod, ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob, Service,
/// EndpointSlice, Namespace, Node.
pub const WATCHED_KINDS: u64 = 11;

/// What identifies an object within its kind, and a stand-in carrying only that, to delete
/// it when a relist shows it gone.
fn identity<K: Resource + Default>(object: &K) -> (String, String, K) {
    let meta = object.meta();
    let mut stub = K::default();
    *stub.meta_mut() = ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectMeta::default()
    };
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
        stub,
    )
}

fn apply(store: &SharedStore, change: Change) {
    store
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .apply(change);
}

/// Watches one kind until the task is aborted.
async fn watch_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(K) -> Object,
    store: SharedStore,
    status: Arc<ApiStatus>,
) where
    K: Resource + Clone + Default + DeserializeOwned + Debug + Send + 'static,
{
    let kind = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("?");
    // What this watcher put in the store, to remove what a relist no longer shows.
    let mut known: HashMap<(String, String), K> = HashMap::new();
    let mut listing: HashMap<(String, String), K> = HashMap::new();
    let mut synced_once = false;
    let stream = watcher::watcher(api, config).default_backoff();
    futures_util::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::Init) => {
                listing.clear();
                status.lists.fetch_add(1, Ordering::Relaxed);
            }
            Ok(WatchEvent::InitApply(object)) => {
                status.up.store(true, Ordering::Relaxed);
                let (ns, name, stub) = identity(&object);
                listing.insert((ns, name), stub);
                apply(&store, Change::Applied(wrap(object)));
            }
            Ok(WatchEvent::InitDone) => {
                status.up.store(true, Ordering::Relaxed);
                for (key, stub) in known.drain() {
                    if !listing.contains_key(&key) {
                        apply(&store, Change::Deleted(wrap(stub)));
                    }
                }
                known = std::mem::take(&mut listing);
                if !synced_once {
                    synced_once = true;
                    status.synced.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(kind, objects = known.len(), "Kubernetes watch synced");
                }
            }
            Ok(WatchEvent::Apply(object)) => {
                status.up.store(true, Ordering::Relaxed);
                let (ns, name, stub) = identity(&object);
                known.insert((ns, name), stub);
                apply(&store, Change::Applied(wrap(object)));
            }
            Ok(WatchEvent::Delete(object)) => {
                let (ns, name, _) = identity(&object);
                known.remove(&(ns, name));
                apply(&store, Change::Deleted(wrap(object)));
            }
            Err(err) => {
                let first = status.up.swap(false, Ordering::Relaxed);
                status.errors.fetch_add(1, Ordering::Relaxed);
                if first || status.errors.load(Ordering::Relaxed) == 1 {
                    tracing::warn!(kind, error = %err, "Kubernetes API unavailable; running on what is known, retrying with backoff");
                }
            }
        }
    }
}

fn spawn<K>(
    client: &Client,
    config: watcher::Config,
    wrap: fn(K) -> Object,
    store: &SharedStore,
    status: &Arc<ApiStatus>,
) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Default
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    tokio::spawn(watch_kind(
        Api::<K>::all(client.clone()),
        config,
        wrap,
        store.clone(),
        status.clone(),
    ))
}

/// Starts one watcher per kind. Pods are those scheduled to `node` (all pods when `None`).
/// Abort the handles to stop.
pub fn spawn_watchers(
    client: Client,
    node: Option<&str>,
    store: SharedStore,
    status: Arc<ApiStatus>,
) -> Vec<JoinHandle<()>> {
    let all = watcher::Config::default();
    let pods = match node {
        Some(node) => watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        None => watcher::Config::default(),
    };
    let (c, s, st) = (&client, &store, &status);
    vec![
        spawn::<Pod>(c, pods, |o| Object::Pod(Box::new(o)), s, st),
        spawn::<ReplicaSet>(c, all.clone(), |o| Object::ReplicaSet(Box::new(o)), s, st),
        spawn::<Deployment>(c, all.clone(), |o| Object::Deployment(Box::new(o)), s, st),
        spawn::<StatefulSet>(c, all.clone(), |o| Object::StatefulSet(Box::new(o)), s, st),
        spawn::<DaemonSet>(c, all.clone(), |o| Object::DaemonSet(Box::new(o)), s, st),
        spawn::<Job>(c, all.clone(), |o| Object::Job(Box::new(o)), s, st),
        spawn::<CronJob>(c, all.clone(), |o| Object::CronJob(Box::new(o)), s, st),
        spawn::<Service>(c, all.clone(), |o| Object::Service(Box::new(o)), s, st),
        spawn::<EndpointSlice>(
            c,
            all.clone(),
            |o| Object::EndpointSlice(Box::new(o)),
            s,
            st,
        ),
        spawn::<Namespace>(c, all.clone(), |o| Object::Namespace(Box::new(o)), s, st),
        spawn::<Node>(c, all, |o| Object::Node(Box::new(o)), s, st),
    ]
}
