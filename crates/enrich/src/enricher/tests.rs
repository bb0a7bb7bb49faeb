use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use nightjar_core::{Event, EventBody, ExecData, ProcessInfo, Runtime, SyscallResult};

use super::*;

const CONTAINER: &str = "8f3c1a9e2b7d4c6f0e5a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcd";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Fixture {
    enricher: Enricher,
    /// cgroup ids of the fake tree: a docker container and a host service.
    docker_cgroup: u64,
    host_cgroup: u64,
    _root: tempfile::TempDir,
}

fn fixture(max_ancestors: usize) -> Fixture {
    let root = tempfile::tempdir().expect("tempdir");
    let docker = root
        .path()
        .join(format!("system.slice/docker-{CONTAINER}.scope"));
    let host = root.path().join("system.slice/sshd.service");
    fs::create_dir_all(&docker).expect("mkdir");
    fs::create_dir_all(&host).expect("mkdir");
    let ino = |p: &std::path::Path| fs::metadata(p).expect("stat").ino();
    let cgroups =
        CgroupResolver::with_root(root.path(), CgroupResolverConfig::default()).expect("resolver");
    let processes = ProcessCache::new(ProcessCacheConfig::default());
    Fixture {
        enricher: Enricher::new(processes, Some(cgroups), max_ancestors),
        docker_cgroup: ino(&docker),
        host_cgroup: ino(&host),
        _root: root,
    }
}

fn info(pid: u32, ppid: u32, binary: &str, euid: u32, cgroup_id: u64) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid,
        start_time_ns: u64::from(pid) * 1_000_000_000,
        binary: binary.into(),
        args: vec![binary.into()],
        args_truncated: false,
        cwd: "/".into(),
        comm: binary.rsplit('/').next().unwrap_or_default().into(),
        uid: 1000,
        gid: 1000,
        euid,
        egid: 1000,
        auid: None,
        cgroup_id,
        from_procfs: false,
    }
}

fn event(pid: u32, cgroup_id: u64, body: EventBody) -> Event {
    Event {
        time: "2024-01-01T00:00:00.000000000Z".into(),
        ktime_ns: 0,
        node: Arc::from("node-1"),
        pid,
        tid: pid,
        cgroup_id,
        flags: Vec::new(),
        process: None,
        parent: None,
        ancestors: Vec::new(),
        container: None,
        kubernetes: None,
        peer: None,
        body,
    }
}

fn exec_event(info: ProcessInfo) -> Event {
    let (pid, cgroup_id) = (info.pid, info.cgroup_id);
    let exec = Box::new(ExecData {
        info,
        suid: 0,
        sgid: 0,
        cap_effective: 0,
        cap_permitted: 0,
    });
    event(
        pid,
        cgroup_id,
        EventBody::ProcessExec {
            exec,
            cap_effective: String::new(),
            setuid_from: None,
        },
    )
}

fn open_event(pid: u32, cgroup_id: u64) -> Event {
    let result = SyscallResult {
        syscall: "openat",
        ret: 3,
        error: None,
    };
    event(
        pid,
        cgroup_id,
        EventBody::FileOpen {
            result,
            path: "/etc/shadow".into(),
            flags: vec!["O_RDONLY"],
            mode: None,
        },
    )
}

fn setuid_from(e: &Event) -> Option<u32> {
    match &e.body {
        EventBody::ProcessExec { setuid_from, .. } => *setuid_from,
        _ => None,
    }
}

/// Execs a chain 1 <- 2 <- ... <- n on the host.
fn chain(f: &mut Fixture, n: u32) {
    for pid in 1..=n {
        let mut e = exec_event(info(pid, pid - 1, "/bin/sh", 1000, f.host_cgroup));
        f.enricher.enrich(&mut e, ms(0));
    }
}

#[test]
fn exec_sets_process_parent_ancestors_and_container() {
    let mut f = fixture(16);
    chain(&mut f, 4);
    let mut e = exec_event(info(5, 4, "/usr/bin/curl", 1000, f.docker_cgroup));
    f.enricher.enrich(&mut e, ms(1));
    let process = e.process.as_ref().expect("process");
    assert_eq!((process.pid, process.binary.as_str()), (5, "/usr/bin/curl"));
    assert_eq!(e.parent.as_ref().map(|p| p.pid), Some(4));
    assert_eq!(e.ancestors, [3, 2, 1]);
    let container = e.container.as_ref().expect("container");
    assert_eq!(
        (container.runtime, container.id.as_deref()),
        (Runtime::Docker, Some(CONTAINER))
    );
    assert_eq!(setuid_from(&e), None);
}

#[test]
fn ancestors_are_bounded() {
    let mut f = fixture(2);
    chain(&mut f, 10);
    let mut e = open_event(10, f.host_cgroup);
    f.enricher.enrich(&mut e, ms(1));
    assert_eq!(e.parent.as_ref().map(|p| p.pid), Some(9));
    assert_eq!(e.ancestors, [8, 7]);
    assert_eq!(
        e.container.as_ref().and_then(|c| c.unit.as_deref()),
        Some("sshd.service")
    );
}

#[test]
fn setuid_exec_records_the_previous_euid() {
    let mut f = fixture(16);
    chain(&mut f, 1);
    let mut fork = event(
        1,
        f.host_cgroup,
        EventBody::ProcessFork {
            child_pid: 20,
            child_start_time_ns: 20_000_000_000,
        },
    );
    f.enricher.enrich(&mut fork, ms(1));
    assert_eq!(
        fork.process.as_ref().map(|p| p.pid),
        Some(1),
        "the forking process"
    );

    let mut sudo = info(20, 1, "/usr/bin/sudo", 0, f.host_cgroup);
    sudo.start_time_ns = 20_000_000_000;
    let mut e = exec_event(sudo.clone());
    f.enricher.enrich(&mut e, ms(2));
    assert_eq!(setuid_from(&e), Some(1000));

    // Same euid: no change to report.
    let mut again = exec_event(ProcessInfo {
        binary: "/bin/true".into(),
        ..sudo.clone()
    });
    f.enricher.enrich(&mut again, ms(3));
    assert_eq!(setuid_from(&again), None);

    // A source that already knew keeps its value.
    let mut preset = exec_event(ProcessInfo { euid: 5, ..sudo });
    if let EventBody::ProcessExec { setuid_from, .. } = &mut preset.body {
        *setuid_from = Some(77);
    }
    f.enricher.enrich(&mut preset, ms(4));
    assert_eq!(setuid_from(&preset), Some(77));

    // A first exec of an unknown process has nothing to compare with.
    let mut unknown = exec_event(info(30, 1, "/usr/bin/passwd", 0, f.host_cgroup));
    f.enricher.enrich(&mut unknown, ms(5));
    assert_eq!(setuid_from(&unknown), None);
}

#[test]
fn fork_then_events_of_the_child() {
    let mut f = fixture(16);
    chain(&mut f, 3);
    let mut fork = event(
        3,
        f.host_cgroup,
        EventBody::ProcessFork {
            child_pid: 40,
            child_start_time_ns: 40_000_000_000,
        },
    );
    f.enricher.enrich(&mut fork, ms(1));
    let mut e = open_event(40, f.host_cgroup);
    f.enricher.enrich(&mut e, ms(2));
    assert_eq!(
        e.process
            .as_ref()
            .map(|p| (p.pid, p.ppid, p.binary.as_str())),
        Some((40, 3, "/bin/sh"))
    );
    assert_eq!(e.ancestors, [2, 1]);
}

#[test]
fn exit_keeps_the_process_for_the_grace_period() {
    let mut f = fixture(16);
    chain(&mut f, 2);
    let exit = EventBody::ProcessExit {
        exit_code: Some(0),
        signal: None,
        core_dumped: false,
        start_time_ns: 2_000_000_000,
    };
    let mut e = event(2, f.host_cgroup, exit);
    f.enricher.enrich(&mut e, ms(10));
    assert_eq!(e.process.as_ref().map(|p| p.pid), Some(2));
    assert!(f.enricher.processes().has_exited(2));

    let mut late = open_event(2, f.host_cgroup);
    f.enricher.enrich(&mut late, ms(4000));
    assert!(late.process.is_some(), "within the grace period");
    let mut after = open_event(1, f.host_cgroup);
    f.enricher.enrich(&mut after, ms(5010));
    assert!(
        f.enricher.processes().peek(2).is_none(),
        "reaped when the next event arrives"
    );
}

#[test]
fn unknown_processes_get_only_their_container() {
    let mut f = fixture(16);
    let mut e = open_event(999, f.docker_cgroup);
    f.enricher.enrich(&mut e, ms(0));
    assert!(e.process.is_none() && e.parent.is_none() && e.ancestors.is_empty());
    assert!(
        f.enricher.processes().is_empty(),
        "nothing created for an unknown pid"
    );
    assert_eq!(
        e.container.as_ref().map(|c| c.runtime),
        Some(Runtime::Docker)
    );

    let mut gone = open_event(999, u64::MAX);
    f.enricher.enrich(&mut gone, ms(0));
    assert!(gone.container.is_none());
}

#[test]
fn cached_cgroup_is_the_fallback() {
    let mut f = fixture(16);
    chain(&mut f, 1);
    let mut e = open_event(1, 0);
    f.enricher.enrich(&mut e, ms(1));
    assert_eq!(
        e.container.as_ref().and_then(|c| c.unit.as_deref()),
        Some("sshd.service")
    );
}

#[test]
fn seeds_through_the_resolver() {
    let mut f = fixture(16);
    let proc_root = tempfile::tempdir().expect("tempdir");
    let dir = proc_root.path().join("7");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(
        dir.join("stat"),
        "7 (sshd) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n",
    )
    .expect("write");
    fs::write(dir.join("status"), "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n").expect("write");
    fs::write(dir.join("cmdline"), "/usr/sbin/sshd\0-D\0").expect("write");
    fs::write(dir.join("cgroup"), "0::/system.slice/sshd.service\n").expect("write");
    assert_eq!(
        f.enricher
            .seed_from_procfs(proc_root.path())
            .expect("seeds"),
        1
    );
    let mut e = open_event(7, 0);
    f.enricher.enrich(&mut e, ms(0));
    assert_eq!(e.process.as_ref().map(|p| p.cgroup_id), Some(f.host_cgroup));
    assert_eq!(
        e.container.as_ref().and_then(|c| c.unit.as_deref()),
        Some("sshd.service")
    );
}

#[test]
fn dropping_privileges_before_exec_is_not_a_setuid_exec() {
    // setpriv/su style: a root process calls setresuid(65534, 65534, 65534), then execs an
    // ordinary binary. uid == euid afterwards, so nothing was granted by the image.
    let mut f = fixture(16);
    chain(&mut f, 1);
    let mut root = info(40, 1, "/usr/bin/setpriv", 0, f.host_cgroup);
    root.uid = 0;
    let mut first = exec_event(root.clone());
    f.enricher.enrich(&mut first, ms(1));
    let dropped = ProcessInfo {
        binary: "/usr/bin/cat".into(),
        uid: 65534,
        euid: 65534,
        ..root
    };
    let mut e = exec_event(dropped);
    f.enricher.enrich(&mut e, ms(2));
    assert_eq!(setuid_from(&e), None);
}
