//! The runner beside the engine in a plain loop: the same orders through the whole
//! lifecycle, once by the runner (in-memory source, store and sink, no dwell, 2 workers)
//! and once by the engine and an in-memory store on one thread, with no queue, no tasks and
//! no sink (the runner's no-dwell chain, one store write per order).

use std::sync::Arc;
use std::time::Instant;

use order_fsm::{
    Command, Dwell, Engine, Lifecycle, MemoryQueue, MemorySink, MemoryStore, Purchase, Runner,
};

use crate::engine::full_lifecycle_chained;
use crate::report::{Better, Comparison, Rounds, Spec};
use crate::{BoxError, Size};

const WORKERS: usize = 2;

fn engine_loop(orders: usize) -> f64 {
    let engine = Engine::new(Lifecycle::ecommerce());
    let purchase = Arc::new(Purchase::example());
    let store = MemoryStore::with_capacity(orders);
    let started = Instant::now();
    let transitions = full_lifecycle_chained(&engine, &store, &purchase, orders as u64);
    let rate = transitions as f64 / started.elapsed().as_secs_f64();
    drop(store);
    rate
}

async fn runner(orders: usize) -> Result<f64, BoxError> {
    let queue = MemoryQueue::new();
    queue.extend((0..orders).map(|_| Command::place(Purchase::example())));
    queue.close();
    let sink = Arc::new(MemorySink::counting());
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_store(Arc::new(MemoryStore::with_capacity(orders)))
        .with_sink(sink.clone())
        .with_workers(WORKERS)
        .with_auto_advance(Dwell::None)
        .build()?;
    let started = Instant::now();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await?;
    let elapsed = started.elapsed();
    if report.metrics.transitions != 4 * orders as u64 || sink.published() != 5 * orders as u64 {
        return Err(format!(
            "runner: {} transitions and {} records for {orders} orders",
            report.metrics.transitions,
            sink.published()
        )
        .into());
    }
    Ok(report.metrics.transitions as f64 / elapsed.as_secs_f64())
}

pub(crate) async fn compare(size: Size) -> Result<Vec<Comparison>, BoxError> {
    let (orders, rounds) = size.pick((1_000, 2), (100_000, 5), (250_000, 7));
    let mut r = Rounds::default();
    engine_loop(orders / 10 + 1);
    runner(orders / 10 + 1).await?;
    for round in 0..rounds {
        let (a, s) = if Rounds::anchor_first(round) {
            let a = engine_loop(orders);
            (a, runner(orders).await?)
        } else {
            let s = runner(orders).await?;
            (engine_loop(orders), s)
        };
        r.push(a, s);
    }
    Ok(vec![r.finish(Spec {
        id: "engine.runner".into(),
        title: "runner (in-memory source, store and sink, no dwell, 2 workers) vs the engine \
                in a plain loop on one thread"
            .into(),
        backend: "in process".into(),
        setup: format!("{} orders × 4 transitions", crate::data::count(orders)),
        unit: "transitions/s",
        better: Better::Higher,
        anchor: "engine + store loop".into(),
        subject: "`Runner`".into(),
        target: None,
        notes: vec![
            "README's absolute targets: 10 M transitions/s for the loop, 1 M for the runner".into(),
        ],
    })])
}
