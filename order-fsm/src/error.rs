//! The crate's one error type.

use std::borrow::Cow;

use crate::{EventId, OrderId, ParseIdError};

/// A boxed error from a backend client (Kafka, HTTP, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `order-fsm`, each variant with how a caller should react.
///
/// The engine returns these without allocating: the names in [`Error::IllegalTransition`] and
/// [`Error::Terminal`] are the lifecycle's own `&'static str`s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of a request or record is invalid. Permanent: fix the input.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name as it appears in the record (`customer_email`, `price`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },

    /// The event is not allowed in the order's current state. Permanent: the command is
    /// dead-lettered.
    #[error("illegal transition: event `{event}` is not allowed in state `{state}`")]
    IllegalTransition {
        /// Machine name of the current state.
        state: &'static str,
        /// Machine name of the rejected event.
        event: &'static str,
    },

    /// The order is in a terminal state and accepts no event. Permanent.
    #[error("order is in terminal state `{state}` and accepts no event")]
    Terminal {
        /// Machine name of the terminal state.
        state: &'static str,
    },

    /// The event names no event of the lifecycle. Permanent.
    #[error("unknown event `{event}`")]
    UnknownEvent {
        /// The name as received.
        event: String,
    },

    /// The event carried an expected version that is not the order's: the sender decided on a
    /// stale view. Permanent for that message; the sender re-reads the order and decides again.
    #[error("stale version: event expected version {expected}, order is at {actual}")]
    StaleVersion {
        /// Version the event was written against.
        expected: u64,
        /// Version of the order now.
        actual: u64,
    },

    /// The event was already applied to this order (same event id). Not a failure: the
    /// redelivered message is acknowledged without a second transition.
    #[error("event {event_id} was already applied")]
    Duplicate {
        /// Id of the redelivered event.
        event_id: EventId,
    },

    /// An idempotency key already placed an order with another purchase. Permanent: use a
    /// new key for a new purchase, or resend the same purchase to get the existing order.
    #[error(
        "invalid field `idempotency_key`: already used for order {order_id} with a different purchase"
    )]
    IdempotencyKeyReused {
        /// The order the key placed.
        order_id: OrderId,
    },

    /// An event retried with the same idempotency key had been rejected the first time, so it
    /// stays rejected. Permanent: read the order and decide again with a new key.
    #[error("event {event_id} (same idempotency key) was already rejected")]
    AlreadyRejected {
        /// Id of the retried event.
        event_id: EventId,
    },

    /// A store's compare-and-set found another version. Re-read and retry.
    #[error("version conflict on order {order_id}: expected {expected}, found {actual:?}")]
    Conflict {
        /// The order.
        order_id: OrderId,
        /// Version the writer expected (0 means "absent").
        expected: u64,
        /// Version found, `None` when the order does not exist.
        actual: Option<u64>,
    },

    /// No order with this id. Permanent for an event; the command is dead-lettered.
    #[error("order {order_id} not found")]
    NotFound {
        /// The missing order.
        order_id: OrderId,
    },

    /// A lifecycle definition names a state it does not declare.
    #[error("lifecycle `{lifecycle}`: unknown state `{state}`")]
    UnknownState {
        /// Lifecycle name.
        lifecycle: &'static str,
        /// The undeclared state.
        state: String,
    },

    /// A lifecycle definition has two transitions for one `(state, event)`.
    #[error(
        "lifecycle `{lifecycle}`: duplicate transition for event `{event}` in state `{state}`"
    )]
    DuplicateTransition {
        /// Lifecycle name.
        lifecycle: &'static str,
        /// The state.
        state: &'static str,
        /// The event.
        event: &'static str,
    },

    /// A state of a lifecycle cannot be reached from its initial state.
    #[error("lifecycle `{lifecycle}`: state `{state}` is unreachable from the initial state")]
    UnreachableState {
        /// Lifecycle name.
        lifecycle: &'static str,
        /// The unreachable state.
        state: &'static str,
    },

    /// A non-terminal state of a lifecycle has no transition out of it.
    #[error("lifecycle `{lifecycle}`: non-terminal state `{state}` has no way out")]
    DeadEnd {
        /// Lifecycle name.
        lifecycle: &'static str,
        /// The state with no way out.
        state: &'static str,
    },

    /// Any other inconsistency in a lifecycle or configuration; the message says which.
    #[error("invalid configuration: {0}")]
    Config(Cow<'static, str>),

    /// A message could not be decoded. Permanent: it goes to the dead-letter destination.
    #[error("cannot decode message: {reason}")]
    Decode {
        /// Why.
        reason: String,
    },

    /// A backend is unreachable or overloaded right now. Retry with backoff; do not
    /// acknowledge the message.
    #[error("{backend} unavailable: {source}")]
    Unavailable {
        /// Which backend (`kafka`, `elasticsearch`, ...).
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// More commands wait for the workers than the intake lets queue up: the request was
    /// refused whole (nothing was submitted). Retry it after `retry_after`; the backlog
    /// shrinks as the workers catch up. The intake's back-pressure, so that a burst cannot
    /// grow a queue (or outrun a broker's retention) without bound.
    #[error(
        "overloaded: {backlog} commands are waiting for the workers (limit {limit}); retry in {} ms",
        .retry_after.as_millis()
    )]
    Overloaded {
        /// Commands submitted and not yet processed (as last measured), this request's included.
        backlog: u64,
        /// The most the intake lets wait.
        limit: u64,
        /// When to try again.
        retry_after: std::time::Duration,
    },

    /// The order was accepted by this intake a moment ago and the workers have not
    /// processed it yet: it is not "not found". Retry after `retry_after` (reads are
    /// eventually consistent with placements).
    #[error(
        "order {order_id} was accepted and is not processed yet; retry in {} ms",
        .retry_after.as_millis()
    )]
    NotYetVisible {
        /// The order.
        order_id: OrderId,
        /// When to try again.
        retry_after: std::time::Duration,
    },

    /// A backend refused the operation for good (bad credentials, missing topic, rejected
    /// document). Retrying will not help; stop or dead-letter.
    #[error("{backend} failed: {source}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// The component was shut down or its channel closed.
    #[error("closed: {0}")]
    Closed(&'static str),
}

impl Error {
    /// Builds [`Error::InvalidField`].
    pub fn invalid_field(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Unavailable`] from any client error.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            backend,
            source: source.into(),
        }
    }

    /// Builds [`Error::Backend`] from any client error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Whether trying the same operation again later may succeed (backend unavailable, store
    /// version conflict).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Conflict { .. }
                | Self::Overloaded { .. }
                | Self::NotYetVisible { .. }
        )
    }

    /// A short, stable, snake-case name of the variant (`"illegal_transition"`,
    /// `"invalid_field"`, ...): a label for metrics and logs whose set of values is small and
    /// fixed, unlike the message.
    ///
    /// ```
    /// let e = order_fsm::Error::invalid_field("price", "negative");
    /// assert_eq!(e.kind(), "invalid_field");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidField { .. } => "invalid_field",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::Terminal { .. } => "terminal",
            Self::UnknownEvent { .. } => "unknown_event",
            Self::StaleVersion { .. } => "stale_version",
            Self::Duplicate { .. } => "duplicate",
            Self::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Self::AlreadyRejected { .. } => "already_rejected",
            Self::Conflict { .. } => "conflict",
            Self::NotFound { .. } => "not_found",
            Self::UnknownState { .. } => "unknown_state",
            Self::DuplicateTransition { .. } => "duplicate_transition",
            Self::UnreachableState { .. } => "unreachable_state",
            Self::DeadEnd { .. } => "dead_end",
            Self::Config(_) => "config",
            Self::Decode { .. } => "decode",
            Self::Unavailable { .. } => "unavailable",
            Self::Overloaded { .. } => "overloaded",
            Self::NotYetVisible { .. } => "not_yet_visible",
            Self::Backend { .. } => "backend",
            Self::Closed(_) => "closed",
        }
    }

    /// Whether the *message* that caused this error can never be applied and belongs in a
    /// dead-letter destination (bad input, illegal or unknown event, unknown order).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::InvalidField { .. }
                | Self::IllegalTransition { .. }
                | Self::Terminal { .. }
                | Self::UnknownEvent { .. }
                | Self::NotFound { .. }
                | Self::StaleVersion { .. }
                | Self::Decode { .. }
        )
    }
}

impl From<ParseIdError> for Error {
    fn from(e: ParseIdError) -> Self {
        Error::invalid_field(e.field(), "is not a UUID")
    }
}
