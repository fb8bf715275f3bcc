use std::borrow::Cow;
use std::sync::Arc;

use order_fsm::{
    Command, Error, EventId, HistoryRecord, Money, OrderId, Purchase, StateRecord, Timestamp,
    TransitionRecord,
};
use proptest::prelude::*;
use prost::Message;

use super::*;

fn reason(e: Error) -> String {
    match e {
        Error::Decode { reason } => reason,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

fn purchase() -> impl Strategy<Value = Purchase> {
    (
        ".{0,20}",
        -10_000_000i64..10_000_000,
        ".{0,12}",
        proptest::option::of(1u32..1000),
        proptest::option::of("[a-z]{0,8}"),
    )
        .prop_map(|(product, cents, email, quantity, category)| {
            let mut p = Purchase::new(product, Money::from_minor_units(cents));
            p.customer_email = email;
            p.quantity = quantity;
            p.category = category;
            p
        })
}

fn command() -> impl Strategy<Value = Command> {
    let place = (
        any::<u128>(),
        any::<u128>(),
        purchase(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(|(order, event, purchase, at, actor)| Command::Place {
            order_id: OrderId::from_u128(order),
            event_id: EventId::from_u128(event),
            purchase: Arc::new(purchase),
            placed_at: at.map(Timestamp::from_micros),
            actor,
        });
    let apply = (
        any::<u128>(),
        any::<u128>(),
        "[a-z]{1,10}",
        proptest::option::of(any::<u64>()),
        proptest::option::of(".{0,16}"),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(
            |(order, event, name, expected_version, reason, actor)| Command::Apply {
                order_id: OrderId::from_u128(order),
                event_id: EventId::from_u128(event),
                event: name,
                expected_version,
                reason,
                actor,
            },
        );
    prop_oneof![place, apply]
}

fn record() -> impl Strategy<Value = TransitionRecord> {
    (
        (any::<u128>(), any::<u128>(), 1u64..100, purchase()),
        proptest::option::of("[a-z]{1,10}"),
        ("[a-z]{1,10}", "[a-z]{1,10}", any::<u64>(), any::<u64>()),
        (any::<u64>(), any::<bool>()),
        proptest::option::of(".{0,16}"),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(
            |(
                (order, event, version, purchase),
                from,
                (event_name, to, at, placed),
                (dwell, terminal),
                reason,
                actor,
            )| {
                let mut r = TransitionRecord::new(
                    OrderId::from_u128(order),
                    EventId::from_u128(event),
                    version,
                    event_name,
                    to,
                    Timestamp::from_micros(at),
                    Arc::new(purchase),
                );
                r.from = from.map(Cow::Owned);
                r.placed_at = Timestamp::from_micros(placed);
                r.in_previous_state_micros = dwell;
                r.terminal = terminal;
                r.reason = reason;
                r.actor = actor;
                r
            },
        )
}

proptest! {
    #[test]
    fn every_command_survives_the_round_trip(c in command()) {
        let bytes = encode_command(&c).unwrap();
        prop_assert_eq!(decode_command(&bytes).unwrap(), c);
    }

    #[test]
    fn every_transition_record_survives_the_round_trip(r in record()) {
        prop_assert_eq!(decode_transition(&encode_transition(&r)).unwrap(), r);
    }

    #[test]
    fn packs_keep_every_record_in_order(records in proptest::collection::vec(record(), 0..8)) {
        let bytes = encode_transition_pack(&records);
        prop_assert_eq!(decode_transition_pack(&bytes).unwrap(), records);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_command(&bytes);
        let _ = decode_transition(&bytes);
        let _ = decode_transition_pack(&bytes);
        let _ = decode_state(&bytes);
    }

    #[test]
    fn every_state_record_survives_the_round_trip(r in state_record()) {
        prop_assert_eq!(decode_state(&encode_state(&r)).unwrap(), r);
    }
}

fn state_record() -> impl Strategy<Value = StateRecord> {
    let entry = (
        any::<u128>(),
        "[a-z]{1,10}",
        "[a-z]{1,10}",
        any::<u64>(),
        proptest::option::of(".{0,16}"),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(|(id, event, to, at, reason, actor)| {
            let mut h = HistoryRecord::new(
                EventId::from_u128(id),
                event,
                to,
                Timestamp::from_micros(at),
            );
            h.reason = reason;
            h.actor = actor;
            h
        });
    (
        (any::<u128>(), any::<u128>(), "[a-z]{1,10}", purchase()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        proptest::collection::vec(entry, 0..6),
        proptest::collection::vec(any::<u128>(), 0..3),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(
            |(
                (order, placed_by, status, purchase),
                (created, updated, published),
                history,
                rejected,
                actor,
            )| {
                let mut r = StateRecord::new(
                    OrderId::from_u128(order),
                    history.len() as u64 + 1,
                    status,
                    EventId::from_u128(placed_by),
                    Timestamp::from_micros(created),
                    Arc::new(purchase),
                );
                r.updated_at = Timestamp::from_micros(updated);
                r.published_up_to = published;
                r.history = history;
                r.rejected = rejected.into_iter().map(EventId::from_u128).collect();
                r.placed_by_actor = actor;
                r
            },
        )
}

/// A finished order's state record: the protobuf form rebuilds the same order, in well
/// under the bytes of the JSON form.
#[test]
fn a_finished_order_round_trips_in_fewer_bytes_than_json() {
    let lifecycle = Arc::new(order_fsm::Lifecycle::ecommerce());
    let engine = order_fsm::Engine::new(Arc::clone(&lifecycle));
    let mut state = engine.place(
        OrderId::random(),
        Arc::new(Purchase::example()),
        Timestamp::from_micros(10),
    );
    for (i, name) in ["prepare", "ship", "deliver", "complete"]
        .into_iter()
        .enumerate()
    {
        let at = Timestamp::from_micros(20 + i as u64);
        let event = order_fsm::Event::new(lifecycle.event(name).unwrap(), at);
        let transition = engine.apply(&state, &event).unwrap();
        state.commit(&transition, None, None).unwrap();
    }
    state.remember_rejection(EventId::random());
    let change = order_fsm::StateChange::new(3, state, 4);
    let record = StateRecord::of_change(&lifecycle, &change);
    let proto = encode_state(&record);
    let json = serde_json::to_vec(&record).unwrap();
    let back = decode_state(&proto)
        .unwrap()
        .into_change(&lifecycle, 3)
        .unwrap();
    assert_eq!(back, change);
    println!(
        "a finished order's state record: protobuf {} bytes, JSON {} bytes",
        proto.len(),
        json.len()
    );
    assert!(
        proto.len() * 10 < json.len() * 6,
        "protobuf {} bytes vs JSON {} bytes",
        proto.len(),
        json.len()
    );
}

#[test]
fn a_bad_state_field_is_named() {
    let mut record = StateRecord::new(
        OrderId::random(),
        2,
        "preparing",
        EventId::random(),
        Timestamp::from_micros(1),
        Arc::new(Purchase::example()),
    );
    record.history = vec![HistoryRecord::new(
        EventId::random(),
        "prepare",
        "preparing",
        Timestamp::from_micros(2),
    )];
    let mut wire = v1::StateRecord::decode(&*encode_state(&record)).unwrap();
    wire.history[0].event_id = "nope".into();
    let error = decode_state(&wire.encode_to_vec()).unwrap_err();
    assert!(reason(error).contains("history[0].event_id"));
    let mut wire = v1::StateRecord::decode(&*encode_state(&record)).unwrap();
    wire.rejected = vec!["x".into()];
    assert!(reason(decode_state(&wire.encode_to_vec()).unwrap_err()).contains("rejected[0]"));
    let mut wire = v1::StateRecord::decode(&*encode_state(&record)).unwrap();
    wire.purchase = None;
    assert!(reason(decode_state(&wire.encode_to_vec()).unwrap_err()).contains("purchase"));
}

#[test]
fn json_is_not_mistaken_for_protobuf() {
    let json = serde_json_like(&Command::place(Purchase::example()));
    let e = decode_command(json.as_bytes()).unwrap_err();
    assert!(reason(e).contains("CommandRecord"));
}

/// A JSON-looking payload without depending on serde_json here.
fn serde_json_like(c: &Command) -> String {
    format!("{{\"type\":\"place\",\"order_id\":\"{}\"}}", c.order_id())
}

#[test]
fn a_bad_field_is_named() {
    let good = v1::CommandRecord::decode(
        &encode_command(&Command::place(Purchase::example())).unwrap()[..],
    )
    .unwrap();

    let mut bad_id = good.clone();
    bad_id.event_id = "not-a-uuid".into();
    assert!(reason(decode_command(&bad_id.encode_to_vec()).unwrap_err()).contains("`event_id`"));

    let mut no_kind = good.clone();
    no_kind.command = None;
    assert!(reason(decode_command(&no_kind.encode_to_vec()).unwrap_err()).contains("`command`"));

    let mut bad_price = good.clone();
    if let Some(v1::command_record::Command::Place(p)) = &mut bad_price.command {
        p.purchase.as_mut().unwrap().price = "12.345".into();
    }
    assert!(reason(decode_command(&bad_price.encode_to_vec()).unwrap_err()).contains("`price`"));

    let mut no_purchase = good;
    if let Some(v1::command_record::Command::Place(p)) = &mut no_purchase.command {
        p.purchase = None;
    }
    assert!(
        reason(decode_command(&no_purchase.encode_to_vec()).unwrap_err()).contains("`purchase`")
    );
}

#[test]
fn a_transition_record_without_its_change_is_refused() {
    let r = placement_record();
    let mut wire = v1::TransitionRecord::decode(&encode_transition(&r)[..]).unwrap();
    wire.transition = None;
    assert!(reason(decode_transition(&wire.encode_to_vec()).unwrap_err()).contains("`transition`"));
}

#[test]
fn purchases_round_trip_and_bad_prices_name_the_field() {
    let p = Purchase::example();
    assert_eq!(Purchase::try_from(v1::Purchase::from(&p)).unwrap(), p);
    let mut wire = v1::Purchase::from(&p);
    wire.price = "12.345".into();
    match Purchase::try_from(wire) {
        Err(Error::InvalidField { field, .. }) => assert_eq!(field, "price"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_bad_record_in_a_pack_is_named_by_its_index() {
    let r = placement_record();
    let mut pack =
        v1::TransitionPack::decode(&encode_transition_pack(&[r.clone(), r])[..]).unwrap();
    pack.records[1].order_id = "nope".into();
    let reason = reason(decode_transition_pack(&pack.encode_to_vec()).unwrap_err());
    assert!(
        reason.starts_with("records[1]: field `order_id`"),
        "{reason}"
    );
}

/// The record of a placement, to take apart.
fn placement_record() -> TransitionRecord {
    TransitionRecord::new(
        OrderId::from_u128(1),
        EventId::from_u128(2),
        1,
        "place",
        "processing",
        Timestamp::from_micros(5),
        Arc::new(Purchase::example()),
    )
}
