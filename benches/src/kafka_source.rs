//! The Kafka source feeding a runner beside the best raw consumer of the same topic and the
//! same N commands, in one process.
//!
//! N commands are produced first (lz4-compressed: the mock cluster keeps only 5 MB per
//! partition): the lifecycle mix (the default) is what a shop's commands topic carries, N/5
//! orders each placed and then driven through `prepare`, `ship`, `deliver` and `complete`
//! by four event commands; `placements` is the worst case, every message a placement
//! carrying a whole purchase. Then, each round on fresh consumer groups:
//!
//! - **anchor**: a raw `BaseConsumer` on one thread (the source polls on one thread too)
//!   with the source's own fetch settings ([`KafkaConfig::reader_client_config`]:
//!   `fetch.queue.backoff.ms=20`, no auto-commit), reading every payload and nothing more;
//!   rdkafka 0.38 has no batch-consume call outside unsafe `rdkafka-sys`, but `poll` hands
//!   out librdkafka's prefetched batches one message at a time, so this is the client's own
//!   floor;
//! - **subject**: a `KafkaSource` feeding a `Runner` (in-memory store sized for the run,
//!   counting sink, no automatic advance: one record per command);
//! - an extra figure: the source alone (poll, decode, acknowledge; no runner), to show where
//!   the time goes.
//!
//! Rates count from the first message (the group join, about 3 s on the mock cluster, is an
//! extra figure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{CommandSink, CommandSource, Lifecycle, MemorySink, MemoryStore, Runner};
use order_fsm_kafka::{
    provision_mock_topics, provision_topics, KafkaCommandSink, KafkaConfig, KafkaSource, WireFormat,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::Message;

use crate::data::{commands, count, run_tag};
use crate::report::{Better, Comparison, Rounds, Spec, Target};
use crate::{BoxError, Brokers, Size};

/// No new message for this long: the run failed (lost messages, a dead broker).
const STALL: Duration = Duration::from_secs(60);

/// The brokers' address and a label for the report; the mock cluster lives as long as the
/// returned handle.
pub(crate) fn connect(
    brokers: &Brokers,
) -> Result<
    (
        Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
        String,
        String,
    ),
    BoxError,
> {
    Ok(match brokers {
        Brokers::Mock => {
            let cluster = MockCluster::new(1)?;
            let address = cluster.bootstrap_servers();
            (Some(cluster), address, "librdkafka mock cluster".into())
        }
        Brokers::Real { address, kind } => (None, address.clone(), format!("{kind} at {address}")),
    })
}

/// Fresh topics and group names for one comparison; creates the topics.
pub(crate) async fn topics(
    mock: Option<&MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    address: &str,
    partitions: i32,
) -> Result<KafkaConfig, BoxError> {
    let id = run_tag();
    let config = KafkaConfig::new(address)
        .with_commands_topic(format!("bench-orders-{id}"))
        .with_transitions_topic(format!("bench-transitions-{id}"))
        .with_dead_letter_topic(format!("bench-dlq-{id}"))
        .with_state_topic(format!("bench-state-{id}"))
        .with_group(format!("bench-runner-{id}"))
        .with_property("session.timeout.ms", "6000");
    match mock {
        Some(cluster) => provision_mock_topics(cluster, &config, partitions)?,
        None => provision_topics(&config, partitions).await?,
    }
    Ok(config)
}

/// The anchor: time from the first message to the last, time to the first message, bytes.
fn raw_loop(
    config: &KafkaConfig,
    group: &str,
    n: usize,
) -> Result<(Duration, Duration, usize), String> {
    let start = Instant::now();
    let consumer: BaseConsumer = config
        .reader_client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("raw consumer: {e}"))?;
    consumer
        .subscribe(&[config.commands_topic()])
        .map_err(|e| format!("subscribe: {e}"))?;
    let (mut first, mut last) = (None, Instant::now());
    let (mut read, mut bytes) = (0, 0);
    while read < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                first.get_or_insert(last);
                read += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => eprintln!("raw consumer: {e}"),
            None if last.elapsed() > STALL => {
                return Err(format!(
                    "raw consumer: {read} of {n} messages, then nothing"
                ))
            }
            None => {}
        }
    }
    let first = first.unwrap_or(start);
    Ok((first.elapsed(), first - start, bytes))
}

/// The source alone: time from the first envelope to the last, time to the first.
async fn source_only(config: &KafkaConfig, n: usize) -> Result<(Duration, Duration), BoxError> {
    let start = Instant::now();
    let mut source = KafkaSource::new(config)?;
    let mut first = None;
    for read in 0..n {
        let envelope = tokio::time::timeout(STALL, source.next())
            .await
            .map_err(|_| format!("source: {read} of {n} commands, then nothing"))??
            .ok_or("source ended early")?;
        first.get_or_insert_with(Instant::now);
        envelope.ack.ack();
    }
    let first = first.unwrap_or(start);
    Ok((first.elapsed(), first - start))
}

/// A runner reading `source` in a task until the returned sender is used (or dropped).
pub(crate) fn spawn_runner(
    runner: &Arc<Runner>,
    source: KafkaSource,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<order_fsm::RunReport, order_fsm::Error>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = Arc::clone(runner);
    let task = tokio::spawn(async move {
        runner
            .run(source, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}

/// The subject: transitions/s from the first record to the last, time to the first.
async fn source_and_runner(config: &KafkaConfig, n: usize) -> Result<(f64, Duration), BoxError> {
    let sink = Arc::new(MemorySink::counting());
    let runner = Arc::new(
        Runner::builder(Lifecycle::ecommerce())
            // Sized for the run, as a deployment sizes its store: growing a map of a
            // million orders is a one-off cost that would otherwise be a fifth of the time.
            .with_store(Arc::new(MemoryStore::with_capacity(n + 1)))
            .with_sink(sink.clone())
            .build()?,
    );
    let started = Instant::now();
    let (stop, task) = spawn_runner(&runner, KafkaSource::new(config)?);
    let (mut seen, mut progress) = (0, Instant::now());
    let mut first = None;
    while sink.published() < n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = sink.published();
        if now > seen {
            first.get_or_insert_with(Instant::now);
            (seen, progress) = (now, Instant::now());
        } else if progress.elapsed() > STALL || task.is_finished() {
            let _ = stop.send(());
            return Err(format!("runner: {now} of {n} records, then nothing").into());
        }
    }
    let first = first.unwrap_or(started);
    let elapsed = first.elapsed();
    let _ = stop.send(());
    let report = task.await??;
    if report.metrics.dead_lettered > 0 {
        return Err(format!("runner: {} dead letters", report.metrics.dead_lettered).into());
    }
    Ok((n as f64 / elapsed.as_secs_f64(), first - started))
}

pub(crate) async fn compare(
    size: Size,
    brokers: Brokers,
    placements: bool,
    format: WireFormat,
) -> Result<Vec<Comparison>, BoxError> {
    let partitions = 32;
    let (n, rounds) = match brokers {
        Brokers::Mock if placements => size.pick((2_000, 2), (100_000, 3), (1_000_000, 5)),
        Brokers::Mock => size.pick((2_000, 2), (200_000, 3), (1_000_000, 5)),
        Brokers::Real { .. } => size.pick((2_000, 2), (50_000, 3), (200_000, 5)),
    };
    let (mock, address, backend) = connect(&brokers)?;
    let config = topics(mock.as_ref(), &address, partitions)
        .await?
        .with_wire_format(format);

    let producer = KafkaCommandSink::new(&config.clone().with_property("compression.type", "lz4"))?;
    let started = Instant::now();
    let mut produced = 0;
    while produced < n {
        let batch = commands((n - produced).min(20_000), !placements);
        producer.submit(&batch).await?;
        produced += batch.len();
    }
    let produce_secs = started.elapsed().as_secs_f64();
    drop(producer);

    let mut r = Rounds::default();
    let mut bytes = 0;
    for round in 0..rounds {
        let raw = || {
            let (config, group) = (config.clone(), format!("{}-raw{round}", config.group()));
            tokio::task::spawn_blocking(move || raw_loop(&config, &group, n))
        };
        let runner_config = config
            .clone()
            .with_group(format!("{}-r{round}", config.group()));
        let (raw, (runner_rate, runner_join)) = if Rounds::anchor_first(round) {
            let raw = raw().await??;
            (raw, source_and_runner(&runner_config, n).await?)
        } else {
            let subject = source_and_runner(&runner_config, n).await?;
            (raw().await??, subject)
        };
        let (raw_time, raw_join, raw_bytes) = raw;
        bytes = raw_bytes;
        let source_config = config
            .clone()
            .with_group(format!("{}-s{round}", config.group()));
        let (source_time, _) = source_only(&source_config, n).await?;
        r.extra(
            "source alone (poll, decode, ack)",
            "msg/s",
            n as f64 / source_time.as_secs_f64(),
        );
        r.extra("group join (raw)", "s", raw_join.as_secs_f64());
        r.extra("group join (runner)", "s", runner_join.as_secs_f64());
        r.push(n as f64 / raw_time.as_secs_f64(), runner_rate);
    }
    let kind = if placements {
        "placements"
    } else {
        "lifecycle"
    };
    let suffix = if mock.is_some() { "mock" } else { "real" };
    let (id_format, in_format) = crate::format_labels(format, false);
    Ok(vec![r.finish(Spec {
        id: format!("kafka.source.{kind}.{id_format}{suffix}"),
        title: if placements {
            "Kafka source + runner vs the best raw consumer, placements only".into()
        } else {
            "Kafka source + runner vs the best raw consumer".into()
        },
        backend,
        setup: format!(
            "{} {} in {in_format}, {partitions} partitions, {:.0} bytes/msg",
            count(n),
            if placements {
                "placements"
            } else {
                "commands (1 placement + 4 events per order)"
            },
            bytes as f64 / n as f64
        ),
        unit: "msg/s",
        better: Better::Higher,
        anchor: "raw `BaseConsumer`, one thread, the source's fetch settings".into(),
        subject: "`KafkaSource` + `Runner` (transitions/s)".into(),
        target: Some(Target::AtLeast(0.7)),
        notes: vec![format!(
            "produced in {produce_secs:.1} s; rates count from the first message"
        )],
    })])
}
