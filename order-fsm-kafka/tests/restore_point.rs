//! An order that stays live for long does not make every later restore read the whole
//! history written since: its owner appends it again once its latest record lags far
//! behind, and the restore point moves on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Broker, Running};
use order_fsm::{Command, CommandSink, Lifecycle, MemoryStore, Purchase, Runner, StateLog};
use order_fsm_kafka::{KafkaCommandSink, KafkaStateLog};

async fn a_long_lived_order_does_not_pin_the_restore_point(broker: Broker) {
    let config = broker.config("restore-point", 1).await;
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(Arc::clone(&lifecycle))
        .with_store(store.clone())
        .with_state_log(Arc::new(
            KafkaStateLog::new(&config, Arc::clone(&lifecycle)).expect("state log"),
        ))
        .with_retention(Some(Duration::from_millis(100)))
        .build()
        .expect("runner");
    let running = Running::start(Arc::new(runner), &config);

    // One order stays in `processing` (no automatic advance); 3,000 more are placed and
    // cancelled, so they finish and are forgotten after their retention.
    let commands = KafkaCommandSink::new(&config).expect("command sink");
    let old = Command::place(Purchase::example());
    let old_id = old.order_id();
    commands.submit(&[old]).await.expect("submit");
    for _ in 0..30 {
        let placed: Vec<Command> = (0..100)
            .map(|_| Command::place(Purchase::example()))
            .collect();
        let cancels: Vec<Command> = placed
            .iter()
            .map(|c| Command::apply(c.order_id(), "cancel"))
            .collect();
        commands.submit(&placed).await.expect("submit");
        commands.submit(&cancels).await.expect("submit");
    }
    // Finished orders leave after 100 ms; checkpoints (every second) refresh the old one.
    eventually("only the old order left", Duration::from_secs(60), || {
        let left = store.len();
        async move { left == 1 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;

    let reader = KafkaStateLog::new(&config, lifecycle).expect("state log");
    let restored = reader.restore(0).await.expect("restore");
    let ids: Vec<_> = restored.iter().map(|c| c.state.id).collect();
    assert_eq!(ids, vec![old_id], "only the live order is restored");
    let read = reader.records_read_by_last_restore();
    eprintln!("restore read {read} records of a partition of about 6,000");
    assert!(
        read < 1_500,
        "the restore reads from the refreshed order on, not from its placement: {read}"
    );
}

against_both!(a_long_lived_order_does_not_pin_the_restore_point);
