//! A typed client: core types in and out, retries on `UNAVAILABLE` with the same
//! idempotency key.

use std::future::Future;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use order_fsm::{OrderId, Purchase, RetryPolicy};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use crate::proto;
use crate::proto::order_service_client::OrderServiceClient;
use crate::views::{
    accepted_from_proto, order_from_proto, placed_from_proto, transition_from_proto, EventAccepted,
    OrderPage, OrderView, PlacedOrder, TransitionView,
};
use crate::GrpcError;

/// Where and how the client connects.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server's URL (`http://127.0.0.1:50051`, or `https://...` with TLS).
    pub endpoint: String,
    /// Trust this CA (PEM) and use TLS.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The name to verify the server certificate against (default: the URL's host).
    pub tls_domain: Option<String>,
    /// Deadline of each call, sent as `grpc-timeout` (default 10 s; `None`: no deadline).
    pub timeout: Option<Duration>,
    /// Time allowed to establish a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Retries of `UNAVAILABLE` answers and connection failures (default: 5 attempts,
    /// 50 ms doubling to 1 s). Every attempt of one call carries the same idempotency key.
    pub retry: RetryPolicy,
    /// The API key sent with every call (`authorization: Bearer`) to an intake with
    /// access control (see [`crate::access`]).
    pub api_key: Option<ApiKey>,
    /// The client's own certificate and key, for a server that requires mutual TLS.
    pub tls_identity: Option<crate::TlsIdentity>,
}

/// An API key; its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ClientConfig {
    /// The defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls_ca_pem: None,
            tls_domain: None,
            timeout: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default()
                .with_max_attempts(5)
                .with_backoff(Duration::from_millis(50), Duration::from_secs(1)),
            api_key: None,
            tls_identity: None,
        }
    }

    /// Presents `cert_pem` (with its key) to a server that requires mutual TLS.
    #[must_use]
    pub fn with_client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_identity = Some(crate::TlsIdentity::from_pem(cert_pem, key_pem));
        self
    }

    /// Sends `key` with every call.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// The defaults for `ORDER_FSM_GRPC_URL` (default `http://127.0.0.1:50051`).
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("ORDER_FSM_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into()),
        )
    }

    /// Uses TLS, trusting `ca_pem`, verifying the certificate against `domain`.
    #[must_use]
    pub fn with_tls(mut self, ca_pem: impl Into<Vec<u8>>, domain: impl Into<String>) -> Self {
        self.tls_ca_pem = Some(ca_pem.into());
        self.tls_domain = Some(domain.into());
        self
    }

    /// Sets the per-call deadline.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The `authorization` value of the API key, if any.
    fn authorization(
        &self,
    ) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>, GrpcError> {
        let Some(ApiKey(key)) = &self.api_key else {
            return Ok(None);
        };
        let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {key}")
                .parse()
                .map_err(|_| GrpcError::Config("the API key is not printable ASCII".into()))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    fn endpoint(&self) -> Result<Endpoint, GrpcError> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        match &self.tls_ca_pem {
            None => Ok(endpoint),
            Some(ca) => tls(
                endpoint,
                ca,
                self.tls_domain.as_deref(),
                self.tls_identity.as_ref(),
            ),
        }
    }
}

#[cfg(feature = "tls")]
fn tls(
    endpoint: Endpoint,
    ca: &[u8],
    domain: Option<&str>,
    identity: Option<&crate::TlsIdentity>,
) -> Result<Endpoint, GrpcError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    if let Some(own) = identity {
        config = config.identity(Identity::from_pem(&own.cert_pem, &own.key_pem));
    }
    Ok(endpoint.tls_config(config)?)
}

#[cfg(not(feature = "tls"))]
fn tls(
    _: Endpoint,
    _: &[u8],
    _: Option<&str>,
    _: Option<&crate::TlsIdentity>,
) -> Result<Endpoint, GrpcError> {
    Err(GrpcError::Config(
        "TLS needs the crate's `tls` feature".into(),
    ))
}

/// Options of an event call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventOptions {
    /// Apply only at exactly this version (`ABORTED` otherwise).
    pub expected_version: Option<u64>,
    /// Why (required by events like `fail`).
    pub reason: Option<String>,
    /// Same key, same event; the client makes one up per call when `None`.
    pub idempotency_key: Option<String>,
}

/// A typed client of `order_fsm.v1.OrderService`. Cheap to clone; clones share the
/// connection.
#[derive(Clone, Debug)]
pub struct OrderClient {
    inner: OrderServiceClient<Channel>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

fn fresh_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl OrderClient {
    /// Connects now.
    ///
    /// # Errors
    /// [`GrpcError::Transport`] when the endpoint is invalid or unreachable.
    pub async fn connect(config: ClientConfig) -> Result<Self, GrpcError> {
        let endpoint = config.endpoint()?;
        let authorization = config.authorization()?;
        let channel = endpoint.connect().await?;
        Ok(Self::from_channel(channel, &config, authorization))
    }

    /// Connects on first use (and reconnects after failures); calls made while the server
    /// is unreachable fail with `UNAVAILABLE` and are retried by the policy.
    ///
    /// # Errors
    /// [`GrpcError::Transport`] when the endpoint is invalid.
    pub fn connect_lazy(config: ClientConfig) -> Result<Self, GrpcError> {
        let channel = config.endpoint()?.connect_lazy();
        let authorization = config.authorization()?;
        Ok(Self::from_channel(channel, &config, authorization))
    }

    fn from_channel(
        channel: Channel,
        config: &ClientConfig,
        authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Self {
        Self {
            inner: OrderServiceClient::new(channel),
            timeout: config.timeout,
            retry: config.retry,
            authorization,
        }
    }

    /// `message` with the API key, without a deadline.
    fn authorized<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.authorized(message);
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }

    /// Runs `call` until it succeeds, fails with something other than `UNAVAILABLE`, or the
    /// retry policy gives up.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, GrpcError>
    where
        F: FnMut(OrderServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut attempt = 1;
        loop {
            match call(self.inner.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unavailable && self.retry.allows(attempt) => {
                    tracing::debug!(attempt, %status, "order service unavailable, retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }

    /// Places an order. With `idempotency_key`, the same key always names the same order;
    /// without, the client makes a key up so its own retries stay idempotent.
    ///
    /// # Errors
    /// [`GrpcError::Rpc`] with `INVALID_ARGUMENT` naming the field, `UNAVAILABLE` after the
    /// retries, ...
    pub async fn place_order(
        &self,
        purchase: &Purchase,
        idempotency_key: Option<&str>,
    ) -> Result<PlacedOrder, GrpcError> {
        let message = proto::PlaceOrderRequest {
            purchase: Some(proto::Purchase::from(purchase)),
            idempotency_key: Some(idempotency_key.map_or_else(fresh_key, str::to_owned)),
        };
        let reply = self
            .retrying(|mut c| {
                let request = self.request(message.clone());
                async move { c.place_order(request).await }
            })
            .await?;
        placed_from_proto(reply)
    }

    /// Places up to [`crate::MAX_PLACEMENTS_PER_CALL`] (1,000) orders in one call: all are
    /// accepted or, when one is invalid, none (the error names it, e.g. `orders[3]: invalid
    /// field ...`). The client gives each order a fresh idempotency key, so a retried call
    /// places each order once. Answers come in the order of `purchases`.
    ///
    /// # Errors
    /// As [`OrderClient::place_order`], plus `INVALID_ARGUMENT` naming `orders` when
    /// `purchases` is empty or longer than 1,000.
    pub async fn place_orders(
        &self,
        purchases: &[Purchase],
    ) -> Result<Vec<PlacedOrder>, GrpcError> {
        let message = proto::PlaceOrdersRequest {
            orders: purchases
                .iter()
                .map(|purchase| proto::PlaceOrderRequest {
                    purchase: Some(proto::Purchase::from(purchase)),
                    idempotency_key: Some(fresh_key()),
                })
                .collect(),
        };
        let reply = self
            .retrying(|mut c| {
                let request = self.request(message.clone());
                async move { c.place_orders(request).await }
            })
            .await?;
        reply.orders.into_iter().map(placed_from_proto).collect()
    }

    /// Reads one order.
    ///
    /// # Errors
    /// [`GrpcError::Rpc`] with `NOT_FOUND` for an unknown order (or one not processed yet).
    pub async fn get_order(&self, order_id: OrderId) -> Result<OrderView, GrpcError> {
        let message = proto::GetOrderRequest {
            order_id: order_id.to_string(),
        };
        let reply = self
            .retrying(|mut c| {
                let request = self.request(message.clone());
                async move { c.get_order(request).await }
            })
            .await?;
        order_from_proto(reply)
    }

    /// One page of orders, optionally only those in `status`.
    ///
    /// # Errors
    /// [`GrpcError::Rpc`] with `INVALID_ARGUMENT` for an unknown status or a bad token.
    pub async fn list_orders(
        &self,
        status: Option<&str>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<OrderPage, GrpcError> {
        let message = proto::ListOrdersRequest {
            status: status.unwrap_or_default().to_owned(),
            page_size,
            page_token: page_token.unwrap_or_default().to_owned(),
        };
        let reply = self
            .retrying(|mut c| {
                let request = self.request(message.clone());
                async move { c.list_orders(request).await }
            })
            .await?;
        Ok(OrderPage {
            orders: reply
                .orders
                .into_iter()
                .map(order_from_proto)
                .collect::<Result<_, _>>()?,
            next_page_token: Some(reply.next_page_token).filter(|t| !t.is_empty()),
        })
    }

    /// Submits `event` for an order after the server checked it is allowed now.
    ///
    /// # Errors
    /// [`GrpcError::Rpc`]: `INVALID_ARGUMENT` (unknown event, missing reason), `NOT_FOUND`,
    /// `FAILED_PRECONDITION` (not allowed in the current state), `ABORTED` (stale version).
    pub async fn apply_event(
        &self,
        order_id: OrderId,
        event: &str,
        options: EventOptions,
    ) -> Result<EventAccepted, GrpcError> {
        let message = proto::ApplyEventRequest {
            order_id: order_id.to_string(),
            event: event.to_owned(),
            expected_version: options.expected_version,
            reason: options.reason,
            idempotency_key: Some(options.idempotency_key.unwrap_or_else(fresh_key)),
        };
        let reply = self
            .retrying(|mut c| {
                let request = self.request(message.clone());
                async move { c.apply_event(request).await }
            })
            .await?;
        accepted_from_proto(reply)
    }

    /// Submits the lifecycle's cancel event.
    ///
    /// # Errors
    /// As [`OrderClient::apply_event`].
    pub async fn cancel_order(
        &self,
        order_id: OrderId,
        options: EventOptions,
    ) -> Result<EventAccepted, GrpcError> {
        let message = proto::CancelOrderRequest {
            order_id: order_id.to_string(),
            expected_version: options.expected_version,
            reason: options.reason,
            idempotency_key: Some(options.idempotency_key.unwrap_or_else(fresh_key)),
        };
        let reply = self
            .retrying(|mut c| {
                let request = self.request(message.clone());
                async move { c.cancel_order(request).await }
            })
            .await?;
        accepted_from_proto(reply)
    }

    /// The order's transitions so far, then each new one; the stream ends after a terminal
    /// state. The client's per-call deadline does not apply to the stream.
    ///
    /// # Errors
    /// [`GrpcError::Rpc`] with `NOT_FOUND` for an unknown order; items fail with `UNAVAILABLE`
    /// when the server shuts down.
    pub async fn watch_order(
        &self,
        order_id: OrderId,
    ) -> Result<impl Stream<Item = Result<TransitionView, GrpcError>> + Send + 'static, GrpcError>
    {
        let message = proto::WatchOrderRequest {
            order_id: order_id.to_string(),
        };
        let stream = self
            .retrying(|mut c| {
                let request = self.authorized(message.clone());
                async move { c.watch_order(request).await }
            })
            .await?;
        Ok(stream.map(|item| transition_from_proto(item?)))
    }
}
