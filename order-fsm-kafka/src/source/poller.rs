//! The polling thread: reads messages, decodes them, dead-letters the undecodable, serves
//! rebalance callbacks and commits finished offsets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use order_fsm::{Ack, Envelope, Error, Origin};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::tracker::{Ticket, Tracker};
use crate::watchdog::{Signals, REJOIN_WAIT};
use crate::{CommandCodec, KafkaDeadLetterSink, KafkaError};

/// Most messages handed over at once.
const MAX_HANDOVER: usize = 512;

/// What the polling thread hands over, in consumer order.
#[derive(Debug)]
pub(super) enum Delivered {
    /// A decoded message with its place in the tracker.
    Message(Envelope, Ticket),
    /// Partitions newly assigned (before any of their messages).
    Assigned(Vec<i32>),
    /// Partitions being revoked; the rebalance waits for the acknowledgement.
    Revoked(Vec<i32>, Ack),
}

/// A delivery, or a fatal consumer error.
pub(super) type Item = Result<Delivered, Error>;

/// Consumer callbacks: track assignments, hand ownership changes over in order with the
/// messages, and before a revocation wait until the reader finished the partitions' work,
/// then commit it.
pub(super) struct SourceContext {
    pub(super) tracker: Arc<Tracker>,
    pub(super) topic: String,
    /// Items read but not handed over yet (a callback flushes them before a revocation).
    pub(super) pending: Mutex<Vec<Item>>,
    pub(super) tx: mpsc::Sender<Vec<Item>>,
    /// Longest wait for the reader to finish a revoked partition's work.
    pub(super) revoke_timeout: Duration,
}

impl ClientContext for SourceContext {}

impl SourceContext {
    pub(super) fn pending(&self) -> MutexGuard<'_, Vec<Item>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands everything pending over; `false` once the reader is gone.
    pub(super) fn flush(&self) -> bool {
        let batch = std::mem::take(&mut *self.pending());
        batch.is_empty() || self.tx.blocking_send(batch).is_ok()
    }

    /// Hands the revocation of `partitions` over behind what was read before, and waits
    /// (bounded) until the reader acknowledged that their work is finished.
    fn hand_over_revocation(&self, partitions: &[i32]) {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let ack = Ack::new(move || {
            let _ = done_tx.send(());
        });
        self.pending()
            .push(Ok(Delivered::Revoked(partitions.to_vec(), ack)));
        if !self.flush() {
            return; // the source was dropped: nobody is working on anything
        }
        let started = Instant::now();
        match done_rx.recv_timeout(self.revoke_timeout) {
            Ok(()) => tracing::debug!(
                ?partitions,
                millis = started.elapsed().as_millis() as u64,
                "revoked partitions finished"
            ),
            // The reader stopped without finishing: what it did not acknowledge is redelivered.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                ?partitions,
                timeout_ms = self.revoke_timeout.as_millis() as u64,
                "revoked partitions not finished in time; giving them up anyway"
            ),
        }
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = self.partitions(list);
            if partitions.is_empty() {
                return;
            }
            self.hand_over_revocation(&partitions);
            let offsets = self.tracker.revoke(partitions);
            // The next owner resumes exactly after what this consumer finished.
            if let Err(e) = commit(consumer, &self.topic, &offsets, CommitMode::Sync) {
                tracing::warn!(error = %e, "commit on revocation failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions = self.partitions(list);
            if partitions.is_empty() {
                return;
            }
            self.tracker.assign(partitions.iter().copied());
            self.pending().push(Ok(Delivered::Assigned(partitions)));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit failed");
        }
    }
}

pub(super) fn commit(
    consumer: &BaseConsumer<SourceContext>,
    topic: &str,
    offsets: &[(i32, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for &(partition, offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&list, mode)
}

/// Everything the polling thread needs.
pub(super) struct Poller {
    pub(super) consumer: BaseConsumer<SourceContext>,
    pub(super) tracker: Arc<Tracker>,
    pub(super) codec: Arc<dyn CommandCodec>,
    pub(super) dead_letters: KafkaDeadLetterSink,
    pub(super) runtime: Handle,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) signals: Arc<Signals>,
    pub(super) commit_interval: Duration,
    pub(super) topic: String,
}

impl Poller {
    pub(super) fn run(self) {
        let mut last_commit = Instant::now();
        let mut rejoining: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            if last_commit.elapsed() >= self.commit_interval {
                self.commit_done(CommitMode::Async, false);
                last_commit = Instant::now();
            }
            let context = self.consumer.context();
            if self.signals.rejoin.swap(false, Ordering::AcqRel) && rejoining.is_none() {
                self.commit_done(CommitMode::Sync, true);
                // Leaves the group; the revocation callback hands the partitions over.
                self.consumer.unsubscribe();
                rejoining = Some(Instant::now());
            }
            if let Some(since) = rejoining {
                let released = self.consumer.assignment().map_or(true, |a| a.count() == 0);
                if released || since.elapsed() >= REJOIN_WAIT {
                    rejoining = None;
                    if let Err(e) = self.consumer.subscribe(&[&self.topic]) {
                        context.pending().push(Err(KafkaError::from(e).into()));
                    } else {
                        tracing::info!(topic = %self.topic, "re-joined the consumer group");
                    }
                }
            }
            let mut wait = Duration::from_millis(50);
            for _ in 0..MAX_HANDOVER {
                let Some(polled) = self.consumer.poll(wait) else {
                    break;
                };
                wait = Duration::ZERO;
                let item = match polled {
                    Ok(message) => self.handle(&message),
                    Err(e) => {
                        let e = KafkaError::from(e);
                        if e.is_retryable() {
                            tracing::warn!(error = %e, "kafka consumer error, continuing");
                            None
                        } else {
                            Some(Err(e.into()))
                        }
                    }
                };
                if let Some(item) = item {
                    context.pending().push(item);
                }
            }
            if !context.flush() {
                break;
            }
        }
        self.commit_done(CommitMode::Sync, true);
        // Dropping the consumer leaves the group; the revocation callback commits again.
    }

    /// Commits what advanced (everything done, when `all`).
    fn commit_done(&self, mode: CommitMode, all: bool) {
        let offsets = self.tracker.take_committable(all);
        if let Err(e) = commit(&self.consumer, &self.topic, &offsets, mode) {
            tracing::debug!(error = %e, "offset commit failed; will retry");
            self.tracker.uncommit(&offsets);
        }
    }

    fn handle(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Option<Item> {
        let (partition, offset) = (message.partition(), message.offset());
        let ticket = self.tracker.deliver(partition, offset);
        let payload = message.payload().unwrap_or_default();
        let (kind, reason) = if payload.is_empty() {
            ("decode", "cannot decode message: empty payload".to_owned())
        } else {
            match crate::codec::decode_command(&*self.codec, message, payload) {
                Ok(command) => match key_mismatch(message.key(), &command) {
                    Some(reason) => ("key_mismatch", reason),
                    None => {
                        let tracker = Arc::clone(&self.tracker);
                        let envelope = Envelope::new(
                            command,
                            Origin::new(partition, offset),
                            Ack::new(move || tracker.done(&ticket)),
                        );
                        return Some(Ok(Delivered::Message(envelope, ticket)));
                    }
                },
                Err(e) => ("decode", e.to_string()),
            }
        };
        order_fsm::telemetry::dead_lettered(kind);
        self.dead_letter(message, reason, ticket);
        None
    }

    /// Produces an undecodable or mis-keyed message to the dead-letter topic, then marks it
    /// done.
    fn dead_letter(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        reason: String,
        ticket: Ticket,
    ) {
        let key = message.key().unwrap_or_default().to_vec();
        let payload = message.payload().unwrap_or_default().to_vec();
        let (sink, tracker) = (self.dead_letters.clone(), Arc::clone(&self.tracker));
        tracing::debug!(partition = ticket.partition, offset = ticket.offset, %reason, "dead letter");
        self.runtime.spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                let sent = sink
                    .send_raw(
                        key.clone(),
                        payload.clone(),
                        &reason,
                        ticket.partition,
                        ticket.offset,
                    )
                    .await;
                match sent {
                    Ok(()) => return tracker.done(&ticket),
                    Err(e) if e.is_retryable() && tracker.owns(&ticket) => {
                        tracing::warn!(error = %e, "dead letter not delivered, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => {
                        // Left unacknowledged: the message is read again after a restart.
                        return tracing::error!(error = %e, "dead letter not delivered");
                    }
                }
            }
        });
    }
}

/// Why a decoded command may not be processed under its message key, if it may not.
///
/// The key must be exactly the bytes [`crate::KafkaCommandSink`] keys a command with, the
/// order id's hyphenated lower-case form: the producer's partitioner hashes the key's bytes,
/// so any other key (another order's id, the same id in upper case) may put this command on
/// another partition than the order's other commands, so on another worker, out of order.
///
/// A message without a key (or with an empty one, which librdkafka's partitioners treat
/// alike) is accepted: producers that do not key exist (scripts, other languages' clients,
/// a single-partition topic), and their commands were always accepted. Such a producer
/// takes the ordering risk this check guards against; key the commands to avoid it.
fn key_mismatch(key: Option<&[u8]>, command: &order_fsm::Command) -> Option<String> {
    const SHOWN: usize = 128;
    let key = key.filter(|k| !k.is_empty())?;
    let order_id = command.order_id();
    if key == crate::producer::key_of(order_id) {
        return None;
    }
    let shown = String::from_utf8_lossy(&key[..key.len().min(SHOWN)]);
    let more = if key.len() > SHOWN { "…" } else { "" };
    Some(format!(
        "message key `{shown}{more}` is not the command's order id `{order_id}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::key_mismatch;
    use order_fsm::{Command, OrderId};

    #[test]
    fn the_key_must_be_the_order_id_as_the_sink_writes_it() {
        let id = OrderId::random();
        let command = Command::apply(id, "ship");
        assert_eq!(
            key_mismatch(Some(id.to_string().as_bytes()), &command),
            None
        );
        assert_eq!(key_mismatch(None, &command), None, "no key: accepted");
        assert_eq!(
            key_mismatch(Some(b""), &command),
            None,
            "empty key: accepted"
        );
        let upper = id.to_string().to_uppercase();
        assert_eq!(
            key_mismatch(Some(upper.as_bytes()), &command),
            Some(format!(
                "message key `{upper}` is not the command's order id `{id}`"
            ))
        );
        let long = vec![b'k'; 1_000];
        let reason = key_mismatch(Some(&long), &command).unwrap();
        assert!(reason.starts_with(&format!("message key `{}…`", "k".repeat(128))));
    }
}
