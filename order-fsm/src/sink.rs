//! Sinks for transitions, dead letters and metrics, and fan-out to several transition sinks.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{DeadLetter, Error, MetricsRecord, TransitionRecord};

/// Where transitions go: a Kafka topic, an index, an e-mail notifier, ...
///
/// # Contract
/// - **Batches**: `publish` gets records in the order they happened; records of one order are
///   in version order. An `Ok` means every record of the batch is durable at the
///   destination; an `Err` means the caller must assume none is, and will publish the whole
///   batch again.
/// - **Idempotence**: a record may be published more than once (after a failure or a crash).
///   A destination that keys records keys them by `(order_id, version)` so a repeat does not
///   duplicate anything.
/// - **Errors**: [`Error::Unavailable`] when retrying may help (the runner retries with
///   backoff and does not acknowledge meanwhile), any other error when it cannot (the runner
///   stops).
/// - **Concurrency**: `publish` may be called from several workers at once.
#[async_trait]
pub trait TransitionSink: Send + Sync {
    /// Publishes a batch of records.
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error>;
}

/// Where rejected commands go, with their reason.
///
/// # Contract
/// `Ok` means the letter is durable; the runner acknowledges the command only then. Errors
/// follow [`TransitionSink`]'s rules.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores one dead letter.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error>;
}

/// Where periodic metric records go (an index, a log, ...).
///
/// # Contract
/// Best effort: the runner logs a failure and goes on; metrics never hold up orders.
#[async_trait]
pub trait MetricsSink: Send + Sync {
    /// Records one metrics window.
    async fn record(&self, metrics: &MetricsRecord) -> Result<(), Error>;
}

macro_rules! forward_sink_impls {
    ($($wrapper:ty),*) => {$(
        #[async_trait]
        impl<S: TransitionSink + ?Sized> TransitionSink for $wrapper {
            async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
                (**self).publish(records).await
            }
        }
        #[async_trait]
        impl<S: DeadLetterSink + ?Sized> DeadLetterSink for $wrapper {
            async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error> {
                (**self).dead_letter(letter).await
            }
        }
        #[async_trait]
        impl<S: MetricsSink + ?Sized> MetricsSink for $wrapper {
            async fn record(&self, metrics: &MetricsRecord) -> Result<(), Error> {
                (**self).record(metrics).await
            }
        }
    )*};
}
forward_sink_impls!(Arc<S>, Box<S>);

/// Publishes every batch to several sinks concurrently; succeeds only if all of them do.
///
/// When several fail, the error returned is a fatal one if any is fatal, so that a retry
/// loop does not spin on a sink that will never accept.
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn TransitionSink>>,
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl FanOut {
    /// A fan-out over `sinks`.
    pub fn new(sinks: Vec<Arc<dyn TransitionSink>>) -> Self {
        Self { sinks }
    }

    /// Adds a sink.
    #[must_use]
    pub fn with(mut self, sink: impl TransitionSink + 'static) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Publishes `records` to the sinks that have not accepted them yet (`accepted[i]` false
    /// for sink `i`; a shorter slice counts as none accepted) and marks those that do, so a
    /// retry after one sink failed does not publish again to the others. The error is as for
    /// [`TransitionSink::publish`], naming the failing sink's backend.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use order_fsm::{FanOut, MemorySink, TransitionSink};
    /// let (a, b) = (Arc::new(MemorySink::new()), Arc::new(MemorySink::new()));
    /// let fan_out = FanOut::new(vec![a.clone(), b.clone()]);
    /// let mut accepted = vec![true, false]; // `a` took them already
    /// fan_out.publish_pending(&[], &mut accepted).await.unwrap();
    /// assert_eq!(accepted, [true, true]);
    /// # });
    /// ```
    ///
    /// # Errors
    /// A fatal error if any sink failed fatally, else a retryable one if any failed.
    pub async fn publish_pending(
        &self,
        records: &[TransitionRecord],
        accepted: &mut Vec<bool>,
    ) -> Result<(), Error> {
        accepted.resize(self.sinks.len(), false);
        let pending: Vec<usize> = (0..self.sinks.len()).filter(|&i| !accepted[i]).collect();
        let results =
            futures_util::future::join_all(pending.iter().map(|&i| self.sinks[i].publish(records)))
                .await;
        let mut retryable = None;
        let mut fatal = None;
        for (&i, result) in pending.iter().zip(results) {
            match result {
                Ok(()) => accepted[i] = true,
                Err(e) if e.is_retryable() => retryable = Some(e),
                Err(e) => fatal = Some(e),
            }
        }
        fatal.or(retryable).map_or(Ok(()), Err)
    }

    /// The number of sinks.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether there are no sinks.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

#[async_trait]
impl TransitionSink for FanOut {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        self.publish_pending(records, &mut Vec::new()).await
    }
}
