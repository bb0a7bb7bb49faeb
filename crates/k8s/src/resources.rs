//! CPU and memory of this node's pods from their cgroups, as utilisation against the pods'
//! requests and limits, rolled up to workloads and services (and pods with `--pod-metrics`).
//!
//! cgroup v2 first (`cpu.stat` usage_usec; `memory.current` minus `memory.stat`
//! inactive_file, the kubelet's working set); where a controller lives in a v1 hierarchy (a
//! hybrid host) the same relative path under it (`cpuacct.usage`; `memory.usage_in_bytes`
//! minus `total_inactive_file`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nightjar_core::telemetry::{LabelBudget, ObjectEventLabel, ObjectLabel, Telemetry};

use crate::rollup::{admit, MAX_SERIES};
use crate::store::ClusterStore;

/// Where the cgroup files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMounts {
    pub v2: Option<PathBuf>,
    /// v1 hierarchies holding `cpuacct` and `memory`, when those controllers are there.
    pub v1_cpuacct: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
}

impl CgroupMounts {
    /// From a mountinfo table.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut mounts = Self {
            v2: nightjar_enrich::mountinfo::find_cgroup2_mount(text),
            v1_cpuacct: None,
            v1_memory: None,
        };
        for line in text.lines() {
            let Some((before, after)) = line.split_once(" - ") else {
                continue;
            };
            let mut fields = after.split_whitespace();
            if fields.next() != Some("cgroup") {
                continue;
            }
            let options = fields.nth(1).unwrap_or_default();
            let Some(point) = before.split_whitespace().nth(4) else {
                continue;
            };
            for option in options.split(',') {
                match option {
                    "cpuacct" => mounts.v1_cpuacct = Some(PathBuf::from(point)),
                    "memory" => mounts.v1_memory = Some(PathBuf::from(point)),
                    _ => {}
                }
            }
        }
        mounts
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == field).then(|| v.trim().parse().ok()).flatten()
    })
}

/// CPU time used so far (ns) and memory working set (bytes) of the cgroup at `relative`.
pub fn usage(mounts: &CgroupMounts, relative: &str) -> (Option<u64>, Option<u64>) {
    let rel = relative.trim_start_matches('/');
    let v2 = mounts.v2.as_ref().map(|root| root.join(rel));
    let cpu = v2
        .as_ref()
        .and_then(|dir| stat_field(&dir.join("cpu.stat"), "usage_usec"))
        .map(|us| us * 1_000)
        .or_else(|| {
            let dir = mounts.v1_cpuacct.as_ref()?.join(rel);
            read_u64(&dir.join("cpuacct.usage"))
        });
    let memory = v2
        .as_ref()
        .and_then(|dir| {
            let current = read_u64(&dir.join("memory.current"))?;
            let inactive = stat_field(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
            Some(current.saturating_sub(inactive))
        })
        .or_else(|| {
            let dir = mounts.v1_memory.as_ref()?.join(rel);
            let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
            let inactive = stat_field(&dir.join("memory.stat"), "total_inactive_file").unwrap_or(0);
            Some(usage.saturating_sub(inactive))
        });
    (cpu, memory)
}

/// Container cgroups under the v2 root: container id -> path relative to the root. Bounded
/// walk (depth 10, 100,000 directories).
pub fn container_cgroups(root: &Path) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        visited += 1;
        if visited > 100_000 {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let relative = format!("/{}", relative.display());
            let info = nightjar_enrich::parse_cgroup_path(&relative);
            match info.id {
                Some(id) => {
                    found.insert(id, relative);
                }
                None if depth < 10 => stack.push((path, depth + 1)),
                None => {}
            }
        }
    }
    found
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    cpu_seconds: f64,
    memory: u64,
    cpu_request: f64,
    cpu_limit: f64,
    memory_request: u64,
    memory_limit: u64,
}

/// Samples container cgroups and publishes per-unit CPU and memory.
#[derive(Debug)]
pub struct ResourceSampler {
    mounts: CgroupMounts,
    telemetry: Arc<Telemetry>,
    pods: bool,
    last_cpu: HashMap<String, u64>,
    /// Container id -> cgroup path (relative to the v2 root), from the last walk of the tree.
    cgroups: HashMap<String, String>,
    budget: LabelBudget,
}

impl ResourceSampler {
    pub fn new(mounts: CgroupMounts, telemetry: Arc<Telemetry>, pods: bool) -> Self {
        Self {
            mounts,
            telemetry,
            pods,
            last_cpu: HashMap::new(),
            cgroups: HashMap::new(),
            budget: LabelBudget::new(MAX_SERIES),
        }
    }

    /// One sample: CPU used since the last one (over `interval`) and memory now, for every
    /// container of a pod the store knows. Returns how many containers were read.
    pub fn sample(&mut self, store: &ClusterStore, interval: Duration) -> usize {
        let Some(root) = self.mounts.v2.clone() else {
            return 0;
        };
        // Walk the tree only when a container is not where the last walk found it (new, or
        // restarted): one stat per container instead of a walk of every cgroup per sample, and
        // no walk at all while no pod has a running container.
        let moved = |cgroups: &HashMap<String, String>, id: &str| {
            cgroups
                .get(id)
                .is_none_or(|relative| !root.join(relative.trim_start_matches('/')).is_dir())
        };
        if store
            .pods()
            .flat_map(|pod| pod.containers.iter())
            .filter_map(|c| c.id.as_deref())
            .any(|id| moved(&self.cgroups, id))
        {
            self.cgroups = container_cgroups(&root);
        }
        let cgroups = &self.cgroups;
        let mut by_unit: HashMap<ObjectLabel, Totals> = HashMap::new();
        let mut read = 0;
        let mut seen = HashMap::new();
        for pod in store.pods() {
            let mut pod_totals = Totals::default();
            for c in pod.containers.iter() {
                pod_totals.cpu_request += c.cpu_request_millis as f64 / 1000.0;
                pod_totals.cpu_limit += c.cpu_limit_millis as f64 / 1000.0;
                pod_totals.memory_request += c.memory_request_bytes;
                pod_totals.memory_limit += c.memory_limit_bytes;
                let Some(id) = c.id.as_deref() else { continue };
                let Some(relative) = cgroups.get(id) else {
                    continue;
                };
                let (cpu, memory) = usage(&self.mounts, relative);
                read += 1;
                if let Some(cpu) = cpu {
                    let before = self.last_cpu.get(id).copied().unwrap_or(cpu);
                    pod_totals.cpu_seconds += cpu.saturating_sub(before) as f64 / 1e9;
                    seen.insert(id.to_string(), cpu);
                }
                pod_totals.memory += memory.unwrap_or(0);
            }
            let services = store.services_of(pod);
            let workload = store.workload_of(pod);
            let mut units = vec![ObjectLabel {
                namespace: pod.namespace.to_string(),
                kind: workload.kind.to_string(),
                name: workload.name.to_string(),
            }];
            units.extend(services.iter().map(|(ns, name)| ObjectLabel {
                namespace: ns.to_string(),
                kind: "Service".into(),
                name: name.to_string(),
            }));
            if self.pods {
                units.push(ObjectLabel {
                    namespace: pod.namespace.to_string(),
                    kind: "Pod".into(),
                    name: pod.name.to_string(),
                });
            }
            for unit in units {
                let unit = admit(&mut self.budget, unit);
                let t = by_unit.entry(unit).or_default();
                t.cpu_seconds += pod_totals.cpu_seconds;
                t.memory += pod_totals.memory;
                t.cpu_request += pod_totals.cpu_request;
                t.cpu_limit += pod_totals.cpu_limit;
                t.memory_request += pod_totals.memory_request;
                t.memory_limit += pod_totals.memory_limit;
            }
        }
        // Containers gone since the last sample are forgotten.
        self.last_cpu = seen;
        let t = &self.telemetry;
        // Gauges describe now: units that went away must not linger.
        t.k8s_memory_bytes.clear();
        t.k8s_cpu_utilization.clear();
        t.k8s_memory_utilization.clear();
        let seconds = interval.as_secs_f64().max(1e-3);
        for (unit, totals) in by_unit {
            t.k8s_cpu_seconds
                .get_or_create(&unit)
                .inc_by(totals.cpu_seconds);
            t.k8s_memory_bytes
                .get_or_create(&unit)
                .set(totals.memory as i64);
            let cores = totals.cpu_seconds / seconds;
            for (of, cpu, memory) in [
                ("request", totals.cpu_request, totals.memory_request),
                ("limit", totals.cpu_limit, totals.memory_limit),
            ] {
                let label = ObjectEventLabel {
                    namespace: unit.namespace.clone(),
                    kind: unit.kind.clone(),
                    name: unit.name.clone(),
                    event: of,
                };
                if cpu > 0.0 {
                    t.k8s_cpu_utilization.get_or_create(&label).set(cores / cpu);
                }
                if memory > 0 {
                    t.k8s_memory_utilization
                        .get_or_create(&label)
                        .set(totals.memory as f64 / memory as f64);
                }
            }
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_controllers_and_the_v2_root() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
            33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            40 31 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let m = CgroupMounts::from_mountinfo(text);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_cpuacct,
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(m.v1_memory, Some(PathBuf::from("/sys/fs/cgroup/memory")));
    }

    #[test]
    fn reads_v2_and_falls_back_to_v1() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("v2/kubepods/pod1/c1");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\n").unwrap();
        // No memory controller in v2 here (a hybrid host): memory comes from v1.
        let v1 = dir.path().join("memory/kubepods/pod1/c1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "1000000\n").unwrap();
        std::fs::write(
            v1.join("memory.stat"),
            "cache 5\ntotal_inactive_file 200000\n",
        )
        .unwrap();
        let mounts = CgroupMounts {
            v2: Some(dir.path().join("v2")),
            v1_cpuacct: None,
            v1_memory: Some(dir.path().join("memory")),
        };
        assert_eq!(
            usage(&mounts, "/kubepods/pod1/c1"),
            (Some(2_500_000), Some(800_000))
        );
        std::fs::write(v2.join("memory.current"), "4096\n").unwrap();
        std::fs::write(v2.join("memory.stat"), "anon 1\ninactive_file 1024\n").unwrap();
        assert_eq!(usage(&mounts, "/kubepods/pod1/c1").1, Some(3072));
    }
}
