//! Nightjar's domain model and pipeline contracts.
//!
//! Kernel records become [`Event`]s in the loader; nothing downstream of it sees a C layout.
//! Events then flow through transforms (enrichment, filters) into sinks (JSON, metrics), each
//! a small stage behind a channel, as described in STYLE.md (sources -> transforms -> sinks).

pub mod event;
pub mod filter;
pub mod network_metrics;
pub mod pipeline;
pub mod rates;
pub mod telemetry;
pub mod time;

pub use event::*;
