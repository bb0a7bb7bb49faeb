//! JSON lines: one event per line, the schema of docs/events.md.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use nightjar_core::pipeline::{Sink, SinkError};
use nightjar_core::Event;

use crate::json_encode::EventEncoder;

/// Writes each event as one line of JSON to stdout or a file. Buffered; flushed per batch.
pub struct JsonLinesSink {
    out: BufWriter<Box<dyn Write + Send>>,
    encoder: EventEncoder,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink").finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(io::stdout()))
    }

    /// Appends to `path`, creating it if needed.
    pub fn file(path: &Path) -> io::Result<Self> {
        let file: File = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::to_writer(Box::new(file)))
    }

    pub fn to_writer(writer: Box<dyn Write + Send>) -> Self {
        Self {
            out: BufWriter::with_capacity(256 * 1024, writer),
            encoder: EventEncoder::new(),
        }
    }
}

fn io_error(source: io::Error) -> SinkError {
    SinkError::Io {
        sink: "json",
        source,
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &'static str {
        "json"
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        self.encoder.write(&mut self.out, event).map_err(io_error)?;
        self.out.write_all(b"\n").map_err(io_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use nightjar_core::{EventBody, SyscallResult};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_one_json_object_per_line() {
        let shared = Shared::default();
        let mut sink = JsonLinesSink::to_writer(Box::new(shared.clone()));
        let event = Event {
            time: "2026-11-27T00:00:00.000000000Z".into(),
            ktime_ns: 5,
            node: Arc::from("node-a"),
            pid: 10,
            tid: 11,
            cgroup_id: 1,
            flags: vec!["path_as_passed"],
            process: None,
            parent: None,
            ancestors: vec![],
            container: None,
            kubernetes: None,
            peer: None,
            body: EventBody::FileUnlink {
                result: SyscallResult {
                    syscall: "unlinkat",
                    ret: -2,
                    error: Some("ENOENT"),
                },
                path: "/tmp/x".into(),
            },
        };
        sink.write(&event).unwrap();
        sink.write(&event).unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["type"], "file_unlink");
        assert_eq!(v["syscall"], "unlinkat");
        assert_eq!(v["ret"], -2);
        assert_eq!(v["error"], "ENOENT");
        assert_eq!(v["path"], "/tmp/x");
        assert_eq!(v["pid"], 10);
        assert_eq!(v["event_flags"][0], "path_as_passed");
        assert!(v.get("process").is_none());
    }
}
