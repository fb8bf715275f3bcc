//! The HTTP intake beside gRPC, as the original systems had: `POST /orders` and
//! `GET /orders/{id}`, plus `POST /orders/batch` (a JSON array of up to 1,000 purchases, all
//! or none, like gRPC `PlaceOrders`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use order_fsm::{
    Clock, Command, CommandSink, Error, EventId, Lifecycle, OrderId, OrderStore, Purchase,
    SystemClock, TransitionRecord,
};
use serde_json::json;

/// Most purchases one `POST /orders/batch` may carry (as many as a gRPC `PlaceOrders`).
pub const MAX_BATCH: usize = order_fsm_grpc::MAX_PLACEMENTS_PER_CALL;

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
        .route("/orders/batch", post(place_batch))
        .route("/orders/{id}", get(read))
        .with_state(Arc::new(Gateway {
            lifecycle,
            commands,
            store,
        }))
}

/// An error as JSON, with the status a client can act on; `index` names the purchase of a
/// batch it is about.
struct ApiError {
    error: Error,
    index: Option<usize>,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self { error, index: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.error {
            Error::InvalidField { .. } | Error::Decode { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match &self.error {
            Error::InvalidField { field, .. } => Some(*field),
            _ => None,
        };
        let body = match self.index {
            Some(index) => json!({
                "error": format!("orders[{index}]: {}", self.error),
                "field": field,
                "index": index,
            }),
            None => json!({ "error": self.error.to_string(), "field": field }),
        };
        (status, Json(body)).into_response()
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::from(Error::Decode {
            reason: format!("body is not {what}: {e}"),
        })
    })
}

/// The placement of a checked purchase.
fn placement(purchase: Purchase) -> Command {
    Command::Place {
        order_id: OrderId::random(),
        event_id: EventId::random(),
        purchase: purchase.into(),
        placed_at: Some(SystemClock.now()),
    }
}

async fn place(
    State(gateway): State<Arc<Gateway>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let purchase: Purchase = decode(&body, "a purchase")?;
    purchase.validate()?;
    let command = placement(purchase);
    let order_id = command.order_id();
    gateway.commands.submit(&[command]).await?;
    let status = gateway.lifecycle.state_name(gateway.lifecycle.initial());
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "order_id": order_id, "status": status })),
    )
        .into_response())
}

async fn place_batch(
    State(gateway): State<Arc<Gateway>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let purchases: Vec<Purchase> = decode(&body, "an array of purchases")?;
    if purchases.is_empty() || purchases.len() > MAX_BATCH {
        let reason = format!("must hold 1 to {MAX_BATCH} purchases");
        return Err(Error::invalid_field("orders", reason).into());
    }
    let mut commands = Vec::with_capacity(purchases.len());
    for (index, purchase) in purchases.into_iter().enumerate() {
        purchase.validate().map_err(|error| ApiError {
            error,
            index: Some(index),
        })?;
        commands.push(placement(purchase));
    }
    gateway.commands.submit(&commands).await?;
    let status = gateway.lifecycle.state_name(gateway.lifecycle.initial());
    let orders: Vec<_> = commands
        .iter()
        .map(|c| json!({ "order_id": c.order_id(), "status": status }))
        .collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "orders": orders }))).into_response())
}

async fn read(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order_id: OrderId = id.parse()?;
    let order = gateway
        .store
        .get(order_id)
        .await?
        .ok_or(Error::NotFound { order_id })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::{MemoryQueue, MemoryStore};
    use serde_json::Value;

    /// Serves the gateway on a loopback port over a queue and an empty store.
    async fn serve() -> (String, MemoryQueue) {
        let queue = MemoryQueue::new();
        let app = router(
            Arc::new(Lifecycle::ecommerce()),
            Arc::new(queue.clone()),
            Arc::new(MemoryStore::new()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, queue)
    }

    async fn post(url: &str, body: &Value) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .post(url)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap())
    }

    #[tokio::test]
    async fn a_batch_is_placed_whole_or_rejected_naming_the_purchase() {
        let (url, queue) = serve().await;
        let good = serde_json::to_value(Purchase::example()).unwrap();
        let mut bad = good.clone();
        bad["customer_email"] = "not-an-address".into();

        let batch = Value::Array(vec![good.clone(), bad, good.clone()]);
        let (status, body) = post(&format!("{url}/orders/batch"), &batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["index"], 1);
        assert_eq!(body["field"], "customer_email");
        assert!(body["error"].as_str().unwrap().starts_with("orders[1]: "));
        assert_eq!(queue.pending(), 0, "a rejected batch places nothing");

        let (status, body) = post(&format!("{url}/orders/batch"), &Value::Array(vec![])).await;
        assert_eq!(
            (status, &body["field"]),
            (StatusCode::BAD_REQUEST, &"orders".into())
        );
        let (status, _) = post(&format!("{url}/orders/batch"), &good).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "an object is not an array");

        let batch = Value::Array(vec![good.clone(), good]);
        let (status, body) = post(&format!("{url}/orders/batch"), &batch).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let orders = body["orders"].as_array().unwrap();
        assert_eq!(orders.len(), 2);
        assert_ne!(orders[0]["order_id"], orders[1]["order_id"]);
        assert!(orders.iter().all(|o| o["status"] == "processing"));
        assert_eq!(queue.pending(), 2);
    }

    #[tokio::test]
    async fn single_orders_and_reads_name_what_is_wrong() {
        let (url, queue) = serve().await;
        let mut bad = serde_json::to_value(Purchase::example()).unwrap();
        bad["price"] = "-1.00".into();
        let (status, body) = post(&format!("{url}/orders"), &bad).await;
        assert_eq!(
            (status, &body["field"]),
            (StatusCode::BAD_REQUEST, &"price".into())
        );
        assert!(body.get("index").is_none());
        let good = serde_json::to_value(Purchase::example()).unwrap();
        let (status, _) = post(&format!("{url}/orders"), &good).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(queue.pending(), 1);

        let get = |path: String| async move { reqwest::get(path).await.unwrap().status() };
        assert_eq!(get(format!("{url}/orders/nope")).await.as_u16(), 400);
        let unknown = OrderId::random();
        assert_eq!(get(format!("{url}/orders/{unknown}")).await.as_u16(), 404);
    }
}
