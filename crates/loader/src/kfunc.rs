//! The bpf_rdonly_cast kfunc, for kernels that have it.
//!
//! The programs call it through a placeholder instruction (bpf/lib/kread.bpf.h) because
//! Aya 0.14 cannot resolve kfunc externs. Before loading, [`patch_rdonly_cast`] writes the
//! running kernel's BTF id for the kfunc into every placeholder of the object's code.

use aya::Btf;
use aya_obj::btf::BtfKind;
use nightjar_abi::NJ_KFUNC_RDONLY_CAST_IMM;

/// `BPF_JMP | BPF_CALL`.
const OPCODE_CALL: u8 = 0x85;
/// Registers byte of a kfunc call: src_reg BPF_PSEUDO_KFUNC_CALL (2), dst_reg 0.
const REGS_KFUNC_CALL: u8 = 0x20;
/// `SHF_EXECINSTR`: the section holds program code.
const SHF_EXECINSTR: u64 = 0x4;

/// The kfunc's BTF id in the running kernel, or None where the kernel lacks it (before 6.2).
pub fn rdonly_cast_id(btf: &Btf) -> Option<u32> {
    btf.id_by_type_name_kind("bpf_rdonly_cast", BtfKind::Func)
        .ok()
}

/// An object copy aligned for Aya's ELF parser (it reads headers in place).
#[derive(Debug)]
pub struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self {
            words,
            len: bytes.len(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u64 storage viewed as bytes; len never exceeds it.
        let all = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.words.len() * 8)
        };
        &all[..self.len]
    }
}

fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: any byte pattern is a valid u64 and u8 has no alignment requirement.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

/// Why an object could not be patched.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("not a little-endian 64-bit ELF object")]
    NotElf64,
    #[error("section header {0} lies outside the object")]
    BadSection(usize),
}

/// A copy of @object with every placeholder call in its code sections aimed at the kfunc
/// @btf_id, and how many were patched.
pub fn patch_rdonly_cast(object: &[u8], btf_id: u32) -> Result<(AlignedObject, usize), PatchError> {
    let mut aligned = AlignedObject::new(object);
    let len = aligned.len;
    let bytes = &mut as_bytes_mut(&mut aligned.words)[..len];
    let mut patched = 0;
    for (offset, size) in code_sections(bytes)? {
        let code = &mut bytes[offset..offset + size];
        for insn in code.chunks_exact_mut(8) {
            if is_placeholder(insn) {
                insn[4..8].copy_from_slice(&btf_id.to_le_bytes());
                patched += 1;
            }
        }
    }
    Ok((aligned, patched))
}

/// Placeholders left in @object's code (0 once patched, or in a probe-read build).
pub fn count_placeholders(object: &[u8]) -> Result<usize, PatchError> {
    let mut count = 0;
    for (offset, size) in code_sections(object)? {
        count += object[offset..offset + size]
            .chunks_exact(8)
            .filter(|insn| is_placeholder(insn))
            .count();
    }
    Ok(count)
}

/// An 8-byte instruction that is the placeholder call (see bpf/lib/kread.bpf.h).
fn is_placeholder(insn: &[u8]) -> bool {
    insn[0] == OPCODE_CALL
        && insn[1] == REGS_KFUNC_CALL
        && u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]) == NJ_KFUNC_RDONLY_CAST_IMM
}

/// (file offset, size) of each executable section of a little-endian ELF64 object.
fn code_sections(elf: &[u8]) -> Result<Vec<(usize, usize)>, PatchError> {
    // ELF64 header: magic, class 2 (64-bit), data 1 (little-endian).
    if elf.len() < 64 || elf[..4] != *b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(PatchError::NotElf64);
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&elf[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let table = u64_at(0x28) as usize;
    let entry_size = u16_at(0x3a);
    let count = u16_at(0x3c);
    let mut sections = Vec::new();
    for index in 0..count {
        let header = table
            .checked_add(index * entry_size)
            .filter(|&at| {
                entry_size >= 64 && at.checked_add(64).is_some_and(|end| end <= elf.len())
            })
            .ok_or(PatchError::BadSection(index))?;
        if u64_at(header + 8) & SHF_EXECINSTR == 0 {
            continue;
        }
        let offset = u64_at(header + 24) as usize;
        let size = u64_at(header + 32) as usize;
        if offset.checked_add(size).is_none_or(|end| end > elf.len()) {
            return Err(PatchError::BadSection(index));
        }
        sections.push((offset, size));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects;

    #[test]
    fn the_cast_build_has_placeholders_and_the_probe_read_build_none() {
        assert!(count_placeholders(objects::NIGHTJAR).unwrap() > 0);
        assert_eq!(count_placeholders(objects::NIGHTJAR_PROBE_READ).unwrap(), 0);
        assert!(count_placeholders(objects::FEATURES).unwrap() > 0);
    }

    #[test]
    fn patching_replaces_every_placeholder_and_nothing_else() {
        let before = count_placeholders(objects::NIGHTJAR).unwrap();
        let (patched, n) = patch_rdonly_cast(objects::NIGHTJAR, 4242).unwrap();
        assert_eq!(n, before);
        assert_eq!(count_placeholders(patched.bytes()).unwrap(), 0);
        let changed = objects::NIGHTJAR
            .iter()
            .zip(patched.bytes())
            .filter(|(a, b)| a != b)
            .count();
        // Each patch rewrites at most the four immediate bytes.
        assert!(
            changed <= 4 * n && changed >= n,
            "{changed} bytes for {n} patches"
        );
        assert_eq!(patched.bytes().len(), objects::NIGHTJAR.len());
        assert_eq!(patched.bytes().as_ptr() as usize % 8, 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            patch_rdonly_cast(b"not an elf", 1),
            Err(PatchError::NotElf64)
        ));
        let mut truncated = objects::NIGHTJAR[..64].to_vec();
        truncated[0x3c] = 5;
        assert!(patch_rdonly_cast(&truncated, 1).is_err());
    }
}
