//! criterion's view of the engine: (a) one `apply` on the ecommerce lifecycle beside a
//! hand-written `match` doing the same checks; (b) 1,000,000 orders through the whole
//! lifecycle with the engine and the in-memory store. The alternating-rounds ratio of (a)
//! is `cargo run --release -p order-fsm-benches -- --only engine`.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use order_fsm::{Engine, Lifecycle, MemoryStore, Purchase};
use order_fsm_benches::engine::{
    fixture, full_lifecycle, full_lifecycle_chained, hand_written_apply, HandTransition,
};

// The allocator of the programs in `examples/`: placing an order allocates (the shared
// purchase, the history), and glibc's malloc is slow at that on this machine (paired runs,
// 1M orders: 7.3 M vs 8.9 M transitions/s per-transition, 9.4 M vs 10.1 M chained).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

const ORDERS: u64 = 1_000_000;

fn million_orders(c: &mut Criterion) {
    let engine = Engine::new(Lifecycle::ecommerce());
    let purchase = Arc::new(Purchase::example());
    let mut group = c.benchmark_group("lifecycle");
    group.sample_size(10);
    group.throughput(Throughput::Elements(4 * ORDERS));
    group.bench_function("1M_orders_engine_and_memory_store", |b| {
        b.iter_with_large_drop(|| {
            let store = MemoryStore::with_capacity(ORDERS as usize);
            assert_eq!(
                full_lifecycle(&engine, &store, &purchase, ORDERS),
                4 * ORDERS
            );
            store
        })
    });
    group.bench_function("1M_orders_engine_chained_one_store_write_per_order", |b| {
        b.iter_with_large_drop(|| {
            let store = MemoryStore::with_capacity(ORDERS as usize);
            assert_eq!(
                full_lifecycle_chained(&engine, &store, &purchase, ORDERS),
                4 * ORDERS
            );
            store
        })
    });
    group.finish();
}

criterion_group!(benches, single_apply, million_orders);
criterion_main!(benches);
