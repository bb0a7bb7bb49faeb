//! Everything that touches Aya: the embedded BPF objects, kernel feature probes, loading and
//! attaching, the loss counters in BPF maps, and draining the ring buffer into domain events.
//!
//! Raw C records stop here: [`convert`] turns them into [`nightjar_core::Event`]s, and nothing
//! downstream sees a C layout.

pub mod bench;
pub mod blocklist;
pub mod catalog;
pub mod connect_rules;
pub mod convert;
pub mod counters;
pub mod features;
pub mod flows;
pub mod kfunc;
pub mod links;
mod map_batch;
mod names;
mod objects;
pub mod probes;
pub mod ringbuf;
pub mod tcp_conns;
pub mod xdp;

pub use catalog::Group;
pub use features::KernelFeatures;
pub use probes::{KernelProbes, KernelReads, LoadError, ProbeConfig};
