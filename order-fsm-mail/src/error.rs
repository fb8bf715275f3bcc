//! The crate's one error type and its classification into the core's.

use std::sync::Arc;
use std::time::Duration;

use order_fsm::OrderId;

/// The error of the mail client, as a shared trait object: no type of the underlying
/// client library is part of this crate's API.
pub type SourceError = Arc<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong building a notifier or sending a mail, each variant with how
/// a caller should react. [`MailError::is_retryable`] tells the two families apart, and the
/// conversion into [`order_fsm::Error`] keeps that split ([`order_fsm::Error::Unavailable`]
/// for retryable errors, [`order_fsm::Error::Config`], [`order_fsm::Error::InvalidField`] or
/// [`order_fsm::Error::Backend`] for fatal ones).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The configuration is incomplete or invalid (a bad SMTP URL or sender address, an
    /// outbox folder that cannot be created, a missing or malformed environment variable).
    /// Fatal: fix the configuration.
    #[error("invalid mail configuration: {0}")]
    Config(String),

    /// The customer address of an order cannot be mailed. Fatal for that record only:
    /// [`EmailNotifier`](crate::EmailNotifier) skips it with a warning rather than hold the
    /// order's other mails up.
    #[error("order {order_id}: the customer address {reason}")]
    InvalidRecipient {
        /// The order whose record names the address (the address itself is personal data
        /// and is not repeated here).
        order_id: OrderId,
        /// What is wrong with it.
        reason: String,
    },

    /// No usable answer from the SMTP server at this address: connection refused, reset or
    /// timed out, or a reply that could not be read. Retryable: the server may come back;
    /// the records were not acknowledged.
    #[error("smtp server {url} is unreachable: {source}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// The client's error.
        #[source]
        source: SourceError,
    },

    /// The server answered "not now" (a 4xx reply: greylisting, a full queue, a rate
    /// limit). Retryable: send again later.
    #[error("smtp server {url} refused the mail for now: {source}")]
    Unavailable {
        /// The server's URL.
        url: String,
        /// The client's error, with the server's reply.
        #[source]
        source: SourceError,
    },

    /// The server refused the mail for good (a 5xx reply: unknown sender or recipient
    /// domain, refused authentication, a relay it does not allow). Fatal: fix the
    /// configuration or the data; retrying the same mail will not help.
    #[error("smtp server {url} rejected the mail: {source}")]
    Rejected {
        /// The server's URL.
        url: String,
        /// The client's error, with the server's reply.
        #[source]
        source: SourceError,
    },

    /// The server accepted the connection and then stopped answering before the mail went
    /// through. Retryable: the server is paused or overloaded.
    #[error("smtp server {url} gave no answer within {} s", .after.as_secs())]
    Timeout {
        /// The server's URL.
        url: String,
        /// How long the send was given ([`MailConfig::send_timeout`](crate::MailConfig::send_timeout)).
        after: Duration,
    },

    /// Writing a mail into the outbox folder failed (disk full, permissions changed).
    /// Retryable: the folder may be writable again later.
    #[error("writing into the outbox folder {dir} failed: {source}")]
    Outbox {
        /// The outbox folder.
        dir: String,
        /// The I/O error.
        #[source]
        source: SourceError,
    },
}

impl MailError {
    /// Whether the same operation may succeed later (server unreachable, busy or slow, an
    /// outbox folder not writable right now); false for errors that need a change of data
    /// or configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::Outbox { .. } => true,
            Self::Config(_) | Self::InvalidRecipient { .. } | Self::Rejected { .. } => false,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }

    /// Classifies an SMTP client error the way RFC 5321 does: 5xx for good, 4xx for now,
    /// anything without a reply as unreachable.
    pub(crate) fn smtp(url: &str, e: lettre::transport::smtp::Error) -> Self {
        let url = url.to_owned();
        if e.is_permanent() {
            Self::Rejected {
                url,
                source: Arc::new(e),
            }
        } else if e.is_transient() {
            Self::Unavailable {
                url,
                source: Arc::new(e),
            }
        } else {
            Self::Unreachable {
                url,
                source: Arc::new(e),
            }
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Self::Outbox { .. } => "outbox",
            _ => "smtp",
        }
    }
}

impl From<MailError> for order_fsm::Error {
    fn from(e: MailError) -> Self {
        match e {
            MailError::Config(message) => order_fsm::Error::Config(message.into()),
            MailError::InvalidRecipient { reason, .. } => {
                order_fsm::Error::invalid_field("customer_email", reason)
            }
            e if e.is_retryable() => order_fsm::Error::unavailable(e.backend(), e),
            e => order_fsm::Error::backend(e.backend(), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(message: &str) -> SourceError {
        Arc::new(std::io::Error::other(message.to_owned()))
    }

    #[test]
    fn retryable_errors_become_unavailable_and_fatal_ones_do_not() {
        let url = || "smtp://127.0.0.1:25".to_owned();
        let retryable = [
            MailError::Unreachable {
                url: url(),
                source: io("connection refused"),
            },
            MailError::Unavailable {
                url: url(),
                source: io("451 try later"),
            },
            MailError::Timeout {
                url: url(),
                after: Duration::from_secs(30),
            },
            MailError::Outbox {
                dir: "/tmp/outbox".into(),
                source: io("disk full"),
            },
        ];
        for e in retryable {
            assert!(e.is_retryable(), "{e}");
            let core: order_fsm::Error = e.into();
            assert!(
                matches!(core, order_fsm::Error::Unavailable { .. }),
                "{core}"
            );
        }
        let rejected = MailError::Rejected {
            url: url(),
            source: io("550 no such domain"),
        };
        assert!(!rejected.is_retryable());
        let core: order_fsm::Error = rejected.into();
        assert!(matches!(
            core,
            order_fsm::Error::Backend {
                backend: "smtp",
                ..
            }
        ));
        let core: order_fsm::Error = MailError::config("bad sender").into();
        assert!(matches!(core, order_fsm::Error::Config(_)) && !core.is_retryable());
        let core: order_fsm::Error = MailError::InvalidRecipient {
            order_id: OrderId::from_u128(7),
            reason: "is not a usable mailbox".into(),
        }
        .into();
        assert!(matches!(
            core,
            order_fsm::Error::InvalidField {
                field: "customer_email",
                ..
            }
        ));
    }

    #[test]
    fn a_timeout_says_how_long_it_waited() {
        let e = MailError::Timeout {
            url: "smtp://127.0.0.1:25".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(
            e.to_string(),
            "smtp server smtp://127.0.0.1:25 gave no answer within 30 s"
        );
    }
}
