//! The live dashboard: `GET /dashboard` (one self-contained HTML page, its script and chart
//! code included, nothing fetched from elsewhere) polling `GET /dashboard/data` every
//! second.
//!
//! [`Dashboard`] is fed by the intake's read model (every transition record it applies), so
//! it shows the whole system, every worker's orders: throughput per second since the first
//! order, latency percentiles per transition, orders per state, and the original systems'
//! breakdowns of placed orders per bank, region and payment gateway.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use hdrhistogram::Histogram;
use order_fsm::{Lifecycle, StateId, TransitionRecord};
use serde::Serialize;

/// Seconds of throughput the page shows.
pub const SECONDS_SHOWN: usize = 120;
/// Distinct values a breakdown counts by name; more are counted as `"(other)"`.
pub const BREAKDOWN_KEYS: usize = 64;

const PAGE: &str = include_str!("dashboard.html");

/// What the page draws, as `GET /dashboard/data` serves it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DashboardData {
    /// One point per second (by the records' own time), oldest first, starting at the
    /// first order seen and ending at the latest record; at most [`SECONDS_SHOWN`].
    pub throughput: Vec<Second>,
    /// Orders per state, in the lifecycle's order.
    pub states: Vec<Count>,
    /// Time in `from` before each transition, in milliseconds.
    pub latency: Vec<TransitionLatencyMs>,
    /// Orders placed per bank, most first.
    pub by_bank: Vec<Count>,
    /// Orders placed per region, most first.
    pub by_region: Vec<Count>,
    /// Orders placed per payment gateway, most first.
    pub by_gateway: Vec<Count>,
}

/// One second of throughput.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Second {
    /// Unix time, in seconds.
    pub unix_secs: u64,
    /// Orders placed.
    pub placed: u64,
    /// Orders that reached a terminal state.
    pub finished: u64,
    /// State changes.
    pub transitions: u64,
}

/// A named count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    /// What is counted.
    pub name: String,
    /// How many.
    pub count: u64,
}

/// Percentiles of one transition's latency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TransitionLatencyMs {
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// The live figures behind the page; cheap to feed (one lock per applied batch).
pub struct Dashboard {
    lifecycle: Arc<Lifecycle>,
    inner: Mutex<Inner>,
    orders_per_state: Arc<OrdersPerState>,
}

/// How many orders are in each state, by the latest record of each: counted once by the
/// read model that applies the records ([`crate::projection::ReadModel`]), exported as the
/// live gauge [`order_fsm::telemetry::ORDERS`] and shown by the dashboard.
pub struct OrdersPerState {
    lifecycle: Arc<Lifecycle>,
    /// Per state, in the lifecycle's order: the count and its gauge.
    states: Vec<(AtomicI64, metrics::Gauge)>,
}

impl OrdersPerState {
    /// Zero orders in every state of `lifecycle`.
    pub fn new(lifecycle: Arc<Lifecycle>) -> Self {
        let states = lifecycle
            .states()
            .map(|state| {
                let name = lifecycle.state_name(state);
                let gauge = metrics::gauge!(order_fsm::telemetry::ORDERS, "state" => name);
                (AtomicI64::new(0), gauge)
            })
            .collect();
        Self { lifecycle, states }
    }

    /// Moves each applied record's order from its `from` state to its `to` state.
    pub fn count(&self, applied: &[TransitionRecord]) {
        let state = |name: &str| {
            let state = self.lifecycle.state(name)?;
            self.states.get(state.index())
        };
        for record in applied {
            if let Some((count, gauge)) = record.from.as_deref().and_then(state) {
                count.fetch_sub(1, Ordering::Relaxed);
                gauge.decrement(1.0);
            }
            if let Some((count, gauge)) = state(&record.to) {
                count.fetch_add(1, Ordering::Relaxed);
                gauge.increment(1.0);
            }
        }
    }

    /// The counts, in the lifecycle's order.
    pub fn counts(&self) -> Vec<Count> {
        self.lifecycle
            .states()
            .zip(&self.states)
            .map(|(state, (count, _))| Count {
                name: self.lifecycle.state_name(state).to_owned(),
                count: u64::try_from(count.load(Ordering::Relaxed)).unwrap_or(0),
            })
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    seconds: VecDeque<Second>,
    latency: HashMap<(StateId, StateId), Histogram<u64>>,
    by_bank: HashMap<String, u64>,
    by_region: HashMap<String, u64>,
    by_gateway: HashMap<String, u64>,
}

fn count_in(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < BREAKDOWN_KEYS {
        map.insert(key.to_owned(), 1);
    } else {
        *map.entry("(other)".to_owned()).or_default() += 1;
    }
}

fn ranked(map: &HashMap<String, u64>) -> Vec<Count> {
    let mut counts: Vec<Count> = map
        .iter()
        .map(|(name, &count)| Count {
            name: name.clone(),
            count,
        })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    counts
}

impl Inner {
    /// The second `unix_secs`, created (with the empty seconds before it) when new; `None`
    /// when it is older than the seconds kept.
    fn second(&mut self, unix_secs: u64) -> Option<&mut Second> {
        let first = match self.seconds.front() {
            Some(s) => s.unix_secs,
            None => {
                self.seconds.push_back(Second {
                    unix_secs,
                    ..Second::default()
                });
                unix_secs
            }
        };
        if unix_secs < first {
            return None;
        }
        while self.seconds.back().is_some_and(|s| s.unix_secs < unix_secs) {
            let next = self.seconds.back().map_or(unix_secs, |s| s.unix_secs + 1);
            self.seconds.push_back(Second {
                unix_secs: next,
                ..Second::default()
            });
        }
        while self.seconds.len() > SECONDS_SHOWN {
            self.seconds.pop_front();
        }
        let index = usize::try_from(unix_secs - self.seconds.front()?.unix_secs).ok()?;
        self.seconds.get_mut(index)
    }
}

impl Dashboard {
    /// An empty dashboard for orders of `lifecycle`.
    pub fn new(lifecycle: Arc<Lifecycle>) -> Self {
        Self {
            orders_per_state: Arc::new(OrdersPerState::new(Arc::clone(&lifecycle))),
            lifecycle,
            inner: Mutex::default(),
        }
    }

    /// The per-state counts it shows; the read model that feeds it keeps them.
    pub fn orders_per_state(&self) -> &Arc<OrdersPerState> {
        &self.orders_per_state
    }

    /// Takes in records a read model applied (each order's versions once, in order).
    pub fn observe(&self, applied: &[TransitionRecord]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for record in applied {
            let unix_secs = record.at.as_micros() / 1_000_000;
            if let Some(second) = inner.second(unix_secs) {
                match (&record.from, record.terminal) {
                    (None, _) => second.placed += 1,
                    (Some(_), true) => {
                        second.transitions += 1;
                        second.finished += 1;
                    }
                    (Some(_), false) => second.transitions += 1,
                }
            }
            if let Some(from) = &record.from {
                let states = (self.lifecycle.state(from), self.lifecycle.state(&record.to));
                if let (Some(from), Some(to)) = states {
                    let histogram = inner.latency.entry((from, to)).or_insert_with(|| {
                        Histogram::new_with_bounds(1, 24 * 3_600 * 1_000_000, 2)
                            .expect("static bounds are valid")
                    });
                    let _ = histogram.record(record.in_previous_state_micros.max(1));
                }
            } else {
                let purchase = &record.purchase;
                count_in(&mut inner.by_bank, &purchase.bank);
                count_in(&mut inner.by_region, &purchase.region);
                count_in(&mut inner.by_gateway, &purchase.payment_gateway);
            }
        }
    }

    /// What the page draws now.
    pub fn data(&self) -> DashboardData {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        let name = |s: StateId| self.lifecycle.state_name(s);
        let mut latency: Vec<_> = inner.latency.iter().collect();
        latency.sort_by_key(|((from, to), _)| (from.index(), name(*to)));
        DashboardData {
            throughput: inner.seconds.iter().cloned().collect(),
            states: self.orders_per_state.counts(),
            latency: latency
                .into_iter()
                .map(|(&(from, to), h)| TransitionLatencyMs {
                    from: name(from).to_owned(),
                    to: name(to).to_owned(),
                    count: h.len(),
                    p50_ms: ms(h, 0.50),
                    p90_ms: ms(h, 0.90),
                    p99_ms: ms(h, 0.99),
                })
                .collect(),
            by_bank: ranked(&inner.by_bank),
            by_region: ranked(&inner.by_region),
            by_gateway: ranked(&inner.by_gateway),
        }
    }

    /// `GET /dashboard` and `GET /dashboard/data`, to merge into an HTTP router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/dashboard", get(|| async { Html(PAGE) }))
            .route("/dashboard/data", get(data))
            .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
            .with_state(self)
    }
}

async fn data(State(dashboard): State<Arc<Dashboard>>) -> impl IntoResponse {
    Json(dashboard.data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_states_seconds_latencies_and_breakdowns_from_records() {
        use order_fsm::TransitionSink;
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let dashboard = Arc::new(Dashboard::new(Arc::clone(&lifecycle)));
        // Fed as in the intake: through the read model, which keeps the per-state counts.
        let model = crate::projection::ReadModel::new(
            Arc::clone(&lifecycle),
            Arc::new(order_fsm::MemoryStore::new()),
            order_fsm_grpc::WatchHub::default(),
        )
        .with_dashboard(Arc::clone(&dashboard));
        let records = order_fsm::testing::sample_records(); // placed .. completed
        model.publish(&records).await.unwrap();
        let second = order_fsm::testing::sample_records();
        model.publish(&second[..2]).await.unwrap(); // a second order, still preparing
        let data = dashboard.data();
        let count = |name: &str| data.states.iter().find(|c| c.name == name).unwrap().count;
        assert_eq!(count("completed"), 1);
        assert_eq!(count("preparing"), 1);
        assert_eq!(count("processing"), 0);
        let placed: u64 = data.throughput.iter().map(|s| s.placed).sum();
        let finished: u64 = data.throughput.iter().map(|s| s.finished).sum();
        assert_eq!((placed, finished), (2, 1));
        assert_eq!(
            data.latency.len(),
            records.len() - 1,
            "one row per transition"
        );
        assert_eq!(data.latency[0].from, "processing", "lifecycle order");
        assert_eq!(data.latency[0].count, 2);
        assert_eq!(data.by_bank[0].count, 2);
        assert_eq!(data.by_bank[0].name, records[0].purchase.bank);
    }

    #[test]
    fn keeps_a_bounded_window_of_seconds_and_of_breakdown_keys() {
        let mut inner = Inner::default();
        inner.second(1_000).unwrap().placed += 1;
        inner
            .second(1_000 + SECONDS_SHOWN as u64 + 9)
            .unwrap()
            .placed += 1;
        assert_eq!(inner.seconds.len(), SECONDS_SHOWN);
        assert!(inner.second(1_000).is_none(), "older than the window");
        let mut map = HashMap::new();
        for i in 0..BREAKDOWN_KEYS + 10 {
            count_in(&mut map, &format!("bank {i}"));
        }
        assert_eq!(map.len(), BREAKDOWN_KEYS + 1);
        assert_eq!(map["(other)"], 10);
    }
}
