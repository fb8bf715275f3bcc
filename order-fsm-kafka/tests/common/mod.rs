//! Shared helpers of the integration tests: brokers, unique topics, reading topics back.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use order_fsm::{ecommerce, MemoryStore, OrderId};
use order_fsm_kafka::{provision_mock_topics, provision_topics, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A broker to test against.
pub enum Broker {
    /// librdkafka's in-process mock cluster.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A real broker (tansu in CI) at `ORDER_FSM_KAFKA_BROKERS`.
    External(String),
}

impl Broker {
    pub fn mock() -> Self {
        Self::Mock(MockCluster::new(1).expect("start the mock cluster"))
    }

    /// The real broker, or `None` (with the reason on stderr) when it is not configured
    /// outside CI. In CI (`CI=true`) a missing broker fails the test.
    pub fn external() -> Option<Self> {
        order_fsm::testing::service_address("ORDER_FSM_KAFKA_BROKERS").map(Self::External)
    }

    pub fn brokers(&self) -> String {
        match self {
            Self::Mock(cluster) => cluster.bootstrap_servers(),
            Self::External(brokers) => brokers.clone(),
        }
    }

    /// A config with unique topic and group names for `test`, topics created with
    /// `partitions` partitions.
    pub async fn config(&self, test: &str, partitions: i32) -> KafkaConfig {
        self.config_with(test, partitions, |config| config).await
    }

    /// [`Broker::config`], with `customize` applied before the topics are created.
    pub async fn config_with(
        &self,
        test: &str,
        partitions: i32,
        customize: impl FnOnce(KafkaConfig) -> KafkaConfig,
    ) -> KafkaConfig {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        let config = KafkaConfig::new(self.brokers())
            .with_group(format!("{test}-group-{id}"))
            .with_commands_topic(format!("{test}-orders-{id}"))
            .with_transitions_topic(format!("{test}-transitions-{id}"))
            .with_dead_letter_topic(format!("{test}-dlq-{id}"))
            .with_state_topic(format!("{test}-state-{id}"))
            .with_property("session.timeout.ms", "6000")
            .with_property("heartbeat.interval.ms", "500");
        // tansu 0.6.0 serves nothing when a fetch starts inside a record batch, so a
        // consumer resuming from a committed offset mid-batch would stall: one record per
        // batch there.
        let config = match self {
            Self::Mock(_) => config,
            Self::External(_) => config.with_property("batch.num.messages", "1"),
        };
        let config = customize(config);
        match self {
            Self::Mock(cluster) => provision_mock_topics(cluster, &config, partitions)
                .expect("create topics on the mock cluster"),
            Self::External(_) => provision_topics(&config, partitions)
                .await
                .expect("create topics through the admin API"),
        }
        config
    }
}

/// Runs `test` against the mock cluster and, when configured, the real broker.
#[macro_export]
macro_rules! against_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mock_cluster() {
                super::$name($crate::common::Broker::mock()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tansu() {
                if let Some(broker) = $crate::common::Broker::external() {
                    super::$name(broker).await;
                }
            }
        }
    )*};
}

/// Produces raw messages `(key, payload)` to `config`'s commands topic, as a producer other
/// than ours might (`None`: no key), and waits for each to be delivered.
pub async fn produce_commands(config: &KafkaConfig, messages: &[(Option<&str>, &[u8])]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", config.brokers())
        .create()
        .expect("producer");
    for &(key, payload) in messages {
        let record = FutureRecord::<str, [u8]>::to(config.commands_topic()).payload(payload);
        let record = match key {
            Some(key) => record.key(key),
            None => record,
        };
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("produce a raw command message");
    }
}

/// The dead-letter topic's messages once it holds at least `letters` (within `timeout`).
pub async fn await_dead_letters(
    config: &KafkaConfig,
    letters: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let dlq = config.dead_letter_topic().to_owned();
    let what = format!("{letters} dead letters");
    eventually(&what, timeout, || {
        let (config, dlq) = (config.clone(), dlq.clone());
        async move { read_topic(&config, &dlq).await.len() >= letters }
    })
    .await;
    read_topic(config, &dlq).await
}

/// Every message of `topic` up to the high watermarks at the time of the call.
pub async fn read_topic(config: &KafkaConfig, topic: &str) -> Vec<OwnedMessage> {
    let (brokers, topic) = (config.brokers().to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .expect("reader task")
}

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("create reader")
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect()
}

fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<OwnedMessage> {
    let consumer = consumer(brokers);
    let mut list = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for p in partitions(&consumer, topic) {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            remaining.insert(p, high);
            list.add_partition_offset(topic, p, Offset::Offset(low))
                .expect("add partition");
        }
    }
    consumer.assign(&list).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    // tansu's watermarks count batches, not records: after reaching them, read on until the
    // topic stays quiet.
    let mut quiet_since: Option<Instant> = None;
    while list.count() > 0 {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            if remaining.is_empty() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(750) {
                    break;
                }
            }
            continue;
        };
        quiet_since = None;
        let message = message.expect("consume");
        if remaining
            .get(&message.partition())
            .is_some_and(|&h| message.offset() + 1 >= h)
        {
            remaining.remove(&message.partition());
        }
        out.push(message.detach());
    }
    out
}

/// Messages in `topic` so far, counted by reading them (tansu's watermarks count batches).
pub async fn topic_len(config: &KafkaConfig, topic: &str) -> i64 {
    read_topic(config, topic).await.len() as i64
}

/// Sum of the high watermarks of `topic`'s partitions (messages written so far).
pub async fn topic_size(config: &KafkaConfig, topic: &str) -> i64 {
    let (brokers, topic) = (config.brokers().to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&brokers);
        partitions(&consumer, &topic)
            .into_iter()
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    })
    .await
    .expect("watermark task")
}

/// The value of header `name` of `message` as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// How many of `ids` are in `store` in the ecommerce lifecycle's `Completed` state.
pub fn completed(store: &MemoryStore, ids: &HashSet<OrderId>) -> usize {
    ids.iter()
        .filter(|id| {
            store
                .get_now(**id)
                .is_some_and(|o| o.status == ecommerce::COMPLETED)
        })
        .count()
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A runner reading a Kafka source in a task, until [`Running::stop`].
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<order_fsm::RunReport, order_fsm::Error>>,
}

impl Running {
    /// Starts a runner of the ecommerce lifecycle without dwell on `config`'s commands
    /// topic, dead-lettering to its dead-letter topic, keeping orders in `store` (a fresh
    /// one when `None`).
    pub fn dead_lettering(
        config: &KafkaConfig,
        store: Option<std::sync::Arc<MemoryStore>>,
    ) -> Self {
        let mut runner = order_fsm::Runner::builder(order_fsm::Lifecycle::ecommerce())
            .with_dead_letters(std::sync::Arc::new(
                order_fsm_kafka::KafkaDeadLetterSink::new(config).expect("dlq sink"),
            ))
            .with_auto_advance(order_fsm::Dwell::None);
        if let Some(store) = store {
            runner = runner.with_store(store);
        }
        Self::start(std::sync::Arc::new(runner.build().expect("runner")), config)
    }

    /// Starts `runner` on a new source of `config`'s commands topic.
    pub fn start(runner: std::sync::Arc<order_fsm::Runner>, config: &KafkaConfig) -> Self {
        let source = order_fsm_kafka::KafkaSource::new(config).expect("source");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            runner
                .run(source, async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    /// Shuts the runner down and returns its report.
    pub async fn stop(self) -> order_fsm::RunReport {
        let _ = self.stop.send(());
        self.task.await.expect("runner task").expect("runner")
    }
}
