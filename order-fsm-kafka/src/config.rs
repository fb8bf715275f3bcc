//! Connection settings and topic names, read from the environment or set in code.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::{KafkaError, WireFormat};

/// Default topic of commands.
pub const DEFAULT_COMMANDS_TOPIC: &str = "orders";
/// Default topic of transition records.
pub const DEFAULT_TRANSITIONS_TOPIC: &str = "order-transitions";
/// Default dead-letter topic.
pub const DEFAULT_DEAD_LETTER_TOPIC: &str = "orders-dlq";
/// Default topic of order states (the changelog of [`crate::KafkaStateLog`]).
pub const DEFAULT_STATE_TOPIC: &str = "order-state";
/// Default consumer group.
pub const DEFAULT_GROUP: &str = "order-fsm";

/// Settings of the Kafka adapter: brokers, consumer group, topic names and any librdkafka
/// property (SASL, SSL, tuning) passed through unchanged.
///
/// ```
/// use order_fsm_kafka::KafkaConfig;
/// let config = KafkaConfig::new("127.0.0.1:9092")
///     .with_group("billing")
///     .with_commands_topic("orders-eu")
///     .with_property("security.protocol", "sasl_ssl")
///     .with_dead_letter_redaction(true)
///     .with_dead_letter_retention(std::time::Duration::from_secs(14 * 24 * 3600));
/// assert_eq!(config.group(), "billing");
/// assert!(config.dead_letter_redaction());
/// assert_eq!(config.transitions_topic(), "order-transitions");
/// assert_eq!(config.state_topic(), order_fsm_kafka::DEFAULT_STATE_TOPIC);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct KafkaConfig {
    brokers: String,
    group: String,
    commands_topic: String,
    transitions_topic: String,
    dead_letter_topic: String,
    state_topic: String,
    commit_interval: Duration,
    stall_timeout: Duration,
    dead_letter_redaction: bool,
    dead_letter_retention: Option<Duration>,
    wire_format: WireFormat,
    packed_transitions: bool,
    properties: BTreeMap<String, String>,
}

/// Debug output never shows a secret property's value (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, `ssl.key.pem`, ...).
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |key: &str| {
            ["password", "secret", "key", "token"]
                .iter()
                .any(|w| key.contains(w))
        };
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if secret(k) { "<redacted>" } else { v.as_str() },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("commands_topic", &self.commands_topic)
            .field("transitions_topic", &self.transitions_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("state_topic", &self.state_topic)
            .field("commit_interval", &self.commit_interval)
            .field("stall_timeout", &self.stall_timeout)
            .field("dead_letter_redaction", &self.dead_letter_redaction)
            .field("dead_letter_retention", &self.dead_letter_retention)
            .field("wire_format", &self.wire_format)
            .field("packed_transitions", &self.packed_transitions)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// Settings for `brokers` (a `host:port[,host:port...]` list) with the default group and
    /// topic names.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group: DEFAULT_GROUP.into(),
            commands_topic: DEFAULT_COMMANDS_TOPIC.into(),
            transitions_topic: DEFAULT_TRANSITIONS_TOPIC.into(),
            dead_letter_topic: DEFAULT_DEAD_LETTER_TOPIC.into(),
            state_topic: DEFAULT_STATE_TOPIC.into(),
            commit_interval: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(30),
            dead_letter_redaction: false,
            dead_letter_retention: None,
            wire_format: WireFormat::Json,
            packed_transitions: false,
            properties: BTreeMap::new(),
        }
    }

    /// Reads `ORDER_FSM_KAFKA_BROKERS` (required), and optionally `ORDER_FSM_KAFKA_GROUP`,
    /// `ORDER_FSM_KAFKA_COMMANDS_TOPIC`, `ORDER_FSM_KAFKA_TRANSITIONS_TOPIC`,
    /// `ORDER_FSM_KAFKA_DLQ_TOPIC`, `ORDER_FSM_KAFKA_STATE_TOPIC`,
    /// `ORDER_FSM_KAFKA_STALL_TIMEOUT_MS` (see [`KafkaConfig::with_stall_timeout`]),
    /// `ORDER_FSM_KAFKA_DLQ_REDACT` (`true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`; see
    /// [`KafkaConfig::with_dead_letter_redaction`]) and `ORDER_FSM_KAFKA_DLQ_RETENTION_HOURS`
    /// (see [`KafkaConfig::with_dead_letter_retention`]) and `ORDER_FSM_KAFKA_WIRE_FORMAT`
    /// (`json` or `proto`; see [`KafkaConfig::with_wire_format`]) and
    /// `ORDER_FSM_KAFKA_PACK_TRANSITIONS` (a switch like the redaction's; see
    /// [`KafkaConfig::with_packed_transitions`]).
    ///
    /// # Errors
    /// [`KafkaError::Config`] when `ORDER_FSM_KAFKA_BROKERS` is unset or empty, the stall
    /// timeout is not a number of milliseconds, the redaction switch is not a boolean or the
    /// retention is not a positive number of hours, or the wire format is unknown.
    pub fn from_env() -> Result<Self, KafkaError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let brokers = var("ORDER_FSM_KAFKA_BROKERS")
            .ok_or_else(|| KafkaError::Config("ORDER_FSM_KAFKA_BROKERS is not set".into()))?;
        let mut config = Self::new(brokers);
        if let Some(group) = var("ORDER_FSM_KAFKA_GROUP") {
            config.group = group;
        }
        if let Some(topic) = var("ORDER_FSM_KAFKA_COMMANDS_TOPIC") {
            config.commands_topic = topic;
        }
        if let Some(topic) = var("ORDER_FSM_KAFKA_TRANSITIONS_TOPIC") {
            config.transitions_topic = topic;
        }
        if let Some(topic) = var("ORDER_FSM_KAFKA_DLQ_TOPIC") {
            config.dead_letter_topic = topic;
        }
        if let Some(topic) = var("ORDER_FSM_KAFKA_STATE_TOPIC") {
            config.state_topic = topic;
        }
        if let Some(ms) = var("ORDER_FSM_KAFKA_STALL_TIMEOUT_MS") {
            let ms = ms.trim().parse::<u64>().map_err(|_| {
                KafkaError::Config(format!(
                    "ORDER_FSM_KAFKA_STALL_TIMEOUT_MS is not a number of milliseconds: {ms:?}"
                ))
            })?;
            config.stall_timeout = Duration::from_millis(ms);
        }
        if let Some(switch) = var("ORDER_FSM_KAFKA_DLQ_REDACT") {
            config.dead_letter_redaction = parse_switch(&switch).ok_or_else(|| {
                KafkaError::Config(format!(
                    "ORDER_FSM_KAFKA_DLQ_REDACT is not true or false: {switch:?}"
                ))
            })?;
        }
        if let Some(hours) = var("ORDER_FSM_KAFKA_DLQ_RETENTION_HOURS") {
            let hours = hours
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&h| h > 0)
                .ok_or_else(|| {
                    KafkaError::Config(format!(
                        "ORDER_FSM_KAFKA_DLQ_RETENTION_HOURS is not a positive number of hours: {hours:?}"
                    ))
                })?;
            config.dead_letter_retention = Some(Duration::from_secs(hours * 3600));
        }
        if let Some(switch) = var("ORDER_FSM_KAFKA_PACK_TRANSITIONS") {
            config.packed_transitions = parse_switch(&switch).ok_or_else(|| {
                KafkaError::Config(format!(
                    "ORDER_FSM_KAFKA_PACK_TRANSITIONS is not true or false: {switch:?}"
                ))
            })?;
        }
        if let Some(format) = var("ORDER_FSM_KAFKA_WIRE_FORMAT") {
            config.wire_format = format.parse().map_err(|_| {
                KafkaError::Config(format!(
                    "ORDER_FSM_KAFKA_WIRE_FORMAT is neither json nor proto: {format:?}"
                ))
            })?;
        }
        Ok(config)
    }

    /// Sets the bootstrap servers.
    pub fn with_brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = brokers.into();
        self
    }

    /// Sets the consumer group of sources.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Sets the topic commands are read from and submitted to.
    pub fn with_commands_topic(mut self, topic: impl Into<String>) -> Self {
        self.commands_topic = topic.into();
        self
    }

    /// Sets the topic transition records are published to.
    pub fn with_transitions_topic(mut self, topic: impl Into<String>) -> Self {
        self.transitions_topic = topic.into();
        self
    }

    /// Sets the dead-letter topic.
    pub fn with_dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = topic.into();
        self
    }

    /// Sets the topic of order states, the changelog [`crate::KafkaStateLog`] writes and
    /// restores from. It needs as many partitions as the commands topic.
    pub fn with_state_topic(mut self, topic: impl Into<String>) -> Self {
        self.state_topic = topic.into();
        self
    }

    /// How often a source commits the offsets of finished messages (default 500 ms). Offsets
    /// are also committed on revocation and on shutdown.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// How long a partition of the commands topic may hold unprocessed commands with its
    /// group's committed offset standing still, and no member of this process reading it,
    /// before a source re-joins its group (default 30 s). A re-join gives the group a new
    /// generation: it ends a group a broker stall or a coordinator's stale assignment left
    /// with partitions nobody serves.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Whether dead letters are redacted (default `false`): when on, the payload of every
    /// letter [`crate::KafkaDeadLetterSink`] produces (the source's undecodable and mis-keyed
    /// messages, the runner's rejected commands, a follower's unreadable records) loses its
    /// personal data before it leaves the process. In a JSON object or array, the values of
    /// personal fields at any depth (those of [`order_fsm::Purchase`], `customer_email` and
    /// `shipping_address`, and any key naming an e-mail, an address, a phone number or a
    /// person's name) and every string holding an e-mail address become `"[redacted]"`; any
    /// other payload becomes `{"redacted":true,"bytes":N}`. The key, the reason (with quoted
    /// personal values scrubbed) and the origin headers stay, and the letter carries the
    /// header [`crate::HEADER_REDACTED`].
    pub fn with_dead_letter_redaction(mut self, redact: bool) -> Self {
        self.dead_letter_redaction = redact;
        self
    }

    /// The format producers write commands, transition records and state records in
    /// (default [`WireFormat::Json`]); each message names it in the [`crate::HEADER_FORMAT`]
    /// header. Readers decode each message by its header whatever this says, and read a
    /// message without the header in this format (a state record without it as JSON, what
    /// every state record was before the header). Upgrade every reader before switching producers
    /// to [`WireFormat::Protobuf`].
    pub fn with_wire_format(mut self, format: WireFormat) -> Self {
        self.wire_format = format;
        self
    }

    /// Publish the records of each [`crate::KafkaTransitionSink`] `publish` call as one message per
    /// partition (a *pack*, header `json-pack` / `proto-pack`) instead of one message per
    /// record (ADR 8). Off by default. Each pack goes to the partition its records would
    /// have gone to one by one (librdkafka's default CRC-32 partitioner over the order id;
    /// with another `partitioner` property the sink publishes single records), so every
    /// order's records stay in one partition, in order. Packs stay under half of
    /// `message.max.bytes` (1 MB by default), split when larger. Readers of this version
    /// ([`crate::KafkaFollower`]) read packs and single records alike; upgrade every reader
    /// of the transitions topic before turning this on.
    pub fn with_packed_transitions(mut self, packed: bool) -> Self {
        self.packed_transitions = packed;
        self
    }

    /// How long the dead-letter topic keeps letters (its `retention.ms`), set by
    /// [`crate::provision_topics`] when it creates the topic. Default: none, the broker's
    /// `log.retention.*` (7 days on Kafka). A topic that already exists keeps its settings
    /// (change them with the broker's tools, `kafka-configs --alter`).
    pub fn with_dead_letter_retention(mut self, retention: Duration) -> Self {
        self.dead_letter_retention = Some(retention);
        self
    }

    /// Sets any librdkafka property (`security.protocol`, `sasl.mechanisms`,
    /// `session.timeout.ms`, ...) on every client this config creates; it overrides the
    /// adapter's own defaults.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The commands topic.
    pub fn commands_topic(&self) -> &str {
        &self.commands_topic
    }

    /// The transitions topic.
    pub fn transitions_topic(&self) -> &str {
        &self.transitions_topic
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> &str {
        &self.dead_letter_topic
    }

    /// The state (changelog) topic.
    pub fn state_topic(&self) -> &str {
        &self.state_topic
    }

    /// The periodic commit interval.
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval
    }

    /// How long a partition may stand still before a source re-joins its group.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The format producers write (see [`KafkaConfig::with_wire_format`]).
    pub fn wire_format(&self) -> WireFormat {
        self.wire_format
    }

    /// Whether transition records are published in packs (see
    /// [`KafkaConfig::with_packed_transitions`]).
    pub fn packed_transitions(&self) -> bool {
        self.packed_transitions
    }

    /// Whether dead letters are redacted.
    pub fn dead_letter_redaction(&self) -> bool {
        self.dead_letter_redaction
    }

    /// The retention of the dead-letter topic, if set.
    pub fn dead_letter_retention(&self) -> Option<Duration> {
        self.dead_letter_retention
    }

    /// The passthrough properties.
    pub fn properties(&self) -> &BTreeMap<String, String> {
        &self.properties
    }

    /// A librdkafka config with the brokers, `defaults`, then the passthrough properties.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Settings of producers: idempotent, `acks=all`, short linger for batching.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        self.client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "30000"),
        ])
    }

    /// Settings of every consumer this crate creates (the group consumer of the source and
    /// the recovery readers): no automatic commits, no end-of-partition events, and
    /// `fetch.queue.backoff.ms` = 20: librdkafka waits 1 s before fetching again once its
    /// prefetch queue was full, so a consumer slower than the fetcher (every consumer that
    /// decodes) stalls for a second each time the queue drains. Measured on the source:
    /// 1.5× the throughput with 20 ms. Public as [`Self::reader_client_config`].
    pub(crate) fn reader_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut all = vec![
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
            ("fetch.queue.backoff.ms", "20"),
        ];
        all.extend_from_slice(defaults);
        self.client_config(&all)
    }

    /// The librdkafka settings of this crate's own readers, for a consumer of your own (one
    /// that follows the transitions topic into a read model, say): the brokers, no automatic
    /// commits, `fetch.queue.backoff.ms` = 20 (librdkafka's 1 s default stalls a consumer that
    /// decodes each time it drains its prefetch queue), then the passthrough properties. Set
    /// `group.id` (and `auto.offset.reset`) before creating the consumer.
    ///
    /// ```
    /// use rdkafka::consumer::BaseConsumer;
    /// let config = order_fsm_kafka::KafkaConfig::new("localhost:9092");
    /// let consumer: BaseConsumer = config
    ///     .reader_client_config()
    ///     .set("group.id", "my-read-model")
    ///     .create()
    ///     .unwrap();
    /// # drop(consumer);
    /// ```
    pub fn reader_client_config(&self) -> ClientConfig {
        self.reader_config(&[])
    }

    /// Settings of group consumers: manual commits of finished offsets only, and the
    /// cooperative-sticky assignor: a rebalance moves only the partitions that change owner
    /// (the others keep their restored orders and timers), and tansu 0.6.0 hands a dead
    /// member's partitions to the survivors only under it (with the eager assignors its
    /// SyncGroup returns the previous generation's assignment). Every member of a group must
    /// use the same strategy; set `partition.assignment.strategy` to override it.
    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut config = self.reader_config(&[
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
        ]);
        config.set("group.id", &self.group);
        if let Some(group) = self.properties.get("group.id") {
            config.set("group.id", group);
        }
        config
    }
}

/// A boolean switch of the environment: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Some(true),
        "0" | "false" | "no" | "off" | "n" | "f" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secret_properties() {
        let config = KafkaConfig::new("b:9092")
            .with_property("sasl.password", "s3cret-value")
            .with_property("ssl.key.password", "other-secret")
            .with_property("security.protocol", "SASL_SSL");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret-value") && !shown.contains("other-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("SASL_SSL") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn switches() {
        for on in ["1", "true", "TRUE", " yes ", "on"] {
            assert_eq!(parse_switch(on), Some(true), "{on}");
        }
        for off in ["0", "false", "No", "off"] {
            assert_eq!(parse_switch(off), Some(false), "{off}");
        }
        assert_eq!(parse_switch("redact"), None);
    }
}
