//! The worker pipeline through Kafka beside the raw producer + consumer pair moving the same
//! records (issue 16, third target).
//!
//! - **subject**: N placements submitted by a `KafkaCommandSink` (batches of 100, 16 in
//!   flight, as the intake's bulk calls), read by a `KafkaSource` feeding a `Runner`
//!   assembled as the worker program assembles it (`KafkaStateLog`, `KafkaTransitionSink`,
//!   no dwell, 8 workers): one command in per order, five transition records and its state
//!   records out. Orders/s from the first submit until every order finished.
//! - **anchor**: raw `FutureProducer`s with the sinks' settings, one per topic as the
//!   subject has (commands, transitions, state), and a raw `BaseConsumer` with the source's
//!   fetch settings: the same N command payloads are produced while the consumer reads them
//!   and, per command, produces what the subject wrote for that order (the same keys,
//!   payloads and headers, captured from a first subject run), every delivery report
//!   awaited. The consumer thread only reads and routes; two threads produce (an order's
//!   messages always on the same one). Orders/s from the first produce until the last
//!   delivery.
//!
//! With packed transition records (ADR 8) the subject writes fewer messages; the anchor
//! replays those same packs (each with the command of its first record's order).
//!
//! Both start after their consumer joined its group (one warm-up order each, not counted),
//! on fresh topics each round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use order_fsm::{Command, CommandSink, Dwell, Lifecycle, MemoryStore, Purchase, Runner};
use order_fsm_kafka::{
    KafkaCommandSink, KafkaConfig, KafkaSource, KafkaStateLog, KafkaTransitionSink, WireFormat,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, DeliveryFuture, FutureProducer, FutureRecord};

use crate::data::count;
use crate::kafka_source::{connect, topics};
use crate::report::{Better, Comparison, Rounds, Spec, Target};
use crate::{BoxError, Brokers, Size};

/// Orders per submit, and submits in flight (the intake's bulk calls).
const BATCH: usize = 100;
const IN_FLIGHT: usize = 16;
/// The worker program's default.
const WORKERS: usize = 8;
/// Threads producing the anchor's records, one per core of the machine it was written for.
const LANES: usize = 2;
/// No progress for this long: the run failed.
const STALL: Duration = Duration::from_secs(60);

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// One message as written: key, payload and headers.
#[derive(Clone)]
struct Written {
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// What the subject wrote: each command, and per order key what followed it.
struct Capture {
    commands: Vec<Written>,
    outputs: HashMap<Vec<u8>, Vec<(Topic, Written)>>,
    transitions: usize,
    states: usize,
}

#[derive(Clone, Copy)]
enum Topic {
    Transitions,
    State,
}

fn placements(n: usize) -> Vec<Command> {
    (0..n)
        .map(|_| Command::place(Purchase::example()))
        .collect()
}

/// The subject: orders/s from the first submit until `orders` more orders finished.
async fn subject(config: &KafkaConfig, orders: &[Command]) -> Result<f64, BoxError> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let runner = Arc::new(
        Runner::builder(Arc::clone(&lifecycle))
            .with_store(Arc::new(MemoryStore::with_capacity(orders.len() + 1)))
            .with_state_log(Arc::new(KafkaStateLog::new(config, lifecycle)?))
            .with_sink(Arc::new(KafkaTransitionSink::new(config)?))
            .with_workers(WORKERS)
            .with_auto_advance(Dwell::None)
            .build()?,
    );
    let (stop, task) = crate::kafka_source::spawn_runner(&runner, KafkaSource::new(config)?);
    let sink = Arc::new(KafkaCommandSink::new(config)?);
    // One order to wait for the group to form.
    sink.submit(&placements(1)).await?;
    let finished = || runner.metrics().orders_finished_total();
    wait_for(|| finished() >= 1, "the warm-up order").await?;

    let started = Instant::now();
    let target = 1 + orders.len() as u64;
    let submits = futures_util::stream::iter(orders.chunks(BATCH))
        .map(|chunk| {
            let sink = Arc::clone(&sink);
            async move { sink.submit(chunk).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>();
    for submitted in submits.await {
        submitted?;
    }
    wait_for(|| finished() >= target, "every order to finish").await?;
    let rate = orders.len() as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let report = task.await??;
    if report.metrics.dead_lettered > 0 {
        return Err(format!("pipeline: {} dead letters", report.metrics.dead_lettered).into());
    }
    Ok(rate)
}

async fn wait_for(done: impl Fn() -> bool, what: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + STALL;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("pipeline: timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Every message of `topic`, from the start, until `expected` were read (or, without an
/// expectation, until the topic stays quiet for a second).
fn read_all(
    config: &KafkaConfig,
    topic: &str,
    expected: Option<usize>,
) -> Result<Vec<Written>, BoxError> {
    let consumer: BaseConsumer = config
        .reader_client_config()
        .set(
            "group.id",
            format!("bench-capture-{}", crate::data::run_tag()),
        )
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut out, mut last) = (Vec::new(), Instant::now());
    loop {
        if expected.is_some_and(|n| out.len() >= n) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(message) => {
                let m = message?;
                last = Instant::now();
                let headers = m.headers().map_or_else(Vec::new, |h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                });
                out.push(Written {
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            None if expected.is_none()
                && !out.is_empty()
                && last.elapsed() > Duration::from_secs(1) =>
            {
                break
            }
            None if last.elapsed() > STALL => {
                return Err(
                    format!("capture: {} messages of {topic}, then nothing", out.len()).into(),
                )
            }
            None => {}
        }
    }
    Ok(out)
}

/// What a subject run on `config` wrote for `orders`.
async fn capture(config: &KafkaConfig, orders: &[Command]) -> Result<Capture, BoxError> {
    subject(config, orders).await?;
    let config = config.clone();
    let n = orders.len() + 1;
    tokio::task::spawn_blocking(move || {
        let commands = read_all(&config, config.commands_topic(), Some(n))?;
        // Packs: as many as the runner's batches made, known only by reading them all.
        let expected = (!config.packed_transitions()).then_some(5 * n);
        let transitions = read_all(&config, config.transitions_topic(), expected)?;
        let states = read_all(&config, config.state_topic(), None)?;
        let (t, s) = (transitions.len(), states.len());
        let mut outputs: HashMap<Vec<u8>, Vec<(Topic, Written)>> = HashMap::new();
        for (topic, written) in transitions
            .into_iter()
            .map(|w| (Topic::Transitions, w))
            .chain(states.into_iter().map(|w| (Topic::State, w)))
        {
            outputs
                .entry(written.key.clone())
                .or_default()
                .push((topic, written));
        }
        Ok(Capture {
            commands,
            outputs,
            transitions: t,
            states: s,
        })
    })
    .await?
}

/// Enqueues `message` to `topic`, waiting while the local queue is full.
fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    message: &Written,
) -> Result<DeliveryFuture, BoxError> {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
    for (key, value) in &message.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record = FutureRecord::to(topic)
        .key(&message.key[..])
        .payload(&message.payload[..])
        .headers(headers);
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("raw producer: {e}").into()),
        }
    }
}

/// The anchor: orders/s of the raw pair moving `capture`'s records on `config`'s topics.
async fn anchor(config: &KafkaConfig, capture: Arc<Capture>) -> Result<f64, BoxError> {
    let producer = || -> Result<FutureProducer, BoxError> {
        let mut raw = crate::kafka_sink::raw_producer_config(config.brokers());
        for (key, value) in config.properties() {
            if !CONSUMER_ONLY.contains(&key.as_str()) {
                raw.set(key, value);
            }
        }
        Ok(raw.create()?)
    };
    let (producer, transitions_producer, state_producer) = (producer()?, producer()?, producer()?);
    let consumer: BaseConsumer = config
        .reader_client_config()
        .set("group.id", config.group())
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[config.commands_topic()])?;
    let warm_up = capture.commands.first().ok_or("nothing captured")?;
    let n = capture.commands.len() - 1;
    crate::kafka_sink::await_deliveries(vec![enqueue(
        &producer,
        config.commands_topic(),
        warm_up,
    )?])
    .await?;
    let consumer = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(_)) => break,
                Some(Err(e)) => return Err(BoxError::from(e)),
                None if started.elapsed() > STALL => return Err("anchor: no warm-up".into()),
                None => {}
            }
        }
        Ok(consumer)
    })
    .await??;

    let started = Instant::now();
    let commands = {
        let (producer, topic) = (producer.clone(), config.commands_topic().to_owned());
        let capture = Arc::clone(&capture);
        tokio::task::spawn_blocking(move || {
            capture.commands[1..]
                .iter()
                .map(|c| enqueue(&producer, &topic, c))
                .collect::<Result<Vec<_>, _>>()
        })
    };
    // The producers live until every delivery report is in: dropping a librdkafka producer
    // purges what it still holds ("Purged in queue").
    let outputs = {
        let (transitions_producer, state_producer) =
            (transitions_producer.clone(), state_producer.clone());
        let topics: Arc<(String, String)> = Arc::new((
            config.transitions_topic().to_owned(),
            config.state_topic().to_owned(),
        ));
        tokio::task::spawn_blocking(move || -> Result<Vec<DeliveryFuture>, BoxError> {
            // Producing lanes, an order's messages always on the same one (in order); the
            // consumer thread only reads and routes.
            let mut lanes = Vec::with_capacity(LANES);
            let mut routes = Vec::with_capacity(LANES);
            for _ in 0..LANES {
                let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
                routes.push(tx);
                let (capture, topics) = (Arc::clone(&capture), Arc::clone(&topics));
                let (transitions, states) = (transitions_producer.clone(), state_producer.clone());
                lanes.push(std::thread::spawn(
                    move || -> Result<Vec<DeliveryFuture>, String> {
                        let mut pending = Vec::new();
                        for key in rx {
                            for (topic, written) in capture.outputs.get(&key).into_iter().flatten()
                            {
                                let sent = match topic {
                                    Topic::Transitions => enqueue(&transitions, &topics.0, written),
                                    Topic::State => enqueue(&states, &topics.1, written),
                                };
                                pending.push(sent.map_err(|e| e.to_string())?);
                            }
                        }
                        Ok(pending)
                    },
                ));
            }
            let (mut read, mut last) = (0, Instant::now());
            while read < n {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(m) => {
                        let m = m?;
                        last = Instant::now();
                        read += 1;
                        let key = m.key().unwrap_or_default();
                        let lane = key.iter().map(|&b| usize::from(b)).sum::<usize>() % LANES;
                        routes[lane]
                            .send(key.to_vec())
                            .map_err(|_| "anchor: a lane stopped")?;
                    }
                    None if last.elapsed() > STALL => {
                        return Err(format!("anchor: {read} of {n} commands, then nothing").into())
                    }
                    None => {}
                }
            }
            drop(routes);
            let mut pending = Vec::with_capacity(n * 7);
            for lane in lanes {
                pending.extend(lane.join().map_err(|_| "anchor: a lane panicked")??);
            }
            Ok(pending)
        })
    };
    crate::kafka_sink::await_deliveries(commands.await??).await?;
    crate::kafka_sink::await_deliveries(outputs.await??).await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop((producer, transitions_producer, state_producer));
    Ok(rate)
}

async fn fresh(
    mock: Option<&Cluster>,
    address: &str,
    format: WireFormat,
    packed: bool,
) -> Result<KafkaConfig, BoxError> {
    let config = topics(mock, address, PARTITIONS).await?;
    let mut config = config
        .with_wire_format(format)
        .with_packed_transitions(packed);
    for (key, value) in SETTINGS {
        config = config.with_property(*key, *value);
    }
    Ok(config)
}

const PARTITIONS: i32 = 16;
/// The programs' settings (`low_latency` in the examples), for every client of both: fetch
/// as soon as data is there, linger 1 ms; and lz4, as the embedded pipeline (the mock
/// cluster keeps only 5 MB per partition).
const SETTINGS: &[(&str, &str)] = &[
    ("fetch.wait.max.ms", "10"),
    ("linger.ms", "1"),
    ("compression.type", "lz4"),
];
/// Properties of `SETTINGS` and the topics' config that producers do not take.
const CONSUMER_ONLY: &[&str] = &["fetch.wait.max.ms", "session.timeout.ms"];

pub(crate) async fn compare(
    size: Size,
    brokers: Brokers,
    format: WireFormat,
    packed: bool,
) -> Result<Vec<Comparison>, BoxError> {
    let (n, rounds) = match brokers {
        Brokers::Mock => size.pick((500, 2), (50_000, 3), (200_000, 5)),
        Brokers::Real { .. } => size.pick((500, 2), (20_000, 3), (100_000, 5)),
    };
    let (mock, address, backend) = connect(&brokers)?;
    let capture = Arc::new(
        capture(
            &fresh(mock.as_ref(), &address, format, packed).await?,
            &placements(n),
        )
        .await?,
    );
    let per_order = (capture.transitions + capture.states) as f64 / capture.commands.len() as f64;

    let mut r = Rounds::default();
    for round in 0..rounds {
        let anchor_config = fresh(mock.as_ref(), &address, format, packed).await?;
        let subject_config = fresh(mock.as_ref(), &address, format, packed).await?;
        let orders = placements(n);
        let (a, s) = if Rounds::anchor_first(round) {
            let a = anchor(&anchor_config, Arc::clone(&capture)).await?;
            (a, subject(&subject_config, &orders).await?)
        } else {
            let s = subject(&subject_config, &orders).await?;
            (anchor(&anchor_config, Arc::clone(&capture)).await?, s)
        };
        r.push(a, s);
    }
    let suffix = if mock.is_some() { "mock" } else { "real" };
    let (id_format, in_format) = crate::format_labels(format, packed);
    Ok(vec![r.finish(Spec {
        id: format!("pipeline.kafka.{id_format}{suffix}"),
        title: "worker pipeline (command sink → source → runner → state log + transition sink) \
                vs the raw producer + consumer pair moving the same records"
            .into(),
        backend,
        setup: format!(
            "{} orders placed and completed, {in_format}, {PARTITIONS} partitions, {per_order:.1} \
             messages out per order ({} of transitions, {} state records)",
            count(n),
            capture.transitions,
            capture.states
        ),
        unit: "orders/s",
        better: Better::Higher,
        anchor: "raw `FutureProducer`s (one per topic) + `BaseConsumer` replaying the same \
                 messages"
            .into(),
        subject: "`KafkaCommandSink` → `KafkaSource` + `Runner`".into(),
        target: Some(Target::AtLeast(0.7)),
        notes: vec![format!(
            "submits of {BATCH} orders, {IN_FLIGHT} in flight; {WORKERS} runner workers; \
             both: fetch.wait.max.ms=10, linger.ms=1, lz4"
        )],
    })])
}
