//! Reads a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): one syscall per
//! chunk of entries instead of the two per entry (get-next-key, then lookup) that iterating
//! costs. Aya 0.14 has no batch operations, so the command is issued here.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::MapData;
use aya::Pod;

/// `BPF_MAP_LOOKUP_BATCH` from the kernel's `enum bpf_cmd` (uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of the kernel's `union bpf_attr` (uapi/linux/bpf.h), which the
/// `BPF_MAP_*_BATCH` commands read.
#[repr(C)]
#[derive(Debug, Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries fetched per call.
const CHUNK: usize = 4096;

/// Every entry of a (non-per-CPU) hash map, LRU or not. Entries added or removed while it runs
/// may or may not appear, as with iteration. Errs with the kernel's error, `EINVAL` (or
/// `ENOTSUPP`) where the kernel has no batch lookup: callers fall back to iterating.
pub fn lookup_all<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let fd = map.fd().as_fd().as_raw_fd();
    let mut chunk = CHUNK;
    let mut out = Vec::new();
    // The resume token is opaque; for hash maps it is a bucket index (u32). 8 bytes suffice.
    let mut token_in = 0u64;
    let mut token_out = 0u64;
    let mut first = true;
    loop {
        let mut keys: Vec<MaybeUninit<K>> = Vec::with_capacity(chunk);
        let mut values: Vec<MaybeUninit<V>> = Vec::with_capacity(chunk);
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: attr points at buffers of `count` keys and values and at two 8-byte tokens,
        // all alive for the call; the kernel writes at most `count` entries and updates
        // `count` to how many it wrote.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let error = (ret < 0).then(io::Error::last_os_error);
        let done = match &error {
            None => false,
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            // A bucket holds more entries than fit in one chunk: retry with room for it.
            Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk < 1 << 20 => {
                chunk *= 2;
                continue;
            }
            Some(_) => return Err(error.expect("matched Some")),
        };
        let count = (attr.count as usize).min(chunk);
        // SAFETY: the kernel initialised the first `count` keys and values.
        unsafe {
            keys.set_len(count);
            values.set_len(count);
        }
        out.extend(
            keys.into_iter()
                .zip(values)
                // SAFETY: each of these was written by the kernel (above).
                .map(|(k, v)| unsafe { (k.assume_init(), v.assume_init()) }),
        );
        if done {
            return Ok(out);
        }
        token_in = token_out;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_has_the_kernels_layout() {
        // union bpf_attr's batch member: four u64 pointers, count and map_fd, two u64 flags.
        assert_eq!(std::mem::size_of::<BatchAttr>(), 56);
        assert_eq!(std::mem::offset_of!(BatchAttr, count), 32);
        assert_eq!(std::mem::offset_of!(BatchAttr, map_fd), 36);
        assert_eq!(std::mem::offset_of!(BatchAttr, elem_flags), 40);
    }
}
