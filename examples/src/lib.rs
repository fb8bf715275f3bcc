#![doc = include_str!("../../README.md")]
//!
//! This crate holds the runnable programs of the workspace (see `src/bin`) and the helpers
//! they share: data sets and reports (e-mail notifications are the `order-fsm-mail` crate).

pub mod cli;
pub mod dashboard;
pub mod dataset;
pub mod embedded;
pub mod followers;
pub mod load;
pub mod projection;
pub mod report;
pub mod soak;
pub mod telemetry;

/// The allocator every program of this crate declares (`#[global_allocator]` in each
/// binary; a library leaves the choice to the application). Under load glibc's malloc took
/// about a fifth of the pipeline's CPU (perf: `_int_malloc`, `malloc_consolidate`,
/// `_int_free`); with mimalloc the embedded pipeline moves 1.3-1.9× the orders per second.
pub type Allocator = mimalloc::MiMalloc;
