//! A state-machine worker process: Kafka commands → engine → state and transitions topics,
//! Elasticsearch and e-mail. Run up to as many as the commands topic has partitions; each
//! restores the orders of the partitions it is assigned from the state topic, so workers
//! may join, leave or crash at any time.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use order_fsm::{Lifecycle, Runner, TransitionSink};
use order_fsm_elastic::ElasticBuilder;
use order_fsm_examples::cli::{self, DwellArgs, KafkaArgs};
use order_fsm_examples::notify::{EmailNotifier, Language};
use order_fsm_kafka::{KafkaDeadLetterSink, KafkaSource, KafkaStateLog, KafkaTransitionSink};

#[derive(Parser, Debug)]
#[command(about = "Run order state machines from Kafka, publishing every transition")]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    dwell: DwellArgs,
    /// Runner workers (parallel orders) in this process.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Elasticsearch URL; transitions, orders and metrics are indexed there when set.
    #[arg(long, env = "ORDER_FSM_ES_URL")]
    es_url: Option<String>,
    /// Prefix of the Elasticsearch index names.
    #[arg(long, env = "ORDER_FSM_ES_INDEX_PREFIX", default_value = "order-fsm-")]
    es_index_prefix: String,
    /// SMTP server (`smtp://host:port`); customers are mailed at each state change when set.
    #[arg(long, env = "ORDER_FSM_SMTP_URL")]
    smtp_url: Option<String>,
    /// Sender address of the mails.
    #[arg(
        long,
        env = "ORDER_FSM_MAIL_FROM",
        default_value = "orders@shop.example"
    )]
    mail_from: String,
    /// Language of the mails.
    #[arg(long, value_enum, default_value_t = Language::En)]
    language: Language,
    /// Seconds a finished order stays in this worker's memory (recognising redelivered
    /// commands) before it is dropped from memory and from the state topic.
    #[arg(long, env = "ORDER_FSM_RETENTION_SECS", default_value_t = 60)]
    retention_secs: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    cli::init_tracing();
    let args = Args::parse();
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let kafka = args.kafka.provisioned_config().await?;
    let mut runner = Runner::builder(Arc::clone(&lifecycle))
        .state_log(Arc::new(KafkaStateLog::new(
            &kafka,
            Arc::clone(&lifecycle),
        )?))
        .retention(Some(Duration::from_secs(args.retention_secs)))
        .sink(Arc::new(KafkaTransitionSink::new(&kafka)?))
        .dead_letters(Arc::new(KafkaDeadLetterSink::new(&kafka)?))
        .workers(args.workers)
        .auto_advance(args.dwell.dwell());
    if let Some(url) = &args.es_url {
        let elastic = ElasticBuilder::new(url.clone())
            .with_index_prefix(args.es_index_prefix.clone())
            .build()
            .await?;
        runner = runner
            .sink(Arc::new(elastic.clone()) as Arc<dyn TransitionSink>)
            .metrics_sink(Arc::new(elastic), Duration::from_secs(1));
    }
    if let Some(url) = &args.smtp_url {
        let mail =
            EmailNotifier::smtp(url, &args.mail_from, args.language, Arc::clone(&lifecycle))?;
        runner = runner.sink(Arc::new(mail));
    }
    let runner = runner.build()?;
    eprintln!(
        "worker: consuming {} as group {}",
        kafka.commands_topic(),
        kafka.group()
    );
    let report = runner
        .run(KafkaSource::new(&kafka)?, async {
            let _ = tokio::signal::ctrl_c().await;
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
    Ok(())
}
