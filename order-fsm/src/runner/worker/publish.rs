//! Publishing a durable batch while the next one is planned and made durable.
//!
//! With a state log a batch is durable once the log holds it; what is left, publishing its
//! records and acknowledging its commands, needs no decision of the worker. So the worker
//! hands the publish to a task and goes on with the next batch, up to its state log write,
//! and only then waits for the previous publish: a batch costs one broker round trip of
//! latency instead of two. At most one publish is in flight per worker, and the next one
//! starts after it finished, so an order's records still reach the sinks in version order
//! and commands are acknowledged in the order they came.
//!
//! A change written while the previous batch is in flight records, as published, only what
//! that batch's change recorded for the same order: a crash before the publish finished
//! then republishes both batches' records on restore (see `StateChange::published_up_to`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Interrupted, Work, Worker};
use crate::runner::metrics::BatchTally;
use crate::runner::Shared;
use crate::telemetry::InFlight;
use crate::{Error, OrderId, TransitionRecord};

/// What is left of a batch once its records are published.
pub(super) struct Settle {
    /// The batch's items (commands to acknowledge).
    pub(super) work: Vec<Work>,
    /// Orders written, by partition, and whether each is now finished.
    pub(super) held: Vec<(i32, OrderId, bool)>,
    /// Advances to schedule: order, version to advance from, delay.
    pub(super) timers: Vec<(OrderId, u64, Duration)>,
    pub(super) tally: BatchTally,
    pub(super) in_flight: InFlight,
}

/// A durable batch whose records are being published.
pub(super) struct Publishing {
    task: JoinHandle<Result<(), Interrupted>>,
    settle: Settle,
    /// Each order of the batch with the version it had before the batch: published, since
    /// a batch is in flight only once the one before it is published.
    published_up_to: HashMap<OrderId, u64>,
}

impl Publishing {
    /// The version of `order` whose records are surely published: below this batch's, if
    /// the batch changed the order.
    pub(super) fn published_up_to(&self, order: OrderId) -> Option<u64> {
        self.published_up_to.get(&order).copied()
    }

    /// Gives the publish up (the worker failed): returns how many commands stay
    /// unacknowledged.
    pub(super) fn abandon(self) -> u64 {
        self.task.abort();
        commands_in(&self.settle.work)
    }
}

impl Worker {
    /// Starts publishing `records` of a durable batch; `settle` runs once they are.
    pub(super) fn start_publishing(
        &mut self,
        records: Vec<TransitionRecord>,
        published_up_to: HashMap<OrderId, u64>,
        settle: Settle,
    ) {
        debug_assert!(self.publishing.is_none(), "one publish in flight at a time");
        let (shared, mut stop, worker) = (Arc::clone(&self.shared), self.stop.clone(), self.id);
        let task = tokio::spawn(async move { publish(&shared, &mut stop, worker, &records).await });
        self.publishing = Some(Publishing {
            task,
            settle,
            published_up_to,
        });
    }

    /// Waits for the batch in flight, if any, to be published, then settles it.
    pub(super) async fn finish_publishing(&mut self) -> Result<(), Interrupted> {
        let result = wait(&mut self.publishing).await;
        self.published(result)
    }

    /// Settles the batch in flight if its publish already ended (a failure shows here too).
    pub(super) fn settle_if_published(&mut self) -> Result<(), Interrupted> {
        if !self
            .publishing
            .as_ref()
            .is_some_and(|p| p.task.is_finished())
        {
            return Ok(());
        }
        // Finished, so this does not wait (or, if tokio's budget says so, it waits for later).
        match futures_util::FutureExt::now_or_never(wait(&mut self.publishing)) {
            Some(result) => self.published(result),
            None => Ok(()),
        }
    }

    /// Settles the batch in flight after its publish ended with `result`: acknowledges it,
    /// or leaves its commands for redelivery.
    pub(super) fn published(&mut self, result: Result<(), Interrupted>) -> Result<(), Interrupted> {
        let Some(publishing) = self.publishing.take() else {
            return result;
        };
        match result {
            Ok(()) => {
                self.settle(publishing.settle);
                Ok(())
            }
            Err(interrupted) => {
                self.abandoned += commands_in(&publishing.settle.work);
                Err(interrupted)
            }
        }
    }

    /// Acknowledges a published batch, holds its orders and arms its timers.
    pub(super) fn settle(&mut self, settle: Settle) {
        let Settle {
            mut work,
            held,
            timers,
            mut tally,
            in_flight,
        } = settle;
        let now = Instant::now();
        for item in work.drain(..) {
            if let Work::Command { envelope, received } = item {
                envelope.ack.ack();
                self.acked += 1;
                tally
                    .processing_micros
                    .push(received.elapsed().as_micros() as u64);
            }
        }
        let mut partitions: HashMap<OrderId, i32> = HashMap::new();
        for &(partition, order, terminal) in &held {
            self.ownership.hold(partition, order, terminal, now);
            if !timers.is_empty() {
                partitions.insert(order, partition);
            }
        }
        for (order_id, version, delay) in timers {
            let owner = partitions
                .get(&order_id)
                .map(|&p| (p, self.ownership.epoch(p)));
            self.arm(order_id, version, owner, delay);
        }
        self.shared.metrics.record(self.id, &tally);
        drop(in_flight);
        tally.clear();
        self.spare = Some((work, tally));
    }
}

/// The commands among `work`.
pub(super) fn commands_in(work: &[Work]) -> u64 {
    work.iter()
        .filter(|w| matches!(w, Work::Command { .. }))
        .count() as u64
}

/// Waits for the publish in flight to end (at once when there is none).
pub(super) async fn wait(publishing: &mut Option<Publishing>) -> Result<(), Interrupted> {
    let Some(publishing) = publishing else {
        return Ok(());
    };
    match (&mut publishing.task).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Interrupted::Stopped), // cancelled: the runtime is shutting down
    }
}

/// Publishes `records` to every sink, retrying only the sinks that failed (the others
/// already have the records).
pub(super) async fn publish(
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    worker: usize,
    records: &[TransitionRecord],
) -> Result<(), Interrupted> {
    let Some(sink) = &shared.sink else {
        return Ok(());
    };
    let (mut attempt, mut accepted) = (0, Vec::new());
    while let Err(e) = sink.publish_pending(records, &mut accepted).await {
        retry_after(shared, stop, worker, &mut attempt, e, "transition sink").await?;
    }
    Ok(())
}

/// Waits before another attempt after `error`, or gives up on it (not retryable, attempts
/// exhausted, or the worker stopped meanwhile).
pub(super) async fn retry_after(
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    worker: usize,
    attempt: &mut u32,
    error: Error,
    what: &str,
) -> Result<(), Interrupted> {
    if !(error.is_retryable() && shared.retry.allows(*attempt + 1)) {
        return Err(Interrupted::Failed(error));
    }
    *attempt += 1;
    tracing::warn!(worker, attempt = *attempt, error = %error, "{what} failed, retrying");
    backoff(shared, stop, *attempt).await
}

/// Sleeps the policy's backoff for `attempt`, unless the worker is stopped first.
pub(super) async fn backoff(
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    attempt: u32,
) -> Result<(), Interrupted> {
    if *stop.borrow() {
        return Err(Interrupted::Stopped);
    }
    tokio::select! {
        _ = tokio::time::sleep(shared.retry.backoff(attempt)) => Ok(()),
        _ = stop.changed() => Err(Interrupted::Stopped),
    }
}
