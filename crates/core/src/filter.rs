//! Output filters: which events a sink receives, by type, binary, pid and container.
//!
//! Every list is an allow-list; an empty list allows everything. Within a list any entry may
//! match; across lists all must match (type AND binary AND pid AND container).

use std::collections::HashSet;

use crate::event::{Event, EventBody};

/// A filter given on the command line or in config was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown event type {given:?}; known types: {known}")]
    UnknownType { given: String, known: String },
    #[error("empty {what} filter entry")]
    Empty { what: &'static str },
}

/// What a sink wants to see.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    types: HashSet<&'static str>,
    binaries: Vec<String>,
    pids: HashSet<u32>,
    containers: Vec<String>,
    cgroup_ids: HashSet<u64>,
}

impl EventFilter {
    /// Also require the event's cgroup id to be one of `ids` (the demo and tests use this to
    /// follow everything that runs inside a cgroup they created).
    pub fn with_cgroup_ids(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.cgroup_ids.extend(ids);
        self
    }

    /// Builds a filter; `types` must be known type names (see [`EventBody::TYPE_NAMES`]).
    ///
    /// `binaries` match the full path or its last component (`curl` matches `/usr/bin/curl`).
    /// `containers` match a container id prefix, or `host` for processes on the host.
    pub fn new(
        types: &[String],
        binaries: &[String],
        pids: &[u32],
        containers: &[String],
    ) -> Result<Self, FilterError> {
        let mut type_set = HashSet::new();
        for given in types {
            let known = EventBody::TYPE_NAMES
                .iter()
                .find(|name| **name == given.as_str())
                .ok_or_else(|| FilterError::UnknownType {
                    given: given.clone(),
                    known: EventBody::TYPE_NAMES.join(", "),
                })?;
            type_set.insert(*known);
        }
        for (what, list) in [("binary", binaries), ("container", containers)] {
            if list.iter().any(|entry| entry.is_empty()) {
                return Err(FilterError::Empty { what });
            }
        }
        Ok(Self {
            types: type_set,
            binaries: binaries.to_vec(),
            pids: pids.iter().copied().collect(),
            containers: containers.to_vec(),
            cgroup_ids: HashSet::new(),
        })
    }

    /// True when the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
            && self.binaries.is_empty()
            && self.pids.is_empty()
            && self.containers.is_empty()
            && self.cgroup_ids.is_empty()
    }

    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(event.type_name()))
            && (self.pids.is_empty() || self.pids.contains(&event.pid))
            && (self.binaries.is_empty() || self.matches_binary(event))
            && (self.containers.is_empty() || self.matches_container(event))
            && (self.cgroup_ids.is_empty() || self.cgroup_ids.contains(&event.cgroup_id))
    }

    fn matches_binary(&self, event: &Event) -> bool {
        let Some(process) = &event.process else {
            return false;
        };
        let binary = process.binary.as_str();
        let base = binary.rsplit('/').next().unwrap_or(binary);
        self.binaries.iter().any(|b| b == binary || b == base)
    }

    fn matches_container(&self, event: &Event) -> bool {
        let id = event.container.as_ref().and_then(|c| c.id.as_deref());
        self.containers.iter().any(|want| match id {
            Some(id) => id.starts_with(want.as_str()),
            None => want == "host",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::{ContainerInfo, ProcessInfo, Runtime};

    fn event(pid: u32, binary: &str, container: Option<&str>) -> Event {
        Event {
            time: String::new(),
            ktime_ns: 0,
            node: Arc::from("n"),
            pid,
            tid: pid,
            cgroup_id: 1,
            flags: vec![],
            process: Some(Arc::new(ProcessInfo {
                pid,
                ppid: 1,
                start_time_ns: 0,
                binary: binary.into(),
                args: vec![],
                args_truncated: false,
                cwd: "/".into(),
                comm: "x".into(),
                uid: 0,
                gid: 0,
                euid: 0,
                egid: 0,
                auid: None,
                cgroup_id: 1,
                from_procfs: false,
            })),
            parent: None,
            ancestors: vec![],
            container: Some(Arc::new(ContainerInfo {
                id: container.map(String::from),
                runtime: if container.is_some() {
                    Runtime::Containerd
                } else {
                    Runtime::Host
                },
                pod_uid: None,
                unit: None,
                cgroup: "/".into(),
            })),
            kubernetes: None,
            peer: None,
            body: EventBody::ProcessFork {
                child_pid: 2,
                child_start_time_ns: 0,
            },
        }
    }

    #[test]
    fn empty_filter_allows_all() {
        let f = EventFilter::new(&[], &[], &[], &[]).unwrap();
        assert!(f.is_empty());
        assert!(f.matches(&event(1, "/bin/sh", None)));
    }

    #[test]
    fn type_filter() {
        let f = EventFilter::new(&["file_open".into()], &[], &[], &[]).unwrap();
        assert!(!f.matches(&event(1, "/bin/sh", None)));
        let f = EventFilter::new(&["process_fork".into()], &[], &[], &[]).unwrap();
        assert!(f.matches(&event(1, "/bin/sh", None)));
    }

    #[test]
    fn unknown_type_is_an_error_naming_the_type() {
        let err = EventFilter::new(&["file_opne".into()], &[], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("file_opne"));
        assert!(err.to_string().contains("file_open"));
    }

    #[test]
    fn binary_matches_path_or_basename() {
        let f = EventFilter::new(&[], &["curl".into()], &[], &[]).unwrap();
        assert!(f.matches(&event(1, "/usr/bin/curl", None)));
        assert!(!f.matches(&event(1, "/usr/bin/curly", None)));
        let f = EventFilter::new(&[], &["/usr/bin/curl".into()], &[], &[]).unwrap();
        assert!(f.matches(&event(1, "/usr/bin/curl", None)));
        assert!(EventFilter::new(&[], &["".into()], &[], &[]).is_err());
    }

    #[test]
    fn cgroup_filter() {
        let f = EventFilter::default().with_cgroup_ids([1]);
        assert!(f.matches(&event(7, "/x", None)));
        let f = EventFilter::default().with_cgroup_ids([2]);
        assert!(!f.matches(&event(7, "/x", None)));
    }

    #[test]
    fn pid_and_container_filters_combine() {
        let f = EventFilter::new(&[], &[], &[7], &["abc".into()]).unwrap();
        assert!(f.matches(&event(7, "/x", Some("abcdef"))));
        assert!(!f.matches(&event(8, "/x", Some("abcdef"))));
        assert!(!f.matches(&event(7, "/x", None)));
        let host = EventFilter::new(&[], &[], &[], &["host".into()]).unwrap();
        assert!(host.matches(&event(7, "/x", None)));
        assert!(!host.matches(&event(7, "/x", Some("abcdef"))));
    }
}
