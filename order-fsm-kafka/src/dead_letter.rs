//! The dead-letter sink: the one place every dead letter passes (the source's undecodable and
//! mis-keyed messages, the runner's rejected commands, a follower's unreadable records), so
//! it bounds, optionally redacts and logs them all.

use std::sync::Arc;

use async_trait::async_trait;
use order_fsm::{DeadLetter, DeadLetterSink, Error, OrderId, Throttle};
use rdkafka::message::{Header, OwnedHeaders};

use crate::producer::{key_of, Outgoing, Producer};
use crate::redact::{order_id_in, personal_values, redact_payload, scrub};
use crate::{KafkaConfig, KafkaError};

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
/// Header of a dead letter whose payload lost its personal data (value `true`), see
/// [`KafkaConfig::with_dead_letter_redaction`].
pub const HEADER_REDACTED: &str = "redacted";
/// Largest dead-letter payload produced whole. A longer one (a poison message of megabytes,
/// which no producer with the default `message.max.bytes` of 1 MB would take) is cut to this
/// many bytes, with [`HEADER_ORIGINAL_SIZE`] and [`HEADER_ORIGINAL_SHA256`] naming the
/// original, so it never stops its partition. Keys are cut at 1 KiB, reasons at 4 KiB.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 64 * 1024;
/// Longest dead-letter key and reason kept.
const MAX_DEAD_LETTER_KEY: usize = 1024;
const MAX_DEAD_LETTER_REASON: usize = 4096;
/// Most dead-letter lines a sink logs per second; the next line counts those left out.
const LOG_LINES_PER_SECOND: u32 = 10;

/// Produces dead letters to the dead-letter topic: a rejected command as payload (JSON), or
/// the original payload of a message the source or a follower could not take, with headers
/// [`HEADER_REASON`], [`HEADER_TOPIC`], [`HEADER_PARTITION`] and [`HEADER_OFFSET`].
///
/// - **Bounds**: payloads are cut to [`MAX_DEAD_LETTER_PAYLOAD`] (see there).
/// - **Redaction** ([`KafkaConfig::with_dead_letter_redaction`], off by default): the
///   payload loses its personal data before it is produced, and the letter carries
///   [`HEADER_REDACTED`].
/// - **Log**: each delivered letter is logged at `warn` (target `order_fsm_kafka::dead_letter`)
///   with its reason, origin topic, partition and offset and its order id when known, never
///   its payload or key; personal values the reason quotes and e-mail addresses are scrubbed
///   from it. At most 10 lines a second per sink (clones share the budget); each line's
///   `suppressed` field counts the letters left out of the log since the previous line.
#[derive(Clone)]
pub struct KafkaDeadLetterSink {
    producer: Producer,
    source_topic: Arc<str>,
    redact: bool,
    throttle: Arc<Throttle>,
}

impl std::fmt::Debug for KafkaDeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDeadLetterSink")
            .field("topic", &self.producer.topic())
            .field("redact", &self.redact)
            .finish_non_exhaustive()
    }
}

/// One dead letter on its way.
struct Letter<'a> {
    /// The order it is about, when the caller knows (else read from the payload for the log).
    order_id: Option<OrderId>,
    key: Vec<u8>,
    payload: Vec<u8>,
    reason: &'a str,
    partition: i32,
    offset: i64,
}

impl KafkaDeadLetterSink {
    /// A sink producing to `config`'s dead-letter topic, redacting when `config` says so;
    /// letters name `config`'s commands topic as their origin.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for an invalid property.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Producer::new(config, config.dead_letter_topic())?,
            source_topic: config.commands_topic().into(),
            redact: config.dead_letter_redaction(),
            throttle: Arc::new(Throttle::per_second(LOG_LINES_PER_SECOND)),
        })
    }

    /// The same sink, naming `topic` as the origin of its letters.
    pub(crate) fn naming_origin(mut self, topic: &str) -> Self {
        self.source_topic = topic.into();
        self
    }

    /// Produces one raw dead letter (cut to the bounds, see [`MAX_DEAD_LETTER_PAYLOAD`],
    /// redacted when configured) and waits for its delivery.
    pub(crate) async fn send_raw(
        &self,
        key: Vec<u8>,
        payload: Vec<u8>,
        reason: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), KafkaError> {
        self.send(Letter {
            order_id: None,
            key,
            payload,
            reason,
            partition,
            offset,
        })
        .await
    }

    async fn send(&self, letter: Letter<'_>) -> Result<(), KafkaError> {
        let Letter {
            order_id,
            mut key,
            payload,
            reason,
            partition,
            offset,
        } = letter;
        key.truncate(MAX_DEAD_LETTER_KEY);
        let mut reason = cut_text(reason, MAX_DEAD_LETTER_REASON).to_owned();
        // With redaction: the payload without personal data, and the texts it removed.
        let redacted = self.redact.then(|| redact_payload(&payload));
        if let Some((_, removed)) = &redacted {
            reason = scrub(&reason, removed);
        }
        let mut headers = dead_letter_headers(&reason, &self.source_topic, partition, offset);
        if redacted.is_some() {
            headers = headers.insert(Header {
                key: HEADER_REDACTED,
                value: Some("true"),
            });
        }
        let (mut produced, removed) = match redacted {
            Some((produced, removed)) => (produced, Some(removed)),
            None => (payload.clone(), None),
        };
        if produced.len() > MAX_DEAD_LETTER_PAYLOAD {
            produced.truncate(MAX_DEAD_LETTER_PAYLOAD);
            headers = cut_headers(headers, &payload, partition, offset);
        }
        let message = Outgoing {
            partition: None,
            key,
            payload: produced,
            headers,
        };
        self.producer.send_all(vec![message]).await?;
        if let Some(suppressed) = self.throttle.admit() {
            // Parsed only for the lines logged, so a flood costs no more than its letters.
            let order_id = order_id.or_else(|| order_id_in(&payload));
            let values = removed.unwrap_or_else(|| personal_values(&payload));
            tracing::warn!(
                reason = %scrub(&reason, &values),
                topic = %self.source_topic,
                partition,
                offset,
                order_id = order_id.map(tracing::field::display),
                dead_letter_topic = %self.producer.topic(),
                suppressed,
                "dead letter"
            );
        }
        Ok(())
    }
}

/// The headers of a letter whose payload is cut: the original's size and hash, logged too.
fn cut_headers(
    headers: OwnedHeaders,
    original: &[u8],
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    use sha2::Digest;
    let size = original.len().to_string();
    let digest: String = sha2::Sha256::digest(original)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tracing::warn!(
        partition,
        offset,
        size = %size,
        sha256 = %digest,
        "dead letter payload cut to {MAX_DEAD_LETTER_PAYLOAD} bytes"
    );
    headers
        .insert(Header {
            key: HEADER_ORIGINAL_SIZE,
            value: Some(&size),
        })
        .insert(Header {
            key: HEADER_ORIGINAL_SHA256,
            value: Some(&digest),
        })
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
    OwnedHeaders::new_with_capacity(5)
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
        let order_id = letter.command.order_id();
        let payload = serde_json::to_vec(&letter.command).map_err(KafkaError::from)?;
        Ok(self
            .send(Letter {
                order_id: Some(order_id),
                key: key_of(order_id),
                payload,
                reason: &letter.reason,
                partition: letter.origin.partition,
                offset: letter.origin.offset,
            })
            .await?)
    }
}
