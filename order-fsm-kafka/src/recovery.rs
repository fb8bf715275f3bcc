//! Rebuilding a store from the transitions topic after a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{Command, Lifecycle, MemoryStore, OrderId, OrderState, TransitionRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::producer::{HEADER_BATCH, HEADER_BATCH_LAST};
use crate::{KafkaConfig, KafkaError};

/// How long the topic must stay quiet after the watermarks were reached.
const QUIET: Duration = Duration::from_millis(750);

/// What [`recover_store`] rebuilt.
#[derive(Debug)]
pub struct Recovered {
    /// Every order as of its last complete batch.
    pub store: MemoryStore,
    /// Records read from the topic.
    pub records: u64,
    /// Records that repeated an `(order_id, version)` already applied (published again
    /// after a crash).
    pub duplicates: u64,
    /// Records left out because their batch was cut short (a crash mid-publish) or they
    /// could not be read; the commands behind them are redelivered.
    pub incomplete: u64,
    /// Rejected commands found in the dead-letter topic whose ids were added to their
    /// order's [`OrderState::rejected`].
    pub rejected: u64,
}

/// One order being rebuilt: the state so far and records of batches not yet complete.
#[derive(Default)]
struct Rebuild {
    state: Option<OrderState>,
    pending: HashMap<String, (u64, Vec<TransitionRecord>)>,
}

impl Rebuild {
    fn version(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.version)
    }
}

/// Reads every partition of `config`'s transitions topic up to its high watermark and
/// rebuilds the orders with their history, so a restarted worker resumes where the topic
/// says it was.
///
/// A runner publishes before it writes its store and acknowledges, so after a crash the topic
/// may hold a record twice (deduplicated here by `(order_id, version)`) or the start of a
/// batch whose end never made it (left out here, as the store would never have seen it: the
/// command is redelivered and the batch published again). Records are grouped by the batch
/// headers of [`crate::KafkaTransitionSink`]; records without them count as batches of one.
/// Then the dead-letter topic is read: the ids of commands the runner rejected go back into
/// their order's [`OrderState::rejected`], so a rejected command redelivered after the
/// restart is recognised as a duplicate instead of being dead-lettered again, or applied
/// because the order has since moved on. (A rejected command for an order that does not
/// exist has no state to remember it in: it is dead-lettered again.)
///
/// # Errors
/// [`KafkaError::Transient`] when the topic cannot be read within `timeout`, other variants
/// when the brokers refuse.
pub async fn recover_store(
    config: &KafkaConfig,
    lifecycle: Arc<Lifecycle>,
    timeout: Duration,
) -> Result<Recovered, KafkaError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || recover_blocking(&config, &lifecycle, timeout))
        .await
        .map_err(|e| KafkaError::Config(format!("recovery task failed: {e}")))?
}

fn recover_blocking(
    config: &KafkaConfig,
    lifecycle: &Lifecycle,
    timeout: Duration,
) -> Result<Recovered, KafkaError> {
    let deadline = Instant::now() + timeout;
    let mut orders: HashMap<OrderId, Rebuild> = HashMap::new();
    let (mut duplicates, mut incomplete) = (0u64, 0u64);
    let records = read_to_end(config, config.transitions_topic(), deadline, |message| {
        let Some(record) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<TransitionRecord>(p).ok())
        else {
            incomplete += 1;
            return;
        };
        let batch = header(message, HEADER_BATCH)
            .unwrap_or_else(|| format!("{}:{}", message.partition(), message.offset()));
        let last = header(message, HEADER_BATCH_LAST)
            .and_then(|v| v.parse().ok())
            .unwrap_or(record.version);
        let order = orders.entry(record.order_id).or_default();
        if record.version <= order.version() {
            duplicates += 1;
            return;
        }
        let (batch_last, group) = order.pending.entry(batch.clone()).or_default();
        *batch_last = last;
        group.push(record);
        if group.last().is_some_and(|r| r.version == last) {
            let (_, group) = order.pending.remove(&batch).unwrap_or_default();
            if !apply_batch(lifecycle, order, group) {
                incomplete += 1;
            }
        }
    })?;
    // Commands the runner rejected are in the dead-letter topic (undecodable messages are
    // too, and are skipped): remembering their ids keeps a redelivered rejected command
    // rejected, even if the order has since moved to a state that would allow it.
    let mut rejected = 0u64;
    read_to_end(config, config.dead_letter_topic(), deadline, |message| {
        let Some(command) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<Command>(p).ok())
        else {
            return;
        };
        let state = orders
            .get_mut(&command.order_id())
            .and_then(|order| order.state.as_mut());
        if let Some(state) = state {
            if !state.has_seen(command.event_id()) {
                state.remember_rejection(command.event_id());
                rejected += 1;
            }
        }
    })?;
    let store = MemoryStore::new();
    for (_, order) in orders {
        incomplete += order
            .pending
            .values()
            .flat_map(|(_, g)| g)
            .filter(|r| r.version > order.version())
            .count() as u64;
        if let Some(state) = order.state {
            store
                .compare_and_set_now(0, state)
                .map_err(|e| KafkaError::Payload(e.to_string()))?;
        }
    }
    Ok(Recovered {
        store,
        records,
        duplicates,
        incomplete,
        rejected,
    })
}

/// The value of header `name`, if present and UTF-8.
fn header(message: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    })
}

/// Reads every partition of `topic` from its low to its high watermark, calling `each` per
/// message; returns how many were read.
fn read_to_end(
    config: &KafkaConfig,
    topic: &str,
    deadline: Instant,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut client = config.reader_config(&[]);
    client.set(
        "group.id",
        format!("order-fsm-recovery-{}", uuid::Uuid::new_v4()),
    );
    let consumer: BaseConsumer = client.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut list = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            remaining.insert(p, high);
            list.add_partition_offset(topic, p, Offset::Offset(low))?;
        }
    }
    consumer.assign(&list)?;
    let mut read = 0u64;
    // Some brokers (tansu) report watermarks that count batches, not records: once every
    // partition reached its watermark, keep reading until the topic stays quiet for a moment.
    let mut quiet_since: Option<Instant> = None;
    while list.count() > 0 {
        if Instant::now() > deadline {
            return Err(KafkaError::Transient(
                rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::error::RDKafkaErrorCode::OperationTimedOut,
                ),
            ));
        }
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            if remaining.is_empty() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= QUIET {
                    break;
                }
            }
            continue;
        };
        quiet_since = None;
        let message = polled?;
        if remaining
            .get(&message.partition())
            .is_some_and(|&high| message.offset() + 1 >= high)
        {
            remaining.remove(&message.partition());
        }
        read += 1;
        each(&message);
    }
    Ok(read)
}

/// Applies a complete batch of one order if it continues the order's state without a gap.
fn apply_batch(lifecycle: &Lifecycle, order: &mut Rebuild, group: Vec<TransitionRecord>) -> bool {
    let mut version = order.version();
    let first = group.first().map_or(0, |r| r.version);
    if first > version + 1 {
        return false;
    }
    for record in group {
        if record.version <= version {
            continue;
        }
        if record.version != version + 1 {
            return false;
        }
        let applied = match &mut order.state {
            None => OrderState::from_placement(lifecycle, &record)
                .map(|state| order.state = Some(state))
                .is_some(),
            Some(state) => state.apply_record(lifecycle, &record),
        };
        if !applied {
            return false;
        }
        version += 1;
    }
    true
}
