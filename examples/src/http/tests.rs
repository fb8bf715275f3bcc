use std::time::Duration;

use super::*;
use order_fsm::{MemoryQueue, MemorySink, MemoryStore, Purchase, Runner};
use order_fsm_grpc::{EventOptions, OrderClient, OrderServiceBuilder, ServerConfig};
use serde_json::Value;

/// Serves the gateway on a loopback port over `queue` and `store`.
async fn serve_http(queue: &MemoryQueue, store: Arc<MemoryStore>) -> String {
    let app = router(
        Arc::new(Lifecycle::ecommerce()),
        Arc::new(queue.clone()),
        store,
    );
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

/// Serves the gateway on a loopback port over a queue and an empty store.
async fn serve() -> (String, MemoryQueue) {
    let queue = MemoryQueue::new();
    let url = serve_http(&queue, Arc::new(MemoryStore::new())).await;
    (url, queue)
}

/// A runner applying `queue` to a store, the HTTP gateway and the gRPC service over both,
/// each on its own loopback port.
struct BothApis {
    http: String,
    grpc: OrderClient,
    store: Arc<MemoryStore>,
}

impl BothApis {
    async fn start() -> Self {
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
    async fn stored(&self, id: OrderId, version: u64) {
        for _ in 0..2_000 {
            if self.store.get_now(id).is_some_and(|o| o.version == version) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("order {id} never reached version {version}");
    }
}

async fn send(request: reqwest::RequestBuilder, body: &Value) -> (StatusCode, Value) {
    let response = request.json(body).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

async fn post(url: &str, body: &Value) -> (StatusCode, Value) {
    send(reqwest::Client::new().post(url), body).await
}

/// `POST /orders` with an `Idempotency-Key` header.
async fn post_keyed(url: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let request = reqwest::Client::new()
        .post(format!("{url}/orders"))
        .header(IDEMPOTENCY_KEY, key);
    send(request, body).await
}

fn id_of(body: &Value) -> OrderId {
    body["order_id"].as_str().unwrap().parse().unwrap()
}

/// The message of a failed gRPC call.
fn grpc_message(error: order_fsm_grpc::GrpcError) -> String {
    match error {
        order_fsm_grpc::GrpcError::Rpc { message, .. } => message,
        other => panic!("not a status: {other}"),
    }
}

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

/// `POST` of raw `body` bytes declared as `content_type`.
async fn post_raw(url: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value, usize) {
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
