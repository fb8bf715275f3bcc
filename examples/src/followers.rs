//! The followers of the programs: Elasticsearch, e-mail and the intake's read model, each a
//! [`KafkaFollower`] of the transitions topic with its own consumer group, out of the
//! workers' acknowledgement path: a slow or down destination delays only its own follower.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_fsm::{Error, Lifecycle, MemoryStore, TransitionSink};
use order_fsm_elastic::{ElasticBuilder, ElasticSink};
use order_fsm_grpc::WatchHub;
use order_fsm_kafka::{FollowerProgress, FollowerReport, KafkaConfig, KafkaError, KafkaFollower};
use order_fsm_mail::{Language, MailBuilder, MailConfig};
use tokio_util::sync::CancellationToken;

use crate::dashboard::Dashboard;
use crate::projection::ReadModel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Records per batch of the mail follower: after a crash at most this many mails per
/// partition are sent again (those delivered but not yet committed).
pub const MAIL_BATCH: usize = 64;

/// Finished orders the programs' read models keep by default (≈ 1 KiB each).
pub const READ_MODEL_FINISHED: usize = 200_000;

/// Records per batch of the Elasticsearch follower (the sink packs them into `_bulk`
/// requests).
pub const ELASTIC_BATCH: usize = 1_000;

/// The destinations a worker or follower process serves, from its flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DestinationArgs {
    /// Elasticsearch URL; transitions, orders and metrics are indexed there when set.
    #[arg(long, env = "ORDER_FSM_ES_URL")]
    pub es_url: Option<String>,
    /// Prefix of the Elasticsearch index names.
    #[arg(long, env = "ORDER_FSM_ES_INDEX_PREFIX", default_value = "order-fsm-")]
    pub es_index_prefix: String,
    /// SMTP server (`smtp://host:port`); customers are mailed at each state change when set.
    #[arg(long, env = "ORDER_FSM_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender address of the mails.
    #[arg(
        long,
        env = "ORDER_FSM_MAIL_FROM",
        default_value = "orders@shop.example"
    )]
    pub mail_from: String,
    /// Language of the mails: `en` or `es`.
    #[arg(long, default_value_t = Language::En)]
    pub language: Language,
}

impl DestinationArgs {
    /// Starts a follower per configured destination (`elasticsearch`, `mail`); returns
    /// them and the Elasticsearch sink, if any, for the metrics windows.
    ///
    /// # Errors
    /// An Elasticsearch URL or credentials refused (a server that does not answer yet is
    /// waited for), a bad SMTP URL or sender, Kafka client errors.
    pub async fn start(
        &self,
        kafka: &KafkaConfig,
        lifecycle: &Arc<Lifecycle>,
    ) -> Result<(Followers, Option<ElasticSink>), BoxError> {
        let mut followers = Followers::default();
        let mut elastic = None;
        if let Some(url) = &self.es_url {
            // Credentials and TLS from the environment, never from flags (they would show
            // in `ps`): ORDER_FSM_ES_USERNAME/PASSWORD or _API_KEY, ORDER_FSM_ES_CA_CERT.
            let builder = ElasticBuilder::new(url.clone())
                .with_index_prefix(self.es_index_prefix.clone())
                .with_env_security()?;
            // Out of the acknowledgement path, Elasticsearch down at start delays only its
            // follower; anything else (a bad URL, refused credentials) is an error now.
            let sink = match builder.clone().build().await {
                Ok(sink) => sink,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(%url, error = %e, "Elasticsearch unreachable at start; its follower waits for it");
                    builder.build_lazily().await?
                }
                Err(e) => return Err(e.into()),
            };
            let follower = KafkaFollower::builder(kafka, "elasticsearch")
                .with_batch_size(ELASTIC_BATCH)
                .build()?;
            followers.spawn(follower, Arc::new(sink.clone()));
            elastic = Some(sink);
        }
        if let Some(url) = &self.smtp_url {
            // Credentials from ORDER_FSM_SMTP_USERNAME / _PASSWORD when set, never from flags.
            let config = MailConfig::smtp(url.clone(), self.mail_from.clone())
                .with_language(self.language)
                .with_env_credentials()?;
            let mail = MailBuilder::new(config)
                .with_lifecycle(Arc::clone(lifecycle))
                .build()?;
            let follower = KafkaFollower::builder(kafka, "mail")
                .with_batch_size(MAIL_BATCH)
                .build()?;
            followers.spawn(follower, Arc::new(mail));
        }
        Ok((followers, elastic))
    }
}

/// Followers running as tasks of this process.
#[derive(Default)]
pub struct Followers {
    running: Vec<Running>,
    stop: CancellationToken,
    failed: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
}

struct Running {
    name: String,
    progress: FollowerProgress,
    task: tokio::task::JoinHandle<Result<FollowerReport, Error>>,
}

impl Followers {
    /// Runs `follower` into `sink` until [`Followers::stop`]. A follower that fails for good
    /// logs its error and completes [`Followers::failed`].
    pub fn spawn(&mut self, follower: KafkaFollower, sink: Arc<dyn TransitionSink>) {
        let name = follower.name().to_owned();
        let progress = follower.progress();
        let (stop, failed, failure) = (
            self.stop.clone(),
            self.failed.clone(),
            Arc::clone(&self.failure),
        );
        let task = tokio::spawn({
            let name = name.clone();
            async move {
                let outcome = follower.run(sink, stop.cancelled_owned()).await;
                if let Err(e) = &outcome {
                    tracing::error!(follower = %name, error = %e, "follower stopped");
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("follower {name}: {e}"));
                    failed.cancel();
                }
                outcome
            }
        });
        self.running.push(Running {
            name,
            progress,
            task,
        });
    }

    /// Runs the intake's read model: an ephemeral follower (the whole topic at each start,
    /// no commits) projecting into `store` and `hub`, keeping the latest `keep_finished`
    /// finished orders (older ones are for Elasticsearch to answer), and feeding
    /// `dashboard` when given.
    ///
    /// # Errors
    /// Kafka client errors.
    pub fn spawn_read_model(
        &mut self,
        kafka: &KafkaConfig,
        lifecycle: &Arc<Lifecycle>,
        store: Arc<MemoryStore>,
        hub: WatchHub,
        keep_finished: usize,
        dashboard: Option<Arc<Dashboard>>,
    ) -> Result<(), KafkaError> {
        let follower = KafkaFollower::builder(kafka, "read-model")
            .with_ephemeral()
            .build()?;
        let mut model =
            ReadModel::new(Arc::clone(lifecycle), store, hub).keep_finished(keep_finished);
        if let Some(dashboard) = dashboard {
            model = model.with_dashboard(dashboard);
        }
        self.spawn(follower, Arc::new(model));
        Ok(())
    }

    /// Whether no follower runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The counters of the follower `name`.
    pub fn progress(&self, name: &str) -> Option<&FollowerProgress> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| &r.progress)
    }

    /// Completes when a follower failed for good; returns its error.
    pub async fn failed(&self) -> String {
        self.failed.cancelled().await;
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.clone().unwrap_or_default()
    }

    /// Waits until every follower delivered at least `records` and has no lag left.
    ///
    /// # Errors
    /// After `timeout`, naming the followers still behind.
    pub async fn caught_up(&self, records: u64, timeout: Duration) -> Result<(), BoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            let behind: Vec<String> = self
                .running
                .iter()
                .filter(|r| r.progress.delivered() < records || r.progress.lag() > 0)
                .map(|r| {
                    format!(
                        "{} ({} of {records} delivered, lag {})",
                        r.name,
                        r.progress.delivered(),
                        r.progress.lag()
                    )
                })
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("followers behind: {}", behind.join(", ")).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every follower (each commits what it delivered) and returns their reports.
    ///
    /// # Errors
    /// The first follower that had failed, or whose task panicked.
    pub async fn stop(self) -> Result<Vec<(String, FollowerReport)>, BoxError> {
        self.stop.cancel();
        let mut reports = Vec::with_capacity(self.running.len());
        for running in self.running {
            let report = running.task.await??;
            reports.push((running.name, report));
        }
        Ok(reports)
    }
}
