//! The Kubernetes objects Nightjar reads, as one enum, and how a change to one is described.
//!
//! Both sources feed the same [`ClusterStore`](crate::ClusterStore): the API watchers
//! (list/watch) and the static metadata file (objects as `kubectl get -o yaml` prints them).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One object of a kind Nightjar indexes.
#[derive(Debug, Clone)]
pub enum Object {
    Pod(Box<Pod>),
    ReplicaSet(Box<ReplicaSet>),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Namespace(Box<Namespace>),
    Node(Box<Node>),
}

/// The kinds, by their `kind` field.
pub const KINDS: &[&str] = &[
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Service",
    "EndpointSlice",
    "Namespace",
    "Node",
];

impl Object {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::ReplicaSet(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::ReplicaSet(_) => "ReplicaSet",
            Object::Deployment(_) => "Deployment",
            Object::StatefulSet(_) => "StatefulSet",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Job(_) => "Job",
            Object::CronJob(_) => "CronJob",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Namespace(_) => "Namespace",
            Object::Node(_) => "Node",
        }
    }

    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), for messages.
    pub fn describe(&self) -> String {
        let meta = self.metadata();
        let name = meta.name.as_deref().unwrap_or("<unnamed>");
        match meta.namespace.as_deref() {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }

    /// Decodes an object from a YAML/JSON value by its `kind`. `Ok(None)` for kinds Nightjar
    /// does not index (they are skipped, not errors).
    pub fn from_value(value: serde_json::Value) -> Result<Option<Self>, serde_json::Error> {
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        fn de<T: serde::de::DeserializeOwned>(
            v: serde_json::Value,
        ) -> Result<Box<T>, serde_json::Error> {
            serde_json::from_value(v).map(Box::new)
        }
        Ok(Some(match kind.as_str() {
            "Pod" => Object::Pod(de(value)?),
            "ReplicaSet" => Object::ReplicaSet(de(value)?),
            "Deployment" => Object::Deployment(de(value)?),
            "StatefulSet" => Object::StatefulSet(de(value)?),
            "DaemonSet" => Object::DaemonSet(de(value)?),
            "Job" => Object::Job(de(value)?),
            "CronJob" => Object::CronJob(de(value)?),
            "Service" => Object::Service(de(value)?),
            "EndpointSlice" => Object::EndpointSlice(de(value)?),
            "Namespace" => Object::Namespace(de(value)?),
            "Node" => Object::Node(de(value)?),
            _ => return Ok(None),
        }))
    }
}

/// A change to one object, as a watch reports it.
#[derive(Debug, Clone)]
pub enum Change {
    /// Added or modified: the object as it is now.
    Applied(Object),
    /// Deleted: the object's last state.
    Deleted(Object),
}
