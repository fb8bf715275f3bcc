//! The core conformance suites for the source and the transition sink.

mod common;

use std::time::Duration;

use common::{read_topic, Broker};
use order_fsm::testing::{sink_conformance, source_conformance, Repeats};
use order_fsm::{CommandSink, CommandSource, TransitionRecord};
use order_fsm_kafka::{KafkaCommandSink, KafkaSource, KafkaTransitionSink};
use rdkafka::Message;

async fn source(broker: Broker) {
    let config = broker.config("source-conformance", 3).await;
    let commands = KafkaCommandSink::new(&config).expect("command sink");
    source_conformance(
        |batch| {
            let commands = commands.clone();
            async move { commands.submit(&batch).await }
        },
        || {
            let config = config.clone();
            async move {
                let source = KafkaSource::new(&config)?;
                Ok(Box::new(source) as Box<dyn CommandSource>)
            }
        },
        Duration::from_secs(10),
    )
    .await;
}

async fn sink(broker: Broker) {
    let config = broker.config("sink-conformance", 3).await;
    let sink = KafkaTransitionSink::new(&config).expect("transition sink");
    sink_conformance(&sink, Repeats::Appended, |order_id| {
        let config = config.clone();
        async move {
            Ok(read_topic(&config, config.transitions_topic())
                .await
                .iter()
                .filter_map(|m| serde_json::from_slice::<TransitionRecord>(m.payload()?).ok())
                .filter(|r| r.order_id == order_id)
                .collect())
        }
    })
    .await;
}

against_both!(source, sink);
