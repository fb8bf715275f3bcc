//! The access layer: one tower layer that authenticates and authorises every request of an
//! intake, over gRPC ([`AccessLayer::grpc`], which [`crate::ServerConfig::with_access`]
//! installs) and over HTTP (the gateway builds it with [`AccessLayer::new`], giving its own
//! routes and error bodies).
//!
//! - The key comes from `authorization: Bearer <key>` or `x-api-key: <key>`; both headers
//!   are removed before the request goes on, so no handler or log downstream can see a key.
//! - The request is classified into an [`Operation`]; requests of no operation (health
//!   checks, reflection, unknown routes) pass untouched.
//! - No key or an unknown one: `UNAUTHENTICATED` / 401; a role that does not allow the
//!   operation: `PERMISSION_DENIED` / 403. Otherwise the caller's [`Identity`] goes on in the
//!   request's extensions.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response};
use order_fsm::access::{AccessError, Identity, KeyFile, Operation};
use tower::Layer;

use crate::gate::{Check, Gate};

/// Which operation a request is, from its method and path; `None` for requests that need
/// no key.
pub type Classify = dyn Fn(&Method, &str) -> Option<Operation> + Send + Sync;

/// The answer to a refused request.
pub type Refuse<R> = dyn Fn(&AccessError) -> Response<R> + Send + Sync;

/// See the [module documentation](self).
pub struct AccessLayer<R> {
    keys: Arc<KeyFile>,
    classify: Arc<Classify>,
    refuse: Arc<Refuse<R>>,
}

impl<R> Clone for AccessLayer<R> {
    fn clone(&self) -> Self {
        Self {
            keys: Arc::clone(&self.keys),
            classify: Arc::clone(&self.classify),
            refuse: Arc::clone(&self.refuse),
        }
    }
}

impl<R> std::fmt::Debug for AccessLayer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLayer")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl<R> AccessLayer<R> {
    /// A layer checking `keys`, classifying requests with `classify` and answering refusals
    /// with `refuse`.
    pub fn new(
        keys: Arc<KeyFile>,
        classify: impl Fn(&Method, &str) -> Option<Operation> + Send + Sync + 'static,
        refuse: impl Fn(&AccessError) -> Response<R> + Send + Sync + 'static,
    ) -> Self {
        Self {
            keys,
            classify: Arc::new(classify),
            refuse: Arc::new(refuse),
        }
    }
}

impl AccessLayer<tonic::body::Body> {
    /// The layer for the `order_fsm.v1.OrderService` RPCs (health and reflection need no
    /// key); refusals are trailers-only gRPC answers.
    pub fn grpc(keys: Arc<KeyFile>) -> Self {
        Self::new(keys, grpc_operation, |error| {
            let status = if error.is_unauthenticated() {
                tonic::Status::unauthenticated(error.to_string())
            } else {
                tonic::Status::permission_denied(error.to_string())
            };
            status.into_http()
        })
    }
}

/// The operation of an `order_fsm.v1.OrderService` method path.
pub fn grpc_operation(_: &Method, path: &str) -> Option<Operation> {
    let method = path
        .strip_prefix('/')?
        .strip_prefix(crate::proto::SERVICE_NAME)?
        .strip_prefix('/')?;
    Some(match method {
        "PlaceOrder" | "PlaceOrders" => Operation::Place,
        "GetOrder" => Operation::Get,
        "ListOrders" => Operation::List,
        "WatchOrder" => Operation::Watch,
        "ApplyEvent" => Operation::ApplyEvent,
        "CancelOrder" => Operation::Cancel,
        // An RPC added later is refused to all but operators until it is classified.
        _ => Operation::Cancel,
    })
}

impl<S, R> Layer<S> for AccessLayer<R> {
    type Service = Gate<S, Self>;

    fn layer(&self, inner: S) -> Gate<S, Self> {
        Gate {
            inner,
            check: self.clone(),
        }
    }
}

/// The key a request presents, if any.
fn presented_key<B>(request: &Request<B>) -> Option<String> {
    let headers = request.headers();
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer.or(api_key).map(|k| k.trim().to_owned())
}

impl<R> Check<R> for AccessLayer<R> {
    fn check<B>(&self, request: &mut Request<B>) -> Option<Response<R>> {
        let key = presented_key(request);
        let headers = request.headers_mut();
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("x-api-key");
        let operation = (self.classify)(request.method(), request.uri().path())?;
        match self.keys.check(key.as_deref(), operation) {
            Ok(identity) => {
                request.extensions_mut().insert::<Identity>(identity);
                None
            }
            Err(error) => {
                let mut refusal = (self.refuse)(&error);
                if error.is_unauthenticated() {
                    refusal.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer"),
                    );
                }
                Some(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_an_operation_and_health_needs_none() {
        let path = |m: &str| format!("/{}/{m}", crate::proto::SERVICE_NAME);
        let op = |m: &str| grpc_operation(&Method::POST, &path(m));
        assert_eq!(op("PlaceOrders"), Some(Operation::Place));
        assert_eq!(op("GetOrder"), Some(Operation::Get));
        assert_eq!(op("CancelOrder"), Some(Operation::Cancel));
        assert_eq!(
            op("SomethingNew"),
            Some(Operation::Cancel),
            "operators only"
        );
        assert_eq!(
            grpc_operation(&Method::POST, "/grpc.health.v1.Health/Check"),
            None
        );
    }

    #[test]
    fn the_key_comes_from_either_header() {
        let with =
            |name: &str, value: &str| Request::builder().header(name, value).body(()).unwrap();
        let bearer = with("authorization", "Bearer k1");
        assert_eq!(presented_key(&bearer).as_deref(), Some("k1"));
        let api_key = with("x-api-key", "k2");
        assert_eq!(presented_key(&api_key).as_deref(), Some("k2"));
        let basic = with("authorization", "Basic abc");
        assert_eq!(presented_key(&basic), None);
    }
}
