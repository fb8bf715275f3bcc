//! Shared harness: the gateway on a loopback port, alone or beside the gRPC service over
//! one runner, and JSON request helpers.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use order_fsm::{Lifecycle, MemoryQueue, MemorySink, MemoryStore, OrderId, Runner};
use order_fsm_grpc::{OrderClient, OrderServiceBuilder, ServerConfig};
use order_fsm_http::{HttpEdge, RouterBuilder, IDEMPOTENCY_KEY};
use serde_json::Value;

/// Serves `app` on a loopback port behind the default `HttpEdge`; its base URL.
pub async fn serve_router(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        HttpEdge::default()
            .serve(listener, app, std::future::pending())
            .await
            .unwrap()
    });
    url
}

/// Serves the gateway on a loopback port over `queue` and `store`.
pub async fn serve_http(queue: &MemoryQueue, store: Arc<MemoryStore>) -> String {
    let app = RouterBuilder::new(
        Arc::new(Lifecycle::ecommerce()),
        Arc::new(queue.clone()),
        store,
    )
    .build();
    serve_router(app).await
}

/// Serves the gateway on a loopback port over a queue and an empty store.
pub async fn serve() -> (String, MemoryQueue) {
    let queue = MemoryQueue::new();
    let url = serve_http(&queue, Arc::new(MemoryStore::new())).await;
    (url, queue)
}

/// A runner applying `queue` to a store, the HTTP gateway and the gRPC service over both,
/// each on its own loopback port.
pub struct BothApis {
    pub http: String,
    pub grpc: OrderClient,
    pub store: Arc<MemoryStore>,
}

impl BothApis {
    pub async fn start() -> Self {
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let queue = MemoryQueue::new();
        let store = Arc::new(MemoryStore::new());
        let runner = Runner::builder(Arc::clone(&lifecycle))
            .with_store(store.clone())
            .with_sink(Arc::new(MemorySink::new()))
            .build()
            .unwrap();
        let source = queue.subscribe();
        tokio::spawn(async move { runner.run(source, std::future::pending()).await });

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_url = format!("http://{}", listener.local_addr().unwrap());
        let server = OrderServiceBuilder::new(lifecycle)
            .with_commands(Arc::new(queue.clone()))
            .with_store(store.clone())
            .with_config(ServerConfig::default());
        tokio::spawn(server.serve_with_listener(listener, std::future::pending()));
        let grpc = OrderClient::connect(order_fsm_grpc::ClientConfig::new(grpc_url))
            .await
            .unwrap();
        let http = serve_http(&queue, store.clone()).await;
        Self { http, grpc, store }
    }

    /// Waits until the runner stored `id` at `version` (reads are eventually consistent).
    pub async fn stored(&self, id: OrderId, version: u64) {
        for _ in 0..2_000 {
            if self.store.get_now(id).is_some_and(|o| o.version == version) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("order {id} never reached version {version}");
    }
}

pub async fn send(request: reqwest::RequestBuilder, body: &Value) -> (StatusCode, Value) {
    let response = request.json(body).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

pub async fn post(url: &str, body: &Value) -> (StatusCode, Value) {
    send(reqwest::Client::new().post(url), body).await
}

/// `POST /orders` with an `Idempotency-Key` header.
pub async fn post_keyed(url: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let request = reqwest::Client::new()
        .post(format!("{url}/orders"))
        .header(IDEMPOTENCY_KEY, key);
    send(request, body).await
}

pub fn id_of(body: &Value) -> OrderId {
    body["order_id"].as_str().unwrap().parse().unwrap()
}

/// The message of a failed gRPC call.
pub fn grpc_message(error: order_fsm_grpc::GrpcError) -> String {
    match error {
        order_fsm_grpc::GrpcError::Rpc { message, .. } => message,
        other => panic!("not a status: {other}"),
    }
}

/// `POST` of raw `body` bytes declared as `content_type`.
pub async fn post_raw(url: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value, usize) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap(), bytes.len())
}
