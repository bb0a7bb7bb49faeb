//! Which program hooks what, and which user-facing group it belongs to.
//!
//! Syscall programs follow one naming rule, `nj_exit_<syscall>` on the
//! `syscalls/sys_exit_<syscall>` tracepoint, so the table only lists syscalls.

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
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::TracePoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Hook::RawTracePoint { name } => write!(f, "raw_tracepoint/{name}"),
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

const SYSCALLS: &[(&str, Group)] = &[
    ("open", Group::File),
    ("openat", Group::File),
    ("openat2", Group::File),
    ("unlink", Group::File),
    ("unlinkat", Group::File),
    ("rmdir", Group::File),
    ("rename", Group::File),
    ("renameat", Group::File),
    ("renameat2", Group::File),
    ("chmod", Group::File),
    ("fchmodat", Group::File),
    ("fchmod", Group::File),
    ("chown", Group::File),
    ("lchown", Group::File),
    ("fchownat", Group::File),
    ("fchown", Group::File),
    ("setuid", Group::Privilege),
    ("setgid", Group::Privilege),
    ("setreuid", Group::Privilege),
    ("setregid", Group::Privilege),
    ("setresuid", Group::Privilege),
    ("setresgid", Group::Privilege),
    ("capset", Group::Privilege),
    ("ptrace", Group::Privilege),
    ("kill", Group::Privilege),
    ("tkill", Group::Privilege),
    ("tgkill", Group::Privilege),
    ("mount", Group::System),
    ("umount", Group::System),
    ("init_module", Group::System),
    ("finit_module", Group::System),
    ("bpf", Group::System),
    ("memfd_create", Group::System),
    ("setns", Group::System),
    ("unshare", Group::System),
    ("connect", Group::Network),
    ("accept", Group::Network),
    ("accept4", Group::Network),
    ("bind", Group::Network),
    ("listen", Group::Network),
];

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
    for (syscall, group) in SYSCALLS {
        specs.push(ProgramSpec {
            program: format!("nj_exit_{syscall}"),
            hook: Hook::TracePoint {
                category: "syscalls",
                name: format!("sys_exit_{syscall}"),
            },
            group: *group,
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
            Hook::TracePoint {
                category: "syscalls",
                name: "sys_exit_openat".into()
            }
        );
        assert_eq!(openat.group, Group::File);
    }

    #[test]
    fn groups_round_trip() {
        for g in Group::ALL {
            assert_eq!(Group::parse(g.name()), Some(g));
        }
        assert_eq!(Group::parse("nope"), None);
    }
}
