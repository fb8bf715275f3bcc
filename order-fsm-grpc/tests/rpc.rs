//! Every RPC and every error mapping, over a loopback TCP port.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_status, read_until, DownStore, Harness, Options};
use order_fsm::{Command, OrderId, Purchase, PLACE_EVENT};
use order_fsm_grpc::{proto, EventOptions, ServerConfig};
use tonic::Code;

fn bad(mutate: impl FnOnce(&mut Purchase)) -> Purchase {
    let mut p = Purchase::example();
    mutate(&mut p);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_round_trips_through_the_runner() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;

    let placed = client
        .place_order(&Purchase::example(), Some("rpc-1"))
        .await
        .unwrap();
    assert_eq!((placed.status.as_str(), placed.version), ("processing", 1));
    assert!(!placed.already_existed);

    let order = read_until(&client, placed.order_id, |_| true).await;
    assert_eq!(order.purchase, Purchase::example());
    assert_eq!(order.status, "processing");
    assert_eq!(order.history.len(), 1);
    assert_eq!(order.history[0].event, PLACE_EVENT);
    assert_eq!(order.history[0].event_id, placed.event_id);

    // Same key again: the same order, nothing new.
    let again = client
        .place_order(&Purchase::example(), Some("rpc-1"))
        .await
        .unwrap();
    assert_eq!(again.order_id, placed.order_id);
    assert!(again.already_existed);

    let prepare = EventOptions {
        expected_version: Some(1),
        idempotency_key: Some("prepare-1".into()),
        ..EventOptions::default()
    };
    let accepted = client
        .apply_event(placed.order_id, "prepare", prepare.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            accepted.from.as_str(),
            accepted.to.as_str(),
            accepted.version
        ),
        ("processing", "preparing", 2)
    );
    read_until(&client, placed.order_id, |o| o.version == 2).await;
    // A retried event (same key) reports what it did the first time.
    let retried = client
        .apply_event(placed.order_id, "prepare", prepare)
        .await
        .unwrap();
    assert!(retried.already_applied);
    assert_eq!(retried.version, 2);

    let cancelled = client
        .cancel_order(
            placed.order_id,
            EventOptions {
                reason: Some("customer changed their mind".into()),
                ..EventOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (cancelled.from.as_str(), cancelled.to.as_str()),
        ("preparing", "cancelled")
    );
    let order = read_until(&client, placed.order_id, |o| o.terminal).await;
    assert_eq!(order.status, "cancelled");
    let events: Vec<_> = order.history.iter().map(|t| t.event.as_str()).collect();
    assert_eq!(events, ["place", "prepare", "cancel"]);
    assert_eq!(
        order.history[2].reason.as_deref(),
        Some("customer changed their mind")
    );

    // ListOrders: filter by status and page through.
    for i in 0..5 {
        client
            .place_order(&Purchase::example(), Some(&format!("list-{i}")))
            .await
            .unwrap();
    }
    h.drained().await;
    let cancelled = client
        .list_orders(Some("cancelled"), 0, None)
        .await
        .unwrap();
    assert_eq!(cancelled.orders.len(), 1);
    assert_eq!(cancelled.next_page_token, None);
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_orders(Some("processing"), 2, token.as_deref())
            .await
            .unwrap();
        assert!(page.orders.len() <= 2);
        seen.extend(page.orders.iter().map(|o| o.order_id));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ascending ids");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_invalid_argument_naming_the_field() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let cases: Vec<(Purchase, &str)> = vec![
        (
            bad(|p| p.customer_email = "not-an-address".into()),
            "customer_email",
        ),
        (bad(|p| p.product = " ".into()), "product"),
        (bad(|p| p.quantity = Some(0)), "quantity"),
        (bad(|p| p.bank = "x".repeat(300)), "bank"),
    ];
    for (purchase, field) in cases {
        assert_status(
            client.place_order(&purchase, None).await,
            Code::InvalidArgument,
            &[field],
        );
    }
    let mut raw = h.raw().await;
    let mut wire = proto::PlaceOrderRequest {
        purchase: Some(proto::Purchase {
            product: "Lamp".into(),
            price: "12.345".into(),
            customer_email: "a@b.cl".into(),
            ..Default::default()
        }),
        idempotency_key: None,
    };
    let status = raw.place_order(wire.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("price"), "{}", status.message());
    wire.purchase = None;
    let status = raw.place_order(wire.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("purchase"));
    assert_status(
        client.place_order(&Purchase::example(), Some("")).await,
        Code::InvalidArgument,
        &["idempotency_key"],
    );
    let status = raw
        .get_order(proto::GetOrderRequest {
            order_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("order_id"));
    let status = raw
        .list_orders(proto::ListOrdersRequest {
            status: "lost".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("status") && status.message().contains("lost"));
    let status = raw
        .list_orders(proto::ListOrdersRequest {
            page_token: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("page_token"));

    // An idempotency key reused for another purchase.
    let placed = client
        .place_order(&Purchase::example(), Some("k"))
        .await
        .unwrap();
    read_until(&client, placed.order_id, |_| true).await;
    assert_status(
        client
            .place_order(&bad(|p| p.product = "Other".into()), Some("k"))
            .await,
        Code::AlreadyExists,
        &["idempotency_key"],
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_errors_map_to_their_codes() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let id = client
        .place_order(&Purchase::example(), None)
        .await
        .unwrap()
        .order_id;
    read_until(&client, id, |_| true).await;
    let none = EventOptions::default;

    assert_status(
        client.apply_event(id, "teleport", none()).await,
        Code::InvalidArgument,
        &["event", "teleport"],
    );
    assert_status(
        client.apply_event(id, "deliver", none()).await,
        Code::FailedPrecondition,
        &["processing", "deliver"],
    );
    assert_status(
        client.apply_event(id, "fail", none()).await,
        Code::InvalidArgument,
        &["reason"],
    );
    let stale = EventOptions {
        expected_version: Some(7),
        ..none()
    };
    assert_status(
        client.apply_event(id, "prepare", stale).await,
        Code::Aborted,
        &["7"],
    );
    assert_status(
        client.get_order(OrderId::from_u128(99)).await,
        Code::NotFound,
        &[&OrderId::from_u128(99).to_string()],
    );
    assert_status(
        client.cancel_order(OrderId::from_u128(99), none()).await,
        Code::NotFound,
        &["not found"],
    );

    client.cancel_order(id, none()).await.unwrap();
    read_until(&client, id, |o| o.status == "cancelled").await;
    assert_status(
        client.apply_event(id, "prepare", none()).await,
        Code::FailedPrecondition,
        &["cancelled", "prepare"],
    );
    assert_status(
        client.cancel_order(id, none()).await,
        Code::FailedPrecondition,
        &["cancelled", "cancel"],
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_backends_are_unavailable_and_the_client_retries_with_the_same_key() {
    // Down for good: the client gives up after its attempts.
    let (options, down) = Options::flaky_commands(u32::MAX, Duration::ZERO);
    let h = Harness::start(options).await;
    let client = h.client().await;
    assert_status(
        client.place_order(&Purchase::example(), None).await,
        Code::Unavailable,
        &["kafka"],
    );
    let seen = down.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "five attempts");
    // The same order and event ids (placed_at is stamped per attempt): downstream the
    // runner recognises the repeats by event id.
    assert!(
        seen.windows(2).all(|w| w[0].order_id() == w[1].order_id()
            && w[0].event_id() == w[1].event_id()
            && matches!((&w[0], &w[1]), (Command::Place { purchase: a, .. }, Command::Place { purchase: b, .. }) if a == b)),
        "every attempt is the same placement"
    );
    h.stop().await;

    // Down twice, then up: one order, created by the third attempt.
    let (options, flaky) = Options::flaky_commands(2, Duration::ZERO);
    let h = Harness::start(options).await;
    let client = h.client().await;
    let placed = client
        .place_order(&Purchase::example(), None)
        .await
        .unwrap();
    let seen = flaky.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|c| c.order_id() == placed.order_id && c.event_id() == placed.event_id));
    h.drained().await;
    assert_eq!(h.store.len(), 1);
    h.stop().await;

    // A store that cannot be read.
    let h = Harness::start(Options {
        store: Some(Arc::new(DownStore)),
        ..Options::default()
    })
    .await;
    let client = h.client().await;
    assert_status(
        client.get_order(OrderId::from_u128(1)).await,
        Code::Unavailable,
        &["elasticsearch"],
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_and_message_limits_are_enforced() {
    let (options, _slow) = Options::flaky_commands(0, Duration::from_secs(3));
    let h = Harness::start(options).await;
    let mut raw = h.raw().await;
    let purchase = order_fsm_grpc_purchase();
    let mut request = tonic::Request::new(proto::PlaceOrderRequest {
        purchase: Some(purchase.clone()),
        idempotency_key: None,
    });
    request.set_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let status = raw.place_order(request).await.unwrap_err();
    // tonic's client enforces the same deadline locally and reports it as CANCELLED; the
    // server's own DEADLINE_EXCEEDED is checked below with the server-side cap.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let mut big = purchase;
    big.product = "x".repeat(5 * 1024 * 1024);
    let status = raw
        .place_order(proto::PlaceOrderRequest {
            purchase: Some(big),
            idempotency_key: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    h.stop().await;

    // The server's own cap applies when the client sends no deadline.
    let (mut options, _slow) = Options::flaky_commands(0, Duration::from_secs(3));
    options.config = ServerConfig::default().with_request_timeout(Some(Duration::from_millis(100)));
    let h = Harness::start(options).await;
    let status = h
        .raw()
        .await
        .place_order(proto::PlaceOrderRequest {
            purchase: Some(order_fsm_grpc_purchase()),
            idempotency_key: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    h.stop().await;
}

fn order_fsm_grpc_purchase() -> proto::Purchase {
    proto::Purchase::from(&Purchase::example())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_graceful() {
    let (options, _slow) = Options::flaky_commands(0, Duration::from_millis(300));
    let mut h = Harness::start(options).await;
    let client = h.client().await;
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.place_order(&Purchase::example(), None).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.shutdown_server();
    // The call that was running completes; the server then stops.
    let placed = in_flight.await.unwrap().expect("in-flight call completes");
    assert_eq!(placed.status, "processing");
    h.drained().await;
    assert_eq!(h.store.len(), 1);
    let server = h.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let late =
        order_fsm_grpc::OrderClient::connect(order_fsm_grpc::ClientConfig::new(h.url())).await;
    assert!(late.is_err(), "no new connections after shutdown");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_read_before_the_workers_processed_it_is_unavailable_with_a_retry_hint() {
    // The runner never sees this queue: placements stay unprocessed.
    let h = Harness::start(Options {
        commands: Some(Arc::new(order_fsm::MemoryQueue::new())),
        ..Options::default()
    })
    .await;
    let mut raw = h.raw().await;
    let placed = raw
        .place_order(proto::PlaceOrderRequest {
            purchase: Some(order_fsm_grpc_purchase()),
            idempotency_key: None,
        })
        .await
        .unwrap()
        .into_inner();
    let read = raw
        .get_order(proto::GetOrderRequest {
            order_id: placed.order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::Unavailable, "{read:?}");
    assert!(read.message().contains("not processed yet"), "{read:?}");
    let hint = read.metadata().get(order_fsm_grpc::RETRY_AFTER_MS).unwrap();
    assert!(hint.to_str().unwrap().parse::<u64>().unwrap() > 0);
    let event = raw
        .apply_event(proto::ApplyEventRequest {
            order_id: placed.order_id,
            event: "prepare".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(event.code(), Code::Unavailable, "{event:?}");
    // An order nobody placed is still NOT_FOUND.
    let unknown = raw
        .get_order(proto::GetOrderRequest {
            order_id: OrderId::random().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    h.stop().await;
}
