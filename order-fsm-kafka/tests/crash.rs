//! A worker process is killed with SIGKILL in the middle of 10,000 orders and restarted:
//! every order completes, none is lost, none shows a transition twice.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{completed, eventually, read_topic, topic_len, topic_size, Broker};
use order_fsm::{ecommerce, Command, CommandSink, Lifecycle, OrderId, Purchase, TransitionRecord};
use order_fsm_kafka::{recover_store, KafkaCommandSink, KafkaConfig};
use rdkafka::Message;

const ORDERS: usize = 10_000;
/// Placement plus four transitions per order.
const RECORDS: i64 = 5 * ORDERS as i64;

/// Kills the worker process when dropped, so a failing test leaves none behind.
struct Worker(Child);

impl Worker {
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the worker");
        self.0.wait().expect("reap the worker");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(config: &KafkaConfig) -> Worker {
    let child = Process::new(env!("CARGO_BIN_EXE_order-fsm-kafka-worker"))
        .env("ORDER_FSM_KAFKA_BROKERS", config.brokers())
        .env("ORDER_FSM_KAFKA_GROUP", config.group())
        .env("ORDER_FSM_KAFKA_COMMANDS_TOPIC", config.commands_topic())
        .env(
            "ORDER_FSM_KAFKA_TRANSITIONS_TOPIC",
            config.transitions_topic(),
        )
        .env("ORDER_FSM_KAFKA_DLQ_TOPIC", config.dead_letter_topic())
        .args(["--property", "session.timeout.ms=6000"])
        .args(["--property", "heartbeat.interval.ms=500"])
        .args(
            config
                .properties()
                .iter()
                .flat_map(|(k, v)| ["--property".to_owned(), format!("{k}={v}")]),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the worker process");
    Worker(child)
}

async fn crash_and_restart(broker: Broker) {
    // 16 partitions: the mock cluster keeps only 5 MB per partition, and the test reads the
    // whole transitions topic back (50,000 records of about 600 bytes).
    // A short rebalance timeout (max.poll.interval.ms): the restarted worker's join waits
    // that long at most for the killed member.
    let config = broker
        .config("crash", 16)
        .await
        .with_property("max.poll.interval.ms", "10000");
    let commands: Vec<Command> = (0..ORDERS)
        .map(|_| Command::place(Purchase::example()))
        .collect();
    let ids: Arc<HashSet<OrderId>> = Arc::new(commands.iter().map(Command::order_id).collect());

    let mut worker = start_worker(&config);
    // Produce while the worker consumes, in paced chunks, so the kill lands mid-stream.
    // Progress is read from the watermarks (on tansu they count batches, which the test
    // config makes one record each).
    let sink = KafkaCommandSink::new(&config).expect("command sink");
    let producer = tokio::spawn(async move {
        for chunk in commands.chunks(250) {
            sink.submit(chunk).await.expect("submit commands");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let topic = config.transitions_topic().to_owned();
    eventually(
        "the first worker's progress",
        Duration::from_secs(120),
        || {
            let (config, topic) = (config.clone(), topic.clone());
            async move { topic_size(&config, &topic).await >= RECORDS / 4 }
        },
    )
    .await;
    worker.kill();
    let at_kill = topic_len(&config, &topic).await;
    assert!(
        at_kill < RECORDS,
        "the kill must land mid-stream ({at_kill} of {RECORDS} records were out)"
    );
    eprintln!("killed the worker with {at_kill} of {RECORDS} records published");

    // Restart once the killed member's session (6 s) has expired: tansu 0.6.0 does not
    // finish a rebalance that a new member starts while a dead member's session is alive.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut worker = start_worker(&config);
    producer.await.expect("producer task");
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    eventually("every order to complete", Duration::from_secs(120), || {
        let (config, lifecycle, ids) = (config.clone(), Arc::clone(&lifecycle), Arc::clone(&ids));
        async move {
            let size = topic_size(&config, config.transitions_topic()).await;
            if size < RECORDS {
                eprintln!("{size} of {RECORDS} records published");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return false;
            }
            let recovered = recover_store(&config, lifecycle, Duration::from_secs(60))
                .await
                .expect("recover");
            let completed = completed(&recovered.store, &ids);
            eprintln!(
                "orders {} completed {completed} records {} duplicates {} incomplete {}",
                recovered.store.len(),
                recovered.records,
                recovered.duplicates,
                recovered.incomplete
            );
            recovered.store.len() == ORDERS && completed == ORDERS
        }
    })
    .await;
    worker.kill();

    // The store rebuilt from the topic: exactly one placement and four transitions each.
    let recovered = recover_store(&config, Arc::clone(&lifecycle), Duration::from_secs(60))
        .await
        .expect("recover");
    assert_eq!(
        recovered.store.len(),
        ORDERS,
        "no order is lost or invented"
    );
    for id in ids.iter() {
        let order = recovered.store.get_now(*id).expect("every order is there");
        assert_eq!(order.status, ecommerce::COMPLETED);
        assert_eq!(order.version, 5);
        assert_eq!(
            order.history.len(),
            4,
            "order {id}: four transitions, none twice"
        );
        let versions: Vec<u64> = order.history.iter().map(|h| h.version).collect();
        assert_eq!(versions, [2, 3, 4, 5]);
        let events: HashSet<_> = order.history.iter().map(|h| h.event_id).collect();
        assert_eq!(events.len(), 4, "order {id}: no event applied twice");
    }

    // The raw topic: every (order, version) present; repeats only from the crash window.
    let mut copies: HashMap<(OrderId, u64), u32> = HashMap::new();
    for message in read_topic(&config, config.transitions_topic()).await {
        let record: TransitionRecord =
            serde_json::from_slice(message.payload().expect("payload")).expect("a record");
        *copies.entry((record.order_id, record.version)).or_default() += 1;
    }
    assert_eq!(copies.len(), 5 * ORDERS, "every transition is in the topic");
    let repeated = copies.values().filter(|&&n| n > 1).count();
    eprintln!(
        "records read {}, duplicates {}, incomplete {}, (order, version) pairs published more than once {repeated}",
        recovered.records, recovered.duplicates, recovered.incomplete
    );
}

against_both!(crash_and_restart);
