//! Worker processes of the `worker` program on a real Kafka-protocol broker: crashes,
//! scale-out, a stalled broker and poison messages. Each scenario runs separate worker
//! processes in one consumer group (nothing shared in-process) and counts the outcome from
//! the transitions topic with an independent reader.
//!
//! The broker helpers are the Kafka adapter's own test helpers
//! (`order-fsm-kafka/tests/common`), shared rather than copied.

#[path = "../../../order-fsm-kafka/tests/common/mod.rs"]
mod common;
mod process;

mod broker_stall;
mod crash;
mod poison;
mod scale_out;
