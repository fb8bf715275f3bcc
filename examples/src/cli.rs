//! Flags shared by the separate-process programs; each also reads its environment variable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_fsm::simulation::LoadLevel;
use order_fsm::{Dwell, Lifecycle};
use order_fsm_kafka::{provision_topics, KafkaConfig, KafkaError, WireFormat};
use order_fsm_postgres::{PostgresBuilder, PostgresError, PostgresStore};

use crate::load::{Pace, Sending};

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and Kubernetes
/// send to stop a process): the programs stop gracefully on either, finishing what they
/// acknowledged.
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (nothing but errors and warnings by default).
pub fn init_tracing() {
    // `EnvFilter::from_default_env` alone would default to errors only, hiding the
    // warnings a program logs while it waits for a service.
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The librdkafka settings every program of this crate adds to its Kafka configuration:
/// a member that stops is noticed within 6 s, and fetched messages are handed over within
/// 10 ms instead of librdkafka's 500 ms.
pub fn low_latency(config: KafkaConfig) -> KafkaConfig {
    config
        .with_property("session.timeout.ms", "6000")
        .with_property("fetch.wait.max.ms", "10")
        .with_property("linger.ms", "1")
}

/// Where Kafka is and which topics to use.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Prefix of the topic names (`{prefix}orders`, `{prefix}order-transitions`,
    /// `{prefix}orders-dlq`, `{prefix}order-state`).
    #[arg(long, env = "ORDER_FSM_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// The commands topic, instead of `{prefix}orders`.
    #[arg(long, env = "ORDER_FSM_KAFKA_COMMANDS_TOPIC", value_name = "TOPIC")]
    pub commands_topic: Option<String>,
    /// The transitions topic, instead of `{prefix}order-transitions`.
    #[arg(long, env = "ORDER_FSM_KAFKA_TRANSITIONS_TOPIC", value_name = "TOPIC")]
    pub transitions_topic: Option<String>,
    /// The dead-letter topic, instead of `{prefix}orders-dlq`.
    #[arg(long, env = "ORDER_FSM_KAFKA_DLQ_TOPIC", value_name = "TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// The state topic, instead of `{prefix}order-state`.
    #[arg(long, env = "ORDER_FSM_KAFKA_STATE_TOPIC", value_name = "TOPIC")]
    pub state_topic: Option<String>,
    /// Re-join the group when partitions with waiting commands have been read by no member
    /// for this long, in milliseconds (see `KafkaConfig::with_stall_timeout`).
    #[arg(long, env = "ORDER_FSM_KAFKA_STALL_TIMEOUT_MS", value_name = "MS")]
    pub stall_timeout_ms: Option<u64>,
    /// Partitions of each topic when this program creates them.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Create the topics that do not exist yet (with `--partitions`). `false`: use them as
    /// they are (a cluster where topics are provisioned apart, or librdkafka's mock cluster,
    /// which has no CreateTopics).
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_CREATE_TOPICS",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "true"
    )]
    pub create_topics: bool,
    /// Consumer group of the state-machine workers.
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_GROUP",
        default_value = "order-fsm-workers"
    )]
    pub group: String,
    /// How long to keep trying to create the topics while Kafka does not answer (a broker
    /// still starting), in seconds; each attempt waits up to 10 s. `0`: a single attempt.
    #[arg(long, env = "ORDER_FSM_KAFKA_WAIT_SECS", default_value_t = 30)]
    pub kafka_wait_secs: u64,
    /// A librdkafka property for every client of this program (`key=value`, repeatable),
    /// applied after this program's own settings: `security.protocol=SSL`,
    /// `batch.num.messages=1`, ... Secrets belong in the environment instead (flags show in
    /// `ps`): `ORDER_FSM_KAFKA_PROPERTY_SASL_PASSWORD=...` sets `sasl.password` (the name
    /// after the prefix, lower-cased, `_` for `.`); flags win over the environment.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Remove personal data (e-mail and shipping addresses, ...) from the payloads of dead
    /// letters before they are produced; key, reason and origin headers stay. Accepts
    /// true/false, 1/0, yes/no, on/off from the environment.
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_DLQ_REDACT",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false"
    )]
    pub dead_letter_redact: bool,
    /// How long the dead-letter topic keeps letters (`retention.ms`), in hours, when this
    /// program creates it; an existing topic keeps its settings. Default: the broker's.
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_DLQ_RETENTION_HOURS",
        value_name = "HOURS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub dead_letter_retention_hours: Option<u64>,
    /// The format this program writes commands and transition records in: `json` or
    /// `proto` (protobuf, `order_fsm.v1`). Readers read both whatever this says (each
    /// message names its format in a header): upgrade them before switching writers.
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_WIRE_FORMAT",
        value_name = "FORMAT",
        default_value = "json"
    )]
    pub wire_format: WireFormat,
    /// Publish transition records in packs, one message per partition and runner batch
    /// (ADR 8), instead of one message per record. Readers of this version read both;
    /// upgrade them before turning this on.
    #[arg(
        long,
        env = "ORDER_FSM_KAFKA_PACK_TRANSITIONS",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false"
    )]
    pub pack_transitions: bool,
}

fn parse_property(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{pair}`: expected key=value")),
    }
}

impl KafkaArgs {
    /// The adapter configuration these flags describe.
    pub fn config(&self) -> KafkaConfig {
        let p = &self.topic_prefix;
        let topic = |chosen: &Option<String>, default: &str| {
            chosen.clone().unwrap_or_else(|| format!("{p}{default}"))
        };
        let config = KafkaConfig::new(self.brokers.clone())
            .with_group(self.group.clone())
            .with_commands_topic(topic(&self.commands_topic, "orders"))
            .with_transitions_topic(topic(&self.transitions_topic, "order-transitions"))
            .with_dead_letter_topic(topic(&self.dead_letter_topic, "orders-dlq"))
            .with_state_topic(topic(&self.state_topic, "order-state"))
            .with_dead_letter_redaction(self.dead_letter_redact)
            .with_wire_format(self.wire_format)
            .with_packed_transitions(self.pack_transitions);
        let mut config = low_latency(config);
        if let Some(ms) = self.stall_timeout_ms {
            config = config.with_stall_timeout(Duration::from_millis(ms));
        }
        if let Some(hours) = self.dead_letter_retention_hours {
            config = config.with_dead_letter_retention(Duration::from_secs(hours * 3600));
        }
        for (key, value) in properties_from_env(std::env::vars()) {
            config = config.with_property(key, value);
        }
        for (key, value) in &self.properties {
            config = config.with_property(key, value);
        }
        config
    }

    /// The adapter configuration, after creating its topics with `--partitions` partitions
    /// where they do not exist yet. While Kafka does not answer, it logs a warning naming
    /// the brokers and tries again, for `--kafka-wait-secs`.
    ///
    /// # Errors
    /// The last error once the brokers have not answered for `--kafka-wait-secs` (it names
    /// them), or at once when they refuse to create the topics.
    pub async fn provisioned_config(&self) -> Result<KafkaConfig, KafkaError> {
        let config = self.config();
        if !self.create_topics {
            return Ok(config);
        }
        let deadline = Instant::now() + Duration::from_secs(self.kafka_wait_secs);
        for attempt in 1.. {
            match provision_topics(&config, self.partitions).await {
                Ok(()) => break,
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    tracing::warn!(attempt, "{error}; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(config)
    }
}

/// How orders are sent to an intake.
#[derive(clap::Args, Debug, Clone)]
pub struct SendingArgs {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Orders per request: 1 sends `PlaceOrder` (or `POST /orders`); 2 to 1,000 send
    /// `PlaceOrders` calls (or `POST /orders/batch`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Orders per second of a steady stream; `0` sends everything as a burst.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

impl SendingArgs {
    /// The sending these flags describe.
    pub fn sending(&self) -> Sending {
        Sending {
            pace: Pace::from_rate(self.rate),
            concurrency: self.concurrency,
            batch: self.batch as usize,
        }
    }
}

/// How long orders stay in each state.
#[derive(clap::Args, Debug, Clone)]
pub struct DwellArgs {
    /// Fixed time in each state, in milliseconds.
    #[arg(long, default_value_t = 0, conflicts_with = "load")]
    pub dwell_ms: u64,
    /// A simulated load level instead: low, medium or high.
    #[arg(long)]
    pub load: Option<LoadLevel>,
}

impl DwellArgs {
    /// The dwell these flags describe.
    pub fn dwell(&self) -> Dwell {
        match self.load {
            Some(level) => Dwell::Load(level),
            None => Dwell::Fixed(Duration::from_millis(self.dwell_ms)),
        }
    }
}

/// Where orders are kept durably.
#[derive(clap::Args, Clone, Default)]
pub struct StoreArgs {
    /// Keep orders in PostgreSQL (`postgres://user:password@host:port/database`): workers
    /// write each batch's states there (instead of the Kafka state topic) and restore the
    /// partitions they are assigned from it; the intake answers reads from it. Default: the
    /// state topic, and the intake's read model.
    #[arg(
        long = "store",
        env = "ORDER_FSM_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
}

impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self
            .url
            .as_ref()
            .map(|u| order_fsm_postgres::PostgresConfig::new(u.clone()).redacted_url());
        f.debug_struct("StoreArgs").field("url", &url).finish()
    }
}

impl StoreArgs {
    /// The PostgreSQL store when `--store` names one (connected, schema migrated), retrying
    /// an unreachable server for `wait` like the Kafka start-up does.
    ///
    /// # Errors
    /// A `--store` that is not a `postgres://` URL, a malformed one, or a server still
    /// unreachable after `wait`.
    pub async fn postgres(
        &self,
        lifecycle: &Arc<Lifecycle>,
        wait: Duration,
    ) -> Result<Option<PostgresStore>, PostgresError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(PostgresError::Config {
                reason: "--store takes a postgres:// URL (the only store besides the default)"
                    .into(),
            });
        }
        let deadline = Instant::now() + wait;
        loop {
            match PostgresBuilder::new(url.clone())
                .build(Arc::clone(lifecycle))
                .await
            {
                Ok(store) => return Ok(Some(store)),
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tracing::warn!(error = %e, "store not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The environment's prefix of librdkafka properties.
pub const KAFKA_PROPERTY_ENV_PREFIX: &str = "ORDER_FSM_KAFKA_PROPERTY_";

/// The librdkafka properties named by `ORDER_FSM_KAFKA_PROPERTY_*` variables among `vars`
/// (`ORDER_FSM_KAFKA_PROPERTY_SASL_USERNAME` → `sasl.username`), sorted by name.
pub fn properties_from_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = vars
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(KAFKA_PROPERTY_ENV_PREFIX)?;
            Some((key.to_ascii_lowercase().replace('_', "."), value))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect();
    properties.sort();
    properties
}

/// The intake listeners' limits against slow, idle and too many clients (see
/// [`order_fsm_http::HttpEdge`] and [`order_fsm_grpc::ServerConfig`]).
#[derive(clap::Args, Debug, Clone)]
pub struct EdgeArgs {
    /// Seconds a client has to send a request's head (HTTP), or its first bytes (gRPC);
    /// also how long an idle HTTP keep-alive connection stays open.
    #[arg(long, env = "ORDER_FSM_HEAD_TIMEOUT_SECS", default_value_t = 10)]
    pub head_timeout_secs: u64,
    /// Seconds a whole HTTP request (body included) may take before it is answered `408`.
    #[arg(
        long,
        env = "ORDER_FSM_HTTP_REQUEST_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub http_request_timeout_secs: u64,
    /// Most connections open at once on each listener; more wait in the kernel's accept
    /// queue.
    #[arg(long, env = "ORDER_FSM_MAX_CONNECTIONS", default_value_t = 1_024)]
    pub max_connections: usize,
    /// PEM certificate chain: serve gRPC and HTTP over TLS only (with `--tls-key`).
    #[arg(
        long,
        env = "ORDER_FSM_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(
        long,
        env = "ORDER_FSM_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// Mutual TLS: only clients with a certificate signed by a CA of this PEM file may
    /// connect, over both APIs (with `--tls-cert`).
    #[arg(
        long,
        env = "ORDER_FSM_TLS_CLIENT_CA",
        requires = "tls_cert",
        value_name = "PEM"
    )]
    pub tls_client_ca: Option<std::path::PathBuf>,
}

impl EdgeArgs {
    fn head_timeout(&self) -> Duration {
        Duration::from_secs(self.head_timeout_secs.max(1))
    }

    /// The certificate chain, key and client CA PEM files, read, when TLS is asked for.
    #[allow(clippy::type_complexity)]
    fn tls_pem(&self) -> std::io::Result<Option<(Vec<u8>, Vec<u8>, Option<Vec<u8>>)>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
            })
        };
        let client_ca = self.tls_client_ca.as_deref().map(read).transpose()?;
        Ok(Some((read(cert)?, read(key)?, client_ca)))
    }

    /// The HTTP listener's limits, and TLS when asked for.
    ///
    /// # Errors
    /// Unreadable or invalid certificate or key files.
    pub fn http(&self) -> std::io::Result<order_fsm_http::HttpEdge> {
        let edge = order_fsm_http::HttpEdge::default()
            .with_head_timeout(self.head_timeout())
            .with_request_timeout(Duration::from_secs(self.http_request_timeout_secs.max(1)))
            .with_max_connections(self.max_connections);
        match self.tls_pem()? {
            Some((cert, key, client_ca)) => edge
                .with_mutual_tls(&cert, &key, client_ca.as_deref())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            None => Ok(edge),
        }
    }

    /// `config` with the gRPC listener's limits, and TLS when asked for.
    ///
    /// # Errors
    /// Unreadable certificate or key files (tonic checks their contents when it starts).
    pub fn grpc(
        &self,
        config: order_fsm_grpc::ServerConfig,
    ) -> std::io::Result<order_fsm_grpc::ServerConfig> {
        let config =
            config.with_connection_limits(self.max_connections.max(1), self.head_timeout());
        Ok(match self.tls_pem()? {
            Some((cert, key, client_ca)) => {
                let mut identity = order_fsm_grpc::TlsIdentity::from_pem(cert, key);
                if let Some(ca) = client_ca {
                    identity = identity.with_client_ca(ca);
                }
                config.with_tls(identity)
            }
            None => config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Program {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn kafka_properties_come_from_the_environment_by_name() {
        let vars = [
            ("ORDER_FSM_KAFKA_PROPERTY_SASL_PASSWORD", "s3cret"),
            ("ORDER_FSM_KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL"),
            ("ORDER_FSM_KAFKA_BROKERS", "b:9092"),
            ("ORDER_FSM_KAFKA_PROPERTY_", "ignored"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(
            properties_from_env(vars.into_iter()),
            [
                ("sasl.password".to_owned(), "s3cret".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
        );
    }

    #[test]
    fn dead_letter_flags() {
        let config = Program::parse_from(["p"]).kafka.config();
        assert!(!config.dead_letter_redaction());
        assert_eq!(config.dead_letter_retention(), None);
        let args = [
            "p",
            "--dead-letter-redact",
            "--dead-letter-retention-hours",
            "72",
        ];
        let config = Program::parse_from(args).kafka.config();
        assert!(config.dead_letter_redaction());
        assert_eq!(
            config.dead_letter_retention(),
            Some(Duration::from_secs(72 * 3600))
        );
        let args = ["p", "--dead-letter-redact=false"];
        assert!(!Program::parse_from(args)
            .kafka
            .config()
            .dead_letter_redaction());
        let args = ["p", "--dead-letter-retention-hours", "0"];
        assert!(Program::try_parse_from(args).is_err());
    }
}
