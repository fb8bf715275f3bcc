//! `RouterBuilder`'s options over a loopback socket: routes of one's own, access control
//! and the rate limit around them, in the order that counts clients by key.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use order_fsm::access::{hash_key, KeyFile, KeyRing};
use order_fsm::{Lifecycle, MemoryQueue, MemoryStore, Purchase};
use order_fsm_http::RouterBuilder;

/// Serves `app` on a loopback port; its base URL.
async fn serve(app: Router) -> String {
    common::serve_router(app).await
}

fn builder(queue: &MemoryQueue) -> RouterBuilder {
    RouterBuilder::new(
        Arc::new(Lifecycle::ecommerce()),
        Arc::new(queue.clone()),
        Arc::new(MemoryStore::new()),
    )
    .with_routes(Router::new().route("/dashboard", get(|| async { "dashboard" })))
}

fn keys() -> Arc<KeyFile> {
    let lines = format!(
        "backend shop {}\nops operator {}\n",
        hash_key("shop-key"),
        hash_key("operator-key")
    );
    Arc::new(KeyFile::fixed(KeyRing::parse(&lines).unwrap()))
}

#[tokio::test]
async fn access_control_covers_the_orders_and_the_routes_beside_them() {
    let queue = MemoryQueue::new();
    let url = serve(builder(&queue).with_access(keys()).build()).await;
    let http = reqwest::Client::new();
    let place = |key: Option<&'static str>| {
        let request = http
            .post(format!("{url}/orders"))
            .json(&Purchase::example());
        let request = match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };

    let refused = place(None).await;
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(place(Some("wrong-key")).await.status(), 401);
    assert_eq!(place(Some("shop-key")).await.status(), 202);
    assert_eq!(queue.pending(), 1);

    let dashboard = |key: &'static str| {
        let request = http
            .get(format!("{url}/dashboard"))
            .header("authorization", format!("Bearer {key}"));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(dashboard("shop-key").await, 403, "a shop may not list");
    assert_eq!(dashboard("operator-key").await, 200);
}

#[tokio::test]
async fn the_rate_limit_answers_429_and_counts_each_key_apart() {
    let queue = MemoryQueue::new();
    let app = builder(&queue)
        .with_rate_limit(NonZeroU32::new(1).unwrap())
        .with_access(keys())
        .build();
    let url = serve(app).await;
    let http = reqwest::Client::new();
    let place = |key: &'static str| {
        http.post(format!("{url}/orders"))
            .header("x-api-key", key)
            .json(&Purchase::example())
            .send()
    };

    assert_eq!(place("shop-key").await.unwrap().status(), 202);
    let throttled = place("shop-key").await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    let body: serde_json::Value = throttled.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("rate limit"),
        "{body}"
    );
    // Another key has its own allowance.
    assert_eq!(place("operator-key").await.unwrap().status(), 202);
    assert_eq!(queue.pending(), 2);
}
