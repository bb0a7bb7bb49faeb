//! Stage contracts and the loop that runs them.
//!
//! Sources push batches of [`Event`]s into a bounded channel; [`Pipeline::run`] takes each
//! batch through the transforms in order, counts it, and hands it to every sink whose filter
//! matches. A slow sink slows the loop, which backs up into the kernel ring buffer, where any
//! loss is counted; nothing is dropped silently on the way.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::Event;
use crate::filter::EventFilter;
use crate::telemetry::Telemetry;

/// A batch of events as a source hands it over.
pub type Batch = Vec<Event>;

/// Changes or enriches events in place. Returning false drops the event (a filter).
pub trait Transform: Send {
    fn name(&self) -> &'static str;
    fn apply(&mut self, event: &mut Event) -> bool;
    /// Called before each batch: a place for work shared by its events, such as reading a clock.
    fn begin_batch(&mut self) {}
    /// Called after each batch: a place for periodic work such as reaping caches.
    fn end_batch(&mut self) {}
}

/// Error from a sink; the pipeline counts it and carries on.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink}: {source}")]
    Io {
        sink: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Receives finished events.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn write(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Called after each batch so sinks can flush buffered output.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

struct FilteredSink {
    filter: EventFilter,
    sink: Box<dyn Sink>,
}

/// Transforms and sinks, run on one task.
pub struct Pipeline {
    transforms: Vec<Box<dyn Transform>>,
    sinks: Vec<FilteredSink>,
    telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "transforms",
                &self.transforms.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.sink.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Pipeline {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            transforms: Vec::new(),
            sinks: Vec::new(),
            telemetry,
        }
    }

    pub fn transform(mut self, transform: Box<dyn Transform>) -> Self {
        self.transforms.push(transform);
        self
    }

    pub fn sink(mut self, filter: EventFilter, sink: Box<dyn Sink>) -> Self {
        self.sinks.push(FilteredSink { filter, sink });
        self
    }

    /// Processes one batch synchronously (the loop body; also used by tests).
    pub fn process(&mut self, batch: &mut Batch) {
        for t in self.transforms.iter_mut() {
            t.begin_batch();
        }
        for event in batch.iter_mut() {
            let keep = self.transforms.iter_mut().all(|t| t.apply(event));
            if !keep {
                continue;
            }
            self.telemetry.count_event(event.type_name());
            for s in self.sinks.iter_mut() {
                if s.filter.matches(event) {
                    if let Err(err) = s.sink.write(event) {
                        count_sink_error(&self.telemetry, s.sink.name(), &err);
                    }
                }
            }
        }
        for t in self.transforms.iter_mut() {
            t.end_batch();
        }
        for s in self.sinks.iter_mut() {
            if let Err(err) = s.sink.flush() {
                count_sink_error(&self.telemetry, s.sink.name(), &err);
            }
        }
    }

    /// Runs until every sender of `input` is dropped, then flushes and returns.
    pub async fn run(mut self, mut input: mpsc::Receiver<Batch>) {
        while let Some(mut batch) = input.recv().await {
            self.process(&mut batch);
        }
    }
}

fn count_sink_error(telemetry: &Telemetry, sink: &'static str, err: &SinkError) {
    tracing::warn!(sink, error = %err, "Sink write failed");
    telemetry
        .sink_write_errors
        .get_or_create(&crate::telemetry::ReasonLabel { reason: sink })
        .inc();
}
