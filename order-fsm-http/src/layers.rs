//! Access control and rate limits for the gateway's routes: the tower layers the gRPC
//! service uses, with HTTP answers.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use order_fsm::access::{KeyFile, Operation};
use order_fsm_grpc::access::AccessLayer;
use order_fsm_grpc::rate::RateLimitLayer;
use serde_json::json;

/// The access layer of the gateway's routes (see [`order_fsm_grpc::access`], the same
/// layer the gRPC service uses): placing needs `place`, reading an order `get`, applying
/// an event `apply_event`, `GET /dashboard/...` (routes of your own, see
/// [`RouterBuilder::with_routes`](crate::RouterBuilder::with_routes)) `list`; other routes
/// need no key. Refusals answer `401` / `403` with `{"error"}`.
///
/// [`RouterBuilder::with_access`](crate::RouterBuilder::with_access) puts it around the
/// routes it builds; use this function for a router you assemble yourself.
pub fn access_layer(keys: Arc<KeyFile>) -> AccessLayer<Body> {
    AccessLayer::new(keys, http_operation, |error| {
        let status = if error.is_unauthenticated() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        (status, Json(json!({ "error": error.to_string() }))).into_response()
    })
}

/// The per-client rate limit of the gateway's routes (see [`order_fsm_grpc::rate`], the
/// same layer the gRPC service uses): `429` with `Retry-After` and `{"error"}`. Put it
/// inside [`access_layer`] so that clients are counted by key (else by the peer address
/// [`HttpEdge::serve`](crate::HttpEdge::serve) records).
///
/// [`RouterBuilder::with_rate_limit`](crate::RouterBuilder::with_rate_limit) puts it in
/// the right place around the routes it builds.
pub fn rate_limit_layer(per_second: NonZeroU32) -> RateLimitLayer<Body> {
    RateLimitLayer::new(per_second, http_operation, |wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!("rate limit: retry in {} ms", wait.as_millis().max(1));
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": message })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    })
}

/// The operation of a gateway request; `None` for routes that need no key.
fn http_operation(method: &Method, path: &str) -> Option<Operation> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["orders"] | ["orders", "batch"]) => Some(Operation::Place),
        (&Method::GET, ["orders", _]) => Some(Operation::Get),
        (&Method::POST, ["orders", _, "events"]) => Some(Operation::ApplyEvent),
        (&Method::GET, ["dashboard", ..]) => Some(Operation::List),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_operation() {
        let id = "0192f0c4-0000-7000-8000-000000000000";
        let cases = [
            (Method::POST, "/orders".to_owned(), Some(Operation::Place)),
            (Method::POST, "/orders/batch".into(), Some(Operation::Place)),
            (Method::GET, format!("/orders/{id}"), Some(Operation::Get)),
            (
                Method::POST,
                format!("/orders/{id}/events"),
                Some(Operation::ApplyEvent),
            ),
            (Method::GET, "/dashboard".into(), Some(Operation::List)),
            (
                Method::GET,
                "/dashboard/state".into(),
                Some(Operation::List),
            ),
            (Method::GET, "/health".into(), None),
            (Method::DELETE, format!("/orders/{id}"), None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(http_operation(&method, &path), expected, "{method} {path}");
        }
    }
}
