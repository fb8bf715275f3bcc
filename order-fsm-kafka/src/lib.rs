//! The Kafka adapter of `order-fsm`, over rdkafka (librdkafka).
//!
//! - [`KafkaSource`]: a [`order_fsm::CommandSource`] over a consumer group with
//!   at-least-once delivery: only offsets whose effects are done are committed
//!   (periodically, on revocation and on shutdown); undecodable messages go to the
//!   dead-letter topic.
//! - [`KafkaTransitionSink`], [`KafkaCommandSink`], [`KafkaDeadLetterSink`]: idempotent
//!   producers (`acks=all`, key = order id) that wait for every delivery report.
//! - [`provision_topics`] / [`provision_mock_topics`]: the three topics with a chosen
//!   partition count.
//! - [`recover_store`]: a [`order_fsm::MemoryStore`] rebuilt from the transitions topic, so a
//!   restarted worker resumes with the state it had.
//! - [`KafkaConfig`]: brokers, group, topics and any librdkafka property, `from_env()`.
//!
//! Errors are [`KafkaError`]s, classified retryable or fatal, and convert into
//! [`order_fsm::Error`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use order_fsm::{Dwell, Lifecycle, Runner};
//! use order_fsm_kafka::{recover_store, KafkaConfig, KafkaDeadLetterSink, KafkaSource, KafkaTransitionSink};
//!
//! let config = KafkaConfig::from_env()?;
//! let lifecycle = Arc::new(Lifecycle::ecommerce());
//! let recovered = recover_store(&config, lifecycle.clone(), std::time::Duration::from_secs(30)).await?;
//! let runner = Runner::builder(lifecycle)
//!     .store(Arc::new(recovered.store))
//!     .sink(Arc::new(KafkaTransitionSink::new(&config)?))
//!     .dead_letters(Arc::new(KafkaDeadLetterSink::new(&config)?))
//!     .auto_advance(Dwell::None)
//!     .build()?;
//! runner.run(KafkaSource::new(&config)?, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod codec;
mod config;
mod error;
mod producer;
mod recovery;
mod source;
mod topics;

pub use codec::{CommandCodec, JsonCodec};
pub use config::{
    KafkaConfig, DEFAULT_COMMANDS_TOPIC, DEFAULT_DEAD_LETTER_TOPIC, DEFAULT_GROUP,
    DEFAULT_TRANSITIONS_TOPIC,
};
pub use error::KafkaError;
pub use producer::{
    KafkaCommandSink, KafkaDeadLetterSink, KafkaTransitionSink, HEADER_OFFSET, HEADER_PARTITION,
    HEADER_REASON, HEADER_TOPIC,
};
pub use recovery::{recover_store, Recovered};
pub use source::KafkaSource;
pub use topics::{provision_mock_topics, provision_topics};
