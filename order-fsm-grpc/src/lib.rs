//! The gRPC face of `order-fsm`: a tonic `OrderService` (intake, queries, commands and a
//! watch stream) over the core traits, and a typed client.
//!
//! The server is generic over the core seams: placed orders and events go to any
//! [`order_fsm::CommandSink`] (an in-memory [`order_fsm::MemoryQueue`], a Kafka topic, ...)
//! and reads come from any [`order_fsm::OrderStore`]. A [`WatchHub`], added to the runner as
//! one of its transition sinks, feeds `WatchOrder` streams as transitions happen.
//!
//! # Consistency
//! Writes are asynchronous: `PlaceOrder`, `PlaceOrders` (up to 1,000 placements per call,
//! all or none), `ApplyEvent` and `CancelOrder` go through the core's shared
//! [`order_fsm::intake`] (the same checks, ids and answers as the HTTP gateway of the
//! examples): it validates the request (events are decided against the order's current
//! state with [`order_fsm::Engine::decide`]) and submits a [`order_fsm::Command`]; a
//! runner applies it later. Reads are therefore *eventually consistent*: an order is visible to `GetOrder`,
//! `ListOrders` and `WatchOrder` once a runner has processed its placement, and an event's
//! effect once the runner applied it. Retried calls carrying the same idempotency key map to
//! the same order and event ids (UUID v5), so the runner recognises them as duplicates.
//!
//! # Errors on the wire
//! | core error | gRPC code |
//! |---|---|
//! | invalid field, unknown event, unparsable id or price | `INVALID_ARGUMENT` (names the field) |
//! | unknown order | `NOT_FOUND` |
//! | illegal transition, terminal state | `FAILED_PRECONDITION` (names state and event) |
//! | event retried with a key whose first try was rejected | `FAILED_PRECONDITION` |
//! | stale `expected_version` | `ABORTED` |
//! | idempotency key reused for another purchase | `ALREADY_EXISTS` (names `idempotency_key`) |
//! | sink or store unavailable, shutting down | `UNAVAILABLE` |
//! | deadline (`grpc-timeout` or the server's cap) passed | `DEADLINE_EXCEEDED` |
//!
//! ```no_run
//! # async fn demo() -> Result<(), order_fsm_grpc::GrpcError> {
//! use std::sync::Arc;
//! use order_fsm::{Lifecycle, MemoryQueue, MemoryStore};
//! use order_fsm_grpc::{OrderServiceBuilder, ServerConfig, WatchHub};
//!
//! let queue = MemoryQueue::new(); // a runner reads `queue.subscribe()`
//! let store = Arc::new(MemoryStore::new()); // and writes here
//! let hub = WatchHub::default(); // and publishes here (`RunnerBuilder::sink`)
//! OrderServiceBuilder::new(Lifecycle::ecommerce())
//!     .with_commands(Arc::new(queue))
//!     .with_store(store)
//!     .with_watch_hub(hub)
//!     .with_config(ServerConfig::from_env()?)
//!     .serve(std::future::pending::<()>()) // or a ctrl-c future
//!     .await
//! # }
//! ```

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod access;
mod client;
mod config;
mod convert;
mod deadline;
mod edge;
mod error;
mod gate;
pub mod rate;
mod server;
mod service;
mod views;
mod watch;

pub use client::{ApiKey, ClientConfig, EventOptions, OrderClient};
pub use config::{ServerConfig, TlsIdentity};
pub use error::{GrpcError, RETRY_AFTER_MS};
pub use gate::Gate;
pub use server::OrderServiceBuilder;
pub use service::MAX_PLACEMENTS_PER_CALL;
pub use views::{EventAccepted, OrderPage, OrderView, PlacedOrder, TransitionView};
pub use watch::WatchHub;

/// The protobuf messages of package `order_fsm.v1` (the wire contract, from
/// [`order_fsm_proto`]), the generated server and client, and the encoded descriptor set.
pub mod proto {
    pub use order_fsm_proto::v1::*;
    pub use order_fsm_proto::FILE_DESCRIPTOR_SET;

    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    mod generated {
        tonic::include_proto!("order_fsm.v1");
    }
    pub use generated::*;

    /// Fully qualified name of the service (`order_fsm.v1.OrderService`).
    pub const SERVICE_NAME: &str = "order_fsm.v1.OrderService";
}
