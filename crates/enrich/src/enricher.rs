//! The enrichment transform: fills in who did an event and where it ran.
//!
//! One [`Enricher`] sees every event in order. Process lifecycle events update its
//! [`ProcessCache`] first, so an exec is enriched with the new image and a fork's child is
//! known to the events that follow; then every event gets its process, parent, ancestors and
//! container from the caches. Nothing here does a syscall per event, except the cgroup walk
//! on an unknown cgroup id, which the [`CgroupResolver`] throttles.

use std::path::Path;
use std::time::Duration;

use nightjar_core::{Event, EventBody};

use crate::{CgroupResolver, CgroupResolverConfig, EnrichError, ProcessCache, ProcessCacheConfig};

/// Settings of an [`Enricher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnricherConfig {
    /// Ancestors listed above the parent in [`Event::ancestors`]. Default 16.
    pub max_ancestors: usize,
    /// The process cache.
    pub processes: ProcessCacheConfig,
    /// The cgroup resolver.
    pub cgroups: CgroupResolverConfig,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self {
            max_ancestors: 16,
            processes: ProcessCacheConfig::default(),
            cgroups: CgroupResolverConfig::default(),
        }
    }
}

/// Enriches events with process and container context. Owns its caches; not shared.
#[derive(Debug)]
pub struct Enricher {
    processes: ProcessCache,
    /// `None` without a cgroup2 mount (then events carry no container context).
    cgroups: Option<CgroupResolver>,
    max_ancestors: usize,
}

impl Enricher {
    /// An enricher over the given caches.
    pub fn new(
        processes: ProcessCache,
        cgroups: Option<CgroupResolver>,
        max_ancestors: usize,
    ) -> Self {
        Self {
            processes,
            cgroups,
            max_ancestors,
        }
    }

    /// An enricher on this machine's cgroup2 mount, with an empty process cache: call
    /// [`seed_from_procfs`](Self::seed_from_procfs) once the kernel programs are attached, so
    /// no process started in between is missed.
    pub fn from_system(config: EnricherConfig) -> Result<Self, EnrichError> {
        // Without cgroup v2 (or inside a private mount namespace that hides it) the agent
        // still runs; it says so once and leaves container context empty.
        let cgroups = match CgroupResolver::from_system(config.cgroups) {
            Ok(resolver) => Some(resolver),
            Err(err @ EnrichError::NoCgroup2Mount { .. }) => {
                tracing::warn!(error = %err, "No container attribution: cgroup v2 is not mounted");
                None
            }
            Err(err) => return Err(err),
        };
        Ok(Self::new(
            ProcessCache::new(config.processes),
            cgroups,
            config.max_ancestors,
        ))
    }

    /// Caches the processes already running, from `proc_root` (normally `/proc`), with
    /// their cgroup ids looked up on the resolver's mount. Returns how many were cached.
    pub fn seed_from_procfs(&mut self, proc_root: &Path) -> Result<usize, EnrichError> {
        let cgroups = self.cgroups.as_ref();
        self.processes
            .seed_from_procfs(proc_root, &|path| cgroups.and_then(|c| c.id_of_path(path)))
    }

    /// Updates the caches from `event` if it is an exec, fork or exit, then fills in
    /// `process`, `parent`, `ancestors` and `container` as far as the caches know them.
    /// Fields it cannot fill are left as they were. For an exec that changed the effective
    /// uid (a setuid binary), sets `setuid_from` to the previous euid unless the source
    /// already did.
    ///
    /// Assumes `event.pid` is the tgid that acted: the exec'ing, forking or exiting process.
    /// `now` is any monotonic clock, the same on every call.
    pub fn enrich(&mut self, event: &mut Event, now: Duration) {
        let pid = event.pid;
        // Cheap (one comparison when nothing expired), and keeps the cache clean on a host
        // where few processes start or stop.
        self.processes.reap(now);
        match &mut event.body {
            EventBody::ProcessExec {
                exec, setuid_from, ..
            } => {
                let before = self.processes.on_exec(exec, now);
                // A set-user-ID image leaves euid != uid; a process that changed its ids
                // with setresuid() before exec (setpriv, su) keeps them equal, and is not one.
                let new = &exec.info;
                if setuid_from.is_none() && new.euid != new.uid {
                    *setuid_from = before.filter(|b| b.euid != new.euid).map(|b| b.euid);
                }
            }
            EventBody::ProcessFork {
                child_pid,
                child_start_time_ns,
            } => {
                self.processes
                    .on_fork(pid, *child_pid, *child_start_time_ns, now);
            }
            EventBody::ProcessExit { start_time_ns, .. } => {
                self.processes.on_exit(pid, *start_time_ns, now);
            }
            EventBody::CgroupMkdir {
                new_cgroup_id,
                path,
            } => {
                if let Some(cgroups) = self.cgroups.as_mut() {
                    cgroups.learn(*new_cgroup_id, path);
                }
            }
            _ => {}
        }

        if let Some(process) = self.processes.get(pid) {
            if let Some(parent) = self.processes.parent_of(pid) {
                event.parent = Some(parent);
                // The chain starts with the parent, which has its own field.
                let chain = self
                    .processes
                    .ancestry(pid, self.max_ancestors.saturating_add(1));
                event.ancestors = chain.into_iter().skip(1).collect();
            }
            event.process = Some(process);
        }

        // Kernel records always carry the cgroup id; the cached one is a fallback for
        // sources that do not.
        let cgroup_id = match (event.cgroup_id, &event.process) {
            (0, Some(process)) => process.cgroup_id,
            (id, _) => id,
        };
        if let (Some(cgroups), true) = (self.cgroups.as_mut(), cgroup_id != 0) {
            if !cgroups.knows(cgroup_id) {
                cgroups.learn_from_pid(cgroup_id, pid, Path::new("/proc"));
            }
            if let Some(container) = cgroups.resolve_container(cgroup_id, now) {
                event.container = Some(container);
            }
        }
    }

    /// The process cache, for lookups and its counters.
    pub fn processes(&self) -> &ProcessCache {
        &self.processes
    }

    /// The process cache, e.g. to [`reap`](ProcessCache::reap) while no events arrive.
    pub fn processes_mut(&mut self) -> &mut ProcessCache {
        &mut self.processes
    }

    /// The cgroup resolver, for its counters.
    pub fn cgroups(&self) -> Option<&CgroupResolver> {
        self.cgroups.as_ref()
    }
}

#[cfg(test)]
mod tests;
