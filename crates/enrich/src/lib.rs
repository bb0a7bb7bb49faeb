//! Nightjar's enrichment transform: who did it, and where it ran.
//!
//! Kernel records carry little context: a tgid, a cgroup id. This crate turns them into the
//! [`ProcessInfo`](nightjar_core::ProcessInfo) of the process, its parent and ancestors, and the
//! [`ContainerInfo`](nightjar_core::ContainerInfo) of its cgroup, without a syscall per event:
//!
//! - [`ProcessCache`] follows exec, fork and exit events (seeded once from `/proc` at start),
//!   bounded and reaped a grace period after exit.
//! - [`CgroupResolver`] maps cgroup ids to cgroup v2 paths by walking the cgroup2 tree on a
//!   miss, throttled, with a negative cache.
//! - [`parse_cgroup_path`] reads the container runtime, container id, pod UID or systemd unit
//!   out of such a path.
//! - [`FlowAttribution`] gives flow records the process and cgroup of their socket, by
//!   5-tuple, from the socket events.
//! - [`Enricher`] ties them together for one [`Event`](nightjar_core::Event) at a time.
//!
//! Time is always passed in (`now: Duration`, any monotonic clock), so tests control it.

use std::io;
use std::path::PathBuf;

pub mod cgroup_resolver;
pub mod container_path;
pub mod enricher;
pub mod mountinfo;
pub mod process_cache;
pub mod procfs;
pub mod socket_owners;

pub use cgroup_resolver::{CgroupResolver, CgroupResolverConfig, CgroupResolverStats};
pub use container_path::parse_cgroup_path;
pub use enricher::{Enricher, EnricherConfig};
pub use process_cache::{ProcessCache, ProcessCacheConfig, ProcessCacheStats};
pub use socket_owners::{FlowAttribution, SocketOwners, SocketOwnersConfig};

/// Errors of the enrichment setup. Enrichment itself never fails: what it cannot find, it
/// leaves empty.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// A file or directory the setup needs could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The mount table lists no cgroup2 filesystem (a cgroup v1-only host).
    #[error("no cgroup2 mount listed in {}", mountinfo.display())]
    NoCgroup2Mount { mountinfo: PathBuf },
    /// The cgroup2 root given is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
}
