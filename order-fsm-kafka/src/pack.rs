//! Packed transition records (ADR 8): a publish's records grouped by the partition each
//! would have gone to alone, one message per partition (split when too large).

use std::collections::BTreeMap;
use std::time::Duration;

use order_fsm::{Error, TransitionRecord};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::Header;
use tokio::sync::OnceCell;

use crate::producer::{key_of, Outgoing, HEADER_BATCH};
use crate::{KafkaConfig, KafkaError, WireFormat};

/// The largest message a broker takes by default (`message.max.bytes`).
const DEFAULT_MAX_MESSAGE: usize = 1_000_000;
/// How long the partition count may take to learn.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka partitioners that place a keyed message by the CRC-32 of its key, as
/// [`partition_of`] does (`consistent_random`, the default, and `consistent`).
const CRC32_PARTITIONERS: [&str; 2] = ["consistent_random", "consistent"];

/// What a packing sink needs: the topic's partition count (learnt once) and the size limit.
pub(crate) struct Packing {
    config: KafkaConfig,
    partitions: OnceCell<i32>,
    max_bytes: usize,
}

impl Packing {
    /// Packing for `config`'s transitions topic, or `None` (logged) when its producer places
    /// keys by another partitioner than the one packs are placed with.
    pub(crate) fn new(config: &KafkaConfig) -> Option<Self> {
        let properties = config.properties();
        if let Some(partitioner) = properties.get("partitioner") {
            if !CRC32_PARTITIONERS.contains(&partitioner.as_str()) {
                tracing::warn!(
                    %partitioner,
                    "packed transitions need librdkafka's default (CRC-32) partitioner; \
                     publishing one record per message"
                );
                return None;
            }
        }
        let max_message = properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE);
        Some(Self {
            config: config.clone(),
            partitions: OnceCell::new(),
            max_bytes: max_message / 2,
        })
    }

    /// The transitions topic's partition count, asked of the brokers on first use.
    async fn partitions(&self) -> Result<i32, KafkaError> {
        let count = self
            .partitions
            .get_or_try_init(|| {
                // Cloned only on the first call: every publish asks.
                let config = self.config.clone();
                async move {
                    tokio::task::spawn_blocking(move || partition_count(&config))
                        .await
                        .map_err(|_| KafkaError::Canceled)?
                }
            })
            .await?;
        Ok(*count)
    }

    /// The messages of one publish: per partition, its records in order, in packs of at most
    /// `max_bytes` (a single record over the limit goes alone, as it would unpacked).
    pub(crate) async fn messages(
        &self,
        format: WireFormat,
        records: &[TransitionRecord],
        batch: &str,
    ) -> Result<Vec<Outgoing>, Error> {
        let partitions = self.partitions().await?;
        let mut by_partition: BTreeMap<i32, Vec<&TransitionRecord>> = BTreeMap::new();
        for r in records {
            let partition = partition_of(&key_of(r.order_id), partitions);
            by_partition.entry(partition).or_default().push(r);
        }
        let mut out = Vec::with_capacity(by_partition.len());
        for (partition, records) in by_partition {
            self.split_into(format, partition, &records, batch, &mut out)?;
        }
        Ok(out)
    }

    fn split_into(
        &self,
        format: WireFormat,
        partition: i32,
        records: &[&TransitionRecord],
        batch: &str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Error> {
        let payload = format.encode_pack(records)?;
        if payload.len() > self.max_bytes && records.len() > 1 {
            let (first, second) = records.split_at(records.len() / 2);
            self.split_into(format, partition, first, batch, out)?;
            return self.split_into(format, partition, second, batch, out);
        }
        out.push(Outgoing {
            partition: Some(partition),
            key: key_of(records[0].order_id),
            payload,
            headers: format.pack_headers(1).insert(Header {
                key: HEADER_BATCH,
                value: Some(batch),
            }),
        });
        Ok(())
    }
}

/// The partition librdkafka's default partitioner gives a message keyed `key`: the CRC-32
/// (IEEE) of the key modulo the partition count (`rd_kafka_msg_partitioner_consistent`).
pub(crate) fn partition_of(key: &[u8], partitions: i32) -> i32 {
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(1);
    // The remainder is below `partitions`, an `i32`.
    i32::try_from(crc32fast::hash(key) % partitions).unwrap_or(0)
}

fn partition_count(config: &KafkaConfig) -> Result<i32, KafkaError> {
    let client: BaseConsumer = config.reader_config(&[]).create()?;
    let partitions =
        crate::topics::partition_ids(&client, config.transitions_topic(), METADATA_TIMEOUT)?;
    match i32::try_from(partitions.len()) {
        Ok(count) if count > 0 => Ok(count),
        // Not created yet, or not known to this broker yet: retry.
        _ => Err(KafkaError::Unavailable(ClientError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn partitions_follow_the_crc32_of_the_key() {
        // CRC-32 (IEEE) of "123456789" is 0xCBF43926, the standard check value.
        assert_eq!(partition_of(b"123456789", 7), (0xCBF4_3926u32 % 7) as i32);
        assert_eq!(partition_of(b"anything", 1), 0);
        for key in [&b"a"[..], b"order", b"0f8b2c6e-0000-4000-8000-000000000000"] {
            assert!((0..12).contains(&partition_of(key, 12)));
        }
    }
}
