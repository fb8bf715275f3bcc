//! The command source over a consumer group.

mod poller;
mod tracker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use order_fsm::{CommandSource, Envelope, Error};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use crate::{CommandCodec, JsonCodec, KafkaConfig, KafkaDeadLetterSink, KafkaError};
use poller::{Item, Poller, SourceContext};
use tracker::Tracker;

/// Batches of messages buffered between the polling thread and [`CommandSource::next`].
const HANDOVER_BATCHES: usize = 8;

/// Reads commands from the commands topic as a member of the consumer group.
///
/// - **Acknowledgement**: an [`order_fsm::Ack`] marks its offset done; only the contiguous
///   done prefix of each partition is committed, every commit interval, before a partition
///   is revoked (so the next owner resumes exactly there) and when the source is dropped.
///   Acknowledgements of a partition revoked in the meantime are ignored (the new owner
///   gets those messages again).
/// - **Ordering**: messages of one partition (so of one order id) are yielded in offset
///   order; partitions are interleaved.
/// - **Bad input**: a message the codec rejects (or an empty one) is produced to the
///   dead-letter topic with its reason, original topic, partition and offset, marked done
///   once delivered, and never yielded.
/// - **Cancellation**: `next` is cancel-safe; a dropped call loses nothing.
///
/// A background thread polls the consumer; dropping the source stops it, commits and
/// leaves the group (this blocks the dropping thread for a moment).
pub struct KafkaSource {
    rx: mpsc::Receiver<Vec<Item>>,
    buffer: VecDeque<Item>,
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
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
    /// A JSON source subscribed to `config`'s commands topic in `config`'s group.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property or when called outside a tokio
    /// runtime; [`KafkaError::Fatal`] when the subscription fails.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Self::with_codec(config, JsonCodec)
    }

    /// A source decoding commands with `codec`.
    ///
    /// # Errors
    /// As [`KafkaSource::new`].
    pub fn with_codec(config: &KafkaConfig, codec: impl CommandCodec) -> Result<Self, KafkaError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| KafkaError::Config("a KafkaSource needs a tokio runtime".into()))?;
        let tracker = Arc::new(Tracker::default());
        let context = SourceContext {
            tracker: Arc::clone(&tracker),
            topic: config.commands_topic().to_owned(),
        };
        let consumer: BaseConsumer<SourceContext> =
            config.consumer_config().create_with_context(context)?;
        consumer.subscribe(&[config.commands_topic()])?;
        let (tx, rx) = mpsc::channel(HANDOVER_BATCHES);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = Poller {
            consumer,
            tracker: Arc::clone(&tracker),
            codec: Arc::new(codec),
            dead_letters: KafkaDeadLetterSink::new(config)?,
            runtime,
            tx,
            stop: Arc::clone(&stop),
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
            thread: Some(thread),
        })
    }
}

#[async_trait]
impl CommandSource for KafkaSource {
    async fn next(&mut self) -> Result<Option<Envelope>, Error> {
        loop {
            while let Some(item) = self.buffer.pop_front() {
                let (envelope, ticket) = item?;
                // A message of a partition revoked since it was read belongs to the new
                // owner now: skip it unacknowledged.
                if self.tracker.owns(&ticket) {
                    return Ok(Some(envelope));
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
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
