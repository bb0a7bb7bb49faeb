//! Tier 2: the README's main command. `nightjar demo` runs the agent while its workload runs
//! in a cgroup of its own, and prints that workload's events: every step must show up.

mod support;

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_prints_the_workloads_events() {
    let _serial = support::serial();
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .arg("demo")
        .env("RUST_LOG", "error")
        .output()
        .expect("run nightjar demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let has = |pred: &dyn Fn(&Value) -> bool| events.iter().any(pred);

    // Every event belongs to the demo's cgroup and carries its process.
    let cgroup = events[0]["container"]["cgroup"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cgroup.starts_with("/nightjar-demo-"), "{cgroup}");
    assert!(events
        .iter()
        .all(|e| e["container"]["cgroup"] == cgroup.as_str()));
    assert!(
        events.iter().all(|e| e.get("process").is_some()),
        "unattributed event"
    );
    // ...and its pod: the demo's metadata file makes the workload a one-replica Deployment
    // behind a Service, so every event names them, with the pod critical to the service.
    for e in &events {
        let k = &e["kubernetes"];
        assert_eq!(k["pod"], "demo-web-6d5f8-x1y2z", "{e}");
        assert_eq!(k["container"], "web", "{e}");
        assert_eq!(k["workload"]["kind"], "Deployment", "{e}");
        assert_eq!(k["workload"]["name"], "demo-web", "{e}");
        assert_eq!(k["services"][0]["name"], "demo-web", "{e}");
        assert_eq!(k["services"][0]["importance"]["level"], "critical", "{e}");
    }

    assert!(has(&|e| e["type"] == "file_open"
        && e["path"] == "/etc/shadow"
        && e["ret"].as_i64() >= Some(0)));
    assert!(has(&|e| e["type"] == "file_open"
        && e["path"] == "/etc/shadow"
        && e["error"] == "EACCES"
        && e["process"]["uid"] == 65534));
    assert!(has(
        &|e| e["type"] == "process_exec" && e["process"]["binary"] == "/usr/bin/ls"
    ));
    assert!(has(&|e| e["type"] == "file_chmod" && e["mode"] == 0o755));
    assert!(has(&|e| e["type"] == "file_rename"
        && e["new_path"].as_str().unwrap_or("").ends_with("renamed.sh")));
    assert!(has(&|e| e["type"] == "file_unlink"));
    assert!(has(
        &|e| e["type"] == "sock_listen" && e["local"]["addr"] == "127.0.0.1"
    ));
    assert!(has(&|e| e["type"] == "sock_connect"
        && e["remote"]["addr"] == "127.0.0.1"
        && e["ret"] == 0));
    assert!(has(&|e| e["type"] == "sock_accept"));
    assert!(has(&|e| e["type"] == "kill" && e["signal"] == "SIGTERM"));
    assert!(has(
        &|e| e["type"] == "process_exit" && e["signal"] == "SIGTERM"
    ));
    assert!(has(
        &|e| e["type"] == "memfd_create" && e["name"] == "nightjar-demo"
    ));
    assert!(has(
        &|e| e["type"] == "cred_change" && e["syscall"] == "setresuid"
    ));
}

#[test]
fn doctor_reports_the_kernel_and_its_fallbacks() {
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .arg("doctor")
        .output()
        .expect("run nightjar doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for probe in [
        "btf",
        "ringbuf",
        "tracepoint",
        "fentry",
        "bpf_lsm",
        "tcx",
        "lpm_trie",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(probe)),
            "no {probe} line in:\n{text}"
        );
    }
    assert!(
        text.contains("ready: everything the agent requires is available"),
        "{text}"
    );
    // Where context would come from: cgroup v2 here (container attribution).
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("yes") && l.contains("cgroup2")),
        "{text}"
    );
    // Where fentry is refused (this kernel's lockdown), the fallback must be named.
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("no") && l.contains("fentry"))
    {
        assert!(text.contains("the sys_exit raw tracepoint"), "{text}");
    }
}
