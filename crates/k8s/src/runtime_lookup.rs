//! The annotator's question to the container runtime ("which pod is this new container
//! in?"), asked synchronously from inside the pipeline so a container's first events already
//! carry their pod.
//!
//! While it waits the pipeline waits, so every call is bounded by `timeout` (connect, then the
//! call), and a runtime that fails or does not answer is left alone for a while (1 s, doubling
//! to 60 s) instead of costing every new container its timeouts: with many unknown containers
//! and a hung runtime, that would stall the pipeline for good and turn into ring-buffer loss.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::annotate::RuntimeLookup;
use crate::cri::CriClient;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// When the runtime may be asked again after failing.
#[derive(Debug)]
struct Backoff {
    quiet_until: Option<Instant>,
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            quiet_until: None,
            next: FIRST_BACKOFF,
        }
    }

    fn allows(&self, now: Instant) -> bool {
        self.quiet_until.is_none_or(|until| now >= until)
    }

    fn failed(&mut self, now: Instant) {
        self.quiet_until = Some(now + self.next);
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    fn answered(&mut self) {
        *self = Self::new();
    }
}

/// A lookup against the CRI runtime at `socket`. Must be called on a multi-threaded tokio
/// runtime's worker (it blocks in place).
pub fn blocking(socket: PathBuf, timeout: Duration) -> RuntimeLookup {
    let handle = tokio::runtime::Handle::current();
    let mut client: Option<CriClient> = None;
    let mut backoff = Backoff::new();
    RuntimeLookup(Box::new(move |id: &str| {
        if !backoff.allows(Instant::now()) {
            return None;
        }
        let answer = tokio::task::block_in_place(|| {
            handle.block_on(async {
                if client.is_none() {
                    client = Some(CriClient::connect(&socket, timeout).await.map_err(drop)?);
                }
                let c = client.as_mut().ok_or(())?;
                match tokio::time::timeout(timeout, c.pod_of_container(id)).await {
                    Ok(Ok(pod)) => Ok(pod),
                    _ => Err(()),
                }
            })
        });
        match answer {
            Ok(pod) => {
                backoff.answered();
                pod
            }
            Err(()) => {
                client = None;
                backoff.failed(Instant::now());
                None
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_an_answer_resets_it() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new();
        assert!(backoff.allows(t0));
        backoff.failed(t0);
        assert!(!backoff.allows(t0 + Duration::from_millis(999)));
        assert!(backoff.allows(t0 + Duration::from_secs(1)));
        for _ in 0..10 {
            backoff.failed(t0);
        }
        assert!(!backoff.allows(t0 + Duration::from_secs(59)));
        assert!(backoff.allows(t0 + MAX_BACKOFF));
        backoff.answered();
        assert!(backoff.allows(t0));
        backoff.failed(t0);
        assert!(backoff.allows(t0 + FIRST_BACKOFF));
    }
}
