#![doc = include_str!("../README.md")]

mod config;
mod error;
mod row;
mod schema;
mod store;

pub use config::{PostgresBuilder, PostgresConfig, POOL_SIZE_ENV, URL_ENV};
pub use error::PostgresError;
pub use store::PostgresStore;
