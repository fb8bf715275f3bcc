//! Live metrics through the [`metrics`](https://docs.rs/metrics) facade: what every process
//! of an order-fsm system reports, under names that follow Prometheus' conventions
//! (`_total` for counters, base units, `_seconds`).
//!
//! The runner, the Kafka source and followers and the intakes record into whatever
//! recorder the program installs (for instance `metrics-exporter-prometheus`, which the
//! example programs serve at `GET /metrics` with `--metrics-addr`). Without a recorder every
//! call is a no-op, so a library user pays nothing for metrics they do not read.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`ORDERS_PLACED`] | counter | | orders placed by the runner |
//! | [`TRANSITIONS`] | counter | `from`, `to` | state changes by the runner |
//! | [`COMMANDS_ACKED`] | counter | | commands the runner acknowledged (applied, duplicate or dead-lettered) |
//! | [`DUPLICATE_COMMANDS`] | counter | | redelivered commands recognised as duplicates |
//! | [`DEAD_LETTERS`] | counter | `reason` | commands sent to the dead-letter destination, by [`crate::Error::kind`] (`decode`, `key_mismatch` from the Kafka source) |
//! | [`REFUSED_REQUESTS`] | counter | `api`, `code` | requests an intake answered with an error (`api` = `grpc` with the status code's name, or `http` with the status number) |
//! | [`TRANSITION_SECONDS`] | histogram | `from`, `to` | time an order spent in `from` before moving to `to` |
//! | [`ORDER_SECONDS`] | histogram | | placement to terminal state |
//! | [`COMMAND_ACK_SECONDS`] | histogram | | the runner receiving a command to acknowledging it |
//! | [`IN_FLIGHT_BATCHES`] | gauge | | batches the runner's workers are processing, from planning to acknowledgement (with a state log up to two per worker: one being published, the next being made durable) |
//! | [`ORDERS`] | gauge | `state` | orders in each state, as a read model (the intake's) has seen them |
//! | [`CONSUMER_LAG`] | gauge | `group`, `partition` | commands the workers' group has not committed yet (measured by an intake that watches the backlog) |
//! | [`FOLLOWER_LAG`] | gauge | `follower`, `partition` | records of the transitions topic a follower has not processed |

use std::collections::HashMap;

use crate::{Lifecycle, StateId, Timestamp, Transition};

/// Counter: orders placed by the runner.
pub const ORDERS_PLACED: &str = "order_fsm_orders_placed_total";
/// Counter: state changes by the runner, labelled `from` and `to`.
pub const TRANSITIONS: &str = "order_fsm_transitions_total";
/// Counter: commands the runner acknowledged.
pub const COMMANDS_ACKED: &str = "order_fsm_commands_acked_total";
/// Counter: redelivered commands recognised as duplicates.
pub const DUPLICATE_COMMANDS: &str = "order_fsm_duplicate_commands_total";
/// Counter: dead letters, labelled `reason`.
pub const DEAD_LETTERS: &str = "order_fsm_dead_letters_total";
/// Counter: requests an intake answered with an error, labelled `api` and `code`.
pub const REFUSED_REQUESTS: &str = "order_fsm_refused_requests_total";
/// Histogram: seconds in `from` before moving to `to`.
pub const TRANSITION_SECONDS: &str = "order_fsm_transition_seconds";
/// Histogram: seconds from placement to a terminal state.
pub const ORDER_SECONDS: &str = "order_fsm_order_seconds";
/// Histogram: seconds from the runner receiving a command to acknowledging it.
pub const COMMAND_ACK_SECONDS: &str = "order_fsm_command_ack_seconds";
/// Gauge: batches in flight in the runner.
pub const IN_FLIGHT_BATCHES: &str = "order_fsm_in_flight_batches";
/// Gauge: orders per state in a read model, labelled `state`.
pub const ORDERS: &str = "order_fsm_orders";
/// Gauge: the workers' consumer lag on the commands topic, labelled `group` and `partition`.
pub const CONSUMER_LAG: &str = "order_fsm_consumer_lag_records";
/// Gauge: a follower's lag in records, labelled `follower` and `partition`.
pub const FOLLOWER_LAG: &str = "order_fsm_follower_lag_records";

/// Every metric above (histograms are also exposed with `_bucket`, `_sum` and `_count`).
pub const ALL: &[&str] = &[
    ORDERS_PLACED,
    TRANSITIONS,
    COMMANDS_ACKED,
    DUPLICATE_COMMANDS,
    DEAD_LETTERS,
    REFUSED_REQUESTS,
    TRANSITION_SECONDS,
    ORDER_SECONDS,
    COMMAND_ACK_SECONDS,
    IN_FLIGHT_BATCHES,
    ORDERS,
    CONSUMER_LAG,
    FOLLOWER_LAG,
];

/// Counts one request of `api` (`"grpc"`, `"http"`) answered with the error `code` (a
/// status code's name or number: a small fixed set).
pub fn refused(api: &'static str, code: impl Into<std::borrow::Cow<'static, str>>) {
    let code: std::borrow::Cow<'static, str> = code.into();
    metrics::counter!(REFUSED_REQUESTS, "api" => api, "code" => code).increment(1);
}

/// Counts one dead letter for `reason` (a short fixed word, see [`crate::Error::kind`]).
pub fn dead_lettered(reason: &'static str) {
    metrics::counter!(DEAD_LETTERS, "reason" => reason).increment(1);
}

/// Marks a batch in flight for as long as the guard lives.
pub(crate) struct InFlight(metrics::Gauge);

impl InFlight {
    pub(crate) fn start() -> Self {
        let gauge = metrics::gauge!(IN_FLIGHT_BATCHES);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// One runner worker's handles, registered on first use so that a batch costs a few
/// atomic adds, not a registry lookup per transition.
#[derive(Default)]
pub(crate) struct RunnerHandles {
    placed: Option<metrics::Counter>,
    acked: Option<metrics::Counter>,
    duplicates: Option<metrics::Counter>,
    order_seconds: Option<metrics::Histogram>,
    ack_seconds: Option<metrics::Histogram>,
    transitions: HashMap<(StateId, StateId), (metrics::Counter, metrics::Histogram)>,
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

impl RunnerHandles {
    /// Reports one batch: what [`crate::Runner::metrics`] tallies, as live metrics.
    pub(crate) fn record(
        &mut self,
        lifecycle: &Lifecycle,
        placed: u64,
        duplicates: u64,
        transitions: &[(Transition, Timestamp)],
        processing_micros: &[u64],
    ) {
        if placed > 0 {
            self.placed
                .get_or_insert_with(|| metrics::counter!(ORDERS_PLACED))
                .increment(placed);
        }
        if duplicates > 0 {
            self.duplicates
                .get_or_insert_with(|| metrics::counter!(DUPLICATE_COMMANDS))
                .increment(duplicates);
        }
        for (t, placed_at) in transitions {
            let (count, latency) = self.transitions.entry((t.from, t.to)).or_insert_with(|| {
                let (from, to) = (lifecycle.state_name(t.from), lifecycle.state_name(t.to));
                (
                    metrics::counter!(TRANSITIONS, "from" => from, "to" => to),
                    metrics::histogram!(TRANSITION_SECONDS, "from" => from, "to" => to),
                )
            });
            count.increment(1);
            latency.record(seconds(t.in_previous_state_micros));
            if t.terminal {
                self.order_seconds
                    .get_or_insert_with(|| metrics::histogram!(ORDER_SECONDS))
                    .record(seconds(t.at.micros_since(*placed_at)));
            }
        }
        if !processing_micros.is_empty() {
            self.acked
                .get_or_insert_with(|| metrics::counter!(COMMANDS_ACKED))
                .increment(processing_micros.len() as u64);
            let ack = self
                .ack_seconds
                .get_or_insert_with(|| metrics::histogram!(COMMAND_ACK_SECONDS));
            for &us in processing_micros {
                ack.record(seconds(us));
            }
        }
    }
}
