//! The kernel/user ABI as Rust sees it, and bounds-checked decoding of ring-buffer records.
//!
//! [`generated`] is bindgen's output for `bpf/include/abi/abi.h`, committed and checked for
//! drift by `cargo xtask codegen --check`; its layout tests run with this crate's tests. This
//! crate adds only what bindgen cannot: typed, bounds-checked access to raw record bytes.

#[rustfmt::skip]
pub mod generated;

mod record;
mod strings;

pub use generated::*;
pub use record::{decode, record_bytes, DecodeError, RawRecord, Record};
pub use strings::{c_str_bytes, c_string_lossy, split_args};
