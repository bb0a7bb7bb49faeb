//! Bad input at the command line: clear errors and the documented exit statuses.

use std::process::Command;

fn nightjar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nightjar"))
}

#[test]
fn unknown_flag_exits_2() {
    let out = nightjar().args(["agent", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn unknown_config_key_exits_2_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, "groups: [file]\nringbuf: 4096\n").unwrap();
    let out = nightjar()
        .args(["agent", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ringbuf") && err.contains("agent.yaml"),
        "{err}"
    );
}

#[test]
fn bad_values_exit_2_with_the_value_named() {
    for (args, needle) in [
        (vec!["agent", "--type", "file_opne"], "file_opne"),
        (vec!["agent", "--groups", "netwrk"], "netwrk"),
        (vec!["agent", "--file-prefix", "etc/"], "etc/"),
        (vec!["agent", "--ringbuf-bytes", "5000"], "power of two"),
        (
            vec![
                "agent",
                "--xdp-interface",
                "lo",
                "--block",
                "10.9.0.0/16",
                "--block-audit",
                "10.9.1.1/16",
            ],
            "blocklist entry 10.9.0.0/16 is listed twice (as drop and as audit)",
        ),
        (
            vec![
                "agent",
                "--deny-connect",
                "10.9.0.0/16:443",
                "--audit-connect",
                "10.9.3.3/16:443",
            ],
            "connect rule 10.9.0.0/16:443 is listed twice (as deny and as audit)",
        ),
        (vec!["agent", "--block", "10.300.0.0/8"], "10.300.0.0/8"),
        (
            vec!["agent", "--flow-table-size", "10"],
            "flow table size 10",
        ),
    ] {
        let out = nightjar().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn blocklist_cli_names_a_missing_agent() {
    let out = nightjar()
        .args(["blocklist", "--socket", "/nonexistent/nj.sock", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/nj.sock") && err.contains("running?"),
        "{err}"
    );
}

#[test]
fn without_privileges_the_error_names_the_missing_capabilities() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_nightjar"))
        .args(["agent", "--no-metrics"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_malformed_metadata_file_exits_2_naming_file_and_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec: {ports: 7}\n",
    )
    .unwrap();
    let out = nightjar()
        .args(["agent", "--kube-metadata"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("Service shop/api"), "{err}");
}
