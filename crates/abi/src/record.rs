//! Turning ring-buffer bytes into typed records without trusting them.

use core::mem::size_of;

use crate::generated::*;

/// Why a ring-buffer record could not be decoded. Each is counted by the caller, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte header")]
    ShortHeader { len: usize, need: usize },
    #[error("record kind {kind} is unknown to this agent")]
    UnknownKind { kind: u16 },
    #[error("record kind {kind} has {len} bytes, expected {need}")]
    BadSize { kind: u16, len: usize, need: usize },
    #[error("record header claims {claimed} bytes but the buffer has {len}")]
    SizeMismatch { claimed: usize, len: usize },
}

/// A plain-old-data record type of the ABI: every bit pattern is a valid value.
///
/// # Safety
/// Implementors must be `repr(C)` structs of integers and integer arrays only, so that any
/// byte sequence of the right length is a valid value.
pub unsafe trait Record: Copy {
    /// The `nj_event_kind` numbers whose records have this layout.
    const KINDS: &'static [u32];

    /// Copies a record out of `bytes`, which must be exactly `size_of::<Self>()` long.
    fn read(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked above; Self is plain old data (trait contract), and
        // read_unaligned tolerates the ring buffer's 8-byte alignment being less than ours.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

// SAFETY: all of these are bindgen-generated repr(C) structs of fixed-width integers and arrays.
unsafe impl Record for nj_exec_event {
    const KINDS: &'static [u32] = &[NJ_KIND_PROCESS_EXEC];
}
unsafe impl Record for nj_fork_event {
    const KINDS: &'static [u32] = &[NJ_KIND_PROCESS_FORK];
}
unsafe impl Record for nj_exit_event {
    const KINDS: &'static [u32] = &[NJ_KIND_PROCESS_EXIT];
}
unsafe impl Record for nj_syscall_event {
    const KINDS: &'static [u32] = &[
        NJ_KIND_FILE_OPEN,
        NJ_KIND_CRED_CHANGE,
        NJ_KIND_PTRACE,
        NJ_KIND_KILL,
        NJ_KIND_MOUNT,
        NJ_KIND_UMOUNT,
        NJ_KIND_MODULE_LOAD,
        NJ_KIND_BPF,
        NJ_KIND_MEMFD_CREATE,
        NJ_KIND_NAMESPACE,
    ];
}
unsafe impl Record for nj_path_event {
    const KINDS: &'static [u32] = &[
        NJ_KIND_FILE_UNLINK,
        NJ_KIND_FILE_RENAME,
        NJ_KIND_FILE_CHMOD,
        NJ_KIND_FILE_CHOWN,
    ];
}
unsafe impl Record for nj_sock_event {
    const KINDS: &'static [u32] = &[
        NJ_KIND_SOCK_CONNECT,
        NJ_KIND_SOCK_ACCEPT,
        NJ_KIND_SOCK_BIND,
        NJ_KIND_SOCK_LISTEN,
    ];
}
unsafe impl Record for nj_cgroup_event {
    const KINDS: &'static [u32] = &[NJ_KIND_CGROUP_MKDIR];
}
unsafe impl Record for nj_connect_policy_event {
    const KINDS: &'static [u32] = &[NJ_KIND_CONNECT_POLICY];
}
unsafe impl Record for nj_tcp_event {
    const KINDS: &'static [u32] = &[
        NJ_KIND_TCP_ESTABLISHED,
        NJ_KIND_TCP_CLOSE,
        NJ_KIND_TCP_FOLLOW,
    ];
}
unsafe impl Record for nj_event_header {
    const KINDS: &'static [u32] = &[];
}

/// A decoded record, boxed where large so the enum stays small to move around.
#[derive(Debug, Clone)]
pub enum RawRecord {
    Exec(Box<nj_exec_event>),
    Fork(nj_fork_event),
    Exit(nj_exit_event),
    Syscall(Box<nj_syscall_event>),
    Path(Box<nj_path_event>),
    Sock(Box<nj_sock_event>),
    Cgroup(Box<nj_cgroup_event>),
    ConnectPolicy(Box<nj_connect_policy_event>),
    Tcp(Box<nj_tcp_event>),
}

impl RawRecord {
    pub fn header(&self) -> &nj_event_header {
        match self {
            RawRecord::Exec(r) => &r.hdr,
            RawRecord::Fork(r) => &r.hdr,
            RawRecord::Exit(r) => &r.hdr,
            RawRecord::Syscall(r) => &r.hdr,
            RawRecord::Path(r) => &r.sys.hdr,
            RawRecord::Sock(r) => &r.hdr,
            RawRecord::Cgroup(r) => &r.hdr,
            RawRecord::ConnectPolicy(r) => &r.hdr,
            RawRecord::Tcp(r) => &r.hdr,
        }
    }
}

fn read_exact<T: Record>(kind: u16, bytes: &[u8]) -> Result<T, DecodeError> {
    T::read(bytes).ok_or(DecodeError::BadSize {
        kind,
        len: bytes.len(),
        need: size_of::<T>(),
    })
}

/// Decodes one ring-buffer record: header first, then the layout its kind names.
pub fn decode(bytes: &[u8]) -> Result<RawRecord, DecodeError> {
    let need = size_of::<nj_event_header>();
    let header =
        bytes
            .get(..need)
            .and_then(nj_event_header::read)
            .ok_or(DecodeError::ShortHeader {
                len: bytes.len(),
                need,
            })?;
    let claimed = usize::from(header.size);
    if claimed != bytes.len() {
        return Err(DecodeError::SizeMismatch {
            claimed,
            len: bytes.len(),
        });
    }
    let kind = u32::from(header.kind);
    let in_kinds = |kinds: &[u32]| kinds.contains(&kind);
    if in_kinds(nj_exec_event::KINDS) {
        Ok(RawRecord::Exec(Box::new(read_exact(header.kind, bytes)?)))
    } else if in_kinds(nj_fork_event::KINDS) {
        Ok(RawRecord::Fork(read_exact(header.kind, bytes)?))
    } else if in_kinds(nj_exit_event::KINDS) {
        Ok(RawRecord::Exit(read_exact(header.kind, bytes)?))
    } else if in_kinds(nj_syscall_event::KINDS) {
        Ok(RawRecord::Syscall(Box::new(read_exact(
            header.kind,
            bytes,
        )?)))
    } else if in_kinds(nj_path_event::KINDS) {
        Ok(RawRecord::Path(Box::new(read_exact(header.kind, bytes)?)))
    } else if in_kinds(nj_sock_event::KINDS) {
        Ok(RawRecord::Sock(Box::new(read_exact(header.kind, bytes)?)))
    } else if in_kinds(nj_connect_policy_event::KINDS) {
        Ok(RawRecord::ConnectPolicy(Box::new(read_exact(
            header.kind,
            bytes,
        )?)))
    } else if in_kinds(nj_tcp_event::KINDS) {
        Ok(RawRecord::Tcp(Box::new(read_exact(header.kind, bytes)?)))
    } else if in_kinds(nj_cgroup_event::KINDS) {
        Ok(RawRecord::Cgroup(Box::new(read_exact(header.kind, bytes)?)))
    } else {
        Err(DecodeError::UnknownKind { kind: header.kind })
    }
}

/// The bytes of a record as the kernel writes them into the ring buffer (for tests and
/// benchmarks that feed the decoder).
pub fn record_bytes<T: Record>(value: &T) -> &[u8] {
    // SAFETY: T is plain old data (Record contract); its bytes are only read, for as long as
    // the borrow of `value`.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Record>(value: &T) -> Vec<u8> {
        record_bytes(value).to_vec()
    }

    fn fork_record() -> nj_fork_event {
        let mut ev = nj_fork_event::default();
        ev.hdr.kind = NJ_KIND_PROCESS_FORK as u16;
        ev.hdr.size = size_of::<nj_fork_event>() as u16;
        ev.hdr.tgid = 42;
        ev.child_tgid = 43;
        ev
    }

    #[test]
    fn sizes_are_multiples_of_eight() {
        for size in [
            size_of::<nj_event_header>(),
            size_of::<nj_exec_event>(),
            size_of::<nj_fork_event>(),
            size_of::<nj_exit_event>(),
            size_of::<nj_syscall_event>(),
            size_of::<nj_path_event>(),
            size_of::<nj_sock_event>(),
            size_of::<nj_sockaddr>(),
            size_of::<nj_cgroup_event>(),
            size_of::<nj_connect_policy_event>(),
            size_of::<nj_tcp_event>(),
        ] {
            assert_eq!(size % 8, 0, "size {size} is not a multiple of 8");
        }
        assert_eq!(size_of::<nj_event_header>(), 32);
        // Records must fit the 16-bit size field of the header.
        assert!(size_of::<nj_exec_event>() < usize::from(u16::MAX));
        assert!(size_of::<nj_path_event>() < usize::from(u16::MAX));
    }

    #[test]
    fn decodes_a_fork_record() {
        let bytes = bytes_of(&fork_record());
        match decode(&bytes).expect("decodes") {
            RawRecord::Fork(ev) => {
                assert_eq!(ev.hdr.tgid, 42);
                assert_eq!(ev.child_tgid, 43);
            }
            other => panic!("wrong variant {other:?}"),
        }
    }

    #[test]
    fn rejects_short_and_inconsistent_records() {
        assert_eq!(
            decode(&[0u8; 7]).unwrap_err(),
            DecodeError::ShortHeader { len: 7, need: 32 }
        );
        let mut bytes = bytes_of(&fork_record());
        bytes.push(0);
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::SizeMismatch { .. })
        ));
        // Header says exec but the size is a fork's.
        let mut ev = fork_record();
        ev.hdr.kind = NJ_KIND_PROCESS_EXEC as u16;
        assert!(matches!(
            decode(&bytes_of(&ev)),
            Err(DecodeError::BadSize { kind: 1, .. })
        ));
        ev.hdr.kind = 63;
        assert_eq!(
            decode(&bytes_of(&ev)).unwrap_err(),
            DecodeError::UnknownKind { kind: 63 }
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every length and a spread of contents.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2048usize {
            let mut bytes = vec![0u8; len];
            for b in bytes.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            if len >= 4 {
                // Make the size field agree sometimes so deeper paths run.
                let size = (len as u16).to_ne_bytes();
                bytes[2] = size[0];
                bytes[3] = size[1];
            }
            let _ = decode(&bytes);
        }
    }
}
