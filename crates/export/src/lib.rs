//! Sinks: where finished events go.

pub mod json;
pub mod prometheus;

pub use json::JsonLinesSink;
