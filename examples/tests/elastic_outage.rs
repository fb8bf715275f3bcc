//! Elasticsearch out of the acknowledgement path: with the worker's Elasticsearch server
//! paused (SIGSTOP) for 30 s, orders placed meanwhile still complete; after SIGCONT the
//! Elasticsearch follower catches up and every transition is indexed exactly once.
//!
//! Separate processes on real services: tansu, a worker process, and an osmem-server of
//! this test's own (so pausing it disturbs no other test).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{
    kafka_args, place, provisioned, read_transitions, spawn, unique_prefix, until, PrivateElastic,
};
use order_fsm::testing::service_address;
use order_fsm::OrderId;
use order_fsm_elastic::{ElasticBuilder, Queries};
use order_fsm_kafka::KafkaCommandSink;

const BEFORE: usize = 200;
const DURING: usize = 1_500;
const PAUSE: Duration = Duration::from_secs(30);

async fn indexed(queries: &Queries) -> (u64, u64) {
    let _ = queries.refresh().await;
    let transitions = queries.count_transitions().await.unwrap_or(0);
    let completed = queries
        .orders_per_status()
        .await
        .unwrap_or_default()
        .iter()
        .find(|t| t.key == "completed")
        .map_or(0, |t| t.count);
    (transitions, completed)
}

/// Orders completed according to the transitions topic (read from the start until it
/// holds `records`, in a blocking task).
async fn completed_orders(brokers: &str, topic: &str, records: usize) -> usize {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let records = read_transitions(&brokers, &topic, records);
        let completed: HashSet<OrderId> = records
            .iter()
            .filter(|r| &*r.record.to == "completed")
            .map(|r| r.record.order_id)
            .collect();
        completed.len()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_complete_while_elasticsearch_is_paused_and_each_transition_is_indexed_once() {
    let (Some(brokers), Some(_)) = (
        service_address("ORDER_FSM_KAFKA_BROKERS"),
        service_address("ORDER_FSM_ES_URL"),
    ) else {
        return;
    };
    let Some(elastic) = PrivateElastic::start() else {
        return;
    };
    let prefix = unique_prefix("es-outage");
    let config = provisioned(&brokers, &prefix).await;
    let group = format!("{prefix}workers");
    let mut args = vec![
        "--group",
        &group,
        "--workers",
        "2",
        "--es-url",
        &elastic.url,
        "--es-index-prefix",
        &prefix,
    ];
    // tansu 0.6.0 serves nothing to a fetch that starts inside a record batch (a follower
    // resuming mid-batch): one record per batch there.
    args.extend(["--property", "batch.num.messages=1"]);
    let _worker = spawn(
        env!("CARGO_BIN_EXE_worker"),
        &kafka_args(&brokers, &prefix, &args),
    );
    let queries = ElasticBuilder::new(elastic.url.clone())
        .with_index_prefix(prefix.clone())
        .build_queries()
        .await
        .unwrap();
    let commands = KafkaCommandSink::new(&config).unwrap();

    place(&commands, BEFORE).await;
    until(
        "the first orders indexed",
        Duration::from_secs(120),
        || async { indexed(&queries).await == (5 * BEFORE as u64, BEFORE as u64) },
    )
    .await;

    elastic.process.signal("STOP");
    let paused = Instant::now();
    // A steady stream through most of the pause: 100 orders every 0.5 s.
    let placing = Instant::now();
    for _ in 0..DURING / 100 {
        place(&commands, 100).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let placed_in = placing.elapsed();
    let all = 5 * (BEFORE + DURING);
    until("every order to complete", PAUSE, || async {
        completed_orders(&brokers, config.transitions_topic(), all).await == BEFORE + DURING
    })
    .await;
    let completed_in = paused.elapsed();
    assert!(
        completed_in < PAUSE,
        "the orders placed during the pause completed {:.1} s after it began, after it ended",
        completed_in.as_secs_f64()
    );
    eprintln!(
        "{DURING} orders placed over {:.1} s during the pause; all complete {:.1} s into it",
        placed_in.as_secs_f64(),
        completed_in.as_secs_f64()
    );
    tokio::time::sleep(PAUSE.saturating_sub(paused.elapsed())).await;
    elastic.process.signal("CONT");

    let resumed = Instant::now();
    let expected = (all as u64, (BEFORE + DURING) as u64);
    until(
        "the follower to catch up",
        Duration::from_secs(120),
        || async { indexed(&queries).await == expected },
    )
    .await;
    eprintln!(
        "Elasticsearch caught up {:.1} s after SIGCONT",
        resumed.elapsed().as_secs_f64()
    );
    // Settled: nothing more arrives, nothing twice (documents are keyed by order and version).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(indexed(&queries).await, expected);
}
