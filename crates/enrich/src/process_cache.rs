//! The process cache: what the agent knows about each live (or just exited) process.
//!
//! Keyed by tgid, fed by exec, fork and exit events, and seeded from `/proc` at start. A pid
//! alone does not identify a process (pids are reused), so every event that names a process
//! by pid also carries its start time, and the cache checks it. Start times from the kernel
//! are in ns since boot, those from procfs in clock ticks (10 ms), so identity is compared at
//! tick granularity.
//!
//! Exited processes stay for a grace period: events are not strictly ordered, and a child's
//! events may arrive just after its parent's exit. The cache is bounded; when full it drops
//! exited processes first, then the least recently used.

use std::collections::VecDeque;
use std::fs;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;
use nightjar_core::{ExecData, ProcessInfo};
use serde::Serialize;

use crate::procfs::{self, ProcReadError};
use crate::EnrichError;

/// Sizing and timing of a [`ProcessCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCacheConfig {
    /// Processes kept. Default 32768 (the classic `pid_max`).
    pub capacity: usize,
    /// How long an exited process stays. Default 5 s.
    pub exit_grace: Duration,
}

impl Default for ProcessCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 32768,
            exit_grace: Duration::from_secs(5),
        }
    }
}

/// Counters of a [`ProcessCache`], for its internal metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessCacheStats {
    /// Processes cached now, live or in their grace period.
    pub len: usize,
    /// Exited processes removed after their grace period.
    pub reaped: u64,
    /// Exited processes dropped early to make room.
    pub evicted_exited: u64,
    /// Live processes dropped to make room (the cache is too small).
    pub evicted_live: u64,
    /// Forks whose parent was unknown (nothing cached for the child).
    pub unknown_parent_forks: u64,
    /// Exits of unknown processes, or whose start time shows a reused pid.
    pub unmatched_exits: u64,
    /// Processes read from procfs.
    pub seeded: u64,
    /// Processes that exited while procfs was read.
    pub seed_vanished: u64,
    /// Processes procfs could not give (unreadable or malformed files).
    pub seed_failed: u64,
}

/// A cached process and, once it exited, when.
#[derive(Debug)]
struct Entry {
    info: Arc<ProcessInfo>,
    exited_at: Option<Duration>,
}

/// An exit waiting for its grace period to end. Stale once the pid holds another process.
#[derive(Debug, Clone, Copy)]
struct Exit {
    at: Duration,
    tgid: u32,
    start_time_ns: u64,
}

/// Processes by tgid, bounded and reaped. Time is passed in as `now` (any monotonic clock,
/// the same on every call), which paces reaping; each mutation reaps what has expired, so no
/// timer is needed.
#[derive(Debug)]
pub struct ProcessCache {
    entries: LruCache<u32, Entry>,
    /// Exits in the order they happened; `reap` pops from the front.
    exits: VecDeque<Exit>,
    exit_grace: Duration,
    tick_ns: u64,
    stats: ProcessCacheStats,
}

impl ProcessCache {
    /// An empty cache.
    pub fn new(config: ProcessCacheConfig) -> Self {
        Self {
            entries: LruCache::new(NonZeroUsize::new(config.capacity).unwrap_or(NonZeroUsize::MIN)),
            exits: VecDeque::new(),
            exit_grace: config.exit_grace,
            tick_ns: procfs::clock_tick_ns().max(1),
            stats: ProcessCacheStats::default(),
        }
    }

    /// Reads every process under `proc_root` (normally `/proc`) and caches it, marked
    /// `from_procfs`. Processes already learnt from events are kept as they are (events are
    /// fresher). `cgroup_id` maps a cgroup v2 path to its id (see
    /// [`CgroupResolver::id_of_path`](crate::CgroupResolver::id_of_path)).
    ///
    /// Returns how many processes were cached. Processes that exit during the read are
    /// skipped and counted in [`ProcessCacheStats::seed_vanished`].
    pub fn seed_from_procfs(
        &mut self,
        proc_root: &Path,
        cgroup_id: &dyn Fn(&str) -> Option<u64>,
    ) -> Result<usize, EnrichError> {
        let dir = fs::read_dir(proc_root).map_err(|source| EnrichError::Read {
            path: proc_root.to_owned(),
            source,
        })?;
        let mut pids: Vec<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        // Parents usually have lower pids; inserting them first makes them the older LRU
        // entries, which matches how a live system would have filled the cache.
        pids.sort_unstable();
        let mut seeded = 0;
        for pid in pids {
            if self.entries.peek(&pid).is_some_and(|e| !e.info.from_procfs) {
                continue;
            }
            match procfs::read_process(
                &proc_root.join(pid.to_string()),
                pid,
                self.tick_ns,
                cgroup_id,
            ) {
                Ok(info) => {
                    self.insert(Arc::new(info), None);
                    seeded += 1;
                }
                Err(ProcReadError::Vanished) => self.stats.seed_vanished += 1,
                Err(err) => {
                    self.stats.seed_failed += 1;
                    tracing::debug!(pid, error = %err, "Cannot read process from procfs");
                }
            }
        }
        self.stats.seeded += seeded as u64;
        Ok(seeded)
    }

    /// A process replaced its image: caches `exec.info` under its pid (exec keeps the pid
    /// and the start time). Returns the entry it replaced when that was the same process
    /// (not a previous holder of the pid), so the caller can compare credentials.
    pub fn on_exec(&mut self, exec: &ExecData, now: Duration) -> Option<Arc<ProcessInfo>> {
        self.reap(now);
        let info = &exec.info;
        let previous = self
            .entries
            .peek(&info.pid)
            .filter(|e| self.same_process(e.info.start_time_ns, info.start_time_ns));
        // An exit already seen for this very process means the exec event arrived late:
        // keep the process on its way out.
        let exited_at = previous.and_then(|e| e.exited_at);
        let previous = previous.map(|e| Arc::clone(&e.info));
        self.insert(Arc::new(info.clone()), exited_at);
        previous
    }

    /// A process forked: the child starts as a copy of the parent (binary, args, cwd,
    /// credentials, cgroup) with its own pid, ppid and start time, until its own exec.
    /// Returns `false`, caching nothing, when the parent is unknown: an entry without a
    /// binary would only mislead.
    pub fn on_fork(
        &mut self,
        parent_tgid: u32,
        child_tgid: u32,
        child_start_time_ns: u64,
        now: Duration,
    ) -> bool {
        self.reap(now);
        let tick_ns = self.tick_ns;
        let parent = match self.entries.get(&parent_tgid) {
            Some(p) if started_no_later(p.info.start_time_ns, child_start_time_ns, tick_ns) => {
                Arc::clone(&p.info)
            }
            _ => {
                self.stats.unknown_parent_forks += 1;
                return false;
            }
        };
        let child = ProcessInfo {
            pid: child_tgid,
            ppid: parent_tgid,
            start_time_ns: child_start_time_ns,
            from_procfs: false,
            ..(*parent).clone()
        };
        self.insert(Arc::new(child), None);
        true
    }

    /// A process exited: it stays cached for the grace period, then [`reap`](Self::reap)
    /// removes it. Ignored (returns `false`) when the cached process under `tgid` has another
    /// start time: the pid was reused and this exit is about its previous holder.
    /// A start time of 0 means unknown and matches any process.
    pub fn on_exit(&mut self, tgid: u32, start_time_ns: u64, now: Duration) -> bool {
        self.reap(now);
        let tick_ns = self.tick_ns;
        let Some(entry) = self.entries.peek_mut(&tgid) else {
            self.stats.unmatched_exits += 1;
            return false;
        };
        if !same_tick(entry.info.start_time_ns, start_time_ns, tick_ns) {
            self.stats.unmatched_exits += 1;
            return false;
        }
        if entry.exited_at.is_some() {
            return false;
        }
        entry.exited_at = Some(now);
        let exit = Exit {
            at: now,
            tgid,
            start_time_ns: entry.info.start_time_ns,
        };
        self.exits.push_back(exit);
        self.compact_exits();
        true
    }

    /// Removes processes whose grace period ended by `now`; returns how many.
    pub fn reap(&mut self, now: Duration) -> usize {
        let mut reaped = 0;
        while let Some(&exit) = self.exits.front() {
            // saturating_sub: a clock that went backwards delays reaping, never speeds it.
            if now.saturating_sub(exit.at) < self.exit_grace {
                break;
            }
            self.exits.pop_front();
            if self.is_current(&exit) {
                self.entries.pop(&exit.tgid);
                reaped += 1;
            }
        }
        self.stats.reaped += reaped as u64;
        reaped
    }

    /// The process `tgid`, marking it recently used.
    pub fn get(&mut self, tgid: u32) -> Option<Arc<ProcessInfo>> {
        self.entries.get(&tgid).map(|e| Arc::clone(&e.info))
    }

    /// The process `tgid`, without touching its place in the LRU order.
    pub fn peek(&self, tgid: u32) -> Option<Arc<ProcessInfo>> {
        self.entries.peek(&tgid).map(|e| Arc::clone(&e.info))
    }

    /// Whether `tgid` has exited (and is in its grace period).
    pub fn has_exited(&self, tgid: u32) -> bool {
        self.entries
            .peek(&tgid)
            .is_some_and(|e| e.exited_at.is_some())
    }

    /// The parent of `tgid` as cached, if it is the real parent: an entry under the ppid
    /// that started after the child is a later holder of that pid, and is not returned.
    pub fn parent_of(&self, tgid: u32) -> Option<Arc<ProcessInfo>> {
        let child = self.entries.peek(&tgid)?;
        self.parent_entry(&child.info).map(|p| Arc::clone(&p.info))
    }

    /// Pids of the ancestors of `tgid`, nearest (the parent) first, at most `max_depth`.
    ///
    /// A ppid is listed even when that process is not cached, and the walk stops there; it
    /// also stops after pid 1, at ppid 0 (the kernel's own tasks), on a parent that started
    /// after its child (pid reused), and before repeating a pid (a cycle left by reuse).
    pub fn ancestry(&self, tgid: u32, max_depth: usize) -> Vec<u32> {
        let mut chain = Vec::new();
        let Some(mut current) = self.entries.peek(&tgid).map(|e| &e.info) else {
            return chain;
        };
        while chain.len() < max_depth {
            let ppid = current.ppid;
            if ppid == 0 || ppid == tgid || chain.contains(&ppid) {
                break;
            }
            chain.push(ppid);
            if ppid == 1 {
                break;
            }
            match self.parent_entry(current) {
                Some(parent) => current = &parent.info,
                None => break,
            }
        }
        chain
    }

    /// Processes cached, live or exited.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Current counters.
    pub fn stats(&self) -> ProcessCacheStats {
        ProcessCacheStats {
            len: self.entries.len(),
            ..self.stats
        }
    }

    /// Caches `info`, making room first by dropping an exited process if the cache is full.
    fn insert(&mut self, info: Arc<ProcessInfo>, exited_at: Option<Duration>) {
        let pid = info.pid;
        if !self.entries.contains(&pid) && self.entries.len() >= self.entries.cap().get() {
            self.evict_one_exited();
        }
        // push() returns the entry it displaced: the old value under `pid`, or the LRU entry.
        if let Some((evicted, _)) = self.entries.push(pid, Entry { info, exited_at }) {
            if evicted != pid {
                self.stats.evicted_live += 1;
            }
        }
    }

    /// Drops the earliest exited process still cached; `false` if there is none.
    fn evict_one_exited(&mut self) -> bool {
        while let Some(exit) = self.exits.pop_front() {
            if self.is_current(&exit) {
                self.entries.pop(&exit.tgid);
                self.stats.evicted_exited += 1;
                return true;
            }
        }
        false
    }

    /// Whether the exit still describes the cached process (the pid was not taken since).
    fn is_current(&self, exit: &Exit) -> bool {
        self.entries.peek(&exit.tgid).is_some_and(|e| {
            e.exited_at == Some(exit.at) && e.info.start_time_ns == exit.start_time_ns
        })
    }

    /// Stale exits pile up only when pids are reused within the grace period; drop them
    /// before the queue outgrows the cache.
    fn compact_exits(&mut self) {
        if self.exits.len() > 2 * self.entries.cap().get() {
            let exits = std::mem::take(&mut self.exits);
            self.exits = exits.into_iter().filter(|e| self.is_current(e)).collect();
        }
    }

    fn parent_entry(&self, child: &ProcessInfo) -> Option<&Entry> {
        if child.ppid == 0 {
            return None;
        }
        self.entries
            .peek(&child.ppid)
            .filter(|p| started_no_later(p.info.start_time_ns, child.start_time_ns, self.tick_ns))
    }

    fn same_process(&self, a: u64, b: u64) -> bool {
        same_tick(a, b, self.tick_ns)
    }
}

/// Same start time at tick granularity (procfs truncates ns to ticks); unknown (0) matches.
fn same_tick(a: u64, b: u64, tick_ns: u64) -> bool {
    a == 0 || b == 0 || a / tick_ns == b / tick_ns
}

/// `parent` started no later than `child` (at tick granularity); unknown (0) passes.
fn started_no_later(parent: u64, child: u64, tick_ns: u64) -> bool {
    parent == 0 || child == 0 || parent / tick_ns <= child / tick_ns
}

#[cfg(test)]
mod tests;
