//! The HTTP intake beside gRPC, as the original systems had: `POST /orders` and
//! `GET /orders/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use order_fsm::{
    Command, CommandSink, Error, EventId, Lifecycle, OrderId, OrderStore, Purchase,
    TransitionRecord,
};
use serde_json::json;

struct Gateway {
    lifecycle: Arc<Lifecycle>,
    commands: Arc<dyn CommandSink>,
    store: Arc<dyn OrderStore>,
}

/// The routes, placing through `commands` and reading from `store`.
pub fn router(
    lifecycle: Arc<Lifecycle>,
    commands: Arc<dyn CommandSink>,
    store: Arc<dyn OrderStore>,
) -> Router {
    Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(read))
        .with_state(Arc::new(Gateway {
            lifecycle,
            commands,
            store,
        }))
}

/// An error as JSON, with the status a client can act on.
struct ApiError(Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::InvalidField { .. } | Error::Decode { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match &self.0 {
            Error::InvalidField { field, .. } => Some(*field),
            _ => None,
        };
        (
            status,
            Json(json!({ "error": self.0.to_string(), "field": field })),
        )
            .into_response()
    }
}

async fn place(
    State(gateway): State<Arc<Gateway>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let purchase: Purchase = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::Decode {
            reason: format!("body is not a purchase: {e}"),
        })
    })?;
    purchase.validate().map_err(ApiError)?;
    let order_id = OrderId::random();
    let command = Command::Place {
        order_id,
        event_id: EventId::random(),
        purchase: purchase.into(),
        placed_at: Some(order_fsm::Clock::now(&order_fsm::SystemClock)),
    };
    gateway
        .commands
        .submit(&[command])
        .await
        .map_err(ApiError)?;
    let status = gateway.lifecycle.state_name(gateway.lifecycle.initial());
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "order_id": order_id, "status": status })),
    )
        .into_response())
}

async fn read(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order_id: OrderId = id.parse().map_err(ApiError)?;
    let order = gateway
        .store
        .get(order_id)
        .await
        .map_err(ApiError)?
        .ok_or(ApiError(Error::NotFound { order_id }))?;
    let history = TransitionRecord::all_of(&gateway.lifecycle, &order);
    Ok(Json(json!({
        "order_id": order.id,
        "status": gateway.lifecycle.state_name(order.status),
        "version": order.version,
        "history": history.iter().map(|r| json!({
            "from": r.from, "to": r.to, "event": r.event, "version": r.version, "at": r.at,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}
