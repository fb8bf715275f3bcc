//! (a) one `apply` on the ecommerce lifecycle beside a hand-written `match` doing the same
//! checks; (b) 1,000,000 orders through the whole lifecycle with the engine and the
//! in-memory store.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use order_fsm::ecommerce::*;
use order_fsm::{
    Engine, Error, Event, EventId, EventKind, Lifecycle, MemoryStore, OrderId, OrderState,
    Purchase, StateId, Timestamp, Transition,
};

// The allocator of the programs in `examples/`: placing an order allocates (the shared
// purchase, the history), and glibc's malloc is slow at that on this machine (paired runs,
// 1M orders: 7.3 M vs 8.9 M transitions/s per-transition, 9.4 M vs 10.1 M chained).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the hand-written apply computes: the same fields as the engine's [`Transition`].
#[derive(Debug, PartialEq, Eq)]
struct HandTransition {
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
#[inline]
fn hand_written_apply(order: &OrderState, event: &Event) -> Result<HandTransition, Error> {
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

fn fixture() -> (Engine, OrderState, Event) {
    let engine = Engine::new(Lifecycle::ecommerce());
    let mut order = engine.place(
        OrderId::from_u128(7),
        Purchase::example().into(),
        Timestamp::from_micros(1),
    );
    // A realistic order: placed and prepared, now being shipped.
    engine
        .apply_in_place(&mut order, &Event::new(PREPARE, Timestamp::from_micros(2)))
        .unwrap();
    let event = Event::new(SHIP, Timestamp::from_micros(3));
    (engine, order, event)
}

fn single_apply(c: &mut Criterion) {
    let (engine, order, event) = fixture();
    assert_eq!(
        HandTransition::from(engine.apply(&order, &event).unwrap()),
        hand_written_apply(&order, &event).unwrap()
    );
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine", |b| {
        b.iter(|| engine.apply(black_box(&order), black_box(&event)))
    });
    group.bench_function("hand_written_match", |b| {
        b.iter(|| hand_written_apply(black_box(&order), black_box(&event)))
    });
    group.finish();
}

/// The ratio, measured directly in the same run (criterion reports each side separately):
/// rounds of the two alternate, and each side keeps its fastest round, so a noisy neighbour
/// on the machine hits both alike.
fn ratio_report() {
    let (engine, order, event) = fixture();
    let round = |f: &dyn Fn() -> bool| {
        let start = Instant::now();
        for _ in 0..2_000_000 {
            black_box(f());
        }
        start.elapsed().as_secs_f64() / 2e6 * 1e9
    };
    let engine_apply = || engine.apply(black_box(&order), black_box(&event)).is_ok();
    let hand_apply = || hand_written_apply(black_box(&order), black_box(&event)).is_ok();
    let (mut engine_ns, mut hand_ns) = (f64::MAX, f64::MAX);
    for _ in 0..25 {
        engine_ns = engine_ns.min(round(&engine_apply));
        hand_ns = hand_ns.min(round(&hand_apply));
    }
    println!(
        "apply: engine {engine_ns:.2} ns, hand-written match {hand_ns:.2} ns, ratio {:.2}x",
        engine_ns / hand_ns
    );
}

const ORDERS: u64 = 1_000_000;

fn full_lifecycle(engine: &Engine, store: &MemoryStore, purchase: &Arc<Purchase>) -> u64 {
    let mut transitions = 0;
    for i in 0..ORDERS {
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
            .unwrap();
        for (step, kind) in [PREPARE, SHIP, DELIVER, COMPLETE].into_iter().enumerate() {
            store
                .update(id, |order| {
                    let event = Event::identified(
                        EventId::auto_advance(id, order.version),
                        kind,
                        Timestamp::from_micros(i + step as u64),
                    );
                    engine.apply_in_place(order, &event).unwrap()
                })
                .unwrap();
            transitions += 1;
        }
    }
    transitions
}

/// The runner's no-dwell path: an order's chain of transitions is applied in memory and the
/// store is written once per order.
fn full_lifecycle_chained(engine: &Engine, store: &MemoryStore, purchase: &Arc<Purchase>) -> u64 {
    let mut transitions = 0;
    for i in 0..ORDERS {
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
            engine.apply_in_place(&mut order, &event).unwrap();
            transitions += 1;
        }
        store.compare_and_set_now(0, order).unwrap();
    }
    transitions
}

fn million_orders(c: &mut Criterion) {
    let engine = Engine::new(Lifecycle::ecommerce());
    let purchase = Arc::new(Purchase::example());
    let mut group = c.benchmark_group("lifecycle");
    group.sample_size(10);
    group.throughput(Throughput::Elements(4 * ORDERS));
    group.bench_function("1M_orders_engine_and_memory_store", |b| {
        b.iter_with_large_drop(|| {
            let store = MemoryStore::with_capacity(ORDERS as usize);
            assert_eq!(full_lifecycle(&engine, &store, &purchase), 4 * ORDERS);
            store
        })
    });
    group.bench_function("1M_orders_engine_chained_one_store_write_per_order", |b| {
        b.iter_with_large_drop(|| {
            let store = MemoryStore::with_capacity(ORDERS as usize);
            assert_eq!(
                full_lifecycle_chained(&engine, &store, &purchase),
                4 * ORDERS
            );
            store
        })
    });
    group.finish();
}

criterion_group!(benches, single_apply, million_orders);

fn main() {
    benches();
    ratio_report();
    Criterion::default().configure_from_args().final_summary();
}
