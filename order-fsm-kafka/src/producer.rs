//! The sinks: transition records, commands and dead letters, all through one idempotent
//! producer per sink that waits for every delivery report.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use order_fsm::{
    Command, CommandSink, DeadLetter, DeadLetterSink, Error, OrderId, TransitionRecord,
    TransitionSink,
};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use uuid::Uuid;

use crate::backlog::Backlog;
use crate::{CommandCodec, JsonCodec, KafkaConfig, KafkaError};

/// Header of a dead letter: why it was rejected.
pub const HEADER_REASON: &str = "reason";
/// Header of a dead letter: the topic the message was read from.
pub const HEADER_TOPIC: &str = "original-topic";
/// Header of a dead letter: its partition there.
pub const HEADER_PARTITION: &str = "original-partition";
/// Header of a dead letter: its offset there.
pub const HEADER_OFFSET: &str = "original-offset";
/// Header of a dead letter whose payload was cut to [`MAX_DEAD_LETTER_PAYLOAD`]: the size of
/// the original payload, in bytes.
pub const HEADER_ORIGINAL_SIZE: &str = "original-size";
/// Header of a dead letter whose payload was cut: the SHA-256 of the original payload (hex).
pub const HEADER_ORIGINAL_SHA256: &str = "original-sha256";
/// Largest dead-letter payload produced whole. A longer one (a poison message of megabytes,
/// which no producer with the default `message.max.bytes` of 1 MB would take) is cut to this
/// many bytes, with [`HEADER_ORIGINAL_SIZE`] and [`HEADER_ORIGINAL_SHA256`] naming the
/// original, so it never stops its partition. Keys are cut at 1 KiB, reasons at 4 KiB.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 64 * 1024;
/// Longest dead-letter key and reason kept.
const MAX_DEAD_LETTER_KEY: usize = 1024;
const MAX_DEAD_LETTER_REASON: usize = 4096;
/// Header of a transition record: the id of the `publish` call that produced it.
pub(crate) const HEADER_BATCH: &str = "ofsm-batch";
/// Header of a transition record: the highest version of its order in the same batch.
pub(crate) const HEADER_BATCH_LAST: &str = "ofsm-batch-last";

/// One idempotent producer and a topic; sends a batch and waits for every report.
#[derive(Clone)]
pub(crate) struct Producer {
    inner: FutureProducer,
    topic: Arc<str>,
}

/// One message to send.
pub(crate) struct Outgoing {
    pub(crate) key: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: OwnedHeaders,
}

impl Producer {
    pub(crate) fn new(config: &KafkaConfig, topic: &str) -> Result<Self, KafkaError> {
        Ok(Self {
            inner: config.producer_config().create()?,
            topic: topic.into(),
        })
    }

    /// Sends `messages` in order and waits until the broker acknowledged all of them.
    pub(crate) async fn send_all(&self, messages: Vec<Outgoing>) -> Result<(), KafkaError> {
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        let mut failure = None;
        'messages: for message in messages {
            let Outgoing {
                key,
                payload,
                headers,
            } = message;
            let mut record = FutureRecord::to(&self.topic)
                .key(&key[..])
                .payload(&payload[..])
                .headers(headers);
            loop {
                match self.inner.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((ClientError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: wait for what is in flight, then go on.
                        record = back;
                        if let Err(e) = Self::wait(pending.drain(..)).await {
                            failure = Some(e);
                            break 'messages;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => {
                        failure = Some(e.into());
                        break 'messages;
                    }
                }
            }
        }
        // Always wait for what was enqueued, so a failed batch leaves nothing in flight.
        let waited = Self::wait(pending.drain(..)).await;
        match failure {
            Some(e) => Err(e),
            None => waited,
        }
    }

    async fn wait(pending: impl Iterator<Item = DeliveryFuture>) -> Result<(), KafkaError> {
        let mut outcome = Ok(());
        for delivery in pending {
            let result = match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(KafkaError::from(e)),
                Err(_) => Err(KafkaError::Canceled),
            };
            if let (Err(e), Ok(())) = (result, &outcome) {
                outcome = Err(e);
            }
        }
        outcome
    }
}

fn key_of(order_id: OrderId) -> Vec<u8> {
    order_id.to_string().into_bytes()
}

/// Publishes [`TransitionRecord`]s as JSON to the transitions topic, keyed by order id.
///
/// Each record carries two headers (`ofsm-batch`, `ofsm-batch-last`) that let a reader
/// tell the records published together for one order. See [`TransitionSink`] for the contract; a record
/// published twice appears twice in the topic.
#[derive(Clone)]
pub struct KafkaTransitionSink {
    producer: Producer,
}

impl std::fmt::Debug for KafkaTransitionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransitionSink")
            .field("topic", &self.producer.topic)
            .finish()
    }
}

impl KafkaTransitionSink {
    /// A sink producing to `config`'s transitions topic.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Producer::new(config, config.transitions_topic())?,
        })
    }
}

#[async_trait]
impl TransitionSink for KafkaTransitionSink {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = Uuid::new_v4().to_string();
        let mut last: HashMap<OrderId, u64> = HashMap::new();
        for r in records {
            let v = last.entry(r.order_id).or_default();
            *v = (*v).max(r.version);
        }
        let mut messages = Vec::with_capacity(records.len());
        for r in records {
            let batch_last = last[&r.order_id].to_string();
            messages.push(Outgoing {
                key: key_of(r.order_id),
                payload: serde_json::to_vec(r).map_err(KafkaError::from)?,
                headers: OwnedHeaders::new_with_capacity(2)
                    .insert(Header {
                        key: HEADER_BATCH,
                        value: Some(&batch),
                    })
                    .insert(Header {
                        key: HEADER_BATCH_LAST,
                        value: Some(&batch_last),
                    }),
            });
        }
        Ok(self.producer.send_all(messages).await?)
    }
}

/// Submits commands to the commands topic, keyed by order id (the gRPC intake uses it).
///
/// With [`KafkaCommandSink::with_backlog_limit`] it applies back-pressure: a submit that
/// would take the backlog (commands in the topic not yet committed by the workers' group,
/// measured every 250 ms) over the limit is refused whole with
/// [`order_fsm::Error::Overloaded`], which the intakes answer with `RESOURCE_EXHAUSTED` /
/// HTTP 429 and a retry hint.
#[derive(Clone)]
pub struct KafkaCommandSink {
    producer: Producer,
    codec: Arc<dyn CommandCodec>,
    backlog: Option<Arc<Backlog>>,
}

impl std::fmt::Debug for KafkaCommandSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCommandSink")
            .field("topic", &self.producer.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaCommandSink {
    /// A sink producing JSON commands to `config`'s commands topic.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Self::with_codec(config, JsonCodec)
    }

    /// A sink encoding commands with `codec`.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn with_codec(config: &KafkaConfig, codec: impl CommandCodec) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Producer::new(config, config.commands_topic())?,
            codec: Arc::new(codec),
            backlog: None,
        })
    }

    /// Refuses submits while more than `limit` commands wait for `config`'s workers' group
    /// (see the type's docs). Size it below what the brokers retain per partition times the
    /// partitions, or a lagging group loses commands to retention.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn with_backlog_limit(
        mut self,
        config: &KafkaConfig,
        limit: u64,
    ) -> Result<Self, KafkaError> {
        self.backlog = Some(Arc::new(Backlog::watch(config, limit)?));
        Ok(self)
    }

    /// The last measured backlog, if a limit is set.
    pub fn backlog(&self) -> Option<u64> {
        self.backlog.as_ref().map(|b| b.records())
    }
}

#[async_trait]
impl CommandSink for KafkaCommandSink {
    async fn submit(&self, commands: &[Command]) -> Result<(), Error> {
        if let Some(backlog) = &self.backlog {
            let (before, waiting) = (backlog.records(), backlog.records() + commands.len() as u64);
            // A request larger than the limit still goes through once nothing waits.
            if before > 0 && waiting > backlog.limit {
                return Err(Error::Overloaded {
                    backlog: waiting,
                    limit: backlog.limit,
                    retry_after: crate::backlog::MEASURE_EVERY,
                });
            }
        }
        let mut messages = Vec::with_capacity(commands.len());
        for c in commands {
            messages.push(Outgoing {
                key: key_of(c.order_id()),
                payload: self.codec.encode(c)?,
                headers: OwnedHeaders::new(),
            });
        }
        Ok(self.producer.send_all(messages).await?)
    }
}

/// Produces rejected commands to the dead-letter topic: the command as payload (JSON), with
/// headers [`HEADER_REASON`], [`HEADER_TOPIC`], [`HEADER_PARTITION`] and [`HEADER_OFFSET`].
#[derive(Clone)]
pub struct KafkaDeadLetterSink {
    producer: Producer,
    source_topic: Arc<str>,
}

impl std::fmt::Debug for KafkaDeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDeadLetterSink")
            .field("topic", &self.producer.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaDeadLetterSink {
    /// A sink producing to `config`'s dead-letter topic; letters name `config`'s commands
    /// topic as their origin.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Producer::new(config, config.dead_letter_topic())?,
            source_topic: config.commands_topic().into(),
        })
    }

    /// The same sink, naming `topic` as the origin of its letters.
    pub(crate) fn naming_origin(mut self, topic: &str) -> Self {
        self.source_topic = topic.into();
        self
    }

    /// Produces one raw dead letter (cut to the bounds, see [`MAX_DEAD_LETTER_PAYLOAD`]) and
    /// waits for its delivery.
    pub(crate) async fn send_raw(
        &self,
        mut key: Vec<u8>,
        mut payload: Vec<u8>,
        reason: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), KafkaError> {
        key.truncate(MAX_DEAD_LETTER_KEY);
        let reason = cut_text(reason, MAX_DEAD_LETTER_REASON);
        let mut headers = dead_letter_headers(reason, &self.source_topic, partition, offset);
        if payload.len() > MAX_DEAD_LETTER_PAYLOAD {
            use sha2::Digest;
            let size = payload.len().to_string();
            let digest: String = sha2::Sha256::digest(&payload)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            payload.truncate(MAX_DEAD_LETTER_PAYLOAD);
            tracing::warn!(
                partition,
                offset,
                size = %size,
                sha256 = %digest,
                "dead letter payload cut to {MAX_DEAD_LETTER_PAYLOAD} bytes"
            );
            headers = headers
                .insert(Header {
                    key: HEADER_ORIGINAL_SIZE,
                    value: Some(&size),
                })
                .insert(Header {
                    key: HEADER_ORIGINAL_SHA256,
                    value: Some(&digest),
                });
        }
        let message = Outgoing {
            key,
            payload,
            headers,
        };
        self.producer.send_all(vec![message]).await
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn dead_letter_headers(reason: &str, topic: &str, partition: i32, offset: i64) -> OwnedHeaders {
    let (partition, offset) = (partition.to_string(), offset.to_string());
    OwnedHeaders::new_with_capacity(4)
        .insert(Header {
            key: HEADER_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: HEADER_TOPIC,
            value: Some(topic),
        })
        .insert(Header {
            key: HEADER_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: HEADER_OFFSET,
            value: Some(&offset),
        })
}

#[async_trait]
impl DeadLetterSink for KafkaDeadLetterSink {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error> {
        let payload = serde_json::to_vec(&letter.command).map_err(KafkaError::from)?;
        Ok(self
            .send_raw(
                key_of(letter.command.order_id()),
                payload,
                &letter.reason,
                letter.origin.partition,
                letter.origin.offset,
            )
            .await?)
    }
}
