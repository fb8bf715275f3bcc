//! Orders in PostgreSQL shared by worker processes (`worker --store postgres://...`):
//! - two workers on one group, one SIGKILLed mid-run and restarted: every order completes in
//!   the database, none lost or stuck, and no `(order, version)` was published with two
//!   contents; the intake (`intake --store`) answers `GET /orders/{id}` from the same rows;
//! - the database unreachable for 10 s under load: the worker stops acknowledging (its
//!   committed offsets stand still), then resumes and loses nothing.
//!
//! Separate processes on real services: tansu, PostgreSQL, worker and intake processes.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::gate::Gate;
use common::{
    committed_offsets, free_port, kafka_args, provisioned, read_transitions, spawn, topic_records,
    unique_prefix, until,
};
use order_fsm::testing::service_address;
use order_fsm::{Command, CommandSink, OrderId, Purchase};
use order_fsm_kafka::{KafkaCommandSink, KafkaConfig};
/// Order ids of a test, as PostgreSQL compares them (`order_id::text = ANY($1)`).
struct Ids(Vec<OrderId>);

impl Ids {
    fn as_text(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// A connection for the test's own queries, the schema migrated first (the workers may not
/// have started yet on a fresh database).
async fn connect(url: &str) -> tokio_postgres::Client {
    order_fsm_postgres::PostgresBuilder::new(url)
        .build(std::sync::Arc::new(order_fsm::Lifecycle::ecommerce()))
        .await
        .expect("migrate the schema");
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// How many of `ids` the database holds in each status.
async fn statuses(client: &tokio_postgres::Client, ids: &Ids) -> HashMap<String, i64> {
    client
        .query(
            "SELECT status, count(*) FROM order_fsm_orders
             WHERE order_id::text = ANY($1) GROUP BY status",
            &[&ids.as_text()],
        )
        .await
        .expect("count by status")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

async fn completed(client: &tokio_postgres::Client, ids: &Ids) -> i64 {
    statuses(client, ids)
        .await
        .get("completed")
        .copied()
        .unwrap_or(0)
}

fn placements(orders: usize) -> Vec<Command> {
    (0..orders)
        .map(|_| Command::place(Purchase::example()))
        .collect()
}

/// Places `commands` in chunks of 100, `pause` apart; returns their order ids.
async fn place_paced(config: &KafkaConfig, commands: Vec<Command>, pause: Duration) -> Ids {
    let sink = KafkaCommandSink::new(config).expect("command sink");
    let ids = commands.iter().map(Command::order_id).collect();
    for chunk in commands.chunks(100) {
        sink.submit(chunk).await.expect("placed");
        tokio::time::sleep(pause).await;
    }
    Ids(ids)
}

fn worker_args(brokers: &str, prefix: &str, group: &str, store: &str) -> Vec<String> {
    kafka_args(
        brokers,
        prefix,
        &[
            "--group",
            group,
            "--workers",
            "2",
            "--dwell-ms",
            "100",
            "--store",
            store,
            "--property",
            "session.timeout.ms=6000",
            "--property",
            "heartbeat.interval.ms=500",
            // One record per batch, so that the topic's watermarks count records on tansu.
            "--property",
            "batch.num.messages=1",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_postgres_lose_nothing_when_one_is_killed() {
    let (Some(brokers), Some(pg)) = (
        service_address("ORDER_FSM_KAFKA_BROKERS"),
        service_address("ORDER_FSM_POSTGRES_URL"),
    ) else {
        return;
    };
    const ORDERS: usize = 2_000;
    let prefix = unique_prefix("pg-crash");
    let config = provisioned(&brokers, &prefix).await;
    let group = format!("{prefix}workers");
    let args = worker_args(&brokers, &prefix, &group, &pg);
    let first = spawn(env!("CARGO_BIN_EXE_worker"), &args);
    let _second = spawn(env!("CARGO_BIN_EXE_worker"), &args);
    let db = connect(&pg).await;

    let commands = placements(ORDERS);
    let ids = Ids(commands.iter().map(Command::order_id).collect());
    let placing = {
        let config = config.clone();
        tokio::spawn(
            async move { place_paced(&config, commands, Duration::from_millis(100)).await },
        )
    };
    // Kill one worker once this test's orders are moving.
    until(
        "the first orders completed",
        Duration::from_secs(120),
        || async { completed(&db, &ids).await > 0 },
    )
    .await;
    first.kill();
    let at_kill = statuses(&db, &ids).await;
    eprintln!("killed one worker: {at_kill:?}");
    assert!(
        at_kill.get("completed").copied().unwrap_or(0) < ORDERS as i64,
        "the kill must land mid-run"
    );
    placing.await.expect("placing task");
    // Restart once the killed member's session (6 s) has expired (tansu 0.6.0 does not hand
    // a dead member's partitions over by itself; see order-fsm-kafka's README).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _restarted = spawn(env!("CARGO_BIN_EXE_worker"), &args);

    let started = Instant::now();
    until(
        "every order completed in PostgreSQL",
        Duration::from_secs(180),
        || async { completed(&db, &ids).await == ORDERS as i64 },
    )
    .await;
    eprintln!(
        "all {ORDERS} completed {:.1} s after the restart",
        started.elapsed().as_secs_f64()
    );
    let rows = db
        .query(
            "SELECT version, jsonb_array_length(history) FROM order_fsm_orders
             WHERE order_id::text = ANY($1)",
            &[&ids.as_text()],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), ORDERS, "one row per order, none lost");
    for row in &rows {
        let (version, history): (i64, i32) = (row.get(0), row.get(1));
        assert_eq!((version, history), (5, 4), "placed + four transitions each");
    }

    // The transitions topic: every (order, version) once in content, none missing. A
    // worker acknowledges after the database and then the topic, so the topic may still be
    // catching up with the database here: wait until it holds every order's five versions.
    let (b, topic) = (brokers.clone(), config.transitions_topic().to_owned());
    let wanted = 5 * ORDERS;
    let records = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = topic_records(&b, &topic) as usize;
            let records = read_transitions(&b, &topic, all);
            let distinct: std::collections::HashSet<(OrderId, u64)> = records
                .iter()
                .map(|l| (l.record.order_id, l.record.version))
                .collect();
            if distinct.len() >= wanted || Instant::now() > deadline {
                break records;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap();
    let mut contents: HashMap<(OrderId, u64), String> = HashMap::new();
    for located in &records {
        let r = &located.record;
        let content = serde_json::to_string(r).unwrap();
        let previous = contents.insert((r.order_id, r.version), content.clone());
        assert!(
            previous.is_none_or(|p| p == content),
            "({}, {}) published with two contents",
            r.order_id,
            r.version
        );
    }
    for id in &ids.0 {
        for version in 1..=5 {
            assert!(
                contents.contains_key(&(*id, version)),
                "{id} v{version} missing"
            );
        }
    }
    let orders: std::collections::HashSet<OrderId> = contents.keys().map(|k| k.0).collect();
    let max_version = contents.keys().map(|k| k.1).max();
    // A restore reads only this topic's partitions: a database shared with other runs
    // (earlier tests here) republished their orders into this topic before `source` scoped it.
    let mine: std::collections::HashSet<OrderId> = ids.0.iter().copied().collect();
    assert_eq!(
        orders, mine,
        "the topic holds this run's orders and no others"
    );
    eprintln!(
        "{} transition records for {} distinct (order, version), {} orders, max version {max_version:?}",
        records.len(),
        contents.len(),
        orders.len()
    );

    // The intake reads the same rows.
    let http_port = free_port();
    let http_addr = format!("127.0.0.1:{http_port}");
    let grpc_addr = format!("127.0.0.1:{}", free_port());
    let intake_args = kafka_args(
        &brokers,
        &prefix,
        &[
            "--store",
            &pg,
            "--http-addr",
            &http_addr,
            "--grpc-addr",
            &grpc_addr,
        ],
    );
    let _intake = spawn(env!("CARGO_BIN_EXE_intake"), &intake_args);
    let url = format!("http://{http_addr}/orders/{}", ids.0[0]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body: serde_json::Value = loop {
        match client.get(&url).send().await {
            Ok(answer) if answer.status() == 200 => break answer.json().await.expect("JSON"),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("the intake does not answer from PostgreSQL: {other:?}"),
        }
    };
    assert_eq!(body["status"], "completed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_stops_acknowledgements_and_loses_nothing() {
    let (Some(brokers), Some(pg)) = (
        service_address("ORDER_FSM_KAFKA_BROKERS"),
        service_address("ORDER_FSM_POSTGRES_URL"),
    ) else {
        return;
    };
    // The worker reaches PostgreSQL through a gate this test closes.
    let (before_host, rest) = pg.rsplit_once('@').expect("user@host in the URL");
    let (address, database) = rest.split_once('/').expect("a database in the URL");
    let mut gate = Gate::open_to(address);
    let gated = format!("{before_host}@127.0.0.1:{}/{database}", gate.port);
    let prefix = unique_prefix("pg-outage");
    let config = provisioned(&brokers, &prefix).await;
    let group = format!("{prefix}workers");
    let _worker = spawn(
        env!("CARGO_BIN_EXE_worker"),
        &worker_args(&brokers, &prefix, &group, &gated),
    );
    let db = connect(&pg).await;

    let first = place_paced(&config, placements(300), Duration::from_millis(10)).await;
    until(
        "the first orders completed",
        Duration::from_secs(120),
        || async { completed(&db, &first).await == 300 },
    )
    .await;

    gate.close();
    let down = Instant::now();
    let during = place_paced(&config, placements(300), Duration::from_millis(10)).await;
    // Let in-flight work settle, then watch: nothing is acknowledged while the store is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let commands_topic = config.commands_topic().to_owned();
    let offsets = |b: String, g: String, t: String| {
        tokio::task::spawn_blocking(move || committed_offsets(&b, &g, &t))
    };
    let held = offsets(brokers.clone(), group.clone(), commands_topic.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    let still = offsets(brokers.clone(), group.clone(), commands_topic.clone())
        .await
        .unwrap();
    assert_eq!(
        held, still,
        "no command acknowledged while PostgreSQL is unreachable"
    );
    assert!(
        completed(&db, &during).await < 300,
        "the orders placed during the outage cannot all be done"
    );
    gate.open();
    eprintln!(
        "PostgreSQL reachable again after {:.1} s",
        down.elapsed().as_secs_f64()
    );

    let back = Instant::now();
    until(
        "every order completed after the outage",
        Duration::from_secs(120),
        || async { completed(&db, &first).await == 300 && completed(&db, &during).await == 300 },
    )
    .await;
    eprintln!(
        "all 600 orders completed {:.1} s after PostgreSQL came back",
        back.elapsed().as_secs_f64()
    );
    let after = offsets(brokers, group, commands_topic).await.unwrap();
    assert!(
        after.values().sum::<i64>() > held.values().sum::<i64>(),
        "acknowledgements resume once the store is back ({held:?} -> {after:?})"
    );
}
