//! [`KafkaStateLog`]: the state changelog of the runner over a Kafka topic, restored from a
//! point that depends on the orders still live, not on the partition's history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use order_fsm::{Error, Lifecycle, OrderId, StateChange, StateLog, StateRecord};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::{KafkaConfig, KafkaError};

mod restore;
use restore::Reader;

/// Header of every state record and tombstone: the offset a restore of its partition may
/// start from and still find the latest record of every order live when it was produced.
const HEADER_RESTORE_FROM: &str = "order-fsm-restore-from";

/// Header of the marker records [`StateLog::published_below`] (every second) and
/// [`StateLog::release`] write: every change at an offset below its value was published.
const HEADER_PUBLISHED_BELOW: &str = "order-fsm-published-below";

/// Key of marker records (not an order id, so never a tombstone).
const MARKER_KEY: &str = "order-fsm-marker";

/// Records behind the end of its partition past which a live order's latest record counts
/// as lagging (at least; four times the live orders when there are more).
const LAGGING_WINDOW: i64 = 1_000;

/// Most lagging orders named at once.
const LAGGING_BATCH: usize = 1_000;

/// Default bound of one [`StateLog::restore`].
const DEFAULT_RESTORE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a restore logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A [`StateLog`] over `config`'s state topic: one [`StateRecord`] per change, keyed by
/// order id, at the change's own partition; a tombstone (no payload) per forgotten order.
/// Records are in `config`'s [wire format](KafkaConfig::with_wire_format), JSON or protobuf
/// (`order_fsm.v1.StateRecord`, about 55 % of the JSON bytes), named by the
/// [`HEADER_FORMAT`](crate::HEADER_FORMAT) header; a restore reads both.
///
/// # Restore cost
/// Restoring a partition does not read its whole history. For every partition it restored
/// (and so owns), the log remembers the offset of the latest record of each live order; every
/// record it produces carries a header `order-fsm-restore-from` with the smallest of those
/// offsets (or the partition's end when there are none). Every order live when a record is
/// produced has its latest record at or after that offset, and later records land after it,
/// so a restore reads the partition's last record, then only from its header to the end.
/// Forgetting finished orders moves that point on: a restore reads about as many records as
/// there are live orders, plus what was written since the oldest of them last changed.
/// Records written to a partition this log did not restore first carry offset 0 (restore
/// from the start), as the log cannot know the orders earlier owners wrote there. Log
/// compaction (`cleanup.policy=compact`, see [`crate::provision_topics`]) only shortens the
/// stretch that is read; correctness never depends on it.
///
/// # Contract
/// See [`StateLog`]. `append` and `forget` return `Ok` only once the broker acknowledged
/// every record (idempotent producer, `acks=all`); a failed delivery is an
/// [`Error::Unavailable`] when retrying may help. The owner of a partition is assumed to be
/// its only writer: `restore` reads up to the high watermark it saw at its start. A record
/// that does not decode is skipped with a warning. Concurrent appends of the same order are
/// not expected (the runner handles an order on one task).
///
/// # Brokers
/// A restore starts fetching at the partition's last offset and at the restore point. tansu
/// 0.6.0 serves nothing when a fetch starts inside a record batch, and its watermarks count
/// batches: against it, producers must write one record per batch (`batch.num.messages=1`,
/// set with [`KafkaConfig::with_property`]).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use order_fsm::{Lifecycle, StateLog};
/// use order_fsm_kafka::{KafkaConfig, KafkaStateLog};
///
/// let config = KafkaConfig::from_env()?;
/// let log = KafkaStateLog::new(&config, Arc::new(Lifecycle::ecommerce()))?
///     .with_restore_timeout(std::time::Duration::from_secs(120));
/// let orders = log.restore(0).await?;
/// println!("{} live orders in partition 0", orders.len());
/// # Ok(()) }
/// ```
pub struct KafkaStateLog {
    producer: FutureProducer,
    config: KafkaConfig,
    topic: Arc<str>,
    lifecycle: Arc<Lifecycle>,
    restore_timeout: Duration,
    partitions: Mutex<HashMap<i32, Positions>>,
    last_restore_records: AtomicU64,
}

impl std::fmt::Debug for KafkaStateLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owned: Vec<i32> = {
            let mut owned: Vec<i32> = self.lock().keys().copied().collect();
            owned.sort_unstable();
            owned
        };
        f.debug_struct("KafkaStateLog")
            .field("topic", &self.topic)
            .field("restore_timeout", &self.restore_timeout)
            .field("tracked_partitions", &owned)
            .finish_non_exhaustive()
    }
}

impl KafkaStateLog {
    /// A log over `config`'s state topic, decoding states with `lifecycle`. The topic must
    /// exist ([`crate::provision_topics`]) with the commands topic's partition count.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn new(config: &KafkaConfig, lifecycle: Arc<Lifecycle>) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: config.producer_config().create()?,
            config: config.clone(),
            topic: config.state_topic().into(),
            lifecycle,
            restore_timeout: DEFAULT_RESTORE_TIMEOUT,
            partitions: Mutex::new(HashMap::new()),
            last_restore_records: AtomicU64::new(0),
        })
    }

    /// Bounds each restore of a partition (default 60 s); a restore that does not reach the
    /// partition's end in time fails with [`Error::Unavailable`].
    #[must_use]
    pub fn with_restore_timeout(mut self, timeout: Duration) -> Self {
        self.restore_timeout = timeout;
        self
    }

    /// How many records the last finished [`StateLog::restore`] read from the topic (the
    /// partition's last record included): a measure of what a restore costs.
    pub fn records_read_by_last_restore(&self) -> u64 {
        self.last_restore_records.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Positions>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The restore-from header of each partition, as it stands before producing.
    fn restore_points(&self, partitions: impl Iterator<Item = i32>) -> HashMap<i32, String> {
        let tracked = self.lock();
        partitions
            .map(|p| {
                // An untracked partition may hold orders of earlier owners: from the start.
                let from = tracked.get(&p).map_or(0, Positions::restore_from);
                (p, from.to_string())
            })
            .collect()
    }

    /// Produces `records`, waits for every delivery report, and records the offsets of
    /// those delivered. Returns the first failure.
    async fn send(&self, records: Vec<Outgoing>) -> Result<(), KafkaError> {
        let from = self.restore_points(records.iter().map(|r| r.partition));
        let mut in_flight: Vec<(Written, DeliveryFuture)> = Vec::with_capacity(records.len());
        let mut failure = None;
        'records: for outgoing in records {
            let key = outgoing.order.to_string();
            let restore_from = Header {
                key: HEADER_RESTORE_FROM,
                value: Some(&from[&outgoing.partition]),
            };
            let headers = match outgoing.payload {
                Some(_) => self.config.wire_format().headers(1).insert(restore_from),
                None => OwnedHeaders::new_with_capacity(1).insert(restore_from),
            };
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
                .partition(outgoing.partition)
                .key(&key)
                .headers(headers);
            if let Some(payload) = &outgoing.payload {
                record = record.payload(&payload[..]);
            }
            let written = Written {
                partition: outgoing.partition,
                order: outgoing.order,
                tombstone: outgoing.payload.is_none(),
            };
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push((written, delivery));
                        break;
                    }
                    Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: settle what is in flight, then go on. The
                        // headers computed before stay valid (they only get more cautious).
                        record = back;
                        if let Err(e) = self.settle(&mut in_flight).await {
                            failure = Some(e);
                            break 'records;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => {
                        failure = Some(e.into());
                        break 'records;
                    }
                }
            }
        }
        // Always wait for what was enqueued, so a failed call leaves nothing in flight.
        let settled = self.settle(&mut in_flight).await;
        match failure {
            Some(e) => Err(e),
            None => settled,
        }
    }

    /// Awaits every delivery of `in_flight`, then records the offsets of those delivered.
    async fn settle(
        &self,
        in_flight: &mut Vec<(Written, DeliveryFuture)>,
    ) -> Result<(), KafkaError> {
        let mut outcome = Ok(());
        let mut delivered = Vec::with_capacity(in_flight.len());
        for (written, delivery) in in_flight.drain(..) {
            let result = match delivery.await {
                Ok(Ok(d)) => {
                    delivered.push((written, d.offset));
                    Ok(())
                }
                Ok(Err((e, _))) => Err(KafkaError::from(e)),
                Err(_) => Err(KafkaError::Canceled),
            };
            if let (Err(e), Ok(())) = (result, &outcome) {
                outcome = Err(e);
            }
        }
        let mut tracked = self.lock();
        for (written, offset) in delivered {
            if let Some(positions) = tracked.get_mut(&written.partition) {
                if written.tombstone {
                    positions.forgotten(written.order, offset);
                } else {
                    positions.written(written.order, offset);
                }
            }
        }
        outcome
    }
}

/// One record to produce.
struct Outgoing {
    partition: i32,
    order: OrderId,
    /// `None` for a tombstone.
    payload: Option<Vec<u8>>,
}

/// What a delivered record changes in the bookkeeping.
struct Written {
    partition: i32,
    order: OrderId,
    tombstone: bool,
}

/// Where the latest record of each live order of one partition is.
#[derive(Debug, Default)]
struct Positions {
    latest: HashMap<OrderId, i64>,
    by_offset: BTreeMap<i64, OrderId>,
    /// The offset after the last record delivered (or the high watermark at restore).
    end: i64,
}

impl Positions {
    /// The offset the latest record of every live order is at or after.
    fn restore_from(&self) -> i64 {
        self.by_offset.keys().next().copied().unwrap_or(self.end)
    }

    /// A record of `order` is at `offset`.
    fn written(&mut self, order: OrderId, offset: i64) {
        self.end = self.end.max(offset + 1);
        match self.latest.get(&order) {
            Some(&old) if old >= offset => return,
            Some(&old) => {
                self.by_offset.remove(&old);
            }
            None => {}
        }
        self.latest.insert(order, offset);
        self.by_offset.insert(offset, order);
    }

    /// A tombstone of `order` is at `offset`.
    fn forgotten(&mut self, order: OrderId, offset: i64) {
        self.end = self.end.max(offset + 1);
        if let Some(&old) = self.latest.get(&order) {
            if old < offset {
                self.latest.remove(&order);
                self.by_offset.remove(&old);
            }
        }
    }
}

#[async_trait]
impl StateLog for KafkaStateLog {
    async fn append(&self, changes: &[StateChange]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut records = Vec::with_capacity(changes.len());
        for change in changes {
            let record = StateRecord::of_change(&self.lifecycle, change);
            records.push(Outgoing {
                partition: change.partition,
                order: change.state.id,
                payload: Some(self.config.wire_format().encode_state(&record)?),
            });
        }
        Ok(self.send(records).await?)
    }

    async fn forget(&self, partition: i32, orders: &[OrderId]) -> Result<(), Error> {
        if orders.is_empty() {
            return Ok(());
        }
        let records = orders
            .iter()
            .map(|&order| Outgoing {
                partition,
                order,
                payload: None,
            })
            .collect();
        Ok(self.send(records).await?)
    }

    async fn restore(&self, partition: i32) -> Result<Vec<StateChange>, Error> {
        let reader = Reader {
            config: self.config.clone(),
            topic: Arc::clone(&self.topic),
            lifecycle: Arc::clone(&self.lifecycle),
            timeout: self.restore_timeout,
            partition,
        };
        let restored = tokio::task::spawn_blocking(move || reader.restore())
            .await
            .map_err(|e| Error::backend("kafka", format!("state restore task failed: {e}")))??;
        self.last_restore_records
            .store(restored.records, Ordering::Relaxed);
        let mut positions = Positions {
            end: restored.high,
            ..Positions::default()
        };
        let mut changes = Vec::with_capacity(restored.live.len());
        for (order, (offset, change)) in restored.live {
            positions.latest.insert(order, offset);
            positions.by_offset.insert(offset, order);
            changes.push(change);
        }
        self.lock().insert(partition, positions);
        Ok(changes)
    }

    async fn release(&self, partition: i32) -> Result<(), Error> {
        let marked = match self.mark(partition) {
            Some(mark) => self.published_below(partition, mark).await,
            None => Ok(()),
        };
        self.lock().remove(&partition);
        marked
    }

    /// Live orders whose latest record is more than `max(1,000, 4 × live orders)` records
    /// behind the end of the partition (at most 1,000 per call, oldest first).
    fn lagging(&self, partition: i32) -> Vec<OrderId> {
        let tracked = self.lock();
        let Some(positions) = tracked.get(&partition) else {
            return Vec::new();
        };
        let window = (4 * positions.latest.len() as i64).max(LAGGING_WINDOW);
        positions
            .by_offset
            .range(..positions.end - window)
            .take(LAGGING_BATCH)
            .map(|(_, order)| *order)
            .collect()
    }

    fn mark(&self, partition: i32) -> Option<u64> {
        self.lock()
            .get(&partition)
            .map(|positions| positions.end.max(0) as u64)
    }

    async fn published_below(&self, partition: i32, mark: u64) -> Result<(), Error> {
        let from = self.restore_points(std::iter::once(partition))[&partition].clone();
        let below = mark.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: HEADER_RESTORE_FROM,
                value: Some(&from),
            })
            .insert(Header {
                key: HEADER_PUBLISHED_BELOW,
                value: Some(&below),
            });
        let record = FutureRecord::<str, [u8]>::to(&self.topic)
            .partition(partition)
            .key(MARKER_KEY)
            .payload(&[][..])
            .headers(headers);
        match self.producer.send_result(record) {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(KafkaError::from(e).into()),
                Err(_) => Err(KafkaError::Canceled.into()),
            },
            Err((e, _)) => Err(KafkaError::from(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_point_follows_the_oldest_live_order() {
        let (a, b) = (OrderId::random(), OrderId::random());
        let mut p = Positions::default();
        assert_eq!(p.restore_from(), 0);
        p.written(a, 0);
        p.written(b, 1);
        assert_eq!(p.restore_from(), 0);
        p.written(a, 2);
        assert_eq!(p.restore_from(), 1);
        // A report of an older record does not move an order back.
        p.written(a, 1);
        assert_eq!(p.latest[&a], 2);
        p.forgotten(b, 3);
        assert_eq!(p.restore_from(), 2);
        p.forgotten(a, 4);
        assert_eq!(p.restore_from(), 5);
        assert!(p.latest.is_empty() && p.by_offset.is_empty());
    }
}
