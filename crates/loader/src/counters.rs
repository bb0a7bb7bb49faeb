//! Loss and failure counters kept by the BPF programs in per-CPU arrays.

use aya::maps::{MapData, PerCpuArray};
use nightjar_abi::*;
use nightjar_core::telemetry::{loss, KindReasonLabel, Telemetry};

use crate::convert::kind_type_name;

/// Totals over all CPUs at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLosses {
    pub ringbuf_full: u64,
    pub read_failed: u64,
    /// Ring-buffer losses by `nj_event_kind`.
    pub ringbuf_full_by_kind: Vec<(u32, u64)>,
}

/// Reads the BPF counters and feeds their growth into [`Telemetry`].
pub struct KernelCounters {
    errors: PerCpuArray<MapData, u64>,
    by_kind: PerCpuArray<MapData, u64>,
    reported: KernelLosses,
}

impl std::fmt::Debug for KernelCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCounters")
            .field("reported", &self.reported)
            .finish()
    }
}

impl KernelCounters {
    pub(crate) fn new(
        errors: PerCpuArray<MapData, u64>,
        by_kind: PerCpuArray<MapData, u64>,
    ) -> Self {
        Self {
            errors,
            by_kind,
            reported: KernelLosses::default(),
        }
    }

    fn total(map: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
        map.get(&index, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }

    /// Current totals.
    pub fn sample(&self) -> KernelLosses {
        let by_kind = (0..NJ_KIND_MAX)
            .filter_map(|kind| {
                let n = Self::total(&self.by_kind, kind);
                (n > 0).then_some((kind, n))
            })
            .collect();
        KernelLosses {
            ringbuf_full: Self::total(&self.errors, NJ_ERR_RINGBUF_FULL),
            read_failed: Self::total(&self.errors, NJ_ERR_READ_FAILED),
            ringbuf_full_by_kind: by_kind,
        }
    }

    /// Adds what grew since the last call to the telemetry counters.
    pub fn report(&mut self, telemetry: &Telemetry) {
        let now = self.sample();
        let prev = &self.reported;
        telemetry.count_lost(loss::RINGBUF_FULL, now.ringbuf_full - prev.ringbuf_full);
        telemetry
            .kernel_read_failures
            .inc_by(now.read_failed - prev.read_failed);
        for &(kind, n) in &now.ringbuf_full_by_kind {
            let before = prev
                .ringbuf_full_by_kind
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| *n);
            if n > before {
                telemetry
                    .lost_by_type
                    .get_or_create(&KindReasonLabel {
                        r#type: kind_type_name(kind).unwrap_or("unknown"),
                        reason: loss::RINGBUF_FULL,
                    })
                    .inc_by(n - before);
            }
        }
        self.reported = now;
    }
}
