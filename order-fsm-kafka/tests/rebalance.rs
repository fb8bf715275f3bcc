//! Two runners in one consumer group; one leaves mid-stream; nothing is lost.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{completed, eventually, Broker, Running};
use order_fsm::{Command, CommandSink, Dwell, Lifecycle, MemoryStore, OrderId, Purchase, Runner};
use order_fsm_kafka::KafkaCommandSink;

const ORDERS: usize = 3_000;

async fn one_member_leaves(broker: Broker) {
    let config = broker.config("rebalance", 4).await;
    let store = Arc::new(MemoryStore::new());
    let runner = |store: Arc<MemoryStore>| {
        Runner::builder(Lifecycle::ecommerce())
            .store(store)
            .auto_advance(Dwell::None)
            .build()
            .expect("runner")
    };
    let (a, b) = (
        Arc::new(runner(store.clone())),
        Arc::new(runner(store.clone())),
    );
    let running_a = Running::start(Arc::clone(&a), &config);
    let running_b = Running::start(Arc::clone(&b), &config);

    let commands: Vec<Command> = (0..ORDERS)
        .map(|_| Command::place(Purchase::example()))
        .collect();
    let ids: HashSet<OrderId> = commands.iter().map(Command::order_id).collect();
    let sink = KafkaCommandSink::new(&config).expect("command sink");
    let producer = tokio::spawn(async move {
        for chunk in commands.chunks(100) {
            sink.submit(chunk).await.expect("submit");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });

    // Wait until both members have done some work, then let one of them leave.
    eventually("both members to work", Duration::from_secs(60), || {
        let (a, b) = (a.metrics().orders_placed, b.metrics().orders_placed);
        async move { a > 0 && b > 0 }
    })
    .await;
    let report_b = running_b.stop().await;
    eprintln!(
        "member b left after {} acknowledged commands",
        report_b.acked
    );
    assert!(
        report_b.acked > 0,
        "the leaving member worked before it left"
    );

    producer.await.expect("producer");
    eventually("every order to complete", Duration::from_secs(120), || {
        let done = completed(&store, &ids) == ids.len();
        async move { done }
    })
    .await;
    let report_a = running_a.stop().await;
    assert!(report_a.acked > 0);
    for id in &ids {
        let order = store.get_now(*id).expect("nothing lost");
        assert_eq!(order.history.len(), 4, "no transition applied twice");
    }
}

against_both!(one_member_leaves);
