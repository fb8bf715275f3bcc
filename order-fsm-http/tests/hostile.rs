//! The gateway against hostile bodies and paths, over a real loopback socket (proptest, a
//! bounded number of cases in the normal test run): arbitrary bytes declared as JSON,
//! arbitrary JSON documents, and valid purchases with one field replaced by any JSON value.
//! The gateway never panics and never answers 5xx; every refusal is a JSON error of at most
//! `MAX_MESSAGE_CHARS` characters, and only a valid purchase is accepted.

mod common;

use std::sync::{Arc, OnceLock};

use order_fsm::{Lifecycle, MemoryQueue, MemoryStore, Purchase};
use order_fsm_http::{RouterBuilder, MAX_MESSAGE_CHARS};
use proptest::prelude::*;
use serde_json::Value;

/// One runtime and one gateway for every case.
fn gateway() -> &'static (tokio::runtime::Runtime, String, reqwest::Client) {
    static GATEWAY: OnceLock<(tokio::runtime::Runtime, String, reqwest::Client)> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let url = runtime.block_on(async {
            let app = RouterBuilder::new(
                Arc::new(Lifecycle::ecommerce()),
                Arc::new(MemoryQueue::new()),
                Arc::new(MemoryStore::new()),
            )
            .build();
            common::serve_router(app).await
        });
        (runtime, url, reqwest::Client::new())
    })
}

/// Sends `body` as JSON to `path`; checks the answer is the client's and well formed, and
/// returns its status.
fn send(method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<u16, TestCaseError> {
    let (runtime, url, client) = gateway();
    runtime.block_on(async {
        let answer = client
            .request(method, format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        prop_assert!(status < 500, "server fault {status}: {text}");
        if status >= 400 {
            let error: Value = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!("{status} body is not JSON ({e}): {text}"))
            })?;
            let message = error["error"].as_str().unwrap_or_default();
            prop_assert!(!message.is_empty(), "{text}");
            prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "{text}");
        }
        Ok(status)
    })
}

/// Any JSON document, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,16}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_purchase() -> Value {
    serde_json::to_value(Purchase::example()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_by_every_route(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let id = order_fsm::OrderId::random();
        for (method, path) in [
            (reqwest::Method::POST, "/orders".to_owned()),
            (reqwest::Method::POST, "/orders/batch".to_owned()),
            (reqwest::Method::POST, format!("/orders/{id}/events")),
        ] {
            let status = send(method, &path, body.clone())?;
            prop_assert!(status >= 400 || serde_json::from_slice::<Value>(&body).is_ok(), "{status}");
        }
    }

    #[test]
    fn arbitrary_json_is_refused_unless_it_is_a_purchase(document in json()) {
        let body = serde_json::to_vec(&document).unwrap();
        let status = send(reqwest::Method::POST, "/orders", body.clone())?;
        prop_assert!(status >= 400, "{status} for {document}");
        send(reqwest::Method::POST, "/orders/batch", body)?;
    }

    #[test]
    fn a_purchase_with_one_hostile_field_is_refused_or_valid(
        field in prop::sample::select(vec![
            "product", "price", "payment_gateway", "card_brand", "bank", "region",
            "shipping_address", "customer_email", "quantity", "category", "idempotency_key",
        ]),
        value in json(),
    ) {
        let mut purchase = valid_purchase();
        purchase[field] = value.clone();
        let status = send(reqwest::Method::POST, "/orders", serde_json::to_vec(&purchase).unwrap())?;
        if status < 400 {
            // Accepted: it must be a purchase the core validates.
            let mut fields = purchase.clone();
            fields.as_object_mut().unwrap().remove("idempotency_key");
            let parsed: Purchase = serde_json::from_value(fields)
                .map_err(|e| TestCaseError::fail(format!("accepted a non-purchase ({e}): {purchase}")))?;
            prop_assert!(parsed.validate().is_ok(), "accepted an invalid purchase: {purchase}");
        }
    }

    #[test]
    fn hostile_paths_are_refused(id in "\\PC{0,40}") {
        let path = format!("/orders/{}", id.replace(['/', '?', '#'], "_"));
        let (runtime, url, client) = gateway();
        let status = runtime.block_on(async {
            let Ok(url) = reqwest::Url::parse(&format!("{url}{path}")) else {
                return 400; // not a URL a client could send
            };
            client.get(url).send().await.map_or(599, |a| a.status().as_u16())
        });
        prop_assert!(status < 500, "{status} for {path:?}");
    }
}
