//! The XDP blocklist as a live set: entries added and removed while the agent runs, each
//! with its own packet and byte counters.
//!
//! Counters live in a per-CPU array indexed by a slot the entry holds for its lifetime. A
//! removed entry's final counts are reported, then its slot is zeroed and freed for reuse, so
//! a later entry never inherits packets that were not its own.

use std::collections::BTreeMap;

use aya::maps::lpm_trie::Key;
use aya::maps::{LpmTrie, MapData, PerCpuArray, PerCpuValues};
use nightjar_abi::NJ_BLOCKLIST_MAX;
use nightjar_core::telemetry::{BlockLabel, Telemetry};
use serde::Serialize;

use crate::connect_rules::Cidr;
use crate::xdp::BlockEntry;

/// Why a blocklist change was refused; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlocklistError {
    #[error("blocklist entry {0} is already listed (as {1}); remove it first")]
    Conflict(String, &'static str),
    #[error("blocklist entry {0} is not listed")]
    NotListed(String),
    #[error("the blocklist is full ({NJ_BLOCKLIST_MAX} entries); {0} was not added")]
    Full(String),
    #[error("blocklist entry {entry}: {detail}")]
    Kernel { entry: String, detail: String },
}

/// One entry as listed: CIDR, mode and what it matched so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedEntry {
    pub cidr: String,
    /// `drop` or `audit`.
    pub mode: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug)]
struct Slot {
    index: u32,
    audit: bool,
    /// Counts already added to the telemetry counters.
    reported: [u64; 2],
}

fn mode(audit: bool) -> &'static str {
    if audit {
        "audit"
    } else {
        "drop"
    }
}

/// The live blocklist: the kernel trie, the per-entry counters and the slot of each entry.
pub struct Blocklist {
    trie: LpmTrie<MapData, [u8; 16], [u32; 2]>,
    stats: PerCpuArray<MapData, [u64; 2]>,
    entries: BTreeMap<String, Slot>,
    free: Vec<u32>,
}

impl std::fmt::Debug for Blocklist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocklist")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Blocklist {
    pub(crate) fn new(
        trie: LpmTrie<MapData, [u8; 16], [u32; 2]>,
        stats: PerCpuArray<MapData, [u64; 2]>,
    ) -> Self {
        Self {
            trie,
            stats,
            entries: BTreeMap::new(),
            // Lowest slots first.
            free: (0..NJ_BLOCKLIST_MAX).rev().collect(),
        }
    }

    /// Adds an entry. The same network twice is a conflict, whatever the mode: say which
    /// one wins by removing the other first.
    pub fn add(&mut self, entry: BlockEntry) -> Result<(), BlocklistError> {
        let name = entry.cidr.to_string();
        if let Some(existing) = self.entries.get(&name) {
            return Err(BlocklistError::Conflict(name, mode(existing.audit)));
        }
        let index = self.free.pop().ok_or(BlocklistError::Full(name.clone()))?;
        let (bits, addr) = entry.cidr.mapped();
        if let Err(e) = self
            .trie
            .insert(&Key::new(bits, addr), [index, u32::from(entry.audit)], 0)
        {
            self.free.push(index);
            return Err(BlocklistError::Kernel {
                entry: name,
                detail: e.to_string(),
            });
        }
        self.entries.insert(
            name,
            Slot {
                index,
                audit: entry.audit,
                reported: [0, 0],
            },
        );
        Ok(())
    }

    /// Removes an entry: its packets pass again from the next one on. Its last counts go to
    /// `telemetry` first.
    pub fn remove(&mut self, cidr: &Cidr, telemetry: &Telemetry) -> Result<(), BlocklistError> {
        let name = cidr.to_string();
        if !self.entries.contains_key(&name) {
            return Err(BlocklistError::NotListed(name));
        }
        let (bits, addr) = cidr.mapped();
        self.trie
            .remove(&Key::new(bits, addr))
            .map_err(|e| BlocklistError::Kernel {
                entry: name.clone(),
                detail: e.to_string(),
            })?;
        self.report_one(&name, telemetry);
        if let Some(slot) = self.entries.remove(&name) {
            let zeros = PerCpuValues::try_from(vec![[0u64; 2]; self.cpus()]).ok();
            if let Some(zeros) = zeros {
                let _ = self.stats.set(slot.index, zeros, 0);
            }
            self.free.push(slot.index);
        }
        Ok(())
    }

    fn cpus(&self) -> usize {
        aya::util::nr_cpus().map(|n| n.max(1)).unwrap_or(1)
    }

    fn counts(&self, index: u32) -> [u64; 2] {
        self.stats
            .get(&index, 0)
            .map(|values| crate::xdp::sum(values.iter().copied()))
            .unwrap_or([0, 0])
    }

    /// Entries with their counts so far.
    pub fn list(&self) -> Vec<ListedEntry> {
        self.entries
            .iter()
            .map(|(cidr, slot)| {
                let [packets, bytes] = self.counts(slot.index);
                ListedEntry {
                    cidr: cidr.clone(),
                    mode: mode(slot.audit),
                    packets,
                    bytes,
                }
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn report_one(&mut self, name: &str, telemetry: &Telemetry) {
        let Some(index) = self.entries.get(name).map(|s| s.index) else {
            return;
        };
        let now = self.counts(index);
        let Some(slot) = self.entries.get_mut(name) else {
            return;
        };
        let label = BlockLabel {
            entry: name.to_string(),
            mode: mode(slot.audit),
        };
        telemetry
            .blocklist_packets
            .get_or_create(&label)
            .inc_by(now[0].saturating_sub(slot.reported[0]));
        telemetry
            .blocklist_bytes
            .get_or_create(&label)
            .inc_by(now[1].saturating_sub(slot.reported[1]));
        slot.reported = now;
    }

    /// Adds what every entry matched since the last call to the telemetry counters.
    pub fn report(&mut self, telemetry: &Telemetry) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            self.report_one(&name, telemetry);
        }
    }
}
