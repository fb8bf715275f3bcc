//! Server configuration: address, limits, deadlines, TLS.

use std::net::SocketAddr;
use std::time::Duration;

use crate::GrpcError;

/// A PEM certificate chain and private key, for serving TLS.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PEM.
    pub key_pem: Vec<u8>,
    /// Mutual TLS: only clients with a certificate signed by one of these CAs (PEM) may
    /// connect.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish()
    }
}

impl TlsIdentity {
    /// An identity from PEM bytes.
    pub fn from_pem(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        }
    }

    /// Reads the certificate chain and key from PEM files.
    ///
    /// # Errors
    /// [`GrpcError::Io`] when a file cannot be read.
    pub fn from_files(cert: &str, key: &str) -> Result<Self, GrpcError> {
        Ok(Self::from_pem(std::fs::read(cert)?, std::fs::read(key)?))
    }

    /// Requires client certificates signed by the CAs in `ca_pem` (mutual TLS).
    #[must_use]
    pub fn with_client_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }
}

/// How the server listens and what it allows.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where [`crate::OrderServiceBuilder::serve`] listens (default `127.0.0.1:50051`).
    pub addr: SocketAddr,
    /// Largest request message accepted, in bytes (default
    /// [`order_fsm::intake::MAX_REQUEST_BYTES`], 4 MiB, the HTTP gateway's body limit too: a
    /// `PlaceOrders` call of 1,000 typical placements is about 200 KiB); a larger one fails
    /// with `OUT_OF_RANGE` before it is decoded.
    pub max_request_bytes: usize,
    /// Largest response message sent, in bytes (default 4 MiB).
    pub max_response_bytes: usize,
    /// Longest a unary call may run, and the cap on a client's `grpc-timeout`
    /// (default 30 s; `None`: only the client's deadline). `WatchOrder` is bounded only by
    /// the client's deadline.
    pub request_timeout: Option<Duration>,
    /// Concurrent requests per connection (default: unlimited).
    pub concurrency_limit_per_connection: Option<usize>,
    /// Orders per `ListOrders` page when the request says 0 (default 100).
    pub default_page_size: u32,
    /// Most orders per `ListOrders` page; larger requests are clamped (default 1000).
    pub max_page_size: u32,
    /// The lifecycle event `CancelOrder` applies (default `cancel`).
    pub cancel_event: String,
    /// How often a `WatchOrder` stream re-reads the store when no live record arrived
    /// (default 500 ms); the only source of updates when no [`crate::WatchHub`] is set.
    pub watch_poll_interval: Duration,
    /// Serve TLS with this identity (default: plaintext).
    pub tls: Option<TlsIdentity>,
    /// Require an API key with a role allowing each RPC (see [`crate::access`]; default:
    /// none, every caller may do everything).
    pub access: Option<std::sync::Arc<order_fsm::access::KeyFile>>,
    /// Most `OrderService` calls a second per client (see [`crate::rate`]; default: no
    /// limit).
    pub rate_limit: Option<std::num::NonZeroU32>,
    /// Serve server reflection (`grpc.reflection.v1` and `v1alpha`), which tools such as
    /// grpcurl use to discover the service (default on). Turn it off to not describe the
    /// API to whoever reaches the port.
    pub reflection: bool,
    /// Most connections open at once (default 1,024); more wait in the kernel's accept
    /// queue.
    pub max_connections: usize,
    /// Longest wait for a new connection's first bytes (the HTTP/2 preface or a TLS hello;
    /// default 10 s): a client that connects and says nothing is closed.
    pub handshake_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings (default 30 s; `None`: no pings); a ping
    /// unanswered for 10 s closes the connection.
    pub keepalive_interval: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_request_bytes: order_fsm::intake::MAX_REQUEST_BYTES,
            max_response_bytes: 4 * 1024 * 1024,
            request_timeout: Some(Duration::from_secs(30)),
            concurrency_limit_per_connection: None,
            default_page_size: 100,
            max_page_size: 1000,
            cancel_event: "cancel".into(),
            watch_poll_interval: Duration::from_millis(500),
            tls: None,
            access: None,
            rate_limit: None,
            reflection: true,
            max_connections: 1_024,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Some(Duration::from_secs(30)),
        }
    }
}

impl ServerConfig {
    /// The defaults, overridden by `ORDER_FSM_GRPC_ADDR`, `ORDER_FSM_GRPC_MAX_REQUEST_BYTES`,
    /// `ORDER_FSM_GRPC_REQUEST_TIMEOUT_MS`, `ORDER_FSM_GRPC_REFLECTION` (`false` turns
    /// reflection off) and, together, `ORDER_FSM_GRPC_TLS_CERT` / `ORDER_FSM_GRPC_TLS_KEY`
    /// (PEM file paths).
    ///
    /// # Errors
    /// [`GrpcError::Config`] for an unparsable value, [`GrpcError::Io`] for unreadable TLS files.
    pub fn from_env() -> Result<Self, GrpcError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bad =
            |name: &str, value: &str| GrpcError::Config(format!("{name}={value:?} is invalid"));
        let mut config = Self::default();
        if let Some(v) = var("ORDER_FSM_GRPC_ADDR") {
            config.addr = v.parse().map_err(|_| bad("ORDER_FSM_GRPC_ADDR", &v))?;
        }
        if let Some(v) = var("ORDER_FSM_GRPC_MAX_REQUEST_BYTES") {
            config.max_request_bytes = v
                .parse()
                .map_err(|_| bad("ORDER_FSM_GRPC_MAX_REQUEST_BYTES", &v))?;
        }
        if let Some(v) = var("ORDER_FSM_GRPC_REQUEST_TIMEOUT_MS") {
            let ms: u64 = v
                .parse()
                .map_err(|_| bad("ORDER_FSM_GRPC_REQUEST_TIMEOUT_MS", &v))?;
            config.request_timeout = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(v) = var("ORDER_FSM_GRPC_REFLECTION") {
            config.reflection = v
                .parse()
                .map_err(|_| bad("ORDER_FSM_GRPC_REFLECTION", &v))?;
        }
        match (
            var("ORDER_FSM_GRPC_TLS_CERT"),
            var("ORDER_FSM_GRPC_TLS_KEY"),
        ) {
            (Some(cert), Some(key)) => config.tls = Some(TlsIdentity::from_files(&cert, &key)?),
            (None, None) => {}
            _ => {
                return Err(GrpcError::Config(
                    "set both ORDER_FSM_GRPC_TLS_CERT and ORDER_FSM_GRPC_TLS_KEY, or neither"
                        .into(),
                ))
            }
        }
        Ok(config)
    }

    /// Sets the listening address.
    #[must_use]
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Sets the request and response size limits, in bytes.
    #[must_use]
    pub fn with_message_limits(
        mut self,
        max_request_bytes: usize,
        max_response_bytes: usize,
    ) -> Self {
        self.max_request_bytes = max_request_bytes;
        self.max_response_bytes = max_response_bytes;
        self
    }

    /// Sets the cap on a unary call's duration.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Limits concurrent requests per connection.
    #[must_use]
    pub fn with_concurrency_limit_per_connection(mut self, limit: Option<usize>) -> Self {
        self.concurrency_limit_per_connection = limit;
        self
    }

    /// Sets the default and largest `ListOrders` page sizes.
    #[must_use]
    pub fn with_page_sizes(mut self, default_page_size: u32, max_page_size: u32) -> Self {
        self.default_page_size = default_page_size;
        self.max_page_size = max_page_size;
        self
    }

    /// Sets the event `CancelOrder` applies.
    #[must_use]
    pub fn with_cancel_event(mut self, event: impl Into<String>) -> Self {
        self.cancel_event = event.into();
        self
    }

    /// Sets how often a watch stream re-reads the store when idle.
    #[must_use]
    pub fn with_watch_poll_interval(mut self, interval: Duration) -> Self {
        self.watch_poll_interval = interval;
        self
    }

    /// Requires an API key from `keys` on every `OrderService` RPC (see [`crate::access`]).
    #[must_use]
    pub fn with_access(mut self, keys: std::sync::Arc<order_fsm::access::KeyFile>) -> Self {
        self.access = Some(keys);
        self
    }

    /// At most `per_second` `OrderService` calls a second per client (see [`crate::rate`]).
    #[must_use]
    pub fn with_rate_limit(mut self, per_second: std::num::NonZeroU32) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    /// Serves TLS with `identity`.
    #[must_use]
    pub fn with_tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Serves server reflection, or not.
    #[must_use]
    pub fn with_reflection(mut self, on: bool) -> Self {
        self.reflection = on;
        self
    }

    /// Sets the connection limits: most open at once, and the wait for a new one's first
    /// bytes.
    #[must_use]
    pub fn with_connection_limits(mut self, max_connections: usize, handshake: Duration) -> Self {
        self.max_connections = max_connections;
        self.handshake_timeout = handshake;
        self
    }

    /// Sets the HTTP/2 keep-alive ping interval (`None`: no pings).
    #[must_use]
    pub fn with_keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keepalive_interval = interval;
        self
    }

    pub(crate) fn check(&self) -> Result<(), GrpcError> {
        if self.default_page_size == 0 || self.max_page_size < self.default_page_size {
            return Err(GrpcError::Config(
                "page sizes: need 0 < default_page_size <= max_page_size".into(),
            ));
        }
        if self.max_request_bytes == 0 || self.max_response_bytes == 0 {
            return Err(GrpcError::Config("message limits must be positive".into()));
        }
        if self.max_connections == 0 || self.handshake_timeout.is_zero() {
            return Err(GrpcError::Config(
                "max_connections and handshake_timeout must be positive".into(),
            ));
        }
        if self.watch_poll_interval.is_zero() {
            return Err(GrpcError::Config(
                "watch_poll_interval must be positive".into(),
            ));
        }
        Ok(())
    }
}
