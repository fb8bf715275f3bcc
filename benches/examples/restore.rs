//! Restore cost of one partition of the state topic: how long a new [`KafkaStateLog`] takes
//! to restore the live orders of a partition whose history holds 10,000, 100,000 and
//! 1,000,000 orders, 1 % of them still live.
//!
//! ```text
//! cargo run --release -p order-fsm-benches --example restore -- [--brokers HOST:PORT]
//!     [--sizes 10000,100000,1000000] [--one-record-per-batch auto|yes|no]
//!     [--property KEY=VALUE]...
//! ```
//!
//! For each size and each case, on fresh topics (one partition): a writer restores partition
//! 0 (empty, so it then tracks positions) and writes the history the way the runner does, in
//! steps of 1,000 new orders. Each order is placed with `Engine::place_with` and given two
//! transitions (`prepare`, `ship`); half the orders are appended twice (placed, then
//! shipped), the other half once (placement and both transitions in one runner batch, so
//! only the shipped state). One step later the orders of the previous step that finished
//! are forgotten, oldest first, as the runner's retention does; 1 % stay live:
//!
//! - `recent`: the live orders are the most recent 1 % (old orders finish first);
//! - `oldest`: the same number live, but 10 of them are the 10 oldest orders of the history
//!   (stuck: a dispute, a lost parcel), the others the most recent.
//!
//! Then new logs restore partition 0 three times; the median time is printed with the live
//! orders found (checked against those expected), the records in the partition, and the
//! records the restore read ([`KafkaStateLog::records_read_by_last_restore`]).
//!
//! Without `--brokers` it runs on librdkafka's mock cluster, which keeps only 5 MB of record
//! batches per partition and deletes the oldest beyond that: records are lz4-compressed
//! there, which holds a 10,000-order history; past that the oldest records are gone (the
//! table says how many) and the `oldest` case cannot be restored. For 100,000 and
//! 1,000,000 orders use a real broker.
//!
//! tansu 0.6.0 serves nothing when a fetch starts inside a record batch, and its watermarks
//! count batches, while a restore fetches at the partition's last offset and at the restore
//! point: with `--brokers` the writer produces one record per batch (`batch.num.messages=1`,
//! the default `auto`; `no` to see what batching does), which makes writing slow (the
//! write time is printed; it is not part of the restore).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{
    ecommerce, Engine, Event, EventId, Lifecycle, OrderId, OrderState, Purchase, StateChange,
    StateLog, StateRecord, Timestamp,
};
use order_fsm_kafka::{provision_mock_topics, provision_topics, KafkaConfig, KafkaStateLog};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::ClientConfig;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Orders placed per step (and the size of every append and forget).
const STEP: usize = 1_000;
/// Live orders that are the oldest of the history in the `oldest` case.
const STUCK: usize = 10;
/// Restores timed per case.
const RESTORES: usize = 3;

struct Args {
    brokers: Option<String>,
    sizes: Vec<usize>,
    one_record_per_batch: Option<bool>,
    /// `--property KEY=VALUE`: set on every client.
    properties: Vec<(String, String)>,
}

fn parse_args() -> Args {
    let mut args = Args {
        brokers: None,
        sizes: vec![10_000, 100_000, 1_000_000],
        one_record_per_batch: None,
        properties: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--brokers" => args.brokers = Some(value()),
            "--sizes" => {
                args.sizes = value()
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().expect("--sizes N,N,..."))
                    .collect();
            }
            "--one-record-per-batch" => {
                args.one_record_per_batch = match value().as_str() {
                    "auto" => None,
                    "yes" => Some(true),
                    "no" => Some(false),
                    other => panic!("--one-record-per-batch auto|yes|no, not {other}"),
                }
            }
            "--property" => {
                let property = value();
                let (key, value) = property.split_once('=').expect("--property KEY=VALUE");
                args.properties.push((key.into(), value.into()));
            }
            other => panic!("unknown argument {other}"),
        }
    }
    for &n in &args.sizes {
        assert!(n >= 100 * STUCK, "sizes must be at least {}", 100 * STUCK);
    }
    args
}

/// Which orders stay live.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// The most recent 1 %.
    Recent,
    /// 1 % too, of which the [`STUCK`] oldest orders.
    Oldest,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Recent => "recent",
            Self::Oldest => "oldest",
        }
    }

    /// Whether order `i` of `n` stays live.
    fn live(self, i: usize, n: usize) -> bool {
        let live = n / 100;
        match self {
            Self::Recent => i >= n - live,
            Self::Oldest => i < STUCK || i >= n - (live - STUCK),
        }
    }
}

/// Makes the orders' states with the real engine, on a made-up clock.
struct Orders {
    engine: Engine,
    purchase: Arc<Purchase>,
    clock: u64,
}

impl Orders {
    fn new(lifecycle: &Arc<Lifecycle>) -> Self {
        Self {
            engine: Engine::new(Arc::clone(lifecycle)),
            purchase: Arc::new(Purchase::example()),
            clock: 1_700_000_000_000_000,
        }
    }

    fn tick(&mut self) -> Timestamp {
        self.clock += 1_000;
        Timestamp::from_micros(self.clock)
    }

    fn place(&mut self) -> OrderState {
        let at = self.tick();
        self.engine.place_with(
            OrderId::random(),
            Arc::clone(&self.purchase),
            EventId::random(),
            at,
        )
    }

    /// `state` after `prepare` and `ship`.
    fn advance(&mut self, state: &OrderState) -> OrderState {
        let mut next = state.clone();
        for kind in [ecommerce::PREPARE, ecommerce::SHIP] {
            let event = Event::new(kind, self.tick());
            let transition = self.engine.apply(&next, &event).expect("a legal event");
            next.commit(&transition, None, None).expect("commit");
        }
        next
    }
}

fn change(state: &OrderState) -> StateChange {
    StateChange::new(0, state.clone(), state.version)
}

/// What writing one history produced.
struct Written {
    records: u64,
    payload_bytes: u64,
    elapsed: Duration,
    live: HashSet<OrderId>,
}

/// Writes the history of `n` orders to partition 0 with a writer that restored it first.
async fn write_history(
    config: &KafkaConfig,
    lifecycle: &Arc<Lifecycle>,
    n: usize,
    case: Case,
) -> Result<Written, Box<dyn std::error::Error>> {
    let writer = KafkaStateLog::new(config, Arc::clone(lifecycle))?;
    let restored = writer.restore(0).await?;
    assert!(restored.is_empty(), "a fresh state topic");
    let mut orders = Orders::new(lifecycle);
    let mut live = HashSet::new();
    let (mut records, mut payload_bytes) = (0u64, 0u64);
    // Orders of the previous step that finished: forgotten one step later.
    let mut finishing: Vec<OrderId> = Vec::new();
    let started = Instant::now();
    let mut progress_at = started + Duration::from_secs(10);
    let mut placed = 0;
    while placed < n {
        let count = STEP.min(n - placed);
        let states: Vec<OrderState> = (0..count).map(|_| orders.place()).collect();
        // Placements the runner appends on their own (the other half's placement and
        // transitions fall into one runner batch: one append, of the shipped state).
        let placements: Vec<StateChange> = states.iter().step_by(2).map(change).collect();
        let shipped: Vec<StateChange> = states.iter().map(|s| change(&orders.advance(s))).collect();
        for changes in [&placements, &shipped] {
            writer.append(changes).await?;
            records += changes.len() as u64;
            payload_bytes += changes
                .iter()
                .map(|c| {
                    serde_json::to_vec(&StateRecord::of_change(lifecycle, c)).map_or(0, |v| v.len())
                })
                .sum::<usize>() as u64;
        }
        writer.forget(0, &finishing).await?;
        records += finishing.len() as u64;
        finishing.clear();
        for (k, s) in states.iter().enumerate() {
            if case.live(placed + k, n) {
                live.insert(s.id);
            } else {
                finishing.push(s.id);
            }
        }
        placed += count;
        if Instant::now() >= progress_at {
            eprintln!(
                "  writing: {placed} of {n} orders, {records} records, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            progress_at = Instant::now() + Duration::from_secs(10);
        }
    }
    writer.forget(0, &finishing).await?;
    records += finishing.len() as u64;
    Ok(Written {
        records,
        payload_bytes,
        elapsed: started.elapsed(),
        live,
    })
}

/// The partition's low and high watermarks.
async fn watermarks(config: &KafkaConfig) -> Result<(i64, i64), Box<dyn std::error::Error>> {
    let (brokers, topic) = (config.brokers().to_owned(), config.state_topic().to_owned());
    Ok(tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "group.id",
                format!("restore-bench-{}", uuid::Uuid::new_v4()),
            )
            .create()?;
        consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10))
    })
    .await??)
}

/// One row of the table.
struct Row {
    history: usize,
    case: Case,
    live: String,
    in_partition: String,
    read: String,
    restore: String,
    write: String,
    /// Mean JSON size of a state record.
    state_bytes: f64,
    note: String,
}

async fn measure(
    brokers: &str,
    mock: Option<&MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    one_record_per_batch: bool,
    properties: &[(String, String)],
    n: usize,
    case: Case,
) -> Result<Row, Box<dyn std::error::Error>> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut config = KafkaConfig::new(brokers)
        .with_commands_topic(format!("restore-bench-orders-{id}"))
        .with_transitions_topic(format!("restore-bench-transitions-{id}"))
        .with_dead_letter_topic(format!("restore-bench-dlq-{id}"))
        .with_state_topic(format!("restore-bench-state-{id}"))
        .with_group(format!("restore-bench-{id}"));
    match mock {
        Some(cluster) => {
            provision_mock_topics(cluster, &config, 1)?;
            // The mock cluster keeps 5 MB of batches per partition.
            config = config.with_property("compression.type", "lz4");
        }
        None => provision_topics(&config, 1).await?,
    }
    if one_record_per_batch {
        config = config.with_property("batch.num.messages", "1");
    }
    for (key, value) in properties {
        config = config.with_property(key, value);
    }
    eprintln!(
        "{n} orders, live {}: writing to {}",
        case.name(),
        config.state_topic()
    );
    let row = run_case(&config, n, case).await;
    if mock.is_none() {
        delete_topics(&config).await;
    }
    row
}

/// Writes one history to `config`'s state topic, then times its restores.
async fn run_case(
    config: &KafkaConfig,
    n: usize,
    case: Case,
) -> Result<Row, Box<dyn std::error::Error>> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let written = write_history(config, &lifecycle, n, case).await?;
    let (low, high) = watermarks(config).await?;
    let expected = n / 100;
    assert_eq!(written.live.len(), expected);
    let write = format!(
        "{:.1} s, {:.0}/s",
        written.elapsed.as_secs_f64(),
        written.records as f64 / written.elapsed.as_secs_f64(),
    );
    let state_bytes =
        written.payload_bytes as f64 / (written.records - (n - expected) as u64) as f64;
    let in_partition = (high - low).to_string();
    let note = if low > 0 {
        format!("{low} oldest of {} records deleted", written.records)
    } else if high as u64 != written.records {
        format!("{} records written, high watermark {high}", written.records)
    } else {
        String::new()
    };
    let mut row = Row {
        history: n,
        case,
        live: expected.to_string(),
        in_partition,
        read: "-".into(),
        restore: "-".into(),
        write,
        state_bytes,
        note,
    };
    let mut times = Vec::with_capacity(RESTORES);
    let mut read = 0;
    for attempt in 0..RESTORES {
        let reader = KafkaStateLog::new(config, Arc::clone(&lifecycle))?
            .with_restore_timeout(Duration::from_secs(900));
        let started = Instant::now();
        let restored = match reader.restore(0).await {
            Ok(restored) => restored,
            Err(e) => {
                eprintln!("  restore {attempt} failed: {e}");
                row.restore = "failed".into();
                row.note = e.to_string();
                return Ok(row);
            }
        };
        times.push(started.elapsed());
        read = reader.records_read_by_last_restore();
        let found: HashSet<OrderId> = restored.iter().map(|c| c.state.id).collect();
        if found != written.live || restored.len() != expected {
            let missing = written.live.difference(&found).count();
            let extra = found.difference(&written.live).count();
            eprintln!(
                "  restore {attempt}: {} orders, {missing} live ones missing, {extra} unexpected",
                restored.len()
            );
            row.live = format!("{} of {expected}", restored.len());
            row.read = read.to_string();
            row.restore = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3);
            row.note = if low > 0 {
                format!("WRONG: {missing} missing, their records deleted by the broker")
            } else {
                format!("WRONG: {missing} missing, {extra} unexpected")
            };
            return Ok(row);
        }
        assert!(restored.iter().all(|c| c.state.version == 3));
        eprintln!(
            "  restore {attempt}: {} live orders, {read} records read, {:.1} ms",
            restored.len(),
            times[attempt].as_secs_f64() * 1e3
        );
    }
    times.sort();
    row.read = read.to_string();
    row.restore = format!("{:.1}", times[RESTORES / 2].as_secs_f64() * 1e3);
    Ok(row)
}

/// Frees the broker's memory (tansu keeps everything in memory); failures are only printed.
async fn delete_topics(config: &KafkaConfig) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
        .set("bootstrap.servers", config.brokers())
        .create()
    {
        Ok(admin) => admin,
        Err(e) => return eprintln!("  admin client: {e}"),
    };
    let topics = [
        config.commands_topic(),
        config.transitions_topic(),
        config.dead_letter_topic(),
        config.state_topic(),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.delete_topics(&topics, &options).await {
        Ok(results) => {
            for result in results {
                if let Err((topic, code)) = result {
                    eprintln!("  could not delete {topic}: {code}");
                }
            }
        }
        Err(e) => eprintln!("  could not delete the topics: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    let one_record_per_batch = args.one_record_per_batch.unwrap_or(mock.is_none());
    println!(
        "broker: {} | one partition | {STEP} orders per step, 2 transitions each, 1 % live | {}",
        if mock.is_some() {
            "librdkafka mock cluster (lz4: it keeps 5 MB per partition)"
        } else {
            brokers.as_str()
        },
        if one_record_per_batch {
            "one record per batch (batch.num.messages=1)"
        } else {
            "batched records"
        }
    );
    let mut rows = Vec::new();
    for &n in &args.sizes {
        for case in [Case::Recent, Case::Oldest] {
            rows.push(
                measure(
                    &brokers,
                    mock.as_ref(),
                    one_record_per_batch,
                    &args.properties,
                    n,
                    case,
                )
                .await?,
            );
        }
    }
    println!(
        "\n{:>9} | {:<6} | {:>12} | {:>12} | {:>12} | {:>10} | {:>7} | {:<22} | note",
        "history",
        "live",
        "live orders",
        "records in p",
        "records read",
        "restore ms",
        "B/state",
        "write (records/s)"
    );
    for row in &rows {
        println!(
            "{:>9} | {:<6} | {:>12} | {:>12} | {:>12} | {:>10} | {:>7.0} | {:<22} | {}",
            row.history,
            row.case.name(),
            row.live,
            row.in_partition,
            row.read,
            row.restore,
            row.state_bytes,
            row.write,
            row.note
        );
    }
    Ok(())
}
