//! A follower's counters and its lag behind the transitions topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

/// How often the lag is measured.
const MEASURE_EVERY: Duration = Duration::from_secs(1);
/// How often a follower that stays behind says so.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for the brokers' answer about offsets.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters of a running follower, readable from anywhere while it runs (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct FollowerProgress(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    lag: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
}

impl FollowerProgress {
    /// Records the sink accepted so far.
    pub fn delivered(&self) -> u64 {
        self.0.delivered.load(Ordering::Relaxed)
    }

    /// Records in the topic not yet delivered, over the partitions this follower owns, as
    /// of the last measurement (about once a second, also while its destination is down).
    pub fn lag(&self) -> u64 {
        self.0.lag.load(Ordering::Relaxed)
    }

    /// Failed `publish` calls retried.
    pub fn retries(&self) -> u64 {
        self.0.retries.load(Ordering::Relaxed)
    }

    /// Undecodable records sent to the dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.0.dead_lettered.load(Ordering::Relaxed)
    }

    pub(super) fn add_delivered(&self, records: u64) {
        self.0.delivered.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts a retry; returns how many there were.
    pub(super) fn add_retry(&self) -> u64 {
        self.0.retries.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn add_dead_letter(&self) {
        self.0.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Measures the lag: for each owned partition, its end offset minus the next offset to
/// deliver (what was delivered, else the batch in hand, else the committed offset, else
/// the partition's start). The brokers are asked for the offsets (off the async threads),
/// so the figure is right even while the destination stalls and nothing is fetched.
pub(super) struct LagMeter {
    pub(super) consumer: Arc<StreamConsumer>,
    pub(super) topic: String,
    pub(super) name: String,
    pub(super) threshold: u64,
    pub(super) progress: FollowerProgress,
    measured: Option<Instant>,
    warned: Option<Instant>,
    /// Partitions whose lag gauge was last set, to zero those no longer owned.
    reported: Vec<i32>,
}

impl LagMeter {
    pub(super) fn new(
        consumer: Arc<StreamConsumer>,
        topic: String,
        name: String,
        threshold: u64,
        progress: FollowerProgress,
    ) -> Self {
        Self {
            consumer,
            topic,
            name,
            threshold,
            progress,
            measured: None,
            warned: None,
            reported: Vec::new(),
        }
    }

    /// Measures if the last measurement is a second old; `next` gives the next offset to
    /// deliver of the partitions the follower knows it for.
    pub(super) async fn measure_if_due(&mut self, next: HashMap<i32, i64>) {
        if self.measured.is_some_and(|t| t.elapsed() < MEASURE_EVERY) {
            return;
        }
        self.measured = Some(Instant::now());
        let (consumer, topic) = (Arc::clone(&self.consumer), self.topic.clone());
        let lag = tokio::task::spawn_blocking(move || lag_of(&consumer, &topic, &next)).await;
        let Ok(Some(per_partition)) = lag else {
            return; // brokers unreachable: keep the last figure
        };
        self.report(&per_partition);
        let lag = per_partition.iter().map(|(_, lag)| lag).sum();
        self.progress.0.lag.store(lag, Ordering::Relaxed);
        if lag > self.threshold && self.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(follower = %self.name, lag, "follower is behind the transitions topic");
            self.warned = Some(Instant::now());
        } else if lag <= self.threshold && self.warned.take().is_some() {
            tracing::info!(follower = %self.name, lag, "follower caught up");
        }
    }
}

impl LagMeter {
    /// Sets the live lag gauge of each owned partition (and zeroes the ones given away).
    fn report(&mut self, per_partition: &[(i32, u64)]) {
        let gauge = |partition: i32| {
            metrics::gauge!(
                order_fsm::telemetry::FOLLOWER_LAG,
                "follower" => self.name.clone(),
                "partition" => partition.to_string()
            )
        };
        for &gone in &self.reported {
            if !per_partition.iter().any(|&(p, _)| p == gone) {
                gauge(gone).set(0.0);
            }
        }
        for &(partition, lag) in per_partition {
            gauge(partition).set(lag as f64);
        }
        self.reported = per_partition.iter().map(|&(p, _)| p).collect();
    }
}

/// Each owned partition's lag.
fn lag_of(
    consumer: &StreamConsumer,
    topic: &str,
    next: &HashMap<i32, i64>,
) -> Option<Vec<(i32, u64)>> {
    let assignment = consumer.assignment().ok()?;
    let owned: Vec<i32> = assignment
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    let query = |offset: Offset, partitions: &[i32]| -> Option<HashMap<i32, i64>> {
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            list.add_partition_offset(topic, p, offset).ok()?;
        }
        let answer = consumer.offsets_for_times(list, QUERY_TIMEOUT).ok()?;
        Some(offsets_in(&answer, topic))
    };
    let ends = query(Offset::End, &owned)?;
    let mut starts: HashMap<i32, i64> = owned
        .iter()
        .filter_map(|p| next.get(p).map(|&o| (*p, o)))
        .collect();
    let unknown: Vec<i32> = owned
        .iter()
        .copied()
        .filter(|p| !starts.contains_key(p))
        .collect();
    if !unknown.is_empty() {
        let mut list = TopicPartitionList::new();
        for &p in &unknown {
            list.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(list, QUERY_TIMEOUT).ok()?;
        starts.extend(offsets_in(&committed, topic));
        let still: Vec<i32> = unknown
            .into_iter()
            .filter(|p| !starts.contains_key(p))
            .collect();
        if !still.is_empty() {
            starts.extend(query(Offset::Beginning, &still)?);
        }
    }
    Some(
        ends.iter()
            .map(|(&p, end)| {
                let start = starts.get(&p).copied().unwrap_or(*end);
                (p, u64::try_from(end - start).unwrap_or(0))
            })
            .collect(),
    )
}

/// The valid (non-negative) offsets of `topic`'s partitions in `list`.
fn offsets_in(list: &TopicPartitionList, topic: &str) -> HashMap<i32, i64> {
    list.elements_for_topic(topic)
        .iter()
        .filter_map(|e| {
            let offset = e.offset().to_raw().filter(|&o| o >= 0)?;
            Some((e.partition(), offset))
        })
        .collect()
}
