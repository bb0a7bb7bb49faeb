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
    /// Slot `nr` of the syscall-exit dispatch table (`nj_sys_exit_progs`).
    SyscallExit {
        name: &'static str,
        nr: u32,
    },
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::TracePoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Hook::RawTracePoint { name } => write!(f, "raw_tracepoint/{name}"),
            Hook::SyscallExit { name, nr } => write!(f, "raw_tracepoint/sys_exit: {name} ({nr})"),
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

/// (program suffix, x86-64 syscall number, group). Numbers from the kernel's
/// arch/x86/entry/syscalls/syscall_64.tbl; `umount` is umount2, as its tracepoint was.
const SYSCALLS: &[(&str, u32, Group)] = &[
    ("open", 2, Group::File),
    ("openat", 257, Group::File),
    ("openat2", 437, Group::File),
    ("unlink", 87, Group::File),
    ("unlinkat", 263, Group::File),
    ("rmdir", 84, Group::File),
    ("rename", 82, Group::File),
    ("renameat", 264, Group::File),
    ("renameat2", 316, Group::File),
    ("chmod", 90, Group::File),
    ("fchmodat", 268, Group::File),
    ("fchmod", 91, Group::File),
    ("chown", 92, Group::File),
    ("lchown", 94, Group::File),
    ("fchownat", 260, Group::File),
    ("fchown", 93, Group::File),
    ("setuid", 105, Group::Privilege),
    ("setgid", 106, Group::Privilege),
    ("setreuid", 113, Group::Privilege),
    ("setregid", 114, Group::Privilege),
    ("setresuid", 117, Group::Privilege),
    ("setresgid", 119, Group::Privilege),
    ("capset", 126, Group::Privilege),
    ("ptrace", 101, Group::Privilege),
    ("kill", 62, Group::Privilege),
    ("tkill", 200, Group::Privilege),
    ("tgkill", 234, Group::Privilege),
    ("mount", 165, Group::System),
    ("umount", 166, Group::System),
    ("init_module", 175, Group::System),
    ("finit_module", 313, Group::System),
    ("bpf", 321, Group::System),
    ("memfd_create", 319, Group::System),
    ("setns", 308, Group::System),
    ("unshare", 272, Group::System),
    ("connect", 42, Group::Network),
    ("accept", 43, Group::Network),
    ("accept4", 288, Group::Network),
    ("bind", 49, Group::Network),
    ("listen", 50, Group::Network),
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
    for &(name, nr, group) in SYSCALLS {
        specs.push(ProgramSpec {
            program: format!("nj_exit_{name}"),
            hook: Hook::SyscallExit { name, nr },
            group,
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
                nr: 257
            }
        );
        assert_eq!(openat.group, Group::File);
    }

    #[test]
    fn syscall_numbers_fit_the_table_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for &(name, nr, _) in SYSCALLS {
            assert!(nr < nightjar_abi::NJ_SYS_EXIT_SLOTS, "{name}: {nr}");
            assert!(seen.insert(nr), "{name}: number {nr} twice");
        }
    }

    #[test]
    fn groups_round_trip() {
        for g in Group::ALL {
            assert_eq!(Group::parse(g.name()), Some(g));
        }
        assert_eq!(Group::parse("nope"), None);
    }
}
