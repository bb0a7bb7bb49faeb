//! Loading and attaching Nightjar's programs, and leaving nothing behind.
//!
//! All programs come from one linked object, so they share one ring buffer. Only the groups
//! asked for are loaded. Links belong to the [`KernelProbes`] value: dropping it (on SIGINT or
//! SIGTERM, or on any error path) detaches every program and frees every map. Nothing is
//! pinned, so a crash leaves nothing behind either: the kernel frees what no fd holds.

use std::collections::BTreeSet;

use aya::maps::HashMap as BpfHashMap;
use aya::maps::{LpmTrie, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use nightjar_abi::{
    nj_connect_config, nj_prefix_key, nj_topdir, nj_topdirs, NJ_PREFIX_ANY_ACCESS, NJ_PREFIX_MAX,
    NJ_PREFIX_WRITE_ONLY, NJ_SYS_EXIT_WORDS, NJ_TOPDIRS_MAX, NJ_TOPDIR_HASH_MUL, NJ_TOPDIR_MAX,
};

use crate::catalog::{self, Group, Hook, ProgramSpec};
use crate::counters::KernelCounters;
use crate::{kfunc, objects};

/// Value of `nj_connect_config`, wrapped so Aya may copy it (the Pod impl must sit on a
/// local type).
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
struct ConnectConfig(nj_connect_config);
// SAFETY: repr(transparent) over a bindgen repr(C) struct of two u32.
unsafe impl aya::Pod for ConnectConfig {}

/// Value of `nj_file_topdirs`, wrapped for Aya as above.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
struct TopDirs(nj_topdirs);
// SAFETY: repr(transparent) over a bindgen repr(C) struct of integers and arrays of them.
unsafe impl aya::Pod for TopDirs {}

/// Path prefixes where every open is reported by default: secrets and credentials, boot and
/// kernel memory, Kubernetes service-account tokens. Chosen like Falco's "read sensitive file"
/// and Tetragon's file policies: what an attacker reads.
pub const DEFAULT_FILE_PREFIXES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssh/",
    "/etc/pam.d/",
    "/etc/security/",
    "/etc/kubernetes/",
    "/root/",
    "/boot/",
    "/var/run/secrets/",
    "/run/secrets/",
    "/var/lib/kubelet/",
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
];

/// Path prefixes where only opens that may write are reported by default: system
/// configuration, binaries and libraries, kernel tunables, cron. Every process start reads
/// /etc/ld.so.cache and libc; only a change to them is news.
pub const DEFAULT_FILE_WRITE_PREFIXES: &[&str] = &[
    "/etc/",
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/lib/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/lib/",
    "/lib64/",
    "/proc/sys/",
    "/sys/kernel/",
    "/var/spool/cron/",
];

/// What to load.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub groups: BTreeSet<Group>,
    /// Every open under these prefixes is reported.
    pub file_prefixes: Vec<String>,
    /// Only opens that may write (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC) under these prefixes are
    /// reported. When both lists are empty, every open is reported.
    pub file_write_prefixes: Vec<String>,
    /// Ring-buffer size in bytes (a power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// The agent's own tgid: its syscalls are never reported.
    pub agent_tgid: u32,
    /// Entries of the TC flow table (an LRU hash; what it evicts is counted).
    pub flow_table_entries: u32,
    /// Prefix lengths XDP counts source networks by (IPv4, IPv6).
    pub xdp_source_prefixes: (u32, u32),
    /// Load the probe-read build even where the kernel has bpf_rdonly_cast (see
    /// [`KernelReads`]): for tests of the fallback, and kernels that misbehave.
    pub probe_read_only: bool,
}

/// How the programs read kernel structs behind pointers they look up (an open file, a socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelReads {
    /// Plain loads through pointers cast with the bpf_rdonly_cast kfunc (kernels 6.2 and
    /// later): the default wherever the kernel has it.
    Cast,
    /// One `bpf_probe_read_kernel` call per field: the fallback.
    ProbeRead,
}

impl KernelReads {
    /// Its name in logs and the `mode` label of `nightjar_bpf_kernel_reads`.
    pub fn name(self) -> &'static str {
        match self {
            KernelReads::Cast => "kfunc_cast",
            KernelReads::ProbeRead => "probe_read",
        }
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            groups: Group::ALL.into_iter().collect(),
            file_prefixes: DEFAULT_FILE_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            file_write_prefixes: DEFAULT_FILE_WRITE_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ringbuf_bytes: 16 * 1024 * 1024,
            agent_tgid: std::process::id(),
            flow_table_entries: 65_536,
            xdp_source_prefixes: (24, 64),
            probe_read_only: false,
        }
    }
}

/// Why the programs could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("missing privileges: {missing}; run as root or grant {missing}")]
    NotPermitted { missing: String },
    #[error("kernel BTF is unavailable ({0}); Nightjar needs CONFIG_DEBUG_INFO_BTF (/sys/kernel/btf/vmlinux)")]
    NoBtf(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("loading the BPF object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {detail}")]
    Map { name: &'static str, detail: String },
    #[error("preparing the kernel filesystems: {0}")]
    Filesystem(String),
}

/// A program that could not be attached; the rest of the agent still runs.
#[derive(Debug, Clone)]
pub struct AttachFailure {
    pub program: String,
    pub hook: String,
    pub error: String,
}

/// Loaded and attached programs. Dropping this detaches everything.
#[derive(Debug)]
pub struct KernelProbes {
    ebpf: Ebpf,
    reads: KernelReads,
    attached: Vec<ProgramSpec>,
    failures: Vec<AttachFailure>,
}

/// The two syscall-exit dispatch tables, by the ABI the syscall came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyscallTable {
    X86_64,
    Ia32,
}

impl SyscallTable {
    fn map_name(self) -> &'static str {
        match self {
            SyscallTable::X86_64 => "nj_sys_exit_progs",
            SyscallTable::Ia32 => "nj_sys_exit_ia32_progs",
        }
    }
}

/// The dispatch-table slots (table, index) a syscall program fills.
fn syscall_slots(hook: &Hook) -> Vec<(SyscallTable, u32)> {
    match hook {
        Hook::SyscallExit { nr, ia32, .. } => nr
            .iter()
            .map(|&n| (SyscallTable::X86_64, n))
            .chain(ia32.iter().map(|&n| (SyscallTable::Ia32, n)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Bitmap of syscall numbers, one bit a dispatch-table slot (bit nr % 64 of word nr / 64).
type SyscallBits = [u64; NJ_SYS_EXIT_WORDS as usize];

/// The syscall numbers the enabled groups put in each dispatch table (x86-64, ia32): the
/// dispatcher returns at once for the others (nj_sys_exit_*_traced).
fn traced_syscalls(groups: &BTreeSet<Group>) -> (SyscallBits, SyscallBits) {
    let mut x86 = [0u64; NJ_SYS_EXIT_WORDS as usize];
    let mut ia32 = [0u64; NJ_SYS_EXIT_WORDS as usize];
    for spec in catalog::programs()
        .into_iter()
        .filter(|spec| groups.contains(&spec.group))
    {
        for (table, nr) in syscall_slots(&spec.hook) {
            let bits = match table {
                SyscallTable::X86_64 => &mut x86,
                SyscallTable::Ia32 => &mut ia32,
            };
            // Numbers past the table are refused when the table is filled (catalog tests).
            if let Some(word) = bits.get_mut(nr as usize / 64) {
                *word |= 1 << (nr % 64);
            }
        }
    }
    (x86, ia32)
}

impl Drop for KernelProbes {
    /// Empties the syscall dispatch slots it filled first. A program array lets go of its
    /// programs in a kernel work item after its last user closes it; emptied here, the syscall
    /// programs go with their last descriptor instead.
    fn drop(&mut self) {
        let slots: Vec<_> = self
            .attached
            .iter()
            .flat_map(|spec| syscall_slots(&spec.hook))
            .collect();
        for (table, slot) in slots {
            if let Some(Ok(mut table)) = self
                .ebpf
                .map_mut(table.map_name())
                .map(ProgramArray::<&mut MapData>::try_from)
            {
                let _ = table.clear_index(&slot);
            }
        }
    }
}

impl KernelProbes {
    /// Loads the enabled groups and attaches them.
    ///
    /// A program that fails to attach (a syscall this kernel does not have) is recorded in
    /// [`failures`](Self::failures) and skipped; a program that fails to load is an error.
    pub fn load(config: &ProbeConfig) -> Result<Self, LoadError> {
        check_privileges()?;
        config.validate()?;
        crate::features::ensure_kernel_filesystems().map_err(LoadError::Filesystem)?;
        let btf = Btf::from_sys_fs().map_err(|e| LoadError::NoBtf(e.to_string()))?;
        let cast_id = if config.probe_read_only {
            None
        } else {
            kfunc::rdonly_cast_id(&btf)
        };
        if let Some(id) = cast_id {
            let (object, _) = kfunc::patch_rdonly_cast(objects::NIGHTJAR, id)
                .map_err(|e| LoadError::Config(format!("nightjar.bpf.o: {e}")))?;
            match Self::load_object(config, &btf, object.bytes(), KernelReads::Cast) {
                // The verifier may still refuse the kfunc from these program types on some
                // kernels: the probe-read build does the same work without it.
                Err(LoadError::Program { name, source }) => tracing::warn!(
                    program = %name,
                    error = %source,
                    "refused with bpf_rdonly_cast; loading the probe-read build instead"
                ),
                other => return other,
            }
        }
        Self::load_object(
            config,
            &btf,
            objects::NIGHTJAR_PROBE_READ,
            KernelReads::ProbeRead,
        )
    }

    fn load_object(
        config: &ProbeConfig,
        btf: &Btf,
        object: &[u8],
        reads: KernelReads,
    ) -> Result<Self, LoadError> {
        let filter_enabled =
            u32::from(!config.file_prefixes.is_empty() || !config.file_write_prefixes.is_empty());
        let (x86_traced, ia32_traced) = traced_syscalls(&config.groups);
        let ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .override_global("nj_agent_tgid", &config.agent_tgid, true)
            .override_global("nj_sys_exit_x86_traced", &x86_traced, true)
            .override_global("nj_sys_exit_ia32_traced", &ia32_traced, true)
            .override_global("nj_file_filter_enabled", &filter_enabled, true)
            .override_global("nj_xdp_source_prefix4", &config.xdp_source_prefixes.0, true)
            .override_global("nj_xdp_source_prefix6", &config.xdp_source_prefixes.1, true)
            .map_max_entries("nj_events", config.ringbuf_bytes)
            .map_max_entries("nj_flows", config.flow_table_entries)
            .load(object)
            .map_err(LoadError::Object)?;
        let mut probes = Self {
            ebpf,
            reads,
            attached: Vec::new(),
            failures: Vec::new(),
        };
        probes.set_file_prefixes(&config.file_prefixes, &config.file_write_prefixes)?;
        let mut syscall_programs = false;
        for spec in catalog::programs() {
            if config.groups.contains(&spec.group) {
                syscall_programs |= matches!(spec.hook, Hook::SyscallExit { .. });
                probes.attach(spec)?;
            }
        }
        // The table is full before the dispatcher starts running it.
        if syscall_programs {
            probes.attach(ProgramSpec {
                program: catalog::SYSCALL_DISPATCHER.into(),
                hook: Hook::RawTracePoint { name: "sys_exit" },
                group: Group::Process,
            })?;
        }
        Ok(probes)
    }

    fn attach(&mut self, spec: ProgramSpec) -> Result<(), LoadError> {
        let program_error = |source| LoadError::Program {
            name: spec.program.clone(),
            source,
        };
        let program = self
            .ebpf
            .program_mut(&spec.program)
            .ok_or_else(|| LoadError::Map {
                name: "programs",
                detail: format!("{} is missing from nightjar.bpf.o", spec.program),
            })?;
        let result = match &spec.hook {
            Hook::TracePoint { category, name } => {
                let tp: &mut TracePoint = program.try_into().map_err(program_error)?;
                tp.load().map_err(program_error)?;
                // A program that cannot attach is unloaded: nothing idle stays in the kernel.
                tp.attach(category, name).map(drop).inspect_err(|_| {
                    let _ = tp.unload();
                })
            }
            Hook::RawTracePoint { name } => {
                let tp: &mut RawTracePoint = program.try_into().map_err(program_error)?;
                tp.load().map_err(program_error)?;
                tp.attach(name).map(drop).inspect_err(|_| {
                    let _ = tp.unload();
                })
            }
            Hook::SyscallExit { .. } => {
                let tp: &mut RawTracePoint = program.try_into().map_err(program_error)?;
                tp.load().map_err(program_error)?;
                let fd = tp
                    .fd()
                    .and_then(|fd| fd.try_clone().map_err(Into::into))
                    .map_err(program_error)?;
                for (table, slot) in syscall_slots(&spec.hook) {
                    let table_name = table.map_name();
                    let map = self
                        .ebpf
                        .map_mut(table_name)
                        .ok_or_else(|| missing_map(table_name))?;
                    let mut table: ProgramArray<&mut MapData> =
                        ProgramArray::try_from(map).map_err(|e| map_error(table_name, e))?;
                    table
                        .set(slot, &fd, 0)
                        .map_err(|e| map_error(table_name, e))?;
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => self.attached.push(spec),
            Err(err) => {
                self.failures.push(AttachFailure {
                    program: spec.program.clone(),
                    hook: spec.hook.to_string(),
                    error: err.to_string(),
                });
            }
        }
        Ok(())
    }

    /// How the loaded programs read kernel structs.
    pub fn kernel_reads(&self) -> KernelReads {
        self.reads
    }

    /// Programs attached, in attach order.
    pub fn attached(&self) -> &[ProgramSpec] {
        &self.attached
    }

    /// Programs loaded in the kernel now (tracepoints, cgroup, TC and XDP hooks): what
    /// `bpftool prog list` shows of ours. A TC program on several interfaces counts once.
    pub fn programs_loaded(&self) -> usize {
        self.ebpf
            .programs()
            .filter(|(_, program)| program.fd().is_ok())
            .count()
    }

    /// Programs that could not be attached, with the reason.
    pub fn failures(&self) -> &[AttachFailure] {
        &self.failures
    }

    /// Replaces the file-open prefix filter: `any_access` prefixes report every open,
    /// `write_only` ones only opens that may write. Takes effect for the next open; where a
    /// path is under both, the longer prefix decides.
    ///
    /// Empty lists report no opens only if the filter was enabled at load; whether the filter
    /// is on at all is fixed at load time.
    pub fn set_file_prefixes(
        &mut self,
        any_access: &[String],
        write_only: &[String],
    ) -> Result<(), LoadError> {
        let entries: Vec<(&String, u8)> = any_access
            .iter()
            .map(|p| (p, NJ_PREFIX_ANY_ACCESS as u8))
            .chain(write_only.iter().map(|p| (p, NJ_PREFIX_WRITE_ONLY as u8)))
            .collect();
        let map = self
            .ebpf
            .map_mut("nj_file_prefixes")
            .ok_or_else(|| missing_map("nj_file_prefixes"))?;
        let mut trie: LpmTrie<&mut MapData, [u8; NJ_PREFIX_MAX as usize], u8> =
            LpmTrie::try_from(map).map_err(|e| map_error("nj_file_prefixes", e))?;
        let old: Vec<_> = trie.keys().filter_map(Result::ok).collect();
        for key in old {
            let _ = trie.remove(&key);
        }
        for &(prefix, mode) in &entries {
            let (bits, bytes) = prefix_key(prefix)?;
            trie.insert(&aya::maps::lpm_trie::Key::new(bits, bytes), mode, 0)
                .map_err(|e| map_error("nj_file_prefixes", e))?;
        }
        self.set_top_dirs(&entries)
    }

    /// Fills the top-level directory pre-filter from the prefixes (see nj_topdirs).
    fn set_top_dirs(&mut self, entries: &[(&String, u8)]) -> Result<(), LoadError> {
        let value = TopDirs(top_dirs(entries)?);
        let map = self
            .ebpf
            .map_mut("nj_file_topdirs")
            .ok_or_else(|| missing_map("nj_file_topdirs"))?;
        let mut array: aya::maps::Array<&mut MapData, TopDirs> =
            aya::maps::Array::try_from(map).map_err(|e| map_error("nj_file_topdirs", e))?;
        array
            .set(0, value, 0)
            .map_err(|e| map_error("nj_file_topdirs", e))
    }

    /// Attaches the TC flow-accounting programs to ingress and egress of each interface
    /// (tcx links on kernels >= 6.6, appended after programs already there; a clsact qdisc
    /// and netlink filters otherwise). Returns ifindex -> name for the flow table.
    pub fn attach_tc(
        &mut self,
        interfaces: &[String],
    ) -> Result<std::collections::HashMap<u32, std::sync::Arc<str>>, LoadError> {
        let mut names = std::collections::HashMap::new();
        for iface in interfaces {
            let index = self.attach_tc_interface(iface)?;
            names.insert(index, std::sync::Arc::from(iface.as_str()));
        }
        Ok(names)
    }

    /// Attaches TC accounting to one more interface (loading the programs the first time);
    /// returns its ifindex. The links go away by themselves when the interface does.
    pub fn attach_tc_interface(&mut self, iface: &str) -> Result<u32, LoadError> {
        let c_name = std::ffi::CString::new(iface)
            .map_err(|_| LoadError::Config(format!("interface name {iface:?} has a NUL byte")))?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(LoadError::Config(format!("unknown interface {iface:?}")));
        }
        let tcx = aya::util::KernelVersion::current()
            .map(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
            .unwrap_or(false);
        if !tcx {
            // An existing clsact qdisc is fine (EEXIST); it is never replaced.
            let _ = aya::programs::tc::qdisc_add_clsact(iface);
        }
        for (program, attach_type) in [
            ("nj_tc_ingress", aya::programs::TcAttachType::Ingress),
            ("nj_tc_egress", aya::programs::TcAttachType::Egress),
        ] {
            let program_error = |source| program_error(program, source);
            let prog: &mut aya::programs::SchedClassifier = self.program(program)?;
            if prog.fd().is_err() {
                prog.load().map_err(program_error)?;
            }
            prog.attach(iface, attach_type).map_err(program_error)?;
        }
        Ok(index)
    }

    /// Attaches the cgroup hooks to the cgroup v2 root at `cgroup_root`, as bpf_links that run
    /// alongside other users' programs on that cgroup: cgroup/connect4 and connect6 (connect
    /// rules, and the owner of every TCP connect) and sock_ops (TCP lifecycle). `rules` are
    /// loaded first, so no connect slips past them.
    pub fn attach_cgroup_hooks(
        &mut self,
        rules: &[crate::connect_rules::ConnectRule],
        cgroup_root: &std::path::Path,
    ) -> Result<(), LoadError> {
        self.load_connect_rules(rules, cgroup_root)?;
        let cgroup = std::fs::File::open(cgroup_root).map_err(|e| {
            LoadError::Config(format!(
                "opening cgroup root {}: {e}",
                cgroup_root.display()
            ))
        })?;
        // Aya attaches with a bpf_link, which the kernel always runs alongside other programs
        // on the cgroup (link attachments are multi by nature and take no BPF_F_ALLOW_MULTI
        // flag: passing it fails with EINVAL).
        let mode = aya::programs::CgroupAttachMode::default();
        for program in ["nj_connect4", "nj_connect6"] {
            let program_error = |source| program_error(program, source);
            let prog: &mut aya::programs::CgroupSockAddr = self.program(program)?;
            prog.load().map_err(program_error)?;
            prog.attach(&cgroup, mode).map_err(program_error)?;
        }
        let program_error = |source| program_error("nj_sockops", source);
        let prog: &mut aya::programs::SockOps = self.program("nj_sockops")?;
        prog.load().map_err(program_error)?;
        prog.attach(&cgroup, mode).map_err(program_error)?;
        Ok(())
    }

    /// Loads the rules; a scoped rule's cgroup path (under `cgroup_root`) becomes its id.
    fn load_connect_rules(
        &mut self,
        rules: &[crate::connect_rules::ConnectRule],
        cgroup_root: &std::path::Path,
    ) -> Result<(), LoadError> {
        use std::os::unix::fs::MetadataExt;
        let mut scoped = Vec::new();
        let mut keys = Vec::new();
        for (id, rule) in rules.iter().enumerate() {
            let scope_id = match &rule.scope {
                None => 0,
                Some(path) => {
                    let dir = cgroup_root.join(path.trim_start_matches('/'));
                    let id = std::fs::metadata(&dir).map(|m| m.ino()).map_err(|e| {
                        LoadError::Config(format!(
                            "connect rule {rule}: cgroup {}: {e}",
                            dir.display()
                        ))
                    })?;
                    scoped.push(id);
                    id
                }
            };
            let (bits, data) = rule.key(scope_id);
            keys.push((bits, data, [rule.action.code(), id as u32]));
        }
        let map = self
            .ebpf
            .map_mut("nj_connect_rules")
            .ok_or_else(|| missing_map("nj_connect_rules"))?;
        let mut trie: LpmTrie<&mut MapData, [u8; 28], [u32; 2]> =
            LpmTrie::try_from(map).map_err(|e| map_error("nj_connect_rules", e))?;
        for (bits, data, value) in keys {
            trie.insert(&aya::maps::lpm_trie::Key::new(bits, data), value, 0)
                .map_err(|e| map_error("nj_connect_rules", e))?;
        }
        let map = self
            .ebpf
            .map_mut("nj_connect_scopes")
            .ok_or_else(|| missing_map("nj_connect_scopes"))?;
        let mut scopes: BpfHashMap<&mut MapData, u64, u32> =
            BpfHashMap::try_from(map).map_err(|e| map_error("nj_connect_scopes", e))?;
        let config = ConnectConfig(nj_connect_config {
            rules: rules.len() as u32,
            scoped: scoped.len() as u32,
        });
        for id in scoped {
            scopes
                .insert(id, 1, 0)
                .map_err(|e| map_error("nj_connect_scopes", e))?;
        }
        // Written after the rules, so the hook never looks for rules that are not there yet.
        let map = self
            .ebpf
            .map_mut("nj_connect_config")
            .ok_or_else(|| missing_map("nj_connect_config"))?;
        let mut array: aya::maps::Array<&mut MapData, ConnectConfig> =
            aya::maps::Array::try_from(map).map_err(|e| map_error("nj_connect_config", e))?;
        array
            .set(0, config, 0)
            .map_err(|e| map_error("nj_connect_config", e))?;
        Ok(())
    }

    pub(crate) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// A program of the object as its concrete type.
    pub(crate) fn program<'a, T>(&'a mut self, name: &str) -> Result<&'a mut T, LoadError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| LoadError::Map {
                name: "programs",
                detail: format!("{name} is missing from nightjar.bpf.o"),
            })?
            .try_into()
            .map_err(|source| program_error(name, source))
    }

    /// Takes the flow table (once) for the flow poller.
    pub fn take_flow_table(
        &mut self,
        interfaces: std::collections::HashMap<u32, std::sync::Arc<str>>,
        timers: crate::flows::FlowTimers,
        clock: nightjar_core::time::BootClock,
        node: std::sync::Arc<str>,
    ) -> Result<crate::flows::FlowTable, LoadError> {
        let map = self
            .ebpf
            .take_map("nj_flows")
            .ok_or_else(|| missing_map("nj_flows"))?;
        let map = aya::maps::HashMap::try_from(map).map_err(|e| map_error("nj_flows", e))?;
        let created = self
            .ebpf
            .take_map("nj_flows_created")
            .ok_or_else(|| missing_map("nj_flows_created"))?;
        let created =
            PerCpuArray::try_from(created).map_err(|e| map_error("nj_flows_created", e))?;
        Ok(crate::flows::FlowTable::new(
            map, created, interfaces, timers, clock, node,
        ))
    }

    /// Takes the ring buffer out (once) for the drain task.
    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map("nj_events")
            .ok_or_else(|| missing_map("nj_events"))?;
        RingBuf::try_from(map).map_err(|e| map_error("nj_events", e))
    }

    /// Takes the loss counters out (once) for the telemetry task.
    pub fn take_counters(&mut self) -> Result<KernelCounters, LoadError> {
        let errors = self
            .ebpf
            .take_map("nj_errors")
            .ok_or_else(|| missing_map("nj_errors"))?;
        let by_kind = self
            .ebpf
            .take_map("nj_lost_by_kind")
            .ok_or_else(|| missing_map("nj_lost_by_kind"))?;
        Ok(KernelCounters::new(
            PerCpuArray::try_from(errors).map_err(|e| map_error("nj_errors", e))?,
            PerCpuArray::try_from(by_kind).map_err(|e| map_error("nj_lost_by_kind", e))?,
        ))
    }
}

/// A prefix as an LPM key: bit length and NUL-padded bytes.
fn prefix_key(prefix: &str) -> Result<(u32, [u8; NJ_PREFIX_MAX as usize]), LoadError> {
    let bytes = prefix.as_bytes();
    if bytes.is_empty() || bytes.len() > NJ_PREFIX_MAX as usize || !prefix.starts_with('/') {
        return Err(LoadError::Config(format!(
            "file prefix {prefix:?} must be an absolute path of 1 to {NJ_PREFIX_MAX} bytes"
        )));
    }
    let mut data = [0u8; NJ_PREFIX_MAX as usize];
    data[..bytes.len()].copy_from_slice(bytes);
    Ok((bytes.len() as u32 * 8, data))
}

type TopDirKey = [u8; NJ_TOPDIR_MAX as usize];

/// Each top-level directory with the most permissive mode of the prefixes under it.
fn top_dir_modes(entries: &[(&String, u8)]) -> Result<Vec<(TopDirKey, u8)>, LoadError> {
    let mut modes: Vec<(TopDirKey, u8)> = Vec::new();
    for &(prefix, mode) in entries {
        let key = top_dir_key(prefix)?;
        match modes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, m)) if mode == NJ_PREFIX_ANY_ACCESS as u8 => *m = mode,
            Some(_) => {}
            None => modes.push((key, mode)),
        }
    }
    if modes.len() > NJ_TOPDIRS_MAX as usize {
        return Err(LoadError::Config(format!(
            "the file prefixes start with {} different top-level directories; at most {NJ_TOPDIRS_MAX} are supported",
            modes.len()
        )));
    }
    Ok(modes)
}

/// The value of `nj_file_topdirs` for the prefixes: each top-level directory's name as the
/// kernel side compares it (two little-endian words) and its mode.
fn top_dirs(entries: &[(&String, u8)]) -> Result<nj_topdirs, LoadError> {
    let modes = top_dir_modes(entries)?;
    let mut value = nj_topdirs {
        count: modes.len() as u32,
        _pad: 0,
        filter: [0; 4],
        dirs: [nj_topdir {
            name: [0; 2],
            mode: 0,
            _pad: [0; 7],
        }; NJ_TOPDIRS_MAX as usize],
    };
    for (slot, (key, mode)) in value.dirs.iter_mut().zip(modes) {
        let (low, high) = key.split_at(8);
        slot.name = [le_word(low), le_word(high)];
        slot.mode = mode;
        let hash = top_dir_hash(slot.name);
        value.filter[hash / 64] |= 1 << (hash % 64);
    }
    Ok(value)
}

/// A top-level directory name's bit in `nj_topdirs.filter` (the hash its header defines).
fn top_dir_hash(name: [u64; 2]) -> usize {
    // bindgen types the C constant i64; the bits are the u64 multiplier.
    const MUL: u64 = NJ_TOPDIR_HASH_MUL as u64;
    let mixed = name[0] ^ name[1].wrapping_mul(MUL);
    (mixed.wrapping_mul(MUL) >> 56) as usize
}

/// Eight bytes as the little-endian word a BPF program loads from them.
fn le_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// The first component of a prefix ("etc" for "/etc/"), cut as the kernel cuts names.
fn top_dir_key(prefix: &str) -> Result<TopDirKey, LoadError> {
    let rest = prefix.strip_prefix('/').unwrap_or(prefix);
    let Some((top, _)) = rest.split_once('/') else {
        return Err(LoadError::Config(format!(
            "file prefix {prefix:?} must name a top-level directory followed by '/' (e.g. \"/etc/\" or \"/dev/mem\")"
        )));
    };
    if top.is_empty() {
        return Err(LoadError::Config(format!(
            "file prefix {prefix:?} has an empty first component"
        )));
    }
    let mut key = [0u8; NJ_TOPDIR_MAX as usize];
    let n = top.len().min(NJ_TOPDIR_MAX as usize - 1);
    key[..n].copy_from_slice(&top.as_bytes()[..n]);
    Ok(key)
}

const _: () = assert!(core::mem::size_of::<nj_topdir>() == NJ_TOPDIR_MAX as usize + 8);

// Aya's Key<[u8; 28]> (u32 bit length, then scope, port, address, padding) must match the C key.
const _: () = assert!(core::mem::size_of::<nightjar_abi::nj_connect_rule_key>() == 4 + 28);

// The C key layout and Aya's Key<[u8; N]> must agree: a u32 bit length, then the bytes.
const _: () = assert!(core::mem::size_of::<nj_prefix_key>() == 4 + NJ_PREFIX_MAX as usize);

impl ProbeConfig {
    /// Checks prefixes, ring-buffer size and groups without touching the kernel.
    pub fn validate(&self) -> Result<(), LoadError> {
        validate(self)
    }
}

fn validate(config: &ProbeConfig) -> Result<(), LoadError> {
    for prefix in config
        .file_prefixes
        .iter()
        .chain(&config.file_write_prefixes)
    {
        prefix_key(prefix)?;
        top_dir_key(prefix)?;
    }
    let bytes = config.ringbuf_bytes;
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(LoadError::Config(format!(
            "ring buffer size {bytes} must be a power of two of at least 4096 bytes"
        )));
    }
    let (v4, v6) = config.xdp_source_prefixes;
    if v4 > 32 || v6 > 128 {
        return Err(LoadError::Config(format!(
            "XDP source prefix lengths {v4} (IPv4, 0-32) and {v6} (IPv6, 0-128) out of range"
        )));
    }
    let flows = config.flow_table_entries;
    if !(64..=16 * 1024 * 1024).contains(&flows) {
        return Err(LoadError::Config(format!(
            "flow table size {flows} must be between 64 and 16777216 entries"
        )));
    }
    if !config.groups.contains(&Group::Process) {
        return Err(LoadError::Config(
            "the process group cannot be disabled: every event is attributed through it".into(),
        ));
    }
    Ok(())
}

pub(crate) fn program_error(name: &str, source: aya::programs::ProgramError) -> LoadError {
    LoadError::Program {
        name: name.to_string(),
        source,
    }
}

fn missing_map(name: &'static str) -> LoadError {
    LoadError::Map {
        name,
        detail: "missing from nightjar.bpf.o".into(),
    }
}

fn map_error(name: &'static str, e: aya::maps::MapError) -> LoadError {
    LoadError::Map {
        name,
        detail: e.to_string(),
    }
}

/// Capability bits (linux/capability.h) that loading and attaching need.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with the names of missing capabilities: CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
pub fn check_privileges() -> Result<(), LoadError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    Err(LoadError::NotPermitted {
        missing: format!("{} (or CAP_SYS_ADMIN)", missing.join(" and ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_keys() {
        let (bits, data) = prefix_key("/etc/").unwrap();
        assert_eq!(bits, 40);
        assert_eq!(&data[..6], b"/etc/\0");
        assert!(prefix_key("etc").is_err());
        assert!(prefix_key("").is_err());
        assert!(prefix_key(&format!("/{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn top_dir_modes_take_the_most_permissive() {
        let etc = "/etc/".to_string();
        let shadow = "/etc/shadow".to_string();
        let usr = "/usr/lib/".to_string();
        let any = NJ_PREFIX_ANY_ACCESS as u8;
        let write = NJ_PREFIX_WRITE_ONLY as u8;
        let modes = top_dir_modes(&[(&etc, write), (&shadow, any), (&usr, write)]).unwrap();
        assert_eq!(modes.len(), 2);
        assert_eq!(modes[0], (top_dir_key("/etc/").unwrap(), any));
        assert_eq!(modes[1], (top_dir_key("/usr/").unwrap(), write));
    }

    #[test]
    fn top_dirs_hold_each_name_as_two_words_behind_the_filter() {
        let etc = "/etc/shadow".to_string();
        let long = "/a-name-of-twenty-one/x".to_string();
        let any = NJ_PREFIX_ANY_ACCESS as u8;
        let dirs = top_dirs(&[(&etc, any), (&long, any)]).unwrap();
        assert_eq!(dirs.count, 2);
        assert_eq!(
            dirs.dirs[0].name,
            [u64::from_le_bytes(*b"etc\0\0\0\0\0"), 0]
        );
        // Cut to 15 bytes and NUL-terminated, as the programs cut the dentry's name.
        assert_eq!(
            dirs.dirs[1].name,
            [
                u64::from_le_bytes(*b"a-name-o"),
                u64::from_le_bytes(*b"f-twent\0")
            ]
        );
        assert_eq!(dirs.dirs[1].mode, any);
        for dir in &dirs.dirs[..2] {
            let bit = top_dir_hash(dir.name);
            assert_eq!((dirs.filter[bit / 64] >> (bit % 64)) & 1, 1);
        }
        assert_eq!(
            dirs.filter.iter().map(|w| w.count_ones()).sum::<u32>(),
            2 - u32::from(top_dir_hash(dirs.dirs[0].name) == top_dir_hash(dirs.dirs[1].name))
        );
    }

    #[test]
    fn more_top_dirs_than_the_table_holds_is_an_error() {
        let prefixes: Vec<String> = (0..=NJ_TOPDIRS_MAX).map(|i| format!("/d{i}/")).collect();
        let entries: Vec<_> = prefixes.iter().map(|p| (p, 1u8)).collect();
        let err = top_dirs(&entries).unwrap_err().to_string();
        assert!(err.contains("at most 64"), "{err}");
    }

    #[test]
    fn traced_syscalls_follow_the_enabled_groups() {
        let bit = |bits: &SyscallBits, nr: u32| (bits[nr as usize / 64] >> (nr % 64)) & 1 == 1;
        let (x86, ia32) = traced_syscalls(&[Group::File].into_iter().collect());
        assert!(bit(&x86, 257), "openat");
        assert!(bit(&ia32, 295), "ia32 openat");
        assert!(!bit(&x86, 3), "close is not traced");
        assert!(!bit(&x86, 105), "setuid is in another group");
        let (x86, ia32) = traced_syscalls(&[Group::Privilege].into_iter().collect());
        assert!(bit(&x86, 105) && bit(&ia32, 23), "setuid");
        assert!(!bit(&x86, 257));
    }

    #[test]
    fn default_prefixes_are_valid() {
        assert!(validate(&ProbeConfig::default()).is_ok());
    }

    #[test]
    fn top_dir_keys() {
        assert_eq!(&top_dir_key("/etc/").unwrap()[..4], b"etc\0");
        assert_eq!(&top_dir_key("/dev/mem").unwrap()[..4], b"dev\0");
        let long = top_dir_key("/a-very-long-directory-name/").unwrap();
        assert_eq!(&long[..15], b"a-very-long-dir");
        assert_eq!(long[15], 0);
        let err = top_dir_key("/etc").unwrap_err().to_string();
        assert!(err.contains("/etc"), "{err}");
        assert!(top_dir_key("//x").is_err());
    }

    #[test]
    fn config_validation() {
        let mut config = ProbeConfig::default();
        assert!(validate(&config).is_ok());
        config.ringbuf_bytes = 5000;
        assert!(validate(&config)
            .unwrap_err()
            .to_string()
            .contains("power of two"));
        let mut config = ProbeConfig::default();
        config.groups.remove(&Group::Process);
        assert!(validate(&config).is_err());
    }
}
