//! Encodes events as JSON the way `Event`'s `Serialize` does, but writes the shared context
//! objects (process, parent, container, pod) from a cache of their encoded bytes.
//!
//! Those objects are most of an event line (about 600 of 950-1,000 bytes for a socket event) and
//! the same for every event of a process, so they are encoded once per object rather than
//! once per event (BENCHMARKS.md has what that saved). They are shared `Arc`s that are never
//! changed in place (a change is a new `Arc`), so the cache is keyed by address; it holds a
//! clone of each `Arc`, so an address cannot be reused for another object while its bytes are
//! cached.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use nightjar_core::{ContainerInfo, Event, PodContext, ProcessInfo};
use serde::Serialize;

/// Most context objects of one kind kept encoded; past it the cache starts over.
const FRAGMENTS_MAX: usize = 4096;

/// Encoded bytes of shared context objects of one type, keyed by the `Arc`'s address.
struct Fragments<T> {
    encoded: HashMap<usize, (Arc<T>, Box<[u8]>)>,
}

impl<T: Serialize> Fragments<T> {
    fn new() -> Self {
        Self {
            encoded: HashMap::new(),
        }
    }

    fn write(&mut self, out: &mut impl Write, object: &Arc<T>) -> io::Result<()> {
        let key = Arc::as_ptr(object) as usize;
        if let Some((_, bytes)) = self.encoded.get(&key) {
            return out.write_all(bytes);
        }
        let bytes = serde_json::to_vec(object.as_ref()).map_err(io::Error::from)?;
        out.write_all(&bytes)?;
        if self.encoded.len() >= FRAGMENTS_MAX {
            // Bounded, and simple: processes that are still busy are encoded again once.
            self.encoded.clear();
        }
        self.encoded
            .insert(key, (object.clone(), bytes.into_boxed_slice()));
        Ok(())
    }

    /// Writes `name` (`,"process":`) and the object, when there is one.
    fn member(
        &mut self,
        out: &mut impl Write,
        name: &[u8],
        object: Option<&Arc<T>>,
    ) -> io::Result<()> {
        let Some(object) = object else {
            return Ok(());
        };
        out.write_all(name)?;
        self.write(out, object)
    }

    fn len(&self) -> usize {
        self.encoded.len()
    }
}

/// Writes events as single JSON objects, with context objects from the cache.
pub struct EventEncoder {
    processes: Fragments<ProcessInfo>,
    containers: Fragments<ContainerInfo>,
    pods: Fragments<PodContext>,
    body: Vec<u8>,
}

impl Default for EventEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EventEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEncoder")
            .field("processes", &self.processes.len())
            .field("containers", &self.containers.len())
            .field("pods", &self.pods.len())
            .finish()
    }
}

fn json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(out, value).map_err(io::Error::from)
}

impl EventEncoder {
    pub fn new() -> Self {
        Self {
            processes: Fragments::new(),
            containers: Fragments::new(),
            pods: Fragments::new(),
            body: Vec::with_capacity(1024),
        }
    }

    /// Writes `event` as one JSON object (no newline), field for field what
    /// `serde_json::to_writer(event)` writes.
    pub fn write(&mut self, out: &mut impl Write, event: &Event) -> io::Result<()> {
        // Every field named: a field added to Event fails to compile here until it is encoded.
        let Event {
            time,
            ktime_ns,
            node,
            pid,
            tid,
            cgroup_id,
            flags,
            process,
            parent,
            ancestors,
            container,
            kubernetes,
            peer,
            body,
        } = event;
        out.write_all(b"{\"time\":")?;
        json(out, time)?;
        write!(out, ",\"ktime_ns\":{ktime_ns},\"node\":")?;
        json(out, node)?;
        write!(
            out,
            ",\"pid\":{pid},\"tid\":{tid},\"cgroup_id\":{cgroup_id}"
        )?;
        if !flags.is_empty() {
            out.write_all(b",\"event_flags\":")?;
            json(out, flags)?;
        }
        self.processes
            .member(out, b",\"process\":", process.as_ref())?;
        self.processes
            .member(out, b",\"parent\":", parent.as_ref())?;
        if !ancestors.is_empty() {
            out.write_all(b",\"ancestors\":")?;
            json(out, ancestors)?;
        }
        self.containers
            .member(out, b",\"container\":", container.as_ref())?;
        self.pods
            .member(out, b",\"kubernetes\":", kubernetes.as_ref())?;
        if let Some(peer) = peer {
            out.write_all(b",\"peer\":")?;
            json(out, peer)?;
        }
        // The body is an internally tagged enum, so always an object with at least "type":
        // its members continue this object.
        self.body.clear();
        json(&mut self.body, body)?;
        match self.body.split_first() {
            Some((b'{', members)) => {
                out.write_all(b",")?;
                out.write_all(members)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "event body did not encode as a JSON object",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use nightjar_core::{
        EventBody, Importance, PeerIdentity, Runtime, ServiceMembership, SockAddr, SockOp,
        SyscallResult, WorkloadRef,
    };

    use super::*;

    fn process(pid: u32) -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo {
            pid,
            ppid: 1,
            start_time_ns: 42,
            binary: "/usr/bin/curl \"quoted\"\n".into(),
            args: vec!["curl".into(), "-s".into(), "http://x/\u{1}".into()],
            args_truncated: true,
            cwd: "/root".into(),
            comm: "curl".into(),
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            auid: Some(1000),
            cgroup_id: 7,
            from_procfs: false,
        })
    }

    fn event(process: Arc<ProcessInfo>, parent: Option<Arc<ProcessInfo>>) -> Event {
        let mut event = Event::unattributed(
            "2026-11-27T00:00:00.000000001Z".into(),
            9,
            Arc::from("node-a"),
            EventBody::SockConnect(SockOp {
                result: SyscallResult {
                    syscall: "connect",
                    ret: -111,
                    error: Some("ECONNREFUSED"),
                },
                fd: 3,
                sock_type: Some("stream"),
                protocol: Some("tcp"),
                local: None,
                remote: Some(SockAddr::Inet {
                    addr: "10.0.0.1".parse::<IpAddr>().unwrap(),
                    port: 80,
                }),
                backlog: None,
                cookie: Some(5),
            }),
        );
        event.pid = process.pid;
        event.tid = process.pid + 1;
        event.cgroup_id = 7;
        event.flags = vec!["args_truncated"];
        event.process = Some(process);
        event.parent = parent;
        event.ancestors = vec![3, 2, 1];
        event.container = Some(Arc::new(ContainerInfo {
            id: Some("ab".repeat(32)),
            runtime: Runtime::Containerd,
            pod_uid: Some("u-1".into()),
            unit: None,
            cgroup: "/kubepods/x".into(),
        }));
        event.peer = Some(Arc::new(PeerIdentity::World));
        event
    }

    fn encode(encoder: &mut EventEncoder, event: &Event) -> serde_json::Value {
        let mut out = Vec::new();
        encoder.write(&mut out, event).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn encodes_what_serialize_encodes() {
        let mut encoder = EventEncoder::new();
        let parent = process(1);
        for event in [
            event(process(10), Some(parent.clone())),
            event(process(11), None),
            Event::unattributed(
                "t".into(),
                1,
                Arc::from("n"),
                EventBody::FileUnlink {
                    result: SyscallResult {
                        syscall: "unlinkat",
                        ret: 0,
                        error: None,
                    },
                    path: "/tmp/x".into(),
                },
            ),
        ] {
            let expected = serde_json::to_value(&event).unwrap();
            // Twice: once encoding the context objects, once from the cache.
            assert_eq!(encode(&mut encoder, &event), expected);
            assert_eq!(encode(&mut encoder, &event), expected);
        }
        assert_eq!(encoder.processes.len(), 3);
    }

    #[test]
    fn a_pod_context_is_encoded_like_serialize_does() {
        let mut encoder = EventEncoder::new();
        let mut e = event(process(10), None);
        e.kubernetes = Some(Arc::new(PodContext {
            namespace: Arc::from("shop"),
            pod: Arc::from("cart-1"),
            pod_uid: Arc::from("u-1"),
            container: Some(Arc::from("app")),
            image: None,
            node: Some(Arc::from("node-a")),
            owner: None,
            workload: WorkloadRef {
                kind: Arc::from("Deployment"),
                name: Arc::from("cart"),
            },
            services: vec![ServiceMembership {
                namespace: Arc::from("shop"),
                name: Arc::from("cart"),
                importance: Importance {
                    score: 0.5,
                    level: "high",
                    reason: "1 of 2 ready endpoints".into(),
                },
            }],
        }));
        let expected = serde_json::to_value(&e).unwrap();
        assert_eq!(encode(&mut encoder, &e), expected);
        assert_eq!(encode(&mut encoder, &e), expected);
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_it_encodes_alive() {
        let mut encoder = EventEncoder::new();
        for pid in 0..(FRAGMENTS_MAX as u32 + 10) {
            let e = event(process(pid), None);
            let expected = serde_json::to_value(&e).unwrap();
            assert_eq!(encode(&mut encoder, &e), expected);
        }
        assert!(encoder.processes.len() <= FRAGMENTS_MAX);
    }
}
