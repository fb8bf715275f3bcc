//! Configuration and the builder.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use order_fsm::Lifecycle;
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

use crate::{schema, PostgresError, PostgresStore};

/// Environment variable holding the connection URL
/// (`postgres://user:password@host:port/database`).
pub const URL_ENV: &str = "ORDER_FSM_POSTGRES_URL";
/// Environment variable holding the pool size.
pub const POOL_SIZE_ENV: &str = "ORDER_FSM_POSTGRES_POOL_SIZE";

/// Where and how to connect. Its `Debug` output hides the password.
#[derive(Clone)]
pub struct PostgresConfig {
    url: String,
    /// Most connections held at once (default 8: a runner's workers each hold one while
    /// they write a batch).
    pub pool_size: usize,
    /// How long opening one connection may take (default 10 s).
    pub connect_timeout: Duration,
    /// How long a caller waits for a free pooled connection (default 30 s).
    pub acquire_timeout: Duration,
}

impl PostgresConfig {
    /// A configuration for `url` with the default pool settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
        }
    }

    /// The configuration from [`URL_ENV`] and, when set, [`POOL_SIZE_ENV`].
    ///
    /// # Errors
    /// [`PostgresError::Config`] when [`URL_ENV`] is unset or the pool size is not a
    /// positive number.
    pub fn from_env() -> Result<Self, PostgresError> {
        let url = std::env::var(URL_ENV).map_err(|_| PostgresError::Config {
            reason: format!("{URL_ENV} is not set"),
        })?;
        let mut config = Self::new(url);
        if let Ok(size) = std::env::var(POOL_SIZE_ENV) {
            config.pool_size =
                size.parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| PostgresError::Config {
                        reason: format!("{POOL_SIZE_ENV}={size:?} is not a positive number"),
                    })?;
        }
        Ok(config)
    }

    /// The connection URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Parses the URL into the client's configuration, and the printable target.
    fn client_config(&self) -> Result<(tokio_postgres::Config, String), PostgresError> {
        let mut pg = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            // The client's message names the option at fault; scrub the password anyway.
            let reason = scrub(&self.url, &e.to_string());
            PostgresError::Config {
                reason: format!(
                    "{} is not a valid connection URL: {reason}",
                    redact(&self.url)
                ),
            }
        })?;
        if pg.get_hosts().is_empty() {
            return Err(PostgresError::Config {
                reason: format!("{} names no host", redact(&self.url)),
            });
        }
        pg.connect_timeout(self.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("order-fsm");
        }
        let target = describe(&pg);
        Ok((pg, target))
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// Builds a [`PostgresStore`]: connects, applies the schema migrations, and checks the
/// server answers.
///
/// ```no_run
/// # async fn run() -> Result<(), order_fsm_postgres::PostgresError> {
/// use std::sync::Arc;
/// let store = order_fsm_postgres::PostgresBuilder::from_env()?
///     .with_pool_size(16)
///     .build(Arc::new(order_fsm::Lifecycle::ecommerce()))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct PostgresBuilder {
    config: PostgresConfig,
}

impl PostgresBuilder {
    /// A builder for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_config(PostgresConfig::new(url))
    }

    /// A builder over a whole configuration.
    pub fn with_config(config: PostgresConfig) -> Self {
        Self { config }
    }

    /// A builder from the environment (see [`PostgresConfig::from_env`]).
    ///
    /// # Errors
    /// As [`PostgresConfig::from_env`].
    pub fn from_env() -> Result<Self, PostgresError> {
        PostgresConfig::from_env().map(Self::with_config)
    }

    /// Most pooled connections.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.config.pool_size = size.max(1);
        self
    }

    /// How long opening one connection may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a caller waits for a pooled connection.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// Connects, applies pending migrations (see [`PostgresStore::migrations`]) and
    /// returns the store of orders of `lifecycle`.
    ///
    /// # Errors
    /// [`PostgresError::Config`] for a malformed URL, [`PostgresError::Unreachable`] when
    /// the server does not answer or refuses the login, [`PostgresError::Migration`] when
    /// the schema cannot be brought up to date.
    pub async fn build(self, lifecycle: Arc<Lifecycle>) -> Result<PostgresStore, PostgresError> {
        let (pg, target) = self.config.client_config()?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.config.acquire_timeout))
            .create_timeout(Some(self.config.connect_timeout))
            .build()
            .map_err(|e| PostgresError::Config {
                reason: format!("connection pool: {e}"),
            })?;
        let store = PostgresStore::new(pool, lifecycle, target);
        let mut client = store.connection().await?;
        let applied = schema::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(target: "order_fsm_postgres", at = %store.target(), ?applied, "applied schema migrations");
        }
        Ok(store)
    }
}

/// `user@host:port/database` of a parsed configuration (no password).
fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => String::from("?"),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("?");
    let db = pg.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// The URL with the password of its `user:password@` part replaced by `***`.
fn redact(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// `message` with any occurrence of the URL's password replaced by `***`.
fn scrub(url: &str, message: &str) -> String {
    match password_span(url) {
        Some((start, end)) if end > start => message.replace(&url[start..end], "***"),
        _ => message.to_owned(),
    }
}

/// Byte range of the password in `scheme://user:password@host...`.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_printed() {
        let config = PostgresConfig::new("postgres://shop:s3cret@db.example:5433/orders");
        assert_eq!(
            config.redacted_url(),
            "postgres://shop:***@db.example:5433/orders"
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        let (_, target) = config.client_config().expect("valid");
        assert_eq!(target, "shop@db.example:5433/orders");
        assert_eq!(redact("postgres://localhost/db"), "postgres://localhost/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn malformed_urls_are_config_errors_without_the_password() {
        for url in [
            "postgres://shop:s3cret@db:notaport/orders",
            "postgres://shop:s3cret@db/orders?sslmode=sometimes",
            "mysql://shop:s3cret@db/orders",
        ] {
            let err = PostgresConfig::new(url).client_config().unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, PostgresError::Config { .. }),
                "{url}: {err:?}"
            );
            assert!(!text.contains("s3cret"), "{url}: password in {text}");
            assert!(text.contains("***"), "{url}: {text}");
        }
    }
}
