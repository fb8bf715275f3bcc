//! A state-machine worker process: Kafka commands → engine → state and transitions topics.
//! Run up to as many as the commands topic has partitions; each restores the orders of the
//! partitions it is assigned from the state topic, so workers may join, leave or crash at
//! any time.
//!
//! With `--store postgres://...` the orders live in PostgreSQL instead of the state topic:
//! each batch's new states are one statement there, and a partition's new owner restores
//! its live orders with one query; the intake reads the same rows.
//!
//! With `--es-url` / `--smtp-url` it also runs the Elasticsearch and mail followers of the
//! transitions topic (as the `follower` program does): each on its own consumer group, out
//! of the workers' acknowledgement path, so a slow or down destination never holds up orders.

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use order_fsm::{Lifecycle, Runner, StateLog};
use order_fsm_examples::cli::{self, DwellArgs, KafkaArgs, StoreArgs};
use order_fsm_examples::followers::DestinationArgs;
use order_fsm_kafka::{KafkaDeadLetterSink, KafkaSource, KafkaStateLog, KafkaTransitionSink};

#[derive(Parser, Debug)]
#[command(about = "Run order state machines from Kafka, publishing every transition")]
struct Args {
    #[command(flatten)]
    metrics: order_fsm_examples::telemetry::MetricsArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    dwell: DwellArgs,
    #[command(flatten)]
    destinations: DestinationArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Runner workers (parallel orders) in this process.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Most commands a runner worker plans, makes durable and publishes in one round trip.
    /// Batches only grow this large under a backlog; a broker farther away than loopback
    /// gains from larger ones.
    #[arg(long, env = "ORDER_FSM_MAX_BATCH", default_value_t = 256)]
    max_batch: usize,
    /// Seconds a finished order stays in this worker's memory (recognising redelivered
    /// commands) before it is dropped from memory and from the state topic.
    #[arg(long, env = "ORDER_FSM_RETENTION_SECS", default_value_t = 60)]
    retention_secs: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    cli::init_tracing();
    let args = Args::parse();
    args.metrics.install()?;
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let kafka = args.kafka.provisioned_config().await?;
    let wait = Duration::from_secs(args.kafka.kafka_wait_secs);
    let state_log: Arc<dyn StateLog> = match args.store.postgres(&lifecycle, wait).await? {
        Some(postgres) => {
            eprintln!("worker: orders in PostgreSQL at {}", postgres.target());
            // Partitions are numbered per topic: scope the restores to ours.
            Arc::new(postgres.with_source(kafka.commands_topic()))
        }
        None => Arc::new(KafkaStateLog::new(&kafka, Arc::clone(&lifecycle))?),
    };
    let (followers, elastic) = args.destinations.start(&kafka, &lifecycle).await?;
    let mut runner = Runner::builder(Arc::clone(&lifecycle))
        .with_state_log(state_log)
        .with_retention(Some(Duration::from_secs(args.retention_secs)))
        // The acknowledgement path: the state log and the transitions topic, nothing else.
        .with_sink(Arc::new(KafkaTransitionSink::new(&kafka)?))
        .with_dead_letters(Arc::new(KafkaDeadLetterSink::new(&kafka)?))
        .with_workers(args.workers)
        .with_max_batch(args.max_batch)
        .with_auto_advance(args.dwell.dwell());
    if let Some(elastic) = elastic {
        runner = runner.with_metrics_sink(Arc::new(elastic), Duration::from_secs(1));
    }
    let runner = runner.build()?;
    eprintln!(
        "worker: consuming {} as group {}",
        kafka.commands_topic(),
        kafka.group()
    );
    let mut failure = None;
    let report = runner
        .run(KafkaSource::new(&kafka)?, async {
            tokio::select! {
                _ = order_fsm_examples::cli::shutdown_signal() => {}
                error = followers.failed() => failure = Some(error),
            }
        })
        .await?;
    let m = &report.metrics;
    eprintln!(
        "worker: stopped ({:?}); {} commands acknowledged, {} transitions, {} completed, {} dead letters",
        report.stopped_by,
        report.acked,
        m.transitions,
        m.finished_in("completed"),
        m.dead_lettered
    );
    let reports = followers.stop().await;
    if let Some(error) = failure {
        return Err(error.into());
    }
    for (name, report) in reports? {
        eprintln!(
            "worker: follower {name}: {} delivered, {} retries",
            report.delivered, report.retries
        );
    }
    Ok(())
}
