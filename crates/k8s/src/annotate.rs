//! The Kubernetes transform: gives each event the pod, workload and services of its container
//! (with the pod's importance to each), and names the peer of network events.
//!
//! Lookups read the in-memory [`ClusterStore`]; a pod's context is built once and shared by
//! every event of that pod until the store changes or its importance is due for a refresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use nightjar_core::pipeline::Transform;
use nightjar_core::{
    ContainerInfo, Event, EventBody, PeerIdentity, PodContext, ServiceMembership, SockAddr,
    WorkloadRef,
};

use crate::importance::{importance, Callers, ImportanceInputs, TrafficShares};
use crate::store::{ClusterStore, ObjectKey, PodEntry};

/// The index, shared between the sources that change it (watchers, the metadata file) and the
/// transform that reads it.
pub type SharedStore = Arc<RwLock<ClusterStore>>;

/// How long a pod's context (and so its importance) is reused before it is rebuilt.
const CONTEXT_REFRESH: Duration = Duration::from_secs(5);

/// Counters of the transform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnotatorStats {
    /// Events from a container whose pod the metadata knows.
    pub resolved: u64,
    /// Events from a container (with an id or pod uid) the metadata does not know.
    pub unresolved: u64,
}

/// The context last found for one container (by the identity of its shared
/// `ContainerInfo`, which the cgroup resolver hands out once per cgroup).
#[derive(Debug)]
struct ContainerCache {
    /// Held so the address cannot be reused by another container while cached.
    container: Arc<ContainerInfo>,
    context: Option<(Arc<str>, Option<usize>, Arc<PodContext>)>,
    built: Duration,
    generation: u64,
}

/// Hashes a pointer-sized key (an `Arc` address) by multiplication: one instruction,
/// and addresses are already unique.
#[derive(Debug, Default, Clone, Copy)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type AddressMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<AddressHasher>>;

#[derive(Debug)]
struct CachedContext {
    context: Arc<PodContext>,
    built: Duration,
    generation: u64,
}

/// Attaches Kubernetes context to events.
#[derive(Debug)]
pub struct KubeAnnotator {
    store: SharedStore,
    contexts: HashMap<(Arc<str>, Option<usize>), CachedContext>,
    by_container: AddressMap<ContainerCache>,
    traffic: TrafficShares,
    callers: Callers,
    started: Instant,
    stats: AnnotatorStats,
    telemetry: Option<Arc<nightjar_core::telemetry::Telemetry>>,
    /// Asks the container runtime about a container nobody described yet.
    lookup: Option<RuntimeLookup>,
    /// When each unknown container was last looked up (bounded).
    looked_up: HashMap<String, Duration>,
    published: PublishedPods,
    pruned: Duration,
}

/// The function behind a [`RuntimeLookup`]: container id in, its pod (if any) out.
pub type LookupFn = dyn FnMut(&str) -> Option<crate::objects::Object> + Send;

/// A synchronous, time-bounded question to the container runtime: the pod of a container.
pub struct RuntimeLookup(pub Box<LookupFn>);

impl std::fmt::Debug for RuntimeLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeLookup")
    }
}

/// The latest context of every pod that had events: what `GET /v1/kubernetes/pods` shows.
pub type PublishedPods = Arc<std::sync::Mutex<HashMap<Arc<str>, Arc<PodContext>>>>;

/// Pods gone from the index leave the published list this often.
const PUBLISHED_PRUNE: Duration = Duration::from_secs(30);

/// An unknown container is asked about at most this often.
const LOOKUP_RETRY: Duration = Duration::from_secs(5);

/// `"<pod uid>"` as it appears in systemd-style cgroup names (`_` for `-`) or plainly.
fn normalize_uid(uid: &str) -> String {
    uid.replace('_', "-")
}

fn workload_label(namespace: &str, workload: &WorkloadRef) -> String {
    format!("{namespace}/{}/{}", workload.kind, workload.name)
}

fn sockaddr_ip(addr: &SockAddr) -> Option<IpAddr> {
    match addr {
        SockAddr::Inet { addr, .. } | SockAddr::Inet6 { addr, .. } => Some(*addr),
        _ => None,
    }
}

impl KubeAnnotator {
    pub fn new(store: ClusterStore) -> Self {
        Self::shared(Arc::new(RwLock::new(store)))
    }

    /// A transform over a store that other sources (the API watchers) keep current.
    pub fn shared(store: SharedStore) -> Self {
        Self {
            store,
            contexts: HashMap::new(),
            by_container: AddressMap::default(),
            traffic: TrafficShares::new(Duration::from_secs(60), 65_536),
            callers: Callers::new(Duration::from_secs(600), 100_000),
            started: Instant::now(),
            stats: AnnotatorStats::default(),
            telemetry: None,
            lookup: None,
            looked_up: HashMap::new(),
            published: PublishedPods::default(),
            pruned: Duration::ZERO,
        }
    }

    /// The pods' latest contexts (with importance), for the API.
    pub fn published(&self) -> PublishedPods {
        self.published.clone()
    }

    /// Lets a container's first events wait (briefly: the lookup bounds it) for its pod from
    /// the container runtime instead of going out bare.
    pub fn with_runtime_lookup(mut self, lookup: RuntimeLookup) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// Asks the runtime about an unknown container in a pod's cgroup; true when its pod was
    /// added to the store.
    fn look_up(&mut self, container: &ContainerInfo, now: Duration) -> bool {
        let (Some(lookup), Some(id)) = (self.lookup.as_mut(), container.id.as_deref()) else {
            return false;
        };
        if container.pod_uid.is_none() {
            return false;
        }
        if let Some(at) = self.looked_up.get(id) {
            if now.saturating_sub(*at) < LOOKUP_RETRY {
                return false;
            }
        }
        if self.looked_up.len() >= 4096 {
            self.looked_up.clear();
        }
        self.looked_up.insert(id.to_string(), now);
        match (lookup.0)(id) {
            Some(object) => {
                self.store
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply(crate::objects::Change::Applied(object));
                true
            }
            None => false,
        }
    }

    /// Publishes the index size and unresolved containers in the agent's metrics.
    pub fn with_telemetry(mut self, telemetry: Arc<nightjar_core::telemetry::Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The shared index (sources and tests change it through this).
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    fn read(&self) -> RwLockReadGuard<'_, ClusterStore> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> AnnotatorStats {
        self.stats
    }

    /// The service map's edges seen recently: (caller `namespace/Kind/name`, service).
    pub fn edges(&self, now: Duration) -> Vec<(String, ObjectKey)> {
        self.callers.edges(now)
    }

    /// The pod (and index of the container in it) an event's container belongs to.
    fn pod_of(
        store: &ClusterStore,
        container: &ContainerInfo,
    ) -> Option<(Arc<str>, Option<usize>)> {
        if let Some(id) = &container.id {
            if let Some(pod) = store.pod_of_container(id) {
                let index = pod
                    .containers
                    .iter()
                    .position(|c| c.id.as_deref() == Some(id.as_str()));
                return Some((pod.uid.clone(), index));
            }
        }
        let uid = normalize_uid(container.pod_uid.as_deref()?);
        store.pod(&uid).map(|pod| (pod.uid.clone(), None))
    }

    fn context(
        &mut self,
        store: &ClusterStore,
        uid: &Arc<str>,
        container: Option<usize>,
        now: Duration,
    ) -> Option<Arc<PodContext>> {
        let generation = store.generation();
        let key = (uid.clone(), container);
        if let Some(cached) = self.contexts.get(&key) {
            if cached.generation == generation && now.saturating_sub(cached.built) < CONTEXT_REFRESH
            {
                return Some(cached.context.clone());
            }
        }
        let pod = store.pod(uid)?;
        let context = Arc::new(self.build(store, pod, container, now));
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone(), context.clone());
        if self.contexts.len() >= 4 * store.stats().pods.max(1024) {
            self.contexts.clear();
        }
        self.contexts.insert(
            key,
            CachedContext {
                context: context.clone(),
                built: now,
                generation,
            },
        );
        Some(context)
    }

    fn build(
        &self,
        store: &ClusterStore,
        pod: &PodEntry,
        container: Option<usize>,
        now: Duration,
    ) -> PodContext {
        let workload = store.workload_of(pod);
        let services = store
            .services_of(pod)
            .into_iter()
            .map(|service| {
                let members = store.members_of(&service);
                let inputs = ImportanceInputs {
                    ready: store.is_ready_endpoint(&service, pod),
                    ready_endpoints: store.ready_endpoints(&service),
                    traffic_share: self.traffic.share(&pod.uid, &members, now),
                    callers: self.callers.count(&service, now),
                };
                ServiceMembership {
                    namespace: service.0.clone(),
                    name: service.1.clone(),
                    importance: importance(inputs),
                }
            })
            .collect();
        let spec = container.and_then(|i| pod.containers.get(i));
        PodContext {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            container: spec.map(|c| c.name.clone()),
            image: spec.map(|c| c.image.clone()),
            node: pod.node.clone(),
            owner: pod.owner.as_ref().map(|(kind, name)| WorkloadRef {
                kind: kind.clone(),
                name: name.clone(),
            }),
            workload,
            services,
        }
    }

    /// The remote address of a network event.
    fn remote_of(event: &Event) -> Option<IpAddr> {
        match &event.body {
            EventBody::TcpEstablished(c) | EventBody::TcpClose(c) => Some(c.remote.addr),
            EventBody::SockConnect(op) | EventBody::SockAccept(op) => {
                op.remote.as_ref().and_then(sockaddr_ip)
            }
            EventBody::Flow(f) => Some(match f.socket_end {
                Some("destination") => f.source.addr,
                _ => f.destination.addr,
            }),
            _ => None,
        }
    }

    /// The pod context of a container: from the per-container cache while the store has not
    /// changed and the importance is fresh, else resolved again. One hash lookup on the hot
    /// path.
    fn container_context(
        &mut self,
        store: &ClusterStore,
        container: &Arc<ContainerInfo>,
        now: Duration,
    ) -> Option<(Arc<str>, Option<usize>, Arc<PodContext>)> {
        let key = Arc::as_ptr(container) as usize;
        let generation = store.generation();
        if let Some(cached) = self.by_container.get(&key) {
            if Arc::ptr_eq(&cached.container, container)
                && cached.generation == generation
                && now.saturating_sub(cached.built) < CONTEXT_REFRESH
            {
                return cached.context.clone();
            }
        }
        let resolved = Self::pod_of(store, container).and_then(|(uid, index)| {
            self.context(store, &uid, index, now)
                .map(|context| (uid, index, context))
        });
        if self.by_container.len() >= 4 * store.stats().pods.max(1024) {
            self.by_container.clear();
        }
        self.by_container.insert(
            key,
            ContainerCache {
                container: container.clone(),
                context: resolved.clone(),
                built: now,
                generation,
            },
        );
        resolved
    }

    /// Annotates one event; `now` is any monotonic clock.
    pub fn annotate(&mut self, event: &mut Event, now: Duration) {
        let shared = self.store.clone();
        let mut store = shared.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        if let Some(container) = &event.container {
            found = self.container_context(&store, container, now);
            if found.is_none() && self.lookup.is_some() {
                // Not known yet: ask the runtime, then look again.
                drop(store);
                let added = self.look_up(container, now);
                store = shared.read().unwrap_or_else(|e| e.into_inner());
                if added {
                    found = self.container_context(&store, container, now);
                }
            }
            if found.is_none() && (container.id.is_some() || container.pod_uid.is_some()) {
                self.stats.unresolved += 1;
            }
        }
        let network = matches!(
            event.body,
            EventBody::TcpEstablished(_)
                | EventBody::TcpClose(_)
                | EventBody::SockConnect(_)
                | EventBody::SockAccept(_)
                | EventBody::Flow(_)
        );
        if !network {
            if let Some((_, _, context)) = found {
                self.stats.resolved += 1;
                event.kubernetes = Some(context);
            }
            return;
        }
        // A flow nobody's socket explains (seen on a pod's host-side veth): the pod at
        // either address.
        let mut flow_peer = None;
        if let (None, EventBody::Flow(f)) = (&found, &mut event.body) {
            let at_source = store
                .pod_at(&f.source.addr)
                .map(|p| (p, f.destination.addr, "source"));
            let at_destination = || {
                store
                    .pod_at(&f.destination.addr)
                    .map(|p| (p, f.source.addr, "destination"))
            };
            if let Some((pod, peer, end)) = at_source.or_else(at_destination) {
                let uid = pod.uid.clone();
                found = self
                    .context(&store, &uid, None, now)
                    .map(|context| (uid, None, context));
                flow_peer = Some(peer);
                // The pod's end, as a socket's would be: sent from it or received by it.
                f.socket_end = Some(end);
            }
        }
        let remote = flow_peer.or_else(|| Self::remote_of(event));
        if let (Some(ip), false) = (remote, store.is_empty()) {
            event.peer = Some(Arc::new(store.identity(&ip)));
        }
        let Some((uid, _, context)) = found else {
            return;
        };
        self.stats.resolved += 1;
        if let EventBody::Flow(f) = &event.body {
            self.traffic.add(&uid, f.new_bytes, now);
        }
        if let (EventBody::TcpEstablished(c), Some(ip)) = (&event.body, remote) {
            if c.direction == "outbound" {
                let caller = workload_label(&context.namespace, &context.workload);
                for service in Self::services_at(&store, &ip) {
                    self.callers.record(service, caller.clone(), now);
                }
            }
        }
        event.kubernetes = Some(context);
    }

    /// The services an address stands for: a cluster IP's, or those a pod at it backs.
    fn services_at(store: &ClusterStore, ip: &IpAddr) -> Vec<ObjectKey> {
        if let Some(service) = store.service_at(ip) {
            return vec![service.clone()];
        }
        match store.pod_at(ip) {
            Some(pod) => store.services_of(pod),
            None => Vec::new(),
        }
    }

    /// The peer's identity (exposed for tests and the API).
    pub fn identity(&self, ip: &IpAddr) -> PeerIdentity {
        self.read().identity(ip)
    }
}

impl Transform for KubeAnnotator {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn apply(&mut self, event: &mut Event) -> bool {
        let now = self.started.elapsed();
        self.annotate(event, now);
        true
    }

    fn end_batch(&mut self) {
        let now = self.started.elapsed();
        if now.saturating_sub(self.pruned) >= PUBLISHED_PRUNE {
            self.pruned = now;
            let store = self.read();
            self.published
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|uid, _| store.pod(uid).is_some());
        }
        if let Some(t) = &self.telemetry {
            t.kubernetes_pods.set(self.read().stats().pods as i64);
            let counted = t.kubernetes_unresolved.get();
            t.kubernetes_unresolved
                .inc_by(self.stats.unresolved.saturating_sub(counted));
        }
    }
}
