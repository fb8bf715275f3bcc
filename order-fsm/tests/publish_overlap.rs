//! With a state log, a worker makes its next batch durable while the previous batch is being
//! published (ADR 4, "one publish in flight per worker"): one broker round trip per batch,
//! not two. These tests hold publishes at a gate and check that nothing is acknowledged
//! unpublished, that a crash at any moment would lose no record, and that a published batch
//! is acknowledged even while the next one cannot be made durable.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_fsm::{
    Ack, Command, Envelope, Error, Lifecycle, MemorySink, MemoryStateLog, OrderId, Origin,
    Purchase, RetryPolicy, RunReport, Runner, SourceEvent, StateChange, StateLog, TransitionRecord,
    TransitionSink,
};
use tokio::sync::{mpsc, watch};

mod common;
use common::Scripted;

/// A sink that holds its publish number `k` (from 0) until the gate reads more than `k`,
/// like a broker slow to answer.
struct Gated {
    open: watch::Receiver<usize>,
    calls: AtomicUsize,
    inner: MemorySink,
}

#[async_trait]
impl TransitionSink for Gated {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        let call = self.calls.fetch_add(1, SeqCst);
        let mut open = self.open.clone();
        open.wait_for(|open| *open > call)
            .await
            .expect("the test holds the gate");
        self.inner.publish(records).await
    }
}

/// A state log whose appends fail while `failing` is set, like a broker that is down. It
/// keeps no marks, so the runner takes no checkpoint: a checkpoint waits for every publish
/// in flight, which these tests hold.
struct Switchable {
    log: Arc<MemoryStateLog>,
    failing: AtomicBool,
}

#[async_trait]
impl StateLog for Switchable {
    async fn append(&self, changes: &[StateChange]) -> Result<(), Error> {
        if self.failing.load(SeqCst) {
            return Err(Error::unavailable("state log", "broker down"));
        }
        self.log.append(changes).await
    }
    async fn forget(&self, partition: i32, orders: &[OrderId]) -> Result<(), Error> {
        self.log.forget(partition, orders).await
    }
    async fn restore(&self, partition: i32) -> Result<Vec<StateChange>, Error> {
        self.log.restore(partition).await
    }
}

/// A one-worker runner over a [`Switchable`] log and a [`Gated`] sink, owning partition 0.
struct Harness {
    lifecycle: Lifecycle,
    log: Arc<Switchable>,
    gate: watch::Sender<usize>,
    sink: Arc<Gated>,
    acked: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<SourceEvent>,
    run: tokio::task::JoinHandle<Result<RunReport, Error>>,
}

impl Harness {
    fn start() -> Self {
        let lifecycle = Lifecycle::ecommerce();
        let log = Arc::new(Switchable {
            log: Arc::new(MemoryStateLog::new()),
            failing: AtomicBool::new(false),
        });
        let (gate, open) = watch::channel(0);
        let sink = Arc::new(Gated {
            open,
            calls: 0.into(),
            inner: MemorySink::new(),
        });
        let runner = Runner::builder(lifecycle.clone())
            .with_state_log(log.clone())
            .with_sink(sink.clone())
            .with_workers(1)
            .with_retry(
                RetryPolicy::default()
                    .forever()
                    .with_backoff(Duration::from_millis(1), Duration::from_millis(5)),
            )
            .build()
            .expect("runner");
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(SourceEvent::Assigned(vec![0])).unwrap();
        let run =
            tokio::spawn(async move { runner.run(Scripted(rx), std::future::pending()).await });
        Self {
            lifecycle,
            log,
            gate,
            sink,
            acked: Arc::new(AtomicU64::new(0)),
            tx,
            run,
        }
    }

    /// Sends `command` at `offset` of partition 0, counting its acknowledgement.
    fn send(&self, offset: i64, command: Command) {
        let acked = Arc::clone(&self.acked);
        let ack = Ack::new(move || {
            acked.fetch_add(1, SeqCst);
        });
        let envelope = Envelope::new(command, Origin::new(0, offset), ack);
        self.tx.send(SourceEvent::Command(envelope)).unwrap();
    }

    fn acked(&self) -> u64 {
        self.acked.load(SeqCst)
    }

    /// Lets the first `publishes` publishes through.
    fn open(&self, publishes: usize) {
        self.gate.send_replace(publishes);
    }

    /// The version of `id` in the state log.
    async fn logged_version(&self, id: OrderId) -> Option<u64> {
        self.logged(id).await.map(|c| c.state.version)
    }

    async fn logged(&self, id: OrderId) -> Option<StateChange> {
        let changes = self.log.log.restore(0).await.unwrap();
        changes.into_iter().find(|c| c.state.id == id)
    }

    /// What the next owner would publish again of `id` if this one crashed now.
    async fn republished(&self, id: OrderId) -> Vec<u64> {
        let change = self.logged(id).await.expect("logged");
        change
            .unpublished(&self.lifecycle)
            .iter()
            .map(|r| r.version)
            .collect()
    }

    /// The versions of `id` published so far, in order.
    fn published(&self, id: OrderId) -> Vec<u64> {
        let records = self.sink.inner.records();
        records
            .iter()
            .filter(|r| r.order_id == id)
            .map(|r| r.version)
            .collect()
    }

    /// Ends the source and returns the run's report.
    async fn finish(self) -> RunReport {
        drop(self.tx);
        self.run.await.unwrap().unwrap()
    }
}

/// Waits until `condition` holds, for at most 5 s.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each change says what of the order is surely published, three batches in a row, so a
/// crash at any of these moments loses no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_made_durable_during_a_publish_and_a_crash_then_loses_nothing() {
    let h = Harness::start();
    let place = Command::place(Purchase::example());
    let id = place.order_id();
    h.send(0, place);
    eventually("the placement is durable", async || {
        h.logged_version(id).await == Some(1)
    })
    .await;
    // Its publish is held at the gate; the next command of the order is planned on top.
    h.send(1, Command::apply(id, "prepare"));
    eventually(
        "the next batch is durable while the first is being published",
        async || h.logged_version(id).await == Some(2),
    )
    .await;
    assert_eq!(h.acked(), 0, "nothing is acknowledged unpublished");
    assert!(h.published(id).is_empty());
    // A crash now: the next owner restores version 2 and must publish versions 1 and 2.
    assert_eq!(h.republished(id).await, [1, 2], "the batch in flight too");

    // The first batch is published and acknowledged; the second is in flight, and the
    // third, made durable meanwhile, says that version 1 is published.
    h.open(1);
    eventually("the first command is acknowledged", async || h.acked() == 1).await;
    h.send(2, Command::apply(id, "ship"));
    eventually("the third batch is durable", async || {
        h.logged_version(id).await == Some(3)
    })
    .await;
    assert_eq!(
        h.republished(id).await,
        [2, 3],
        "what is surely published moves on"
    );
    assert_eq!(h.acked(), 1);

    // No crash: every batch is published in order, then acknowledged.
    h.open(usize::MAX);
    eventually("every command is acknowledged", async || h.acked() == 3).await;
    assert_eq!(h.published(id), [1, 2, 3]);
    let report = h.finish().await;
    assert_eq!((report.acked, report.unacked), (3, 0));
}

/// A batch whose publish ends while the next batch retries its state log write (the broker
/// is down) is acknowledged then, not once the log is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_batch_is_acknowledged_while_the_next_one_waits_for_the_log() {
    let h = Harness::start();
    let (first, second) = (
        Command::place(Purchase::example()),
        Command::place(Purchase::example()),
    );
    let (a, b) = (first.order_id(), second.order_id());
    h.send(0, first);
    eventually("the first batch is durable", async || {
        h.logged_version(a).await == Some(1)
    })
    .await;
    // The state log goes down; the second batch retries its write.
    h.log.failing.store(true, SeqCst);
    h.send(1, second);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.acked(), 0, "the first batch is not published yet");
    h.open(1);
    eventually(
        "the first batch is acknowledged while the log is down",
        async || h.acked() == 1,
    )
    .await;
    assert_eq!(h.logged_version(b).await, None, "the second is not durable");
    assert_eq!(h.published(a), [1]);

    // The log is back: the second batch is made durable, published and acknowledged.
    h.log.failing.store(false, SeqCst);
    h.open(usize::MAX);
    eventually("the second command is acknowledged", async || {
        h.acked() == 2
    })
    .await;
    assert_eq!(h.published(b), [1]);
    let report = h.finish().await;
    assert_eq!((report.acked, report.unacked), (2, 0));
}
