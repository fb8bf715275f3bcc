//! The gateway's routes and their handlers: placing, batches, reads and events through the
//! core's [`Intake`], so they check, derive ids and answer as the gRPC service does.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use order_fsm::access::{Identity, KeyFile};
use order_fsm::intake::{EventRequest, Intake, Placed};
use order_fsm::{CommandSink, Engine, Error, Lifecycle, OrderId, OrderStore, TransitionRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::layers::{access_layer, rate_limit_layer};
use crate::strict;

/// Most purchases one `POST /orders/batch` may carry (as many as a gRPC `PlaceOrders`).
pub const MAX_BATCH: usize = order_fsm::intake::MAX_PLACEMENTS_PER_CALL;

/// The header that carries a request's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Header of a `429` or `503` answer: milliseconds to wait before retrying (finer than
/// `Retry-After`); the gRPC service's metadata key.
pub const RETRY_AFTER_MS: &str = order_fsm_grpc::RETRY_AFTER_MS;

struct Gateway {
    lifecycle: Arc<Lifecycle>,
    intake: Intake,
}

/// Assembles the gateway's [`Router`]: its routes over a command sink and an order store,
/// routes of your own beside them, and access control and a rate limit around all of them.
///
/// ```
/// use std::sync::Arc;
/// use order_fsm::{Lifecycle, MemoryQueue, MemoryStore};
/// use order_fsm_http::RouterBuilder;
///
/// let health = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
/// let app: axum::Router = RouterBuilder::new(
///     Arc::new(Lifecycle::ecommerce()),
///     Arc::new(MemoryQueue::new()),
///     Arc::new(MemoryStore::new()),
/// )
/// .with_routes(health)
/// .with_rate_limit(std::num::NonZeroU32::new(100).unwrap())
/// .build();
/// ```
#[must_use]
pub struct RouterBuilder {
    lifecycle: Arc<Lifecycle>,
    commands: Arc<dyn CommandSink>,
    store: Arc<dyn OrderStore>,
    routes: Router,
    access: Option<Arc<KeyFile>>,
    rate_limit: Option<NonZeroU32>,
}

impl std::fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("lifecycle", &self.lifecycle.name())
            .field("access", &self.access.is_some())
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl RouterBuilder {
    /// The gateway's routes for `lifecycle`, placing and applying events through
    /// `commands` and reading orders from `store`.
    pub fn new(
        lifecycle: Arc<Lifecycle>,
        commands: Arc<dyn CommandSink>,
        store: Arc<dyn OrderStore>,
    ) -> Self {
        Self {
            lifecycle,
            commands,
            store,
            routes: Router::new(),
            access: None,
            rate_limit: None,
        }
    }

    /// Serves `routes` beside the gateway's, behind the same access control and rate
    /// limit (a dashboard under `GET /dashboard/...` needs the `list` permission).
    ///
    /// # Panics
    /// If a route of `routes` is already served: here for routes given earlier, in
    /// [`Self::build`] for the gateway's own ([`Router::merge`]).
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// Only requests with a key of `keys` allowed the route's operation pass (see
    /// [`access_layer`]).
    pub fn with_access(mut self, keys: Arc<KeyFile>) -> Self {
        self.access = Some(keys);
        self
    }

    /// Each client (its key with [`Self::with_access`], else its address) may make
    /// `per_second` requests a second (see [`rate_limit_layer`]).
    pub fn with_rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    /// The router: serve it with [`HttpEdge::serve`](crate::HttpEdge::serve) (or any axum
    /// server; without the edge's limits and its peer address, the rate limit then counts
    /// every keyless client as one).
    pub fn build(self) -> Router {
        let lifecycle = self.lifecycle;
        let intake = Intake::new(
            Engine::new(Arc::clone(&lifecycle)),
            self.commands,
            self.store,
        );
        let mut app = Router::new()
            .route("/orders", post(place))
            .route("/orders/batch", post(place_batch))
            .route("/orders/{id}", get(read))
            .route("/orders/{id}/events", post(apply_event))
            .with_state(Arc::new(Gateway { lifecycle, intake }))
            .merge(self.routes);
        // Layers added later wrap the earlier ones: access control runs first, so the rate
        // limit counts by key.
        if let Some(per_second) = self.rate_limit {
            app = app.layer(rate_limit_layer(per_second));
        }
        if let Some(keys) = self.access {
            app = app.layer(access_layer(keys));
        }
        app
    }
}

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
