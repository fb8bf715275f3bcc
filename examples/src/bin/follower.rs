//! A follower process: reads the transitions topic and indexes every transition into
//! Elasticsearch (`--es-url`) and mails the customer about it (`--smtp-url`), each
//! destination on its own consumer group (`{group}-elasticsearch`, `{group}-mail`) with its
//! own committed offsets. Run as many as the topic has partitions to share the work; one
//! that crashes resumes from its committed offsets (at most one batch is delivered again).

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::sync::Arc;

use clap::Parser;
use order_fsm::Lifecycle;
use order_fsm_examples::cli::{self, KafkaArgs};
use order_fsm_examples::followers::DestinationArgs;

#[derive(Parser, Debug)]
#[command(about = "Follow the transitions topic into Elasticsearch and e-mail")]
struct Args {
    #[command(flatten)]
    metrics: order_fsm_examples::telemetry::MetricsArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    destinations: DestinationArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    cli::init_tracing();
    let args = Args::parse();
    args.metrics.install()?;
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let kafka = args.kafka.provisioned_config().await?;
    let (followers, _) = args.destinations.start(&kafka, &lifecycle).await?;
    if followers.is_empty() {
        return Err("nothing to follow into: set --es-url and/or --smtp-url".into());
    }
    eprintln!("follower: following {}", kafka.transitions_topic());
    let failure = tokio::select! {
        _ = order_fsm_examples::cli::shutdown_signal() => None,
        error = followers.failed() => Some(error),
    };
    let reports = followers.stop().await;
    if let Some(error) = failure {
        return Err(error.into());
    }
    for (name, report) in reports? {
        eprintln!(
            "follower: {name}: {} delivered, {} retries, {} dead-lettered",
            report.delivered, report.retries, report.dead_lettered
        );
    }
    Ok(())
}
