//! Provisioning of the adapter's four topics.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::ClientContext;
use tokio::time::Instant;

use crate::{KafkaConfig, KafkaError};

/// The partition ids of `topic`, as the brokers' metadata lists them (none while the topic
/// does not exist yet).
pub(crate) fn partition_ids(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    use rdkafka::consumer::Consumer;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

fn names(config: &KafkaConfig) -> [&str; 4] {
    [
        config.commands_topic(),
        config.transitions_topic(),
        config.dead_letter_topic(),
        config.state_topic(),
    ]
}

/// How long provisioning waits for the cluster by default: connecting, finding the
/// controller, the request and its reply. A librdkafka `socket.timeout.ms` set with
/// [`KafkaConfig::with_property`] replaces it.
const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a wait for the cluster is logged.
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(3);

/// What provisioning does, for logs and errors ("cannot create topics on Kafka at ...").
const ACTION: &str = "create topics";

/// Creates the commands, transitions, dead-letter and state topics of `config` with
/// `partitions` partitions each (replication factor 1) through the admin API; topics that
/// already exist are left as they are.
///
/// The state topic is asked for `cleanup.policy=compact`, which keeps restores of
/// [`crate::KafkaStateLog`] short on a long-lived topic; a broker that refuses the setting
/// gets the topic without it (correctness never depends on compaction).
///
/// The dead-letter topic gets `retention.ms` when the config sets
/// [`KafkaConfig::with_dead_letter_retention`]. A broker that refuses it fails the call:
/// letters that may hold customer data are not kept longer than asked without a word. An
/// existing dead-letter topic keeps its settings.
///
/// # Time-out
/// Each admin request gives up when the cluster has not answered within 10 s, or within
/// the `socket.timeout.ms` property when the config sets one (librdkafka's own default for
/// admin requests). While it waits, a `warn` event every 3 s names the brokers.
///
/// # Errors
/// [`KafkaError::Unreachable`] (retryable) when the cluster does not answer in time, naming
/// the brokers tried; [`KafkaError::Unavailable`] when it answers with a temporary failure;
/// [`KafkaError::Fatal`] when it refuses (authorization, invalid partition count);
/// [`KafkaError::Config`] for an invalid property.
pub async fn provision_topics(config: &KafkaConfig, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config(&[]).create()?;
    let timeout = admin_timeout(config);
    // The controller gets most of the time-out to create the topics, so that a slow
    // creation is reported by the broker (per topic) rather than as a local time-out.
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout.mul_f64(0.8)));
    let state_topic = config.state_topic();
    let retention_ms = config
        .dead_letter_retention()
        .map(|retention| retention.as_millis().to_string());
    let topics: Vec<NewTopic<'_>> = names(config)
        .into_iter()
        .map(|name| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            match &retention_ms {
                _ if name == state_topic => topic.set("cleanup.policy", "compact"),
                Some(ms) if name == config.dead_letter_topic() => topic.set("retention.ms", ms),
                _ => topic,
            }
        })
        .collect();
    let mut state_refused = None;
    for result in create(&admin, config, &topics, &options, timeout).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) if topic == state_topic => state_refused = Some(code),
            Err((topic, code)) => return Err(refused(&topic, code)),
        }
    }
    if let Some(code) = state_refused {
        tracing::debug!(
            topic = %state_topic,
            %code,
            "the broker refused a compacted state topic; creating it without cleanup.policy"
        );
        let plain = [NewTopic::new(
            state_topic,
            partitions,
            TopicReplication::Fixed(1),
        )];
        for result in create(&admin, config, &plain, &options, timeout).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(refused(&topic, code)),
            }
        }
    }
    Ok(())
}

/// The admin request time-out: `socket.timeout.ms` when set, else the default.
fn admin_timeout(config: &KafkaConfig) -> Duration {
    config
        .properties()
        .get("socket.timeout.ms")
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(DEFAULT_ADMIN_TIMEOUT, Duration::from_millis)
}

/// One CreateTopics request, logging at `warn` while the cluster keeps it waiting. A
/// request that fails as a whole with a retryable error was not answered (no broker
/// reachable, no controller, the time-out passed): that is [`KafkaError::Unreachable`].
async fn create(
    admin: &AdminClient<DefaultClientContext>,
    config: &KafkaConfig,
    topics: &[NewTopic<'_>],
    options: &AdminOptions,
    timeout: Duration,
) -> Result<Vec<TopicResult>, KafkaError> {
    let started = Instant::now();
    let request = admin.create_topics(topics, options);
    tokio::pin!(request);
    let mut ticks = tokio::time::interval_at(started + WAIT_LOG_INTERVAL, WAIT_LOG_INTERVAL);
    let outcome = loop {
        tokio::select! {
            outcome = &mut request => break outcome,
            _ = ticks.tick() => tracing::warn!(
                brokers = %config.brokers(),
                waited_s = started.elapsed().as_secs(),
                timeout_s = timeout.as_secs_f64(),
                "no answer yet from Kafka; waiting to {ACTION}"
            ),
        }
    };
    outcome.map_err(|error| match KafkaError::from(error) {
        KafkaError::Unavailable(source) => KafkaError::Unreachable {
            brokers: config.brokers().to_owned(),
            action: ACTION,
            waited: started.elapsed(),
            source: Box::new(source),
        },
        other => other,
    })
}

fn refused(topic: &str, code: RDKafkaErrorCode) -> KafkaError {
    tracing::error!(%topic, %code, "topic creation failed");
    ClientError::AdminOp(code).into()
}

/// Creates `config`'s four topics on librdkafka's mock cluster, which lacks the admin API
/// (and topic configs: the state topic is not compacted there, and the dead-letter topic
/// has no retention of its own).
///
/// # Errors
/// [`KafkaError::Fatal`] when the mock cluster refuses.
pub fn provision_mock_topics<C: ClientContext>(
    cluster: &MockCluster<'_, C>,
    config: &KafkaConfig,
    partitions: i32,
) -> Result<(), KafkaError> {
    for name in names(config) {
        cluster.create_topic(name, partitions, 1)?;
    }
    Ok(())
}
