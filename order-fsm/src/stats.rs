//! What a runner measured, as plain data: latency summaries and metrics snapshots and windows.

use std::borrow::Cow;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Count, mean and percentiles of a latency distribution, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl LatencySummary {
    /// The summary of an HDR histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// Latency of one kind of state change: the time an order spent in `from` before moving to
/// `to` (dwell plus queueing plus processing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransitionLatency {
    /// State before.
    pub from: Cow<'static, str>,
    /// State after.
    pub to: Cow<'static, str>,
    /// The distribution.
    pub latency: LatencySummary,
}

impl TransitionLatency {
    /// The `latency` of changes from `from` to `to`.
    pub fn new(
        from: impl Into<Cow<'static, str>>,
        to: impl Into<Cow<'static, str>>,
        latency: LatencySummary,
    ) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            latency,
        }
    }
}

/// What the runner measured, cumulative since it started ([`crate::Runner::metrics`]) or over
/// one window ([`MetricsRecord`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Seconds covered.
    pub elapsed_secs: f64,
    /// Orders placed.
    pub orders_placed: u64,
    /// State changes (placements not included).
    pub transitions: u64,
    /// Orders that reached each terminal state, by state name.
    pub orders_finished: Vec<(Cow<'static, str>, u64)>,
    /// Commands sent to the dead-letter destination.
    pub dead_lettered: u64,
    /// Redelivered commands recognised as duplicates.
    pub duplicates: u64,
    /// `transitions / elapsed_secs`.
    pub transitions_per_sec: f64,
    /// Orders reaching a terminal state per second.
    pub orders_finished_per_sec: f64,
    /// Time in each state before each kind of state change.
    pub per_transition: Vec<TransitionLatency>,
    /// Placement to terminal state.
    pub end_to_end: LatencySummary,
    /// From the runner receiving a command to acknowledging it (store and sinks included).
    pub processing: LatencySummary,
}

impl MetricsSnapshot {
    /// Orders that reached a terminal state, whichever.
    pub fn orders_finished_total(&self) -> u64 {
        self.orders_finished.iter().map(|(_, n)| n).sum()
    }

    /// Orders that reached the terminal state named `state`.
    pub fn finished_in(&self, state: &str) -> u64 {
        self.orders_finished
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    }
}

/// One window of metrics, emitted periodically to a [`crate::MetricsSink`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsRecord {
    /// Start of the window.
    pub window_start: Timestamp,
    /// End of the window.
    pub window_end: Timestamp,
    /// What happened in the window.
    pub metrics: MetricsSnapshot,
}

impl MetricsRecord {
    /// What happened between `window_start` and `window_end`.
    pub fn new(window_start: Timestamp, window_end: Timestamp, metrics: MetricsSnapshot) -> Self {
        Self {
            window_start,
            window_end,
            metrics,
        }
    }
}
