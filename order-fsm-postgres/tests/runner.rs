//! A runner whose store is PostgreSQL (the shared-store path: read a batch's orders, publish,
//! compare-and-set the batch): every order ends completed in the database.

use std::sync::Arc;

use order_fsm::testing::service_address;
use order_fsm::{
    Command, Dwell, Lifecycle, MemoryQueue, MemorySink, OrderId, OrderStore, Purchase, Runner,
};
use order_fsm_postgres::PostgresBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_on_postgres_completes_every_order() {
    let Some(url) = service_address(order_fsm_postgres::URL_ENV) else {
        return;
    };
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let store = Arc::new(
        PostgresBuilder::new(url)
            .build(Arc::clone(&lifecycle))
            .await
            .expect("connect"),
    );
    const ORDERS: usize = 2_000;
    let queue = MemoryQueue::new();
    let commands: Vec<Command> = (0..ORDERS)
        .map(|_| Command::place(Purchase::example()))
        .collect();
    let ids: Vec<OrderId> = commands.iter().map(Command::order_id).collect();
    queue.extend(commands);
    queue.close();
    let sink = Arc::new(MemorySink::new());
    let runner = Runner::builder(Arc::clone(&lifecycle))
        .with_store(store.clone())
        .with_sink(sink.clone())
        .with_workers(4)
        .with_auto_advance(Dwell::None)
        .build()
        .expect("runner");
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .expect("run");
    assert_eq!(report.metrics.finished_in("completed"), ORDERS as u64);
    assert_eq!(
        sink.published(),
        5 * ORDERS as u64,
        "a placement and four transitions each"
    );
    let completed = lifecycle.state("completed").expect("ecommerce");
    for chunk in ids.chunks(500) {
        for (id, state) in chunk.iter().zip(store.get_many(chunk).await.expect("read")) {
            let state = state.unwrap_or_else(|| panic!("{id} lost"));
            assert_eq!((state.status, state.version), (completed, 5), "{id}");
        }
    }
    assert_eq!(queue.pending(), 0, "every command acknowledged");
}
