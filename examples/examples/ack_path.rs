//! What the acknowledgement path costs: the same burst of orders through a runner on a real
//! broker, first with the transitions topic only (the raw anchor), then with Elasticsearch
//! and e-mail
//! - `in-ack-path`: as sinks of the runner (how it was before issue 19: every batch waits
//!   for the index and the mails), and
//! - `followers`: the runner publishes to the transitions topic only; Elasticsearch and mail
//!   are followers of the topic, each at its own pace,
//!
//! and optionally each again with the Elasticsearch server paused (SIGSTOP) for the first
//! `--pause-secs` of the run (`--es-pid`). Prints orders/s completed by the workers and
//! when each follower had delivered every transition.
//!
//! ```text
//! eval "$(bash scripts/kafka.sh start)"; eval "$(bash scripts/elastic.sh start)"; eval "$(bash scripts/smtp.sh start)"
//! cargo run --release -p order-fsm-examples --example ack_path -- \
//!     --es-pid "$(cat target/services/elastic.pid)" --pause-secs 10
//! ```

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use order_fsm::{Command, CommandSink, Dwell, Lifecycle, Purchase, Runner, TransitionSink};
use order_fsm_elastic::ElasticBuilder;
use order_fsm_examples::followers::{Followers, ELASTIC_BATCH, MAIL_BATCH};
use order_fsm_kafka::{
    provision_topics, KafkaCommandSink, KafkaConfig, KafkaFollower, KafkaSource, KafkaStateLog,
    KafkaTransitionSink,
};
use order_fsm_mail::{MailBuilder, MailConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "ORDER_FSM_KAFKA_BROKERS")]
    brokers: String,
    #[arg(long, env = "ORDER_FSM_ES_URL")]
    es_url: String,
    #[arg(long, env = "ORDER_FSM_SMTP_URL")]
    smtp_url: String,
    /// Orders of each run (placed as one burst before the runner starts).
    #[arg(long, default_value_t = 5_000)]
    orders: usize,
    /// Runner workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// PID of the Elasticsearch server, to pause it in the extra runs.
    #[arg(long)]
    es_pid: Option<u32>,
    /// How long Elasticsearch is paused from the start of those runs.
    #[arg(long, default_value_t = 10)]
    pause_secs: u64,
    /// Skip the runs with Elasticsearch and mail in the acknowledgement path.
    #[arg(long)]
    skip_in_ack_path: bool,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Wiring {
    /// The raw anchor: the transitions topic only, no Elasticsearch, no mail.
    LogOnly,
    InAckPath,
    Followers,
}

struct Outcome {
    workers_secs: f64,
    caught_up_secs: Option<f64>,
}

fn signal(pid: u32, signal: &str) -> Result<(), BoxError> {
    let status = Process::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("kill -{signal} {pid} failed").into());
    }
    Ok(())
}

async fn run(args: &Args, wiring: Wiring, pause: bool) -> Result<Outcome, BoxError> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let id = order_fsm::EventId::random().to_string();
    let prefix = format!("ack-path-{}-", &id[..8]);
    let kafka = order_fsm_examples::cli::low_latency(
        KafkaConfig::new(args.brokers.clone())
            .with_group(format!("{prefix}workers"))
            .with_commands_topic(format!("{prefix}orders"))
            .with_transitions_topic(format!("{prefix}transitions"))
            .with_dead_letter_topic(format!("{prefix}dlq"))
            .with_state_topic(format!("{prefix}state")),
    );
    provision_topics(&kafka, 4).await?;
    let elastic = ElasticBuilder::new(args.es_url.clone())
        .with_index_prefix(prefix.clone())
        .build()
        .await?;
    let mail = MailBuilder::new(
        MailConfig::smtp(args.smtp_url.clone(), "orders@shop.example").with_env_credentials()?,
    )
    .with_lifecycle(Arc::clone(&lifecycle))
    .build()?;
    let mut runner = Runner::builder(Arc::clone(&lifecycle))
        .with_state_log(Arc::new(KafkaStateLog::new(
            &kafka,
            Arc::clone(&lifecycle),
        )?))
        .with_sink(Arc::new(KafkaTransitionSink::new(&kafka)?))
        .with_workers(args.workers)
        .with_auto_advance(Dwell::None);
    let mut followers = Followers::default();
    match wiring {
        Wiring::LogOnly => {}
        Wiring::InAckPath => {
            runner = runner
                .with_sink(Arc::new(elastic) as Arc<dyn TransitionSink>)
                .with_sink(Arc::new(mail));
        }
        Wiring::Followers => {
            let es = KafkaFollower::builder(&kafka, "elasticsearch")
                .with_batch_size(ELASTIC_BATCH)
                .build()?;
            followers.spawn(es, Arc::new(elastic));
            let smtp = KafkaFollower::builder(&kafka, "mail")
                .with_batch_size(MAIL_BATCH)
                .build()?;
            followers.spawn(smtp, Arc::new(mail));
        }
    }
    let runner = Arc::new(runner.build()?);
    let commands: Vec<Command> = (0..args.orders)
        .map(|_| Command::place(Purchase::example()))
        .collect();
    KafkaCommandSink::new(&kafka)?.submit(&commands).await?;

    let stop = tokio_util::sync::CancellationToken::new();
    if let (true, Some(pid)) = (pause, args.es_pid) {
        signal(pid, "STOP")?;
        let pause = Duration::from_secs(args.pause_secs);
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let _ = signal(pid, "CONT");
        });
    }
    let started = Instant::now();
    let running = tokio::spawn({
        let (runner, stop) = (Arc::clone(&runner), stop.clone());
        async move {
            runner
                .run(KafkaSource::new(&kafka)?, stop.cancelled_owned())
                .await
        }
    });
    let deadline = started + Duration::from_secs(args.timeout_secs);
    while runner.metrics().orders_finished_total() < args.orders as u64 {
        if Instant::now() > deadline {
            return Err(format!("{wiring:?}: timed out").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let workers_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    running.await??;
    let caught_up_secs = if followers.is_empty() {
        None
    } else {
        let left = deadline.saturating_duration_since(Instant::now());
        followers.caught_up(5 * args.orders as u64, left).await?;
        Some(started.elapsed().as_secs_f64())
    };
    followers.stop().await?;
    Ok(Outcome {
        workers_secs,
        caught_up_secs,
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    order_fsm_examples::cli::init_tracing();
    let args = Args::parse();
    let pauses: &[bool] = if args.es_pid.is_some() {
        &[false, true]
    } else {
        &[false]
    };
    println!(
        "{} orders (5 records each), {} workers, tansu + osmem-server + aiosmtpd",
        args.orders, args.workers
    );
    println!(
        "{:<12} {:<18} {:>14} {:>12} {:>22}",
        "wiring", "elasticsearch", "workers done", "orders/s", "followers caught up"
    );
    for &pause in pauses {
        let wirings: &[Wiring] = if pause {
            &[Wiring::InAckPath, Wiring::Followers]
        } else {
            &[Wiring::LogOnly, Wiring::InAckPath, Wiring::Followers]
        };
        for &wiring in wirings {
            if args.skip_in_ack_path && wiring == Wiring::InAckPath {
                continue;
            }
            let outcome = run(&args, wiring, pause).await?;
            let es = if pause {
                format!("paused {} s", args.pause_secs)
            } else {
                "up".to_owned()
            };
            println!(
                "{:<12} {:<18} {:>12.2} s {:>12.0} {:>22}",
                match wiring {
                    Wiring::LogOnly => "log only",
                    Wiring::InAckPath => "in ack path",
                    Wiring::Followers => "followers",
                },
                es,
                outcome.workers_secs,
                args.orders as f64 / outcome.workers_secs,
                outcome
                    .caught_up_secs
                    .map_or("-".to_owned(), |s| format!("{s:.2} s")),
            );
        }
    }
    Ok(())
}
