//! Two runners in one consumer group; one leaves mid-stream; nothing is lost.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Broker};
use order_fsm::{
    ecommerce, Command, CommandSink, Dwell, Lifecycle, MemoryStore, OrderId, Purchase, Runner,
};
use order_fsm_kafka::{KafkaCommandSink, KafkaSource};
use tokio::sync::oneshot;

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
    let (stop_a, stopped_a) = oneshot::channel::<()>();
    let (stop_b, stopped_b) = oneshot::channel::<()>();
    let source_a = KafkaSource::new(&config).expect("source a");
    let source_b = KafkaSource::new(&config).expect("source b");
    let task_a = tokio::spawn({
        let a = Arc::clone(&a);
        async move {
            a.run(source_a, async {
                let _ = stopped_a.await;
            })
            .await
        }
    });
    let task_b = tokio::spawn({
        let b = Arc::clone(&b);
        async move {
            b.run(source_b, async {
                let _ = stopped_b.await;
            })
            .await
        }
    });

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
    let _ = stop_b.send(());
    let report_b = task_b.await.expect("task b").expect("runner b");
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
        let done = ids.iter().all(|id| {
            store
                .get_now(*id)
                .is_some_and(|o| o.status == ecommerce::COMPLETED)
        });
        async move { done }
    })
    .await;
    let _ = stop_a.send(());
    let report_a = task_a.await.expect("task a").expect("runner a");
    assert!(report_a.acked > 0);
    for id in &ids {
        let order = store.get_now(*id).expect("nothing lost");
        assert_eq!(order.history.len(), 4, "no transition applied twice");
    }
}

against_both!(one_member_leaves);
