//! Partition ownership: a runner that loses a partition hands its orders over through the
//! state log, timers included; the next owner (with a store of its own) finishes them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_fsm::{
    ecommerce, Ack, Command, Dwell, Envelope, Error, Lifecycle, MemorySink, MemoryStateLog,
    MemoryStore, OrderId, Origin, Purchase, Runner, SourceEvent, StateLog,
};
use tokio::sync::{mpsc, oneshot};

mod common;
use common::Scripted;

fn command(partition: i32, offset: i64, command: Command) -> SourceEvent {
    SourceEvent::Command(Envelope::new(
        command,
        Origin::new(partition, offset),
        Ack::none(),
    ))
}

fn revoke(partitions: Vec<i32>) -> (SourceEvent, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let done = Ack::new(move || {
        let _ = tx.send(());
    });
    (SourceEvent::Revoked { partitions, done }, rx)
}

fn runner(log: Arc<MemoryStateLog>, store: Arc<MemoryStore>, sink: Arc<MemorySink>) -> Runner {
    Runner::builder(Lifecycle::ecommerce())
        .with_store(store)
        .with_state_log(log)
        .with_sink(sink)
        .with_auto_advance(Dwell::Fixed(Duration::from_millis(150)))
        .build()
        .expect("runner")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_finishes_on_its_next_owner() {
    let log = Arc::new(MemoryStateLog::new());
    let (store_a, sink_a) = (Arc::new(MemoryStore::new()), Arc::new(MemorySink::new()));
    let a = runner(Arc::clone(&log), store_a.clone(), sink_a.clone());
    let (tx_a, rx_a) = mpsc::unbounded_channel();
    let run_a = tokio::spawn(async move { a.run(Scripted(rx_a), std::future::pending()).await });

    // Partition 0 holds 50 orders, partition 1 holds 50 more.
    tx_a.send(SourceEvent::Assigned(vec![0, 1])).unwrap();
    let mut ids = Vec::new();
    for i in 0..100 {
        let place = Command::place(Purchase::example());
        ids.push((i % 2, place.order_id()));
        tx_a.send(command(i % 2, i as i64, place)).unwrap();
    }
    // Revoke partition 0 while its orders wait in `processing` (dwell 150 ms).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (event, revoked) = revoke(vec![0]);
    tx_a.send(event).unwrap();
    tokio::time::timeout(Duration::from_secs(5), revoked)
        .await
        .expect("the revocation is acknowledged")
        .expect("acknowledged, not dropped");
    let of = |p: i32| -> Vec<OrderId> {
        ids.iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, id)| *id)
            .collect()
    };
    for id in of(0) {
        assert!(
            store_a.get_now(id).is_none(),
            "a dropped the orders of the revoked partition"
        );
    }
    assert_eq!(log.len(0), 50, "partition 0's states are in the log");

    // B takes partition 0 over with an empty store: it restores and re-arms the timers.
    let (store_b, sink_b) = (Arc::new(MemoryStore::new()), Arc::new(MemorySink::new()));
    let b = runner(Arc::clone(&log), store_b.clone(), sink_b.clone());
    let (tx_b, rx_b) = mpsc::unbounded_channel();
    tx_b.send(SourceEvent::Assigned(vec![0])).unwrap();
    // A redelivered placement (the commit may not have happened) is a duplicate on b.
    let first = of(0)[0];
    let b_report = {
        let b = Arc::new(b);
        let b2 = Arc::clone(&b);
        let run_b =
            tokio::spawn(async move { b2.run(Scripted(rx_b), std::future::pending()).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let done_a = of(1).iter().all(|id| {
                store_a
                    .get_now(*id)
                    .is_some_and(|o| o.status == ecommerce::COMPLETED)
            });
            let done_b = of(0).iter().all(|id| {
                store_b
                    .get_now(*id)
                    .is_some_and(|o| o.status == ecommerce::COMPLETED)
            });
            if done_a && done_b {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "every order completes on its owner"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let original = sink_a
            .records()
            .into_iter()
            .find(|r| r.order_id == first && r.version == 1)
            .expect("a published the placement");
        let mut redelivered = Command::place((*original.purchase).clone());
        if let Command::Place {
            order_id, event_id, ..
        } = &mut redelivered
        {
            *order_id = first;
            *event_id = original.event_id;
        }
        tx_b.send(command(0, 0, redelivered)).unwrap();
        drop(tx_b);
        drop(tx_a);
        run_b.await.unwrap().unwrap()
    };
    run_a.await.unwrap().unwrap();
    assert_eq!(b_report.metrics.dead_lettered, 0);
    assert_eq!(
        b_report.metrics.duplicates, 1,
        "the redelivery is a duplicate"
    );

    // Every (order, version) was published with one content, by exactly one owner apart
    // from the republished tail of the hand-over.
    let mut seen = std::collections::HashMap::new();
    for r in sink_a.records().into_iter().chain(sink_b.records()) {
        let content = (r.from.clone(), r.to.clone(), r.event.clone());
        let previous = seen.insert((r.order_id, r.version), content.clone());
        assert!(
            previous.is_none_or(|p| p == content),
            "order {} version {} published with two contents",
            r.order_id,
            r.version
        );
    }
    let keys: HashSet<_> = seen.keys().copied().collect();
    assert_eq!(keys.len(), 100 * 5, "every transition of every order");
    for id in of(0) {
        assert!(
            sink_b
                .records()
                .iter()
                .any(|r| r.order_id == id && r.terminal),
            "b finished the orders it took over"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_orders_leave_memory_after_their_retention() {
    let log = Arc::new(MemoryStateLog::new());
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_store(store.clone())
        .with_state_log(log.clone())
        .with_auto_advance(Dwell::None)
        .with_retention(Some(Duration::from_millis(200)))
        .build()
        .expect("runner");
    let (tx, rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(async move { runner.run(Scripted(rx), std::future::pending()).await });
    for i in 0..20 {
        tx.send(command(3, i, Command::place(Purchase::example())))
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while log.appended() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orders complete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.len(3), 20);
    // Retention passes: the store is empty and the log forgot them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.is_empty() || log.len(3) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "store {} log {}",
            store.len(),
            log.len(3)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.restore(3).await.unwrap().is_empty());
    drop(tx);
    run.await.unwrap().unwrap();
}

/// A sink that refuses its first `failures` calls, like an SMTP server that is down.
struct Flaky {
    failures: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl order_fsm::TransitionSink for Flaky {
    async fn publish(&self, _records: &[order_fsm::TransitionRecord]) -> Result<(), Error> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        if self
            .failures
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::unavailable("smtp", "connection refused"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_retried_alone_and_the_others_get_each_record_once() {
    let log = Arc::new(MemoryStateLog::new());
    let records = Arc::new(MemorySink::new());
    let mail = Arc::new(Flaky {
        failures: 5.into(),
        calls: 0.into(),
    });
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_state_log(log)
        .with_sink(records.clone())
        .with_sink(mail.clone())
        .with_auto_advance(Dwell::None)
        .with_retry(
            order_fsm::RetryPolicy::default()
                .forever()
                .with_backoff(Duration::from_millis(1), Duration::from_millis(5)),
        )
        .build()
        .expect("runner");
    let (tx, rx) = mpsc::unbounded_channel();
    for i in 0..10 {
        tx.send(command(0, i, Command::place(Purchase::example())))
            .unwrap();
    }
    drop(tx);
    let report = runner
        .run(Scripted(rx), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.metrics.finished_in("completed"), 10);
    assert!(mail.calls.load(std::sync::atomic::Ordering::SeqCst) > 5);
    // Every retry went to the mailer only: the transitions sink saw each record once.
    assert_eq!(records.published(), 50);
    let distinct: HashSet<_> = records
        .records()
        .iter()
        .map(|r| (r.order_id, r.version))
        .collect();
    assert_eq!(distinct.len(), 50);
}
