#![doc = include_str!("../README.md")]

mod api_error;
mod edge;
mod error;
mod layers;
mod routes;
mod strict;

pub use edge::HttpEdge;
pub use error::HttpError;
pub use layers::{access_layer, rate_limit_layer};
pub use routes::{RouterBuilder, IDEMPOTENCY_KEY, MAX_BATCH, RETRY_AFTER_MS};
pub use strict::MAX_MESSAGE_CHARS;
