//! Notices partitions of a group's topic that nobody serves and asks the group's member
//! (the source's polling thread, or a follower) to re-join the group.
//!
//! A consumer group can be left with partitions that hold unread records while no
//! member reads them: after a broker stall (the coordinator expired every session while it
//! was paused, and the members' rejoin did not complete), or when a coordinator answers
//! `SyncGroup` with a stale assignment (tansu 0.6.0 after a member's session expired). No
//! librdkafka setting ends that; a new generation does. So a thread of each source watches,
//! for every partition, the high watermark and the group's committed offset; a partition
//! with commands past its committed offset that stood still for the stall timeout, and that
//! this member is not reading, is stalled, and the member re-joins. A member that is merely
//! slow still commits; one that is restoring, or whose destination is down, is reading (its
//! partitions do not count).
//!
//! Until the partitions move again, the watchdog also commits their committed offsets once
//! more, a no-op for the offsets. tansu 0.6.0 needs it: when a lone leader's session expires
//! during a stall, its own late heartbeat evicts it while the group keeps it as leader, and
//! every later member waits for that leader's assignment forever; the coordinator forgets
//! the phantom only when it reloads the group from storage, which a commit arriving while a
//! join is pending makes it do (fixed upstream after 0.6.0, commit 50e5666). A Kafka broker
//! refuses a commit outside the generation from a group with members, harmlessly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::TopicPartitionList;

use crate::{KafkaConfig, KafkaError};

/// How often the offsets are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(2);
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait, in a re-join, for the old assignment to be given up before subscribing
/// again.
pub(crate) const REJOIN_WAIT: Duration = Duration::from_secs(10);

/// Flags shared by the watchdog thread and the member it watches for.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Set by the watchdog; taken by the member, which re-joins.
    pub(crate) rejoin: AtomicBool,
    /// Set when the member is dropped; the watchdog thread ends.
    pub(crate) stop: AtomicBool,
}

/// What the watched member reads right now.
pub(crate) trait Reading: Send + Sync + 'static {
    /// Whether this member reads `partition`, whose group offset is `committed`.
    fn reading(&self, partition: i32, committed: i64) -> bool;
}

/// Starts the watchdog of `topic` for the member of `group` that `reading` describes; it
/// ends when `signals.stop` is set.
pub(crate) fn spawn(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    reading: Arc<dyn Reading>,
    signals: Arc<Signals>,
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = config.reader_config(&[]).set("group.id", group).create()?;
    let topic = topic.to_owned();
    // Members of one group notice a stall at about the same time; spread their re-joins so
    // that one new generation usually suffices.
    let jitter =
        uuid::Uuid::new_v4().as_u128() as u64 % (config.stall_timeout().as_millis() as u64 / 4 + 1);
    let stall_timeout = config.stall_timeout() + Duration::from_millis(jitter);
    std::thread::Builder::new()
        .name("ofsm-watchdog".into())
        .spawn(move || {
            let mut watch = Watch::default();
            let mut nudge_until = None;
            while !signals.stop.load(Ordering::Relaxed) {
                match offsets(&consumer, &topic) {
                    Ok(offsets) => {
                        let stalled = watch.update(&offsets, &*reading, stall_timeout);
                        if !stalled.is_empty() {
                            tracing::warn!(
                                ?stalled,
                                stall_secs = stall_timeout.as_secs(),
                                "partitions with records nobody is reading; re-joining the group"
                            );
                            signals.rejoin.store(true, Ordering::Release);
                            nudge_until = Some(Instant::now() + stall_timeout);
                        }
                        if nudge_until.is_some_and(|until| Instant::now() < until) {
                            nudge(&consumer, &topic, &offsets, &*reading);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "offsets not read"),
                }
                std::thread::sleep(CHECK_EVERY);
            }
        })
        .map_err(|e| KafkaError::Config(format!("cannot start the watchdog thread: {e}")))?;
    Ok(())
}

/// Commits again the committed offsets of the partitions with records waiting that this
/// member does not read (see the module documentation).
fn nudge(
    consumer: &BaseConsumer,
    topic: &str,
    offsets: &HashMap<i32, (i64, i64)>,
    reading: &dyn Reading,
) {
    let mut list = TopicPartitionList::new();
    for (&p, &(high, committed)) in offsets {
        if high > committed && !reading.reading(p, committed) {
            let _ = list.add_partition_offset(topic, p, rdkafka::Offset::Offset(committed));
        }
    }
    if list.count() > 0 {
        if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
            tracing::debug!(error = %e, "committed offsets not committed again");
        }
    }
}

/// Per partition: `(high watermark, committed offset or the low watermark)`.
fn offsets(consumer: &BaseConsumer, topic: &str) -> Result<HashMap<i32, (i64, i64)>, KafkaError> {
    let partitions = crate::topics::partition_ids(consumer, topic, QUERY_TIMEOUT)?;
    let mut list = TopicPartitionList::new();
    for &p in &partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, QUERY_TIMEOUT)?;
    let mut out = HashMap::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, QUERY_TIMEOUT)?;
        let done = committed
            .find_partition(topic, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|&o| o >= 0)
            .unwrap_or(low);
        out.insert(p, (high, done.max(low)));
    }
    Ok(out)
}

/// Since when each partition's committed offset stood still with records waiting.
#[derive(Debug, Default)]
struct Watch {
    since: HashMap<i32, (i64, Instant)>,
    /// Re-joins in a row that did not get every partition moving: each one doubles the
    /// wait before the next (up to 16×), so a member that is alive but stuck (a destination
    /// in its acknowledgement path down) does not make the others churn the group.
    rejoins: u32,
}

impl Watch {
    /// Takes new offsets in; returns the partitions stalled for `timeout` (and starts their
    /// clocks again, so the next re-join waits another `timeout`).
    fn update(
        &mut self,
        offsets: &HashMap<i32, (i64, i64)>,
        reading: &dyn Reading,
        timeout: Duration,
    ) -> Vec<i32> {
        let now = Instant::now();
        let timeout = timeout * (1 << self.rejoins.min(4));
        let (mut stalled, mut standing) = (Vec::new(), false);
        for (&p, &(high, committed)) in offsets {
            let waiting = high > committed && !reading.reading(p, committed);
            match self.since.get(&p) {
                Some(&(seen, since)) if waiting && seen == committed => {
                    standing = true;
                    if now.duration_since(since) >= timeout {
                        stalled.push(p);
                    }
                }
                _ => {
                    self.since.insert(p, (committed, now));
                }
            }
        }
        if !stalled.is_empty() {
            self.rejoins += 1;
            for entry in self.since.values_mut() {
                entry.1 = now;
            }
        } else if !standing {
            self.rejoins = 0;
        }
        stalled.sort_unstable();
        stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member that reads a fixed set of partitions.
    struct Reads(Vec<i32>);

    impl Reading for Reads {
        fn reading(&self, partition: i32, _: i64) -> bool {
            self.0.contains(&partition)
        }
    }

    #[test]
    fn a_partition_is_stalled_only_when_it_waits_unread_and_still() {
        let tracker = Reads(vec![2]);
        let mut watch = Watch::default();
        let timeout = Duration::from_millis(30);
        // Partition 0 waits and nobody reads it; 1 is caught up; 2 waits but is read here.
        let offsets = HashMap::from([(0, (10, 4)), (1, (7, 7)), (2, (9, 5))]);
        assert!(watch.update(&offsets, &tracker, timeout).is_empty());
        std::thread::sleep(timeout);
        assert_eq!(watch.update(&offsets, &tracker, timeout), vec![0]);
        // The clocks start again after a stall was reported.
        assert!(watch.update(&offsets, &tracker, timeout).is_empty());
        // A second stall in a row waits twice as long.
        std::thread::sleep(timeout);
        assert!(watch.update(&offsets, &tracker, timeout).is_empty());
        std::thread::sleep(timeout);
        assert_eq!(watch.update(&offsets, &tracker, timeout), vec![0]);
        // A committed offset that moves is progress, and the wait is back to one timeout.
        let moved = HashMap::from([(0, (10, 5)), (1, (7, 7)), (2, (9, 5))]);
        assert!(watch.update(&moved, &tracker, timeout).is_empty());
        assert_eq!(watch.rejoins, 0);
        std::thread::sleep(timeout);
        assert_eq!(watch.update(&moved, &tracker, timeout), vec![0]);
    }
}
