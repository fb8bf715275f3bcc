//! The Kafka transition sink beside the raw producer: the same transition records, in the
//! same batches, from the same number of concurrent publishers, to the same topic.
//!
//! - **anchor**: an rdkafka `FutureProducer` with the sink's producer settings (idempotent,
//!   `acks=all`, `linger.ms=5`), each record encoded (JSON or protobuf, as the sink) inside
//!   the timed loop and keyed by its order id, every delivery report awaited per batch;
//! - **subject**: `KafkaTransitionSink::publish` of each batch (the same, plus its two
//!   batch headers, its format header and its queue-full handling).

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{TransitionRecord, TransitionSink};
use order_fsm_kafka::{KafkaConfig, KafkaTransitionSink, WireFormat};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::data::{count, records};
use crate::kafka_source::{connect, topics};
use crate::report::{Better, Comparison, Rounds, Spec};
use crate::{BoxError, Brokers, Size};

/// Concurrent publishers (the runner's default worker count).
const LANES: usize = 2;
/// Records per publish.
const BATCH: usize = 500;

/// The anchor's producer: the settings `KafkaConfig` gives its producers.
fn raw_producer(brokers: &str) -> Result<FutureProducer, BoxError> {
    Ok(raw_producer_config(brokers).create()?)
}

/// The settings `KafkaConfig` gives its producers, for a raw producer.
pub(crate) fn raw_producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    config
}

async fn raw_publish(
    producer: &FutureProducer,
    topic: &str,
    batch: &[TransitionRecord],
    format: WireFormat,
) -> Result<(), BoxError> {
    let mut pending = Vec::with_capacity(batch.len());
    for r in batch {
        let key = r.order_id.to_string();
        let payload = encode(r, format)?;
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| format!("raw producer: {e}"))?,
        );
    }
    await_deliveries(pending).await
}

/// Waits for every delivery report of a raw producer; the first failure is the error.
pub(crate) async fn await_deliveries(
    pending: Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), BoxError> {
    for delivery in pending {
        delivery
            .await
            .map_err(|_| "raw producer: delivery canceled")?
            .map_err(|(e, _)| format!("raw producer: {e}"))?;
    }
    Ok(())
}

/// The payload of `r` in `format`, as the sink writes it.
fn encode(r: &TransitionRecord, format: WireFormat) -> Result<Vec<u8>, BoxError> {
    Ok(match format {
        WireFormat::Json => serde_json::to_vec(r)?,
        _ => order_fsm_proto::encode_transition(r),
    })
}

/// Records/s of `LANES` publishers taking every `LANES`-th batch of `data`.
async fn drive<F, Fut>(data: Arc<Vec<TransitionRecord>>, publish: F) -> Result<f64, BoxError>
where
    F: Fn(Arc<Vec<TransitionRecord>>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let started = Instant::now();
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        lanes.spawn(publish(Arc::clone(&data), lane));
    }
    while let Some(done) = lanes.join_next().await {
        done??;
    }
    Ok(data.len() as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn compare(
    size: Size,
    brokers: Brokers,
    format: WireFormat,
) -> Result<Vec<Comparison>, BoxError> {
    let (n, rounds) = match brokers {
        Brokers::Mock => size.pick((2_000, 2), (100_000, 3), (500_000, 5)),
        Brokers::Real { .. } => size.pick((2_000, 2), (50_000, 3), (200_000, 5)),
    };
    let partitions = 32;
    let (mock, address, backend) = connect(&brokers)?;
    let topic = topics(mock.as_ref(), &address, partitions)
        .await?
        .transitions_topic()
        .to_owned();
    let sink = KafkaTransitionSink::new(
        &KafkaConfig::new(&address)
            .with_transitions_topic(&topic)
            .with_wire_format(format),
    )?;
    let producer = raw_producer(&address)?;
    let topic: Arc<str> = topic.into();

    let raw = |data: Arc<Vec<TransitionRecord>>| {
        let (producer, topic) = (producer.clone(), Arc::clone(&topic));
        drive(data, move |data, lane| {
            let (producer, topic) = (producer.clone(), Arc::clone(&topic));
            async move {
                for chunk in data.chunks(BATCH).skip(lane).step_by(LANES) {
                    raw_publish(&producer, &topic, chunk, format).await?;
                }
                Ok(())
            }
        })
    };
    let subject = |data: Arc<Vec<TransitionRecord>>| {
        let sink = sink.clone();
        drive(data, move |data, lane| {
            let sink = sink.clone();
            async move {
                for chunk in data.chunks(BATCH).skip(lane).step_by(LANES) {
                    sink.publish(chunk).await?;
                }
                Ok(())
            }
        })
    };
    // Warm up both (connections, metadata, producer ids).
    let warm = Arc::new(records(BATCH * LANES));
    raw(Arc::clone(&warm)).await?;
    subject(warm).await?;

    let mut r = Rounds::default();
    for round in 0..rounds {
        let (a_data, s_data) = (Arc::new(records(n)), Arc::new(records(n)));
        let (a, s) = if Rounds::anchor_first(round) {
            let a = raw(a_data).await?;
            (a, subject(s_data).await?)
        } else {
            let s = subject(s_data).await?;
            (raw(a_data).await?, s)
        };
        r.push(a, s);
        // Let the broker settle between rounds.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sample = records(5);
    let mut bytes = 0;
    for r in &sample {
        bytes += encode(r, format)?.len();
    }
    let bytes = bytes / sample.len();
    let (id_format, in_format) = crate::format_labels(format, false);
    Ok(vec![r.finish(Spec {
        id: format!(
            "kafka.sink.{id_format}{}",
            if mock.is_some() { "mock" } else { "real" }
        ),
        title: "Kafka transition sink vs the raw producer".into(),
        backend,
        setup: format!(
            "{} transition records (~{bytes} bytes of {in_format}), batches of {BATCH}, {LANES} publishers",
            count(n)
        ),
        unit: "records/s",
        better: Better::Higher,
        anchor: "raw `FutureProducer`, same settings".into(),
        subject: "`KafkaTransitionSink::publish`".into(),
        target: None,
        notes: Vec::new(),
    })])
}
