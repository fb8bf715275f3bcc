//! Restoring one partition of the state topic: the blocking reader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{Error, Lifecycle, OrderId, StateChange, StateRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{HEADER_PUBLISHED_BELOW, HEADER_RESTORE_FROM, PROGRESS_EVERY};
use crate::{KafkaConfig, KafkaError, WireFormat};

/// The blocking side of one restore.
pub(super) struct Reader {
    pub(super) config: KafkaConfig,
    pub(super) topic: Arc<str>,
    pub(super) lifecycle: Arc<Lifecycle>,
    pub(super) timeout: Duration,
    pub(super) partition: i32,
}

/// What a restore found.
pub(super) struct Restored {
    /// Each live order: the offset of its latest record and its change.
    pub(super) live: HashMap<OrderId, (i64, StateChange)>,
    /// The high watermark read up to.
    pub(super) high: i64,
    /// Records read.
    pub(super) records: u64,
}

impl Reader {
    pub(super) fn restore(&self) -> Result<Restored, Error> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let (topic, partition) = (&*self.topic, self.partition);
        let consumer = self.consumer()?;
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, left(deadline))
            .map_err(KafkaError::from)?;
        let mut live = HashMap::new();
        if high <= low {
            tracing::debug!(topic, partition, high, "state partition is empty");
            return Ok(Restored {
                live,
                high,
                records: 0,
            });
        }
        let last = high - 1;
        // The last record says where the latest records of all live orders begin.
        let mut restore_from = None;
        let mut records = self.read(&consumer, last, last, deadline, |message| {
            restore_from = restore_from_header(message);
        })?;
        // The same consumer reads on: the first read drained everything fetched up to `last`,
        // and anything past it would be an error anyway.
        let start = restore_from.unwrap_or(low).clamp(low, last);
        if restore_from.is_none() {
            tracing::warn!(
                topic,
                partition,
                offset = last,
                "the last state record has no restore-from header: reading the whole partition"
            );
        }
        let mut skipped = 0u64;
        let mut published_below = None;
        records += self.read(&consumer, start, last, deadline, |message| {
            if let Some(below) = published_below_header(message) {
                published_below = published_below.max(Some(below));
            } else if !self.apply(message, &mut live) {
                skipped += 1;
            }
        })?;
        // What the last owner checkpointed (or handed over) as published needs no republish.
        if let Some(below) = published_below {
            for (offset, change) in live.values_mut() {
                if *offset < below {
                    change.published_up_to = change.state.version;
                }
            }
        }
        tracing::info!(
            topic,
            partition,
            low,
            start,
            high,
            records,
            live = live.len(),
            skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored order states"
        );
        Ok(Restored {
            live,
            high,
            records,
        })
    }

    /// A consumer of its own group that never commits. `fetch.wait.max.ms` is short: a
    /// restore never waits for new records, and some brokers (tansu) hold every fetch for
    /// the full wait (librdkafka's default is 500 ms).
    fn consumer(&self) -> Result<BaseConsumer, Error> {
        let mut client = self.config.reader_config(&[
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "10"),
        ]);
        client.set(
            "group.id",
            format!("order-fsm-state-restore-{}", uuid::Uuid::new_v4()),
        );
        Ok(client.create().map_err(KafkaError::from)?)
    }

    /// Reads the partition from offset `from` to `to` (both included), calling `each` per
    /// record; returns how many were read. Fails when records past `to` show up, as `to + 1`
    /// was the high watermark.
    fn read(
        &self,
        consumer: &BaseConsumer,
        from: i64,
        to: i64,
        deadline: Instant,
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<u64, Error> {
        let (topic, partition) = (&*self.topic, self.partition);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(KafkaError::from)?;
        consumer.assign(&list).map_err(KafkaError::from)?;
        let mut read = 0u64;
        let mut reached = from;
        let mut beyond: Option<i64> = None;
        let mut progress_at = Instant::now() + PROGRESS_EVERY;
        while reached <= to {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::unavailable(
                    "kafka",
                    format!(
                        "restoring {topic} partition {partition} timed out after {:?}: \
                         read {read} records from offset {from}, reached offset {reached} of {to}",
                        self.timeout
                    ),
                ));
            }
            if now >= progress_at {
                tracing::info!(
                    topic,
                    partition,
                    records = read,
                    offset = reached,
                    target = to,
                    "restoring order states"
                );
                progress_at = now + PROGRESS_EVERY;
            }
            let Some(polled) = consumer.poll(left(deadline).min(Duration::from_millis(100))) else {
                continue;
            };
            let message = polled.map_err(KafkaError::from)?;
            if message.partition() != partition || message.offset() < from {
                continue;
            }
            reached = message.offset() + 1;
            if message.offset() <= to {
                read += 1;
                each(&message);
            } else {
                beyond = beyond.max(Some(message.offset()));
            }
        }
        // Records past the high watermark already fetched (best effort, nothing is waited
        // for) mean the watermark was not the partition's end.
        while let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
            if message.partition() == partition && message.offset() > to {
                beyond = beyond.max(Some(message.offset()));
            }
        }
        if let Some(beyond) = beyond {
            let high = to + 1;
            tracing::warn!(
                topic,
                partition,
                high,
                beyond,
                "state records past the high watermark"
            );
            return Err(Error::unavailable(
                "kafka",
                format!(
                    "restoring {topic} partition {partition}: the broker served offset {beyond} \
                     past the high watermark {high}: another client is still writing to the \
                     partition, or the broker's watermarks count record batches (tansu 0.6: \
                     produce one record per batch, batch.num.messages=1)"
                ),
            ));
        }
        Ok(read)
    }

    /// Applies one record to `live`; false when it was skipped as undecodable.
    fn apply(
        &self,
        message: &BorrowedMessage<'_>,
        live: &mut HashMap<OrderId, (i64, StateChange)>,
    ) -> bool {
        let (topic, partition, offset) = (&*self.topic, self.partition, message.offset());
        let decoded = match message.payload() {
            // A tombstone (some brokers hand back a null value as an empty one).
            None | Some([]) => message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.parse::<OrderId>().ok())
                .map(|order| {
                    live.remove(&order);
                })
                .ok_or_else(|| "a tombstone whose key is not an order id".to_owned()),
            Some(payload) => state_record(message, payload)
                .map_err(|e| e.to_string())
                .and_then(|record| {
                    record
                        .into_change(&self.lifecycle, partition)
                        .map_err(|e| e.to_string())
                })
                .map(|change| {
                    live.insert(change.state.id, (offset, change));
                }),
        };
        match decoded {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!(topic, partition, offset, %reason, "skipping an undecodable state record");
                false
            }
        }
    }
}

/// The state record in `payload`, in the format `message`'s header names (JSON without
/// one: what every record had before the header).
fn state_record(message: &BorrowedMessage<'_>, payload: &[u8]) -> Result<StateRecord, Error> {
    match WireFormat::named_by(message)? {
        None => WireFormat::Json.decode_state(payload),
        Some((format, false)) => format.decode_state(payload),
        Some((_, true)) => Err(Error::Decode {
            reason: "a pack of transition records on the state topic".into(),
        }),
    }
}

/// The published-below header of a marker record.
fn published_below_header(message: &BorrowedMessage<'_>) -> Option<i64> {
    number_header(message, HEADER_PUBLISHED_BELOW)
}

/// The restore-from header of `message`, if present and a number.
fn restore_from_header(message: &BorrowedMessage<'_>) -> Option<i64> {
    number_header(message, HEADER_RESTORE_FROM)
}

/// Header `name` of `message` as a number, if present and one.
fn number_header(message: &BorrowedMessage<'_>, name: &str) -> Option<i64> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Time left until `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
