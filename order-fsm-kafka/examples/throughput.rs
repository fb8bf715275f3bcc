//! Throughput: a raw rdkafka consume loop against the Kafka source + runner, over the same
//! topic and the same N small messages, in one process and one run.
//!
//! ```text
//! cargo run --release -p order-fsm-kafka --example throughput -- [--messages N] [--partitions P]
//!     [--commands lifecycle|placements] [--brokers HOST:PORT]
//! ```
//!
//! Without `--brokers` it starts librdkafka's mock cluster in-process. N commands are
//! produced first (lz4-compressed: the mock cluster keeps only 5 MB per partition):
//! `lifecycle` (the default) is what a shop's commands topic carries, N/5 orders each placed
//! and then driven through `prepare`, `ship`, `deliver` and `complete` by four event
//! commands; `placements` is the worst case, every message a placement carrying a whole
//! purchase. Then a raw `BaseConsumer` loop reads all N in its own group, a source alone
//! (poll, decode, acknowledge; no runner) reads them in a second group to show where the
//! time goes, and a `KafkaSource` feeding a `Runner` (two workers, in-memory store, counting
//! sink, no automatic advance: one record per command) reads them in a third. Rates count
//! from the first message (the group join, about 3 s on the mock cluster, is printed
//! apart). Prints the rates and the ratio runner / raw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{
    Command, CommandSink, CommandSource, Lifecycle, MemorySink, MemoryStore, Purchase, Runner,
};
use order_fsm_kafka::{
    provision_mock_topics, provision_topics, KafkaCommandSink, KafkaConfig, KafkaSource,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message};

// The allocator of the programs in `examples/` (glibc's malloc costs the runner much of
// its time under load); both loops run under it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    messages: usize,
    lifecycle: bool,
    partitions: i32,
    brokers: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        messages: 1_000_000,
        lifecycle: true,
        partitions: 32,
        brokers: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--messages" => args.messages = value().parse().expect("--messages N"),
            "--partitions" => args.partitions = value().parse().expect("--partitions P"),
            "--brokers" => args.brokers = Some(value()),
            "--commands" => {
                args.lifecycle = match value().as_str() {
                    "lifecycle" => true,
                    "placements" => false,
                    other => panic!("--commands lifecycle|placements, not {other}"),
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// `count` commands: placements, or placements each followed by the four events of the
/// ecommerce happy path (a trailing partial order is only partly driven).
fn commands(count: usize, lifecycle: bool) -> Vec<Command> {
    const EVENTS: [&str; 4] = ["prepare", "ship", "deliver", "complete"];
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let place = Command::place(Purchase::example());
        let order = place.order_id();
        out.push(place);
        if lifecycle {
            for event in EVENTS.iter().take(count - out.len()) {
                out.push(Command::apply(order, *event));
            }
        }
    }
    out
}

/// Time from the first message to the last, time to the first message, bytes read.
fn raw_loop(brokers: &str, topic: &str, group: &str, n: usize) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let mut first = None;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (mut count, mut bytes) = (0, 0);
    while count < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                count += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => eprintln!("raw consumer: {e}"),
            None => {}
        }
    }
    let first = first.unwrap_or(start);
    (first.elapsed(), first - start, bytes)
}

/// Time from the first envelope to the last, time to the first envelope.
async fn source_only(
    config: &KafkaConfig,
    n: usize,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut source = KafkaSource::new(config)?;
    let mut first = None;
    for _ in 0..n {
        let envelope = source.next().await?.ok_or("source ended early")?;
        first.get_or_insert_with(Instant::now);
        envelope.ack.ack();
    }
    let first = first.unwrap_or(start);
    Ok((first.elapsed(), first - start))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let mock = match &args.brokers {
        Some(_) => None,
        None => Some(MockCluster::new(1)?),
    };
    let brokers = args.brokers.clone().unwrap_or_else(|| {
        mock.as_ref()
            .map(MockCluster::bootstrap_servers)
            .unwrap_or_default()
    });
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let config = KafkaConfig::new(&brokers)
        .with_commands_topic(format!("bench-orders-{id}"))
        .with_transitions_topic(format!("bench-transitions-{id}"))
        .with_dead_letter_topic(format!("bench-dlq-{id}"))
        .with_group(format!("bench-runner-{id}"))
        .with_property("session.timeout.ms", "6000");
    match &mock {
        Some(cluster) => provision_mock_topics(cluster, &config, args.partitions)?,
        None => provision_topics(&config, args.partitions).await?,
    }
    let n = args.messages;
    println!(
        "broker: {} | {n} {} | {} partitions",
        if mock.is_some() {
            "librdkafka mock cluster"
        } else {
            brokers.as_str()
        },
        if args.lifecycle {
            "commands (1 placement + 4 events per order)"
        } else {
            "placements"
        },
        args.partitions
    );

    // Produce.
    let producer = KafkaCommandSink::new(&config.clone().with_property("compression.type", "lz4"))?;
    let started = Instant::now();
    let mut produced = 0;
    while produced < n {
        let batch = commands((n - produced).min(20_000), args.lifecycle);
        producer.submit(&batch).await?;
        produced += batch.len();
    }
    let produce = started.elapsed();
    println!(
        "produce : {n} in {:.2}s = {:.0} msg/s",
        produce.as_secs_f64(),
        n as f64 / produce.as_secs_f64()
    );

    // Raw loop.
    let (topic, group) = (
        config.commands_topic().to_owned(),
        format!("bench-raw-{id}"),
    );
    let (raw, raw_join, bytes) =
        tokio::task::spawn_blocking(move || raw_loop(&brokers, &topic, &group, n)).await?;
    let raw_rate = n as f64 / raw.as_secs_f64();
    println!(
        "raw     : {n} in {:.2}s = {raw_rate:.0} msg/s ({:.0} bytes/msg; group join {:.2}s not counted)",
        raw.as_secs_f64(),
        bytes as f64 / n as f64,
        raw_join.as_secs_f64()
    );

    // Source alone: poll, decode, acknowledge (the runner's share is what comes on top).
    let source_config = config.clone().with_group(format!("bench-source-{id}"));
    let (source_time, source_join) = source_only(&source_config, n).await?;
    let source_rate = n as f64 / source_time.as_secs_f64();
    println!(
        "source  : {n} in {:.2}s = {source_rate:.0} msg/s decoded and acknowledged (group join {:.2}s not counted)",
        source_time.as_secs_f64(),
        source_join.as_secs_f64()
    );

    // Source + runner.
    let sink = Arc::new(MemorySink::counting());
    let runner = Arc::new(
        Runner::builder(Lifecycle::ecommerce())
            // Sized for the run, as a deployment sizes its store: growing a map of a
            // million orders (rehashing, faulting in fresh pages) is a one-off cost that
            // would otherwise be a fifth of the runner's time here.
            .with_store(Arc::new(MemoryStore::with_capacity(n + 1)))
            .with_sink(sink.clone())
            .build()?,
    );
    let started = Instant::now();
    let source = KafkaSource::new(&config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let runner = Arc::clone(&runner);
        async move {
            runner
                .run(source, async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    while sink.published() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = Instant::now();
    let runner_join = first - started;
    while sink.published() < n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = first.elapsed();
    let _ = stop.send(());
    let report = task.await??;
    let runner_rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "runner  : {n} in {:.2}s = {runner_rate:.0} transitions/s (group join {:.2}s not counted; acked {}, duplicates {}, dead letters {})",
        elapsed.as_secs_f64(),
        runner_join.as_secs_f64(),
        report.acked,
        report.metrics.duplicates,
        report.metrics.dead_lettered
    );
    println!("ratio runner/raw: {:.2}", runner_rate / raw_rate);
    Ok(())
}
