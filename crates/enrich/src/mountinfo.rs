//! Finding the cgroup2 mount in `/proc/self/mountinfo`.
//!
//! The mount point differs between layouts: `/sys/fs/cgroup` on a unified (v2-only) host,
//! `/sys/fs/cgroup/unified` on a hybrid one, elsewhere in containers. Reading mountinfo rather
//! than guessing keeps the resolver from walking a v1 hierarchy by mistake.

use std::path::PathBuf;

/// The mount point of the first `cgroup2` filesystem listed in a mountinfo text, if any.
///
/// Each line reads `id parent major:minor root mount-point options [optional...] - fstype
/// source super-options` (proc(5)); the separator `-` is needed because the optional fields
/// vary in number. Malformed lines are skipped.
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = before.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// Undoes the kernel's escaping of space, tab, newline and backslash as `\ooo` in mountinfo.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match digits {
            Some(d) => {
                // Three octal digits may exceed a byte (\777); keep such text as it is.
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                match u8::try_from(value) {
                    Ok(byte) => out.push(byte),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 4]),
                }
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
22 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
27 22 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_hybrid_and_unified_mounts() {
        assert_eq!(
            find_cgroup2_mount(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            find_cgroup2_mount(UNIFIED),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn none_without_cgroup2() {
        let v1_only: String = HYBRID.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(find_cgroup2_mount(&v1_only), None);
        assert_eq!(find_cgroup2_mount(""), None);
        assert_eq!(find_cgroup2_mount("garbage\n - cgroup2\n1 2 3\n"), None);
    }

    #[test]
    fn unescapes_mount_point() {
        let line = "50 1 0:40 / /mnt/my\\040cgroup\\134x rw - cgroup2 none rw\n";
        assert_eq!(
            find_cgroup2_mount(line),
            Some(PathBuf::from("/mnt/my cgroup\\x"))
        );
        assert_eq!(unescape_octal("a\\777b\\04"), "a\\777b\\04");
    }

    #[test]
    fn reads_this_machine() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        let mount = find_cgroup2_mount(&text).expect("this machine has no cgroup2 mount");
        assert!(
            mount.join("cgroup.procs").exists(),
            "{} is not a cgroup2 root",
            mount.display()
        );
    }
}
