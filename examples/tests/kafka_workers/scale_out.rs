//! Worker **processes** in one consumer group, nothing shared in-process: the orders of a
//! partition belong to whoever owns it, so when workers leave (killed or stopped), join or
//! churn while orders wait out their dwell times, every order still completes. Final states
//! are counted from the transitions topic by an independent reader.

use std::time::Duration;

use crate::against_both;
use crate::common::{eventually, read_topic, topic_size, Broker};
use crate::process::{assert_all_complete, one_at_a_time, outcome, place_orders, WorkerProcess};
use order_fsm::{Command, CommandSink};
use order_fsm_kafka::KafkaCommandSink;

const PARTITIONS: i32 = 6;
/// Each state is held this long, so orders are mid-lifecycle when a worker goes.
const DWELL_MS: u64 = 100;

/// Waits until the transitions topic holds at least `records`.
async fn progress(config: &order_fsm_kafka::KafkaConfig, records: i64) {
    let topic = config.transitions_topic().to_owned();
    eventually("progress", Duration::from_secs(120), || {
        let (config, topic) = (config.clone(), topic.clone());
        async move { topic_size(&config, &topic).await >= records }
    })
    .await;
}

/// How a worker leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// SIGKILL: it never says goodbye to the group.
    Killed,
    /// SIGTERM: it finishes, commits and leaves the group.
    Stopped,
}

/// Two workers; the second one leaves mid-run as `leave` says, and is not restarted.
async fn one_of_two_leaves(broker: Broker, test: &str, leave: Leave) {
    let _alone = one_at_a_time().await;
    let config = broker.config(test, PARTITIONS).await;
    let a = WorkerProcess::start(&config, "a", DWELL_MS);
    let b = WorkerProcess::start(&config, "b", DWELL_MS);
    let (ids, producer) = place_orders(&config, 2_000, Duration::from_millis(100));
    progress(&config, 2_000).await;
    match leave {
        Leave::Killed => b.kill(),
        Leave::Stopped => b.terminate(),
    }
    producer.await.expect("producer");
    assert_all_complete(&config, &ids, Duration::from_secs(120)).await;
    drop(a);
}

/// Two workers; one is SIGKILLed mid-run and not restarted.
async fn killed_and_not_restarted(broker: Broker) {
    one_of_two_leaves(broker, "killed", Leave::Killed).await;
}

/// Two workers; one stops gracefully (SIGTERM) mid-run.
async fn stopped_gracefully(broker: Broker) {
    one_of_two_leaves(broker, "stopped", Leave::Stopped).await;
}

/// One worker, then three, then one again, while orders flow.
async fn scaled_one_three_one(broker: Broker) {
    let _alone = one_at_a_time().await;
    let config = broker.config("scaled", PARTITIONS).await;
    let a = WorkerProcess::start(&config, "a", DWELL_MS);
    let (ids, producer) = place_orders(&config, 3_000, Duration::from_millis(100));
    progress(&config, 1_000).await;
    let b = WorkerProcess::start(&config, "b", DWELL_MS);
    let c = WorkerProcess::start(&config, "c", DWELL_MS);
    progress(&config, 6_000).await;
    b.terminate();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.terminate();
    producer.await.expect("producer");
    assert_all_complete(&config, &ids, Duration::from_secs(120)).await;
    drop(a);
}

/// One worker stays; a second is restarted every few seconds for half a minute, under load.
async fn churn(broker: Broker) {
    let _alone = one_at_a_time().await;
    let config = broker.config("churn", PARTITIONS).await;
    let a = WorkerProcess::start(&config, "a", DWELL_MS);
    let (ids, producer) = place_orders(&config, 6_000, Duration::from_millis(250));
    let started = std::time::Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(30) {
        round += 1;
        let b = WorkerProcess::start(&config, &format!("b{round}"), DWELL_MS);
        tokio::time::sleep(Duration::from_secs(4)).await;
        b.terminate();
    }
    producer.await.expect("producer");
    assert_all_complete(&config, &ids, Duration::from_secs(120)).await;
    drop(a);
}

/// Cancels sent while one of two workers is dead reach the orders it owned once the other
/// takes its partitions over: every order ends `cancelled`, none is shipped after an
/// accepted cancel (before partition-owned state, the survivor dead-lettered them as
/// "order not found" and the restarted owner completed them).
async fn cancels_reach_the_orders_of_a_dead_worker(broker: Broker) {
    let _alone = one_at_a_time().await;
    let config = broker.config("cancels", PARTITIONS).await;
    // Long dwell: every order is still cancellable (processing or preparing) when it is
    // cancelled, even after the hand-over fires its overdue timer.
    let a = WorkerProcess::start(&config, "a", 4_000);
    let b = WorkerProcess::start(&config, "b", 4_000);
    let (ids, producer) = place_orders(&config, 300, Duration::from_millis(20));
    producer.await.expect("producer");
    progress(&config, 300).await;
    b.kill();
    let cancels: Vec<Command> = ids.iter().map(|id| Command::apply(*id, "cancel")).collect();
    KafkaCommandSink::new(&config)
        .expect("command sink")
        .submit(&cancels)
        .await
        .expect("submit cancels");
    // On tansu 0.6.0 the survivor gets the dead worker's partitions only through its stall
    // watchdog (30 s and a re-join).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let last = loop {
        let now = outcome(&config, &ids).await;
        let cancelled = now.unfinished.get("cancelled").copied().unwrap_or(0);
        if cancelled == ids.len() || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("final: {last}");
    assert_eq!(last.conflicting, 0);
    assert_eq!(last.completed, 0, "no cancelled order completes: {last}");
    assert_eq!(
        last.unfinished.get("cancelled").copied(),
        Some(ids.len()),
        "every order cancelled: {last}"
    );
    let dead_letters = read_topic(&config, config.dead_letter_topic()).await;
    assert!(dead_letters.is_empty(), "no cancel dead-lettered");
    drop(a);
}

against_both!(
    cancels_reach_the_orders_of_a_dead_worker,
    killed_and_not_restarted,
    stopped_gracefully,
    scaled_one_three_one,
    churn
);
