//! The HTTP intake beside gRPC, as the original systems had. Both go through the core's
//! [`order_fsm::intake`], so they check, derive ids and answer the same way:
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /orders` | a purchase, optionally with `"idempotency_key"` (or an `Idempotency-Key` header) | `202` placed, `200` when the key already placed it |
//! | `POST /orders/batch` | an array of up to 1,000 such purchases, all or none (like gRPC `PlaceOrders`) | `202` with `"orders"` |
//! | `GET /orders/{id}` | | `200` the order and its history |
//! | `POST /orders/{id}/events` | `{"event", "expected_version"?, "reason"?, "idempotency_key"?}` | `202` with `from`/`to`/`version`, `200` when the key already applied it (like gRPC `ApplyEvent`) |
//!
//! A placement answers `{order_id, event_id, status, version, already_existed}`; the same
//! key over gRPC and HTTP names the same order. Errors answer `{"error", "field"}` (plus
//! `"index"` in a batch) with `400` (invalid field, unknown event, undecodable body), `404`
//! (unknown order), `409` (illegal transition naming state and event, terminal state, stale
//! `expected_version`, a retried event that was rejected), `422` (an idempotency key reused
//! for another purchase) or `503` (backend unavailable: retry with the same key; or an order
//! this intake accepted a moment ago that the workers have not processed yet, with
//! `Retry-After`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use order_fsm::access::Identity;
use order_fsm::intake::{BatchError, EventRequest, Intake, Placed};
use order_fsm::{CommandSink, Engine, Error, Lifecycle, OrderId, OrderStore, TransitionRecord};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most purchases one `POST /orders/batch` may carry (as many as a gRPC `PlaceOrders`).
pub const MAX_BATCH: usize = order_fsm::intake::MAX_PLACEMENTS_PER_CALL;

/// The header that carries a request's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

struct Gateway {
    lifecycle: Arc<Lifecycle>,
    intake: Intake,
}

/// The access layer of the gateway's routes (see [`order_fsm_grpc::access`], the same
/// layer the gRPC service uses): placing needs `place`, reading an order `get`, applying
/// an event `apply_event`, the dashboard `list`; refusals answer `401` / `403` with
/// `{"error"}`.
pub fn access_layer(
    keys: Arc<order_fsm::access::KeyFile>,
) -> order_fsm_grpc::access::AccessLayer<axum::body::Body> {
    order_fsm_grpc::access::AccessLayer::new(keys, http_operation, |error| {
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
/// inside [`access_layer`] so that clients are counted by key.
pub fn rate_limit_layer(
    per_second: std::num::NonZeroU32,
) -> order_fsm_grpc::rate::RateLimitLayer<axum::body::Body> {
    order_fsm_grpc::rate::RateLimitLayer::new(per_second, http_operation, |wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!("rate limit: retry in {} ms", wait.as_millis().max(1));
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": message })),
        )
            .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
        response
    })
}

/// The operation of a gateway request; `None` for routes that need no key.
fn http_operation(method: &axum::http::Method, path: &str) -> Option<order_fsm::access::Operation> {
    use axum::http::Method;
    use order_fsm::access::Operation;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["orders"] | ["orders", "batch"]) => Some(Operation::Place),
        (&Method::GET, ["orders", _]) => Some(Operation::Get),
        (&Method::POST, ["orders", _, "events"]) => Some(Operation::ApplyEvent),
        (&Method::GET, ["dashboard", ..]) => Some(Operation::List),
        _ => None,
    }
}

/// The routes, placing and applying events through `commands` and reading from `store`.
pub fn router(
    lifecycle: Arc<Lifecycle>,
    commands: Arc<dyn CommandSink>,
    store: Arc<dyn OrderStore>,
) -> Router {
    let intake = Intake::new(Engine::new(Arc::clone(&lifecycle)), commands, store);
    Router::new()
        .route("/orders", post(place))
        .route("/orders/batch", post(place_batch))
        .route("/orders/{id}", get(read))
        .route("/orders/{id}/events", post(apply_event))
        .with_state(Arc::new(Gateway { lifecycle, intake }))
}

/// An error as JSON, with the status a client can act on; `index` names the purchase of a
/// batch it is about, `event` the event being applied.
struct ApiError {
    /// Boxed: handlers return `Result<_, ApiError>` on every path.
    error: Box<Error>,
    index: Option<usize>,
    event: Option<String>,
    /// Overrides the status the error maps to (`415` for a body that is not JSON).
    status: Option<StatusCode>,
    /// The field at fault as a path in the body, when the error itself does not name it.
    field_path: Option<String>,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self {
            error: Box::new(error),
            index: None,
            event: None,
            status: None,
            field_path: None,
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(BatchError { index, error, .. }: BatchError) -> Self {
        Self {
            index,
            ..Self::from(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or(match &*self.error {
            Error::InvalidField { .. } | Error::Decode { .. } | Error::UnknownEvent { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::IllegalTransition { .. }
            | Error::Terminal { .. }
            | Error::StaleVersion { .. }
            | Error::AlreadyRejected { .. }
            | Error::Duplicate { .. }
            | Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::IdempotencyKeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable { .. } | Error::Closed(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NotYetVisible { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        });
        // Back-pressure: `Retry-After` in whole seconds (at least 1), and in milliseconds.
        let retry_after = match &*self.error {
            Error::Overloaded { retry_after, .. } | Error::NotYetVisible { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        };
        let field = match &*self.error {
            Error::InvalidField { field, .. } => Some(*field),
            Error::UnknownEvent { .. } => Some("event"),
            Error::IdempotencyKeyReused { .. } => Some("idempotency_key"),
            _ => None,
        };
        let field = self.field_path.or(field.map(str::to_owned));
        let message = strict::bounded(order_fsm::intake::message(
            &self.error,
            self.event.as_deref(),
        ));
        let body = match self.index {
            Some(index) => json!({
                "error": format!("orders[{index}]: {message}"),
                "field": field,
                "index": index,
            }),
            None => json!({ "error": message, "field": field }),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(field) = field {
            response.extensions_mut().insert(edge::RejectedField(field));
        }
        if let Some(wait) = retry_after {
            let headers = response.headers_mut();
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(axum::http::header::RETRY_AFTER, seconds.into());
            headers.insert(RETRY_AFTER_MS, (wait.as_millis() as u64).into());
        }
        response
    }
}

/// Header of a 429 answer: milliseconds to wait before retrying (finer than `Retry-After`).
pub const RETRY_AFTER_MS: &str = order_fsm_grpc::RETRY_AFTER_MS;

/// The body of `POST /orders/{id}/events`.
#[derive(Deserialize)]
struct EventBody {
    event: String,
    #[serde(default)]
    expected_version: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// The request's key: the `Idempotency-Key` header or the body's field (the same if both).
fn key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, Error> {
    let Some(header) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(body);
    };
    let header = header
        .to_str()
        .map_err(|_| Error::invalid_field("idempotency_key", "is not visible ASCII"))?;
    match body {
        Some(body) if body != header => Err(Error::invalid_field(
            "idempotency_key",
            "differs between the header and the body",
        )),
        _ => Ok(Some(header.to_owned())),
    }
}

fn placed_json(lifecycle: &Lifecycle, p: &Placed) -> Value {
    json!({
        "order_id": p.order_id,
        "event_id": p.event_id,
        "status": lifecycle.state_name(p.status),
        "version": p.version,
        "already_existed": p.already_existed,
    })
}

/// The name of the caller the access layer authenticated (none without access control).
type Caller = Option<Extension<Identity>>;

fn actor(caller: Caller) -> Option<String> {
    caller.map(|Extension(identity)| identity.name().to_owned())
}

async fn place(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    strict::json_content_type(&headers)?;
    let mut request = strict::place_request(strict::parse(&body)?)?.with_actor(actor(caller));
    request.idempotency_key = key(&headers, request.idempotency_key)?;
    let placed = gateway.intake.place(request).await?;
    let status = if placed.already_existed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(placed_json(&gateway.lifecycle, &placed))).into_response())
}

async fn place_batch(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    strict::json_content_type(&headers)?;
    let Value::Array(items) = strict::parse(&body)? else {
        return Err(Error::Decode {
            reason: "the body is not an array of purchases".into(),
        }
        .into());
    };
    order_fsm::intake::check_batch(items.len())?;
    let at = |index: usize| {
        move |e: ApiError| ApiError {
            index: Some(index),
            ..e
        }
    };
    let actor = actor(caller);
    let requests = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            strict::place_request(item)
                .map(|r| r.with_actor(actor.clone()))
                .map_err(at(i))
        })
        .collect::<Result<_, _>>()?;
    let placed = gateway.intake.place_many(requests).await?;
    let orders: Vec<_> = placed
        .iter()
        .map(|p| placed_json(&gateway.lifecycle, p))
        .collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "orders": orders }))).into_response())
}

async fn apply_event(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let order_id: OrderId = id.parse().map_err(Error::from)?;
    strict::json_content_type(&headers)?;
    let value = strict::parse(&body)?;
    strict::object(&value, strict::EVENT_FIELDS, "an event", "")?;
    let body: EventBody = strict::read(value, "an event")?;
    let request = EventRequest::new(order_id, body.event)
        .with_key(key(&headers, body.idempotency_key)?)
        .with_expected_version(body.expected_version)
        .with_reason(body.reason)
        .with_actor(actor(caller));
    let event = request.event.clone();
    let accepted = gateway
        .intake
        .apply(request)
        .await
        .map_err(|error| ApiError {
            event: Some(event),
            ..ApiError::from(error)
        })?;
    let lifecycle = &gateway.lifecycle;
    let status = if accepted.already_applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = json!({
        "order_id": accepted.order_id,
        "event_id": accepted.event_id,
        "from": lifecycle.state_name(accepted.from),
        "to": lifecycle.state_name(accepted.to),
        "version": accepted.version,
        "already_applied": accepted.already_applied,
    });
    Ok((status, Json(body)).into_response())
}

async fn read(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order_id: OrderId = id.parse().map_err(Error::from)?;
    let order = gateway.intake.get(order_id).await?;
    if caller.is_some_and(|Extension(caller)| !caller.may_read(&order)) {
        let message = "a shop key reads only the orders it placed";
        return Ok((StatusCode::FORBIDDEN, Json(json!({ "error": message }))).into_response());
    }
    let history = TransitionRecord::all_of(&gateway.lifecycle, &order);
    Ok(Json(json!({
        "order_id": order.id,
        "status": gateway.lifecycle.state_name(order.status),
        "version": order.version,
        "history": history.iter().map(|r| json!({
            "from": r.from, "to": r.to, "event": r.event, "version": r.version, "at": r.at,
            "actor": r.actor,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

mod edge;
#[cfg(test)]
mod hostile;
mod strict;

pub use edge::HttpEdge;
pub use strict::MAX_MESSAGE_CHARS;

#[cfg(test)]
mod tests;
