//! A worker process: rebuilds its store from the transitions topic, then runs the ecommerce
//! lifecycle (automatic advance, no dwell) on the commands topic until SIGINT/SIGTERM.
//!
//! Configuration comes from the environment (see `KafkaConfig::from_env`); each
//! `--property key=value` argument sets a librdkafka property. Progress goes to stderr.

use std::sync::Arc;
use std::time::Duration;

use order_fsm::{Dwell, Lifecycle, Runner};
use order_fsm_kafka::{
    recover_store, KafkaConfig, KafkaDeadLetterSink, KafkaSource, KafkaTransitionSink,
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
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--property" => {
                let pair = args.next().ok_or("--property needs key=value")?;
                let (key, value) = pair.split_once('=').ok_or("--property needs key=value")?;
                config = config.with_property(key, value);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let recovered =
        recover_store(&config, Arc::clone(&lifecycle), Duration::from_secs(120)).await?;
    eprintln!(
        "recovered orders={} records={} duplicates={} incomplete={} rejected={}",
        recovered.store.len(),
        recovered.records,
        recovered.duplicates,
        recovered.incomplete,
        recovered.rejected
    );
    let runner = Runner::builder(lifecycle)
        .store(Arc::new(recovered.store))
        .sink(Arc::new(KafkaTransitionSink::new(&config)?))
        .dead_letters(Arc::new(KafkaDeadLetterSink::new(&config)?))
        .auto_advance(Dwell::None)
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
