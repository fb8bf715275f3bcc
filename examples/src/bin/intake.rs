//! The intake process: the gRPC order service and an HTTP gateway (`POST /orders`,
//! `POST /orders/batch`, `GET /orders/{id}`, the live `GET /dashboard`), placing orders on
//! Kafka and answering reads from a read model that follows the transitions topic, or, with
//! `--store postgres://...`, from the PostgreSQL rows the workers write (watch streams still
//! follow the topic).

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use order_fsm::access::KeyFile;
use order_fsm::{Lifecycle, MemoryStore, OrderStore};
use order_fsm_examples::cli::{self, KafkaArgs, StoreArgs};
use order_fsm_examples::dashboard::Dashboard;
use order_fsm_examples::followers::{Followers, READ_MODEL_FINISHED};
use order_fsm_grpc::{OrderServiceBuilder, ServerConfig, WatchHub};
use order_fsm_http::RouterBuilder;
use order_fsm_kafka::KafkaCommandSink;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Serve the order intake over gRPC and HTTP")]
struct Args {
    #[command(flatten)]
    metrics: order_fsm_examples::telemetry::MetricsArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// gRPC address.
    #[arg(long, env = "ORDER_FSM_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Most commands waiting for the workers' group (`--group`) before placements are
    /// refused with `RESOURCE_EXHAUSTED` / HTTP 429 and a retry hint; unbounded when unset.
    #[arg(long, env = "ORDER_FSM_BACKLOG_LIMIT")]
    backlog_limit: Option<u64>,
    /// HTTP address.
    #[arg(long, env = "ORDER_FSM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    #[command(flatten)]
    edge: cli::EdgeArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Require an API key on every order call, gRPC and HTTP: a file of
    /// `<name> <role> sha256:<hex>` lines (roles shop, operator, reader; the hash is
    /// `printf %s KEY | sha256sum`), re-read when it changes. Without it anyone who reaches
    /// the ports may do everything.
    #[arg(long, env = "ORDER_FSM_API_KEYS_FILE", value_name = "FILE")]
    api_keys: Option<std::path::PathBuf>,
    /// Most order calls a second per client (its API key, else its IP address), over each
    /// API, in bursts of as many; more are refused with `RESOURCE_EXHAUSTED` / 429 and a
    /// retry hint. No limit when unset.
    #[arg(long, env = "ORDER_FSM_RATE_LIMIT", value_name = "PER_SECOND")]
    rate_limit: Option<std::num::NonZeroU32>,
    /// Do not serve gRPC server reflection (on by default, for grpcurl-style tools).
    #[arg(long, env = "ORDER_FSM_GRPC_NO_REFLECTION")]
    no_reflection: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    cli::init_tracing();
    let args = Args::parse();
    args.metrics.install()?;
    // TLS files are read before anything starts, so a bad one stops the intake at once.
    let edge = args.edge.http()?;
    let scheme = if edge.is_tls() { "https" } else { "http" };
    let access = match &args.api_keys {
        Some(path) => Some(Arc::new(KeyFile::open(path)?)),
        None => {
            tracing::warn!("no --api-keys: every caller may place, change and read every order");
            None
        }
    };
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let kafka = args.kafka.provisioned_config().await?;
    // The backlog is always measured (it is the workers' consumer lag the metrics show);
    // placements are refused over it only with --backlog-limit.
    let commands = KafkaCommandSink::new(&kafka)?
        .with_backlog_limit(&kafka, args.backlog_limit.unwrap_or(u64::MAX))?;
    let commands = Arc::new(commands);
    let read_model = Arc::new(MemoryStore::new());
    let wait = std::time::Duration::from_secs(args.kafka.kafka_wait_secs);
    let store: Arc<dyn OrderStore> = match args.store.postgres(&lifecycle, wait).await? {
        Some(postgres) => {
            eprintln!("intake: reads from PostgreSQL at {}", postgres.target());
            Arc::new(postgres)
        }
        None => read_model.clone(),
    };
    let hub = WatchHub::default();
    let dashboard = Arc::new(Dashboard::new(Arc::clone(&lifecycle)));

    let stop = CancellationToken::new();
    // The read model is rebuilt from the whole topic at each start (no committed offsets).
    let mut followers = Followers::default();
    followers.spawn_read_model(
        &kafka,
        &lifecycle,
        read_model,
        hub.clone(),
        READ_MODEL_FINISHED,
        Some(Arc::clone(&dashboard)),
    )?;
    let grpc = OrderServiceBuilder::new(Arc::clone(&lifecycle))
        .with_commands(commands.clone())
        .with_store(store.clone())
        .with_watch_hub(hub)
        .with_config(
            args.edge
                .grpc(
                    ServerConfig::default()
                        .with_addr(args.grpc_addr)
                        .with_reflection(!args.no_reflection),
                )
                .map(|config| match &access {
                    Some(keys) => config.with_access(Arc::clone(keys)),
                    None => config,
                })
                .map(|config| match args.rate_limit {
                    Some(per_second) => config.with_rate_limit(per_second),
                    None => config,
                })?,
        );
    let grpc = tokio::spawn(grpc.serve(stop.clone().cancelled_owned()));
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    // The dashboard behind the same access control (`list`) and rate limit as the orders.
    let mut app = RouterBuilder::new(lifecycle, commands, store).with_routes(dashboard.router());
    if let Some(per_second) = args.rate_limit {
        app = app.with_rate_limit(per_second);
    }
    if let Some(keys) = &access {
        app = app.with_access(Arc::clone(keys));
    }
    let app = app.build();
    let http_stop = stop.clone().cancelled_owned();
    let http = tokio::spawn(async move { edge.serve(listener, app, http_stop).await });
    eprintln!(
        "intake: gRPC on {}, HTTP on {} (live dashboard: {scheme}://{}/dashboard)",
        args.grpc_addr, args.http_addr, args.http_addr
    );

    let failure = tokio::select! {
        _ = order_fsm_examples::cli::shutdown_signal() => None,
        error = followers.failed() => Some(error),
    };
    stop.cancel();
    grpc.await??;
    http.await??;
    followers.stop().await?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    Ok(())
}
