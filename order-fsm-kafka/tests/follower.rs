//! Followers of the transitions topic: every record reaches the sink, committed records are
//! not delivered again after a restart, a failing sink is retried while the lag shows, and
//! an undecodable record goes to the dead-letter topic.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{eventually, header, read_topic, Broker};
use order_fsm::testing::sample_records;
use order_fsm::{Error, MemorySink, OrderId, TransitionRecord, TransitionSink};
use order_fsm_kafka::{
    KafkaConfig, KafkaFollower, KafkaTransitionSink, HEADER_REASON, HEADER_TOPIC,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

/// A memory sink that refuses every batch (retryably) while `down` is set.
struct Outage {
    down: AtomicBool,
    accepted: MemorySink,
}

#[async_trait]
impl TransitionSink for Outage {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("test", "destination down"));
        }
        self.accepted.publish(records).await
    }
}

fn records_of(orders: usize) -> Vec<TransitionRecord> {
    (0..orders).flat_map(|_| sample_records()).collect()
}

fn keys(records: &[TransitionRecord]) -> HashSet<(OrderId, u64)> {
    records.iter().map(|r| (r.order_id, r.version)).collect()
}

struct Following {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<order_fsm_kafka::FollowerReport, Error>>,
    progress: order_fsm_kafka::FollowerProgress,
}

fn follow(config: &KafkaConfig, sink: Arc<dyn TransitionSink>) -> Following {
    let follower = KafkaFollower::builder(config, "test")
        .with_batch_size(50)
        .build()
        .expect("follower");
    let progress = follower.progress();
    let stop = CancellationToken::new();
    let task = tokio::spawn(follower.run(sink, stop.clone().cancelled_owned()));
    Following {
        stop,
        task,
        progress,
    }
}

impl Following {
    async fn stop(self) -> order_fsm_kafka::FollowerReport {
        self.stop.cancel();
        self.task.await.expect("follower task").expect("follower")
    }
}

async fn delivers_everything_once_per_commit(broker: Broker) {
    let config = broker.config("follower", 3).await;
    let transitions = KafkaTransitionSink::new(&config).unwrap();
    let first = records_of(40);
    transitions.publish(&first).await.unwrap();

    let sink = Arc::new(MemorySink::new());
    let following = follow(&config, sink.clone());
    eventually("the first 200 records", Duration::from_secs(30), || async {
        sink.records().len() >= first.len()
    })
    .await;
    let report = following.stop().await;
    assert_eq!(report.delivered, first.len() as u64);
    assert_eq!(keys(&sink.records()), keys(&first));

    // Restarted in the same group: only what was published since.
    let second = records_of(10);
    transitions.publish(&second).await.unwrap();
    let again = Arc::new(MemorySink::new());
    let following = follow(&config, again.clone());
    eventually("the next 50 records", Duration::from_secs(30), || async {
        again.records().len() >= second.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    following.stop().await;
    assert_eq!(
        keys(&again.records()),
        keys(&second),
        "committed records are not delivered again"
    );
    assert_eq!(again.records().len(), second.len());
}

async fn a_failing_destination_is_retried_and_its_lag_shows(broker: Broker) {
    let config = broker.config("follower-outage", 2).await;
    let transitions = KafkaTransitionSink::new(&config).unwrap();
    let sink = Arc::new(Outage {
        down: AtomicBool::new(true),
        accepted: MemorySink::new(),
    });
    let following = follow(&config, sink.clone());
    let records = records_of(30);
    transitions.publish(&records).await.unwrap();
    let progress = following.progress.clone();
    eventually(
        "the lag to show the outage",
        Duration::from_secs(30),
        || async { progress.lag() == records.len() as u64 && progress.retries() >= 2 },
    )
    .await;
    assert!(sink.accepted.records().is_empty());

    sink.down.store(false, Ordering::SeqCst);
    eventually(
        "every record after the outage",
        Duration::from_secs(30),
        || async { sink.accepted.records().len() >= records.len() },
    )
    .await;
    eventually(
        "the lag to drop to zero",
        Duration::from_secs(10),
        || async { progress.lag() == 0 },
    )
    .await;
    let report = following.stop().await;
    assert_eq!(keys(&sink.accepted.records()), keys(&records));
    assert!(report.retries >= 2);
}

async fn an_undecodable_record_is_dead_lettered_and_the_rest_delivered(broker: Broker) {
    let config = broker.config("follower-bad", 1).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", config.brokers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(config.transitions_topic())
                .key("bad")
                .payload("not a transition"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let records = records_of(2);
    KafkaTransitionSink::new(&config)
        .unwrap()
        .publish(&records)
        .await
        .unwrap();
    let sink = Arc::new(MemorySink::new());
    let following = follow(&config, sink.clone());
    eventually("the good records", Duration::from_secs(30), || async {
        sink.records().len() >= records.len()
    })
    .await;
    let report = following.stop().await;
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(keys(&sink.records()), keys(&records));
    let letters = read_topic(&config, config.dead_letter_topic()).await;
    assert_eq!(letters.len(), 1);
    let reason = header(&letters[0], HEADER_REASON).unwrap();
    assert!(reason.contains("undecodable transition record"), "{reason}");
    assert_eq!(
        header(&letters[0], HEADER_TOPIC).as_deref(),
        Some(config.transitions_topic())
    );
}

against_both!(
    delivers_everything_once_per_commit,
    a_failing_destination_is_retried_and_its_lag_shows,
    an_undecodable_record_is_dead_lettered_and_the_rest_delivered,
);
