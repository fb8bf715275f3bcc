//! `PlaceOrders`: many placements in one call, all or none, over a loopback TCP port.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{assert_status, Harness, Options};
use order_fsm::Purchase;
use order_fsm_grpc::proto;
use tonic::Code;

fn purchases(n: usize) -> Vec<Purchase> {
    (0..n)
        .map(|i| {
            let mut purchase = Purchase::example();
            purchase.product = format!("Product {i}");
            purchase
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_places_every_order_once_and_answers_in_request_order() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let wanted = purchases(250);
    let placed = client.place_orders(&wanted).await.unwrap();
    assert_eq!(placed.len(), wanted.len());
    let ids: HashSet<_> = placed.iter().map(|p| p.order_id).collect();
    assert_eq!(ids.len(), wanted.len(), "one new order per placement");
    assert!(placed
        .iter()
        .all(|p| !p.already_existed && p.version == 1 && p.status == "processing"));
    h.drained().await;
    assert_eq!(h.store.len(), wanted.len());
    for (purchase, answer) in wanted.iter().zip(&placed) {
        let order = client.get_order(answer.order_id).await.unwrap();
        assert_eq!(
            &order.purchase, purchase,
            "answers follow the request order"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_placement_rejects_the_call_naming_it_and_places_nothing() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let mut batch = purchases(3);
    batch[1].customer_email = "not-an-address".into();
    assert_status(
        client.place_orders(&batch).await,
        Code::InvalidArgument,
        &["orders[1]", "customer_email"],
    );
    assert_status(
        client.place_orders(&[]).await,
        Code::InvalidArgument,
        &["orders", "empty"],
    );
    assert_status(
        client.place_orders(&purchases(1_001)).await,
        Code::InvalidArgument,
        &["orders", "1000"],
    );

    // The same idempotency key twice in one call.
    let mut raw = h.raw().await;
    let order = |key: &str| proto::PlaceOrderRequest {
        purchase: Some(proto::Purchase {
            product: "Lamp".into(),
            price: "12.00".into(),
            customer_email: "a@b.cl".into(),
            ..Default::default()
        }),
        idempotency_key: Some(key.into()),
    };
    let status = raw
        .place_orders(proto::PlaceOrdersRequest {
            orders: vec![order("a"), order("b"), order("a")],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("orders[2]")
            && status.message().contains("idempotency_key")
            && status.message().contains("orders[0]"),
        "{}",
        status.message()
    );

    h.drained().await;
    assert_eq!(h.queue.pending(), 0);
    assert_eq!(h.store.len(), 0, "a rejected call places nothing");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_call_places_each_order_once() {
    // The command sink is down for two calls, then up.
    let (options, flaky) = Options::flaky_commands(2, Duration::ZERO);
    let h = Harness::start(options).await;
    let client = h.client().await;
    let placed = client.place_orders(&purchases(10)).await.unwrap();
    let seen = flaky.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 30, "three attempts of ten placements");
    for attempt in seen.chunks(10) {
        let ids: Vec<_> = attempt
            .iter()
            .map(|c| (c.order_id(), c.event_id()))
            .collect();
        let answered: Vec<_> = placed.iter().map(|p| (p.order_id, p.event_id)).collect();
        assert_eq!(ids, answered, "every attempt carries the same ids");
    }
    h.drained().await;
    assert_eq!(h.store.len(), 10);

    // A placement whose key names an existing order reports that order, placing nothing.
    let mut raw = h.raw().await;
    let key = proto::PlaceOrderRequest {
        purchase: Some(proto::Purchase {
            product: "Lamp".into(),
            price: "12.00".into(),
            customer_email: "a@b.cl".into(),
            ..Default::default()
        }),
        idempotency_key: Some("lamp-1".into()),
    };
    let first = raw
        .place_orders(proto::PlaceOrdersRequest {
            orders: vec![key.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    h.drained().await;
    let again = raw
        .place_orders(proto::PlaceOrdersRequest { orders: vec![key] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.orders[0].order_id, again.orders[0].order_id);
    assert!(!first.orders[0].already_existed && again.orders[0].already_existed);
    assert_eq!(h.store.len(), 11);
    h.stop().await;
}
