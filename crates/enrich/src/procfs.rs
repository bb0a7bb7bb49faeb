//! Reading one process from `/proc/<pid>`, to seed the process cache at start.
//!
//! Processes that were running before the agent started never produce an exec event, so their
//! [`ProcessInfo`] comes from procfs instead. Every file may vanish or change under us (the
//! process exits, its pid is reused), and nothing in them is trusted to be well formed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use nightjar_core::ProcessInfo;

/// Bytes of `/proc/<pid>/cmdline` kept; the rest is dropped and `args_truncated` set.
/// (A command line can be as long as ARG_MAX, megabytes.)
pub const MAX_CMDLINE_BYTES: usize = 32 * 1024;

/// "No login uid" in `/proc/<pid>/loginuid` ((uid_t)-1).
const AUID_UNSET: u32 = u32::MAX;

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcReadError {
    /// The process exited (or became a zombie) while being read.
    #[error("process vanished while being read")]
    Vanished,
    /// A file could not be read for another reason (permissions, I/O).
    #[error("cannot read {file}")]
    Unreadable {
        file: &'static str,
        #[source]
        source: io::Error,
    },
    /// A file did not have the expected format.
    #[error("malformed {file}")]
    Malformed { file: &'static str },
}

/// Nanoseconds per clock tick (`sysconf(_SC_CLK_TCK)`), the unit of start times in
/// `/proc/<pid>/stat`; 10 ms on every Linux, used as the fallback.
pub fn clock_tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant of the C library.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match u64::try_from(hz) {
        Ok(hz) if hz > 0 => 1_000_000_000 / hz,
        _ => 10_000_000,
    }
}

/// Reads the process whose procfs directory is `dir` (e.g. `/proc/1234`).
///
/// `stat`, `status` and `cmdline` are required; `exe`, `cwd`, `cgroup` and `loginuid` are
/// best effort (kernel threads have no `exe`). `cgroup_id` maps the cgroup v2 path from
/// `/proc/<pid>/cgroup` to its id; 0 when it cannot.
pub fn read_process(
    dir: &Path,
    pid: u32,
    tick_ns: u64,
    cgroup_id: &dyn Fn(&str) -> Option<u64>,
) -> Result<ProcessInfo, ProcReadError> {
    let stat = parse_stat(&read_required(dir, "stat")?)
        .ok_or(ProcReadError::Malformed { file: "stat" })?;
    if stat.dead {
        return Err(ProcReadError::Vanished);
    }
    let creds = parse_status(&read_required(dir, "status")?)
        .ok_or(ProcReadError::Malformed { file: "status" })?;
    let (args, args_truncated) = read_cmdline(&dir.join("cmdline"))?;
    let link = |name: &str| {
        fs::read_link(dir.join(name))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    let auid = fs::read_to_string(dir.join("loginuid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&a| a != AUID_UNSET);
    Ok(ProcessInfo {
        pid,
        ppid: stat.ppid,
        start_time_ns: stat.start_ticks.saturating_mul(tick_ns),
        binary: link("exe"),
        args,
        args_truncated,
        cwd: link("cwd"),
        comm: stat.comm,
        uid: creds.uid,
        gid: creds.gid,
        euid: creds.euid,
        egid: creds.egid,
        auid,
        cgroup_id: cgroup_v2_path(&cgroup).and_then(cgroup_id).unwrap_or(0),
        from_procfs: true,
    })
}

/// The fields of `/proc/<pid>/stat` the cache needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    comm: String,
    ppid: u32,
    start_ticks: u64,
    /// Zombie or dead: exited, only waiting to be reaped by its parent.
    dead: bool,
}

/// Parses `pid (comm) state ppid ... starttime ...` (proc(5)). `comm` may itself contain
/// spaces and parentheses, so it runs to the *last* `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let state = fields.next()?; // field 3
    let ppid = fields.next()?.parse().ok()?; // field 4
    let start_ticks = fields.nth(17)?.parse().ok()?; // field 22
    Some(Stat {
        comm,
        ppid,
        start_ticks,
        dead: matches!(state, "Z" | "X" | "x"),
    })
}

/// Real and effective ids from `/proc/<pid>/status`.
#[derive(Debug, PartialEq, Eq)]
struct Creds {
    uid: u32,
    euid: u32,
    gid: u32,
    egid: u32,
}

/// Parses the `Uid:` and `Gid:` lines (real, effective, saved, filesystem).
fn parse_status(text: &str) -> Option<Creds> {
    let ids = |key: &str| -> Option<(u32, u32)> {
        let line = text.lines().find_map(|l| l.strip_prefix(key))?;
        let mut it = line.split_ascii_whitespace().map(str::parse::<u32>);
        Some((it.next()?.ok()?, it.next()?.ok()?))
    };
    let (uid, euid) = ids("Uid:")?;
    let (gid, egid) = ids("Gid:")?;
    Some(Creds {
        uid,
        euid,
        gid,
        egid,
    })
}

/// The `0::<path>` line of `/proc/<pid>/cgroup`: the cgroup v2 path.
fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim_end)
}

/// NUL-separated arguments, at most [`MAX_CMDLINE_BYTES`]; `true` when cut.
fn read_cmdline(path: &Path) -> Result<(Vec<String>, bool), ProcReadError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_CMDLINE_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| classify(e, "cmdline"))?;
    let truncated = bytes.len() > MAX_CMDLINE_BYTES;
    bytes.truncate(MAX_CMDLINE_BYTES);
    // Split as the kernel's argv records are (nightjar-abi), so both read the same way.
    Ok((nightjar_abi::split_args(&bytes), truncated))
}

fn read_required(dir: &Path, file: &'static str) -> Result<String, ProcReadError> {
    fs::read(dir.join(file))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| classify(e, file))
}

/// ENOENT and ESRCH mean the process is gone; anything else is worth reporting.
fn classify(err: io::Error, file: &'static str) -> ProcReadError {
    if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH) {
        ProcReadError::Vanished
    } else {
        ProcReadError::Unreadable { file, source: err }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (weird) comm) S 17 4242 4242 0 -1 4194560 1234 0 0 0 \
        12 3 0 0 20 0 1 0 987654 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 0 0 0 0\n";

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let stat = parse_stat(STAT).expect("parses");
        assert_eq!(
            stat,
            Stat {
                comm: "my (weird) comm".into(),
                ppid: 17,
                start_ticks: 987_654,
                dead: false
            }
        );
        let zombie = STAT.replace(") S ", ") Z ");
        assert!(parse_stat(&zombie).is_some_and(|s| s.dead));
    }

    #[test]
    fn malformed_stat_is_rejected() {
        for text in [
            "",
            "4242",
            "4242 (x",
            "4242 x) S 1",
            ") (",
            "4242 (x) S notanumber 1",
            "4242 (x) S 1 2 3",
        ] {
            assert_eq!(parse_stat(text), None, "{text:?}");
        }
    }

    #[test]
    fn status_ids() {
        let text = "Name:\tsudo\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(
            parse_status(text),
            Some(Creds {
                uid: 1000,
                euid: 0,
                gid: 1000,
                egid: 1000
            })
        );
        assert_eq!(parse_status("Uid:\t1000\nGid:\t1\t1\n"), None);
        assert_eq!(parse_status("Uid:\tx\t0\nGid:\t1\t1\n"), None);
    }

    #[test]
    fn cgroup_line() {
        let text = "12:memory:/user.slice\n0::/system.slice/nginx.service\n";
        assert_eq!(cgroup_v2_path(text), Some("/system.slice/nginx.service"));
        assert_eq!(cgroup_v2_path("4:memory:/x\n"), None);
    }

    #[test]
    fn long_cmdline_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cmdline");
        fs::write(&path, vec![b'a'; MAX_CMDLINE_BYTES * 2]).expect("write");
        let (args, truncated) = read_cmdline(&path).expect("reads");
        assert!(truncated);
        assert_eq!(args[0].len(), MAX_CMDLINE_BYTES);
        assert!(matches!(
            read_cmdline(&dir.path().join("gone")),
            Err(ProcReadError::Vanished)
        ));
    }

    #[test]
    fn tick_is_sane() {
        let tick = clock_tick_ns();
        assert!((1_000_000..=10_000_000).contains(&tick), "{tick}");
    }
}
