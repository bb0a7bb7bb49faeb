//! cgroup id -> cgroup v2 path, and from there to container context.
//!
//! The kernel stamps events with a cgroup v2 id (`bpf_get_current_cgroup_id()`), which is the
//! inode number of the cgroup's directory in the cgroup2 filesystem. There is no syscall to go
//! from that id back to a path, so the resolver walks the cgroup2 tree, remembers the inode
//! of every directory it sees, and walks again only when an unknown id shows up.
//!
//! Walks are throttled to one per [`CgroupResolverConfig::rescan_interval`], and an id still
//! missing after a walk that started after it was asked for is remembered as unknown: on
//! 64-bit kernels cgroup ids are never reused, so such an id belonged to a cgroup that is gone
//! (or lies outside our cgroup namespace) and will never resolve. A flood of such ids then
//! costs one hash lookup each.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;
use nightjar_core::ContainerInfo;
use serde::Serialize;

use crate::container_path::parse_cgroup_path;
use crate::mountinfo::find_cgroup2_mount;
use crate::EnrichError;

/// cgroup v2 nests at most a few levels in practice; this guards against a pathological tree
/// (a bind mount of a cgroup into itself) rather than limiting real layouts.
const MAX_WALK_DEPTH: usize = 64;

/// Sizing and pacing of a [`CgroupResolver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupResolverConfig {
    /// Resolved ids kept (paths and container context each). Default 16384.
    pub capacity: usize,
    /// Ids remembered as unknown, and ids waiting for the next walk. Default 4096.
    pub negative_capacity: usize,
    /// Minimum time between two walks of the tree. Default 1 s.
    pub rescan_interval: Duration,
}

impl Default for CgroupResolverConfig {
    fn default() -> Self {
        Self {
            capacity: 16384,
            negative_capacity: 4096,
            // Short: a new container's first events (its exec) must find its cgroup. The
            // negative cache, not this interval, is what stops floods of unknown ids.
            rescan_interval: Duration::from_secs(1),
        }
    }
}

/// Counters of a [`CgroupResolver`], for its internal metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CgroupResolverStats {
    /// Lookups answered from the caches.
    pub hits: u64,
    /// Lookups the path cache could not answer.
    pub misses: u64,
    /// Misses answered by the negative cache (known unknown ids).
    pub negative_hits: u64,
    /// Misses that could not walk because the last walk was too recent.
    pub throttled: u64,
    /// Walks of the cgroup2 tree.
    pub rescans: u64,
    /// Directories a walk could not read (other than ones deleted during the walk).
    pub walk_errors: u64,
    /// Paths currently cached.
    pub cached: usize,
}

/// Resolves cgroup v2 ids to paths relative to the cgroup2 mount (`/`, `/system.slice/x.service`)
/// and to [`ContainerInfo`]. Not thread-safe by design: one enrichment task owns it.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    /// `root` with symlinks resolved, to check that a looked-up path stays inside it.
    real_root: PathBuf,
    root_dev: u64,
    rescan_interval: Duration,
    paths: LruCache<u64, Arc<str>>,
    containers: LruCache<u64, Arc<ContainerInfo>>,
    unknown: LruCache<u64, ()>,
    /// Ids missed while walks were throttled; settled by the next walk.
    pending: HashSet<u64>,
    negative_capacity: usize,
    last_rescan: Option<Duration>,
    stats: CgroupResolverStats,
}

impl CgroupResolver {
    /// A resolver on this machine's cgroup2 mount, found in `/proc/self/mountinfo`.
    pub fn from_system(config: CgroupResolverConfig) -> Result<Self, EnrichError> {
        let mountinfo = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(mountinfo).map_err(|source| EnrichError::Read {
            path: mountinfo.to_owned(),
            source,
        })?;
        let root = find_cgroup2_mount(&text).ok_or_else(|| EnrichError::NoCgroup2Mount {
            mountinfo: mountinfo.to_owned(),
        })?;
        Self::with_root(root, config)
    }

    /// A resolver on an explicit cgroup2 root (any directory tree, for tests).
    pub fn with_root(
        root: impl Into<PathBuf>,
        config: CgroupResolverConfig,
    ) -> Result<Self, EnrichError> {
        let root = root.into();
        let meta = fs::metadata(&root).map_err(|source| EnrichError::Read {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(EnrichError::NotADirectory { path: root });
        }
        let real_root = fs::canonicalize(&root).map_err(|source| EnrichError::Read {
            path: root.clone(),
            source,
        })?;
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            root,
            real_root,
            root_dev: meta.dev(),
            rescan_interval: config.rescan_interval,
            paths: LruCache::new(cap(config.capacity)),
            containers: LruCache::new(cap(config.capacity)),
            unknown: LruCache::new(cap(config.negative_capacity)),
            pending: HashSet::new(),
            negative_capacity: config.negative_capacity.max(1),
            last_rescan: None,
            stats: CgroupResolverStats::default(),
        })
    }

    /// The cgroup2 mount this resolver walks.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of cgroup `id` relative to the mount, or `None` if no walk can find it.
    ///
    /// `now` is any monotonic clock, the same on every call; it paces the walks.
    pub fn resolve(&mut self, id: u64, now: Duration) -> Option<Arc<str>> {
        if let Some(path) = self.paths.get(&id) {
            self.stats.hits += 1;
            return Some(Arc::clone(path));
        }
        self.stats.misses += 1;
        if self.unknown.get(&id).is_some() {
            self.stats.negative_hits += 1;
            return None;
        }
        if !self.rescan_due(now) {
            self.remember_pending(id);
            self.stats.throttled += 1;
            return None;
        }
        self.rescan(id, now);
        self.paths.get(&id).cloned()
    }

    /// True when `id` is cached, or known not to exist.
    pub fn knows(&self, id: u64) -> bool {
        self.paths.contains(&id) || self.unknown.contains(&id)
    }

    /// Learns cgroup `id` from the cgroup v2 path process `pid` reports in
    /// `<proc_root>/<pid>/cgroup`: one read and one stat instead of a tree walk, and never
    /// throttled, so a new cgroup's first event (typically an exec) already finds its path.
    /// False when the process is gone or has moved to another cgroup since.
    pub fn learn_from_pid(&mut self, id: u64, pid: u32, proc_root: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))
        else {
            return false;
        };
        let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            return false;
        };
        if self.id_of_path(path) != Some(id) {
            return false;
        }
        self.learn(id, path);
        true
    }

    /// Records that cgroup `id` is at `path` (relative to the mount), as the kernel said when
    /// it created it (the cgroup_mkdir tracepoint). Trusted as given: no stat.
    pub fn learn(&mut self, id: u64, path: &str) {
        self.paths.put(id, Arc::from(path));
        self.containers.pop(&id);
        self.unknown.pop(&id);
        self.pending.remove(&id);
    }

    /// Container context of cgroup `id`, parsed once per id and shared; `None` when the id
    /// does not resolve.
    pub fn resolve_container(&mut self, id: u64, now: Duration) -> Option<Arc<ContainerInfo>> {
        if let Some(info) = self.containers.get(&id) {
            self.stats.hits += 1;
            return Some(Arc::clone(info));
        }
        let path = self.resolve(id, now)?;
        let info = Arc::new(parse_cgroup_path(&path));
        self.containers.put(id, Arc::clone(&info));
        Some(info)
    }

    /// The id (inode) of the cgroup at `path`, relative to the mount, by a single stat.
    /// Paths that would leave the mount (`..`) or cross into another filesystem give `None`.
    ///
    /// Meant for seeding the process cache from `/proc/<pid>/cgroup`.
    pub fn id_of_path(&self, path: &str) -> Option<u64> {
        let rel = Path::new(path.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return None;
        }
        // A symlink anywhere on the way could lead out of the mount: compare the real path.
        let real = fs::canonicalize(self.root.join(rel)).ok()?;
        if !real.starts_with(&self.real_root) {
            return None;
        }
        let meta = fs::metadata(&real).ok()?;
        (meta.is_dir() && meta.dev() == self.root_dev).then(|| meta.ino())
    }

    /// Current counters.
    pub fn stats(&self) -> CgroupResolverStats {
        CgroupResolverStats {
            cached: self.paths.len(),
            ..self.stats
        }
    }

    fn rescan_due(&self, now: Duration) -> bool {
        match self.last_rescan {
            None => true,
            // A clock that went backwards must not block walks until it catches up.
            Some(last) => now < last || now - last >= self.rescan_interval,
        }
    }

    fn remember_pending(&mut self, id: u64) {
        // Bounded: past the limit an id simply waits to be asked for again.
        if self.pending.len() < self.negative_capacity {
            self.pending.insert(id);
        }
    }

    /// Walks the whole tree, caches every directory, then settles `wanted` and the pending
    /// ids: found ones are cached last (so a tree larger than the cache cannot evict them),
    /// the rest become known unknowns.
    fn rescan(&mut self, wanted: u64, now: Duration) {
        self.last_rescan = Some(now);
        self.stats.rescans += 1;
        let mut pending = std::mem::take(&mut self.pending);
        pending.insert(wanted);
        let found = self.walk(&pending);
        for (id, path) in &found {
            self.paths.put(*id, Arc::clone(path));
        }
        let found: HashSet<u64> = found.into_iter().map(|(id, _)| id).collect();
        for id in pending.difference(&found) {
            self.unknown.put(*id, ());
        }
        tracing::debug!(
            cached = self.paths.len(),
            rescans = self.stats.rescans,
            "Walked cgroup2 tree"
        );
    }

    /// Depth-first walk from the root, caching every directory; returns the `wanted` ids it
    /// saw. Never follows symlinks or leaves the root's filesystem.
    fn walk(&mut self, wanted: &HashSet<u64>) -> Vec<(u64, Arc<str>)> {
        let mut found = Vec::new();
        let mut record = |paths: &mut LruCache<u64, Arc<str>>, id: u64, path: &str| {
            let path: Arc<str> = Arc::from(path);
            if wanted.contains(&id) {
                found.push((id, Arc::clone(&path)));
            }
            paths.put(id, path);
        };
        match fs::symlink_metadata(&self.root) {
            Ok(meta) => record(&mut self.paths, meta.ino(), "/"),
            Err(err) => {
                self.stats.walk_errors += 1;
                tracing::warn!(root = %self.root.display(), error = %err, "Cannot stat cgroup2 root");
                return found;
            }
        }
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(self.root.clone(), String::new(), 0)];
        while let Some((dir, rel, depth)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Deleted between listing its parent and reading it: nothing to learn.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => {
                    self.stats.walk_errors += 1;
                    tracing::debug!(dir = %dir.display(), error = %err, "Cannot read cgroup directory");
                    continue;
                }
            };
            for entry in entries.flatten() {
                // file_type() and metadata() of a DirEntry do not follow symlinks.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if meta.dev() != self.root_dev {
                    continue;
                }
                let child_rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
                record(&mut self.paths, meta.ino(), &child_rel);
                if depth + 1 < MAX_WALK_DEPTH {
                    stack.push((entry.path(), child_rel, depth + 1));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
