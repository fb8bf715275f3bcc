//! The command source over a consumer group.

mod poller;
mod tracker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use order_fsm::{CommandSource, Envelope, Error, SourceEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use crate::watchdog::{self, Signals};
use crate::{CommandCodec, KafkaConfig, KafkaDeadLetterSink, KafkaError};
use poller::{Delivered, Item, Poller, SourceContext};
pub(crate) use tracker::Tracker;

/// Batches of messages buffered between the polling thread and [`CommandSource::next`].
const HANDOVER_BATCHES: usize = 8;

/// Longest wait, in a rebalance, for the reader to finish the work of revoked partitions
/// (and at most two thirds of `max.poll.interval.ms`: the wait holds the polling thread, and
/// librdkafka leaves the group when it does not poll for that long).
const REVOKE_TIMEOUT: Duration = Duration::from_secs(30);

fn revoke_timeout(config: &KafkaConfig) -> Duration {
    let max_poll = config
        .properties()
        .get("max.poll.interval.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(Duration::from_secs(300), Duration::from_millis);
    REVOKE_TIMEOUT.min(max_poll * 2 / 3)
}

/// Reads commands from the commands topic as a member of the consumer group.
///
/// - **Acknowledgement**: an [`order_fsm::Ack`] marks its offset done; only the contiguous
///   done prefix of each partition is committed, every commit interval, before a partition
///   is revoked (so the next owner resumes exactly there) and when the source is dropped.
///   Acknowledgements of a partition revoked in the meantime are ignored (the new owner
///   gets those messages again).
/// - **Ordering**: messages of one partition (so of one order id) are yielded in offset
///   order; partitions are interleaved.
/// - **Ownership** ([`CommandSource::next_event`]): [`SourceEvent::Assigned`] comes before
///   the first message of a partition this member was given; [`SourceEvent::Revoked`] after
///   the last message of a partition it loses, and the rebalance waits (up to 30 s, inside
///   librdkafka's rebalance callback) for its acknowledgement before the finished offsets are
///   committed and the partition goes to its next owner. [`CommandSource::next`]
///   acknowledges revocations at once.
/// - **Bad input**: a message the codec rejects (or an empty one) is produced to the
///   dead-letter topic with its reason, original topic, partition and offset, marked done
///   once delivered, and never yielded.
/// - **Keys**: a command's message key must be its order id as [`crate::KafkaCommandSink`]
///   writes it (the hyphenated lower-case UUID, compared byte for byte, since partitioners
///   hash the bytes). A command under any other key is bad input too, with the reason
///   "message key \`K\` is not the command's order id \`ID\`": processing it would let the
///   order's other commands land on another partition, so on another worker, out of order.
///   A message without a key (or with an empty one) is accepted: producers that do not key
///   exist, and were always accepted; they take that ordering risk themselves.
/// - **Stalls**: a partition that holds unprocessed commands while the group's committed
///   offset stands still for [`KafkaConfig::with_stall_timeout`] (30 s), and that this
///   source is not reading, makes the source re-join its group (logged at `warn`): a broker
///   stall or a coordinator's stale assignment can leave partitions that no member serves
///   (with tansu 0.6.0 it also commits their committed offsets again, which clears a leader
///   the coordinator kept after evicting it).
/// - **Cancellation**: `next` is cancel-safe; a dropped call loses nothing.
///
/// A background thread polls the consumer; dropping the source stops it, commits and
/// leaves the group (this blocks the dropping thread for a moment).
pub struct KafkaSource {
    rx: mpsc::Receiver<Vec<Item>>,
    buffer: VecDeque<Item>,
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
    signals: Arc<Signals>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// A source subscribed to `config`'s commands topic in `config`'s group. It decodes each
    /// message in the format its [`crate::HEADER_FORMAT`] header names, and a message
    /// without one in [`KafkaConfig::wire_format`].
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property or when called outside a tokio
    /// runtime; [`KafkaError::Fatal`] when the subscription fails.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Self::build(config, config.wire_format().shared_codec())
    }

    /// A source decoding commands with `codec` (a message whose [`crate::HEADER_FORMAT`]
    /// header names another built-in format is decoded by that format's codec).
    ///
    /// # Errors
    /// As [`KafkaSource::new`].
    pub fn with_codec(config: &KafkaConfig, codec: impl CommandCodec) -> Result<Self, KafkaError> {
        Self::build(config, Arc::new(codec))
    }

    fn build(config: &KafkaConfig, codec: Arc<dyn CommandCodec>) -> Result<Self, KafkaError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| KafkaError::Config("a KafkaSource needs a tokio runtime".into()))?;
        let tracker = Arc::new(Tracker::default());
        let (tx, rx) = mpsc::channel(HANDOVER_BATCHES);
        let context = SourceContext {
            tracker: Arc::clone(&tracker),
            topic: config.commands_topic().to_owned(),
            pending: std::sync::Mutex::new(Vec::new()),
            tx,
            revoke_timeout: revoke_timeout(config),
        };
        let consumer: BaseConsumer<SourceContext> =
            config.consumer_config().create_with_context(context)?;
        consumer.subscribe(&[config.commands_topic()])?;
        let stop = Arc::new(AtomicBool::new(false));
        let signals = Arc::new(Signals::default());
        watchdog::spawn(
            config,
            config.group(),
            config.commands_topic(),
            Arc::clone(&tracker) as _,
            Arc::clone(&signals),
        )?;
        let poller = Poller {
            consumer,
            tracker: Arc::clone(&tracker),
            codec,
            dead_letters: KafkaDeadLetterSink::new(config)?,
            runtime,
            stop: Arc::clone(&stop),
            signals: Arc::clone(&signals),
            commit_interval: config.commit_interval(),
            topic: config.commands_topic().to_owned(),
        };
        let thread = std::thread::Builder::new()
            .name("order-fsm-kafka-poll".into())
            .spawn(move || poller.run())
            .map_err(|e| KafkaError::Config(format!("cannot start the polling thread: {e}")))?;
        Ok(Self {
            rx,
            buffer: VecDeque::new(),
            tracker,
            stop,
            signals,
            thread: Some(thread),
        })
    }
}

#[async_trait]
impl CommandSource for KafkaSource {
    async fn next(&mut self) -> Result<Option<Envelope>, Error> {
        loop {
            match self.next_event().await? {
                Some(SourceEvent::Command(envelope)) => return Ok(Some(envelope)),
                Some(SourceEvent::Revoked { done, .. }) => done.ack(),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    async fn next_event(&mut self) -> Result<Option<SourceEvent>, Error> {
        loop {
            while let Some(item) = self.buffer.pop_front() {
                match item? {
                    // A message of a partition revoked since it was read belongs to the new
                    // owner now: skip it unacknowledged.
                    Delivered::Message(envelope, ticket) => {
                        if self.tracker.owns(&ticket) {
                            return Ok(Some(SourceEvent::Command(envelope)));
                        }
                    }
                    Delivered::Assigned(partitions) => {
                        return Ok(Some(SourceEvent::Assigned(partitions)))
                    }
                    Delivered::Revoked(partitions, done) => {
                        return Ok(Some(SourceEvent::Revoked { partitions, done }))
                    }
                }
            }
            match self.rx.recv().await {
                Some(batch) => self.buffer.extend(batch),
                None => return Err(Error::Closed("kafka source polling thread")),
            }
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.signals.stop.store(true, Ordering::Release);
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
