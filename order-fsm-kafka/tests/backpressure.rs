//! The command sink's back-pressure: past its backlog limit a submit is refused whole with
//! `Overloaded` (and a retry hint) until the workers' group has committed enough.

mod common;

use std::time::Duration;

use common::{eventually, Broker};
use order_fsm::{Command, CommandSink, Error, Purchase};
use order_fsm_kafka::KafkaCommandSink;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn placements(n: usize) -> Vec<Command> {
    (0..n)
        .map(|_| Command::place(Purchase::example()))
        .collect()
}

async fn refuses_past_the_limit_until_the_workers_commit(broker: Broker) {
    let config = broker.config("backpressure", 1).await;
    let sink = KafkaCommandSink::new(&config)
        .unwrap()
        .with_backlog_limit(&config, 10)
        .unwrap();
    // Nothing waits yet: even a request above the limit goes through.
    sink.submit(&placements(12)).await.unwrap();
    eventually("the backlog measured", Duration::from_secs(20), || async {
        sink.backlog() == Some(12)
    })
    .await;
    let refused = sink.submit(&placements(1)).await.unwrap_err();
    let Error::Overloaded {
        backlog,
        limit,
        retry_after,
    } = &refused
    else {
        panic!("expected Overloaded, got {refused:?}");
    };
    assert_eq!((*backlog, *limit), (13, 10));
    assert!(!retry_after.is_zero());
    assert!(refused.is_retryable());

    // The workers' group commits everything: the sink accepts again.
    let workers: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", config.brokers())
        .set("group.id", config.group())
        .create()
        .unwrap();
    let mut done = TopicPartitionList::new();
    done.add_partition_offset(config.commands_topic(), 0, Offset::Offset(12))
        .unwrap();
    workers.commit(&done, CommitMode::Sync).unwrap();
    eventually("the backlog to drain", Duration::from_secs(20), || async {
        sink.backlog() == Some(0)
    })
    .await;
    sink.submit(&placements(1)).await.unwrap();
}

against_both!(refuses_past_the_limit_until_the_workers_commit);
