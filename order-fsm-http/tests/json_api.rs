//! The gateway's JSON API alone over a queue and a store: status codes, the field and
//! index a refusal names, strict bodies, idempotency keys, and reads before the workers.

mod common;

use axum::http::StatusCode;
use common::{id_of, post, post_keyed, post_raw, serve};
use order_fsm::{OrderId, Purchase};
use order_fsm_http::{MAX_MESSAGE_CHARS, RETRY_AFTER_MS};
use serde_json::{json, Value};

#[tokio::test]
async fn keys_are_checked_and_header_and_body_must_agree() {
    let (url, queue) = serve().await;
    let mut body = serde_json::to_value(Purchase::example()).unwrap();
    let (status, bad) = post_keyed(&url, &"k".repeat(257), &body).await;
    assert_eq!(
        (status, &bad["field"]),
        (StatusCode::BAD_REQUEST, &"idempotency_key".into())
    );
    body["idempotency_key"] = "one".into();
    let (status, bad) = post_keyed(&url, "two", &body).await;
    assert_eq!(
        (status, &bad["field"]),
        (StatusCode::BAD_REQUEST, &"idempotency_key".into())
    );
    assert_eq!(queue.pending(), 0);

    // Without a store entry yet, a retry submits the same placement again.
    let (_, first) = post_keyed(&url, "one", &body).await;
    let (_, second) = post(&format!("{url}/orders"), &body).await;
    assert_eq!(first["order_id"], second["order_id"]);
    assert_eq!(first["event_id"], second["event_id"]);
    assert_eq!(
        queue.pending(),
        2,
        "the runner sees the second as a duplicate"
    );

    let repeated = Value::Array(vec![body.clone(), body]);
    let (status, bad) = post(&format!("{url}/orders/batch"), &repeated).await;
    assert_eq!(
        (status, &bad["index"]),
        (StatusCode::BAD_REQUEST, &1.into())
    );
    assert_eq!(bad["field"], "idempotency_key");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_strict_json_and_refusals_are_bounded_and_name_the_field() {
    let (url, queue) = serve().await;
    let orders = format!("{url}/orders");
    let good = serde_json::to_value(Purchase::example()).unwrap();
    let good_bytes = serde_json::to_vec(&good).unwrap();

    // Not declared as JSON (a cross-site form, say): 415, nothing placed.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, body, _) = post_raw(&orders, content_type, good_bytes.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {body}"
        );
    }
    let (status, _, _) = post_raw(&orders, "application/json; charset=utf-8", good_bytes).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a charset parameter is fine");

    // A purchase as a positional array.
    let fields = ["product", "price", "payment_gateway", "card_brand", "bank"];
    let positional = Value::Array(fields.iter().map(|f| good[f].clone()).collect());
    let (status, body) = post(&orders, &positional).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("JSON object"),
        "{body}"
    );

    // Prices: only the canonical decimal string.
    for price in [
        json!(12.5),
        json!(12),
        json!(" 1.00"),
        json!("-0.00"),
        json!("1.5"),
    ] {
        let mut bad = good.clone();
        bad["price"] = price.clone();
        let (status, body) = post(&orders, &bad).await;
        assert_eq!(
            (status, &body["field"]),
            (StatusCode::BAD_REQUEST, &json!("price")),
            "{price}: {body}"
        );
    }

    // A misspelt field is named, not ignored.
    let mut misspelt = good.clone();
    misspelt["prise"] = json!("1.00");
    let (status, body) = post(&orders, &misspelt).await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("prise"))
    );

    // A megabyte of wrong-typed value: named, and not echoed back.
    let mut huge = good.clone();
    huge["quantity"] = json!("9".repeat(1_000_000));
    let body = serde_json::to_vec(&huge).unwrap();
    let (status, answer, len) = post_raw(&orders, "application/json", body).await;
    assert_eq!(
        (status, &answer["field"]),
        (StatusCode::BAD_REQUEST, &json!("quantity"))
    );
    assert!(len < 1_000, "a {len}-byte answer: {answer}");
    assert!(answer["error"].as_str().unwrap().chars().count() <= MAX_MESSAGE_CHARS);

    // In a batch: the purchase's index and its field.
    let mut bad = good.clone();
    bad["price"] = json!(3.5);
    let batch = json!([good.clone(), good.clone(), bad]);
    let (status, body) = post(&format!("{url}/orders/batch"), &batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (&body["index"], &body["field"]),
        (&json!(2), &json!("price"))
    );

    // Events: objects of known fields only.
    let id = OrderId::random();
    let events = format!("{url}/orders/{id}/events");
    let (status, body) = post(&events, &json!({"event": "ship", "force": true})).await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("force"))
    );
    let (status, body) = post(
        &events,
        &json!({"event": "ship", "expected_version": "two"}),
    )
    .await;
    assert_eq!(
        (status, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("expected_version"))
    );
    assert_eq!(queue.pending(), 1, "only the well-formed order was placed");
}

#[tokio::test]
async fn an_order_read_before_the_workers_processed_it_is_503_with_retry_after() {
    // Nothing consumes the queue: the placement stays unprocessed.
    let (url, _queue) = serve().await;
    let good = serde_json::to_value(Purchase::example()).unwrap();
    let (status, placed) = post(&format!("{url}/orders"), &good).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = id_of(&placed);
    let read = reqwest::get(format!("{url}/orders/{id}")).await.unwrap();
    assert_eq!(read.status().as_u16(), 503);
    assert_eq!(read.headers()["retry-after"], "1");
    assert!(read.headers().contains_key(RETRY_AFTER_MS));
    let body: Value = read.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not processed yet"),
        "{body}"
    );
    let (status, _) = post(
        &format!("{url}/orders/{id}/events"),
        &json!({"event": "prepare"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let unknown = OrderId::random();
    let read = reqwest::get(format!("{url}/orders/{unknown}"))
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 404);
}
