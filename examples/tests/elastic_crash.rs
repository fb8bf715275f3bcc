//! Elasticsearch refusing connections while the worker is killed: with the worker's
//! Elasticsearch behind a gate that refuses connections (and cuts the open ones) for 10 s,
//! the worker process is SIGKILLed in the middle of the outage and started again; once
//! Elasticsearch is reachable, every transition is indexed, none twice. Before the
//! Elasticsearch sink became a follower with its own committed offsets, 9,998 of 10,000
//! transitions were indexed: recovery did not resend the 2 a killed worker had in flight.
//!
//! Separate processes on real services: tansu, worker processes, and an osmem-server of
//! this test's own behind the gate.

mod common;

use std::time::{Duration, Instant};

use common::gate::Gate;
use common::{kafka_args, place, provisioned, spawn, unique_prefix, until, PrivateElastic};
use order_fsm::testing::service_address;
use order_fsm_elastic::{ElasticBuilder, Queries};
use order_fsm_kafka::KafkaCommandSink;

const BEFORE: usize = 500;
const DURING: usize = 1_500;
const OUTAGE: Duration = Duration::from_secs(10);

/// `(transition documents, orders whose document says completed)`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_elasticsearch_refuses_connections_leaves_no_transition_unindexed() {
    let (Some(brokers), Some(_)) = (
        service_address("ORDER_FSM_KAFKA_BROKERS"),
        service_address("ORDER_FSM_ES_URL"),
    ) else {
        return;
    };
    let Some(elastic) = PrivateElastic::start() else {
        return;
    };
    let mut gate = Gate::open_to(elastic.url.trim_start_matches("http://"));
    let prefix = unique_prefix("es-crash");
    let config = provisioned(&brokers, &prefix).await;
    let group = format!("{prefix}workers");
    let es_url = gate.http_url();
    let mut args = vec![
        "--group",
        &group,
        "--workers",
        "2",
        "--es-url",
        &es_url,
        "--es-index-prefix",
        &prefix,
    ];
    // tansu 0.6.0 serves nothing to a fetch that starts inside a record batch (a follower
    // resuming mid-batch): one record per batch there. A short session, so that the
    // restarted worker gets the killed one's partitions within seconds.
    args.extend(["--property", "batch.num.messages=1"]);
    args.extend(["--property", "session.timeout.ms=6000"]);
    args.extend(["--property", "heartbeat.interval.ms=500"]);
    let args = kafka_args(&brokers, &prefix, &args);
    let worker = spawn(env!("CARGO_BIN_EXE_worker"), &args);
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

    // The outage: orders keep coming; halfway through, the worker is killed and restarted.
    gate.close();
    let down = Instant::now();
    let mut restarted = None;
    let mut worker = Some(worker);
    for round in 0..DURING / 100 {
        place(&commands, 100).await;
        if round == DURING / 200 {
            worker.take().expect("the first worker").signal("KILL");
            restarted = Some(spawn(env!("CARGO_BIN_EXE_worker"), &args));
            eprintln!(
                "worker killed {:.1} s into the outage",
                down.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    gate.open();
    eprintln!(
        "Elasticsearch reachable again after {:.1} s",
        down.elapsed().as_secs_f64()
    );
    let _restarted = restarted.expect("a restarted worker");

    let back = Instant::now();
    let all = BEFORE + DURING;
    let expected = (5 * all as u64, all as u64);
    let mut last = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    while last != expected {
        assert!(
            Instant::now() < deadline,
            "indexed {last:?} (transitions, completed orders) of {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = indexed(&queries).await;
    }
    eprintln!(
        "all {} transitions indexed {:.1} s after Elasticsearch came back",
        expected.0,
        back.elapsed().as_secs_f64()
    );
    // Settled: nothing more arrives, nothing twice (documents are keyed by order and version).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(indexed(&queries).await, expected);
}
