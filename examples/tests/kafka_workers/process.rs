//! Worker processes (the examples' `worker` program) and an independent count
//! of what the transitions topic says about every order.

#![allow(unreachable_pub)]
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{
    ecommerce, Command, CommandSink, Lifecycle, MemoryStore, OrderId, Purchase, TransitionRecord,
};
use order_fsm_kafka::{KafkaCommandSink, KafkaConfig};
use rdkafka::Message;

use crate::common::read_topic;

/// Runs one scenario with worker processes at a time in a test binary: two at once starve
/// each other's heartbeats on a 2-core machine, and a session that expires under load
/// looks like a crash to the group (tansu 0.6.0 then never reassigns its partitions).
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// A worker process; killed when dropped, so a failing test leaves none behind.
pub struct WorkerProcess {
    child: Child,
    name: String,
}

impl WorkerProcess {
    /// Starts a worker on `config`'s topics and group, holding each state for `dwell_ms`.
    pub fn start(config: &KafkaConfig, name: &str, dwell_ms: u64) -> Self {
        let child = Process::new(env!("CARGO_BIN_EXE_worker"))
            // Only what is set here: the test run's environment names every service (the
            // worker would also start Elasticsearch and mail followers, or a PostgreSQL
            // store, from ORDER_FSM_ES_URL, ORDER_FSM_SMTP_URL, ORDER_FSM_STORE_URL).
            .env_clear()
            .env("ORDER_FSM_KAFKA_BROKERS", config.brokers())
            .env("ORDER_FSM_KAFKA_GROUP", config.group())
            .env("ORDER_FSM_KAFKA_COMMANDS_TOPIC", config.commands_topic())
            .env(
                "ORDER_FSM_KAFKA_TRANSITIONS_TOPIC",
                config.transitions_topic(),
            )
            .env("ORDER_FSM_KAFKA_DLQ_TOPIC", config.dead_letter_topic())
            .env("ORDER_FSM_KAFKA_STATE_TOPIC", config.state_topic())
            // The test provisioned the topics (the mock cluster has no CreateTopics).
            .env("ORDER_FSM_KAFKA_CREATE_TOPICS", "false")
            .env(
                "ORDER_FSM_KAFKA_DLQ_REDACT",
                config.dead_letter_redaction().to_string(),
            )
            .env(
                "ORDER_FSM_KAFKA_STALL_TIMEOUT_MS",
                config.stall_timeout().as_millis().to_string(),
            )
            .env(
                "RUST_LOG",
                std::env::var("ORDER_FSM_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .args(["--dwell-ms", &dwell_ms.to_string()])
            .args(["--property", "session.timeout.ms=6000"])
            .args(["--property", "heartbeat.interval.ms=500"])
            .args(["--property", "max.poll.interval.ms=10000"])
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
        eprintln!("started worker {name} (pid {})", child.id());
        Self {
            child,
            name: name.to_owned(),
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
        eprintln!("killed worker {}", self.name);
    }

    /// SIGTERM, then waits for the process to leave the group and exit (30 s at most).
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Process::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM {}", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the worker") {
                assert!(
                    status.success(),
                    "worker {} exited with {status}",
                    self.name
                );
                eprintln!("worker {} stopped", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Places `orders` new orders in chunks of 50, one chunk every `pause`, in a task.
pub fn place_orders(
    config: &KafkaConfig,
    orders: usize,
    pause: Duration,
) -> (Arc<HashSet<OrderId>>, tokio::task::JoinHandle<()>) {
    let commands: Vec<Command> = (0..orders)
        .map(|_| Command::place(Purchase::example()))
        .collect();
    let ids = Arc::new(commands.iter().map(Command::order_id).collect());
    let sink = KafkaCommandSink::new(config).expect("command sink");
    let task = tokio::spawn(async move {
        for chunk in commands.chunks(50) {
            sink.submit(chunk).await.expect("submit commands");
            tokio::time::sleep(pause).await;
        }
    });
    (ids, task)
}

/// What the transitions topic says, read by a reader of its own.
pub struct Outcome {
    /// Orders of the test that reached `Completed`.
    pub completed: usize,
    /// Orders of the test not (yet) in a terminal state, by state name.
    pub unfinished: HashMap<String, usize>,
    /// Orders of the test with no record at all.
    pub missing: usize,
    /// `(order, version)` pairs published with two different contents.
    pub conflicting: usize,
    /// Records read.
    pub records: usize,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "completed {}, unfinished {:?}, missing {}, conflicting {}, records {}",
            self.completed, self.unfinished, self.missing, self.conflicting, self.records
        )
    }
}

/// Projects the transitions topic into a fresh store and counts `ids`' final states.
pub async fn outcome(config: &KafkaConfig, ids: &HashSet<OrderId>) -> Outcome {
    let lifecycle = Lifecycle::ecommerce();
    let store = MemoryStore::new();
    let mut contents = HashMap::new();
    let mut conflicting = 0;
    let messages = read_topic(config, config.transitions_topic()).await;
    for message in &messages {
        let record: TransitionRecord =
            serde_json::from_slice(message.payload().expect("payload")).expect("a record");
        let content = (
            record.event_id,
            record.from.clone(),
            record.to.clone(),
            record.event.clone(),
        );
        match contents.entry((record.order_id, record.version)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(content);
            }
            std::collections::hash_map::Entry::Occupied(seen) => {
                if *seen.get() != content {
                    conflicting += 1;
                    eprintln!(
                        "order {} version {}: {:?} and {:?}",
                        record.order_id,
                        record.version,
                        seen.get(),
                        content
                    );
                }
            }
        }
        store.project(&lifecycle, &record);
    }
    let (mut completed, mut missing) = (0, 0);
    let mut unfinished: HashMap<String, usize> = HashMap::new();
    for id in ids {
        match store.get_now(*id) {
            None => missing += 1,
            Some(order) if order.status == ecommerce::COMPLETED => completed += 1,
            Some(order) => {
                *unfinished
                    .entry(lifecycle.state_name(order.status).to_owned())
                    .or_default() += 1
            }
        }
    }
    Outcome {
        completed,
        unfinished,
        missing,
        conflicting,
        records: messages.len(),
    }
}

/// Waits until every order of `ids` completed (or `timeout` passes), then asserts that
/// none is stuck, lost, or has an `(order, version)` with two contents.
pub async fn assert_all_complete(config: &KafkaConfig, ids: &HashSet<OrderId>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let last = loop {
        let now = outcome(config, ids).await;
        if now.completed == ids.len() || Instant::now() > deadline {
            break now;
        }
        eprintln!("waiting: {now}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    eprintln!("final: {last}");
    assert_eq!(last.conflicting, 0, "no (order, version) with two contents");
    assert_eq!(last.missing, 0, "no order lost: {last}");
    assert_eq!(last.completed, ids.len(), "no order stuck: {last}");
}
