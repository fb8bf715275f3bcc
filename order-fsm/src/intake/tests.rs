use super::*;
use crate::ecommerce::*;
use crate::{Lifecycle, MemoryQueue, MemoryStore, Timestamp};

fn intake() -> (Intake, MemoryQueue, Arc<MemoryStore>) {
    let queue = MemoryQueue::new();
    let store = Arc::new(MemoryStore::new());
    let intake = Intake::new(
        Engine::new(Lifecycle::ecommerce()),
        Arc::new(queue.clone()),
        store.clone(),
    );
    (intake, queue, store)
}

/// Stores the order a placement would create, as a runner would.
async fn store_placed(intake: &Intake, store: &MemoryStore, placed: &Placed, p: Purchase) {
    let order = intake.engine().place_with(
        placed.order_id,
        p.into(),
        placed.event_id,
        Timestamp::from_micros(1),
    );
    store.compare_and_set(0, order).await.unwrap();
}

fn field_of(error: &Error) -> &'static str {
    match error {
        Error::InvalidField { field, .. } => field,
        other => panic!("not an invalid field: {other:?}"),
    }
}

#[test]
fn keys_are_1_to_256_characters_without_control_characters() {
    assert!(check_key("checkout-42").is_ok());
    assert!(
        check_key(&"é".repeat(MAX_FIELD_CHARS)).is_ok(),
        "characters, not bytes"
    );
    for bad in [
        String::new(),
        "k".repeat(MAX_FIELD_CHARS + 1),
        "tab\there".into(),
    ] {
        assert_eq!(field_of(&check_key(&bad).unwrap_err()), "idempotency_key");
        assert_eq!(
            field_of(&placement_ids(Some(&bad)).unwrap_err()),
            "idempotency_key"
        );
    }
    assert!(check_reason(&"r".repeat(MAX_FIELD_CHARS)).is_ok());
    let long = "r".repeat(MAX_FIELD_CHARS + 1);
    assert_eq!(field_of(&check_reason(&long).unwrap_err()), "reason");
}

#[test]
fn derived_ids_are_the_ones_the_grpc_intake_always_derived() {
    // Computed with order-fsm-grpc's `derived` before it moved here: ids from existing
    // keys must not change.
    let (order, event) = placement_ids(Some("key-1")).unwrap();
    assert_eq!(order.to_string(), "861d76b5-c825-5d5b-af50-1dc1e1a22f27");
    assert_eq!(event.to_string(), "58363c53-4abd-5ef6-8210-210589a6aee1");
    let event = event_id(OrderId::from_u128(7), Some("key-1")).unwrap();
    assert_eq!(event.to_string(), "48515c38-5a87-56fb-ac81-1f4a36510c48");

    assert_ne!(
        event_id(OrderId::from_u128(8), Some("key-1")).unwrap(),
        event,
        "one key names different events on different orders"
    );
    assert_ne!(placement_ids(None).unwrap(), placement_ids(None).unwrap());
}

#[test]
fn batches_hold_1_to_1000_placements() {
    assert!(check_batch(1).is_ok() && check_batch(MAX_PLACEMENTS_PER_CALL).is_ok());
    assert_eq!(field_of(&check_batch(0).unwrap_err()), "orders");
    let err = check_batch(MAX_PLACEMENTS_PER_CALL + 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid field `orders`: has more than 1000 placements"
    );
}

#[test]
fn messages_name_the_event_a_terminal_state_refused() {
    let terminal = Error::Terminal { state: "cancelled" };
    assert_eq!(
        message(&terminal, Some("prepare")),
        "illegal transition: event `prepare` is not allowed in terminal state `cancelled`"
    );
    let unknown = Error::UnknownEvent {
        event: "teleport".into(),
    };
    assert_eq!(
        message(&unknown, None),
        "invalid field `event`: unknown event `teleport`"
    );
    let illegal = Error::IllegalTransition {
        state: "processing",
        event: "deliver",
    };
    assert_eq!(message(&illegal, Some("deliver")), illegal.to_string());
}

#[tokio::test]
async fn a_key_places_one_order_and_refuses_another_purchase() {
    let (intake, queue, store) = intake();
    let request = PlaceRequest::new(Purchase::example()).with_key("key-1");
    let placed = intake.place(request.clone()).await.unwrap();
    assert_eq!(
        placed.order_id.to_string(),
        "861d76b5-c825-5d5b-af50-1dc1e1a22f27"
    );
    assert_eq!((placed.status, placed.version), (PROCESSING, 1));
    assert!(!placed.already_existed);
    assert_eq!(queue.pending(), 1);

    store_placed(&intake, &store, &placed, Purchase::example()).await;
    let again = intake.place(request).await.unwrap();
    assert_eq!(
        (again.order_id, again.event_id, again.already_existed),
        (placed.order_id, placed.event_id, true)
    );
    assert_eq!(queue.pending(), 1, "nothing new submitted");

    let mut other = Purchase::example();
    other.product = "Other".into();
    let err = intake
        .place(PlaceRequest::new(other).with_key("key-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IdempotencyKeyReused { order_id } if order_id == placed.order_id));
    assert!(err.to_string().contains("idempotency_key"), "{err}");

    let mut bad = Purchase::example();
    bad.price = "-1.00".parse().unwrap();
    let err = intake.place(PlaceRequest::new(bad)).await.unwrap_err();
    assert_eq!(field_of(&err), "price");
}

#[tokio::test]
async fn a_batch_is_checked_whole_before_anything_is_submitted() {
    let (intake, queue, store) = intake();
    let keyed = |key: &str| PlaceRequest::new(Purchase::example()).with_key(key);
    let mut bad = Purchase::example();
    bad.customer_email = "nobody".into();

    let err = intake
        .place_many(vec![keyed("a"), PlaceRequest::new(bad)])
        .await
        .unwrap_err();
    assert_eq!(
        (err.index, field_of(&err.error)),
        (Some(1), "customer_email")
    );
    assert!(err.to_string().starts_with("orders[1]: "), "{err}");
    let err = intake
        .place_many(vec![keyed("a"), keyed("b"), keyed("a")])
        .await
        .unwrap_err();
    assert_eq!(err.index, Some(2));
    assert!(
        err.to_string().contains("repeats the key of orders[0]"),
        "{err}"
    );
    let err = intake.place_many(Vec::new()).await.unwrap_err();
    assert_eq!((err.index, field_of(&err.error)), (None, "orders"));
    assert_eq!(queue.pending(), 0);

    let first = intake.place(keyed("a")).await.unwrap();
    store_placed(&intake, &store, &first, Purchase::example()).await;
    let placed = intake
        .place_many(vec![keyed("a"), PlaceRequest::new(Purchase::example())])
        .await
        .unwrap();
    assert_eq!(placed[0].order_id, first.order_id);
    assert!(placed[0].already_existed && !placed[1].already_existed);
    assert_eq!(queue.pending(), 2, "the first placement and the new one");
}

#[tokio::test]
async fn events_are_decided_against_the_read_model() {
    let (intake, queue, store) = intake();
    let placed = intake
        .place(PlaceRequest::new(Purchase::example()))
        .await
        .unwrap();
    let id = placed.order_id;
    let missing = intake
        .apply(EventRequest::new(id, "prepare"))
        .await
        .unwrap_err();
    // Placed here a moment ago, not processed yet: not "not found".
    assert!(matches!(missing, Error::NotYetVisible { order_id, .. } if order_id == id));
    store_placed(&intake, &store, &placed, Purchase::example()).await;

    let err = intake
        .apply(EventRequest::new(id, "deliver"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "illegal transition: event `deliver` is not allowed in state `processing`"
    );
    let err = intake
        .apply(EventRequest::new(id, "teleport"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownEvent { .. }));
    let mut long = EventRequest::new(id, "fail");
    long.reason = Some("r".repeat(MAX_FIELD_CHARS + 1));
    assert_eq!(field_of(&intake.apply(long).await.unwrap_err()), "reason");
    assert_eq!(queue.pending(), 1, "only the placement");

    let mut prepare = EventRequest::new(id, "prepare");
    prepare.idempotency_key = Some("prepare-1".into());
    let accepted = intake.apply(prepare.clone()).await.unwrap();
    assert_eq!(
        (accepted.from, accepted.to, accepted.version),
        (PROCESSING, PREPARING, 2)
    );
    assert!(!accepted.already_applied);
    assert_eq!(queue.pending(), 2);

    // Once applied, a retry with the key answers what it did, submitting nothing.
    store.update(id, |order| {
        let event = crate::Event {
            id: accepted.event_id,
            ..crate::Event::new(PREPARE, Timestamp::from_micros(2))
        };
        intake.engine().apply_in_place(order, &event).unwrap();
    });
    let retried = intake.apply(prepare).await.unwrap();
    assert!(retried.already_applied);
    assert_eq!((retried.to, retried.version), (PREPARING, 2));
    assert_eq!(queue.pending(), 2);

    // A retry of a rejected event stays rejected.
    let mut ship = EventRequest::new(id, "ship");
    ship.idempotency_key = Some("ship-1".into());
    ship.expected_version = Some(1);
    let rejected = event_id(id, Some("ship-1")).unwrap();
    store.update(id, |order| order.remember_rejection(rejected));
    let err = intake.apply(ship).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyRejected { event_id } if event_id == rejected));
}

#[tokio::test]
async fn reads_and_events_that_outrun_the_workers_are_not_yet_visible_rather_than_not_found() {
    let (intake, _queue, store) = intake();
    let placed = intake
        .place(PlaceRequest::new(Purchase::example()))
        .await
        .unwrap();
    let batch = intake
        .place_many(vec![PlaceRequest::new(Purchase::example())])
        .await
        .unwrap();
    // Nothing processed the placements yet: the store lacks both orders.
    for id in [placed.order_id, batch[0].order_id] {
        match intake.get(id).await {
            Err(Error::NotYetVisible {
                order_id,
                retry_after,
            }) => {
                assert_eq!(order_id, id);
                assert_eq!(retry_after, NOT_YET_VISIBLE_RETRY);
            }
            other => panic!("expected NotYetVisible, got {other:?}"),
        }
        let event = intake.apply(EventRequest::new(id, "prepare")).await;
        assert!(
            matches!(event, Err(Error::NotYetVisible { .. })),
            "{event:?}"
        );
        assert!(Error::NotYetVisible {
            order_id: id,
            retry_after: NOT_YET_VISIBLE_RETRY
        }
        .is_retryable());
    }
    // An id this intake never placed is not found.
    let unknown = OrderId::random();
    assert!(matches!(
        intake.get(unknown).await,
        Err(Error::NotFound { order_id }) if order_id == unknown
    ));
    assert!(matches!(
        intake.apply(EventRequest::new(unknown, "prepare")).await,
        Err(Error::NotFound { .. })
    ));
    // Once the workers stored it, it is read as usual.
    store_placed(&intake, &store, &placed, Purchase::example()).await;
    assert_eq!(intake.get(placed.order_id).await.unwrap().version, 1);
}
