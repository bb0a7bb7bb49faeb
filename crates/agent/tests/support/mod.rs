//! Shared by the kernel (tier 1) tests: run the real agent binary, create cgroups, run
//! nj-trigger inside them, and read back the JSON events the agent wrote.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest one nj-trigger action may take; every action is one or two syscalls.
pub const TRIGGER_LIMIT: Duration = Duration::from_secs(60);
/// Longest the agent may take to detach and flush after SIGINT.
pub const STOP_LIMIT: Duration = Duration::from_secs(60);

/// Waits for `child` to exit, at most `limit`: a test that would hang instead fails, naming
/// what it waited for (a hung CI run says nothing about where it hung).
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let state = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("State:"))
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "waited {limit:?} for {what} (pid {}, {state}); killed it",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`wait_within`] that also collects piped stdout and stderr, read on their own threads so
/// a full pipe cannot stall the child.
pub fn output_within(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    fn collect(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = wait_within(&mut child, limit, what);
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Kernel tests run one at a time even under a parallel test runner: each loads the whole
/// agent, and the detach test counts every program named nj_* on the machine.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn cgroup2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ").unwrap();
        if right.starts_with("cgroup2 ") {
            return PathBuf::from(left.split_whitespace().nth(4).unwrap());
        }
    }
    panic!("no cgroup2 mount: the kernel tests need cgroup v2");
}

/// A cgroup v2 directory for one test, removed on drop.
pub struct TestCgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        let path = cgroup2_root().join(format!("nightjar-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let id = std::fs::metadata(&path).unwrap().ino();
        Self { path, id }
    }

    /// A command that moves itself into this cgroup before exec.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let procs = self.path.join("cgroup.procs");
        let mut cmd = Command::new(program);
        // SAFETY: only a write(2) to cgroup.procs between fork and exec.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        cmd
    }

    /// Runs nj-trigger with `args` in this cgroup; returns (pid, syscall return value).
    pub fn trigger(&self, args: &[&str]) -> (u32, i64) {
        let child = self
            .command(env!("CARGO_BIN_EXE_nj-trigger"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn nj-trigger");
        let pid = child.id();
        let out = output_within(child, TRIGGER_LIMIT, &format!("nj-trigger {args:?}"));
        assert!(out.status.success(), "nj-trigger {args:?} failed: {out:?}");
        let ret = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        (pid, ret)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The agent binary, running with JSON output to a file.
pub struct Agent {
    child: Option<Child>,
    pub output: PathBuf,
    pub metrics_port: u16,
    pub pid: u32,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("events.jsonl");
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_nightjar"))
            .arg("agent")
            .arg("--output-file")
            .arg(&output)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .args(extra)
            // Hooks this kernel lacks (module syscalls) are warnings; keep test logs readable.
            .env("RUST_LOG", "error")
            .spawn()
            .expect("spawn nightjar agent");
        let pid = child.id();
        let mut agent = Self {
            pid,
            child: Some(child),
            output,
            metrics_port,
            _dir: dir,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited before it was ready: {status}");
            }
            if let Some(body) = http_get(self.metrics_port, "/metrics") {
                if body.contains("nightjar_programs_attached") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("agent not ready within 60 s");
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").expect("metrics endpoint answers")
    }

    /// Sends SIGINT, waits for a clean exit, and returns every event written.
    pub fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = wait_within(&mut child, STOP_LIMIT, "the agent to stop after SIGINT");
        assert!(status.success(), "agent exited with {status}");
        read_events(&self.output)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Events of one type from one pid.
pub fn of<'a>(events: &'a [Value], ty: &str, pid: u32) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == ty && e["pid"] == pid)
        .collect()
}

/// Exactly one event of `ty` from `pid`, with a readable failure.
pub fn one<'a>(events: &'a [Value], ty: &str, pid: u32) -> &'a Value {
    let found = of(events, ty, pid);
    assert_eq!(
        found.len(),
        1,
        "expected one {ty} event from pid {pid}, got {}: {found:#?}\nall events of pid: {:#?}",
        found.len(),
        events
            .iter()
            .filter(|e| e["pid"] == pid)
            .collect::<Vec<_>>()
    );
    found[0]
}
