//! The cluster as Nightjar needs it: a compact index of pods, their owners, services,
//! endpoints, namespaces and nodes, kept current by [`Change`]s, queried on the hot path.
//!
//! Full API objects are large (a Pod is several KiB of JSON); what is kept here is only what
//! attribution needs, so a node with many pods stays within a small, predictable footprint.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use nightjar_core::{PeerIdentity, WorkloadRef};

use crate::objects::{Change, Object};

/// Namespace and name.
pub type ObjectKey = (Arc<str>, Arc<str>);

/// An owner reference: kind and name (same namespace).
pub type KindName = (Arc<str>, Arc<str>);

/// Label keys and values are interned: most are shared by many pods (`app`, its value, the
/// template hash).
type Labels = Box<[(Arc<str>, Arc<str>)]>;

/// One container of a pod spec, with what its status says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEntry {
    pub name: Arc<str>,
    pub image: Arc<str>,
    /// The runtime's container id (64 hex, scheme stripped), once the container started.
    pub id: Option<Arc<str>>,
    /// CPU in millicores and memory in bytes; 0 when not set.
    pub cpu_request_millis: u64,
    pub cpu_limit_millis: u64,
    pub memory_request_bytes: u64,
    pub memory_limit_bytes: u64,
}

/// A pod, reduced to what attribution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub uid: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub node: Option<Arc<str>>,
    labels: Labels,
    /// The controller owner reference: (kind, name).
    pub owner: Option<KindName>,
    pub ips: Box<[IpAddr]>,
    /// The Ready condition is True.
    pub ready: bool,
    pub host_network: bool,
    pub containers: Box<[ContainerEntry]>,
    /// Learned from the container runtime (CRI), not the API or the metadata file: no
    /// owner, IP or readiness yet.
    pub from_runtime: bool,
}

impl PodEntry {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    fn matches(&self, selector: &[(Arc<str>, Arc<str>)]) -> bool {
        !selector.is_empty() && selector.iter().all(|(k, v)| self.label(k) == Some(&**v))
    }
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    /// `None`: a service without selector (endpoints managed by hand).
    selector: Option<Labels>,
    ips: Box<[IpAddr]>,
}

#[derive(Debug, Clone)]
struct SliceEntry {
    service: ObjectKey,
    /// (target pod uid or name, ready)
    endpoints: Vec<(Option<Arc<str>>, bool)>,
    /// Endpoint addresses with the pod name they belong to.
    addresses: Vec<(IpAddr, Arc<str>)>,
}

/// Sizes of the index, for metrics and the memory benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub pods: usize,
    pub services: usize,
    pub endpoint_slices: usize,
    pub controllers: usize,
    pub nodes: usize,
    pub namespaces: usize,
}

/// The index. Every change bumps [`generation`](Self::generation), so caches built from it
/// know when to rebuild.
#[derive(Debug, Default)]
pub struct ClusterStore {
    pods: HashMap<Arc<str>, PodEntry>,
    pod_names: HashMap<ObjectKey, Arc<str>>,
    pod_ips: HashMap<IpAddr, Arc<str>>,
    containers: HashMap<Arc<str>, Arc<str>>,
    /// ReplicaSets and Jobs with their controller owner; Deployments, StatefulSets,
    /// DaemonSets and CronJobs (owner `None`): key (kind, namespace, name).
    controllers: HashMap<(&'static str, ObjectKey), Option<KindName>>,
    services: HashMap<ObjectKey, ServiceEntry>,
    service_ips: HashMap<IpAddr, ObjectKey>,
    slices: HashMap<ObjectKey, SliceEntry>,
    /// service -> its slices
    service_slices: HashMap<ObjectKey, Vec<ObjectKey>>,
    /// endpoint target (pod uid or name) -> services listing it, with how many slices do
    target_services: HashMap<Arc<str>, Vec<(ObjectKey, u32)>>,
    /// Endpoint addresses (pods anywhere in the cluster) -> (namespace, pod name), slice
    endpoint_ips: HashMap<IpAddr, ObjectKey>,
    /// namespace -> its services
    namespace_services: HashMap<Arc<str>, HashSet<Arc<str>>>,
    namespaces: HashSet<Arc<str>>,
    nodes: HashMap<Arc<str>, Box<[IpAddr]>>,
    node_ips: HashMap<IpAddr, Arc<str>>,
    /// One shared copy of each namespace and name string.
    strings: HashSet<Arc<str>>,
    generation: u64,
}

/// A Kubernetes quantity as millicores (`cpu: 250m`, `cpu: 2`) or bytes (`memory: 64Mi`).
pub fn parse_quantity(text: &str, millis: bool) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    let base = value * factor;
    Some(if millis { base * 1000.0 } else { base }.round() as u64)
}

fn is_from_runtime(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(crate::cri::RUNTIME_SOURCE))
}

/// `containerd://<id>` -> `<id>`.
fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

impl ClusterStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bumped on every change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Nothing known: no pods, services or nodes (no metadata source, or not synced yet).
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.services.is_empty() && self.nodes.is_empty()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            pods: self.pods.len(),
            services: self.services.len(),
            endpoint_slices: self.slices.len(),
            controllers: self.controllers.len(),
            nodes: self.nodes.len(),
            namespaces: self.namespaces.len(),
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(existing) = self.strings.get(s) {
            return existing.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    fn labels(&mut self, map: Option<&std::collections::BTreeMap<String, String>>) -> Labels {
        map.map(|m| {
            m.iter()
                .map(|(k, v)| (self.intern(k), self.intern(v)))
                .collect()
        })
        .unwrap_or_default()
    }

    fn key(&mut self, namespace: Option<&str>, name: Option<&str>) -> ObjectKey {
        (
            self.intern(namespace.unwrap_or("default")),
            self.intern(name.unwrap_or("")),
        )
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        self.generation += 1;
        match change {
            Change::Applied(object) => self.upsert(object),
            Change::Deleted(object) => self.delete(&object),
        }
    }

    /// Forgets everything (a relist replaces the whole state).
    pub fn clear(&mut self) {
        let generation = self.generation + 1;
        *self = Self::default();
        self.generation = generation;
    }

    fn upsert(&mut self, object: Object) {
        match object {
            Object::Pod(pod) => self.upsert_pod(&pod),
            Object::ReplicaSet(o) => {
                let owner = self.controller_owner(o.metadata.owner_references.as_deref());
                let key = self.key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref());
                self.controllers.insert(("ReplicaSet", key), owner);
            }
            Object::Job(o) => {
                let owner = self.controller_owner(o.metadata.owner_references.as_deref());
                let key = self.key(o.metadata.namespace.as_deref(), o.metadata.name.as_deref());
                self.controllers.insert(("Job", key), owner);
            }
            Object::Deployment(o) => self.top("Deployment", &o.metadata),
            Object::StatefulSet(o) => self.top("StatefulSet", &o.metadata),
            Object::DaemonSet(o) => self.top("DaemonSet", &o.metadata),
            Object::CronJob(o) => self.top("CronJob", &o.metadata),
            Object::Service(svc) => self.upsert_service(&svc),
            Object::EndpointSlice(slice) => self.upsert_slice(&slice),
            Object::Namespace(ns) => {
                let name = self.intern(ns.metadata.name.as_deref().unwrap_or(""));
                self.namespaces.insert(name);
            }
            Object::Node(node) => {
                let name = self.intern(node.metadata.name.as_deref().unwrap_or(""));
                self.remove_node(&name);
                let ips: Box<[IpAddr]> = node
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.address.parse().ok())
                    .collect();
                for ip in ips.iter() {
                    self.node_ips.insert(*ip, name.clone());
                }
                self.nodes.insert(name, ips);
            }
        }
    }

    fn top(
        &mut self,
        kind: &'static str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        let key = self.key(meta.namespace.as_deref(), meta.name.as_deref());
        self.controllers.insert((kind, key), None);
    }

    fn controller_owner(
        &mut self,
        refs: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]>,
    ) -> Option<KindName> {
        let refs = refs?;
        let owner = refs
            .iter()
            .find(|r| r.controller == Some(true))
            .or_else(|| refs.first())?;
        Some((self.intern(&owner.kind), self.intern(&owner.name)))
    }

    fn delete(&mut self, object: &Object) {
        let meta = object.metadata();
        let key = self.key(meta.namespace.as_deref(), meta.name.as_deref());
        match object {
            Object::Pod(pod) => {
                let uid = pod
                    .metadata
                    .uid
                    .as_deref()
                    .map(Arc::from)
                    .or_else(|| self.pod_names.get(&key).cloned());
                if let Some(uid) = uid {
                    // The runtime forgetting a sandbox does not remove what the API knows.
                    let keep = is_from_runtime(pod)
                        && self.pods.get(&uid).is_some_and(|p| !p.from_runtime);
                    if !keep {
                        self.remove_pod(&uid);
                    }
                }
            }
            Object::ReplicaSet(_) => {
                self.controllers.remove(&("ReplicaSet", key));
            }
            Object::Job(_) => {
                self.controllers.remove(&("Job", key));
            }
            Object::Deployment(_) => {
                self.controllers.remove(&("Deployment", key));
            }
            Object::StatefulSet(_) => {
                self.controllers.remove(&("StatefulSet", key));
            }
            Object::DaemonSet(_) => {
                self.controllers.remove(&("DaemonSet", key));
            }
            Object::CronJob(_) => {
                self.controllers.remove(&("CronJob", key));
            }
            Object::Service(_) => self.remove_service(&key),
            Object::EndpointSlice(_) => self.remove_slice(&key),
            Object::Namespace(_) => {
                self.namespaces.remove(&key.1);
            }
            Object::Node(_) => self.remove_node(&key.1),
        }
    }

    fn remove_node(&mut self, name: &Arc<str>) {
        if let Some(ips) = self.nodes.remove(name) {
            for ip in ips.iter() {
                if self.node_ips.get(ip) == Some(name) {
                    self.node_ips.remove(ip);
                }
            }
        }
    }

    fn upsert_pod(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let uid = self.intern(uid);
        let from_runtime = is_from_runtime(pod);
        // What the API or the file said about a pod wins over what the runtime says.
        if from_runtime && self.pods.get(&uid).is_some_and(|p| !p.from_runtime) {
            return;
        }
        self.remove_pod(&uid);
        let (namespace, name) = self.key(
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        );
        let owner = self.controller_owner(pod.metadata.owner_references.as_deref());
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
        {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let statuses = status.and_then(|s| s.container_statuses.as_ref());
        let mut containers = Vec::new();
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            let resources = c.resources.as_ref();
            let quantity = |which: Option<
                &std::collections::BTreeMap<
                    String,
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                >,
            >,
                            key: &str,
                            millis: bool| {
                which
                    .and_then(|m| m.get(key))
                    .and_then(|q| parse_quantity(&q.0, millis))
                    .unwrap_or(0)
            };
            let requests = resources.and_then(|r| r.requests.as_ref());
            let limits = resources.and_then(|r| r.limits.as_ref());
            let id = statuses
                .into_iter()
                .flatten()
                .find(|s| s.name == c.name)
                .and_then(|s| s.container_id.as_deref())
                .map(|id| Arc::from(strip_scheme(id)));
            containers.push(ContainerEntry {
                name: self.intern(&c.name),
                image: self.intern(c.image.as_deref().unwrap_or("")),
                id,
                cpu_request_millis: quantity(requests, "cpu", true),
                cpu_limit_millis: quantity(limits, "cpu", true),
                memory_request_bytes: quantity(requests, "memory", false),
                memory_limit_bytes: quantity(limits, "memory", false),
            });
        }
        let node = spec
            .and_then(|s| s.node_name.as_deref())
            .map(|n| self.intern(n));
        let entry = PodEntry {
            uid: uid.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            node,
            labels: self.labels(pod.metadata.labels.as_ref()),
            owner,
            ips: ips.into_boxed_slice(),
            ready,
            host_network,
            containers: containers.into_boxed_slice(),
            from_runtime,
        };
        // The newest pod with an IP owns it: a replacement that reuses an address takes it
        // over, and the old pod's later deletion leaves it alone (see remove_pod).
        if !host_network {
            for ip in entry.ips.iter() {
                self.pod_ips.insert(*ip, uid.clone());
            }
        }
        for c in entry.containers.iter() {
            if let Some(id) = &c.id {
                self.containers.insert(id.clone(), uid.clone());
            }
        }
        self.pod_names.insert((namespace, name), uid.clone());
        self.pods.insert(uid, entry);
    }

    fn remove_pod(&mut self, uid: &Arc<str>) {
        let Some(old) = self.pods.remove(uid) else {
            return;
        };
        for ip in old.ips.iter() {
            if self.pod_ips.get(ip) == Some(uid) {
                self.pod_ips.remove(ip);
            }
        }
        for c in old.containers.iter() {
            if let Some(id) = &c.id {
                if self.containers.get(id) == Some(uid) {
                    self.containers.remove(id);
                }
            }
        }
        let key = (old.namespace.clone(), old.name.clone());
        if self.pod_names.get(&key) == Some(uid) {
            self.pod_names.remove(&key);
        }
    }

    fn upsert_service(&mut self, svc: &Service) {
        let key = self.key(
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        );
        self.remove_service(&key);
        let spec = svc.spec.as_ref();
        let mut ips: Vec<IpAddr> = spec
            .and_then(|s| s.cluster_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if let Some(ip) = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
        {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        for ip in &ips {
            self.service_ips.insert(*ip, key.clone());
        }
        let selector = spec
            .and_then(|s| s.selector.as_ref())
            .map(|m| self.labels(Some(m)));
        self.namespace_services
            .entry(key.0.clone())
            .or_default()
            .insert(key.1.clone());
        self.services.insert(
            key,
            ServiceEntry {
                selector,
                ips: ips.into_boxed_slice(),
            },
        );
    }

    fn remove_service(&mut self, key: &ObjectKey) {
        if let Some(names) = self.namespace_services.get_mut(&key.0) {
            names.remove(&key.1);
        }
        if let Some(old) = self.services.remove(key) {
            for ip in old.ips.iter() {
                if self.service_ips.get(ip) == Some(key) {
                    self.service_ips.remove(ip);
                }
            }
        }
    }

    fn upsert_slice(&mut self, slice: &EndpointSlice) {
        let key = self.key(
            slice.metadata.namespace.as_deref(),
            slice.metadata.name.as_deref(),
        );
        self.remove_slice(&key);
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            return;
        };
        let service = (key.0.clone(), self.intern(service));
        let mut endpoints = Vec::new();
        let mut addresses = Vec::new();
        for e in slice.endpoints.iter().flatten() {
            // The API says an unset ready condition means ready.
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let pod_ref = e
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"));
            let target = pod_ref
                .and_then(|t| t.uid.as_deref().or(t.name.as_deref()))
                .map(|t| self.intern(t));
            if let Some(name) = pod_ref.and_then(|t| t.name.as_deref()) {
                let name = self.intern(name);
                for address in &e.addresses {
                    if let Ok(ip) = address.parse() {
                        addresses.push((ip, name.clone()));
                    }
                }
            }
            if let Some(target) = &target {
                // Most pods back one service: a short list, not a map per pod.
                let services = self.target_services.entry(target.clone()).or_default();
                match services.iter_mut().find(|(s, _)| *s == service) {
                    Some((_, count)) => *count += 1,
                    None => services.push((service.clone(), 1)),
                }
            }
            endpoints.push((target, ready));
        }
        for (ip, name) in &addresses {
            self.endpoint_ips.insert(*ip, (key.0.clone(), name.clone()));
        }
        self.service_slices
            .entry(service.clone())
            .or_default()
            .push(key.clone());
        self.slices.insert(
            key,
            SliceEntry {
                service,
                endpoints,
                addresses,
            },
        );
    }

    fn remove_slice(&mut self, key: &ObjectKey) {
        let Some(old) = self.slices.remove(key) else {
            return;
        };
        if let Some(list) = self.service_slices.get_mut(&old.service) {
            list.retain(|k| k != key);
            if list.is_empty() {
                self.service_slices.remove(&old.service);
            }
        }
        for (target, _) in &old.endpoints {
            let Some(target) = target else { continue };
            if let Some(services) = self.target_services.get_mut(target) {
                if let Some((_, count)) = services.iter_mut().find(|(s, _)| *s == old.service) {
                    *count -= 1;
                }
                services.retain(|(_, count)| *count > 0);
                if services.is_empty() {
                    self.target_services.remove(target);
                }
            }
        }
        // An address another slice took over since stays with it.
        for (ip, name) in &old.addresses {
            if self
                .endpoint_ips
                .get(ip)
                .is_some_and(|(ns, pod)| *ns == key.0 && pod == name)
            {
                self.endpoint_ips.remove(ip);
            }
        }
    }

    fn slices_of<'a>(&'a self, service: &ObjectKey) -> impl Iterator<Item = &'a SliceEntry> + 'a {
        self.service_slices
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.get(k))
    }

    /// A pod by uid.
    pub fn pod(&self, uid: &str) -> Option<&PodEntry> {
        self.pods.get(uid)
    }

    /// The pod running a container (runtime id, 64 hex).
    pub fn pod_of_container(&self, id: &str) -> Option<&PodEntry> {
        self.containers.get(id).and_then(|uid| self.pods.get(uid))
    }

    pub fn pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.pods.values()
    }

    /// The workload a pod belongs to: its controller's controller where there is one
    /// (ReplicaSet -> Deployment, Job -> CronJob), else its controller, else the pod itself.
    /// A ReplicaSet not (yet) known is assumed to be a Deployment's when the pod carries a
    /// `pod-template-hash` label that ends the ReplicaSet's name, as Deployments name them.
    pub fn workload_of(&self, pod: &PodEntry) -> WorkloadRef {
        let Some((kind, name)) = &pod.owner else {
            return WorkloadRef {
                kind: Arc::from("Pod"),
                name: pod.name.clone(),
            };
        };
        let owned_kind: Option<&'static str> = match &**kind {
            "ReplicaSet" => Some("ReplicaSet"),
            "Job" => Some("Job"),
            _ => None,
        };
        if let Some(owned_kind) = owned_kind {
            let key = (pod.namespace.clone(), name.clone());
            match self.controllers.get(&(owned_kind, key)) {
                Some(Some((top_kind, top_name))) => {
                    return WorkloadRef {
                        kind: top_kind.clone(),
                        name: top_name.clone(),
                    }
                }
                Some(None) => {}
                None if owned_kind == "ReplicaSet" => {
                    if let Some(hash) = pod.label("pod-template-hash") {
                        if let Some(deployment) = name.strip_suffix(&format!("-{hash}")) {
                            return WorkloadRef {
                                kind: Arc::from("Deployment"),
                                name: Arc::from(deployment),
                            };
                        }
                    }
                }
                None => {}
            }
        }
        WorkloadRef {
            kind: kind.clone(),
            name: name.clone(),
        }
    }

    /// Services the pod backs: those whose EndpointSlices name it, else (for services with
    /// no slices known) those whose selector matches its labels.
    pub fn services_of(&self, pod: &PodEntry) -> Vec<ObjectKey> {
        let mut out: Vec<ObjectKey> = Vec::new();
        for target in [&pod.uid, &pod.name] {
            for service in self
                .target_services
                .get(target)
                .into_iter()
                .flatten()
                .map(|(s, _)| s)
            {
                if service.0 == pod.namespace && !out.contains(service) {
                    out.push(service.clone());
                }
            }
        }
        for name in self
            .namespace_services
            .get(&pod.namespace)
            .into_iter()
            .flatten()
        {
            let key = (pod.namespace.clone(), name.clone());
            if self.service_slices.contains_key(&key) || out.contains(&key) {
                continue;
            }
            let selector = self.services.get(&key).and_then(|s| s.selector.as_deref());
            if selector.is_some_and(|s| pod.matches(s)) {
                out.push(key);
            }
        }
        out.sort();
        out
    }

    /// Ready endpoints of a service: from its EndpointSlices, else ready pods its selector
    /// matches.
    pub fn ready_endpoints(&self, service: &ObjectKey) -> usize {
        if self.service_slices.contains_key(service) {
            return self
                .slices_of(service)
                .map(|s| s.endpoints.iter().filter(|(_, r)| *r).count())
                .sum();
        }
        let Some(selector) = self
            .services
            .get(service)
            .and_then(|s| s.selector.as_deref())
        else {
            return 0;
        };
        self.pods
            .values()
            .filter(|p| p.namespace == service.0 && p.ready && p.matches(selector))
            .count()
    }

    /// Uids of the pods backing a service (listed in its slices, else matching its selector).
    pub fn members_of(&self, service: &ObjectKey) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        let sliced = self.service_slices.contains_key(service);
        for slice in self.slices_of(service) {
            for (target, _) in &slice.endpoints {
                let Some(target) = target else { continue };
                let uid = if self.pods.contains_key(target) {
                    Some(target.clone())
                } else {
                    self.pod_names
                        .get(&(service.0.clone(), target.clone()))
                        .cloned()
                };
                if let Some(uid) = uid {
                    if !out.contains(&uid) {
                        out.push(uid);
                    }
                }
            }
        }
        if !sliced {
            if let Some(selector) = self
                .services
                .get(service)
                .and_then(|s| s.selector.as_deref())
            {
                out.extend(
                    self.pods
                        .values()
                        .filter(|p| p.namespace == service.0 && p.matches(selector))
                        .map(|p| p.uid.clone()),
                );
            }
        }
        out
    }

    /// Is this endpoint of the service ready (by slice, else by the pod's own condition)?
    pub fn is_ready_endpoint(&self, service: &ObjectKey, pod: &PodEntry) -> bool {
        let mut listed = None;
        for slice in self.slices_of(service) {
            for (target, ready) in &slice.endpoints {
                if target
                    .as_deref()
                    .is_some_and(|t| t == &*pod.uid || t == &*pod.name)
                {
                    listed = Some(listed.unwrap_or(false) || *ready);
                }
            }
        }
        listed.unwrap_or(pod.ready)
    }

    /// What an address is: a pod (not host-network), a service's cluster IP, a node, or the
    /// world.
    pub fn identity(&self, ip: &IpAddr) -> PeerIdentity {
        if let Some(pod) = self.pod_ips.get(ip).and_then(|uid| self.pods.get(uid)) {
            return PeerIdentity::Pod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                workload: Some(self.workload_of(pod)),
            };
        }
        // A pod on another node: known from the EndpointSlices that list its address.
        if let Some((namespace, name)) = self.endpoint_ips.get(ip) {
            return PeerIdentity::Pod {
                namespace: namespace.clone(),
                name: name.clone(),
                workload: None,
            };
        }
        if let Some((namespace, name)) = self.service_ips.get(ip) {
            return PeerIdentity::Service {
                namespace: namespace.clone(),
                name: name.clone(),
            };
        }
        if let Some(node) = self.node_ips.get(ip) {
            return PeerIdentity::Node { name: node.clone() };
        }
        PeerIdentity::World
    }

    /// The service whose cluster IP this is.
    pub fn service_at(&self, ip: &IpAddr) -> Option<&ObjectKey> {
        self.service_ips.get(ip)
    }

    /// The pod at this IP (not host-network).
    pub fn pod_at(&self, ip: &IpAddr) -> Option<&PodEntry> {
        self.pod_ips.get(ip).and_then(|uid| self.pods.get(uid))
    }
}
