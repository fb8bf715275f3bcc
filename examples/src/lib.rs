#![doc = include_str!("../../README.md")]
//!
//! This crate holds the runnable programs of the workspace (see `src/bin`) and the helpers
//! they share: data sets, e-mail notifications and reports.

pub mod cli;
pub mod dataset;
pub mod embedded;
pub mod http;
pub mod load;
pub mod notify;
pub mod projection;
pub mod report;
