//! Container context from a cgroup v2 path.
//!
//! Every container runtime names the cgroup of a container after the container id, but each in
//! its own way, and Kubernetes adds the pod UID to a parent directory. This module reads those
//! conventions; it does no I/O, so it is cheap to call and easy to test.
//!
//! Choices worth knowing:
//! - The *outermost* container-looking component wins: a container may create cgroups of its
//!   own below its root (`.../docker-<id>.scope/init.scope`, CRI-O's `.../crio-<id>.scope/container`),
//!   and the id the host runtime knows is the outer one.
//! - A bare 64-hex directory under `kubepods` is reported as [`Runtime::Unknown`]: containerd's
//!   cgroupfs driver and docker (cri-dockerd) lay out exactly the same path, so the path alone
//!   cannot tell them apart. The id and pod UID are still filled in.
//! - Conmon (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) is the runtime's monitor
//!   process, which runs on the host but is accounted to the pod. It is reported as
//!   [`Runtime::Host`] with the scope as `unit`, no container id, and the pod UID when the path
//!   has one, so a policy never attributes conmon's own actions to the container it watches.

use nightjar_core::{ContainerInfo, Runtime};

/// Length of a full container id (sha256 in hex) in cgroup names.
const CONTAINER_ID_LEN: usize = 64;

/// Runtime-specific prefixes of a container's cgroup (with or without a `.scope` suffix).
const RUNTIME_PREFIXES: &[(&str, Runtime)] = &[
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
];

/// Prefixes of the runtime monitor's cgroup, which is not the container itself.
const CONMON_PREFIXES: &[&str] = &["crio-conmon-", "libpod-conmon-"];

/// Suffixes of systemd unit names that own a cgroup.
const UNIT_SUFFIXES: &[&str] = &[".service", ".scope", ".slice", ".socket", ".mount", ".swap"];

/// Maps a cgroup v2 path, relative to the cgroup2 mount, to the container (or host unit) it
/// belongs to. Never fails: a path it does not recognise is a host path without a unit.
///
/// ```
/// use nightjar_core::Runtime;
/// let c = nightjar_enrich::parse_cgroup_path(
///     "/system.slice/docker-8f3c1a9e2b7d4c6f0e5a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcd.scope",
/// );
/// assert_eq!(c.runtime, Runtime::Docker);
/// ```
pub fn parse_cgroup_path(path: &str) -> ContainerInfo {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let under_kubepods = comps.iter().any(|c| c.contains("kubepods"));
    // Only look for a pod UID under kubepods, so a host unit that happens to start with
    // "pod" is never mistaken for a pod.
    let pod_uid = if under_kubepods {
        comps.iter().find_map(|c| pod_uid_of(c))
    } else {
        None
    };
    let info = |id: Option<&str>, runtime: Runtime, unit: Option<&str>| ContainerInfo {
        id: id.map(str::to_owned),
        runtime,
        pod_uid: pod_uid.clone(),
        unit: unit.map(str::to_owned),
        cgroup: path.to_owned(),
    };

    for (i, comp) in comps.iter().enumerate() {
        if CONMON_PREFIXES.iter().any(|p| comp.starts_with(p)) {
            return info(None, Runtime::Host, Some(comp));
        }
        if let Some((runtime, id)) = prefixed_container(comp) {
            return info(Some(id), runtime, None);
        }
        if is_container_id(comp) {
            let runtime = if i > 0 && comps[i - 1] == "docker" {
                Runtime::Docker
            } else if under_kubepods {
                Runtime::Unknown
            } else if i == 1 && is_containerd_namespace(comps[0]) {
                // containerd outside Kubernetes: /<namespace>/<id>.
                Runtime::Containerd
            } else {
                Runtime::Unknown
            };
            return info(Some(comp), runtime, None);
        }
    }

    if pod_uid.is_some() {
        // Inside a pod's cgroup but not in any container: not a host process either.
        return info(None, Runtime::Unknown, None);
    }
    let unit = comps.iter().rev().find(|c| is_unit_name(c)).copied();
    info(None, Runtime::Host, unit)
}

/// `cri-containerd-<id>.scope`, `crio-<id>`, `docker-<id>.scope`, `libpod-<id>.scope`...
fn prefixed_container(comp: &str) -> Option<(Runtime, &str)> {
    let stem = comp.strip_suffix(".scope").unwrap_or(comp);
    RUNTIME_PREFIXES.iter().find_map(|(prefix, runtime)| {
        stem.strip_prefix(prefix)
            .filter(|id| is_container_id(id))
            .map(|id| (*runtime, id))
    })
}

/// The pod UID in `pod<uid>` (cgroupfs driver) or `kubepods-<qos>-pod<uid_with_underscores>.slice`
/// (systemd driver, which cannot use `-` inside a name component). Returned with dashes.
fn pod_uid_of(comp: &str) -> Option<String> {
    let raw = match comp.strip_suffix(".slice") {
        Some(stem) => stem.rsplit_once("-pod").map(|(_, uid)| uid)?,
        None => comp.strip_prefix("pod")?,
    };
    // UIDs are UUIDs, or 32 hex for static pods (a hash of the manifest).
    let valid = (32..=36).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    valid.then(|| raw.replace('_', "-"))
}

/// A full container id: exactly 64 hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == CONTAINER_ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// containerd namespace names: alphanumerics separated by single `.`, `_` or `-`. Systemd
/// slices and the `kubepods`/`docker` trees also match that grammar, so they are excluded.
fn is_containerd_namespace(s: &str) -> bool {
    if is_unit_name(s) || s.contains("kubepods") || s == "docker" {
        return false;
    }
    let mut prev_sep = true; // a name may not start with a separator
    for b in s.bytes() {
        let sep = matches!(b, b'.' | b'_' | b'-');
        if !(sep || b.is_ascii_alphanumeric()) || (sep && prev_sep) {
            return false;
        }
        prev_sep = sep;
    }
    !prev_sep
}

fn is_unit_name(s: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|suffix| s.len() > suffix.len() && s.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e8c9a2b3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";
    const UID: &str = "0f6d8c52-3a1b-4e5f-9c7d-2b8e4a6f1c30";
    const UID_SD: &str = "0f6d8c52_3a1b_4e5f_9c7d_2b8e4a6f1c30";
    const STATIC_UID: &str = "6d0b9f6e5ac8d2ae0b3c0d1a3e5a1e3c";

    struct Case {
        path: String,
        id: Option<&'static str>,
        runtime: Runtime,
        pod: Option<&'static str>,
        unit: Option<&'static str>,
    }

    fn case(
        path: String,
        id: Option<&'static str>,
        runtime: Runtime,
        pod: Option<&'static str>,
        unit: Option<&'static str>,
    ) -> Case {
        Case {
            path,
            id,
            runtime,
            pod,
            unit,
        }
    }

    #[test]
    fn every_known_layout() {
        use Runtime::*;
        let conmon = format!("crio-conmon-{ID}.scope");
        let cases = [
            // containerd / cri-dockerd, cgroupfs driver: runtime not named in the path.
            case(format!("/kubepods/burstable/pod{UID}/{ID}"), Some(ID), Unknown, Some(UID), None),
            case(format!("/kubepods/besteffort/pod{UID}/{ID}"), Some(ID), Unknown, Some(UID), None),
            case(format!("/kubepods/pod{UID}/{ID}"), Some(ID), Unknown, Some(UID), None),
            case(format!("/kubepods/pod{STATIC_UID}/{ID}"), Some(ID), Unknown, Some(STATIC_UID), None),
            // containerd, systemd driver.
            case(
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SD}.slice/cri-containerd-{ID}.scope"),
                Some(ID), Containerd, Some(UID), None,
            ),
            case(
                format!("/kubepods.slice/kubepods-pod{UID_SD}.slice/cri-containerd-{ID}.scope"),
                Some(ID), Containerd, Some(UID), None,
            ),
            // kind: kubelet nested in a node container, with its own kubelet.slice.
            case(
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_SD}.slice/cri-containerd-{ID}.scope"),
                Some(ID), Containerd, Some(UID), None,
            ),
            // CRI-O, systemd driver, including the sub-cgroup CRI-O may create inside.
            case(
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SD}.slice/crio-{ID}.scope"),
                Some(ID), CriO, Some(UID), None,
            ),
            case(
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SD}.slice/crio-{ID}.scope/container"),
                Some(ID), CriO, Some(UID), None,
            ),
            // CRI-O, cgroupfs driver.
            case(format!("/kubepods/burstable/pod{UID}/crio-{ID}"), Some(ID), CriO, Some(UID), None),
            // conmon: host side of the pod.
            case(
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SD}.slice/{conmon}"),
                None, Host, Some(UID), Some("crio-conmon-4f1e8c9a2b3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7.scope"),
            ),
            // docker.
            case(format!("/docker/{ID}"), Some(ID), Docker, None, None),
            case(format!("/system.slice/docker-{ID}.scope"), Some(ID), Docker, None, None),
            case(format!("/system.slice/docker-{ID}.scope/init.scope"), Some(ID), Docker, None, None),
            case(
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SD}.slice/docker-{ID}.scope"),
                Some(ID), Docker, Some(UID), None,
            ),
            // podman, root and rootless.
            case(format!("/machine.slice/libpod-{ID}.scope"), Some(ID), Podman, None, None),
            case(format!("/machine.slice/libpod-{ID}.scope/container"), Some(ID), Podman, None, None),
            case(
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                Some(ID), Podman, None, None,
            ),
            case(format!("/libpod_parent/libpod-{ID}"), Some(ID), Podman, None, None),
            case(
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                None, Host, None, Some("libpod-conmon-4f1e8c9a2b3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7.scope"),
            ),
            // containerd outside Kubernetes: /<namespace>/<id>.
            case(format!("/default/{ID}"), Some(ID), Containerd, None, None),
            case(format!("/k8s.io/{ID}"), Some(ID), Containerd, None, None),
            case(format!("/my-ns/{ID}"), Some(ID), Containerd, None, None),
            // Bare ids elsewhere: a container, runtime unknown.
            case(format!("/system.slice/{ID}"), Some(ID), Unknown, None, None),
            case(format!("/a/b/{ID}"), Some(ID), Unknown, None, None),
            // Host.
            case("/".into(), None, Host, None, None),
            case(String::new(), None, Host, None, None),
            case("/init.scope".into(), None, Host, None, Some("init.scope")),
            case("/system.slice/nginx.service".into(), None, Host, None, Some("nginx.service")),
            case("/system.slice/containerd.service".into(), None, Host, None, Some("containerd.service")),
            case("/user.slice/user-0.slice/session-3.scope".into(), None, Host, None, Some("session-3.scope")),
            case(
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-2514.scope".into(),
                None, Host, None, Some("app-gnome-firefox-2514.scope"),
            ),
            case("/system.slice/nginx.service/worker".into(), None, Host, None, Some("nginx.service")),
            case("/user.slice".into(), None, Host, None, Some("user.slice")),
            case("/mygroup/sub".into(), None, Host, None, None),
            case("/system.slice/podcast.service".into(), None, Host, None, Some("podcast.service")),
            // A pod's own cgroup, outside any container.
            case(format!("/kubepods/burstable/pod{UID}"), None, Unknown, Some(UID), None),
            case("/kubepods/burstable".into(), None, Host, None, None),
        ];
        for c in cases {
            let got = parse_cgroup_path(&c.path);
            assert_eq!(got.id.as_deref(), c.id, "id of {}", c.path);
            assert_eq!(got.runtime, c.runtime, "runtime of {}", c.path);
            assert_eq!(got.pod_uid.as_deref(), c.pod, "pod uid of {}", c.path);
            assert_eq!(got.unit.as_deref(), c.unit, "unit of {}", c.path);
            assert_eq!(got.cgroup, c.path, "cgroup of {}", c.path);
        }
    }

    #[test]
    fn near_misses_are_not_containers() {
        let short = &ID[..63];
        let not_hex = format!("{}g", &ID[..63]);
        for path in [
            format!("/system.slice/docker-{short}.scope"),
            format!("/docker/{not_hex}"),
            format!("/kubepods/burstable/pod{UID}/{short}"),
            format!("/system.slice/cri-containerd-{ID}x.scope"),
        ] {
            let got = parse_cgroup_path(&path);
            assert_eq!(got.id, None, "{path}");
        }
    }

    #[test]
    fn malformed_pod_uids_are_ignored() {
        for comp in [
            "pod",
            "podxyz",
            "kubepods-burstable-pod.slice",
            "kubepods-besteffort.slice",
        ] {
            assert_eq!(pod_uid_of(comp), None, "{comp}");
        }
    }

    #[test]
    fn arbitrary_input_does_not_panic() {
        for path in [
            "//",
            "/../..",
            "/\u{0}/",
            "kubepods/pod-/é",
            "/docker/",
            "/-/-.scope",
        ] {
            let got = parse_cgroup_path(path);
            assert_eq!(got.cgroup, path);
        }
    }

    #[test]
    fn containerd_namespace_grammar() {
        assert!(is_containerd_namespace("k8s.io"));
        assert!(is_containerd_namespace("default"));
        assert!(!is_containerd_namespace("system.slice"));
        assert!(!is_containerd_namespace("a..b"));
        assert!(!is_containerd_namespace("-a"));
        assert!(!is_containerd_namespace("a-"));
        assert!(!is_containerd_namespace(""));
    }
}
