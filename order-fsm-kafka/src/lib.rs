//! The Kafka adapter of `order-fsm`, over rdkafka (librdkafka).
//!
//! - [`KafkaSource`]: a [`order_fsm::CommandSource`] over a consumer group with
//!   at-least-once delivery: only offsets whose effects are done are committed
//!   (periodically, on revocation and on shutdown); undecodable messages, and commands
//!   whose message key is not their order id, go to the dead-letter topic.
//! - [`KafkaTransitionSink`], [`KafkaCommandSink`], [`KafkaDeadLetterSink`]: idempotent
//!   producers (`acks=all`, key = order id) that wait for every delivery report. Every dead
//!   letter is logged at `warn` (rate-limited, without its payload), and optionally redacted
//!   of personal data ([`KafkaConfig::with_dead_letter_redaction`]).
//! - [`KafkaStateLog`]: the [`order_fsm::StateLog`] over the state topic (latest state of
//!   each order, keyed by order id, partition *p* holding the orders of commands partition
//!   *p*): a worker assigned a partition restores its live orders from it, so orders survive
//!   rebalances, crashes and scale-out.
//! - [`KafkaFollower`]: a reader of the transitions topic with its own consumer group and
//!   committed offsets that drives any [`order_fsm::TransitionSink`] (an index, a mailer, a
//!   read model) at its own pace, at least once, out of the workers' acknowledgement path.
//! - [`provision_topics`] / [`provision_mock_topics`]: the four topics with a chosen
//!   partition count (and the dead-letter topic's retention,
//!   [`KafkaConfig::with_dead_letter_retention`]).
//! - [`KafkaConfig`]: brokers, group, topics and any librdkafka property, `from_env()`.
//! - [`WireFormat`]: commands and transition records as JSON (default) or protobuf
//!   (`order_fsm.v1.CommandRecord` / `TransitionRecord` of `order-fsm-proto`, one schema with
//!   the gRPC service); every message names its format in the [`HEADER_FORMAT`] header and
//!   readers decode each message by it.
//!
//! Errors are [`KafkaError`]s, classified retryable or fatal, and convert into
//! [`order_fsm::Error`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use order_fsm::{Dwell, Lifecycle, Runner};
//! use order_fsm_kafka::{KafkaConfig, KafkaDeadLetterSink, KafkaSource, KafkaStateLog, KafkaTransitionSink};
//!
//! let config = KafkaConfig::from_env()?;
//! let lifecycle = Arc::new(Lifecycle::ecommerce());
//! let runner = Runner::builder(lifecycle.clone())
//!     .with_state_log(Arc::new(KafkaStateLog::new(&config, lifecycle)?))
//!     .with_sink(Arc::new(KafkaTransitionSink::new(&config)?))
//!     .with_dead_letters(Arc::new(KafkaDeadLetterSink::new(&config)?))
//!     .with_auto_advance(Dwell::None)
//!     .build()?;
//! runner.run(KafkaSource::new(&config)?, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod backlog;
mod changelog;
mod codec;
mod config;
mod dead_letter;
mod error;
mod follower;
mod pack;
mod producer;
mod redact;
mod source;
mod topics;
mod watchdog;

pub use changelog::KafkaStateLog;
pub use codec::{CommandCodec, JsonCodec, ProtoCodec, WireFormat, HEADER_FORMAT};
pub use config::{
    KafkaConfig, DEFAULT_COMMANDS_TOPIC, DEFAULT_DEAD_LETTER_TOPIC, DEFAULT_GROUP,
    DEFAULT_STATE_TOPIC, DEFAULT_TRANSITIONS_TOPIC,
};
pub use dead_letter::{
    KafkaDeadLetterSink, HEADER_OFFSET, HEADER_ORIGINAL_SHA256, HEADER_ORIGINAL_SIZE,
    HEADER_PARTITION, HEADER_REASON, HEADER_REDACTED, HEADER_TOPIC, MAX_DEAD_LETTER_PAYLOAD,
};
pub use error::KafkaError;
pub use follower::{FollowerBuilder, FollowerProgress, FollowerReport, KafkaFollower, StartFrom};
pub use producer::{KafkaCommandSink, KafkaTransitionSink};
pub use source::KafkaSource;
pub use topics::{provision_mock_topics, provision_topics};
