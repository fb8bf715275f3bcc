//! The sinks of transition records and commands, each through one idempotent producer
//! that waits for every delivery report (the dead-letter sink too, in `dead_letter`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use order_fsm::{Command, CommandSink, Error, OrderId, TransitionRecord, TransitionSink};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use uuid::Uuid;

use crate::backlog::Backlog;
use crate::{CommandCodec, KafkaConfig, KafkaError, WireFormat};

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
    /// An explicit partition; `None`: the partitioner's choice by key.
    pub(crate) partition: Option<i32>,
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

    /// The topic it produces to.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `messages` in order and waits until the broker acknowledged all of them.
    pub(crate) async fn send_all(&self, messages: Vec<Outgoing>) -> Result<(), KafkaError> {
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        let mut failure = None;
        'messages: for message in messages {
            let Outgoing {
                partition,
                key,
                payload,
                headers,
            } = message;
            let mut record = FutureRecord::to(&self.topic)
                .key(&key[..])
                .payload(&payload[..])
                .headers(headers);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
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

/// The key of every message about `order_id`: its hyphenated string form (what the source
/// compares a command's message key with).
pub(crate) fn key_of(order_id: OrderId) -> Vec<u8> {
    order_id.to_string().into_bytes()
}

/// Publishes [`TransitionRecord`]s to the transitions topic, keyed by order id, in the
/// configured [`WireFormat`] (named by the [`crate::HEADER_FORMAT`] header), one message
/// per record or, with [`KafkaConfig::with_packed_transitions`], one per partition and
/// call.
///
/// Each record also carries two headers (`ofsm-batch`, `ofsm-batch-last`) that let a reader
/// tell the records published together for one order. See [`TransitionSink`] for the contract; a record
/// published twice appears twice in the topic.
#[derive(Clone)]
pub struct KafkaTransitionSink {
    producer: Producer,
    format: WireFormat,
    packing: Option<Arc<crate::pack::Packing>>,
}

impl std::fmt::Debug for KafkaTransitionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransitionSink")
            .field("topic", &self.producer.topic)
            .field("format", &self.format)
            .field("packed", &self.packing.is_some())
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
            format: config.wire_format(),
            packing: config
                .packed_transitions()
                .then(|| crate::pack::Packing::new(config))
                .flatten()
                .map(Arc::new),
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
        if let Some(packing) = &self.packing {
            let messages = packing.messages(self.format, records, &batch).await?;
            return Ok(self.producer.send_all(messages).await?);
        }
        let mut last: HashMap<OrderId, u64> = HashMap::new();
        for r in records {
            let v = last.entry(r.order_id).or_default();
            *v = (*v).max(r.version);
        }
        let mut messages = Vec::with_capacity(records.len());
        for r in records {
            let batch_last = last[&r.order_id].to_string();
            messages.push(Outgoing {
                partition: None,
                key: key_of(r.order_id),
                payload: self.format.encode_transition(r)?,
                headers: self
                    .format
                    .headers(2)
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
    /// A sink producing commands to `config`'s commands topic in its
    /// [`KafkaConfig::wire_format`].
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Self::build(config, config.wire_format().shared_codec())
    }

    /// A sink encoding commands with `codec`.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn with_codec(config: &KafkaConfig, codec: impl CommandCodec) -> Result<Self, KafkaError> {
        Self::build(config, Arc::new(codec))
    }

    fn build(config: &KafkaConfig, codec: Arc<dyn CommandCodec>) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Producer::new(config, config.commands_topic())?,
            codec,
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
        let format = self.codec.format();
        let mut messages = Vec::with_capacity(commands.len());
        for c in commands {
            messages.push(Outgoing {
                partition: None,
                key: key_of(c.order_id()),
                payload: self.codec.encode(c)?,
                headers: format.map_or_else(OwnedHeaders::new, |f| f.headers(0)),
            });
        }
        Ok(self.producer.send_all(messages).await?)
    }
}
