//! Kubernetes context for Nightjar: container -> pod -> owner -> workload -> services, the
//! identity of remote addresses, and how important each pod is to each of its services.
//!
//! - [`objects`]: the kinds indexed and how a change to one is described ([`Change`]).
//! - [`store`]: [`ClusterStore`], the compact index every lookup reads.
//! - [`file`]: the static metadata file (objects as `kubectl get -o yaml` prints them), which
//!   stands in for the API without a cluster.
//! - [`importance`]: the pod importance score and its inputs (traffic shares, callers).
//! - [`watch`]: kube-rs watchers keeping the index current from the API (this node's pods).
//! - [`annotate`]: [`KubeAnnotator`], the pipeline transform.

pub mod annotate;
pub mod cri;
pub mod file;
pub mod importance;
pub mod objects;
pub mod resources;
pub mod rollup;
pub mod runtime_lookup;
pub mod store;
pub mod watch;

pub use annotate::{AnnotatorStats, KubeAnnotator, SharedStore};
pub use file::{load_metadata, parse_metadata, MetadataFileError};
pub use objects::{Change, Object};
pub use store::{ClusterStore, ObjectKey, PodEntry, StoreStats};
