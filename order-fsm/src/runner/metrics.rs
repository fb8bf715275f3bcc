//! Latency and throughput measurement of the runner.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::telemetry::{self, RunnerHandles};
use crate::{
    LatencySummary, Lifecycle, MetricsRecord, MetricsSnapshot, StateId, Timestamp, Transition,
    TransitionLatency,
};

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 24 * 3_600 * 1_000_000, 3)
        .expect("static histogram bounds are valid")
}

#[derive(Clone, Default)]
struct Tally {
    placed: u64,
    transitions: u64,
    dead_lettered: u64,
    duplicates: u64,
    finished: HashMap<StateId, u64>,
    per_transition: HashMap<(StateId, StateId), Histogram<u64>>,
    end_to_end: Option<Histogram<u64>>,
    processing: Option<Histogram<u64>>,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.placed += other.placed;
        self.transitions += other.transitions;
        self.dead_lettered += other.dead_lettered;
        self.duplicates += other.duplicates;
        for (s, n) in &other.finished {
            *self.finished.entry(*s).or_default() += n;
        }
        for (k, h) in &other.per_transition {
            let _ = self
                .per_transition
                .entry(*k)
                .or_insert_with(histogram)
                .add(h);
        }
        for (mine, theirs) in [
            (&mut self.end_to_end, &other.end_to_end),
            (&mut self.processing, &other.processing),
        ] {
            if let Some(h) = theirs {
                let _ = mine.get_or_insert_with(histogram).add(h);
            }
        }
    }

    fn snapshot(&self, lifecycle: &Lifecycle, elapsed: Duration) -> MetricsSnapshot {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut finished: Vec<_> = self.finished.iter().collect();
        finished.sort();
        let finished_total: u64 = self.finished.values().sum();
        let mut per_transition: Vec<_> = self.per_transition.iter().collect();
        per_transition.sort_by_key(|((from, to), _)| (*from, *to));
        MetricsSnapshot {
            elapsed_secs: elapsed.as_secs_f64(),
            orders_placed: self.placed,
            transitions: self.transitions,
            orders_finished: finished
                .into_iter()
                .map(|(s, n)| (Cow::Borrowed(lifecycle.state_name(*s)), *n))
                .collect(),
            dead_lettered: self.dead_lettered,
            duplicates: self.duplicates,
            transitions_per_sec: self.transitions as f64 / secs,
            orders_finished_per_sec: finished_total as f64 / secs,
            per_transition: per_transition
                .into_iter()
                .map(|((from, to), h)| TransitionLatency {
                    from: Cow::Borrowed(lifecycle.state_name(*from)),
                    to: Cow::Borrowed(lifecycle.state_name(*to)),
                    latency: LatencySummary::from_histogram(h),
                })
                .collect(),
            end_to_end: self
                .end_to_end
                .as_ref()
                .map(LatencySummary::from_histogram)
                .unwrap_or_default(),
            processing: self
                .processing
                .as_ref()
                .map(LatencySummary::from_histogram)
                .unwrap_or_default(),
        }
    }
}

/// One worker's counters: cumulative, and the current window.
#[derive(Default)]
struct WorkerTally {
    total: Tally,
    window: Tally,
    live: RunnerHandles,
}

/// Shared measurement state: one lock per worker, so recording never contends.
pub(crate) struct Metrics {
    lifecycle: Arc<Lifecycle>,
    started: Instant,
    workers: Vec<Mutex<WorkerTally>>,
    window_started: Mutex<(Instant, Timestamp)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub(crate) fn new(lifecycle: Arc<Lifecycle>, workers: usize, now: Timestamp) -> Self {
        Self {
            lifecycle,
            started: Instant::now(),
            workers: (0..workers).map(|_| Mutex::default()).collect(),
            window_started: Mutex::new((Instant::now(), now)),
        }
    }

    /// Records what one worker did in one batch.
    pub(crate) fn record(&self, worker: usize, batch: &BatchTally) {
        let mut guard = lock(&self.workers[worker]);
        let WorkerTally {
            total,
            window,
            live,
        } = &mut *guard;
        live.record(
            &self.lifecycle,
            batch.placed,
            batch.duplicates,
            &batch.transitions,
            &batch.processing_micros,
        );
        for &reason in &batch.dead_letter_reasons {
            telemetry::dead_lettered(reason);
        }
        for tally in [total, window] {
            tally.placed += batch.placed;
            tally.dead_lettered += batch.dead_lettered;
            tally.duplicates += batch.duplicates;
            tally.transitions += batch.transitions.len() as u64;
            for (t, placed_at) in &batch.transitions {
                let _ = tally
                    .per_transition
                    .entry((t.from, t.to))
                    .or_insert_with(histogram)
                    .record(t.in_previous_state_micros.max(1));
                if t.terminal {
                    *tally.finished.entry(t.to).or_default() += 1;
                    let _ = tally
                        .end_to_end
                        .get_or_insert_with(histogram)
                        .record(t.at.micros_since(*placed_at).max(1));
                }
            }
            let processing = tally.processing.get_or_insert_with(histogram);
            for &us in &batch.processing_micros {
                let _ = processing.record(us.max(1));
            }
        }
    }

    /// Cumulative figures since the runner started.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let mut all = Tally::default();
        for w in &self.workers {
            all.merge(&lock(w).total);
        }
        all.snapshot(&self.lifecycle, self.started.elapsed())
    }

    /// The figures of the window that ends now; starts the next one.
    pub(crate) fn take_window(&self, now: Timestamp) -> MetricsRecord {
        let (started, window_start) =
            std::mem::replace(&mut *lock(&self.window_started), (Instant::now(), now));
        let mut all = Tally::default();
        for w in &self.workers {
            all.merge(&std::mem::take(&mut lock(w).window));
        }
        MetricsRecord {
            window_start,
            window_end: now,
            metrics: all.snapshot(&self.lifecycle, started.elapsed()),
        }
    }
}

/// What one batch did, gathered by a worker and recorded in one lock.
#[derive(Default)]
pub(crate) struct BatchTally {
    pub(crate) placed: u64,
    pub(crate) dead_lettered: u64,
    /// [`crate::Error::kind`] of each dead letter.
    pub(crate) dead_letter_reasons: Vec<&'static str>,
    pub(crate) duplicates: u64,
    /// Each transition with its order's placement time.
    pub(crate) transitions: Vec<(Transition, Timestamp)>,
    pub(crate) processing_micros: Vec<u64>,
}

impl BatchTally {
    pub(crate) fn clear(&mut self) {
        self.placed = 0;
        self.dead_lettered = 0;
        self.dead_letter_reasons.clear();
        self.duplicates = 0;
        self.transitions.clear();
        self.processing_micros.clear();
    }
}
