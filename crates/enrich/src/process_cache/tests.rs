use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use nightjar_core::{ExecData, ProcessInfo};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn tick() -> u64 {
    procfs::clock_tick_ns()
}

fn proc_info(pid: u32, ppid: u32, start_time_ns: u64, binary: &str) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid,
        start_time_ns,
        binary: binary.into(),
        args: vec![binary.into()],
        args_truncated: false,
        cwd: "/root".into(),
        comm: binary.rsplit('/').next().unwrap_or_default().into(),
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        auid: Some(1000),
        cgroup_id: 42,
        from_procfs: false,
    }
}

fn exec_of(info: ProcessInfo) -> ExecData {
    ExecData {
        info,
        suid: 1000,
        sgid: 1000,
        cap_effective: 0,
        cap_permitted: 0,
    }
}

fn cache(capacity: usize) -> ProcessCache {
    ProcessCache::new(ProcessCacheConfig {
        capacity,
        ..ProcessCacheConfig::default()
    })
}

/// Caches `pid` with the given parent via an exec event, at time 0.
fn add(c: &mut ProcessCache, pid: u32, ppid: u32, start_time_ns: u64) {
    c.on_exec(
        &exec_of(proc_info(pid, ppid, start_time_ns, "/usr/bin/x")),
        ms(0),
    );
}

#[test]
fn fork_exec_exit_lifecycle() {
    let mut c = cache(16);
    let t = tick();
    assert!(c
        .on_exec(&exec_of(proc_info(100, 1, 10 * t, "/bin/bash")), ms(0))
        .is_none());

    assert!(c.on_fork(100, 200, 20 * t, ms(10)));
    let child = c.get(200).expect("child cached");
    assert_eq!(
        (child.pid, child.ppid, child.start_time_ns),
        (200, 100, 20 * t)
    );
    assert_eq!(
        child.binary, "/bin/bash",
        "inherits the parent's image until its own exec"
    );
    assert_eq!(
        (child.cwd.as_str(), child.euid, child.cgroup_id),
        ("/root", 1000, 42)
    );

    let before = c.on_exec(&exec_of(proc_info(200, 100, 20 * t, "/usr/bin/ls")), ms(20));
    assert_eq!(
        before.map(|p| p.binary.clone()).as_deref(),
        Some("/bin/bash")
    );
    assert_eq!(
        c.get(200).map(|p| p.binary.clone()).as_deref(),
        Some("/usr/bin/ls")
    );

    assert!(c.on_exit(200, 20 * t, ms(30)));
    assert!(c.has_exited(200));
    assert!(c.get(200).is_some(), "still there during the grace period");
    assert_eq!(c.reap(ms(5029)), 0);
    assert_eq!(c.reap(ms(5030)), 1);
    assert!(c.get(200).is_none());
    assert!(c.get(100).is_some());
    assert_eq!(c.stats().reaped, 1);
}

#[test]
fn pid_reuse_is_detected_by_start_time() {
    let mut c = cache(16);
    let t = tick();
    add(&mut c, 300, 1, 100 * t);
    // An exit for an earlier holder of pid 300.
    assert!(!c.on_exit(300, 50 * t, ms(1)));
    assert!(!c.has_exited(300));
    assert_eq!(c.stats().unmatched_exits, 1);

    // The real exit, then the pid is taken again before the grace period ends.
    assert!(c.on_exit(300, 100 * t, ms(2)));
    add(&mut c, 400, 1, 150 * t);
    assert!(c.on_fork(400, 300, 200 * t, ms(1000)));
    let reused = c.on_exec(
        &exec_of(proc_info(300, 400, 200 * t, "/usr/bin/new")),
        ms(1001),
    );
    assert_eq!(
        reused.map(|p| p.binary.clone()).as_deref(),
        Some("/usr/bin/x"),
        "fork copy of 400"
    );
    // The old exit's grace ends: the new holder of the pid stays.
    assert_eq!(c.reap(ms(10_000)), 0);
    assert_eq!(
        c.get(300).map(|p| p.binary.clone()).as_deref(),
        Some("/usr/bin/new")
    );

    // exec reports the image it replaced only when it is the same process.
    let other = c.on_exec(
        &exec_of(proc_info(300, 400, 900 * t, "/usr/bin/other")),
        ms(10_001),
    );
    assert!(other.is_none());
}

#[test]
fn identity_is_compared_at_tick_granularity() {
    let mut c = cache(16);
    let t = tick();
    // procfs knows only ticks; the kernel reports the exact ns within the same tick.
    let mut seeded = proc_info(500, 1, 12_345 * t, "/usr/sbin/sshd");
    seeded.from_procfs = true;
    c.insert(Arc::new(seeded), None);
    assert!(c.on_exit(500, 12_345 * t + t / 2, ms(0)));

    add(&mut c, 501, 1, 7 * t);
    assert!(
        !c.on_exit(501, 8 * t, ms(0)),
        "the next tick is another process"
    );
    assert!(c.on_exit(501, 0, ms(0)), "unknown start time matches");
}

#[test]
fn ancestry_walks_up_and_stops() {
    let mut c = cache(64);
    let t = tick();
    // 1 <- 10 <- 20 <- 30 <- 40, each started after its parent.
    for (pid, ppid, start) in [(1, 0, 1), (10, 1, 2), (20, 10, 3), (30, 20, 4), (40, 30, 5)] {
        add(&mut c, pid, ppid, start * t);
    }
    assert_eq!(c.ancestry(40, 16), [30, 20, 10, 1]);
    assert_eq!(c.ancestry(40, 2), [30, 20]);
    assert_eq!(c.ancestry(40, 0), Vec::<u32>::new());
    assert_eq!(c.ancestry(1, 16), Vec::<u32>::new());
    assert_eq!(c.ancestry(12345, 16), Vec::<u32>::new(), "unknown process");
    assert_eq!(c.parent_of(40).map(|p| p.pid), Some(30));
    assert_eq!(c.parent_of(1), None);

    // Unknown parent: listed, then the walk stops.
    add(&mut c, 50, 999, 6 * t);
    assert_eq!(c.ancestry(50, 16), [999]);
    assert_eq!(c.parent_of(50), None);

    // A kernel thread's parent is kthreadd (2), whose parent is 0.
    add(&mut c, 2, 0, t);
    add(&mut c, 77, 2, 2 * t);
    assert_eq!(c.ancestry(77, 16), [2]);

    // A parent that started after its child is a later holder of the pid.
    add(&mut c, 81, 1, 100 * t);
    add(&mut c, 80, 81, 90 * t);
    assert_eq!(c.parent_of(80), None);
    assert_eq!(c.ancestry(80, 16), [81]);
}

#[test]
fn ancestry_survives_cycles() {
    let mut c = cache(64);
    // Same start times, so the parent checks cannot break the cycles.
    add(&mut c, 60, 61, tick());
    add(&mut c, 61, 60, tick());
    assert_eq!(c.ancestry(60, 16), [61]);
    add(&mut c, 70, 71, tick());
    add(&mut c, 71, 72, tick());
    add(&mut c, 72, 71, tick());
    assert_eq!(c.ancestry(70, 16), [71, 72]);
    add(&mut c, 90, 90, tick());
    assert_eq!(c.ancestry(90, 16), Vec::<u32>::new());
}

#[test]
fn full_cache_evicts_exited_first_then_lru() {
    let mut c = cache(3);
    for pid in [1, 2, 3] {
        add(&mut c, pid, 1, u64::from(pid) * tick());
    }
    assert!(c.on_exit(2, 0, ms(0)));
    add(&mut c, 4, 1, 4 * tick());
    assert!(c.peek(2).is_none(), "the exited process made room");
    assert!(c.peek(1).is_some() && c.peek(3).is_some() && c.peek(4).is_some());

    // 1 is used, so 3 is now the least recently used.
    assert!(c.get(1).is_some());
    add(&mut c, 5, 1, 5 * tick());
    assert!(c.peek(3).is_none());
    assert_eq!(c.len(), 3);
    let stats = c.stats();
    assert_eq!(
        (stats.evicted_exited, stats.evicted_live, stats.len),
        (1, 1, 3)
    );

    // Replacing an entry in place evicts nothing.
    add(&mut c, 5, 1, 5 * tick());
    assert_eq!(c.stats().evicted_live, 1);
}

#[test]
fn forks_of_unknown_parents_cache_nothing() {
    let mut c = cache(8);
    assert!(!c.on_fork(7, 8, tick(), ms(0)));
    assert!(c.is_empty());
    assert_eq!(c.stats().unknown_parent_forks, 1);
    assert!(!c.on_exit(8, 0, ms(0)));
    assert_eq!(c.stats().unmatched_exits, 1);
}

#[test]
fn duplicate_exit_and_late_exec_keep_the_first_exit_time() {
    let mut c = cache(8);
    add(&mut c, 10, 1, tick());
    assert!(c.on_exit(10, tick(), ms(0)));
    assert!(
        !c.on_exit(10, tick(), ms(3000)),
        "second exit changes nothing"
    );
    c.on_exec(
        &exec_of(proc_info(10, 1, tick(), "/usr/bin/late")),
        ms(3000),
    );
    assert!(c.has_exited(10));
    assert_eq!(c.reap(ms(5000)), 1);
}

#[test]
fn parents_stay_for_children_forked_just_before_exit() {
    let mut c = cache(8);
    add(&mut c, 10, 1, tick());
    assert!(c.on_exit(10, tick(), ms(100)));
    // The child's fork arrives after the parent's exit, within the grace period.
    assert!(c.on_fork(10, 11, 2 * tick(), ms(150)));
    assert_eq!(c.parent_of(11).map(|p| p.pid), Some(10));
    // A mutation after the grace period reaps without an explicit reap() call.
    assert!(c.on_fork(11, 12, 3 * tick(), ms(5100)));
    assert!(c.peek(10).is_none());
    assert_eq!(c.ancestry(12, 16), [11, 10]);
}

/// Writes a realistic /proc/<pid> directory.
fn fake_proc(root: &Path, pid: u32, comm: &str, ppid: u32, start_ticks: u64, argv: &[&str]) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).expect("mkdir");
    let stat = format!(
        "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1311 0 2 0 3 1 0 0 20 0 1 0 {start_ticks} \
         7991296 1082 18446744073709551615 1 1 0 0 0 0 0 3670020 1266777851 0 0 0 17 2 0 0 0 0 0\n"
    );
    fs::write(dir.join("stat"), stat).expect("write stat");
    let status = format!(
        "Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n\
         Uid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\nGroups:\t27 1000\n"
    );
    fs::write(dir.join("status"), status).expect("write status");
    let mut cmdline = argv.join("\0");
    cmdline.push('\0');
    fs::write(dir.join("cmdline"), cmdline).expect("write cmdline");
    symlink(format!("/usr/bin/{comm}"), dir.join("exe")).expect("exe link");
    symlink("/home/user", dir.join("cwd")).expect("cwd link");
    fs::write(
        dir.join("cgroup"),
        "0::/user.slice/user-1000.slice/session-3.scope\n",
    )
    .expect("write cgroup");
    fs::write(dir.join("loginuid"), "1000").expect("write loginuid");
}

#[test]
fn seeds_from_a_fake_proc_tree() {
    let root = tempfile::tempdir().expect("tempdir");
    fake_proc(root.path(), 1, "systemd", 0, 5, &["/sbin/init", "splash"]);
    fake_proc(
        root.path(),
        4242,
        "my (evil) )comm",
        1,
        98_765,
        &["./a.out", "--flag", "two words"],
    );
    fake_proc(root.path(), 4243, "zombie", 4242, 99_000, &[]);
    fs::write(
        root.path().join("4243/stat"),
        "4243 (zombie) Z 4242 4243 4243 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99000 0 0\n",
    )
    .expect("write zombie stat");
    fs::create_dir(root.path().join("4244")).expect("mkdir vanished"); // exited mid-read
    fake_proc(root.path(), 4245, "broken", 1, 1, &["broken"]);
    fs::write(root.path().join("4245/stat"), "4245 (broken) S garbage\n")
        .expect("write broken stat");
    fs::create_dir(root.path().join("sys")).expect("mkdir non-pid");
    fs::write(root.path().join("uptime"), "1.0 1.0\n").expect("write file");

    let mut c = cache(64);
    let already_known = proc_info(1, 0, 5 * tick(), "/lib/systemd/systemd");
    c.on_exec(&exec_of(already_known), ms(0));
    let ids = |path: &str| (path == "/user.slice/user-1000.slice/session-3.scope").then_some(77);
    let seeded = c.seed_from_procfs(root.path(), &ids).expect("seeds");
    assert_eq!(seeded, 1);
    let stats = c.stats();
    assert_eq!(
        (stats.seeded, stats.seed_vanished, stats.seed_failed),
        (1, 2, 1),
        "{stats:?}"
    );

    assert_eq!(
        c.peek(1).map(|p| p.binary.clone()).as_deref(),
        Some("/lib/systemd/systemd"),
        "events win"
    );
    let p = c.peek(4242).expect("seeded");
    let expected = ProcessInfo {
        pid: 4242,
        ppid: 1,
        start_time_ns: 98_765 * tick(),
        binary: "/usr/bin/my (evil) )comm".into(),
        args: vec!["./a.out".into(), "--flag".into(), "two words".into()],
        args_truncated: false,
        cwd: "/home/user".into(),
        comm: "my (evil) )comm".into(),
        uid: 1000,
        gid: 1000,
        euid: 0,
        egid: 1000,
        auid: Some(1000),
        cgroup_id: 77,
        from_procfs: true,
    };
    assert_eq!(*p, expected);
    assert_eq!(c.ancestry(4242, 16), [1]);

    let missing = c.seed_from_procfs(&root.path().join("nope"), &|_| None);
    assert!(
        matches!(missing, Err(EnrichError::Read { .. })),
        "{missing:?}"
    );
}

#[test]
fn seeds_from_the_real_proc() {
    let resolver = crate::CgroupResolver::from_system(crate::CgroupResolverConfig::default())
        .expect("no usable cgroup2 mount; this test needs one");
    let mut c = ProcessCache::new(ProcessCacheConfig::default());
    let seeded = c
        .seed_from_procfs(Path::new("/proc"), &|p| resolver.id_of_path(p))
        .expect("reads /proc");
    assert!(seeded > 1, "{seeded}");

    let me = c.peek(std::process::id()).expect("own process seeded");
    assert_eq!(me.ppid, std::os::unix::process::parent_id());
    let exe = std::env::current_exe().expect("current_exe");
    assert_eq!(me.binary, exe.to_string_lossy());
    assert!(me.from_procfs && me.start_time_ns > 0);
    let first_arg = std::env::args().next().expect("argv[0]");
    assert_eq!(me.args.first(), Some(&first_arg));

    let cgroup = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("cgroup v2 line");
    assert_eq!(Some(me.cgroup_id), resolver.id_of_path(own));
    assert!(c.peek(1).is_some(), "pid 1 seeded");
}
