//! Draining the BPF ring buffer on tokio.
//!
//! The drain task wakes when the ring buffer's fd is readable (the kernel signals it once
//! 256 KiB are waiting) or every [`DRAIN_INTERVAL`], takes every record available,
//! decodes and converts each into an [`Event`](nightjar_core::Event), and sends them on as
//! one batch. Sending waits when the pipeline is behind: the backlog then builds up in the
//! ring buffer, whose overflow the kernel counts (`ringbuf_full`), so no loss goes unseen.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use nightjar_core::pipeline::Batch;
use nightjar_core::telemetry::{loss, ReasonLabel, Telemetry};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

use crate::convert::Converter;

/// Longest an event waits in the ring buffer when traffic is too light to wake us.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Most records taken into one batch before it is sent (bounds latency and batch memory).
const MAX_BATCH: usize = 4096;

/// Drains `ring` until `shutdown` turns true, then takes what is left and returns.
pub async fn drain(
    ring: RingBuf<MapData>,
    mut converter: Converter,
    output: mpsc::Sender<Batch>,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let fd = ring.as_raw_fd();
    // SAFETY: the fd belongs to `ring`, which the AsyncFd owns and keeps open until dropped.
    let mut async_fd =
        unsafe { AsyncFd::register_with_interest(RingFd { ring, fd }, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
    // The kernel wakes us only once NJ_WAKEUP_BYTES are waiting; this tick delivers lighter
    // traffic within DRAIN_INTERVAL.
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = async_fd.readable_mut() => {
                // Clear before draining: a record that lands after this sets readiness again.
                guard?.clear_ready();
            }
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                // Records already in the buffer happened before shutdown: deliver them.
                let ring = &mut async_fd.get_mut().ring;
                let _ = send_all(ring, &mut converter, &output, &telemetry).await;
                return Ok(());
            }
        }
        let ring = &mut async_fd.get_mut().ring;
        if send_all(ring, &mut converter, &output, &telemetry)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Takes every record available, sending batches of at most [`MAX_BATCH`] as they fill.
/// Errs only when the receiver is gone.
async fn send_all(
    ring: &mut RingBuf<MapData>,
    converter: &mut Converter,
    output: &mpsc::Sender<Batch>,
    telemetry: &Telemetry,
) -> Result<(), ()> {
    telemetry.drain_passes.inc();
    loop {
        let batch = take_batch(ring, converter, telemetry);
        let more = batch.len() >= MAX_BATCH;
        if more {
            telemetry.drain_full_batches.inc();
        }
        if !batch.is_empty() && output.send(batch).await.is_err() {
            return Err(());
        }
        if !more {
            return Ok(());
        }
    }
}

/// Takes up to [`MAX_BATCH`] records; decode failures are counted and skipped.
fn take_batch(
    ring: &mut RingBuf<MapData>,
    converter: &mut Converter,
    telemetry: &Telemetry,
) -> Batch {
    let mut batch = Vec::with_capacity(64);
    while batch.len() < MAX_BATCH {
        let Some(item) = ring.next() else { break };
        match converter.convert(&item) {
            Ok(Some(event)) => batch.push(event),
            Ok(None) => {}
            Err(err) => {
                telemetry.count_lost(loss::DECODE_ERROR, 1);
                telemetry
                    .decode_errors
                    .get_or_create(&ReasonLabel {
                        reason: err.reason(),
                    })
                    .inc();
            }
        }
    }
    let evicted = converter.take_tcp_evicted();
    if evicted > 0 {
        telemetry.count_lost(loss::TCP_TABLE_FULL, evicted);
    }
    telemetry
        .tcp_connections_followed
        .set(converter.tcp_followed() as i64);
    batch
}

/// The ring buffer together with its raw fd, so tokio can poll it.
struct RingFd {
    ring: RingBuf<MapData>,
    fd: std::os::fd::RawFd,
}

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}
