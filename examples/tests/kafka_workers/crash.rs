//! A worker process is killed with SIGKILL in the middle of 10,000 orders and restarted:
//! every order completes, none is lost, no `(order, version)` has two contents.

use std::time::Duration;

use crate::against_both;
use crate::common::{eventually, topic_size, Broker};
use crate::process::{assert_all_complete, one_at_a_time, outcome, place_orders, WorkerProcess};

const ORDERS: usize = 10_000;
/// Placement plus four transitions per order.
const RECORDS: i64 = 5 * ORDERS as i64;

async fn crash_and_restart(broker: Broker) {
    let _alone = one_at_a_time().await;
    // 16 partitions: the mock cluster keeps only 5 MB per partition, and the test reads the
    // whole transitions topic back (50,000 records of about 600 bytes).
    let config = broker.config("crash", 16).await;
    let worker = WorkerProcess::start(&config, "first", 0);
    // Produce while the worker consumes, in paced chunks, so the kill lands mid-stream.
    // Progress is read from the watermarks (on tansu they count batches, which the test
    // config makes one record each).
    let (ids, producer) = place_orders(&config, ORDERS, Duration::from_millis(10));
    let topic = config.transitions_topic().to_owned();
    eventually(
        "the first worker's progress",
        Duration::from_secs(120),
        || {
            let (config, topic) = (config.clone(), topic.clone());
            async move { topic_size(&config, &topic).await >= RECORDS / 4 }
        },
    )
    .await;
    worker.kill();
    let at_kill = outcome(&config, &ids).await;
    assert!(
        at_kill.completed < ORDERS,
        "the kill must land mid-stream ({at_kill})"
    );
    eprintln!("killed the worker: {at_kill}");

    // Restart once the killed member's session (6 s) has expired: tansu 0.6.0 does not
    // finish a rebalance that a new member starts while a dead member's session is alive.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let worker = WorkerProcess::start(&config, "second", 0);
    producer.await.expect("producer task");
    assert_all_complete(&config, &ids, Duration::from_secs(120)).await;
    drop(worker);
}

against_both!(crash_and_restart);
