//! Raw ABI records to domain [`Event`]s. The only place that knows both layouts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use nightjar_abi::*;
use nightjar_core::time::BootClock;
use nightjar_core::*;

use crate::names::*;
use crate::tcp_conns::{Joined, TcpConns, TCP_CONNS_MAX};

/// Why a record did not become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("syscall id {0} is unknown for its record kind")]
    UnknownSyscall(u32),
}

impl ConvertError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ConvertError::Decode(DecodeError::ShortHeader { .. }) => "short_header",
            ConvertError::Decode(DecodeError::UnknownKind { .. }) => "unknown_kind",
            ConvertError::Decode(DecodeError::BadSize { .. }) => "bad_size",
            ConvertError::Decode(DecodeError::SizeMismatch { .. }) => "size_mismatch",
            ConvertError::UnknownSyscall(_) => "unknown_syscall",
        }
    }
}

/// The JSON type name of an ABI kind number.
pub fn kind_type_name(kind: u32) -> Option<&'static str> {
    Some(match kind {
        NJ_KIND_PROCESS_EXEC => "process_exec",
        NJ_KIND_PROCESS_FORK => "process_fork",
        NJ_KIND_PROCESS_EXIT => "process_exit",
        NJ_KIND_FILE_OPEN => "file_open",
        NJ_KIND_FILE_UNLINK => "file_unlink",
        NJ_KIND_FILE_RENAME => "file_rename",
        NJ_KIND_FILE_CHMOD => "file_chmod",
        NJ_KIND_FILE_CHOWN => "file_chown",
        NJ_KIND_CRED_CHANGE => "cred_change",
        NJ_KIND_PTRACE => "ptrace",
        NJ_KIND_KILL => "kill",
        NJ_KIND_MOUNT => "mount",
        NJ_KIND_UMOUNT => "umount",
        NJ_KIND_MODULE_LOAD => "module_load",
        NJ_KIND_BPF => "bpf",
        NJ_KIND_MEMFD_CREATE => "memfd_create",
        NJ_KIND_NAMESPACE => "namespace",
        NJ_KIND_SOCK_CONNECT => "sock_connect",
        NJ_KIND_SOCK_ACCEPT => "sock_accept",
        NJ_KIND_SOCK_BIND => "sock_bind",
        NJ_KIND_SOCK_LISTEN => "sock_listen",
        NJ_KIND_CGROUP_MKDIR => "cgroup_mkdir",
        NJ_KIND_CONNECT_POLICY => "connect_policy",
        NJ_KIND_TCP_ESTABLISHED => "tcp_established",
        NJ_KIND_TCP_CLOSE => "tcp_close",
        // Never an event (tcp_conns.rs); named for its loss counter.
        NJ_KIND_TCP_FOLLOW => "tcp_follow",
        _ => return None,
    })
}

/// Converts records, stamping them with wall-clock time and the node name, and joins the TCP
/// connection records to their owners.
#[derive(Debug)]
pub struct Converter {
    clock: BootClock,
    node: Arc<str>,
    tcp: TcpConns,
}

fn bytes(field: &[core::ffi::c_char]) -> &[u8] {
    // SAFETY: c_char and u8 have the same size and alignment; any byte is a valid u8.
    unsafe { core::slice::from_raw_parts(field.as_ptr().cast::<u8>(), field.len()) }
}

fn string(field: &[core::ffi::c_char]) -> String {
    c_string_lossy(bytes(field))
}

fn flag_names(flags: u32) -> Vec<&'static str> {
    const NAMES: &[(u32, &str)] = &[
        (NJ_FLAG_ARGS_TRUNCATED, "args_truncated"),
        (NJ_FLAG_PATH_TRUNCATED, "path_truncated"),
        (NJ_FLAG_PATH2_TRUNCATED, "path2_truncated"),
        (NJ_FLAG_READ_FAILED, "read_failed"),
        (NJ_FLAG_PATH_AS_PASSED, "path_as_passed"),
        (NJ_FLAG_IA32_SYSCALL, "ia32_syscall"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

fn result(syscall: &'static str, ret: i64) -> SyscallResult {
    SyscallResult {
        syscall,
        ret,
        error: (ret < 0).then(|| errno_name(-ret)),
    }
}

/// A uid/gid argument where -1 (as u32) means "unchanged".
fn id_arg(v: u64) -> Option<u32> {
    let id = v as u32;
    (id != u32::MAX).then_some(id)
}

fn syscall_name(id: u32) -> Option<&'static str> {
    Some(match id {
        NJ_SYS_OPEN => "open",
        NJ_SYS_OPENAT => "openat",
        NJ_SYS_OPENAT2 => "openat2",
        NJ_SYS_UNLINK => "unlink",
        NJ_SYS_UNLINKAT => "unlinkat",
        NJ_SYS_RMDIR => "rmdir",
        NJ_SYS_RENAME => "rename",
        NJ_SYS_RENAMEAT => "renameat",
        NJ_SYS_RENAMEAT2 => "renameat2",
        NJ_SYS_CHMOD => "chmod",
        NJ_SYS_FCHMODAT => "fchmodat",
        NJ_SYS_FCHMOD => "fchmod",
        NJ_SYS_CHOWN => "chown",
        NJ_SYS_LCHOWN => "lchown",
        NJ_SYS_FCHOWNAT => "fchownat",
        NJ_SYS_FCHOWN => "fchown",
        NJ_SYS_SETUID => "setuid",
        NJ_SYS_SETGID => "setgid",
        NJ_SYS_SETREUID => "setreuid",
        NJ_SYS_SETREGID => "setregid",
        NJ_SYS_SETRESUID => "setresuid",
        NJ_SYS_SETRESGID => "setresgid",
        NJ_SYS_CAPSET => "capset",
        NJ_SYS_PTRACE => "ptrace",
        NJ_SYS_KILL => "kill",
        NJ_SYS_TKILL => "tkill",
        NJ_SYS_TGKILL => "tgkill",
        NJ_SYS_MOUNT => "mount",
        NJ_SYS_UMOUNT2 => "umount2",
        NJ_SYS_INIT_MODULE => "init_module",
        NJ_SYS_FINIT_MODULE => "finit_module",
        NJ_SYS_BPF => "bpf",
        NJ_SYS_MEMFD_CREATE => "memfd_create",
        NJ_SYS_SETNS => "setns",
        NJ_SYS_UNSHARE => "unshare",
        NJ_SYS_CONNECT => "connect",
        NJ_SYS_ACCEPT => "accept",
        NJ_SYS_ACCEPT4 => "accept4",
        NJ_SYS_BIND => "bind",
        NJ_SYS_LISTEN => "listen",
        _ => return None,
    })
}

fn sockaddr(addr: &nj_sockaddr) -> Option<SockAddr> {
    match u32::from(addr.family) {
        0 => None,
        NJ_AF_INET => {
            let [a, b, c, d, ..] = addr.addr;
            Some(SockAddr::Inet {
                addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                port: addr.port,
            })
        }
        NJ_AF_INET6 => Some(SockAddr::Inet6 {
            addr: IpAddr::V6(Ipv6Addr::from(addr.addr)),
            port: addr.port,
            scope_id: addr.scope_id,
        }),
        NJ_AF_UNIX => {
            let raw = bytes(&addr.unix_path);
            // Abstract names start with NUL; show them with a leading '@' as ss(8) does.
            let path = match raw.first() {
                Some(0) if raw.get(1).is_some_and(|&b| b != 0) => {
                    format!("@{}", c_string_lossy(&raw[1..]))
                }
                _ => c_string_lossy(raw),
            };
            Some(SockAddr::Unix { path })
        }
        family => Some(SockAddr::Other {
            family_id: family as u16,
        }),
    }
}

impl Converter {
    /// `agent_tgid` is the agent's own process as the kernel side knows it
    /// (`ProbeConfig::agent_tgid`): the TCP connections it accepts are not reported.
    pub fn new(clock: BootClock, node: Arc<str>, agent_tgid: u32) -> Self {
        Self {
            clock,
            node,
            tcp: TcpConns::new(TCP_CONNS_MAX, agent_tgid),
        }
    }

    /// TCP connections followed now (announced, not yet closed).
    pub fn tcp_followed(&self) -> usize {
        self.tcp.len()
    }

    /// TCP connections forgotten for room since the last call: their later records are lost.
    pub fn take_tcp_evicted(&mut self) -> u64 {
        self.tcp.take_evicted()
    }

    /// The event of one record; `None` for a record that makes none (a TCP connection's
    /// announcement, or a connection Nightjar does not follow).
    pub fn convert(&mut self, raw: &[u8]) -> Result<Option<Event>, ConvertError> {
        let mut record = decode(raw)?;
        if let RawRecord::Tcp(ev) = &mut record {
            if self.tcp.join(ev) == Joined::Skip {
                return Ok(None);
            }
        } else if let RawRecord::Sock(ev) = &record {
            if u32::from(ev.hdr.kind) == NJ_KIND_SOCK_CONNECT {
                self.tcp.connect_returned(ev.cookie, ev.ret);
            }
        }
        let hdr = *record.header();
        let body = match record {
            RawRecord::Exec(ev) => exec_body(&ev),
            RawRecord::Fork(ev) => EventBody::ProcessFork {
                child_pid: ev.child_tgid,
                child_start_time_ns: ev.child_start_time_ns,
            },
            RawRecord::Exit(ev) => exit_body(&ev),
            RawRecord::Syscall(ev) => syscall_body(&ev)?,
            RawRecord::Path(ev) => path_body(&ev)?,
            RawRecord::Sock(ev) => sock_body(&ev)?,
            RawRecord::ConnectPolicy(ev) => EventBody::ConnectPolicy {
                verdict: if ev.action == NJ_CONNECT_DENY {
                    "denied"
                } else {
                    "audited"
                },
                rule: ev.rule_id,
                remote: sockaddr(&ev.remote),
            },
            RawRecord::Tcp(ev) => tcp_body(&ev),
            RawRecord::Cgroup(ev) => EventBody::CgroupMkdir {
                new_cgroup_id: ev.id,
                path: string(&ev.path),
            },
        };
        let mut event = Event::unattributed(
            self.clock.rfc3339(hdr.ktime_ns),
            hdr.ktime_ns,
            self.node.clone(),
            body,
        );
        event.pid = hdr.tgid;
        event.tid = hdr.pid;
        event.cgroup_id = hdr.cgroup_id;
        event.flags = flag_names(hdr.flags);
        Ok(Some(event))
    }
}

fn exec_body(ev: &nj_exec_event) -> EventBody {
    let args_len = (ev.args_len as usize).min(ev.args.len());
    let info = ProcessInfo {
        pid: ev.hdr.tgid,
        ppid: ev.ppid,
        start_time_ns: ev.start_time_ns,
        binary: string(&ev.binary),
        args: split_args(&bytes(&ev.args)[..args_len]),
        args_truncated: ev.hdr.flags & NJ_FLAG_ARGS_TRUNCATED != 0,
        cwd: string(&ev.cwd),
        comm: string(&ev.comm),
        uid: ev.creds.uid,
        gid: ev.creds.gid,
        euid: ev.creds.euid,
        egid: ev.creds.egid,
        auid: (ev.creds.auid != u32::MAX).then_some(ev.creds.auid),
        cgroup_id: ev.hdr.cgroup_id,
        from_procfs: false,
    };
    EventBody::ProcessExec {
        cap_effective: format!("{:#x}", ev.cap_effective),
        setuid_from: None,
        exec: Box::new(ExecData {
            info,
            suid: ev.creds.suid,
            sgid: ev.creds.sgid,
            cap_effective: ev.cap_effective,
            cap_permitted: ev.cap_permitted,
        }),
    }
}

fn exit_body(ev: &nj_exit_event) -> EventBody {
    let status = ev.exit_code;
    let signal = status & 0x7f;
    EventBody::ProcessExit {
        exit_code: (signal == 0).then_some(((status >> 8) & 0xff) as i32),
        signal: (signal != 0).then(|| signal_name(u64::from(signal))),
        core_dumped: status & 0x80 != 0,
        start_time_ns: ev.start_time_ns,
    }
}

/// A path syscall's body, each relative path joined to the directory the kernel resolved it
/// against (`dir0`, `dir1`; empty for an absolute path).
fn path_body(ev: &nj_path_event) -> Result<EventBody, ConvertError> {
    let mut body = syscall_body(&ev.sys)?;
    let (dir0, dir1) = (string(&ev.dir0), string(&ev.dir1));
    match &mut body {
        EventBody::FileUnlink { path, .. }
        | EventBody::FileChmod { path, .. }
        | EventBody::FileChown { path, .. } => *path = under_dir(&dir0, path),
        EventBody::FileRename { path, new_path, .. } => {
            *path = under_dir(&dir0, path);
            *new_path = under_dir(&dir1, new_path);
        }
        _ => {}
    }
    Ok(body)
}

/// `relative` as seen from directory `dir` (absolute), "." components dropped; `relative`
/// unchanged when `dir` is empty (an absolute path, or a directory the kernel could not
/// resolve). ".." stays: what it names depends on symlinks the agent cannot see.
fn under_dir(dir: &str, relative: &str) -> String {
    if dir.is_empty() {
        return relative.to_string();
    }
    let mut out = dir.trim_end_matches('/').to_string();
    for part in relative.split('/').filter(|p| !p.is_empty() && *p != ".") {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn syscall_body(ev: &nj_syscall_event) -> Result<EventBody, ConvertError> {
    let name = syscall_name(ev.syscall).ok_or(ConvertError::UnknownSyscall(ev.syscall))?;
    let res = result(name, ev.ret);
    let a = ev.args;
    let s0 = string(&ev.str0);
    let s1 = string(&ev.str1);
    Ok(match u32::from(ev.hdr.kind) {
        NJ_KIND_FILE_OPEN => {
            // open(path, flags, mode); openat/openat2(dfd, path, flags|how.flags, mode).
            let (flags, mode) = if ev.syscall == NJ_SYS_OPEN {
                (a[1], a[2])
            } else {
                (a[2], a[3])
            };
            let creates = flags & 0o100 != 0 || flags & 0o20000000 != 0;
            EventBody::FileOpen {
                result: res,
                path: s0,
                flags: open_flags(flags),
                mode: creates.then_some(mode as u32),
            }
        }
        NJ_KIND_FILE_UNLINK => EventBody::FileUnlink {
            result: res,
            path: s0,
        },
        NJ_KIND_FILE_RENAME => EventBody::FileRename {
            result: res,
            path: s0,
            new_path: s1,
        },
        NJ_KIND_FILE_CHMOD => EventBody::FileChmod {
            result: res,
            path: s0,
            // chmod(path, mode); fchmod(fd, mode); fchmodat(dfd, path, mode).
            mode: (if ev.syscall == NJ_SYS_FCHMODAT {
                a[2]
            } else {
                a[1]
            }) as u32,
        },
        NJ_KIND_FILE_CHOWN => {
            let (uid, gid) = if ev.syscall == NJ_SYS_FCHOWNAT {
                (a[2], a[3])
            } else {
                (a[1], a[2])
            };
            EventBody::FileChown {
                result: res,
                path: s0,
                uid: id_arg(uid),
                gid: id_arg(gid),
            }
        }
        NJ_KIND_CRED_CHANGE => {
            let ids = match ev.syscall {
                NJ_SYS_SETUID | NJ_SYS_SETGID => vec![id_arg(a[0])],
                NJ_SYS_SETREUID | NJ_SYS_SETREGID => vec![id_arg(a[0]), id_arg(a[1])],
                NJ_SYS_SETRESUID | NJ_SYS_SETRESGID => {
                    vec![id_arg(a[0]), id_arg(a[1]), id_arg(a[2])]
                }
                _ => Vec::new(),
            };
            // capset: effective, permitted and inheritable sets in the first three slots.
            let cap = |set: u64| (ev.syscall == NJ_SYS_CAPSET).then(|| format!("{set:#x}"));
            EventBody::CredChange {
                result: res,
                cap_effective: cap(a[0]),
                cap_permitted: cap(a[1]),
                cap_inheritable: cap(a[2]),
                ids,
            }
        }
        NJ_KIND_PTRACE => EventBody::Ptrace {
            result: res,
            request: ptrace_request(a[0]),
            target_pid: a[1] as i32,
        },
        NJ_KIND_KILL => {
            // kill(pid, sig); tkill(tid, sig); tgkill(tgid, tid, sig).
            let (pid, tid, sig) = match ev.syscall {
                NJ_SYS_TGKILL => (a[0] as i32, Some(a[1] as i32), a[2]),
                NJ_SYS_TKILL => (a[0] as i32, Some(a[0] as i32), a[1]),
                _ => (a[0] as i32, None, a[1]),
            };
            EventBody::Kill {
                result: res,
                target_pid: pid,
                target_tid: tid,
                signal: signal_name(sig),
            }
        }
        NJ_KIND_MOUNT => EventBody::Mount {
            result: res,
            source: s0,
            target: s1,
            flags: a[3],
        },
        NJ_KIND_UMOUNT => EventBody::Umount {
            result: res,
            target: s0,
            flags: a[1],
        },
        NJ_KIND_MODULE_LOAD => EventBody::ModuleLoad {
            result: res,
            fd: (ev.syscall == NJ_SYS_FINIT_MODULE).then_some(a[0] as i32),
            params: s0,
        },
        NJ_KIND_BPF => EventBody::Bpf {
            result: res,
            command: bpf_command(a[0]),
        },
        NJ_KIND_MEMFD_CREATE => EventBody::MemfdCreate {
            result: res,
            name: s0,
            flags: a[1],
        },
        NJ_KIND_NAMESPACE => {
            let (flags, fd) = if ev.syscall == NJ_SYS_SETNS {
                (a[1], Some(a[0] as i32))
            } else {
                (a[0], None)
            };
            EventBody::Namespace {
                result: res,
                namespaces: namespaces(flags),
                fd,
            }
        }
        kind => {
            return Err(ConvertError::Decode(DecodeError::UnknownKind {
                kind: kind as u16,
            }))
        }
    })
}

fn sock_body(ev: &nj_sock_event) -> Result<EventBody, ConvertError> {
    let name = syscall_name(ev.syscall).ok_or(ConvertError::UnknownSyscall(ev.syscall))?;
    let op = SockOp {
        result: result(name, ev.ret),
        fd: ev.fd,
        sock_type: sock_type(ev.sock_type),
        protocol: ip_protocol(ev.protocol),
        local: sockaddr(&ev.local),
        remote: sockaddr(&ev.remote),
        backlog: (ev.syscall == NJ_SYS_LISTEN).then_some(ev.extra),
        cookie: (ev.cookie != 0).then_some(ev.cookie),
    };
    Ok(match u32::from(ev.hdr.kind) {
        NJ_KIND_SOCK_CONNECT => EventBody::SockConnect(op),
        NJ_KIND_SOCK_ACCEPT => EventBody::SockAccept(op),
        NJ_KIND_SOCK_BIND => EventBody::SockBind(op),
        NJ_KIND_SOCK_LISTEN => EventBody::SockListen(op),
        kind => {
            return Err(ConvertError::Decode(DecodeError::UnknownKind {
                kind: kind as u16,
            }))
        }
    })
}

fn endpoint(family: u8, addr: [u8; 16], port: u16) -> FlowEndpoint {
    FlowEndpoint {
        addr: crate::flows::addr(family, &addr),
        port,
    }
}

/// TCP states by number (include/net/tcp_states.h).
fn tcp_state(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        12 => "new_syn_recv",
        _ => "unknown",
    }
}

/// How a connection ended, from the socket error and whether it was ever established.
fn tcp_outcome(error: u32, established: bool) -> &'static str {
    const ECONNRESET: u32 = 104;
    const ETIMEDOUT: u32 = 110;
    const ECONNREFUSED: u32 = 111;
    const EPIPE: u32 = 32;
    match error {
        0 if established => "closed",
        0 => "aborted",
        ECONNREFUSED => "refused",
        ETIMEDOUT => "timeout",
        ECONNRESET | EPIPE => "reset",
        _ => "error",
    }
}

fn tcp_body(ev: &nj_tcp_event) -> EventBody {
    let established = ev.established_ns != 0;
    let closing = u32::from(ev.hdr.kind) == NJ_KIND_TCP_CLOSE;
    let connection = TcpConnection {
        cookie: ev.cookie,
        direction: if u32::from(ev.direction) == NJ_TCP_PASSIVE {
            "inbound"
        } else {
            "outbound"
        },
        owner: match u32::from(ev.owner) {
            NJ_TCP_OWNER_CONNECT => "connect",
            NJ_TCP_OWNER_ACCEPT => "accept",
            _ => "unknown",
        },
        local: endpoint(ev.family, ev.saddr, ev.sport),
        remote: endpoint(ev.family, ev.daddr, ev.dport),
        handshake_us: (established
            && u32::from(ev.direction) == NJ_TCP_ACTIVE
            && ev.established_ns >= ev.start_ns)
            .then(|| (ev.established_ns - ev.start_ns) / 1_000),
        duration_ms: established
            .then(|| ev.hdr.ktime_ns.saturating_sub(ev.established_ns) / 1_000_000),
        srtt_us: ev.srtt_us,
        retransmits: ev.total_retrans,
        bytes_acked: ev.bytes_acked,
        bytes_received: ev.bytes_received,
        segments_in: ev.segs_in,
        segments_out: ev.segs_out,
        outcome: closing.then(|| tcp_outcome(ev.error, established)),
        previous_state: closing.then(|| tcp_state(ev.old_state)),
        error: (closing && ev.error != 0).then(|| errno_name(i64::from(ev.error))),
    };
    if closing {
        EventBody::TcpClose(Box::new(connection))
    } else {
        EventBody::TcpEstablished(Box::new(connection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of every kind with random contents (valid header, right size) must convert or
    /// fail with an error, never panic: the kernel side is trusted for layout, not content.
    #[test]
    fn random_record_contents_never_panic() {
        // Every kind the decoder knows, with its record size, from the one list in crates/abi.
        fn kinds<T: Record>() -> impl Iterator<Item = (u32, usize)> {
            T::KINDS.iter().map(|&k| (k, core::mem::size_of::<T>()))
        }
        let all = kinds::<nj_exec_event>()
            .chain(kinds::<nj_fork_event>())
            .chain(kinds::<nj_exit_event>())
            .chain(kinds::<nj_syscall_event>())
            .chain(kinds::<nj_path_event>())
            .chain(kinds::<nj_sock_event>())
            .chain(kinds::<nj_cgroup_event>())
            .chain(kinds::<nj_connect_policy_event>())
            .chain(kinds::<nj_tcp_event>());
        let mut converter = Converter::new(BootClock::with_offset(0), Arc::from("n"), 0);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut converted = 0;
        for (kind, size) in all {
            for round in 0..200 {
                let mut bytes = vec![0u8; size];
                for b in bytes.iter_mut() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *b = seed as u8;
                }
                bytes[0..2].copy_from_slice(&(kind as u16).to_ne_bytes());
                bytes[2..4].copy_from_slice(&(size as u16).to_ne_bytes());
                // Half the rounds use a valid syscall id so the body conversion runs.
                // (A path record starts with a generic one: same offset.)
                let syscall_sized = size == core::mem::size_of::<nj_syscall_event>()
                    || size == core::mem::size_of::<nj_path_event>();
                if round % 2 == 0 && syscall_sized {
                    let id = [NJ_SYS_OPENAT, NJ_SYS_FCHOWNAT, NJ_SYS_TGKILL, NJ_SYS_SETNS]
                        [(round / 2) % 4];
                    let at = core::mem::offset_of!(nj_syscall_event, syscall);
                    bytes[at..at + 4].copy_from_slice(&id.to_ne_bytes());
                }
                if converter.convert(&bytes).is_ok() {
                    converted += 1;
                }
            }
        }
        assert!(converted > 0, "no random record converted at all");
    }

    fn tcp_record(kind: u32) -> nj_tcp_event {
        let mut ev = nj_tcp_event::default();
        ev.hdr.kind = kind as u16;
        ev.hdr.size = core::mem::size_of::<nj_tcp_event>() as u16;
        ev.hdr.ktime_ns = 5_000_000_000;
        ev.family = NJ_AF_INET as u8;
        ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        ev.sport = 40000;
        ev.dport = 80;
        ev.direction = NJ_TCP_ACTIVE as u8;
        ev.owner = NJ_TCP_OWNER_CONNECT as u8;
        ev.start_ns = 1_000_000_000;
        ev
    }

    /// A failed connect() forgets its announced connection, unless the connection goes on.
    #[test]
    fn failed_connect_ends_the_connection_it_announced() {
        let mut converter = Converter::new(BootClock::with_offset(0), Arc::from("n"), 0);
        for (cookie, ret) in [(10, -101i64), (11, -115)] {
            let mut follow = tcp_record(NJ_KIND_TCP_FOLLOW);
            follow.cookie = cookie;
            assert!(converter.convert(record_bytes(&follow)).unwrap().is_none());
            let mut connect = nj_sock_event {
                syscall: NJ_SYS_CONNECT,
                ret,
                cookie,
                ..Default::default()
            };
            connect.hdr.kind = NJ_KIND_SOCK_CONNECT as u16;
            connect.hdr.size = core::mem::size_of::<nj_sock_event>() as u16;
            let event = converter.convert(record_bytes(&connect)).unwrap();
            assert!(matches!(event.unwrap().body, EventBody::SockConnect(_)));
        }
        // ENETUNREACH: gone. EINPROGRESS: still followed, its close reported.
        assert_eq!(converter.tcp_followed(), 1);
        let mut close = tcp_record(NJ_KIND_TCP_CLOSE);
        close.cookie = 11;
        assert!(converter.convert(record_bytes(&close)).unwrap().is_some());
    }

    #[test]
    fn tcp_close_outcomes() {
        let connection = |ev: &nj_tcp_event| match tcp_body(ev) {
            EventBody::TcpClose(c) => c,
            other => panic!("{other:?}"),
        };
        // Refused: never established, ECONNREFUSED, left SYN_SENT.
        let mut ev = tcp_record(NJ_KIND_TCP_CLOSE);
        ev.error = 111;
        ev.old_state = 2;
        let c = connection(&ev);
        assert_eq!(c.outcome, Some("refused"));
        assert_eq!(c.previous_state, Some("syn_sent"));
        assert_eq!(c.error, Some("ECONNREFUSED"));
        assert!(c.failed());
        assert_eq!(c.handshake_us, None);
        // Orderly close after 3 s, established 250 us after connect().
        let mut ev = tcp_record(NJ_KIND_TCP_CLOSE);
        ev.established_ns = 1_000_250_000;
        ev.old_state = 9;
        let c = connection(&ev);
        assert_eq!(c.outcome, Some("closed"));
        assert_eq!(c.handshake_us, Some(250));
        assert_eq!(c.duration_ms, Some(3_999));
        assert!(!c.failed());
        assert_eq!(c.remote.addr.to_string(), "10.0.0.2");
        ev.error = 104;
        assert_eq!(connection(&ev).outcome, Some("reset"));
        // An inbound connection reports no handshake time (the client's, not ours).
        let mut ev = tcp_record(NJ_KIND_TCP_ESTABLISHED);
        ev.direction = NJ_TCP_PASSIVE as u8;
        ev.owner = NJ_TCP_OWNER_ACCEPT as u8;
        ev.established_ns = 1_000_250_000;
        match tcp_body(&ev) {
            EventBody::TcpEstablished(c) => {
                assert_eq!((c.direction, c.owner), ("inbound", "accept"));
                assert_eq!(c.handshake_us, None);
                assert_eq!(c.outcome, None);
            }
            other => panic!("{other:?}"),
        }
    }

    fn c_chars<const N: usize>(text: &str) -> [core::ffi::c_char; N] {
        let mut out = [0 as core::ffi::c_char; N];
        for (dst, src) in out.iter_mut().zip(text.bytes()) {
            *dst = src as core::ffi::c_char;
        }
        out
    }

    #[test]
    fn relative_paths_are_joined_to_their_directory() {
        assert_eq!(under_dir("", "a.txt"), "a.txt");
        assert_eq!(under_dir("/home/u", "a.txt"), "/home/u/a.txt");
        assert_eq!(under_dir("/home/u", "./d/./a.txt"), "/home/u/d/a.txt");
        assert_eq!(under_dir("/home/u", "../a.txt"), "/home/u/../a.txt");
        assert_eq!(under_dir("/", "etc/passwd"), "/etc/passwd");
        assert_eq!(under_dir("/", ""), "/");
        // AT_EMPTY_PATH: the path is the directory descriptor's file itself.
        assert_eq!(under_dir("/tmp/f", ""), "/tmp/f");

        // renameat(dfd, "a", AT_FDCWD, "/abs/b"): only the relative one has a directory.
        let mut ev = nj_path_event::default();
        ev.sys.hdr.kind = NJ_KIND_FILE_RENAME as u16;
        ev.sys.syscall = NJ_SYS_RENAMEAT;
        ev.sys.str0 = c_chars("a");
        ev.sys.str1 = c_chars("/abs/b");
        ev.dir0 = c_chars("/srv/data");
        match path_body(&ev).unwrap() {
            EventBody::FileRename { path, new_path, .. } => {
                assert_eq!(path, "/srv/data/a");
                assert_eq!(new_path, "/abs/b");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cred_change_decoding() {
        let mut ev = nj_syscall_event {
            syscall: NJ_SYS_CAPSET,
            ..Default::default()
        };
        ev.hdr.kind = NJ_KIND_CRED_CHANGE as u16;
        ev.args[..3].copy_from_slice(&[0x1ff_ffff_ffff, 0x1ff_ffff_ffff, 0]);
        match syscall_body(&ev).unwrap() {
            EventBody::CredChange {
                ids,
                cap_effective,
                cap_permitted,
                cap_inheritable,
                ..
            } => {
                assert!(ids.is_empty());
                assert_eq!(cap_effective.as_deref(), Some("0x1ffffffffff"));
                assert_eq!(cap_permitted.as_deref(), Some("0x1ffffffffff"));
                assert_eq!(cap_inheritable.as_deref(), Some("0x0"));
            }
            other => panic!("{other:?}"),
        }
        // setresuid(-1, 0, -1): ids, and no capability sets.
        ev.syscall = NJ_SYS_SETRESUID;
        ev.args[..3].copy_from_slice(&[u32::MAX as u64, 0, u32::MAX as u64]);
        match syscall_body(&ev).unwrap() {
            EventBody::CredChange {
                ids, cap_effective, ..
            } => {
                assert_eq!(ids, vec![None, Some(0), None]);
                assert_eq!(cap_effective, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_status_decoding() {
        let mut ev = nj_exit_event {
            exit_code: 3 << 8,
            ..Default::default()
        };
        match exit_body(&ev) {
            EventBody::ProcessExit {
                exit_code, signal, ..
            } => {
                assert_eq!(exit_code, Some(3));
                assert_eq!(signal, None);
            }
            other => panic!("{other:?}"),
        }
        ev.exit_code = 9 | 0x80;
        match exit_body(&ev) {
            EventBody::ProcessExit {
                exit_code,
                signal,
                core_dumped,
                ..
            } => {
                assert_eq!(exit_code, None);
                assert_eq!(signal, Some("SIGKILL"));
                assert!(core_dumped);
            }
            other => panic!("{other:?}"),
        }
    }
}
