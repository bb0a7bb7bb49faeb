//! Per-container network rates for the JSON stream: what [`NetworkMetrics`] counted over an
//! interval, turned into per-second figures and emitted as `network_rates` events (Prometheus
//! gets the same counters; rate() there gives the same numbers).
//!
//! [`NetworkMetrics`]: crate::network_metrics::NetworkMetrics

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Counts of one container over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateCounts {
    pub opened: u64,
    pub accepted: u64,
    pub closed: u64,
    pub failed: u64,
    pub retransmits: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Counts per container label, filled by the metrics transform, drained by the emitter.
pub type SharedRates = Arc<Mutex<HashMap<String, RateCounts>>>;

/// One container's rates over an interval (the body of a `network_rates` event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkRates {
    /// Whose rates: a short container id (12 hex), `host`, or `other` (containers past the
    /// label budget). Not `container`: events already use that name for the container object.
    pub scope: String,
    pub interval_ms: u64,
    pub connections_opened_per_s: f64,
    pub connections_accepted_per_s: f64,
    pub connections_closed_per_s: f64,
    pub connections_failed_per_s: f64,
    pub retransmits_per_s: f64,
    pub packets_sent_per_s: f64,
    pub packets_received_per_s: f64,
    pub bytes_sent_per_s: f64,
    pub bytes_received_per_s: f64,
}

/// Takes the counts gathered so far and turns them into rates over `interval`, one per
/// container that saw anything, sorted by container.
pub fn drain_rates(rates: &SharedRates, interval: Duration) -> Vec<NetworkRates> {
    let counts = std::mem::take(&mut *rates.lock().unwrap_or_else(|e| e.into_inner()));
    let seconds = interval.as_secs_f64().max(1e-3);
    let per = |n: u64| (n as f64 / seconds * 1000.0).round() / 1000.0;
    let mut out: Vec<NetworkRates> = counts
        .into_iter()
        .map(|(scope, c)| NetworkRates {
            scope,
            interval_ms: interval.as_millis() as u64,
            connections_opened_per_s: per(c.opened),
            connections_accepted_per_s: per(c.accepted),
            connections_closed_per_s: per(c.closed),
            connections_failed_per_s: per(c.failed),
            retransmits_per_s: per(c.retransmits),
            packets_sent_per_s: per(c.packets_sent),
            packets_received_per_s: per(c.packets_received),
            bytes_sent_per_s: per(c.bytes_sent),
            bytes_received_per_s: per(c.bytes_received),
        })
        .collect();
    out.sort_by(|a, b| a.scope.cmp(&b.scope));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_become_per_second_rates_and_reset() {
        let rates: SharedRates = Arc::default();
        rates.lock().unwrap().insert(
            "host".into(),
            RateCounts {
                opened: 50,
                bytes_sent: 1_000_000,
                ..RateCounts::default()
            },
        );
        let out = drain_rates(&rates, Duration::from_secs(10));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].connections_opened_per_s, 5.0);
        assert_eq!(out[0].bytes_sent_per_s, 100_000.0);
        assert_eq!(out[0].interval_ms, 10_000);
        assert!(drain_rates(&rates, Duration::from_secs(10)).is_empty());
    }
}
