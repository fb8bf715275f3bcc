//! The gateway beside the gRPC service over one runner: the same idempotency keys name
//! the same orders and events, the same refusals the same texts, the same largest batch.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{grpc_message, id_of, post, post_keyed, post_raw, BothApis};
use order_fsm::{OrderId, Purchase};
use order_fsm_grpc::EventOptions;
use order_fsm_http::MAX_BATCH;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_places_one_order_over_grpc_and_http() {
    let apis = BothApis::start().await;
    let purchase = Purchase::example();
    let body = serde_json::to_value(&purchase).unwrap();

    // gRPC first, then HTTP with the same key: the order gRPC placed.
    let placed = apis
        .grpc
        .place_order(&purchase, Some("both-1"))
        .await
        .unwrap();
    assert!(!placed.already_existed);
    apis.stored(placed.order_id, 1).await;
    let (status, again) = post_keyed(&apis.http, "both-1", &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(id_of(&again), placed.order_id);
    assert_eq!(again["event_id"], placed.event_id.to_string());
    assert_eq!(again["already_existed"], true);

    // HTTP first (key in the body), then gRPC with the same key.
    let mut keyed = body.clone();
    keyed["idempotency_key"] = "both-2".into();
    let (status, first) = post(&format!("{}/orders", apis.http), &keyed).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["already_existed"], false);
    apis.stored(id_of(&first), 1).await;
    let again = apis
        .grpc
        .place_order(&purchase, Some("both-2"))
        .await
        .unwrap();
    assert_eq!(again.order_id, id_of(&first));
    assert!(again.already_existed);

    // A batch repeating a key answers with the existing order.
    let batch = Value::Array(vec![keyed.clone()]);
    let (status, batch) = post(&format!("{}/orders/batch", apis.http), &batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    assert_eq!(id_of(&batch["orders"][0]), id_of(&first));
    assert_eq!(batch["orders"][0]["already_existed"], true);

    // The key with another purchase is refused by both.
    keyed["product"] = "Other".into();
    let (status, refused) = post(&format!("{}/orders", apis.http), &keyed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["field"], "idempotency_key");
    let mut other = purchase.clone();
    other.product = "Other".into();
    let grpc = apis.grpc.place_order(&other, Some("both-2")).await;
    assert_eq!(grpc_message(grpc.unwrap_err()), refused["error"]);

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(apis.store.len(), 2, "two keys, two orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_answer_alike_over_grpc_and_http() {
    let apis = BothApis::start().await;
    let placed = apis
        .grpc
        .place_order(&Purchase::example(), None)
        .await
        .unwrap();
    let id = placed.order_id;
    apis.stored(id, 1).await;
    let events = format!("{}/orders/{id}/events", apis.http);

    // An illegal event: the same text over both.
    let grpc = apis
        .grpc
        .apply_event(id, "deliver", EventOptions::default())
        .await;
    let grpc = grpc_message(grpc.unwrap_err());
    assert_eq!(
        grpc,
        "illegal transition: event `deliver` is not allowed in state `processing`"
    );
    let (status, http) = post(&events, &json!({ "event": "deliver" })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(http["error"], grpc);

    // An accepted event, then its retry with the same key once applied.
    let prepare = json!({ "event": "prepare", "expected_version": 1, "idempotency_key": "p-1" });
    let (status, accepted) = post(&events, &prepare).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(
        (&accepted["from"], &accepted["to"], &accepted["version"]),
        (&"processing".into(), &"preparing".into(), &2.into())
    );
    apis.stored(id, 2).await;
    let (status, retried) = post(&events, &prepare).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["already_applied"], true);
    assert_eq!(retried["event_id"], accepted["event_id"]);
    let options = EventOptions {
        idempotency_key: Some("p-1".into()),
        ..EventOptions::default()
    };
    let grpc = apis.grpc.apply_event(id, "prepare", options).await.unwrap();
    assert!(grpc.already_applied, "the same key names the same event");
    assert_eq!(grpc.event_id.to_string(), accepted["event_id"]);

    // Stale version, unknown event, missing reason, unknown order.
    let (status, stale) = post(&events, &json!({ "event": "ship", "expected_version": 1 })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");
    let (status, unknown) = post(&events, &json!({ "event": "teleport" })).await;
    assert_eq!(
        (status, &unknown["field"]),
        (StatusCode::BAD_REQUEST, &"event".into())
    );
    let (status, reason) = post(&events, &json!({ "event": "fail" })).await;
    assert_eq!(
        (status, &reason["field"]),
        (StatusCode::BAD_REQUEST, &"reason".into())
    );
    let nobody = format!("{}/orders/{}/events", apis.http, OrderId::random());
    let (status, _) = post(&nobody, &json!({ "event": "prepare" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A terminal order names state and event over both.
    let (status, _) = post(&events, &json!({ "event": "cancel" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    apis.stored(id, 3).await;
    let (status, http) = post(&events, &json!({ "event": "prepare" })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let grpc = apis
        .grpc
        .apply_event(id, "prepare", EventOptions::default())
        .await;
    assert_eq!(http["error"], grpc_message(grpc.unwrap_err()));
    assert!(
        http["error"].as_str().unwrap().contains("cancelled"),
        "{http}"
    );
}

/// A purchase with every text field at its longest (ASCII).
fn longest_purchase(n: usize) -> Purchase {
    let max = order_fsm::MAX_FIELD_CHARS;
    let text = |c: char| c.to_string().repeat(max);
    let mut p = Purchase::example();
    p.product = text('p');
    p.payment_gateway = text('g');
    p.card_brand = text('c');
    p.bank = text('b');
    p.region = text('r');
    p.shipping_address = "a".repeat(2 * max);
    let domain = "@example.com";
    let local = format!("{n}-{}", "e".repeat(64));
    p.customer_email = format!(
        "{local}{}{domain}",
        "x".repeat(max - local.len() - domain.len())
    );
    p.category = Some(text('k'));
    p.price = "99999999.99".parse().unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_batch_fits_both_apis_alike() {
    let both = BothApis::start().await;
    let purchases: Vec<Purchase> = (0..MAX_BATCH).map(longest_purchase).collect();
    purchases[0].validate().expect("a valid purchase");
    let json = serde_json::to_vec(&purchases).unwrap();
    assert!(
        json.len() > 2_000_000,
        "{} bytes: not the largest batch",
        json.len()
    );
    assert!(json.len() < order_fsm::intake::MAX_REQUEST_BYTES);

    let (status, body, _) = post_raw(
        &format!("{}/orders/batch", both.http),
        "application/json",
        json,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "HTTP refused it: {body}");
    let placed = both
        .grpc
        .place_orders(&purchases)
        .await
        .expect("gRPC refused it");
    assert_eq!(placed.len(), MAX_BATCH);

    // One purchase more is refused by both, naming the same field.
    let mut more = purchases.clone();
    more.push(longest_purchase(MAX_BATCH));
    let json = serde_json::to_vec(&more).unwrap();
    let (status, body, _) = post_raw(
        &format!("{}/orders/batch", both.http),
        "application/json",
        json,
    )
    .await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("orders"))
    );
    let refused = both.grpc.place_orders(&more).await.unwrap_err();
    assert!(grpc_message(refused).contains("orders"));
}
