//! Provisioning of the adapter's four topics.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::ClientContext;

use crate::{KafkaConfig, KafkaError};

fn names(config: &KafkaConfig) -> [&str; 4] {
    [
        config.commands_topic(),
        config.transitions_topic(),
        config.dead_letter_topic(),
        config.state_topic(),
    ]
}

/// Creates the commands, transitions, dead-letter and state topics of `config` with
/// `partitions` partitions each (replication factor 1) through the admin API; topics that
/// already exist are left as they are.
///
/// The state topic is asked for `cleanup.policy=compact`, which keeps restores of
/// [`crate::KafkaStateLog`] short on a long-lived topic; a broker that refuses the setting
/// gets the topic without it (correctness never depends on compaction).
///
/// # Errors
/// [`KafkaError::Transient`] when the brokers cannot be reached in time, [`KafkaError::Fatal`]
/// when they refuse (authorization, invalid partition count).
pub async fn provision_topics(config: &KafkaConfig, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config(&[]).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let state_topic = config.state_topic();
    let topics: Vec<NewTopic<'_>> = names(config)
        .into_iter()
        .map(|name| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            if name == state_topic {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let mut state_refused = None;
    for result in admin.create_topics(&topics, &options).await? {
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
        for result in admin.create_topics(&plain, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(refused(&topic, code)),
            }
        }
    }
    Ok(())
}

fn refused(topic: &str, code: RDKafkaErrorCode) -> KafkaError {
    tracing::error!(%topic, %code, "topic creation failed");
    ClientError::AdminOp(code).into()
}

/// Creates `config`'s four topics on librdkafka's mock cluster, which lacks the admin API
/// (and topic configs: the state topic is not compacted there).
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
