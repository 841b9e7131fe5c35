//! # btm: a background task manager with a stable C ABI
//!
//! A host application hands btm tasks (a C function pointer plus a `void*`
//! userdata) with a priority, a group and upstream dependencies; a pool of
//! worker threads runs them; the host drains the results (task completed,
//! task failed, group finished, progress) on its own thread with
//! `btm_poll_events`. It re-implements the `BackgroundTaskManager` of
//! Shotgun Toolkit, keeping its behaviour and fixing its bugs (see
//! `README.md` and `docs/`).
//!
//! - [`engine`]: the scheduler, in plain Rust. It knows nothing of C beyond
//!   holding the host's pointers and free functions.
//! - [`ffi`]: the C boundary (`include/btm.h` is generated from it by
//!   cbindgen): thin, checked, panic-proof.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // every export documents its contract in a "# Safety" section

pub mod engine;
pub mod ffi;
