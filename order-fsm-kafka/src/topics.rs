//! Provisioning of the adapter's three topics.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::ClientContext;

use crate::{KafkaConfig, KafkaError};

fn names(config: &KafkaConfig) -> [&str; 3] {
    [
        config.commands_topic(),
        config.transitions_topic(),
        config.dead_letter_topic(),
    ]
}

/// Creates the commands, transitions and dead-letter topics of `config` with `partitions`
/// partitions each (replication factor 1) through the admin API; topics that already exist
/// are left as they are.
///
/// # Errors
/// [`KafkaError::Transient`] when the brokers cannot be reached in time, [`KafkaError::Fatal`]
/// when they refuse (authorization, invalid partition count).
pub async fn provision_topics(config: &KafkaConfig, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config(&[]).create()?;
    let topics: Vec<NewTopic<'_>> = names(config)
        .into_iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, %code, "topic creation failed");
                return Err(ClientError::AdminOp(code).into());
            }
        }
    }
    Ok(())
}

/// Creates `config`'s three topics on librdkafka's mock cluster, which lacks the admin API.
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
