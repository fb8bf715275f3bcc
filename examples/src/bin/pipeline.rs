//! The whole order system in one process, on embedded defaults.
//!
//! Starts librdkafka's mock cluster, the gRPC intake on a free loopback port and the
//! state-machine workers; generates a seeded data set; places every order over gRPC; waits
//! until every order is finished; mails each state change into an outbox folder; prints a
//! summary and writes `summary.json` and charts.

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use order_fsm::{Dwell, Purchase};
use order_fsm_examples::embedded::{self, EmbeddedConfig};
use order_fsm_examples::load::Intake;
use order_fsm_examples::{cli, dataset, report};
use order_fsm_kafka::WireFormat;
use order_fsm_mail::Language;

#[derive(Parser, Debug)]
#[command(about = "Run the order system on embedded defaults and print what happened")]
struct Args {
    #[command(flatten)]
    metrics: order_fsm_examples::telemetry::MetricsArgs,
    /// Orders to place.
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// State-machine workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Time each order is held in each state, in milliseconds.
    #[arg(long, default_value_t = 0)]
    dwell_ms: u64,
    /// Intake the orders go through.
    #[arg(long, value_enum, default_value_t = Intake::Grpc)]
    intake: Intake,
    #[command(flatten)]
    sending: cli::SendingArgs,
    /// Seed of the generated data set.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Language of the notification mails: `en` or `es`.
    #[arg(long, default_value_t = Language::En)]
    language: Language,
    /// Sender address of the notification mails.
    #[arg(
        long,
        env = "ORDER_FSM_MAIL_FROM",
        default_value = "orders@shop.example"
    )]
    mail_from: String,
    /// Send no mail (measures the pipeline without the outbox's file writes).
    #[arg(long)]
    no_mail: bool,
    /// Seconds a finished order stays in memory (answering queries and recognising
    /// redelivered commands) before only the transitions topic has it.
    #[arg(long, default_value_t = 60)]
    retention_secs: u64,
    /// Most commands waiting for the workers before the intake refuses placements with
    /// `RESOURCE_EXHAUSTED` / 429 (the load generator waits and sends them again); default
    /// 20,000 per partition, inside what the mock cluster retains.
    #[arg(long)]
    backlog_limit: Option<u64>,
    /// Soak: place orders for this long (`90s`, `30m`, `2h`) at `--rate`, cycling through
    /// the `--orders` purchases, with a line a minute (throughput, latency, backlog, read
    /// model lag, RSS); the summary follows as usual.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Run on this Kafka cluster (`host:port`) instead of the embedded mock cluster, on
    /// topics of the run's own.
    #[arg(long)]
    brokers: Option<String>,
    /// Serve the live dashboard on this address while the run lasts
    /// (`http://ADDR/dashboard`; `127.0.0.1:0` picks a port and prints it).
    #[arg(long)]
    dashboard_addr: Option<std::net::SocketAddr>,
    /// The format of commands and transition records on the topics: `json` or `proto`.
    #[arg(long, env = "ORDER_FSM_KAFKA_WIRE_FORMAT", default_value = "json")]
    wire_format: WireFormat,
    /// Publish transition records in packs, one message per partition and runner batch.
    #[arg(long)]
    pack_transitions: bool,
    /// Where the summary, charts and outbox go.
    #[arg(long, default_value = "target/pipeline")]
    out: PathBuf,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and s, m or h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        _ => return Err(format!("`{text}`: the unit is s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    cli::init_tracing();
    let args = Args::parse();
    args.metrics.install()?;
    let outbox = args.out.join("outbox");
    if outbox.exists() {
        std::fs::remove_dir_all(&outbox)?;
    }
    let purchases: Vec<Purchase> = dataset::generate(args.orders, args.seed)
        .into_iter()
        .map(Purchase::from)
        .collect();
    println!(
        "placing {} orders over {:?} ({} per request) with {} workers on {} partitions ({}, {}{})...",
        args.orders,
        args.intake,
        args.sending.batch,
        args.workers,
        args.partitions,
        args.brokers
            .as_deref()
            .map_or("mock Kafka cluster".to_owned(), |b| format!("Kafka at {b}")),
        args.wire_format,
        if args.pack_transitions { ", packed" } else { "" }
    );
    let run = embedded::run(EmbeddedConfig {
        purchases,
        workers: args.workers,
        partitions: args.partitions,
        dwell: Dwell::Fixed(Duration::from_millis(args.dwell_ms)),
        intake: args.intake,
        sending: args.sending.sending(),
        outbox: (!args.no_mail).then(|| outbox.clone()),
        language: args.language,
        mail_from: args.mail_from,
        timeout: Duration::from_secs(300),
        retention: Some(Duration::from_secs(args.retention_secs)),
        brokers: args.brokers.clone(),
        duration: args.duration,
        backlog_limit: args
            .backlog_limit
            .unwrap_or_else(|| embedded::backlog_limit(args.partitions)),
        dashboard_addr: args.dashboard_addr,
        wire_format: args.wire_format,
        packed_transitions: args.pack_transitions,
    })
    .await?;

    run.summary.print();
    let l = &run.load;
    println!(
        "intake             {:>10.0} orders/s, p50 {} p99 {}, {} refused, {} requests throttled",
        l.rate(),
        report::fmt_us(l.latency.p50_us),
        report::fmt_us(l.latency.p99_us),
        l.errors,
        l.throttled
    );
    println!("dead letters       {:>10}", run.dead_letters);
    println!(
        "followers caught up {:>9.2} s after the last order finished (lag measured each second)",
        run.followers_behind_secs
    );
    if !args.no_mail {
        println!(
            "mails in outbox    {:>10}",
            std::fs::read_dir(&outbox)?.count()
        );
    }
    report::write_all(&args.out, &run.summary, &run.windows).map_err(|e| e.to_string())?;
    println!(
        "summary.json, throughput.svg and latency.svg in {}",
        args.out.display()
    );
    if run.summary.lost > 0 {
        return Err(format!("{} orders lost", run.summary.lost).into());
    }
    Ok(())
}
