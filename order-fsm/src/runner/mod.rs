//! The runner: source → engine → sinks → store → acknowledgement, sharded by order id.

mod metrics;
mod ownership;
mod partitions;
mod worker;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::{
    Clock, CommandSource, DeadLetter, DeadLetterSink, Dwell, Engine, Error, FanOut, Lifecycle,
    MemoryStore, MetricsSink, MetricsSnapshot, OrderStore, RetryPolicy, SourceEvent, StateLog,
    SystemClock, TransitionSink,
};
use metrics::Metrics;
use partitions::{Checkpoint, CHECKPOINT_INTERVAL};
use worker::{Work, Worker};

/// Why [`Runner::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The source ended and every order finished what it could do.
    SourceExhausted,
    /// The shutdown signal fired.
    Shutdown,
}

/// What a run did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunReport {
    /// Why the run ended.
    pub stopped_by: StopReason,
    /// Messages taken from the source.
    pub received: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages taken but left unacknowledged at shutdown (the source redelivers them).
    pub unacked: u64,
    /// Measurements of the whole run.
    pub metrics: MetricsSnapshot,
}

/// Logs dead letters when no dead-letter sink is configured, so none vanishes silently.
struct LogDeadLetters;

#[async_trait]
impl DeadLetterSink for LogDeadLetters {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error> {
        tracing::warn!(
            target: "order_fsm::dead_letter",
            order_id = %letter.command.order_id(),
            partition = letter.origin.partition,
            offset = letter.origin.offset,
            reason = %letter.reason,
            "dead letter"
        );
        Ok(())
    }
}

/// Configures a [`Runner`].
#[must_use]
pub struct RunnerBuilder {
    lifecycle: Arc<Lifecycle>,
    store: Arc<dyn OrderStore>,
    sinks: Vec<Arc<dyn TransitionSink>>,
    dead_letters: Arc<dyn DeadLetterSink>,
    metrics_sink: Option<(Arc<dyn MetricsSink>, Duration)>,
    workers: usize,
    queue_capacity: usize,
    max_batch: usize,
    auto_advance: Option<Dwell>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    seed: u64,
    resume_pending: bool,
    state_log: Option<Arc<dyn StateLog>>,
    retention: Option<Duration>,
}

/// How long finished orders stay in a runner's store by default: long enough to recognise
/// the commands a rebalance or crash redelivers (those after the last offset commit, every
/// 500 ms by default), short enough that a restore reads little more than the live orders.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(60);

impl RunnerBuilder {
    /// Makes every batch durable in `log` before it is published and acknowledged, and
    /// restores a partition's orders from it when the source assigns the partition (default:
    /// none). With a state log the store only caches the orders of owned partitions: they
    /// are evicted when the partition is revoked. This is what lets orders survive
    /// rebalances, crashes and scale-out.
    pub fn with_state_log(mut self, log: Arc<dyn StateLog>) -> Self {
        self.state_log = Some(log);
        self
    }

    /// How long a finished order stays in the store (and the state log) after it reached
    /// a terminal state, so that redelivered commands are still recognised (default
    /// [`DEFAULT_RETENTION`]); `None` keeps them forever. Afterwards a command for the order
    /// is rejected as about an unknown order.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// The store of order states (default: a new [`MemoryStore`]).
    pub fn with_store(mut self, store: Arc<dyn OrderStore>) -> Self {
        self.store = store;
        self
    }

    /// Adds a sink; every transition goes to every sink before it is acknowledged.
    ///
    /// So a sink here is in the acknowledgement path: while it is slow or down, no command
    /// is acknowledged. Give the runner only the durable log of transitions (the Kafka
    /// transitions topic) and let every other destination (an index, a mailer, a read
    /// model) follow that log at its own pace (`order_fsm_kafka::KafkaFollower`; see
    /// `docs/adr/0005-one-log-many-followers.md`).
    pub fn with_sink(mut self, sink: Arc<dyn TransitionSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Where rejected commands go (default: a `warn` log line per letter).
    pub fn with_dead_letters(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letters = sink;
        self
    }

    /// Emits a [`MetricsRecord`](crate::MetricsRecord) to `sink` every `interval`, and a last one at the end.
    pub fn with_metrics_sink(mut self, sink: Arc<dyn MetricsSink>, interval: Duration) -> Self {
        self.metrics_sink = Some((sink, interval));
        self
    }

    /// Number of workers; orders are sharded across them by id (default 2).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Capacity of each worker's queue; a full queue stops the runner from pulling
    /// (default 1024).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Most commands a worker handles in one store/sink round trip (default 256).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Advances every order along its lifecycle's automatic path, holding each state for
    /// the dwell time (default: off, only commands move orders).
    pub fn with_auto_advance(mut self, dwell: Dwell) -> Self {
        self.auto_advance = Some(dwell);
        self
    }

    /// The clock stamping events (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Retries of retryable store and sink errors (default: unbounded, 20 ms doubling to
    /// 2 s; a shutdown interrupts the wait).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// With auto-advance on and no [state log](Self::with_state_log): at start, advance every
    /// order the store holds in a state with
    /// an automatic advance (default off). Timers live in memory, so a worker that restarts
    /// after a crash uses this to pick up the orders that were waiting; their advances are
    /// taken at once, the downtime counting as dwell. Advance event ids are derived from
    /// `(order, version)`, so runners sharing a store never advance an order twice.
    pub fn with_resume_pending(mut self, resume: bool) -> Self {
        self.resume_pending = resume;
        self
    }

    /// Seed of the dwell-time random draws (default 0), for repeatable runs.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Builds the runner.
    ///
    /// # Errors
    /// [`Error::Config`] for zero workers, queue capacity or batch size.
    pub fn build(self) -> Result<Runner, Error> {
        if self.workers == 0 || self.queue_capacity == 0 || self.max_batch == 0 {
            return Err(Error::Config(
                "workers, queue capacity and batch size must be at least 1".into(),
            ));
        }
        let metrics = Arc::new(Metrics::new(
            Arc::clone(&self.lifecycle),
            self.workers,
            self.clock.now(),
        ));
        Ok(Runner {
            shared: Arc::new(Shared {
                engine: Engine::new(Arc::clone(&self.lifecycle)),
                store: self.store,
                sink: (!self.sinks.is_empty()).then(|| FanOut::new(self.sinks)),
                dead_letters: self.dead_letters,
                auto_advance: self.auto_advance,
                clock: self.clock,
                retry: self.retry,
                max_batch: self.max_batch,
                metrics,
                state_log: self.state_log.clone(),
                retention: self.retention,
            }),
            metrics_sink: self.metrics_sink,
            workers: self.workers,
            queue_capacity: self.queue_capacity,
            seed: self.seed,
            resume_pending: self.resume_pending
                && self.auto_advance.is_some()
                && self.state_log.is_none(),
        })
    }
}

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<dyn OrderStore>,
    pub(crate) sink: Option<FanOut>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink>,
    pub(crate) auto_advance: Option<Dwell>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_batch: usize,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) state_log: Option<Arc<dyn StateLog>>,
    pub(crate) retention: Option<Duration>,
}

/// Drives commands from a [`CommandSource`] through the engine into the store and sinks.
///
/// - **Ordering**: commands of one order go to one worker (sharded by [`crate::OrderId`]) and
///   are applied in source order; different orders proceed in parallel.
/// - **Delivery**: a command is acknowledged only after every sink accepted its records and
///   the store accepted its new state; redelivered commands are recognised by event id.
/// - **Backpressure**: bounded worker queues; a full queue stops the runner pulling.
/// - **Shutdown**: on the signal the runner stops pulling, lets each worker finish the batch
///   it is on (retries are abandoned), acknowledges what finished and returns a report.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use order_fsm::{Command, Dwell, Lifecycle, MemoryQueue, MemorySink, Purchase, Runner};
/// let sink = Arc::new(MemorySink::new());
/// let runner = Runner::builder(Lifecycle::ecommerce())
///     .with_sink(sink.clone())
///     .with_auto_advance(Dwell::None)
///     .build()
///     .unwrap();
/// let queue = MemoryQueue::new();
/// queue.extend((0..10).map(|_| Command::place(Purchase::example())));
/// queue.close();
/// let report = runner.run(queue.subscribe(), std::future::pending()).await.unwrap();
/// assert_eq!(report.metrics.finished_in("completed"), 10);
/// assert_eq!(sink.published(), 50); // placement + 4 transitions each
/// assert_eq!(queue.pending(), 0);   // everything acknowledged
/// # });
/// ```
pub struct Runner {
    shared: Arc<Shared>,
    metrics_sink: Option<(Arc<dyn MetricsSink>, Duration)>,
    workers: usize,
    queue_capacity: usize,
    seed: u64,
    resume_pending: bool,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("auto_advance", &self.shared.auto_advance)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Starts configuring a runner for `lifecycle`.
    pub fn builder(lifecycle: impl Into<Arc<Lifecycle>>) -> RunnerBuilder {
        RunnerBuilder {
            lifecycle: lifecycle.into(),
            store: Arc::new(MemoryStore::new()),
            sinks: Vec::new(),
            dead_letters: Arc::new(LogDeadLetters),
            metrics_sink: None,
            workers: 2,
            queue_capacity: 1024,
            max_batch: 256,
            auto_advance: None,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy {
                max_attempts: None,
                ..RetryPolicy::default()
            },
            seed: 0,
            resume_pending: false,
            state_log: None,
            retention: Some(DEFAULT_RETENTION),
        }
    }

    /// Cumulative measurements so far (callable while [`Runner::run`] runs).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// The engine the runner applies events with.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Runs until `source` is exhausted and every order has done what it can, or until
    /// `shutdown` completes.
    ///
    /// # Errors
    /// A fatal error of the source, the store or a sink (after which nothing more is
    /// acknowledged), or [`Error::Closed`] if a worker task died.
    pub async fn run<S>(
        &self,
        mut source: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunReport, Error>
    where
        S: CommandSource,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let mut senders = Vec::with_capacity(self.workers);
        let mut handles = Vec::with_capacity(self.workers);
        for id in 0..self.workers {
            let (tx, rx) = mpsc::channel(self.queue_capacity);
            senders.push(tx);
            let worker = Worker::new(
                id,
                Arc::clone(&self.shared),
                rx,
                stop_rx.clone(),
                Arc::clone(&stop_tx),
                self.seed,
            );
            handles.push(tokio::spawn(worker.run()));
        }
        let metrics_task = self.metrics_sink.clone().map(|(sink, interval)| {
            let (shared, mut stop_rx) = (Arc::clone(&self.shared), stop_rx.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop_rx.changed() => break,
                    }
                    emit_metrics(&shared, sink.as_ref()).await;
                }
                emit_metrics(&shared, sink.as_ref()).await;
            })
        });

        if self.resume_pending {
            self.resume(&senders).await?;
        }
        tokio::pin!(shutdown);
        // Every second: marks of the owned partitions, a checkpoint behind everything queued,
        // and once every worker passed it, "published below the marks" in the state log.
        let mut checkpoint_tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checkpoint: Option<Checkpoint> = None;
        let mut stop_rx_dispatch = stop_rx.clone();
        let mut received = 0u64;
        let mut dropped = 0u64;
        let mut failure = None;
        let mut attempt = 0;
        let mut owned: HashSet<i32> = HashSet::new();
        let mut revoked: HashSet<i32> = HashSet::new();
        let mut stopped_by = loop {
            let next = tokio::select! {
                biased;
                _ = &mut shutdown => break StopReason::Shutdown,
                _ = stop_rx_dispatch.changed() => break StopReason::Shutdown,
                passed = async { (&mut checkpoint.as_mut().expect("guarded").passed).await },
                    if checkpoint.is_some() =>
                {
                    let done = checkpoint.take().expect("guarded");
                    if passed.iter().all(Result::is_ok) {
                        self.checkpointed(&done.marks, &owned, &senders).await;
                    }
                    continue;
                }
                _ = checkpoint_tick.tick(), if checkpoint.is_none() && self.shared.state_log.is_some() => {
                    checkpoint = tokio::select! {
                        biased;
                        _ = &mut shutdown => break StopReason::Shutdown,
                        started = self.start_checkpoint(&owned, &senders) => started,
                    };
                    continue;
                }
                next = source.next_event() => next,
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => break StopReason::SourceExhausted,
                Err(e) if e.is_retryable() && self.shared.retry.allows(attempt + 1) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "source unavailable, retrying");
                    tokio::select! {
                        _ = &mut shutdown => break StopReason::Shutdown,
                        _ = tokio::time::sleep(self.shared.retry.backoff(attempt)) => continue,
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break StopReason::Shutdown;
                }
            };
            attempt = 0;
            let envelope = match event {
                SourceEvent::Command(envelope) => envelope,
                SourceEvent::Assigned(partitions) => {
                    let new: Vec<i32> = partitions
                        .into_iter()
                        .filter(|p| owned.insert(*p))
                        .collect();
                    revoked.retain(|p| !new.contains(p));
                    tracing::info!(partitions = ?new, "assigned partitions");
                    let adopted = tokio::select! {
                        biased;
                        _ = &mut shutdown => break StopReason::Shutdown,
                        adopted = self.adopt(&new, &senders) => adopted,
                    };
                    if let Err(e) = adopted {
                        failure = Some(e);
                        break StopReason::Shutdown;
                    }
                    continue;
                }
                SourceEvent::Revoked { partitions, done } => {
                    for p in &partitions {
                        owned.remove(p);
                        revoked.insert(*p);
                    }
                    let released = tokio::select! {
                        biased;
                        _ = &mut shutdown => break StopReason::Shutdown,
                        released = self.release(&partitions, &senders) => released,
                    };
                    if released.is_err() {
                        break StopReason::Shutdown;
                    }
                    done.ack();
                    continue;
                }
            };
            let partition = envelope.origin.partition;
            if !owned.contains(&partition) {
                if revoked.contains(&partition) {
                    // Left over from a revoked partition: its next owner gets it again.
                    continue;
                }
                // A source that does not report ownership owns what it delivers.
                owned.insert(partition);
                let new = [partition];
                let adopted = tokio::select! {
                    biased;
                    _ = &mut shutdown => { dropped += 1; break StopReason::Shutdown }
                    adopted = self.adopt(&new, &senders) => adopted,
                };
                if let Err(e) = adopted {
                    failure = Some(e);
                    break StopReason::Shutdown;
                }
            }
            received += 1;
            let shard = (envelope.command.order_id().shard_key() % self.workers as u64) as usize;
            let work = Work::Command {
                envelope,
                received: Instant::now(),
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => { dropped += 1; break StopReason::Shutdown }
                sent = senders[shard].send(work) => if sent.is_err() { dropped += 1; break StopReason::Shutdown },
            }
        };
        drop(senders);
        if stopped_by == StopReason::Shutdown {
            stop_tx.send_replace(true);
        }

        let mut workers = futures_util::future::join_all(handles);
        let results = tokio::select! {
            results = &mut workers => results,
            _ = &mut shutdown, if stopped_by == StopReason::SourceExhausted => {
                stopped_by = StopReason::Shutdown;
                stop_tx.send_replace(true);
                workers.await
            }
        };
        stop_tx.send_replace(true);
        if let Some(task) = metrics_task {
            let _ = task.await;
        }

        let (mut acked, mut unacked, mut clean) = (0, dropped, true);
        for result in results {
            match result {
                Ok(Ok(report)) => {
                    acked += report.acked;
                    unacked += report.unacked;
                    clean &= !report.interrupted;
                }
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => failure = failure.or(Some(Error::Closed("a runner worker panicked"))),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Every batch made durable was also published: the next owners need not republish.
        if let (true, Some(log)) = (clean, &self.shared.state_log) {
            for &partition in &owned {
                if let Err(e) = log.release(partition).await {
                    tracing::warn!(partition, error = %e, "state log did not record the hand-over");
                }
            }
        }
        Ok(RunReport {
            stopped_by,
            received,
            acked,
            unacked,
            metrics: self.shared.metrics.snapshot(),
        })
    }
}

async fn emit_metrics(shared: &Shared, sink: &dyn MetricsSink) {
    let record = shared.metrics.take_window(shared.clock.now());
    if let Err(e) = sink.record(&record).await {
        tracing::warn!(error = %e, "metrics sink failed; window dropped");
    }
}
