//! The engine beside its baseline: one `apply` on the ecommerce lifecycle vs a hand-written
//! `match` doing the same checks. Public for criterion's benches in `benches/benches/`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use order_fsm::ecommerce::*;
use order_fsm::{
    Engine, Error, Event, EventId, EventKind, Lifecycle, MemoryStore, OrderId, OrderState,
    Purchase, StateId, Timestamp, Transition,
};

use crate::report::{Better, Comparison, Rounds, Spec, Target};
use crate::Size;

/// What the hand-written apply computes: the same fields as the engine's [`Transition`].
#[derive(Debug, PartialEq, Eq)]
pub struct HandTransition {
    order_id: OrderId,
    event_id: EventId,
    event: EventKind,
    from: StateId,
    to: StateId,
    version: u64,
    at: Timestamp,
    in_previous_state_micros: u64,
    terminal: bool,
}

impl From<Transition> for HandTransition {
    fn from(t: Transition) -> Self {
        Self {
            order_id: t.order_id,
            event_id: t.event_id,
            event: t.event,
            from: t.from,
            to: t.to,
            version: t.version,
            at: t.at,
            in_previous_state_micros: t.in_previous_state_micros,
            terminal: t.terminal,
        }
    }
}

/// The baseline: the ecommerce table written as a `match`, with the same checks as
/// [`Engine::apply`] (duplicate, terminal, version, legality, reason) and the same output.
///
/// # Errors
/// The same errors as [`Engine::apply`].
#[inline]
pub fn hand_written_apply(order: &OrderState, event: &Event) -> Result<HandTransition, Error> {
    if order.has_seen(event.id) {
        return Err(Error::Duplicate { event_id: event.id });
    }
    let name = |s| match s {
        PROCESSING => "processing",
        PREPARING => "preparing",
        SHIPPED => "shipped",
        DELIVERED => "delivered",
        COMPLETED => "completed",
        CANCELLED => "cancelled",
        _ => "failed",
    };
    if matches!(order.status, COMPLETED | CANCELLED | FAILED) {
        return Err(Error::Terminal {
            state: name(order.status),
        });
    }
    if let Some(expected) = event.expected_version {
        if expected != order.version {
            return Err(Error::StaleVersion {
                expected,
                actual: order.version,
            });
        }
    }
    let to = match (order.status, event.kind) {
        (PROCESSING, PREPARE) => PREPARING,
        (PREPARING, SHIP) => SHIPPED,
        (SHIPPED, DELIVER) => DELIVERED,
        (DELIVERED, COMPLETE) => COMPLETED,
        (PROCESSING | PREPARING, CANCEL) => CANCELLED,
        (PROCESSING | PREPARING | SHIPPED | DELIVERED, FAIL) => FAILED,
        _ => {
            return Err(Error::IllegalTransition {
                state: name(order.status),
                event: "event",
            })
        }
    };
    if event.kind == FAIL && event.reason.is_none() {
        return Err(Error::invalid_field("reason", "is required for this event"));
    }
    Ok(HandTransition {
        order_id: order.id,
        event_id: event.id,
        event: event.kind,
        from: order.status,
        to,
        version: order.version + 1,
        at: event.at,
        in_previous_state_micros: event.at.micros_since(order.updated_at),
        terminal: matches!(to, COMPLETED | CANCELLED | FAILED),
    })
}

/// An engine, a realistic order (placed and prepared) and the event that ships it.
pub fn fixture() -> (Engine, OrderState, Event) {
    let engine = Engine::new(Lifecycle::ecommerce());
    let mut order = engine.place(
        OrderId::from_u128(7),
        Purchase::example().into(),
        Timestamp::from_micros(1),
    );
    engine
        .apply_in_place(&mut order, &Event::new(PREPARE, Timestamp::from_micros(2)))
        .expect("prepare is legal");
    let event = Event::new(SHIP, Timestamp::from_micros(3));
    (engine, order, event)
}

/// `orders` orders through the lifecycle, writing the store once per transition; returns
/// the transitions.
pub fn full_lifecycle(
    engine: &Engine,
    store: &MemoryStore,
    purchase: &Arc<Purchase>,
    orders: u64,
) -> u64 {
    let mut transitions = 0;
    for i in 0..orders {
        let id = OrderId::from_u128(u128::from(i) + 1);
        store
            .compare_and_set_now(
                0,
                engine.place_with(
                    id,
                    Arc::clone(purchase),
                    EventId::from_u128(u128::from(i)),
                    Timestamp::from_micros(i),
                ),
            )
            .expect("a fresh order");
        for (step, kind) in [PREPARE, SHIP, DELIVER, COMPLETE].into_iter().enumerate() {
            store
                .update(id, |order| {
                    let event = Event::identified(
                        EventId::auto_advance(id, order.version),
                        kind,
                        Timestamp::from_micros(i + step as u64),
                    );
                    engine.apply_in_place(order, &event).expect("legal")
                })
                .expect("stored");
            transitions += 1;
        }
    }
    transitions
}

/// The runner's no-dwell path without the runner: an order's chain of transitions applied
/// in memory and the store written once per order; returns the transitions.
pub fn full_lifecycle_chained(
    engine: &Engine,
    store: &MemoryStore,
    purchase: &Arc<Purchase>,
    orders: u64,
) -> u64 {
    let mut transitions = 0;
    for i in 0..orders {
        let id = OrderId::from_u128(u128::from(i) + 1);
        let mut order = engine.place_with(
            id,
            Arc::clone(purchase),
            EventId::from_u128(u128::from(i)),
            Timestamp::from_micros(i),
        );
        for (step, kind) in [PREPARE, SHIP, DELIVER, COMPLETE].into_iter().enumerate() {
            let event = Event::identified(
                EventId::auto_advance(id, order.version),
                kind,
                Timestamp::from_micros(i + step as u64),
            )
            .with_expected_version(order.version);
            engine.apply_in_place(&mut order, &event).expect("legal");
            transitions += 1;
        }
        store.compare_and_set_now(0, order).expect("a fresh order");
    }
    transitions
}

/// Nanoseconds per call of `f` over `calls` calls.
fn ns_per_call(calls: u64, f: &dyn Fn() -> bool) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        black_box(f());
    }
    start.elapsed().as_secs_f64() / calls as f64 * 1e9
}

/// One `apply` vs the hand-written `match`, in alternating rounds.
pub(crate) fn compare(size: Size) -> Comparison {
    let (calls, rounds) = size.pick((20_000, 2), (1_000_000, 31), (2_000_000, 51));
    let (engine, order, event) = fixture();
    assert_eq!(
        HandTransition::from(engine.apply(&order, &event).expect("legal")),
        hand_written_apply(&order, &event).expect("legal")
    );
    let engine_apply = || engine.apply(black_box(&order), black_box(&event)).is_ok();
    let hand_apply = || hand_written_apply(black_box(&order), black_box(&event)).is_ok();
    // Warm both up.
    ns_per_call(calls / 4, &engine_apply);
    ns_per_call(calls / 4, &hand_apply);
    let mut r = Rounds::default();
    for round in 0..rounds {
        let (a, s) = if Rounds::anchor_first(round) {
            let a = ns_per_call(calls, &hand_apply);
            (a, ns_per_call(calls, &engine_apply))
        } else {
            let s = ns_per_call(calls, &engine_apply);
            (ns_per_call(calls, &hand_apply), s)
        };
        r.push(a, s);
    }
    r.finish(Spec {
        id: "engine.apply".into(),
        title: "one `apply` vs a hand-written `match` doing the same checks".into(),
        backend: "in process".into(),
        setup: format!("{} calls per round", crate::data::count(calls as usize)),
        unit: "ns/apply",
        better: Better::Lower,
        anchor: "hand-written `match`".into(),
        subject: "`Engine::apply`".into(),
        target: Some(Target::AtMost(1.5)),
        notes: vec!["criterion's view: `cargo bench -p order-fsm-benches --bench engine`".into()],
    })
}
