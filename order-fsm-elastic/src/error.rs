//! The crate's one error type and its classification into the core's.

use std::sync::Arc;

/// Everything that can go wrong talking to Elasticsearch, each variant with how a caller
/// should react. [`ElasticError::is_retryable`] tells the two families apart, and the
/// conversion into [`order_fsm::Error`] keeps that split ([`order_fsm::Error::Unavailable`]
/// for retryable errors, [`order_fsm::Error::Backend`] for fatal ones).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElasticError {
    /// The configuration is incomplete or invalid (missing URL, bad certificate file, two
    /// kinds of credentials, zero batch size, ...). Fatal: fix the configuration.
    #[error("invalid elasticsearch configuration: {0}")]
    Config(String),

    /// No HTTP answer from the server: connection refused, reset or timed out. Retryable:
    /// the server may come back; the records were not acknowledged.
    #[error("elasticsearch at {url} is unreachable: {source}")]
    Unreachable {
        /// The server's URL (without credentials).
        url: String,
        /// The client's error.
        #[source]
        source: Arc<elasticsearch::Error>,
    },

    /// The server answered an operation with an error status. Retryable for 429 and 5xx
    /// (overloaded or failing server), fatal otherwise (401/403: fix the credentials; 400:
    /// a mapping or request the server refuses).
    #[error("elasticsearch {operation} failed with HTTP {status}: {body}")]
    Http {
        /// What was attempted (`bulk`, `create index`, `search`, ...).
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },

    /// The server refused one document of a bulk request for good (mapping conflict, bad
    /// value, ...). Fatal for that document: fix the data or route it to a dead-letter sink
    /// ([`crate::ElasticBuilder::with_dead_letters`]). `more` counts other documents of the
    /// same publish that were refused too.
    #[error(
        "elasticsearch rejected document `{id}` of index `{index}` (HTTP {status}): {reason}{}",
        more_suffix(*more)
    )]
    Rejected {
        /// The index.
        index: String,
        /// The document id (`{order_id}:{version}` for transitions).
        id: String,
        /// The item's status.
        status: u16,
        /// The server's reason.
        reason: String,
        /// How many other documents of the same publish were rejected.
        more: usize,
    },

    /// Some documents were still refused as "try later" (429 / 503 per item) when the retry
    /// policy ran out. Retryable: publish again later.
    #[error(
        "elasticsearch is overloaded: document `{id}` of index `{index}` still refused with HTTP {status} after {attempts} attempts"
    )]
    Overloaded {
        /// The index.
        index: String,
        /// One of the documents refused.
        id: String,
        /// The item's status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },

    /// A response did not have the expected shape. Fatal: the server is not an
    /// Elasticsearch-compatible one, or a version this crate does not understand.
    #[error("unexpected elasticsearch response to {operation}: {reason}")]
    Decode {
        /// What was attempted.
        operation: &'static str,
        /// What did not fit.
        reason: String,
    },

    /// Routing a rejected document to the dead-letter sink failed; retryable when that
    /// sink's error is.
    #[error("dead-lettering rejected document `{id}` failed: {source}")]
    DeadLetter {
        /// The rejected document.
        id: String,
        /// The dead-letter sink's error.
        #[source]
        source: Arc<order_fsm::Error>,
    },

    /// The sink's background indexing task is gone (the runtime shut down or it panicked).
    /// Fatal: build a new sink.
    #[error("the elasticsearch sink is closed")]
    Closed,
}

fn more_suffix(more: usize) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" (and {more} more documents)")
    }
}

impl ElasticError {
    /// Whether the same operation may succeed later (server unreachable, overloaded or
    /// failing); false for errors that need a change of data or configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Overloaded { .. } => true,
            Self::Http { status, .. } => is_retryable_status(*status),
            Self::DeadLetter { source, .. } => source.is_retryable(),
            Self::Config(_) | Self::Rejected { .. } | Self::Decode { .. } | Self::Closed => false,
        }
    }

    pub(crate) fn decode(operation: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Decode {
            operation,
            reason: reason.to_string(),
        }
    }
}

/// Whether an HTTP status (of a whole response or of one bulk item) means "try again later".
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Whether a bulk item's status means "try again later" (429 and 503 are what Elasticsearch
/// gives for a full write queue or a missing primary; 502/504 come from proxies in front).
pub(crate) fn is_retryable_item_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

const BACKEND: &str = "elasticsearch";

impl From<ElasticError> for order_fsm::Error {
    fn from(e: ElasticError) -> Self {
        match e {
            ElasticError::Closed => order_fsm::Error::Closed("elasticsearch sink"),
            ElasticError::DeadLetter { source, .. } => {
                Arc::try_unwrap(source).unwrap_or_else(|shared| {
                    if shared.is_retryable() {
                        order_fsm::Error::unavailable(BACKEND, shared.to_string())
                    } else {
                        order_fsm::Error::backend(BACKEND, shared.to_string())
                    }
                })
            }
            e if e.is_retryable() => order_fsm::Error::unavailable(BACKEND, e),
            e => order_fsm::Error::backend(BACKEND, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_status() {
        let http = |status| ElasticError::Http {
            operation: "bulk",
            status,
            body: String::new(),
        };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(!http(401).is_retryable());
        let core: order_fsm::Error = http(503).into();
        assert!(core.is_retryable());
        let core: order_fsm::Error = http(403).into();
        assert!(matches!(core, order_fsm::Error::Backend { .. }));
    }

    #[test]
    fn a_rejection_names_the_document_and_is_fatal() {
        let e = ElasticError::Rejected {
            index: "t-transitions".into(),
            id: "abc:3".into(),
            status: 400,
            reason: "mapper_parsing_exception".into(),
            more: 2,
        };
        let text = e.to_string();
        assert!(
            text.contains("abc:3") && text.contains("t-transitions") && text.contains("2 more")
        );
        let core: order_fsm::Error = e.into();
        assert!(!core.is_retryable());
    }
}
