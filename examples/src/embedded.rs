//! The whole system in one process on embedded defaults: librdkafka's mock cluster, the gRPC
//! (or HTTP) intake on a free loopback port, a runner with N workers whose orders are kept
//! in the state topic (cached in memory while live) and whose transitions go to the
//! transitions topic, and two followers of that topic: the intake's read model and e-mails
//! into an outbox folder. Metrics in memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::{Dwell, Lifecycle, MemorySink, MemoryStore, MetricsRecord, Purchase, Runner};
use order_fsm_grpc::{OrderServiceBuilder, ServerConfig, WatchHub};
use order_fsm_kafka::{
    provision_mock_topics, KafkaCommandSink, KafkaConfig, KafkaDeadLetterSink, KafkaFollower,
    KafkaSource, KafkaStateLog, KafkaTransitionSink, WireFormat,
};
use order_fsm_mail::{Language, MailBuilder, MailConfig};
use rdkafka::mocking::MockCluster;
use tokio::net::TcpListener;

use crate::dashboard::Dashboard;
use tokio_util::sync::CancellationToken;

use crate::followers::{Followers, MAIL_BATCH, READ_MODEL_FINISHED};
use crate::load::{self, Intake, LoadResult, Sending};
use crate::report::Summary;
use crate::soak::{self, MinuteReport};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How to run the embedded system.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The purchases to place, one order each.
    pub purchases: Vec<Purchase>,
    /// Runner workers.
    pub workers: usize,
    /// Partitions of each topic.
    pub partitions: i32,
    /// Time in each state.
    pub dwell: Dwell,
    /// Which intake the orders go through.
    pub intake: Intake,
    /// Pace, requests in flight and orders per request of the placements.
    pub sending: Sending,
    /// Where `.eml` files go; `None` sends no mail.
    pub outbox: Option<PathBuf>,
    /// Language of the mails.
    pub language: Language,
    /// Sender of the mails.
    pub mail_from: String,
    /// Give up waiting for orders to finish after this long.
    pub timeout: Duration,
    /// How long finished orders stay in memory (`None`: for good).
    pub retention: Option<Duration>,
    /// Place orders for this long at the pace of `sending`, cycling through `purchases`
    /// (a soak), printing a line a minute; `None`: place `purchases` once.
    pub duration: Option<Duration>,
    /// A Kafka cluster to run on instead of the embedded mock cluster (its topics get a
    /// prefix of this run's own).
    pub brokers: Option<String>,
    /// Most commands the intake lets wait for the workers before it answers
    /// `RESOURCE_EXHAUSTED` / 429 (see [`backlog_limit`]).
    pub backlog_limit: u64,
    /// Serve the live dashboard (`/dashboard`) here while the run lasts.
    pub dashboard_addr: Option<SocketAddr>,
    /// The format of commands and transition records on the topics.
    pub wire_format: WireFormat,
    /// Transition records in packs, one message per partition and runner batch (ADR 8).
    pub packed_transitions: bool,
}

/// Commands the embedded intake lets wait per partition by default. librdkafka's mock
/// cluster keeps only the last 5 MiB (or 100,000 batches) of each partition and drops the
/// oldest beyond that, so a consumer lagging further loses messages (its offset is reset
/// to the oldest kept: "Offset out of range"). With lz4 batches a placement takes about
/// 115 bytes there (measured: ~45,000 kept per partition), so 20,000 waiting placements per
/// partition stay well inside it; the backlog also counts what the workers did but have
/// not committed yet (they commit every 500 ms).
pub const BACKLOG_PER_PARTITION: u64 = 20_000;

/// The default backlog limit for `partitions` partitions.
pub fn backlog_limit(partitions: i32) -> u64 {
    BACKLOG_PER_PARTITION * partitions.max(1) as u64
}

/// What an embedded run measured.
#[derive(Debug)]
pub struct EmbeddedRun {
    /// Orders, outcomes, throughput and latency.
    pub summary: Summary,
    /// The metrics windows of the run (for charts).
    pub windows: Vec<MetricsRecord>,
    /// The intake's side: request latency and rate.
    pub load: LoadResult,
    /// Commands sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Seconds the followers (read model, mail) still needed after the last order finished
    /// to deliver every transition.
    pub followers_behind_secs: f64,
}

/// Runs the system until every order reached a terminal state (or the timeout passed).
///
/// The clock starts after a warm-up order went all the way through, so the consumer group's
/// first join is not counted as pipeline latency.
///
/// # Errors
/// Start-up failures (mock cluster, topics, server) and intake errors.
pub async fn run(config: EmbeddedConfig) -> Result<EmbeddedRun, BoxError> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    // lz4: the mock cluster's retention counts stored (compressed) bytes; see
    // BACKLOG_PER_PARTITION.
    let kafka = |brokers: String| {
        crate::cli::low_latency(
            KafkaConfig::new(brokers)
                .with_group("order-fsm-embedded")
                .with_property("compression.type", "lz4")
                .with_wire_format(config.wire_format)
                .with_packed_transitions(config.packed_transitions),
        )
    };
    // Kept alive for the run.
    let mut _cluster = None;
    let kafka = match &config.brokers {
        None => {
            let cluster = MockCluster::new(1)?;
            let kafka = kafka(cluster.bootstrap_servers());
            provision_mock_topics(&cluster, &kafka, config.partitions)?;
            _cluster = Some(cluster);
            kafka
        }
        Some(brokers) => {
            // Topics of this run's own, so that runs never see each other's orders.
            let id = order_fsm::EventId::random().to_string();
            let p = format!("pipeline-{}-", &id[..8]);
            let kafka = kafka(brokers.clone())
                .with_group(format!("{p}workers"))
                .with_commands_topic(format!("{p}orders"))
                .with_transitions_topic(format!("{p}order-transitions"))
                .with_dead_letter_topic(format!("{p}orders-dlq"))
                .with_state_topic(format!("{p}order-state"));
            order_fsm_kafka::provision_topics(&kafka, config.partitions).await?;
            kafka
        }
    };

    let store = Arc::new(MemoryStore::new());
    let mut runner = Runner::builder(Arc::clone(&lifecycle))
        .with_store(store)
        .with_state_log(Arc::new(KafkaStateLog::new(
            &kafka,
            Arc::clone(&lifecycle),
        )?))
        .with_retention(config.retention)
        // The acknowledgement path holds the state log and the transitions topic only; the
        // read model and the mail follow the topic at their own pace.
        .with_sink(Arc::new(KafkaTransitionSink::new(&kafka)?))
        .with_dead_letters(Arc::new(KafkaDeadLetterSink::new(&kafka)?))
        .with_workers(config.workers)
        .with_auto_advance(config.dwell);
    let read_model = Arc::new(MemoryStore::new());
    let hub = WatchHub::default();
    let mut followers = Followers::default();
    let dashboard = match config.dashboard_addr {
        Some(addr) => Some(serve_dashboard(addr, &lifecycle).await?),
        None => None,
    };
    followers.spawn_read_model(
        &kafka,
        &lifecycle,
        read_model.clone(),
        hub.clone(),
        READ_MODEL_FINISHED,
        dashboard
            .as_ref()
            .map(|(dashboard, _)| Arc::clone(dashboard)),
    )?;
    if let Some(outbox) = &config.outbox {
        let mail = MailBuilder::new(
            MailConfig::outbox(outbox, config.mail_from.clone()).with_language(config.language),
        )
        .with_lifecycle(Arc::clone(&lifecycle))
        .build()?;
        let follower = KafkaFollower::builder(&kafka, "mail")
            .with_batch_size(MAIL_BATCH)
            .build()?;
        followers.spawn(follower, Arc::new(mail));
    }
    let commands =
        Arc::new(KafkaCommandSink::new(&kafka)?.with_backlog_limit(&kafka, config.backlog_limit)?);
    // A soak reports a window a minute; a single run keeps 100 ms windows for its charts.
    let metrics = match config.duration {
        Some(_) => {
            let report = MinuteReport::new(
                Arc::clone(&commands),
                followers.progress("read-model").cloned(),
            );
            let windows = Arc::clone(&report.windows);
            runner = runner.with_metrics_sink(Arc::new(report), soak::WINDOW);
            MinuteReport::print_header();
            windows
        }
        None => {
            let windows = Arc::new(MemorySink::new());
            runner = runner.with_metrics_sink(windows.clone(), Duration::from_millis(100));
            windows
        }
    };
    let runner = Arc::new(runner.build()?);

    let stop = CancellationToken::new();
    // Cancels on every return, an early error's too: the runner and the intake end with the run.
    let _stop_on_return = stop.clone().drop_guard();
    let source = KafkaSource::new(&kafka)?;
    let running = tokio::spawn({
        let (runner, stop) = (Arc::clone(&runner), stop.clone().cancelled_owned());
        async move { runner.run(source, stop).await }
    });

    // The run's own intake requires the run's own key, generated here and never shown: the
    // embedded system runs with access control on, as a deployment would.
    let api_key = order_fsm::EventId::random().to_string();
    let keys = order_fsm::access::KeyRing::parse(&format!(
        "pipeline operator {}",
        order_fsm::access::hash_key(&api_key)
    ))?;
    let keys = Arc::new(order_fsm::access::KeyFile::fixed(keys));
    let addr = start_intake(
        &config.intake,
        &lifecycle,
        commands,
        read_model,
        hub,
        keys,
        stop.clone().cancelled_owned(),
    )
    .await?;
    let target = load::Target::connect(config.intake, addr, Some(&api_key)).await?;

    // Warm-up: one order through the whole pipeline (joins the consumer group).
    let warm_up =
        load::place_all(&target, &[Purchase::example()], Sending::burst(1), false).await?;
    if warm_up.errors > 0 {
        return Err("the warm-up order was refused".into());
    }
    wait_finished(&runner, 1, Duration::from_secs(30)).await?;
    let baseline = runner.metrics().orders_finished_total();

    let started = Instant::now();
    let load = match config.duration {
        None => load::place_all(&target, &config.purchases, config.sending, false).await?,
        Some(duration) => {
            load::place_for(&target, &config.purchases, config.sending, duration).await?
        }
    };
    let orders = load.accepted + load.errors;
    let finished = wait_finished(&runner, baseline + orders - load.errors, config.timeout).await;
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    let report = running.await??;
    finished?;
    // Every record the runner published (placements and transitions) reaches each follower.
    let published = report.metrics.orders_placed + report.metrics.transitions;
    let catching_up = Instant::now();
    followers
        .caught_up(published, Duration::from_secs(60))
        .await?;
    let followers_behind_secs = catching_up.elapsed().as_secs_f64();
    followers.stop().await?;

    let mut snapshot = report.metrics;
    // Every order the intake accepted was placed by the runner (finished ones may have
    // left the store already: it holds live orders and those within their retention).
    let accepted = orders + 1 - load.errors;
    if snapshot.orders_placed != accepted {
        return Err(format!(
            "{} orders placed by the runner for {accepted} accepted by the intake",
            snapshot.orders_placed
        )
        .into());
    }
    discount_warm_up(&mut snapshot, elapsed);
    let dead_letters = snapshot.dead_lettered;
    Ok(EmbeddedRun {
        summary: Summary::new(orders, elapsed, snapshot),
        windows: metrics.metrics(),
        load,
        dead_letters,
        followers_behind_secs,
    })
}

/// Takes the warm-up order (placed, four transitions, completed) out of the counts and puts
/// rates over the measured time; its latency samples stay in the histograms, one among many.
fn discount_warm_up(snapshot: &mut order_fsm::MetricsSnapshot, elapsed_secs: f64) {
    snapshot.orders_placed = snapshot.orders_placed.saturating_sub(1);
    snapshot.transitions = snapshot.transitions.saturating_sub(4);
    if let Some((_, n)) = snapshot
        .orders_finished
        .iter_mut()
        .find(|(s, _)| s == "completed")
    {
        *n = n.saturating_sub(1);
    }
    snapshot.elapsed_secs = elapsed_secs;
    snapshot.transitions_per_sec = snapshot.transitions as f64 / elapsed_secs.max(1e-9);
    snapshot.orders_finished_per_sec =
        snapshot.orders_finished_total() as f64 / elapsed_secs.max(1e-9);
}

/// Serves a live dashboard on `addr` until the returned guard drops.
async fn serve_dashboard(
    addr: SocketAddr,
    lifecycle: &Arc<Lifecycle>,
) -> Result<(Arc<Dashboard>, tokio_util::sync::DropGuard), BoxError> {
    let dashboard = Arc::new(Dashboard::new(Arc::clone(lifecycle)));
    let listener = TcpListener::bind(addr).await?;
    println!(
        "live dashboard: http://{}/dashboard",
        listener.local_addr()?
    );
    let stop = CancellationToken::new();
    let app = Arc::clone(&dashboard).router();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        if let Err(e) = order_fsm_http::HttpEdge::default()
            .serve(listener, app, shutdown)
            .await
        {
            tracing::error!(error = %e, "dashboard stopped");
        }
    });
    Ok((dashboard, stop.drop_guard()))
}

async fn start_intake(
    intake: &Intake,
    lifecycle: &Arc<Lifecycle>,
    commands: Arc<KafkaCommandSink>,
    store: Arc<MemoryStore>,
    hub: WatchHub,
    keys: Arc<order_fsm::access::KeyFile>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    match intake {
        Intake::Grpc => {
            let server = OrderServiceBuilder::new(Arc::clone(lifecycle))
                .with_commands(commands)
                .with_store(store)
                .with_watch_hub(hub)
                .with_config(ServerConfig::default().with_access(keys));
            tokio::spawn(async move {
                if let Err(e) = server.serve_with_listener(listener, shutdown).await {
                    tracing::error!(error = %e, "gRPC intake stopped");
                }
            });
        }
        Intake::Http => {
            let app = order_fsm_http::RouterBuilder::new(Arc::clone(lifecycle), commands, store)
                .with_access(keys)
                .build();
            tokio::spawn(async move {
                if let Err(e) = order_fsm_http::HttpEdge::default()
                    .serve(listener, app, shutdown)
                    .await
                {
                    tracing::error!(error = %e, "HTTP intake stopped");
                }
            });
        }
    }
    Ok(addr)
}

async fn wait_finished(runner: &Runner, target: u64, timeout: Duration) -> Result<(), BoxError> {
    let deadline = Instant::now() + timeout;
    while runner.metrics().orders_finished_total() < target {
        if Instant::now() > deadline {
            let done = runner.metrics().orders_finished_total();
            return Err(format!("timed out: {done} of {target} orders finished").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
