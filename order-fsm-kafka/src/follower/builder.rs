//! How a follower is configured and created.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};

use super::lag::{FollowerProgress, LagMeter};
use super::{Assigned, KafkaFollower};
use crate::watchdog::{self, Signals};
use crate::{KafkaConfig, KafkaDeadLetterSink, KafkaError};

/// Where a follower whose group has no committed offsets starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFrom {
    /// The oldest transition still in the topic: nothing is missed (the default).
    Earliest,
    /// Transitions published from now on: for a destination that must not hear about the
    /// past (a mailer added to a shop with years of history, say).
    Latest,
}

/// Builds a [`KafkaFollower`].
#[derive(Clone, Debug)]
pub struct FollowerBuilder {
    config: KafkaConfig,
    name: String,
    group: Option<String>,
    batch_size: usize,
    batch_wait: Duration,
    start: StartFrom,
    commits: bool,
    lag_warning: u64,
}

impl FollowerBuilder {
    /// Its consumer group; the default is `{config.group()}-{name}`. Followers of one group
    /// share the topic's partitions (run several to scale one destination out); followers
    /// of different groups each see every transition.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Most records handed to the sink in one `publish` (default 500). After a crash at most
    /// one batch per partition is delivered again, so a destination that cannot dedupe
    /// repeats (e-mail) wants it small.
    #[must_use]
    pub fn with_batch_size(mut self, records: usize) -> Self {
        self.batch_size = records.max(1);
        self
    }

    /// Longest wait for more records once one arrived (default 20 ms).
    #[must_use]
    pub fn with_batch_wait(mut self, wait: Duration) -> Self {
        self.batch_wait = wait;
        self
    }

    /// Where to start without committed offsets (default [`StartFrom::Earliest`]).
    #[must_use]
    pub fn with_start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Commits no offsets and reads the whole topic at every start, in a group of its own:
    /// for an in-memory read model that is rebuilt each time its process starts.
    #[must_use]
    pub fn with_ephemeral(mut self) -> Self {
        self.commits = false;
        self.start = StartFrom::Earliest;
        self.group = Some(format!(
            "{}-{}-{}",
            self.config.group(),
            self.name,
            order_fsm::EventId::random()
        ));
        self
    }

    /// Lag (records not yet delivered) above which the follower logs a warning every 10 s
    /// (default 10,000).
    #[must_use]
    pub fn with_lag_warning(mut self, records: u64) -> Self {
        self.lag_warning = records;
        self
    }

    /// Creates the consumer and subscribes it to the transitions topic.
    ///
    /// # Errors
    /// [`KafkaError::Config`] for a bad property; client errors from the subscription.
    pub fn build(self) -> Result<KafkaFollower, KafkaError> {
        let group = self
            .group
            .unwrap_or_else(|| format!("{}-{}", self.config.group(), self.name));
        let reset = match self.start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let mut client = self.config.reader_config(&[
            ("enable.auto.offset.store", "false"),
            ("partition.assignment.strategy", "cooperative-sticky"),
        ]);
        // After the passthrough properties: a `group.id` meant for the workers must not put
        // a follower into their group.
        client
            .set("group.id", &group)
            .set("auto.offset.reset", reset);
        let consumer: Arc<StreamConsumer> = Arc::new(client.create()?);
        let topic = self.config.transitions_topic().to_owned();
        consumer.subscribe(&[&topic])?;
        let signals = Arc::new(Signals::default());
        if self.commits && self.start == StartFrom::Earliest {
            // An ephemeral follower commits nothing and is alone in its group; without
            // committed offsets a `Latest` follower's backlog is not `high - low`: neither
            // can tell an unserved partition from a quiet one.
            let assigned = Assigned {
                consumer: Arc::downgrade(&consumer),
                topic: topic.clone(),
            };
            watchdog::spawn(
                &self.config,
                &group,
                &topic,
                Arc::new(assigned),
                Arc::clone(&signals),
            )?;
        }
        let lag = LagMeter::new(
            Arc::clone(&consumer),
            topic.clone(),
            self.name.clone(),
            self.lag_warning,
            FollowerProgress::default(),
        );
        Ok(KafkaFollower {
            consumer,
            dead_letters: KafkaDeadLetterSink::new(&self.config)?.naming_origin(&topic),
            format: self.config.wire_format(),
            topic,
            name: self.name,
            group,
            batch_size: self.batch_size,
            batch_wait: self.batch_wait,
            commits: self.commits,
            lag,
            signals,
        })
    }
}

impl KafkaFollower {
    /// A builder for the follower `name` (it names the default group and the logs).
    pub fn builder(config: &KafkaConfig, name: impl Into<String>) -> FollowerBuilder {
        FollowerBuilder {
            config: config.clone(),
            name: name.into(),
            group: None,
            batch_size: 500,
            batch_wait: Duration::from_millis(20),
            start: StartFrom::Earliest,
            commits: true,
            lag_warning: 10_000,
        }
    }
}
