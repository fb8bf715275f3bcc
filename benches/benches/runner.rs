//! (c) the runner with in-memory source, store and sink and no dwell time.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use order_fsm::{Command, Dwell, Lifecycle, MemoryQueue, MemorySink, Purchase, Runner};

const ORDERS: usize = 250_000;

fn runner(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("runner");
    group.sample_size(10);
    group.throughput(Throughput::Elements(4 * ORDERS as u64));
    group.bench_function("memory_source_store_sink_no_dwell", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let queue = MemoryQueue::new();
                queue.extend((0..ORDERS).map(|_| Command::place(Purchase::example())));
                queue.close();
                let sink = Arc::new(MemorySink::counting());
                let runner = Runner::builder(Lifecycle::ecommerce())
                    .with_sink(sink.clone())
                    .with_workers(2)
                    .with_auto_advance(Dwell::None)
                    .build()
                    .unwrap();
                let start = Instant::now();
                let report = runner
                    .run(queue.subscribe(), std::future::pending())
                    .await
                    .unwrap();
                total += start.elapsed();
                assert_eq!(report.metrics.transitions, 4 * ORDERS as u64);
                assert_eq!(sink.published(), 5 * ORDERS as u64);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, runner);
criterion_main!(benches);
