//! The crate's error type and the mapping of core errors onto gRPC status codes.

use tonic::{Code, Status};

/// Everything that can go wrong in `order-fsm-grpc`, each variant with how to react.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcError {
    /// A configuration value is missing or invalid (address, TLS material, missing sink or
    /// store). Permanent: fix the configuration.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The transport failed: binding or serving (server), connecting (client), TLS setup.
    /// Connection trouble is usually transient; retry with backoff.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),

    /// Reading configuration files or binding a socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// The server answered a call with a non-OK status. React by [`GrpcError::code`]:
    /// `INVALID_ARGUMENT` (fix the input; the message names the field), `NOT_FOUND`,
    /// `FAILED_PRECONDITION` (the event is not allowed now), `ABORTED` (re-read the order
    /// and decide again), `UNAVAILABLE` (retry later with the same idempotency key; the
    /// client already did, up to its retry policy), `RESOURCE_EXHAUSTED` (back-pressure:
    /// nothing was placed; retry after [`GrpcError::retry_after`]).
    #[error("{code:?}: {message}")]
    Rpc {
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
        /// The server's retry hint (`retry-after-ms` metadata), if any.
        retry_after: Option<std::time::Duration>,
    },

    /// The server's answer could not be turned into the core types (an unparsable id or
    /// price). Permanent: client and server disagree on the contract.
    #[error("malformed response: {0}")]
    Response(#[source] order_fsm::Error),
}

impl GrpcError {
    /// The gRPC code of a failed call, `None` for errors that are not a call's status.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the server refused the call for back-pressure (`RESOURCE_EXHAUSTED`): nothing
    /// was done; send it again after [`GrpcError::retry_after`].
    pub fn is_throttled(&self) -> bool {
        self.code() == Some(Code::ResourceExhausted)
    }

    /// How long the server asked to wait before retrying (`RESOURCE_EXHAUSTED`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Rpc { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again later may succeed (`UNAVAILABLE`, transport trouble).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transport(_)) || self.code() == Some(Code::Unavailable)
    }
}

impl From<Status> for GrpcError {
    fn from(status: Status) -> Self {
        let retry_after = status
            .metadata()
            .get(RETRY_AFTER_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis);
        Self::Rpc {
            code: status.code(),
            message: status.message().to_owned(),
            retry_after,
        }
    }
}

/// Metadata key of a `RESOURCE_EXHAUSTED` answer (back-pressure) and of an `UNAVAILABLE`
/// answer about an order accepted and not processed yet: milliseconds to wait before
/// retrying.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The status of a core error; `event` names the event being applied, if any, so that a
/// terminal state's refusal names both state and event.
pub(crate) fn to_status(error: order_fsm::Error, event: Option<&str>) -> Status {
    use order_fsm::Error as E;
    let message = order_fsm::intake::message(&error, event);
    match error {
        E::InvalidField { .. } | E::Decode { .. } | E::UnknownEvent { .. } => {
            Status::invalid_argument(message)
        }
        E::NotFound { .. } => Status::not_found(message),
        E::IllegalTransition { .. } | E::Terminal { .. } | E::AlreadyRejected { .. } => {
            Status::failed_precondition(message)
        }
        E::StaleVersion { .. } | E::Conflict { .. } => Status::aborted(message),
        E::Duplicate { .. } | E::IdempotencyKeyReused { .. } => Status::already_exists(message),
        E::Unavailable { .. } | E::Closed(_) => Status::unavailable(message),
        E::Overloaded { retry_after, .. } => {
            with_retry_after(Status::resource_exhausted(message), retry_after)
        }
        E::NotYetVisible { retry_after, .. } => {
            with_retry_after(Status::unavailable(message), retry_after)
        }
        _ => Status::internal(message),
    }
}

/// `status` with the [`RETRY_AFTER_MS`] metadata.
fn with_retry_after(mut status: Status, retry_after: std::time::Duration) -> Status {
    if let Ok(value) = retry_after.as_millis().to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER_MS, value);
    }
    status
}

/// `INVALID_ARGUMENT` naming `field`.
pub(crate) fn invalid(field: &'static str, reason: &str) -> Status {
    Status::invalid_argument(format!("invalid field `{field}`: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_codes_naming_what_is_wrong() {
        use order_fsm::Error as E;
        let s = to_status(E::invalid_field("price", "is negative"), None);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("price"));
        let s = to_status(E::Terminal { state: "completed" }, Some("cancel"));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("completed") && s.message().contains("cancel"));
        let s = to_status(E::unavailable("kafka", "down"), None);
        assert_eq!(s.code(), Code::Unavailable);
        let s = to_status(
            E::StaleVersion {
                expected: 1,
                actual: 2,
            },
            None,
        );
        assert_eq!(s.code(), Code::Aborted);
        let s = to_status(
            E::Overloaded {
                backlog: 12,
                limit: 10,
                retry_after: std::time::Duration::from_millis(250),
            },
            None,
        );
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(
            s.message().contains("12 commands are waiting"),
            "{}",
            s.message()
        );
        let e = GrpcError::from(s);
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_millis(250)));
        assert!(e.is_throttled() && !e.is_retryable());
        let e = GrpcError::from(Status::unavailable("x"));
        assert!(e.is_retryable());
        assert_eq!(e.code(), Some(Code::Unavailable));
    }
}
