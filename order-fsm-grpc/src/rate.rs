//! The per-client rate limit: one tower layer for both intake APIs, beside the
//! [access layer](crate::access) (and inside it, so that it knows who is calling).
//!
//! A client is the name of its API key when access control is on, else its IP address
//! (gRPC's `TcpConnectInfo`, or the [`ClientAddr`] the HTTP listener adds). Each client may
//! make `per_second` requests a second on average, in bursts of as many; past that a
//! request is refused whole, before anything is done, with `RESOURCE_EXHAUSTED` and
//! `retry-after-ms` (gRPC) or `429` and `Retry-After` (HTTP). Requests of no operation
//! (health checks, reflection, unknown routes) are not counted.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Method, Request, Response};
use order_fsm::access::{Identity, Operation};
use tower::Layer;

use crate::gate::{Check, Gate};

/// The peer address of an HTTP request, as the listener saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Which operation a request is (see [`crate::access::Classify`]).
type Classify = dyn Fn(&Method, &str) -> Option<Operation> + Send + Sync;

/// The answer to a request over the limit, given when to retry.
pub type Throttled<R> = dyn Fn(Duration) -> Response<R> + Send + Sync;

/// How many checks between two sweeps of clients not seen lately (bounds the memory of
/// clients that came once).
const SWEEP_EVERY: u64 = 10_000;

/// See the [module documentation](self).
pub struct RateLimitLayer<R> {
    limiter: Arc<DefaultKeyedRateLimiter<Client>>,
    checks: Arc<AtomicU64>,
    classify: Arc<Classify>,
    throttled: Arc<Throttled<R>>,
}

impl<R> Clone for RateLimitLayer<R> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            checks: Arc::clone(&self.checks),
            classify: Arc::clone(&self.classify),
            throttled: Arc::clone(&self.throttled),
        }
    }
}

impl<R> std::fmt::Debug for RateLimitLayer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl<R> RateLimitLayer<R> {
    /// At most `per_second` requests a second per client (bursts of as many), requests
    /// classified by `classify`, refusals answered by `throttled`.
    pub fn new(
        per_second: NonZeroU32,
        classify: impl Fn(&Method, &str) -> Option<Operation> + Send + Sync + 'static,
        throttled: impl Fn(Duration) -> Response<R> + Send + Sync + 'static,
    ) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_second(per_second))),
            checks: Arc::default(),
            classify: Arc::new(classify),
            throttled: Arc::new(throttled),
        }
    }

    /// How long `request`'s client must wait, or `None` if it may go on.
    fn wait<B>(&self, request: &Request<B>) -> Option<Duration> {
        (self.classify)(request.method(), request.uri().path())?;
        let client = client_of(request);
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let refused = self.limiter.check_key(&client).err()?;
        Some(refused.wait_time_from(DefaultClock::default().now()))
    }
}

impl RateLimitLayer<tonic::body::Body> {
    /// The limit for the `order_fsm.v1.OrderService` RPCs, refusing with
    /// `RESOURCE_EXHAUSTED` and `retry-after-ms`.
    pub fn grpc(per_second: NonZeroU32) -> Self {
        Self::new(per_second, crate::access::grpc_operation, |wait| {
            let mut status = tonic::Status::resource_exhausted(format!(
                "rate limit: retry in {} ms",
                wait.as_millis().max(1)
            ));
            if let Ok(value) = (wait.as_millis().max(1) as u64).to_string().parse() {
                status.metadata_mut().insert(crate::RETRY_AFTER_MS, value);
            }
            status.into_http()
        })
    }
}

/// Whom a request counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Client {
    /// An API key, by name.
    Key(Box<str>),
    /// An IP address.
    Ip(IpAddr),
    /// Neither is known.
    Unknown,
}

/// The client a request counts against: its key's name, else its IP address.
fn client_of<B>(request: &Request<B>) -> Client {
    if let Some(identity) = request.extensions().get::<Identity>() {
        return Client::Key(identity.name().into());
    }
    request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .or_else(|| request.extensions().get::<ClientAddr>().map(|a| a.0))
        .map_or(Client::Unknown, |addr| Client::Ip(addr.ip()))
}

impl<S, R> Layer<S> for RateLimitLayer<R> {
    type Service = Gate<S, Self>;

    fn layer(&self, inner: S) -> Gate<S, Self> {
        Gate {
            inner,
            check: self.clone(),
        }
    }
}

impl<R> Check<R> for RateLimitLayer<R> {
    fn check<B>(&self, request: &mut Request<B>) -> Option<Response<R>> {
        self.wait(request).map(|wait| (self.throttled)(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: Option<&str>, ip: [u8; 4]) -> Request<()> {
        let path = format!("/{}/GetOrder", crate::proto::SERVICE_NAME);
        let mut request = Request::builder().uri(path).body(()).unwrap();
        request
            .extensions_mut()
            .insert(ClientAddr((ip, 4000).into()));
        if let Some(name) = client {
            let keys = order_fsm::access::KeyRing::parse(&format!(
                "{name} reader {}",
                order_fsm::access::hash_key("k")
            ))
            .unwrap();
            let identity = keys.check(Some("k"), Operation::Get).unwrap();
            request.extensions_mut().insert(identity);
        }
        request
    }

    #[test]
    fn each_client_has_its_own_budget_and_a_refusal_says_when_to_retry() {
        let layer = RateLimitLayer::<()>::new(
            NonZeroU32::new(3).unwrap(),
            crate::access::grpc_operation,
            |_| Response::new(()),
        );
        let a = request(None, [10, 0, 0, 1]);
        for _ in 0..3 {
            assert_eq!(layer.wait(&a), None);
        }
        let wait = layer
            .wait(&a)
            .expect("the fourth in a burst of three is refused");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        assert_eq!(
            layer.wait(&request(None, [10, 0, 0, 2])),
            None,
            "another address"
        );
        let keyed = request(Some("backend"), [10, 0, 0, 1]);
        assert_eq!(
            layer.wait(&keyed),
            None,
            "a key counts apart from its address"
        );
        let health = Request::builder()
            .uri("/grpc.health.v1.Health/Check")
            .body(())
            .unwrap();
        for _ in 0..10 {
            assert_eq!(layer.wait(&health), None, "not an operation: not counted");
        }
    }
}
