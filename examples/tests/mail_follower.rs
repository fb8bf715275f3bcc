//! E-mail out of the acknowledgement path, in a follower process of its own:
//! - with the SMTP server down for 30 s, orders placed meanwhile still complete, and once it
//!   is back every transition is mailed, once, and no transition record was published
//!   twice meanwhile;
//! - a follower killed with SIGKILL and restarted sends no mail twice for the transitions it
//!   had committed (only the uncommitted tail may repeat), and misses none.
//!
//! Separate processes on real services: tansu, a worker, a follower, and an aiosmtpd of this
//! test's own (so stopping it disturbs no other test).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{
    committed_offsets, kafka_args, place, provisioned, read_transitions, spawn, topic_records,
    unique_prefix, until, Located, PrivateSmtp, Process,
};
use order_fsm::testing::service_address;
use order_fsm::OrderId;
use order_fsm_kafka::KafkaCommandSink;

const DOWN: Duration = Duration::from_secs(30);

/// The transitions topic from the start, once it holds `records` records.
async fn transitions(brokers: &str, topic: &str, records: usize) -> Vec<Located> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_transitions(&brokers, &topic, records))
        .await
        .unwrap()
}

fn mail_counts(smtp: &PrivateSmtp) -> HashMap<(OrderId, u64), usize> {
    let mut counts = HashMap::new();
    for key in smtp.mails() {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_out_an_smtp_outage_and_a_killed_follower_repeats_nothing_it_committed() {
    let (Some(brokers), Some(_)) = (
        service_address("ORDER_FSM_KAFKA_BROKERS"),
        service_address("ORDER_FSM_SMTP_URL"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = PrivateSmtp::start(dir.path());
    let prefix = unique_prefix("mail-follower");
    let config = provisioned(&brokers, &prefix).await;
    let topic = config.transitions_topic().to_owned();
    let group = format!("{prefix}workers");
    // tansu 0.6.0 serves nothing to a fetch that starts inside a record batch (a follower
    // resuming mid-batch): one record per batch there.
    let one_per_batch = ["--property", "batch.num.messages=1"];
    let mut worker_args = vec!["--group", &group, "--workers", "2"];
    worker_args.extend(one_per_batch);
    let _worker = spawn(
        env!("CARGO_BIN_EXE_worker"),
        &kafka_args(&brokers, &prefix, &worker_args),
    );
    let smtp_url = smtp.url();
    let follower_args = kafka_args(
        &brokers,
        &prefix,
        &["--group", &group, "--smtp-url", &smtp_url],
    );
    let start_follower = || spawn(env!("CARGO_BIN_EXE_follower"), &follower_args);
    let mut follower: Process = start_follower();
    let commands = KafkaCommandSink::new(&config).unwrap();

    // 1. Mail flows.
    place(&commands, 100).await;
    until("the first mails", Duration::from_secs(120), || async {
        smtp.mails().len() >= 500
    })
    .await;

    // 2. The SMTP server is down for 30 s: orders complete meanwhile.
    smtp.stop();
    let down = Instant::now();
    place(&commands, 300).await;
    let records = transitions(&brokers, &topic, 5 * 400).await;
    let completed: HashSet<OrderId> = records
        .iter()
        .filter(|r| &*r.record.to == "completed")
        .map(|r| r.record.order_id)
        .collect();
    assert_eq!(completed.len(), 400, "every order completed");
    assert!(
        down.elapsed() < DOWN,
        "the orders completed {:.1} s into the outage, after it",
        down.elapsed().as_secs_f64()
    );
    tokio::time::sleep(DOWN.saturating_sub(down.elapsed())).await;
    smtp.restart();
    let resumed = Instant::now();
    let keys: HashSet<(OrderId, u64)> = records
        .iter()
        .map(|r| (r.record.order_id, r.record.version))
        .collect();
    until(
        "the mails after the outage",
        Duration::from_secs(120),
        || async { mail_counts(&smtp).len() >= keys.len() },
    )
    .await;
    eprintln!(
        "mail caught up {:.1} s after the SMTP server came back",
        resumed.elapsed().as_secs_f64()
    );
    let counts = mail_counts(&smtp);
    assert_eq!(counts.keys().copied().collect::<HashSet<_>>(), keys);
    assert!(
        counts.values().all(|&n| n == 1),
        "no mail twice without a crash"
    );
    // Before mail was a follower, each failed send republished the batch to the
    // transitions topic: 4,580 records for 20 transitions in 4 minutes.
    assert_eq!(
        topic_records(&brokers, &topic),
        5 * 400,
        "no transition record republished while the SMTP server was down"
    );

    // 3. The follower is killed mid-stream and restarted.
    let before_kill = counts.len();
    place(&commands, 600).await;
    until(
        "mails to be under way",
        Duration::from_secs(120),
        || async { smtp.mails().len() >= before_kill + 600 },
    )
    .await;
    follower.signal("KILL");
    drop(follower);
    let committed = committed_offsets(&brokers, &format!("{group}-mail"), &topic);
    let records = transitions(&brokers, &topic, 5 * 1_000).await;
    let mailed_at_kill = smtp.mails().len();
    follower = start_follower();
    let keys: HashSet<(OrderId, u64)> = records
        .iter()
        .map(|r| (r.record.order_id, r.record.version))
        .collect();
    until(
        "every mail after the restart",
        Duration::from_secs(120),
        || async { mail_counts(&smtp).len() >= keys.len() },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more should come
    drop(follower);
    let counts = mail_counts(&smtp);
    assert_eq!(
        counts.keys().copied().collect::<HashSet<_>>(),
        keys,
        "every transition mailed"
    );
    let below_commit = |r: &Located| committed.get(&r.partition).is_some_and(|&c| r.offset < c);
    let committed_keys: HashSet<(OrderId, u64)> = records
        .iter()
        .filter(|r| below_commit(r))
        .map(|r| (r.record.order_id, r.record.version))
        .collect();
    let uncommitted: HashSet<(OrderId, u64)> = records
        .iter()
        .filter(|r| !below_commit(r))
        .map(|r| (r.record.order_id, r.record.version))
        .collect();
    assert!(
        committed_keys.len() > before_kill,
        "the follower had committed some of the new mails before it was killed"
    );
    for key in committed_keys.difference(&uncommitted) {
        assert_eq!(counts[key], 1, "{key:?} was committed, and mailed again");
    }
    let repeats = counts.values().filter(|&&n| n > 1).count();
    eprintln!(
        "killed after {mailed_at_kill} mails with {} transitions committed; {repeats} mails \
         repeated after the restart, all of them uncommitted at the kill",
        committed_keys.len()
    );
}
