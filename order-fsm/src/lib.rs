#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod access;
mod changelog;
mod clock;
mod decide;
pub mod ecommerce;
mod engine;
mod error;
mod id;
pub mod intake;
mod lifecycle;
mod memory;
mod order;
mod purchase;
mod retry;
mod runner;
pub mod simulation;
mod sink;
mod source;
mod stats;
mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod throttle;
mod wire;

pub use changelog::{HistoryRecord, MemoryStateLog, StateChange, StateLog, StateRecord};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use decide::Decision;
pub use engine::Engine;
pub use error::{BoxError, Error};
pub use id::{EventId, OrderId, ParseIdError};
pub use lifecycle::{EventKind, Labels, Lifecycle, LifecycleBuilder, StateId, StateInfo};
pub use memory::{MemoryQueue, MemorySink, MemorySource, MemoryStore};
pub use order::{Event, HistoryEntry, OrderState, Transition};
pub use purchase::{Money, Purchase, MAX_FIELD_CHARS};
pub use retry::{RetryPolicy, Retrying};
pub use runner::{RunReport, Runner, RunnerBuilder, StopReason, DEFAULT_RETENTION};
pub use simulation::Dwell;
pub use sink::{DeadLetterSink, FanOut, MetricsSink, TransitionSink};
pub use source::{Ack, CommandSink, CommandSource, Envelope, SourceEvent};
pub use stats::{LatencySummary, MetricsRecord, MetricsSnapshot, TransitionLatency};
pub use store::{ListQuery, OrderStore};
pub use throttle::Throttle;
pub use wire::{Command, DeadLetter, Origin, TransitionRecord, PLACE_EVENT};
