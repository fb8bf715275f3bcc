#![doc = include_str!("../../README.md")]
//!
//! This crate holds the runnable programs of the workspace (see `src/bin`); its library is
//! only the workspace README, so that the README's examples run as doc tests.
