//! A worker process: runs the ecommerce lifecycle (automatic advance) on the commands topic
//! as a member of the consumer group until SIGINT/SIGTERM. The orders of each partition it
//! is assigned are restored from the state topic first, so workers can join, leave and crash.
//!
//! Configuration comes from the environment (see `KafkaConfig::from_env`); arguments:
//! `--property key=value` sets a librdkafka property, `--dwell-ms N` holds every state N ms
//! before its automatic advance (default 0), `--dead-letter-redact` removes personal data
//! from dead letters (as `ORDER_FSM_KAFKA_DLQ_REDACT=true`). It creates no topics, so the
//! dead-letter retention (`ORDER_FSM_KAFKA_DLQ_RETENTION_HOURS`) is for whatever provisions
//! them. Progress goes to stderr.

use std::sync::Arc;
use std::time::Duration;

use order_fsm::{Dwell, Lifecycle, Runner};
use order_fsm_kafka::{
    KafkaConfig, KafkaDeadLetterSink, KafkaSource, KafkaStateLog, KafkaTransitionSink,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = KafkaConfig::from_env()?;
    let mut dwell = Dwell::None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--property" => {
                let pair = args.next().ok_or("--property needs key=value")?;
                let (key, value) = pair.split_once('=').ok_or("--property needs key=value")?;
                config = config.with_property(key, value);
            }
            "--dead-letter-redact" => config = config.with_dead_letter_redaction(true),
            "--dwell-ms" => {
                let ms: u64 = args.next().ok_or("--dwell-ms needs a number")?.parse()?;
                dwell = Dwell::Fixed(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let runner = Runner::builder(Arc::clone(&lifecycle))
        .with_state_log(Arc::new(KafkaStateLog::new(&config, lifecycle)?))
        .with_sink(Arc::new(KafkaTransitionSink::new(&config)?))
        .with_dead_letters(Arc::new(KafkaDeadLetterSink::new(&config)?))
        .with_auto_advance(dwell)
        .build()?;
    let source = KafkaSource::new(&config)?;
    eprintln!("running");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let report = runner.run(source, shutdown).await?;
    eprintln!(
        "stopped received={} acked={} unacked={}",
        report.received, report.acked, report.unacked
    );
    Ok(())
}
