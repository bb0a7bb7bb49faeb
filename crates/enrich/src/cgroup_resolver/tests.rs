use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nightjar_core::Runtime;

use super::*;

const ID: &str = "8f3c1a9e2b7d4c6f0e5a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcd";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ino(path: &Path) -> u64 {
    fs::metadata(path).expect("stat test dir").ino()
}

/// A small host-like cgroup2 tree in a tempdir.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in [
        "system.slice/nginx.service".to_string(),
        format!("system.slice/docker-{ID}.scope"),
        "user.slice/user-0.slice/session-3.scope".to_string(),
        format!("kubepods/burstable/pod0f6d8c52-3a1b-4e5f-9c7d-2b8e4a6f1c30/{ID}"),
    ] {
        fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    fs::write(dir.path().join("cgroup.procs"), "1\n").expect("write file");
    dir
}

fn resolver(root: &Path) -> CgroupResolver {
    CgroupResolver::with_root(root, CgroupResolverConfig::default()).expect("resolver")
}

#[test]
fn resolves_real_inodes_of_a_tree() {
    let dir = tree();
    let mut r = resolver(dir.path());
    for rel in [
        "system.slice/nginx.service",
        "user.slice/user-0.slice/session-3.scope",
        "system.slice",
    ] {
        let got = r.resolve(ino(&dir.path().join(rel)), secs(0.0));
        assert_eq!(got.as_deref(), Some(format!("/{rel}").as_str()));
    }
    assert_eq!(r.resolve(ino(dir.path()), secs(0.0)).as_deref(), Some("/"));
    let stats = r.stats();
    assert_eq!(
        stats.rescans, 1,
        "one walk caches the whole tree: {stats:?}"
    );
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits, 3);
    assert_eq!(stats.cached, 11); // root + 10 directories; files are not cgroups
}

#[test]
fn container_context_is_parsed_once_per_id() {
    let dir = tree();
    let mut r = resolver(dir.path());
    let id = ino(&dir.path().join(format!("system.slice/docker-{ID}.scope")));
    let first = r.resolve_container(id, secs(0.0)).expect("resolves");
    assert_eq!(first.runtime, Runtime::Docker);
    assert_eq!(first.id.as_deref(), Some(ID));
    let second = r.resolve_container(id, secs(0.0)).expect("resolves");
    assert!(Arc::ptr_eq(&first, &second));

    let pod = ino(&dir.path().join(format!(
        "kubepods/burstable/pod0f6d8c52-3a1b-4e5f-9c7d-2b8e4a6f1c30/{ID}"
    )));
    let info = r.resolve_container(pod, secs(0.0)).expect("resolves");
    assert_eq!(
        info.pod_uid.as_deref(),
        Some("0f6d8c52-3a1b-4e5f-9c7d-2b8e4a6f1c30")
    );
    assert_eq!(r.resolve_container(u64::MAX, secs(5.0)), None);
}

#[test]
fn unknown_ids_are_remembered() {
    let dir = tree();
    let mut r = resolver(dir.path());
    assert_eq!(r.resolve(u64::MAX, secs(0.0)), None);
    assert_eq!(r.stats().rescans, 1);
    // Long after the interval, the same unknown id still costs no walk.
    for i in 0..1000 {
        assert_eq!(r.resolve(u64::MAX, secs(10.0 + f64::from(i))), None);
    }
    let stats = r.stats();
    assert_eq!(stats.rescans, 1, "{stats:?}");
    assert_eq!(stats.negative_hits, 1000);
}

#[test]
fn new_cgroups_resolve_after_the_interval() {
    let dir = tree();
    let mut r = resolver(dir.path());
    assert!(r.resolve(ino(dir.path()), secs(0.0)).is_some());
    let new_dir = dir.path().join("system.slice/redis.service");
    fs::create_dir(&new_dir).expect("mkdir");
    let id = ino(&new_dir);

    // The walk that cached the tree was too recent: no walk, and no verdict on the id yet.
    assert_eq!(r.resolve(id, secs(0.5)), None);
    assert_eq!(r.stats().throttled, 1);
    assert_eq!(
        r.resolve(id, secs(1.0)).as_deref(),
        Some("/system.slice/redis.service")
    );
    assert_eq!(r.stats().rescans, 2);
}

#[test]
fn ids_missed_while_throttled_are_settled_by_the_next_walk() {
    let dir = tree();
    let mut r = resolver(dir.path());
    assert_eq!(r.resolve(u64::MAX, secs(0.0)), None);
    for id in 1..=100 {
        assert_eq!(r.resolve(u64::MAX - id, secs(0.1)), None);
    }
    assert_eq!(r.resolve(u64::MAX - 1, secs(1.5)), None); // walks once, settles all 100
    for id in 1..=100 {
        assert_eq!(r.resolve(u64::MAX - id, secs(9.0)), None);
    }
    let stats = r.stats();
    assert_eq!(stats.rescans, 2, "{stats:?}");
    assert_eq!(stats.negative_hits, 100);
}

#[test]
fn a_tree_larger_than_the_cache_still_resolves_the_wanted_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..50 {
        fs::create_dir(dir.path().join(format!("g{i}"))).expect("mkdir");
    }
    let config = CgroupResolverConfig {
        capacity: 4,
        ..CgroupResolverConfig::default()
    };
    let mut r = CgroupResolver::with_root(dir.path(), config).expect("resolver");
    for i in [0, 17, 49] {
        let got = r.resolve(ino(&dir.path().join(format!("g{i}"))), secs(f64::from(i)));
        assert_eq!(got.as_deref(), Some(format!("/g{i}").as_str()));
    }
    assert_eq!(r.stats().cached, 4);
}

#[test]
fn never_leaves_the_root() {
    let dir = tree();
    let outside = tempfile::tempdir().expect("tempdir");
    fs::create_dir(outside.path().join("secret")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
    let mut r = resolver(dir.path());
    assert_eq!(
        r.resolve(ino(&outside.path().join("secret")), secs(0.0)),
        None
    );
    assert_eq!(r.resolve(ino(outside.path()), secs(5.0)), None);

    assert_eq!(
        r.id_of_path("/system.slice/nginx.service"),
        Some(ino(&dir.path().join("system.slice/nginx.service")))
    );
    assert_eq!(r.id_of_path("/"), Some(ino(dir.path())));
    assert_eq!(r.id_of_path("/link"), None);
    assert_eq!(r.id_of_path("/link/secret"), None);
    assert_eq!(r.id_of_path("/system.slice/../../"), None);
    assert_eq!(r.id_of_path("/cgroup.procs"), None);
    assert_eq!(r.id_of_path("/missing"), None);
}

#[test]
fn constructor_rejects_bad_roots() {
    let dir = tree();
    let missing =
        CgroupResolver::with_root(dir.path().join("missing"), CgroupResolverConfig::default());
    assert!(
        matches!(missing, Err(EnrichError::Read { .. })),
        "{missing:?}"
    );
    let file = CgroupResolver::with_root(
        dir.path().join("cgroup.procs"),
        CgroupResolverConfig::default(),
    );
    assert!(
        matches!(file, Err(EnrichError::NotADirectory { .. })),
        "{file:?}"
    );
}

/// Resolves this test process's own cgroup on the machine's cgroup2 mount.
#[test]
fn resolves_own_cgroup_on_the_real_mount() {
    let mut r = CgroupResolver::from_system(CgroupResolverConfig::default())
        .expect("no usable cgroup2 mount in /proc/self/mountinfo; this test needs one");
    let cgroup = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("no cgroup v2 line (0::) in /proc/self/cgroup");
    let dir = r.root().join(own.trim_start_matches('/'));
    let id = fs::metadata(&dir)
        .unwrap_or_else(|e| panic!("stat {}: {e}", dir.display()))
        .ino();
    assert_eq!(r.id_of_path(own), Some(id));
    assert_eq!(r.resolve(id, secs(0.0)).as_deref(), Some(own));
    let info = r
        .resolve_container(id, secs(0.0))
        .expect("own cgroup resolves");
    assert_eq!(info.cgroup, own);
}

#[test]
fn learns_a_new_cgroup_from_a_process_without_walking() {
    let dir = tree();
    let mut r = resolver(dir.path());
    // Known-missing first, so only learning (never a throttled walk) can find it.
    let fresh = dir.path().join("system.slice/fresh.service");
    fs::create_dir(&fresh).expect("mkdir");
    let id = ino(&fresh);
    assert!(!r.knows(id));

    // A fake /proc where pid 42 reports that cgroup, pid 43 another one.
    let proc_root = tempfile::tempdir().expect("tempdir");
    for (pid, path) in [(42, "/system.slice/fresh.service"), (43, "/user.slice")] {
        let piddir = proc_root.path().join(pid.to_string());
        fs::create_dir(&piddir).expect("mkdir");
        fs::write(piddir.join("cgroup"), format!("0::{path}\n")).expect("write");
    }
    let rescans = r.stats().rescans;
    assert!(
        !r.learn_from_pid(id, 43, proc_root.path()),
        "pid 43 is elsewhere"
    );
    assert!(
        !r.learn_from_pid(id, 44, proc_root.path()),
        "pid 44 does not exist"
    );
    assert!(r.learn_from_pid(id, 42, proc_root.path()));
    assert!(r.knows(id));
    assert_eq!(
        r.resolve(id, secs(0.0)).as_deref(),
        Some("/system.slice/fresh.service")
    );
    assert_eq!(
        r.stats().rescans,
        rescans,
        "learning must not walk the tree"
    );
}
