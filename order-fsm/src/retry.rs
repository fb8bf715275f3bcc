//! Retries: an exponential backoff policy, and a wrapper that retries any sink with it.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    DeadLetter, DeadLetterSink, Error, MetricsRecord, MetricsSink, TransitionRecord, TransitionSink,
};

/// Exponential backoff for retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, including the first; `None` retries until success or a fatal error.
    pub max_attempts: Option<u32>,
    /// Wait after the first failure.
    pub initial_backoff: Duration,
    /// Upper bound of the wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Some(8),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// At most `attempts` attempts in all (the first included).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Retries until success or a fatal error.
    #[must_use]
    pub fn forever(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// The backoffs: `initial` after the first failure, doubling up to `max`.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1), doubling each time.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Whether another attempt is allowed after `attempt` failures.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt < max)
    }

    /// Runs `op` until it succeeds, fails fatally, or attempts run out.
    ///
    /// # Errors
    /// The first fatal error, or the last retryable one when attempts run out.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && self.allows(attempt) => {
                    tracing::debug!(attempt, error = %e, "retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Wraps a sink of any of the three kinds ([`TransitionSink`], [`DeadLetterSink`],
/// [`MetricsSink`]) and retries retryable failures with exponential backoff; fatal errors pass
/// through at once.
///
/// ```
/// # use order_fsm::{MemorySink, Retrying, RetryPolicy, TransitionSink};
/// let sink = Retrying::new(MemorySink::new(), RetryPolicy::default());
/// # let _: &dyn TransitionSink = &sink;
/// ```
#[derive(Debug, Clone)]
pub struct Retrying<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Retrying<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: TransitionSink> TransitionSink for Retrying<S> {
    async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error> {
        self.policy.run(|| self.inner.publish(records)).await
    }
}

#[async_trait]
impl<S: DeadLetterSink> DeadLetterSink for Retrying<S> {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error> {
        self.policy.run(|| self.inner.dead_letter(letter)).await
    }
}

#[async_trait]
impl<S: MetricsSink> MetricsSink for Retrying<S> {
    async fn record(&self, metrics: &MetricsRecord) -> Result<(), Error> {
        self.policy.run(|| self.inner.record(metrics)).await
    }
}
