//! Orders restored from the state topic remember rejected commands: redelivered after a
//! restart (a new runner with an empty store), a rejected command stays rejected even once
//! the order could accept it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, read_topic, Broker, Running};
use order_fsm::{
    ecommerce, Command, CommandSink, EventId, Lifecycle, MemoryStore, OrderId, Purchase, Runner,
};
use order_fsm_kafka::{
    KafkaCommandSink, KafkaConfig, KafkaDeadLetterSink, KafkaStateLog, KafkaTransitionSink,
};

/// Runs a runner (no automatic advance, its own state log) over `store` until `done` holds
/// for it.
async fn run_until(
    config: &KafkaConfig,
    store: Arc<MemoryStore>,
    what: &str,
    done: impl Fn(&MemoryStore) -> bool,
) {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let log = KafkaStateLog::new(config, Arc::clone(&lifecycle)).expect("state log");
    let runner = Runner::builder(lifecycle)
        .with_store(store.clone())
        .with_state_log(Arc::new(log))
        .with_sink(Arc::new(KafkaTransitionSink::new(config).expect("sink")))
        .with_dead_letters(Arc::new(KafkaDeadLetterSink::new(config).expect("dlq")))
        .build()
        .expect("runner");
    let running = Running::start(Arc::new(runner), config);
    eventually(what, Duration::from_secs(60), || {
        let ok = done(&store);
        async move { ok }
    })
    .await;
    running.stop().await;
}

fn ship(order_id: OrderId, event_id: EventId) -> Command {
    Command::Apply {
        order_id,
        event_id,
        event: "ship".into(),
        expected_version: None,
        reason: None,
        actor: None,
    }
}

async fn rejected_commands_survive_a_restart(broker: Broker) {
    let config = broker.config("recovery", 2).await;
    let commands = KafkaCommandSink::new(&config).expect("command sink");
    let place = Command::place(Purchase::example());
    let order = place.order_id();
    let ship_id = EventId::random();

    // First life: the order is placed, then `ship` arrives too early and is rejected.
    commands
        .submit(&[place, ship(order, ship_id)])
        .await
        .expect("submit");
    let first = Arc::new(MemoryStore::new());
    run_until(&config, first.clone(), "the early ship rejected", |s| {
        s.get_now(order)
            .is_some_and(|o| o.rejected.contains(&ship_id))
    })
    .await;
    let dlq = config.dead_letter_topic().to_owned();
    eventually("one dead letter", Duration::from_secs(30), || {
        let (config, dlq) = (config.clone(), dlq.clone());
        async move { read_topic(&config, &dlq).await.len() == 1 }
    })
    .await;

    // A restart: a new runner with an empty store restores the order from the state topic.
    // Second life: the order moves to `preparing`, where `ship` is allowed; the rejected
    // command is redelivered (same event id), then a fresh `ship` follows. The redelivered
    // one must stay rejected (a duplicate, not dead-lettered again); the fresh one ships.
    let fresh_ship = EventId::random();
    commands
        .submit(&[
            Command::apply(order, "prepare"),
            ship(order, ship_id),
            ship(order, fresh_ship),
        ])
        .await
        .expect("submit");
    let store = Arc::new(MemoryStore::new());
    // One partition key, so the three are applied in order: version 3 means all were seen.
    run_until(&config, store.clone(), "the fresh ship applied", |s| {
        s.get_now(order).is_some_and(|o| o.version == 3)
    })
    .await;
    let state = store.get_now(order).expect("the order");
    assert_eq!(state.status, ecommerce::SHIPPED);
    assert_eq!(
        state.rejected,
        vec![ship_id],
        "the restored state kept the rejection"
    );
    let shipped_by = state.history.last().expect("history").event_id;
    assert_eq!(
        shipped_by, fresh_ship,
        "the redelivered ship stayed rejected"
    );
    assert_eq!(
        read_topic(&config, &dlq).await.len(),
        1,
        "the redelivered ship was not dead-lettered again"
    );
}

against_both!(rejected_commands_survive_a_restart);
