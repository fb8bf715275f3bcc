//! The adapter's error type and its classification into retryable and fatal.

use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode as Code};

/// What can go wrong in the Kafka adapter, each variant with how a caller should react.
///
/// Converts into [`order_fsm::Error`]: [`KafkaError::Unavailable`], [`KafkaError::Unreachable`]
/// and [`KafkaError::Canceled`] become [`order_fsm::Error::Unavailable`] (the runner
/// retries), everything else [`order_fsm::Error::Backend`] or [`order_fsm::Error::Config`]
/// (the runner stops).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The brokers are unreachable, overloaded, electing a leader or timed out. Retry with
    /// backoff; do not acknowledge anything meanwhile.
    #[error("kafka temporarily unavailable: {0}")]
    Unavailable(#[source] ClientError),

    /// The cluster at `brokers` did not answer while the adapter tried to `action`: a
    /// wrong address, a cluster still starting, a network in the way. Retryable like
    /// [`KafkaError::Unavailable`]: retry with backoff, and check the address (it is in the
    /// message) if it persists.
    #[error(
        "cannot {action} on Kafka at {brokers}: no answer after {:.1} s ({source})",
        .waited.as_secs_f64()
    )]
    Unreachable {
        /// The bootstrap servers tried (`host:port[,host:port...]`).
        brokers: String,
        /// What the adapter was doing, e.g. `create topics`.
        action: &'static str,
        /// How long it waited for an answer.
        waited: std::time::Duration,
        /// The client's error (a local time-out, all brokers down, ...), boxed to keep
        /// `Result<_, KafkaError>` small.
        #[source]
        source: Box<ClientError>,
    },

    /// The brokers refused the operation for good (authorization, invalid request, unknown
    /// topic after metadata refresh, ...). Retrying will not help: stop and fix the setup.
    #[error("kafka failed: {0}")]
    Fatal(#[source] ClientError),

    /// The configuration is missing or invalid (no brokers, bad property). Fix it.
    #[error("kafka configuration: {0}")]
    Config(String),

    /// A value could not be encoded or a stored record could not be decoded. Permanent for
    /// that value.
    #[error("kafka payload: {0}")]
    Payload(String),

    /// The delivery report was lost because the producer shut down. Retry with a new
    /// producer.
    #[error("kafka delivery report canceled: the producer shut down")]
    Canceled,
}

impl KafkaError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Unreachable { .. } | Self::Canceled
        )
    }
}

/// Codes after which the same request may succeed later.
fn retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::BrokerTransportFailure
            | Code::AllBrokersDown
            | Code::MessageTimedOut
            | Code::OperationTimedOut
            | Code::QueueFull
            | Code::Resolve
            | Code::WaitingForCoordinator
            | Code::TimedOutQueue
            | Code::InProgress
            | Code::PreviousInProgress
            | Code::Retry
            | Code::UnknownPartition
            | Code::UnknownTopic
            | Code::RequestTimedOut
            | Code::NetworkException
            | Code::LeaderNotAvailable
            | Code::NotLeaderForPartition
            | Code::CoordinatorLoadInProgress
            | Code::CoordinatorNotAvailable
            | Code::NotCoordinator
            | Code::NotEnoughReplicas
            | Code::NotEnoughReplicasAfterAppend
            | Code::RebalanceInProgress
            | Code::KafkaStorageError
            | Code::FetchSessionIdNotFound
            | Code::InvalidFetchSessionEpoch
            | Code::ListenerNotFound
            | Code::OffsetNotAvailable
            | Code::PreferredLeaderNotAvailable
            | Code::EligibleLeadersNotAvailable
            | Code::ThrottlingQuotaExceeded
            | Code::UnknownTopicOrPartition
            | Code::OutOfOrderSequenceNumber
            | Code::IllegalGeneration
            | Code::UnknownMemberId
            | Code::PartitionEOF
            // The consumer left the group after a long rebalance callback; the next poll rejoins.
            | Code::PollExceeded
    )
}

impl From<ClientError> for KafkaError {
    fn from(error: ClientError) -> Self {
        let retryable = match &error {
            ClientError::Canceled => return Self::Canceled,
            ClientError::ClientConfig(..) | ClientError::Nul(_) => {
                return Self::Config(error.to_string())
            }
            ClientError::Transaction(e) => e.is_retriable(),
            // `rdkafka_error_code` is `None` for admin results: classify their code here.
            ClientError::AdminOp(code) => retryable_code(*code),
            other => other.rdkafka_error_code().is_some_and(retryable_code),
        };
        if retryable {
            Self::Unavailable(error)
        } else {
            Self::Fatal(error)
        }
    }
}

impl From<serde_json::Error> for KafkaError {
    fn from(error: serde_json::Error) -> Self {
        Self::Payload(error.to_string())
    }
}

impl From<KafkaError> for order_fsm::Error {
    fn from(error: KafkaError) -> Self {
        match error {
            KafkaError::Config(message) => Self::Config(message.into()),
            e if e.is_retryable() => Self::unavailable("kafka", e),
            e => Self::backend("kafka", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_client_errors() {
        let timeout = KafkaError::from(ClientError::MessageProduction(Code::MessageTimedOut));
        assert!(timeout.is_retryable());
        assert!(order_fsm::Error::from(timeout).is_retryable());

        let denied = KafkaError::from(ClientError::MessageProduction(
            Code::TopicAuthorizationFailed,
        ));
        assert!(!denied.is_retryable());
        assert!(matches!(
            order_fsm::Error::from(denied),
            order_fsm::Error::Backend { .. }
        ));

        let too_big = KafkaError::from(ClientError::MessageProduction(Code::MessageSizeTooLarge));
        assert!(!too_big.is_retryable());
        assert!(KafkaError::from(ClientError::Canceled).is_retryable());

        // An admin request nobody answered (librdkafka's local time-out) is worth retrying;
        // a refused one is not.
        assert!(KafkaError::from(ClientError::AdminOp(Code::OperationTimedOut)).is_retryable());
        assert!(KafkaError::from(ClientError::AdminOp(Code::RequestTimedOut)).is_retryable());
        assert!(
            !KafkaError::from(ClientError::AdminOp(Code::TopicAuthorizationFailed)).is_retryable()
        );
        assert!(!KafkaError::from(ClientError::AdminOp(Code::InvalidPartitions)).is_retryable());
        assert!(matches!(
            order_fsm::Error::from(KafkaError::Config("x".into())),
            order_fsm::Error::Config(_)
        ));
    }
}
