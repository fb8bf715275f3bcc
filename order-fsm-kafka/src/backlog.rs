//! The backlog of the commands topic: commands produced and not yet committed by the
//! workers' group, measured in the background for the intake's back-pressure, and
//! reported per partition as the live gauge `order_fsm::telemetry::CONSUMER_LAG`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use crate::{KafkaConfig, KafkaError};

/// How often the backlog is measured; also the retry hint of a refused request.
pub(crate) const MEASURE_EVERY: Duration = Duration::from_millis(250);
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The last measured backlog, shared with the measuring thread (which ends when the last
/// handle is dropped).
#[derive(Debug)]
pub(crate) struct Backlog {
    pub(crate) limit: u64,
    state: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    records: AtomicU64,
    stop: AtomicBool,
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

impl Backlog {
    /// Starts measuring the backlog of `config`'s commands topic for its workers' group.
    pub(crate) fn watch(config: &KafkaConfig, limit: u64) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = config
            .reader_config(&[])
            .set("group.id", config.group())
            .create()?;
        let topic = config.commands_topic().to_owned();
        let group = config.group().to_owned();
        let state = Arc::new(Shared::default());
        let shared = Arc::clone(&state);
        std::thread::Builder::new()
            .name("ofsm-backlog".into())
            .spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    match measure(&consumer, &topic) {
                        Ok(per_partition) => {
                            let mut records = 0;
                            for (partition, lag) in per_partition {
                                records += lag;
                                metrics::gauge!(
                                    order_fsm::telemetry::CONSUMER_LAG,
                                    "group" => group.clone(),
                                    "partition" => partition.to_string()
                                )
                                .set(lag as f64);
                            }
                            shared.records.store(records, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!(error = %e, "backlog not measured"),
                    }
                    std::thread::sleep(MEASURE_EVERY);
                }
            })
            .map_err(|e| KafkaError::Config(format!("cannot start the backlog thread: {e}")))?;
        Ok(Self { limit, state })
    }

    /// The last measured backlog, in commands.
    pub(crate) fn records(&self) -> u64 {
        self.state.records.load(Ordering::Relaxed)
    }
}

/// For each partition: high watermark − the group's committed offset (or the low watermark
/// where it committed nothing).
fn measure(consumer: &BaseConsumer, topic: &str) -> Result<Vec<(i32, u64)>, KafkaError> {
    let partitions = crate::topics::partition_ids(consumer, topic, QUERY_TIMEOUT)?;
    let mut list = TopicPartitionList::new();
    for &p in &partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, QUERY_TIMEOUT)?;
    let mut backlog = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, QUERY_TIMEOUT)?;
        let done = committed
            .find_partition(topic, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|&o| o >= 0)
            .unwrap_or(low);
        backlog.push((p, u64::try_from(high - done.max(low)).unwrap_or(0)));
    }
    Ok(backlog)
}
