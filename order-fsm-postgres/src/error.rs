//! The adapter's error.

use thiserror::Error;

/// What went wrong talking to PostgreSQL.
///
/// Converts into [`order_fsm::Error`]: [`PostgresError::is_retryable`] errors become
/// `Unavailable` (the runner retries them), the others `Backend`. No variant carries a
/// password: connection targets are printed as `user@host:port/database`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The configuration is unusable (a malformed URL, a missing setting). Fix it; retrying
    /// does not help.
    #[error("PostgreSQL configuration: {reason}")]
    Config {
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// The server could not be reached or refused the connection (down, restarting, wrong
    /// address, too many connections). Retrying later may help.
    #[error("PostgreSQL at {target} unreachable: {}", with_causes(.source.as_ref()))]
    Unreachable {
        /// `user@host:port/database`, without password.
        target: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A statement failed. [`PostgresError::is_retryable`] tells whether trying again may
    /// help (a lost connection, a serialization failure) or not (a constraint, bad SQL).
    #[error("PostgreSQL {operation}: {}", explain(.source))]
    Query {
        /// What was being done (`compare-and-set`, `restore`, ...).
        operation: &'static str,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A stored row could not be read back as an order (a state or event the lifecycle does
    /// not have, a history that does not add up). Not retryable.
    #[error("PostgreSQL row of order {order_id} unreadable: {reason}")]
    Decode {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// A schema migration failed; the database is left at the last version that applied.
    #[error("PostgreSQL migration {version} ({name}) failed: {}", explain(.source))]
    Migration {
        /// The migration's version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PostgresError {
    /// Whether the same operation may succeed later: the server is unreachable, the
    /// connection broke, or PostgreSQL answered with a transient SQLSTATE (class 08
    /// connection exception, 40001 serialization failure, 40P01 deadlock, 53xxx insufficient
    /// resources, 57P01–57P03 shutdown or start-up in progress).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Query { source, .. } | Self::Migration { source, .. } => transient(source),
            Self::Config { .. } | Self::Decode { .. } => false,
        }
    }
}

/// `error` followed by its causes (the pool's and client's messages alone, "error connecting
/// to server", do not say that the connection was refused or timed out).
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
        cause = e.source();
    }
    text
}

/// The server's own words for a database error (`tokio_postgres` prints only "db error"),
/// with its SQLSTATE; the client's message and cause otherwise.
fn explain(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

pub(crate) fn transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: the connection itself failed (closed, I/O, timeout).
        None => error.as_db_error().is_none(),
    }
}

impl From<PostgresError> for order_fsm::Error {
    fn from(e: PostgresError) -> Self {
        if e.is_retryable() {
            order_fsm::Error::unavailable("postgres", e)
        } else {
            order_fsm::Error::backend("postgres", e)
        }
    }
}
