//! Sinks: where finished events go.

pub mod json;
pub mod json_encode;
pub mod prometheus;

pub use json::JsonLinesSink;
