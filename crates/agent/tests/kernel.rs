//! Tier 1: the real agent binary with the real BPF programs, real processes in a cgroup the
//! test creates, and exact assertions on the JSON events it writes. Needs root (CI is root).

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Which build of the BPF programs a test runs (see nightjar_loader::KernelReads).
#[derive(Clone, Copy)]
enum KernelReads {
    Cast,
    ProbeRead,
}

impl KernelReads {
    /// Starts the agent with this build and checks, from its metrics, that it is the one loaded.
    fn start(self, extra: &[&str]) -> Agent {
        let (flag, mode): (&[&str], _) = match self {
            KernelReads::Cast => (&[], "kfunc_cast"),
            KernelReads::ProbeRead => (&["--probe-read"], "probe_read"),
        };
        let args: Vec<&str> = extra.iter().chain(flag).copied().collect();
        let agent = Agent::start(&args);
        let metrics = agent.metrics();
        assert!(
            metrics.contains(&format!("nightjar_bpf_kernel_reads{{mode=\"{mode}\"}} 1")),
            "expected the {mode} build (this kernel has bpf_rdonly_cast):\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("kernel_reads"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        agent
    }
}

fn trigger_path() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_nj-trigger"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn in_cgroup<'a>(events: &'a [Value], cg: &TestCgroup) -> Vec<&'a Value> {
    events.iter().filter(|e| e["cgroup_id"] == cg.id).collect()
}

#[test]
fn process_exec_fork_exit_with_ancestry_and_cgroup() {
    check_process_events(KernelReads::Cast);
}

/// The same, with the fallback build for kernels without bpf_rdonly_cast.
#[test]
fn process_exec_fork_exit_with_ancestry_and_cgroup_probe_read() {
    check_process_events(KernelReads::ProbeRead);
}

fn check_process_events(reads: KernelReads) {
    let _serial = serial();
    let agent = reads.start(&[]);
    let cg = TestCgroup::new("process");

    let mut exiter = cg
        .command(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["exit", "7"])
        .spawn()
        .unwrap();
    let exec_pid = exiter.id();
    assert_eq!(
        wait_within(&mut exiter, TRIGGER_LIMIT, "nj-trigger exit").code(),
        Some(7)
    );
    // A shell that forks a child inside the cgroup.
    let sh = cg
        .command("/bin/sh")
        .args(["-c", &format!("{} sleep-ms 1; exit 0", trigger_path())])
        .spawn()
        .unwrap();
    let sh_pid = sh.id();
    assert!(output_within(sh, TRIGGER_LIMIT, "sh -c nj-trigger")
        .status
        .success());
    // A process killed by a signal.
    let mut sleeper = cg.command("/bin/sleep").arg("30").spawn().unwrap();
    let sleeper_pid = sleeper.id();
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().unwrap();
    wait_within(&mut sleeper, TRIGGER_LIMIT, "the killed sleep");
    std::thread::sleep(Duration::from_millis(300));

    let events = agent.stop();
    let cg_events = in_cgroup(&events, &cg);
    assert!(!cg_events.is_empty(), "no events from the test cgroup");

    // exec: exact binary, argv, ppid, uid, cwd, cgroup attribution, parent from /proc seeding.
    let exec = one(&events, "process_exec", exec_pid);
    let process = &exec["process"];
    assert_eq!(process["pid"], exec_pid);
    assert_eq!(process["binary"], trigger_path());
    assert_eq!(
        process["args"],
        serde_json::json!([env!("CARGO_BIN_EXE_nj-trigger"), "exit", "7"])
    );
    assert_eq!(process["ppid"], std::process::id());
    assert_eq!(process["uid"], 0);
    assert_eq!(process["euid"], 0);
    assert_eq!(
        process["cwd"],
        std::env::current_dir().unwrap().to_string_lossy().as_ref()
    );
    assert!(process["start_time_ns"].as_u64().unwrap() > 0);
    assert_eq!(exec["parent"]["pid"], std::process::id());
    assert_eq!(exec["cgroup_id"], cg.id);
    let cgroup_name = cg.path.file_name().unwrap().to_string_lossy();
    assert_eq!(exec["container"]["runtime"], "host");
    assert_eq!(exec["container"]["cgroup"], format!("/{cgroup_name}"));
    // The cgroup's creation was reported, naming its id and path.
    let mkdir = events
        .iter()
        .find(|e| e["type"] == "cgroup_mkdir" && e["new_cgroup_id"] == cg.id)
        .expect("cgroup_mkdir for the test cgroup");
    assert_eq!(mkdir["path"], format!("/{cgroup_name}"));
    assert_eq!(mkdir["pid"], std::process::id());

    // exit with a code.
    let exit = one(&events, "process_exit", exec_pid);
    assert_eq!(exit["exit_code"], 7);
    assert!(exit.get("signal").is_none());
    assert_eq!(exit["process"]["binary"], trigger_path());

    // fork: the shell forked a child that then exec'd nj-trigger.
    let fork = one(&events, "process_fork", sh_pid);
    let child = fork["child_pid"].as_u64().unwrap() as u32;
    let child_exec = one(&events, "process_exec", child);
    assert_eq!(child_exec["process"]["ppid"], sh_pid);
    assert_eq!(child_exec["parent"]["pid"], sh_pid);
    assert_eq!(child_exec["parent"]["binary"], "/usr/bin/dash");
    assert_eq!(child_exec["ancestors"][0], std::process::id());

    // exit by signal.
    let killed = one(&events, "process_exit", sleeper_pid);
    assert_eq!(killed["signal"], "SIGKILL");
    assert!(killed.get("exit_code").is_none());
}

#[test]
fn file_events_with_resolved_paths_and_prefix_filter() {
    check_file_events(KernelReads::Cast);
}

/// The same, with the fallback build for kernels without bpf_rdonly_cast.
#[test]
fn file_events_with_resolved_paths_and_prefix_filter_probe_read() {
    check_file_events(KernelReads::ProbeRead);
}

/// Opens each of the two processes of `nj-trigger pingpong-open` makes.
const PINGPONG_OPENS: usize = 200;

fn check_file_events(reads: KernelReads) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let inside = base.join("in");
    let outside = base.join("out");
    std::fs::create_dir(&inside).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let writes_only = base.join("w");
    std::fs::create_dir(&writes_only).unwrap();
    let kept = writes_only.join("kept.txt");
    std::fs::write(&kept, b"x").unwrap();
    let inside_prefix = format!("{}/", inside.display());
    let write_prefix = format!("{}/", writes_only.display());
    // Top-level directories (of a chroot) whose names take each path of the kernel-side
    // compare: one word, two words, cut at 15 bytes, and too long to live in the dentry.
    let chroot = base.join("root");
    let top_names = [
        "abcdefghijk",
        "a-name-of-twenty-one",
        "a-directory-name-longer-than-the-dentry-inline-buffer",
    ];
    for name in top_names {
        std::fs::create_dir_all(chroot.join(name)).unwrap();
    }
    std::fs::create_dir_all(chroot.join("other")).unwrap();
    let top_prefixes: Vec<String> = top_names.iter().map(|n| format!("/{n}/")).collect();
    // On other mounts than the root's: /dev/shm is a tmpfs on /dev, a devtmpfs, so the walk to
    // the top directory crosses two mount points; its sibling directory stays unwatched.
    let shm = tempfile::Builder::new()
        .prefix("nj-kernel-test")
        .tempdir_in("/dev/shm")
        .unwrap();
    let shm_watched = shm.path().join("watched");
    let shm_other = shm.path().join("other");
    std::fs::create_dir(&shm_watched).unwrap();
    std::fs::create_dir(&shm_other).unwrap();
    let shm_prefix = format!("{}/", shm_watched.display());
    let mut flags = vec![
        "--file-prefix",
        "/etc/",
        "--file-prefix",
        &shm_prefix,
        "--file-prefix",
        &inside_prefix,
        "--file-write-prefix",
        &write_prefix,
    ];
    for prefix in &top_prefixes {
        flags.extend(["--file-prefix", prefix.as_str()]);
    }
    let agent = reads.start(&flags);
    let cg = TestCgroup::new("file");

    let a = inside.join("a.txt");
    let b = inside.join("b.txt");
    let (create_pid, fd) = cg.trigger(&["create", a.to_str().unwrap()]);
    assert!(fd >= 0);
    let (open_out_pid, _) = cg.trigger(&["create", outside.join("x").to_str().unwrap()]);
    let (etc_pid, _) = cg.trigger(&["open", "/etc/hostname"]);
    let (missing_pid, ret) = cg.trigger(&["open", "/etc/nightjar-does-not-exist"]);
    assert_eq!(ret, -2);
    // A relative path: the kernel resolves it against the cwd.
    let rel = cg
        .command(env!("CARGO_BIN_EXE_nj-trigger"))
        .current_dir(&inside)
        .args(["open", "a.txt"])
        .output()
        .unwrap();
    assert!(rel.status.success());
    let (w_read_pid, _) = cg.trigger(&["open", kept.to_str().unwrap()]);
    let (w_write_pid, _) = cg.trigger(&["create", kept.to_str().unwrap()]);
    // A phantom openat2: another thread flips open_how's flags between O_RDONLY and O_WRONLY
    // while the calls run; under the write-only prefix, exactly the write opens are reported.
    let (flip_pid, access_modes) = per_descriptor(
        &cg,
        &["openat2-flipping", "300", kept.to_str().unwrap()],
        300,
    );
    let (chmod_pid, _) = cg.trigger(&["chmod", a.to_str().unwrap(), "0o600"]);
    let (chown_pid, _) = cg.trigger(&["chown", a.to_str().unwrap(), "65534", "4294967295"]);
    let (rename_pid, _) = cg.trigger(&["rename", a.to_str().unwrap(), b.to_str().unwrap()]);
    let (unlink_pid, _) = cg.trigger(&["unlink", b.to_str().unwrap()]);
    // Relative paths: against the cwd, and against a directory descriptor (unlinkat).
    std::fs::write(inside.join("rel.txt"), b"x").unwrap();
    let rel_chmod_pid = trigger_in(&cg, &inside, &["chmod", "rel.txt", "0o600"]);
    let rel_rename_pid = trigger_in(&cg, &inside, &["rename", "rel.txt", "./moved.txt"]);
    let rel_unlink_pid = trigger_in(
        &cg,
        &base,
        &["unlinkat-in", inside.to_str().unwrap(), "moved.txt"],
    );
    // The same open through the 32-bit syscall ABI (int 0x80): another syscall table.
    let ia32_path = inside.join("ia32.txt");
    let (ia32_pid, ia32_fd) = cg.trigger(&["ia32-create", ia32_path.to_str().unwrap()]);
    assert!(ia32_fd >= 0, "int 0x80 open returned {ia32_fd}");
    let chroot_root = chroot.to_str().unwrap();
    let chroot_pids: Vec<(String, u32)> = top_names
        .iter()
        .map(|name| {
            let path = format!("/{name}/f");
            let (pid, fd) = cg.trigger(&["chroot-create", chroot_root, &path]);
            assert!(fd >= 0, "open of {path} in the chroot returned {fd}");
            (path, pid)
        })
        .collect();
    let (other_pid, fd) = cg.trigger(&["chroot-create", chroot_root, "/other/f"]);
    assert!(fd >= 0);
    // Deeper than the kernel walks (NJ_PATH_DEPTH, 48 components): the path comes back cut at
    // the top, where the prefix was, and must be reported (flagged), not dropped.
    let deep_dir = (0..50).fold(inside.clone(), |dir, _| dir.join("d"));
    std::fs::create_dir_all(&deep_dir).unwrap();
    let deep_file = deep_dir.join("f");
    let (deep_pid, fd) = cg.trigger(&["create", deep_file.to_str().unwrap()]);
    assert!(fd >= 0);
    // Exactly as deep as the walk goes: whole, and not flagged.
    let below_inside = 48 - (inside.components().count() - 1) - 1;
    let full_dir = (0..below_inside).fold(inside.clone(), |dir, _| dir.join("e"));
    std::fs::create_dir_all(&full_dir).unwrap();
    let full_file = full_dir.join("f");
    assert_eq!(full_file.components().count() - 1, 48);
    let (full_pid, fd) = cg.trigger(&["create", full_file.to_str().unwrap()]);
    assert!(fd >= 0);
    let shm_file = shm_watched.join("f");
    let (shm_pid, fd) = cg.trigger(&["create", shm_file.to_str().unwrap()]);
    assert!(fd >= 0);
    let shm_other_file = shm_other.join("f");
    let (shm_other_pid, fd) = cg.trigger(&["create", shm_other_file.to_str().unwrap()]);
    assert!(fd >= 0);
    // Two processes on one CPU taking turns to open: every open follows the other's syscalls,
    // so each must resolve against its own task (the kernel side remembers the last one).
    let pingpong_parent = inside.join("pingpong-parent");
    let pingpong_child = inside.join("pingpong-child");
    std::fs::create_dir(&pingpong_parent).unwrap();
    std::fs::create_dir(&pingpong_child).unwrap();
    let (pingpong_pid, pingpong_lines) = trigger_lines(
        &cg,
        &[
            "pingpong-open",
            &PINGPONG_OPENS.to_string(),
            pingpong_parent.to_str().unwrap(),
            pingpong_child.to_str().unwrap(),
        ],
    );
    let pingpong_child_pid: u32 = pingpong_lines[0].parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let events = agent.stop();

    for (pid, dir) in [
        (pingpong_pid, &pingpong_parent),
        (pingpong_child_pid, &pingpong_child),
    ] {
        let mut paths: Vec<String> = of(&events, "file_open", pid)
            .iter()
            .filter_map(|e| e["path"].as_str())
            .filter(|p| p.contains("/pingpong-"))
            .map(str::to_string)
            .collect();
        paths.sort();
        let mut expected: Vec<String> = (0..PINGPONG_OPENS)
            .map(|i| dir.join(format!("pingpong-{i}")).display().to_string())
            .collect();
        expected.sort();
        assert_eq!(paths, expected, "pid {pid}");
    }

    // The flipped openat2 calls: reported exactly when the kernel opened for writing.
    // (The loader's own opens under /etc come from the same process.)
    let flipped: Vec<_> = of(&events, "file_open", flip_pid)
        .into_iter()
        .filter(|e| e["path"] == kept.to_str().unwrap())
        .collect();
    let writes: Vec<i64> = access_modes
        .iter()
        .filter(|(_, mode)| *mode == "1")
        .map(|(&fd, _)| fd)
        .collect();
    assert!(
        !writes.is_empty() && writes.len() < access_modes.len(),
        "{access_modes:?}"
    );
    assert_eq!(flipped.len(), writes.len(), "{access_modes:?} {flipped:#?}");
    for event in flipped {
        let fd = event["ret"].as_i64().unwrap();
        assert_eq!(access_modes[&fd], "1", "{event}");
        assert_eq!(event["syscall"], "openat2");
        assert!(
            event["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "O_WRONLY"),
            "{event}"
        );
    }

    let deep_opens = of(&events, "file_open", deep_pid);
    assert!(
        deep_opens.iter().any(
            |e| e["path"].as_str().is_some_and(|p| p.ends_with("/d/d/f"))
                && e["event_flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "path_truncated"))
        ),
        "{deep_file:?}: {deep_opens:#?}"
    );
    let full_opens = of(&events, "file_open", full_pid);
    assert!(
        full_opens
            .iter()
            .any(|e| e["path"] == full_file.to_str().unwrap() && e.get("event_flags").is_none()),
        "{full_file:?}: {full_opens:#?}"
    );
    let shm_opens = of(&events, "file_open", shm_pid);
    assert!(
        shm_opens
            .iter()
            .any(|e| e["path"] == shm_file.to_str().unwrap()),
        "{shm_file:?} (across two mounts): {shm_opens:#?}"
    );
    assert!(
        of(&events, "file_open", shm_other_pid)
            .iter()
            .all(|e| e["path"] != shm_other_file.to_str().unwrap()),
        "{shm_other_file:?}, under no prefix, was reported"
    );

    // Paths are as the process sees them, from its root; each name length matched.
    for (path, pid) in &chroot_pids {
        let opens = of(&events, "file_open", *pid);
        assert!(
            opens.iter().any(|e| e["path"] == path.as_str()),
            "{path}: {opens:#?}"
        );
    }
    assert!(
        of(&events, "file_open", other_pid)
            .iter()
            .all(|e| e["path"] != "/other/f"),
        "an open under no prefix's top directory was reported"
    );

    // The dynamic loader's own opens (/etc/ld.so.cache) are reported too: pick ours.
    let creates: Vec<_> = of(&events, "file_open", create_pid)
        .into_iter()
        .filter(|e| e["path"] == a.to_str().unwrap())
        .collect();
    assert_eq!(creates.len(), 1, "{creates:#?}");
    let create = creates[0];
    assert_eq!(create["path"], a.to_str().unwrap());
    assert_eq!(create["syscall"], "openat");
    assert_eq!(create["ret"], fd);
    assert_eq!(
        create["flags"],
        serde_json::json!(["O_WRONLY", "O_CREAT", "O_TRUNC"])
    );
    assert_eq!(create["mode"], 0o640);
    assert_eq!(create["process"]["binary"], trigger_path());
    assert!(create.get("event_flags").is_none(), "{create}");
    let ia32 = of(&events, "file_open", ia32_pid)
        .into_iter()
        .find(|e| e["path"] == ia32_path.to_str().unwrap())
        .expect("the int 0x80 open reported");
    assert_eq!(ia32["syscall"], "open");
    assert_eq!(ia32["ret"], ia32_fd);
    assert_eq!(
        ia32["flags"],
        serde_json::json!(["O_WRONLY", "O_CREAT", "O_TRUNC"])
    );
    assert_eq!(ia32["mode"], 0o640);
    assert_eq!(ia32["event_flags"], serde_json::json!(["ia32_syscall"]));

    assert!(of(&events, "file_open", open_out_pid)
        .iter()
        .all(|e| !e["path"]
            .as_str()
            .unwrap()
            .starts_with(outside.to_str().unwrap())));
    let etc = of(&events, "file_open", etc_pid);
    assert!(etc
        .iter()
        .any(|e| e["path"] == "/etc/hostname" && e["flags"][0] == "O_RDONLY"));
    let missing = of(&events, "file_open", missing_pid);
    let missing = missing
        .iter()
        .find(|e| e["path"] == "/etc/nightjar-does-not-exist")
        .expect("failed open reported");
    assert_eq!(missing["error"], "ENOENT");
    assert_eq!(missing["ret"], -2);
    assert!(missing["flags"].as_array().is_some());
    let rel_open = events
        .iter()
        .find(|e| {
            e["type"] == "file_open" && e["path"] == a.to_str().unwrap() && e["pid"] != create_pid
        })
        .expect("relative open reported with its resolved path");
    assert_eq!(rel_open["ret"].as_i64().map(|r| r >= 0), Some(true));

    // Under a write-only prefix: the read is dropped in the kernel, the write reported.
    let kept_path = kept.to_str().unwrap();
    assert!(of(&events, "file_open", w_read_pid)
        .iter()
        .all(|e| e["path"] != kept_path));
    let w_write = of(&events, "file_open", w_write_pid);
    assert!(
        w_write
            .iter()
            .any(|e| e["path"] == kept_path && e["flags"][0] == "O_WRONLY"),
        "{w_write:#?}"
    );

    let chmod = one(&events, "file_chmod", chmod_pid);
    assert_eq!(chmod["path"], a.to_str().unwrap());
    assert_eq!(chmod["mode"], 0o600);
    assert_eq!(chmod["ret"], 0);
    let chown = one(&events, "file_chown", chown_pid);
    assert_eq!(chown["uid"], 65534);
    assert!(chown["gid"].is_null());
    let rename = one(&events, "file_rename", rename_pid);
    assert_eq!(rename["path"], a.to_str().unwrap());
    assert_eq!(rename["new_path"], b.to_str().unwrap());
    let unlink = one(&events, "file_unlink", unlink_pid);
    assert_eq!(unlink["path"], b.to_str().unwrap());
    assert_eq!(unlink["ret"], 0);

    // Relative paths come back joined to the directory the kernel resolved them against.
    let rel_txt = inside.join("rel.txt").display().to_string();
    let moved_txt = inside.join("moved.txt").display().to_string();
    assert_eq!(one(&events, "file_chmod", rel_chmod_pid)["path"], rel_txt);
    let rel_rename = one(&events, "file_rename", rel_rename_pid);
    assert_eq!(rel_rename["path"], rel_txt);
    assert_eq!(rel_rename["new_path"], moved_txt);
    let rel_unlink = one(&events, "file_unlink", rel_unlink_pid);
    assert_eq!(rel_unlink["syscall"], "unlinkat");
    assert_eq!(rel_unlink["path"], moved_txt);
    assert_eq!(rel_unlink["ret"], 0);
}

#[test]
fn privilege_and_system_events() {
    let _serial = serial();
    let agent = Agent::start(&[]);
    let agent_pid = agent.pid;
    let cg = TestCgroup::new("privilege");
    let mnt = tempfile::tempdir().unwrap();
    let mnt_path = std::fs::canonicalize(mnt.path()).unwrap();

    let (setuid_pid, ret) = cg.trigger(&["setuid", "65534"]);
    assert_eq!(ret, 0);
    let mut target = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let target_pid = target.id().to_string();
    let (ptrace_pid, ret) = cg.trigger(&["ptrace-attach", &target_pid]);
    assert_eq!(ret, 0);
    let (kill_pid, ret) = cg.trigger(&["kill", &target_pid, "15"]);
    assert_eq!(ret, 0);
    wait_within(
        &mut target,
        TRIGGER_LIMIT,
        "the ptraced sleep to die of SIGTERM",
    );
    let (mount_pid, ret) = cg.trigger(&["mount-tmpfs", mnt_path.to_str().unwrap()]);
    assert_eq!(ret, 0);
    let (umount_pid, ret) = cg.trigger(&["umount", mnt_path.to_str().unwrap()]);
    assert_eq!(ret, 0);
    let (module_pid, ret) = cg.trigger(&["finit-module"]);
    // EBADF where modules are supported, ENOSYS on a kernel built without them.
    assert!(ret == -9 || ret == -38, "finit_module returned {ret}");
    let (bpf_pid, _) = cg.trigger(&["bpf-next-id"]);
    let (memfd_pid, ret) = cg.trigger(&["memfd", "nj-fileless"]);
    assert!(ret >= 0);
    // A phantom memfd_create: another thread flips the name buffer while the calls run.
    let (flip_pid, kernel_names) = per_descriptor(
        &cg,
        &["memfd-flipping", "300", "nj-phantom-aa", "nj-phantom-bb"],
        300,
    );
    // And a phantom capset: the effective set in the buffer flips while the calls run.
    let (capset_pid, capset_calls) = capset_flipping(&cg, 200);
    let (unshare_pid, ret) = cg.trigger(&["unshare-uts"]);
    assert_eq!(ret, 0);
    // ia32's first setresuid takes 16-bit ids: 0xffff means "unchanged", as -1 does.
    let (uid16_pid, ret) = cg.trigger(&["ia32-setresuid16-keep"]);
    assert_eq!(ret, 0);
    // A 32-bit syscall whose number is a traced x86-64 syscall's (105, setuid) but which
    // ia32 does not trace (getitimer): sent to the x86-64 program, turned away there.
    let (getitimer_pid, ret) = cg.trigger(&["ia32-getitimer"]);
    // 0 here (the kernel skips the NULL copy-out); EFAULT on kernels that do not.
    assert!(
        ret == 0 || ret == -14,
        "getitimer(ITIMER_REAL, NULL) returned {ret}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let events = agent.stop();

    let setuid = one(&events, "cred_change", setuid_pid);
    assert_eq!(setuid["syscall"], "setuid");
    assert_eq!(setuid["ids"], serde_json::json!([65534]));
    assert_eq!(setuid["ret"], 0);
    let uid16 = one(&events, "cred_change", uid16_pid);
    assert_eq!(uid16["syscall"], "setresuid");
    assert_eq!(uid16["ids"], serde_json::json!([null, null, null]));
    assert_eq!(uid16["event_flags"], serde_json::json!(["ia32_syscall"]));
    assert_eq!(uid16["ret"], 0);
    assert!(
        of(&events, "cred_change", getitimer_pid).is_empty(),
        "ia32 getitimer reported as x86-64 setuid"
    );
    let ptrace = of(&events, "ptrace", ptrace_pid);
    let attach = ptrace
        .iter()
        .find(|e| e["request"] == "PTRACE_ATTACH")
        .expect("PTRACE_ATTACH reported");
    assert_eq!(attach["target_pid"].to_string(), target_pid);
    assert_eq!(attach["ret"], 0);
    let kill = one(&events, "kill", kill_pid);
    assert_eq!(kill["target_pid"].to_string(), target_pid);
    assert_eq!(kill["signal"], "SIGTERM");
    let mount = one(&events, "mount", mount_pid);
    assert_eq!(mount["source"], "nightjar-test");
    assert_eq!(mount["target"], mnt_path.to_str().unwrap());
    let umount = one(&events, "umount", umount_pid);
    assert_eq!(umount["target"], mnt_path.to_str().unwrap());
    // Syscalls are traced by number at sys_exit, so even a kernel built without module
    // support (this one: no finit_module tracepoint) reports the attempt, refused with ENOSYS.
    let module = one(&events, "module_load", module_pid);
    assert_eq!(module["syscall"], "finit_module");
    let modules_built_in =
        std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_exit_finit_module").exists();
    assert_eq!(
        module["error"],
        if modules_built_in { "EBADF" } else { "ENOSYS" }
    );
    assert_eq!(module["fd"], -1);
    let bpf = of(&events, "bpf", bpf_pid);
    assert!(bpf.iter().any(|e| e["command"] == "BPF_PROG_GET_NEXT_ID"));
    let memfd = one(&events, "memfd_create", memfd_pid);
    assert_eq!(memfd["name"], "nj-fileless");
    // Each flipped call names what the kernel named the file, not what the buffer held later.
    let flipped = of(&events, "memfd_create", flip_pid);
    assert_eq!(flipped.len(), kernel_names.len());
    for event in flipped {
        let fd = event["ret"].as_i64().unwrap();
        assert_eq!(event["name"], kernel_names[&fd], "{event}");
    }
    // Each capset names the set the thread had after it, call for call.
    let mut capsets = of(&events, "cred_change", capset_pid);
    capsets.sort_by_key(|e| e["ktime_ns"].as_u64());
    assert_eq!(capsets.len(), capset_calls.len());
    for (event, &(ret, effective)) in capsets.iter().zip(&capset_calls) {
        assert_eq!(event["syscall"], "capset");
        assert_eq!(event["ret"], ret);
        assert_eq!(caps(&event["cap_effective"]), effective, "{event}");
        assert!(
            caps(&event["cap_permitted"]) & effective == effective,
            "{event}"
        );
    }
    assert!(capset_calls.iter().all(|&(ret, _)| ret == 0));
    let unshare = one(&events, "namespace", unshare_pid);
    assert_eq!(unshare["syscall"], "unshare");
    assert_eq!(unshare["namespaces"], serde_json::json!(["uts"]));
    // The agent's own syscalls (it calls bpf() all the time) are never reported.
    let own = events
        .iter()
        .filter(|e| e["pid"] == agent_pid && e["type"] != "process_exit")
        .count();
    assert_eq!(own, 0, "the agent reported its own syscalls");
}

#[test]
fn network_syscalls_with_addresses() {
    check_network_syscalls(KernelReads::Cast);
}

/// The same, with the fallback build for kernels without bpf_rdonly_cast.
#[test]
fn network_syscalls_with_addresses_probe_read() {
    check_network_syscalls(KernelReads::ProbeRead);
}

fn check_network_syscalls(reads: KernelReads) {
    let _serial = serial();
    let agent = reads.start(&[]);
    // Starting it scraped /metrics: connections the agent itself accepted.
    let metrics_port = agent.metrics_port;
    let cg = TestCgroup::new("network");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connect_pid, ret) = cg.trigger(&["connect", &format!("127.0.0.1:{port}")]);
    assert_eq!(ret, 0);
    let listener6 = std::net::TcpListener::bind("[::1]:0").unwrap();
    let port6 = listener6.local_addr().unwrap().port();
    let (connect6_pid, ret) = cg.trigger(&["connect", &format!("[::1]:{port6}")]);
    assert_eq!(ret, 0);
    // A 32-bit program's connect through socketcall, ia32's multiplexed socket entry.
    let (socketcall_pid, ret) = cg.trigger(&["ia32-socketcall-connect", &port.to_string()]);
    assert_eq!(ret, 0);
    let closed_port = free_port();
    let (refused_pid, ret) = cg.trigger(&["connect", &format!("127.0.0.1:{closed_port}")]);
    assert_eq!(ret, -111);
    // Fails before any packet (no TCP to a multicast address): sock_ops never closes the
    // socket, so the agent forgets the connect hook's announcement by this event's cookie.
    let (unreachable_pid, ret) = cg.trigger(&["connect", "224.0.0.1:9"]);
    assert_eq!(ret, -101);
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("s.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let (unix_pid, ret) = cg.trigger(&["connect-unix", sock_path.to_str().unwrap()]);
    assert_eq!(ret, 0);
    // Phantom connects: another thread rewrites the address buffer to a decoy while connect
    // blocks (full accept queue); the kernel connects where the buffer first pointed.
    let phantom_port = free_port();
    let (phantom_pid, ret) = cg.trigger(&[
        "connect-rewritten",
        &format!("127.0.0.1:{phantom_port}"),
        &format!("127.0.0.2:{}", free_port()),
    ]);
    assert_eq!(ret, 0);
    // A UDP socket bound to port 0: the kernel picks the port.
    let (udp_pid, ret) = cg.trigger(&["udp-send", &format!("127.0.0.1:{}", free_port()), "1", "1"]);
    assert_eq!(ret, 1);
    let phantom_path = sock_dir.path().join("phantom.sock");
    let decoy_path = sock_dir.path().join("decoy.sock");
    let (phantom_unix_pid, ret) = cg.trigger(&[
        "connect-unix-rewritten",
        phantom_path.to_str().unwrap(),
        decoy_path.to_str().unwrap(),
    ]);
    assert_eq!(ret, 0);

    // A connection queued on a listener that closed without accepting it.
    let (_, unaccepted_port) = cg.trigger(&["unaccepted", "127.0.0.1:0"]);
    assert!(unaccepted_port > 0);

    // A server inside the cgroup: bind, listen, accept.
    let server_port = free_port();
    let server = cg
        .command(env!("CARGO_BIN_EXE_nj-trigger"))
        .args(["serve-once", &format!("127.0.0.1:{server_port}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let server_pid = server.id();
    let client = loop {
        match std::net::TcpStream::connect(("127.0.0.1", server_port)) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let client_port = client.local_addr().unwrap().port();
    assert!(output_within(server, TRIGGER_LIMIT, "the accepting server")
        .status
        .success());
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    let events = agent.stop();

    let connect = one(&events, "sock_connect", connect_pid);
    assert_eq!(connect["remote"]["family"], "inet");
    assert_eq!(connect["remote"]["addr"], "127.0.0.1");
    assert_eq!(connect["remote"]["port"], port);
    assert_eq!(connect["local"]["addr"], "127.0.0.1");
    assert!(connect["local"]["port"].as_u64().unwrap() > 0);
    assert_eq!(connect["sock_type"], "stream");
    assert_eq!(connect["protocol"], "tcp");
    assert_eq!(connect["ret"], 0);
    // The agent's own connections are never reported (its metrics server accepted some).
    let own: Vec<_> = events
        .iter()
        .filter(|e| {
            e["type"].as_str().is_some_and(|t| t.starts_with("tcp_"))
                && e["local"]["port"] == metrics_port
        })
        .collect();
    assert!(own.is_empty(), "{own:#?}");
    // Nobody accepted it: reported at its close, without an owner, in the listener's cgroup.
    let unaccepted: Vec<_> = events
        .iter()
        .filter(|e| e["direction"] == "inbound" && e["local"]["port"] == unaccepted_port)
        .collect();
    assert_eq!(unaccepted.len(), 1, "{unaccepted:#?}");
    let orphan = unaccepted[0];
    assert_eq!(orphan["type"], "tcp_close", "{orphan}");
    assert_eq!(orphan["owner"], "unknown", "{orphan}");
    assert_eq!(orphan["pid"], 0, "{orphan}");
    assert_eq!(orphan["cgroup_id"], cg.id, "{orphan}");
    assert_eq!(orphan["previous_state"], "established", "{orphan}");
    let socketcall = one(&events, "sock_connect", socketcall_pid);
    assert_eq!(socketcall["syscall"], "connect");
    assert_eq!(socketcall["remote"]["addr"], "127.0.0.1");
    assert_eq!(socketcall["remote"]["port"], port);
    assert_eq!(socketcall["ret"], 0);
    assert_eq!(
        socketcall["event_flags"],
        serde_json::json!(["ia32_syscall"])
    );
    assert!(connect.get("event_flags").is_none(), "{connect}");
    let connect6 = one(&events, "sock_connect", connect6_pid);
    assert_eq!(connect6["remote"]["family"], "inet6");
    assert_eq!(connect6["remote"]["addr"], "::1");
    assert_eq!(connect6["remote"]["port"], port6);
    let refused = one(&events, "sock_connect", refused_pid);
    assert_eq!(refused["error"], "ECONNREFUSED");
    assert_eq!(refused["remote"]["port"], closed_port);
    let unreachable = one(&events, "sock_connect", unreachable_pid);
    assert_eq!(unreachable["error"], "ENETUNREACH", "{unreachable}");
    assert!(
        unreachable["cookie"].as_u64().unwrap_or(0) > 0,
        "{unreachable}"
    );
    let unix = one(&events, "sock_connect", unix_pid);
    assert_eq!(unix["remote"]["family"], "unix");
    assert_eq!(unix["remote"]["path"], sock_path.to_str().unwrap());

    // Both connects of each phantom trigger (the one filling the queue, the rewritten one)
    // name the address connected to, never the decoy.
    let phantoms = of(&events, "sock_connect", phantom_pid);
    assert_eq!(phantoms.len(), 2, "{phantoms:#?}");
    for phantom in phantoms {
        assert_eq!(phantom["remote"]["addr"], "127.0.0.1", "{phantom}");
        assert_eq!(phantom["remote"]["port"], phantom_port, "{phantom}");
        assert_eq!(phantom["ret"], 0);
    }
    let phantoms = of(&events, "sock_connect", phantom_unix_pid);
    assert_eq!(phantoms.len(), 2, "{phantoms:#?}");
    for phantom in phantoms {
        assert_eq!(phantom["remote"]["family"], "unix", "{phantom}");
        assert_eq!(phantom["remote"]["path"], phantom_path.to_str().unwrap());
        assert_eq!(phantom["ret"], 0);
    }

    // The bound port, not the 0 passed.
    let udp_bind = one(&events, "sock_bind", udp_pid);
    assert_eq!(udp_bind["local"]["addr"], "0.0.0.0");
    assert!(
        udp_bind["local"]["port"].as_u64().unwrap() > 0,
        "{udp_bind}"
    );
    assert_eq!(udp_bind["protocol"], "udp");

    let bind = one(&events, "sock_bind", server_pid);
    assert_eq!(bind["local"]["port"], server_port);
    let listen = one(&events, "sock_listen", server_pid);
    assert_eq!(listen["local"]["port"], server_port);
    assert!(listen["backlog"].as_u64().unwrap() > 0);
    let accept = of(&events, "sock_accept", server_pid);
    let accept = accept
        .iter()
        .find(|e| e["ret"].as_i64().unwrap() >= 0)
        .expect("accept");
    assert_eq!(accept["remote"]["port"], client_port);
    assert_eq!(accept["local"]["port"], server_port);
    assert_eq!(accept["remote"]["addr"], "127.0.0.1");
}

/// Runs nj-trigger with `args` in `cg`, in `cwd` when given; returns its pid and everything
/// it printed.
fn run_trigger(cg: &TestCgroup, cwd: Option<&std::path::Path>, args: &[&str]) -> (u32, String) {
    let mut command = cg.command(env!("CARGO_BIN_EXE_nj-trigger"));
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let child = command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = output_within(child, TRIGGER_LIMIT, &format!("nj-trigger {args:?}"));
    assert!(out.status.success(), "{out:?}");
    (pid, String::from_utf8(out.stdout).unwrap())
}

/// Runs an nj-trigger action in `cg` with `dir` as its cwd, which must return 0; returns its
/// pid.
fn trigger_in(cg: &TestCgroup, dir: &std::path::Path, args: &[&str]) -> u32 {
    let (pid, stdout) = run_trigger(cg, Some(dir), args);
    assert_eq!(stdout.trim(), "0", "{args:?}");
    pid
}

/// Runs nj-trigger with `args` in `cg`; returns its pid and the lines it printed before the
/// last (which is the result `TestCgroup::trigger` parses).
fn trigger_lines(cg: &TestCgroup, args: &[&str]) -> (u32, Vec<String>) {
    let (pid, stdout) = run_trigger(cg, None, args);
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    lines.pop();
    (pid, lines)
}

/// Runs an nj-trigger action that prints "fd value" per descriptor it made (`count` of them)
/// in `cg`; returns its pid and the value of each descriptor.
fn per_descriptor(cg: &TestCgroup, args: &[&str], count: usize) -> (u32, HashMap<i64, String>) {
    let (pid, lines) = trigger_lines(cg, args);
    let values: HashMap<i64, String> = lines
        .iter()
        .filter_map(|line| line.split_once(' '))
        .map(|(fd, value)| (fd.parse().unwrap(), value.to_string()))
        .collect();
    assert_eq!(values.len(), count, "{lines:?}");
    (pid, values)
}

/// Runs `nj-trigger capset-flipping` (`count` calls) in `cg`; returns its pid and, per call
/// in order, its result and the effective set the thread had after it.
fn capset_flipping(cg: &TestCgroup, count: usize) -> (u32, Vec<(i64, u64)>) {
    let (pid, lines) = trigger_lines(cg, &["capset-flipping", &count.to_string()]);
    let calls: Vec<(i64, u64)> = lines
        .iter()
        .filter_map(|line| line.split_once(' '))
        .map(|(ret, caps)| (ret.parse().unwrap(), u64::from_str_radix(caps, 16).unwrap()))
        .collect();
    assert_eq!(calls.len(), count, "{lines:?}");
    (pid, calls)
}

/// A capability set as events write it ("0x1ff...").
fn caps(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a capability set: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// Ids of BPF objects (`prog_id` or `map_id`) a process holds, from its fdinfo: exactly what
/// one agent loaded, even when other agents (or benchmarks) run beside the test.
fn held_ids(pid: u32, field: &str) -> std::collections::BTreeSet<u32> {
    let mut ids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(id) = line.strip_prefix(field).and_then(|v| v.trim().parse().ok()) {
                ids.insert(id);
            }
        }
    }
    ids
}

/// (id, name, map ids) of every BPF program loaded.
fn loaded_programs() -> Vec<(u32, String, Vec<u32>)> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bpftool prog list failed");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|p| {
            let maps = p["map_ids"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|v| v.as_u64())
                        .map(|v| v as u32)
                        .collect()
                })
                .unwrap_or_default();
            (
                p["id"].as_u64().unwrap() as u32,
                p["name"].as_str().unwrap_or("").to_string(),
                maps,
            )
        })
        .collect()
}

#[test]
fn detach_leaves_nothing_behind() {
    let _serial = serial();
    let pins_before: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.count())
        .into_iter()
        .collect();
    let agent = Agent::start(&[]);
    let metrics = agent.metrics();
    let programs = held_ids(agent.pid, "prog_id:");
    let maps = held_ids(agent.pid, "map_id:");
    let attached: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nightjar_programs_attached "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no nightjar_programs_attached in {metrics}"));
    assert!(attached >= 35, "only {attached} programs attached");
    assert_eq!(
        programs.len(),
        attached,
        "the agent holds {} programs, reports {attached}",
        programs.len()
    );
    let loaded = loaded_programs();
    for id in &programs {
        let (_, name, _) = loaded
            .iter()
            .find(|(p, _, _)| p == id)
            .unwrap_or_else(|| panic!("program {id} not in bpftool prog list"));
        assert!(name.starts_with("nj_"), "program {id} is {name}");
    }
    agent.stop();
    // Nothing of that agent remains: not its programs, nor any program using its maps. A
    // detached raw tracepoint link lets go of its program only after an RCU grace period, so
    // the kernel gets a few seconds to finish freeing before the check.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let agents_own = |(id, _, program_maps): &(u32, String, Vec<u32>)| {
        programs.contains(id) || program_maps.iter().any(|m| maps.contains(m))
    };
    while loaded_programs().iter().any(agents_own) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (id, name, program_maps) in loaded_programs() {
        assert!(
            !programs.contains(&id),
            "{name} ({id}) left behind after SIGINT"
        );
        assert!(
            !program_maps.iter().any(|m| maps.contains(m)),
            "{name} ({id}) still uses the agent's maps"
        );
    }
    let pins_after: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert_eq!(pins_before, pins_after, "pins left behind in /sys/fs/bpf");
}

/// Each thread of `pid` by name, with its scheduling policy.
fn thread_policies(pid: u32) -> Vec<(String, i32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let tid: i32 = path.file_name()?.to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            // SAFETY: a query on a thread id; -1 (exited) is filtered out.
            let policy = unsafe { libc::sched_getscheduler(tid) };
            (policy >= 0).then(|| (comm.trim().to_string(), policy))
        })
        .collect()
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

fn wait_for_metric(agent: &Agent, line: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !agent.metrics().lines().any(|l| l == line) {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{line}` within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The adaptive CPU priority: idle while keeping up, normal when starved, idle again after.
#[test]
fn agent_yields_the_cpu_and_claims_it_back_when_starved() {
    let _serial = serial();
    let agent = Agent::start(&[]);
    wait_for_metric(
        &agent,
        "nightjar_agent_cpu_policy{mode=\"idle\"} 1",
        Duration::from_secs(5),
    );
    let threads = thread_policies(agent.pid);
    assert!(threads.len() >= 3, "{threads:?}");
    for (name, policy) in &threads {
        let expected = if name == "nj-cpu-watchdog" {
            libc::SCHED_OTHER
        } else {
            libc::SCHED_IDLE
        };
        assert_eq!(*policy, expected, "thread {name}: {threads:?}");
    }

    // Busy loops at normal priority on every CPU leave an idle-priority drain no CPU time.
    let hogs = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    let spinners: Vec<_> = (0..hogs)
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    for spinner in spinners {
        spinner.join().unwrap();
    }
    let metrics = agent.metrics();
    assert!(
        metric(&metrics, "nightjar_agent_cpu_policy_promotions_total") >= 1,
        "never promoted while starved:\n{metrics}"
    );
    // Calm again: back to idle within the first calm period (2 s) plus margin.
    wait_for_metric(
        &agent,
        "nightjar_agent_cpu_policy{mode=\"idle\"} 1",
        Duration::from_secs(10),
    );
    assert!(thread_policies(agent.pid)
        .iter()
        .any(|(name, policy)| name != "nj-cpu-watchdog" && *policy == libc::SCHED_IDLE));
    agent.stop();

    let agent = Agent::start(&["--cpu-priority", "normal"]);
    wait_for_metric(
        &agent,
        "nightjar_agent_cpu_policy{mode=\"normal\"} 1",
        Duration::from_secs(5),
    );
    let threads = thread_policies(agent.pid);
    assert!(
        threads
            .iter()
            .all(|(_, policy)| *policy == libc::SCHED_OTHER),
        "{threads:?}"
    );
    assert!(!threads.iter().any(|(name, _)| name == "nj-cpu-watchdog"));
    agent.stop();
}

/// The benchmark's hook floor (nj-hook-floor) attaches exactly one empty program to the
/// sys_exit raw tracepoint, the agent's syscall hook, and takes it away on SIGINT.
#[test]
fn hook_floor_attaches_one_program_to_sys_exit_and_detaches() {
    use std::io::BufRead;

    let _serial = serial();
    let mut floor = Command::new(env!("CARGO_BIN_EXE_nj-hook-floor"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(floor.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "attached");
    let programs = held_ids(floor.id(), "prog_id:");
    assert_eq!(programs.len(), 1, "nj-hook-floor holds {programs:?}");
    let id = *programs.iter().next().unwrap();
    let name = loaded_programs()
        .into_iter()
        .find(|(p, _, _)| *p == id)
        .map(|(_, name, _)| name);
    assert_eq!(name.as_deref(), Some("nj_bench_hook_floor"));
    let out = Command::new("bpftool")
        .args(["-j", "link", "list"])
        .output()
        .unwrap();
    let links: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let link = links
        .iter()
        .find(|l| l["prog_id"].as_u64() == Some(u64::from(id)))
        .unwrap_or_else(|| panic!("no link for program {id} in {links:?}"));
    assert_eq!(link["type"], "raw_tracepoint");
    assert_eq!(link["tp_name"], "sys_exit");

    // SAFETY: kill sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(floor.id() as i32, libc::SIGINT) }, 0);
    assert!(floor.wait().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while loaded_programs().iter().any(|(p, _, _)| *p == id) {
        assert!(
            std::time::Instant::now() < deadline,
            "program {id} left behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
