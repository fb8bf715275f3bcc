//! The protobuf schema of `order-fsm`, package `order_fsm.v1`: one schema for the gRPC
//! service (`order-fsm-grpc` generates its server and client from the same files) and for
//! the Kafka records (`order-fsm-kafka`'s protobuf wire format).
//!
//! - [`v1`]: the prost messages of `proto/order_fsm/v1/order_service.proto` (the service's
//!   requests, responses, `Purchase`, `Transition`, `Order`) and
//!   `proto/order_fsm/v1/records.proto` (`CommandRecord`, `TransitionRecord`, which reuse
//!   `Purchase` and `Transition`, `TransitionPack` and `StateRecord`).
//! - Conversions to and from the core types: `v1::Purchase` ⇄ [`Purchase`](order_fsm::Purchase),
//!   [`transition_of`] for a [`TransitionRecord`](order_fsm::TransitionRecord) as the service shows it.
//! - The Kafka payloads: [`encode_command`] / [`decode_command`],
//!   [`encode_transition`] / [`decode_transition`], and [`encode_transition_pack`] /
//!   [`decode_transition_pack`] for several records in one message (ADR 8), and
//!   [`encode_state`] / [`decode_state`] for the state topic's records (ADR 4). Decoding checks every id and price and
//!   fails with [`Error::Decode`](order_fsm::Error::Decode) naming the field, so a source can dead-letter the message
//!   with its reason.
//!
//! Errors are the core's [`order_fsm::Error`]: this crate does no I/O, and what can go wrong
//! (unreadable bytes, a missing or invalid field) is already a core error.
//!
//! ```
//! use order_fsm::{Command, Purchase};
//!
//! let command = Command::place(Purchase::example());
//! let payload = order_fsm_proto::encode_command(&command)?;
//! assert_eq!(order_fsm_proto::decode_command(&payload)?, command);
//!
//! // Not a command: a typed error that names what is wrong.
//! let error = order_fsm_proto::decode_command(b"\x0a\x03abc").unwrap_err();
//! assert!(error.to_string().contains("order_id"), "{error}");
//! # Ok::<(), order_fsm::Error>(())
//! ```

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod convert;

pub use convert::{
    decode_command, decode_state, decode_transition, decode_transition_pack, encode_command,
    encode_state, encode_transition, encode_transition_pack, transition_of,
};

/// The generated protobuf messages of package `order_fsm.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/order_fsm.v1.rs"));
}

/// The encoded `FileDescriptorSet` of package `order_fsm.v1`, with source info (what gRPC
/// server reflection serves).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/order_fsm_v1_descriptor.bin"));
