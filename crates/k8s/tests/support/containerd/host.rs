//! What the harness reads and cleans on the host: processes, mounts, cgroups.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(super) fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid we found in /proc or started; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

pub(super) fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me)
        .collect()
}

/// Whether `pid` has exited and awaits reaping (state `Z` in /proc/<pid>/stat). A process that
/// is already gone counts as a zombie too: there is nothing left to kill.
pub(super) fn zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `pid` is in `kubepods/pod<uid>` (or below) for one of `uids`, in any hierarchy.
pub(super) fn in_pod_cgroup(pid: u32, uids: &[String]) -> bool {
    let Ok(cgroups) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    cgroups.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        uids.iter().any(|uid| {
            let pod = format!("/kubepods/pod{uid}");
            path == pod || path.starts_with(&format!("{pod}/"))
        })
    })
}

/// One mountinfo line: (mount point, filesystem type), with octal escapes decoded.
fn mountinfo() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = unescape(fields.get(4)?);
            let dash = fields.iter().position(|f| *f == "-")?;
            Some((mount_point, fields.get(dash + 1)?.to_string()))
        })
        .collect()
}

fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|o| {
            let s = std::str::from_utf8(o).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The mount points of every cgroup (v1) and cgroup2 hierarchy.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(path, _)| path)
        .collect()
}

/// The cgroup2 mount point (`/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> PathBuf {
    mountinfo()
        .into_iter()
        .find(|(_, fstype)| fstype == "cgroup2")
        .map(|(path, _)| path)
        .expect("no cgroup2 mount on this host")
}

/// The cgroup v2 path of `pid`, relative to the cgroup2 mount (the `0::` line).
pub fn cgroup2_path_of(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = mountinfo()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| path.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    mounts.dedup();
    mounts
}

/// Unmounts everything under `dir`, lazily when a plain unmount fails.
pub(super) fn unmount_under(dir: &Path) {
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            let Ok(path) = CString::new(mount.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: umount2 with a valid NUL-terminated path.
            let failed = unsafe { libc::umount2(path.as_ptr(), 0) } != 0
                && unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0;
            if failed {
                eprintln!(
                    "containerd harness: teardown: umount {}: {}",
                    mount.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Existing `kubepods/pod<uid>` directories for `uids`, in every hierarchy.
pub(super) fn pod_cgroups(uids: &[String]) -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .flat_map(|h| {
            uids.iter()
                .map(move |uid| h.join(format!("kubepods/pod{uid}")))
        })
        .filter(|p| p.is_dir())
        .collect()
}

/// rmdir a cgroup and its descendants, children first (cgroup files need no removal).
pub(super) fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        eprintln!("containerd harness: teardown: rmdir {}: {e}", dir.display());
    }
}
