//! A read model in another process: follows the transitions topic into a store and a watch
//! hub, so an intake can answer `GetOrder`, `ListOrders` and `WatchOrder`.

use std::sync::Arc;

use order_fsm::{Lifecycle, MemoryStore, TransitionRecord, TransitionSink};
use order_fsm_grpc::WatchHub;
use order_fsm_kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

/// Applies every record of the transitions topic, from the beginning, to `store` and
/// `hub`, until `shutdown` completes. Each follower reads the whole topic (its own group).
///
/// # Errors
/// Consumer creation or subscription failures.
pub async fn follow(
    kafka: &KafkaConfig,
    lifecycle: Arc<Lifecycle>,
    store: Arc<MemoryStore>,
    hub: WatchHub,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), rdkafka::error::KafkaError> {
    // The adapter's reader settings: without its short fetch backoff librdkafka would pause
    // for 1 s each time this (decoding, so slower) reader drains its prefetch queue.
    let consumer: StreamConsumer = kafka
        .reader_client_config()
        .set(
            "group.id",
            format!("order-fsm-read-model-{}", order_fsm::EventId::random()),
        )
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[kafka.transitions_topic()])?;
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "transitions topic");
                continue;
            }
        };
        let Some(Ok(record)) = message
            .payload()
            .map(serde_json::from_slice::<TransitionRecord>)
        else {
            tracing::warn!(
                offset = message.offset(),
                "unreadable transition record skipped"
            );
            continue;
        };
        if store.project(&lifecycle, &record) {
            let _ = hub.publish(std::slice::from_ref(&record)).await;
        }
    }
}
