#![doc = include_str!("../README.md")]

mod batcher;
mod bulk;
mod client;
mod config;
mod document;
mod error;
mod mappings;
mod query;
mod sink;

pub use config::{Auth, ElasticBuilder, ElasticConfig, Tls};
pub use error::ElasticError;
pub use query::{
    LatencyStats, OrderField, Queries, TermCount, ThroughputBucket, TransitionLatencyStats,
};
pub use sink::ElasticSink;
