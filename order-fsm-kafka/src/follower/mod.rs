//! Followers: readers of the transitions topic, each with its own consumer group and
//! committed offsets, that drive any [`TransitionSink`] at their own pace.

mod builder;
mod lag;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use order_fsm::{Error, TransitionRecord, TransitionSink};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

pub use builder::{FollowerBuilder, StartFrom};
pub use lag::FollowerProgress;
use lag::LagMeter;

use crate::watchdog::{Reading, Signals, REJOIN_WAIT};
use crate::{KafkaDeadLetterSink, KafkaError};

/// Reads the transitions topic with its own consumer group and drives a [`TransitionSink`].
///
/// # Contract
/// - **At least once**: a batch's offsets are committed only after the sink accepted the
///   batch (`Ok`), so a crash or a rebalance delivers at most the uncommitted batches again,
///   and never anything below the committed offsets. Records also repeat when the runner
///   published a batch twice; destinations dedupe by `(order_id, version)`.
/// - **Order**: records of one order (one partition) reach the sink in topic order.
/// - **Its own pace**: a sink failing with [`Error::Unavailable`] is retried with backoff
///   (100 ms doubling to 5 s) for as long as it fails; the workers never wait for a
///   follower. Its lag shows in [`FollowerProgress::lag`] and in a warning log.
/// - **Bad records**: an undecodable record goes to the dead-letter topic with its reason
///   and the follower goes on. A fatal sink error ends [`run`](Self::run) with that error,
///   its batch uncommitted.
/// - **Unserved partitions**: like the source, a follower that starts from the earliest
///   record and commits watches its group's committed offsets; partitions with records waiting that no member of the group reads for
///   [`KafkaConfig::stall_timeout`](crate::KafkaConfig::stall_timeout) make it re-join the
///   group (logged at `warn`). A follower killed and restarted on tansu 0.6.0 needs it: the
///   coordinator can answer the newcomer with the dead member's stale assignment.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use order_fsm::MemorySink;
/// use order_fsm_kafka::{KafkaConfig, KafkaFollower};
///
/// let config = KafkaConfig::from_env()?;
/// let follower = KafkaFollower::builder(&config, "audit").with_batch_size(100).build()?;
/// let progress = follower.progress();
/// let sink = Arc::new(MemorySink::new());
/// let report = follower
///     .run(sink, async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// assert_eq!(report.delivered, progress.delivered());
/// # Ok(()) }
/// ```
pub struct KafkaFollower {
    consumer: Arc<StreamConsumer>,
    dead_letters: KafkaDeadLetterSink,
    /// How a record without a format header is read.
    format: crate::WireFormat,
    topic: String,
    name: String,
    group: String,
    batch_size: usize,
    batch_wait: Duration,
    commits: bool,
    lag: LagMeter,
    signals: Arc<Signals>,
}

impl Drop for KafkaFollower {
    fn drop(&mut self) {
        self.signals.stop.store(true, Ordering::Relaxed);
    }
}

/// What a follower reads: the partitions assigned to its consumer.
pub(crate) struct Assigned {
    pub(crate) consumer: Weak<StreamConsumer>,
    pub(crate) topic: String,
}

impl Reading for Assigned {
    fn reading(&self, partition: i32, _committed: i64) -> bool {
        let Some(consumer) = self.consumer.upgrade() else {
            return false;
        };
        consumer
            .assignment()
            .is_ok_and(|assigned| assigned.find_partition(&self.topic, partition).is_some())
    }
}

impl std::fmt::Debug for KafkaFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFollower")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// What a follower did until it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FollowerReport {
    /// Records the sink accepted.
    pub delivered: u64,
    /// Failed `publish` calls retried.
    pub retries: u64,
    /// Undecodable records dead-lettered.
    pub dead_lettered: u64,
}

/// One batch read from the topic: decoded records, and per partition the first offset read
/// and the offset after the last.
#[derive(Default)]
struct Batch {
    records: Vec<TransitionRecord>,
    first_offsets: HashMap<i32, i64>,
    next_offsets: HashMap<i32, i64>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often an idle follower measures its lag.
const IDLE_TICK: Duration = Duration::from_secs(1);

impl KafkaFollower {
    /// The follower's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Its counters (a handle that stays valid while and after it runs).
    pub fn progress(&self) -> FollowerProgress {
        self.lag.progress.clone()
    }

    /// Delivers transitions to `sink` until `shutdown` completes (then commits what was
    /// delivered and returns) or the sink fails for good.
    ///
    /// # Errors
    /// The sink's fatal error, or a fatal consumer error.
    pub async fn run(
        mut self,
        sink: Arc<dyn TransitionSink>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<FollowerReport, Error> {
        tokio::pin!(shutdown);
        let mut delivered: HashMap<i32, i64> = HashMap::new();
        let mut tick = tokio::time::interval(IDLE_TICK);
        let mut rejoining = None;
        loop {
            self.rejoin_if_asked(&delivered, &mut rejoining);
            let first = tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    self.lag.measure_if_due(delivered.clone()).await;
                    continue;
                }
                message = self.consumer.recv() => message,
            };
            let mut batch = Batch::default();
            self.take(first, &mut batch).await?;
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while batch.records.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(message) => self.take(message, &mut batch).await?,
                    Err(_) => break,
                }
            }
            if !self
                .deliver(&*sink, &batch, &delivered, &mut shutdown)
                .await?
            {
                break; // shut down while the sink was failing: the batch stays uncommitted
            }
            delivered.extend(&batch.next_offsets);
            self.commit(&batch.next_offsets, CommitMode::Async);
            self.lag.measure_if_due(delivered.clone()).await;
        }
        self.commit(&delivered, CommitMode::Sync);
        let progress = &self.lag.progress;
        Ok(FollowerReport {
            delivered: progress.delivered(),
            retries: progress.retries(),
            dead_lettered: progress.dead_lettered(),
        })
    }

    /// Leaves the group when the watchdog asks (committing what was delivered), and
    /// subscribes again once the assignment was given up (or after [`REJOIN_WAIT`]).
    fn rejoin_if_asked(&self, delivered: &HashMap<i32, i64>, rejoining: &mut Option<Instant>) {
        if self.signals.rejoin.swap(false, Ordering::AcqRel) && rejoining.is_none() {
            self.commit(delivered, CommitMode::Sync);
            self.consumer.unsubscribe();
            *rejoining = Some(Instant::now());
        }
        let Some(since) = *rejoining else {
            return;
        };
        let released = self.consumer.assignment().map_or(true, |a| a.count() == 0);
        if released || since.elapsed() >= REJOIN_WAIT {
            *rejoining = None;
            match self.consumer.subscribe(&[&self.topic]) {
                Ok(()) => tracing::info!(follower = %self.name, "re-joined the consumer group"),
                Err(e) => tracing::warn!(follower = %self.name, error = %e, "re-join failed"),
            }
        }
    }

    /// Adds one consumed message to `batch` (decoded, or dead-lettered when it cannot be).
    async fn take(
        &self,
        message: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        batch: &mut Batch,
    ) -> Result<(), Error> {
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                let e = KafkaError::from(e);
                if e.is_retryable() {
                    tracing::warn!(follower = %self.name, error = %e, "transitions topic");
                    return Ok(());
                }
                return Err(e.into());
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        let decoded = message
            .payload()
            .ok_or_else(|| "no payload".to_owned())
            .and_then(|p| {
                crate::codec::decode_transitions(&message, self.format, p)
                    .map_err(|e| e.to_string())
            });
        match decoded {
            Ok(records) => batch.records.extend(records),
            Err(reason) => {
                let reason = format!("undecodable transition record: {reason}");
                tracing::warn!(follower = %self.name, partition, offset, %reason, "dead-lettered");
                let key = message.key().unwrap_or_default();
                let payload = message.payload().unwrap_or_default();
                let mut backoff = FIRST_BACKOFF;
                while let Err(e) = self
                    .dead_letters
                    .send_raw(key.to_vec(), payload.to_vec(), &reason, partition, offset)
                    .await
                {
                    if !e.is_retryable() {
                        return Err(e.into());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                self.lag.progress.add_dead_letter();
            }
        }
        batch.first_offsets.entry(partition).or_insert(offset);
        batch.next_offsets.insert(partition, offset + 1);
        Ok(())
    }

    /// Publishes the batch, retrying (and measuring the lag) while the sink is unavailable;
    /// `false` if `shutdown` completed first.
    async fn deliver(
        &mut self,
        sink: &dyn TransitionSink,
        batch: &Batch,
        delivered: &HashMap<i32, i64>,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, Error> {
        if batch.records.is_empty() {
            return Ok(true);
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            match sink.publish(&batch.records).await {
                Ok(()) => {
                    self.lag.progress.add_delivered(batch.records.len() as u64);
                    return Ok(true);
                }
                Err(e) if e.is_retryable() => {
                    let retries = self.lag.progress.add_retry();
                    tracing::warn!(
                        follower = %self.name, error = %e, retries,
                        backoff_ms = backoff.as_millis() as u64,
                        "destination unavailable; retrying"
                    );
                    let mut next = batch.first_offsets.clone();
                    next.extend(delivered);
                    self.lag.measure_if_due(next).await;
                    tokio::select! {
                        () = shutdown.as_mut() => return Ok(false),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn commit(&self, next_offsets: &HashMap<i32, i64>, mode: CommitMode) {
        if !self.commits || next_offsets.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in next_offsets {
            if let Err(e) =
                list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(follower = %self.name, error = %e, "offset not committed");
            }
        }
        // A failed commit (a rebalance moved the partition) only means records are
        // delivered again; the next batch's commit covers this one's too.
        if let Err(e) = self.consumer.commit(&list, mode) {
            tracing::debug!(follower = %self.name, error = %e, "commit failed");
        }
    }
}
