//! Configuration and its builder.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use order_fsm::{DeadLetterSink, RetryPolicy};

use crate::ElasticError;

/// How the client authenticates. `Debug` never prints the secrets.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An API key, either as Elasticsearch hands it out (base64 of `id:key`) or as `id:key`.
    ApiKey(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
        }
    }
}

/// How the server's TLS certificate is checked (only for `https://` URLs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tls {
    /// Against the system's trusted roots (the default).
    #[default]
    SystemRoots,
    /// Against this PEM CA certificate (a self-signed cluster's `http_ca.crt`).
    CaCertificate(PathBuf),
    /// Not at all. Only for throw-away test clusters.
    Insecure,
}

/// Everything the sink and the queries need; built by [`crate::ElasticBuilder`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ElasticConfig {
    /// Server URL, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Credentials, if the cluster needs them.
    pub auth: Option<Auth>,
    /// Certificate checking for `https`.
    pub tls: Tls,
    /// Prefix of the index names (`{prefix}orders`, `{prefix}transitions`,
    /// `{prefix}metrics`, `{prefix}dead_letters`). Default `order-fsm-`.
    pub index_prefix: String,
    /// Most documents in one `_bulk` request (default 1000).
    pub max_batch_docs: usize,
    /// Most bytes in one `_bulk` request body (default 5 MiB); a single larger document
    /// still goes alone.
    pub max_batch_bytes: usize,
    /// Longest a document waits for its batch to fill (default 2 ms).
    pub flush_interval: Duration,
    /// Most `_bulk` requests in flight at once (default 2).
    pub max_in_flight: usize,
    /// Retries of a bulk request on 429 / 5xx / unreachable server, and of its items refused
    /// with 429 / 503 (default 6 attempts, 50 ms doubling to 2 s). When attempts run out the
    /// publish fails with a retryable error and the runner retries the whole batch.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request (default 30 s).
    pub request_timeout: Duration,
    /// Whether the system's HTTP proxy settings apply (default false: talk to the cluster
    /// directly).
    pub use_system_proxy: bool,
}

impl Default for ElasticConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            auth: None,
            tls: Tls::SystemRoots,
            index_prefix: "order-fsm-".into(),
            max_batch_docs: 1000,
            max_batch_bytes: 5 * 1024 * 1024,
            flush_interval: Duration::from_millis(2),
            max_in_flight: 2,
            retry: RetryPolicy::default()
                .with_max_attempts(6)
                .with_backoff(Duration::from_millis(50), Duration::from_secs(2)),
            request_timeout: Duration::from_secs(30),
            use_system_proxy: false,
        }
    }
}

impl ElasticConfig {
    /// Name of the index holding one document per order.
    pub fn orders_index(&self) -> String {
        format!("{}orders", self.index_prefix)
    }

    /// Name of the index holding one document per state change.
    pub fn transitions_index(&self) -> String {
        format!("{}transitions", self.index_prefix)
    }

    /// Name of the index holding metrics windows.
    pub fn metrics_index(&self) -> String {
        format!("{}metrics", self.index_prefix)
    }

    /// Name of the index holding dead letters ([`order_fsm::DeadLetterSink`]).
    pub fn dead_letters_index(&self) -> String {
        format!("{}dead_letters", self.index_prefix)
    }

    pub(crate) fn validate(&self) -> Result<(), ElasticError> {
        let url = elasticsearch::http::Url::parse(&self.url)
            .map_err(|e| ElasticError::Config(format!("url `{}`: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ElasticError::Config(format!(
                "url `{}` must be http:// or https://",
                self.url
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ElasticError::Config(
                "put credentials in ORDER_FSM_ES_USERNAME/PASSWORD or ORDER_FSM_ES_API_KEY, not in the URL".into(),
            ));
        }
        if self.max_batch_docs == 0 || self.max_batch_bytes == 0 || self.max_in_flight == 0 {
            return Err(ElasticError::Config(
                "max_batch_docs, max_batch_bytes and max_in_flight must be at least 1".into(),
            ));
        }
        let lowercase = self
            .index_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !lowercase || self.index_prefix.starts_with(['-', '_', '+']) {
            return Err(ElasticError::Config(format!(
                "index prefix `{}` must be lowercase letters, digits, `-`, `_` or `.`",
                self.index_prefix
            )));
        }
        Ok(())
    }
}

/// Builds an [`crate::ElasticSink`] (and its [`crate::Queries`]).
///
/// ```no_run
/// # async fn run() -> Result<(), order_fsm_elastic::ElasticError> {
/// use order_fsm_elastic::ElasticBuilder;
/// let sink = ElasticBuilder::from_env()?
///     .with_index_prefix("shop-")
///     .with_max_batch_docs(500)
///     .build()
///     .await?;
/// let per_status = sink.queries().orders_per_status().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct ElasticBuilder {
    config: ElasticConfig,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

impl fmt::Debug for ElasticBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticBuilder")
            .field("config", &self.config)
            .field("dead_letters", &self.dead_letters.is_some())
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl ElasticBuilder {
    /// A builder for the server at `url`, with defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        Self::default().with_url(url)
    }

    /// A builder from the environment:
    /// - `ORDER_FSM_ES_URL` (required),
    /// - `ORDER_FSM_ES_USERNAME` and `ORDER_FSM_ES_PASSWORD`, or `ORDER_FSM_ES_API_KEY`,
    /// - `ORDER_FSM_ES_CA_CERT` (path of a PEM CA certificate) or
    ///   `ORDER_FSM_ES_TLS_INSECURE=true`,
    /// - `ORDER_FSM_ES_INDEX_PREFIX`.
    ///
    /// # Errors
    /// [`ElasticError::Config`] when the URL is missing or the credentials are ambiguous.
    pub fn from_env() -> Result<Self, ElasticError> {
        let url = env("ORDER_FSM_ES_URL")
            .ok_or_else(|| ElasticError::Config("ORDER_FSM_ES_URL is not set".into()))?;
        let mut builder = Self::new(url).with_env_security()?;
        if let Some(prefix) = env("ORDER_FSM_ES_INDEX_PREFIX") {
            builder = builder.with_index_prefix(prefix);
        }
        Ok(builder)
    }

    /// This builder with the credentials and TLS settings of the environment
    /// (`ORDER_FSM_ES_USERNAME`/`PASSWORD` or `ORDER_FSM_ES_API_KEY`, `ORDER_FSM_ES_CA_CERT`,
    /// `ORDER_FSM_ES_TLS_INSECURE`; see [`Self::from_env`]), for programs that take the URL
    /// from a flag.
    ///
    /// # Errors
    /// [`ElasticError::Config`] when the credentials are ambiguous.
    pub fn with_env_security(self) -> Result<Self, ElasticError> {
        let mut builder = self;
        match (
            env("ORDER_FSM_ES_USERNAME"),
            env("ORDER_FSM_ES_PASSWORD"),
            env("ORDER_FSM_ES_API_KEY"),
        ) {
            (None, None, None) => {}
            (Some(user), password, None) => {
                builder = builder.with_basic_auth(user, password.unwrap_or_default());
            }
            (None, None, Some(key)) => builder = builder.with_api_key(key),
            (None, Some(_), None) => {
                return Err(ElasticError::Config(
                    "ORDER_FSM_ES_PASSWORD is set without ORDER_FSM_ES_USERNAME".into(),
                ))
            }
            (_, _, Some(_)) => {
                return Err(ElasticError::Config(
                    "set either ORDER_FSM_ES_USERNAME/PASSWORD or ORDER_FSM_ES_API_KEY, not both"
                        .into(),
                ))
            }
        }
        if let Some(path) = env("ORDER_FSM_ES_CA_CERT") {
            builder = builder.with_ca_certificate(path);
        }
        if env("ORDER_FSM_ES_TLS_INSECURE").is_some_and(|v| v == "true" || v == "1") {
            builder = builder.with_insecure_tls();
        }
        Ok(builder)
    }

    /// The server's URL.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// HTTP basic authentication.
    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.auth = Some(Auth::Basic {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// API-key authentication (base64 `id:key` as Elasticsearch prints it, or `id:key`).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.config.auth = Some(Auth::ApiKey(key.into()));
        self
    }

    /// Checks the server's certificate against this PEM CA certificate.
    pub fn with_ca_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tls = Tls::CaCertificate(path.into());
        self
    }

    /// Does not check the server's certificate (test clusters only).
    pub fn with_insecure_tls(mut self) -> Self {
        self.config.tls = Tls::Insecure;
        self
    }

    /// Prefix of every index name (default `order-fsm-`).
    pub fn with_index_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.index_prefix = prefix.into();
        self
    }

    /// Most documents per `_bulk` request.
    pub fn with_max_batch_docs(mut self, docs: usize) -> Self {
        self.config.max_batch_docs = docs;
        self
    }

    /// Most bytes per `_bulk` request body.
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.config.max_batch_bytes = bytes;
        self
    }

    /// Longest a document waits for its batch to fill.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval = interval;
        self
    }

    /// Most `_bulk` requests in flight at once.
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.config.max_in_flight = requests;
        self
    }

    /// Retries of bulk requests and of their retryable items.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Timeout of one HTTP request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Whether the system's proxy settings (`HTTP_PROXY`, ...) apply.
    pub fn with_system_proxy(mut self, use_it: bool) -> Self {
        self.config.use_system_proxy = use_it;
        self
    }

    /// Routes documents the server rejects for good to `sink` (as a
    /// [`order_fsm::DeadLetter`] rebuilt from the record) instead of failing the publish.
    pub fn with_dead_letters(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &ElasticConfig {
        &self.config
    }
}
