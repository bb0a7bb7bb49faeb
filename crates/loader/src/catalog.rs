//! Which program hooks what, and which user-facing group it belongs to.
//!
//! Syscall programs follow one naming rule, `nj_exit_<syscall>`, and are not attached
//! themselves: the dispatcher `nj_sys_exit` on the `sys_exit` raw tracepoint tail-calls them by
//! x86-64 syscall number (bpf/sys/dispatch.bpf.c). So the table lists syscalls and numbers.

use std::fmt;

/// A set of hooks enabled or disabled together from the command line or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// exec, fork, exit and cgroup creation: always on (attribution depends on them).
    Process,
    /// open, unlink, rename, chmod, chown.
    File,
    /// set*id, capset, ptrace, kill.
    Privilege,
    /// mount, modules, bpf(), memfd_create, setns/unshare.
    System,
    /// connect, accept, bind, listen.
    Network,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Process,
        Group::File,
        Group::Privilege,
        Group::System,
        Group::Network,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Process => "process",
            Group::File => "file",
            Group::Privilege => "privilege",
            Group::System => "system",
            Group::Network => "network",
        }
    }

    pub fn parse(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == name)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a program attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    TracePoint {
        category: &'static str,
        name: String,
    },
    RawTracePoint {
        name: &'static str,
    },
    /// Slot `nr` of the syscall-exit dispatch table (`nj_sys_exit_progs`; none for an
    /// ia32-only syscall), and slots `ia32` of the table for 32-bit syscalls
    /// (`nj_sys_exit_ia32_progs`).
    SyscallExit {
        name: &'static str,
        nr: Option<u32>,
        ia32: Vec<u32>,
    },
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::TracePoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Hook::RawTracePoint { name } => write!(f, "raw_tracepoint/{name}"),
            Hook::SyscallExit { name, nr, ia32 } => {
                let numbers = nr.iter().map(|n| format!("{n}"));
                let numbers = numbers.chain(ia32.iter().map(|n| format!("ia32 {n}")));
                let numbers = numbers.collect::<Vec<_>>().join(", ");
                write!(f, "raw_tracepoint/sys_exit: {name} ({numbers})")
            }
        }
    }
}

/// One program of the embedded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    pub program: String,
    pub hook: Hook,
    pub group: Group,
}

/// A traced syscall: its program (`nj_exit_<name>`), its x86-64 number and the ia32 numbers
/// that reach the same program, each with the name `asm/unistd_64.h` / `asm/unistd_32.h` give
/// it (checked against those headers in the tests).
struct Syscall {
    name: &'static str,
    /// `None`: an ia32-only syscall (socketcall).
    x86_64: Option<(&'static str, u32)>,
    ia32: &'static [(&'static str, u32)],
    group: Group,
}

const fn sc(
    name: &'static str,
    x86_64: (&'static str, u32),
    ia32: &'static [(&'static str, u32)],
    group: Group,
) -> Syscall {
    Syscall {
        name,
        x86_64: Some(x86_64),
        ia32,
        group,
    }
}

/// Numbers from the kernel's arch/x86/entry/syscalls/syscall_{64,32}.tbl; `umount` is
/// umount2, as its tracepoint was.
const SYSCALLS: &[Syscall] = &[
    sc("open", ("open", 2), &[("open", 5)], Group::File),
    sc("openat", ("openat", 257), &[("openat", 295)], Group::File),
    sc(
        "openat2",
        ("openat2", 437),
        &[("openat2", 437)],
        Group::File,
    ),
    sc("unlink", ("unlink", 87), &[("unlink", 10)], Group::File),
    sc(
        "unlinkat",
        ("unlinkat", 263),
        &[("unlinkat", 301)],
        Group::File,
    ),
    sc("rmdir", ("rmdir", 84), &[("rmdir", 40)], Group::File),
    sc("rename", ("rename", 82), &[("rename", 38)], Group::File),
    sc(
        "renameat",
        ("renameat", 264),
        &[("renameat", 302)],
        Group::File,
    ),
    sc(
        "renameat2",
        ("renameat2", 316),
        &[("renameat2", 353)],
        Group::File,
    ),
    sc("chmod", ("chmod", 90), &[("chmod", 15)], Group::File),
    sc(
        "fchmodat",
        ("fchmodat", 268),
        &[("fchmodat", 306)],
        Group::File,
    ),
    sc("fchmod", ("fchmod", 91), &[("fchmod", 94)], Group::File),
    // ia32's first chown, lchown, fchown and set*id take 16-bit ids: the programs widen them as
    // the kernel does (nj_ia32_uid16_args), so they share a program with their 32-bit successors.
    sc(
        "chown",
        ("chown", 92),
        &[("chown", 182), ("chown32", 212)],
        Group::File,
    ),
    sc(
        "lchown",
        ("lchown", 94),
        &[("lchown", 16), ("lchown32", 198)],
        Group::File,
    ),
    sc(
        "fchownat",
        ("fchownat", 260),
        &[("fchownat", 298)],
        Group::File,
    ),
    sc(
        "fchown",
        ("fchown", 93),
        &[("fchown", 95), ("fchown32", 207)],
        Group::File,
    ),
    sc(
        "setuid",
        ("setuid", 105),
        &[("setuid", 23), ("setuid32", 213)],
        Group::Privilege,
    ),
    sc(
        "setgid",
        ("setgid", 106),
        &[("setgid", 46), ("setgid32", 214)],
        Group::Privilege,
    ),
    sc(
        "setreuid",
        ("setreuid", 113),
        &[("setreuid", 70), ("setreuid32", 203)],
        Group::Privilege,
    ),
    sc(
        "setregid",
        ("setregid", 114),
        &[("setregid", 71), ("setregid32", 204)],
        Group::Privilege,
    ),
    sc(
        "setresuid",
        ("setresuid", 117),
        &[("setresuid", 164), ("setresuid32", 208)],
        Group::Privilege,
    ),
    sc(
        "setresgid",
        ("setresgid", 119),
        &[("setresgid", 170), ("setresgid32", 210)],
        Group::Privilege,
    ),
    sc(
        "capset",
        ("capset", 126),
        &[("capset", 185)],
        Group::Privilege,
    ),
    sc(
        "ptrace",
        ("ptrace", 101),
        &[("ptrace", 26)],
        Group::Privilege,
    ),
    sc("kill", ("kill", 62), &[("kill", 37)], Group::Privilege),
    sc("tkill", ("tkill", 200), &[("tkill", 238)], Group::Privilege),
    sc(
        "tgkill",
        ("tgkill", 234),
        &[("tgkill", 270)],
        Group::Privilege,
    ),
    sc("mount", ("mount", 165), &[("mount", 21)], Group::System),
    sc(
        "umount",
        ("umount2", 166),
        &[("umount2", 52)],
        Group::System,
    ),
    sc(
        "init_module",
        ("init_module", 175),
        &[("init_module", 128)],
        Group::System,
    ),
    sc(
        "finit_module",
        ("finit_module", 313),
        &[("finit_module", 350)],
        Group::System,
    ),
    sc("bpf", ("bpf", 321), &[("bpf", 357)], Group::System),
    sc(
        "memfd_create",
        ("memfd_create", 319),
        &[("memfd_create", 356)],
        Group::System,
    ),
    sc("setns", ("setns", 308), &[("setns", 346)], Group::System),
    sc(
        "unshare",
        ("unshare", 272),
        &[("unshare", 310)],
        Group::System,
    ),
    sc(
        "connect",
        ("connect", 42),
        &[("connect", 362)],
        Group::Network,
    ),
    // ia32 has no accept of its own: 32-bit programs accept through accept4 or socketcall.
    sc("accept", ("accept", 43), &[], Group::Network),
    sc(
        "accept4",
        ("accept4", 288),
        &[("accept4", 364)],
        Group::Network,
    ),
    sc("bind", ("bind", 49), &[("bind", 361)], Group::Network),
    sc("listen", ("listen", 50), &[("listen", 363)], Group::Network),
    // ia32's multiplexed socket entry: connect, bind, listen, accept and accept4 through it.
    Syscall {
        name: "socketcall",
        x86_64: None,
        ia32: &[("socketcall", 102)],
        group: Group::Network,
    },
];

/// The dispatcher that runs the syscall programs (attached when any of them is enabled).
pub const SYSCALL_DISPATCHER: &str = "nj_sys_exit";

/// Every program in nightjar.bpf.o with its hook and group.
pub fn programs() -> Vec<ProgramSpec> {
    let mut specs = vec![
        ProgramSpec {
            program: "nj_process_exec".into(),
            hook: Hook::TracePoint {
                category: "sched",
                name: "sched_process_exec".into(),
            },
            group: Group::Process,
        },
        ProgramSpec {
            program: "nj_process_fork".into(),
            hook: Hook::RawTracePoint {
                name: "sched_process_fork",
            },
            group: Group::Process,
        },
        ProgramSpec {
            program: "nj_process_exit".into(),
            hook: Hook::TracePoint {
                category: "sched",
                name: "sched_process_exit".into(),
            },
            group: Group::Process,
        },
        ProgramSpec {
            program: "nj_cgroup_mkdir".into(),
            hook: Hook::TracePoint {
                category: "cgroup",
                name: "cgroup_mkdir".into(),
            },
            group: Group::Process,
        },
    ];
    for syscall in SYSCALLS {
        specs.push(ProgramSpec {
            program: format!("nj_exit_{}", syscall.name),
            hook: Hook::SyscallExit {
                name: syscall.name,
                nr: syscall.x86_64.map(|(_, nr)| nr),
                ia32: syscall.ia32.iter().map(|&(_, nr)| nr).collect(),
            },
            group: syscall.group,
        });
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let specs = programs();
        assert_eq!(specs.len(), 4 + SYSCALLS.len());
        let openat = specs
            .iter()
            .find(|s| s.program == "nj_exit_openat")
            .unwrap();
        assert_eq!(
            openat.hook,
            Hook::SyscallExit {
                name: "openat",
                nr: Some(257),
                ia32: vec![295],
            }
        );
        assert_eq!(openat.group, Group::File);
    }

    #[test]
    fn the_dispatchers_direct_openat_call_uses_openats_number() {
        let openat = SYSCALLS.iter().find(|s| s.name == "openat").unwrap();
        assert_eq!(
            openat.x86_64.map(|(_, nr)| nr),
            Some(nightjar_abi::NJ_X86_NR_OPENAT)
        );
    }

    #[test]
    fn syscall_numbers_fit_the_tables_and_do_not_repeat() {
        let mut x86_64 = std::collections::HashSet::new();
        let mut ia32 = std::collections::HashSet::new();
        for syscall in SYSCALLS {
            if let Some((_, nr)) = syscall.x86_64 {
                assert!(
                    nr < nightjar_abi::NJ_SYS_EXIT_SLOTS,
                    "{}: {nr}",
                    syscall.name
                );
                assert!(x86_64.insert(nr), "{}: number {nr} twice", syscall.name);
            }
            for &(_, nr) in syscall.ia32 {
                assert!(
                    nr < nightjar_abi::NJ_SYS_EXIT_SLOTS,
                    "{}: ia32 {nr}",
                    syscall.name
                );
                assert!(ia32.insert(nr), "{}: ia32 number {nr} twice", syscall.name);
            }
        }
    }

    /// `__NR_<name>` numbers from a system `asm/unistd_*.h`.
    fn header_numbers(file: &str) -> std::collections::HashMap<String, u32> {
        let path = format!("/usr/include/x86_64-linux-gnu/asm/{file}");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (Debian package linux-libc-dev)"));
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "#define").then_some(())?;
                let name = words.next()?.strip_prefix("__NR_")?;
                Some((name.to_string(), words.next()?.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn syscall_numbers_match_the_system_headers() {
        let x86_64 = header_numbers("unistd_64.h");
        let ia32 = header_numbers("unistd_32.h");
        for syscall in SYSCALLS {
            if let Some((name, nr)) = syscall.x86_64 {
                assert_eq!(x86_64.get(name), Some(&nr), "x86-64 {name}");
            }
            for &(name, nr) in syscall.ia32 {
                assert_eq!(ia32.get(name), Some(&nr), "ia32 {name}");
            }
        }
    }

    /// nj_ia32_uid16_args (bpf/lib/syscall.bpf.h) lists, by number, the ia32 calls that take
    /// 16-bit ids: exactly those the catalog gives a `...32` successor for.
    #[test]
    fn the_programs_widen_the_ids_of_exactly_the_16_bit_calls() {
        let source = include_str!("../../../bpf/lib/syscall.bpf.h");
        let body = source
            .split("nj_ia32_uid16_args(__u64 nr)")
            .nth(1)
            .and_then(|rest| rest.split("default:").next())
            .expect("nj_ia32_uid16_args in syscall.bpf.h");
        let widened: std::collections::BTreeSet<u32> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("case "))
            .filter_map(|l| l.split(':').next()?.trim().parse().ok())
            .collect();
        let sixteen_bit: std::collections::BTreeSet<u32> = SYSCALLS
            .iter()
            .filter(|s| s.ia32.iter().any(|(name, _)| name.ends_with("32")))
            .flat_map(|s| s.ia32.iter().filter(|(name, _)| !name.ends_with("32")))
            .map(|&(_, nr)| nr)
            .collect();
        assert_eq!(widened, sixteen_bit);
    }

    #[test]
    fn groups_round_trip() {
        for g in Group::ALL {
            assert_eq!(Group::parse(g.name()), Some(g));
        }
        assert_eq!(Group::parse("nope"), None);
    }
}
