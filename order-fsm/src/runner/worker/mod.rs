//! One worker: takes a batch from its queue, plans it with the engine, makes it durable,
//! publishes, acknowledges; adopts and releases the orders of partitions its runner gains
//! and loses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch};

mod control;
mod plan;
mod publish;

use super::metrics::BatchTally;
use super::ownership::Ownership;
use super::Shared;
use crate::{
    DeadLetter, Envelope, Error, OrderId, OrderState, StateChange, TransitionRecord, TransitionSink,
};

/// An item of a worker's queue.
// Nearly every item is a command, so boxing it would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// A command from the source.
    Command {
        envelope: Envelope,
        received: Instant,
    },
    /// A timer fired: advance `order_id` if it is still at `version` (and, with an owner
    /// `(partition, epoch)`, if the partition is still held under that epoch).
    Advance {
        order_id: OrderId,
        version: u64,
        owner: Option<(i32, u64)>,
    },
    /// The runner now owns `partition`: hold these restored states, re-arm their timers and
    /// publish what their last writer may not have.
    Adopt {
        partition: i32,
        changes: Vec<StateChange>,
    },
    /// The runner loses `partitions`: finish what came before, drop their orders, answer.
    Revoke {
        partitions: Vec<i32>,
        done: oneshot::Sender<()>,
    },
    /// Answer once everything queued before is finished (made durable and published).
    Checkpoint(oneshot::Sender<()>),
    /// Append these orders' current states to the state log again (their latest changes
    /// lag far behind; see `StateLog::lagging`).
    Refresh {
        partition: i32,
        orders: Vec<OrderId>,
    },
}

impl Work {
    fn partition(&self) -> Option<i32> {
        match self {
            Work::Command { envelope, .. } => Some(envelope.origin.partition),
            Work::Advance { owner, .. } => owner.map(|(p, _)| p),
            Work::Adopt { partition, .. } => Some(*partition),
            Work::Revoke { .. } | Work::Checkpoint(_) => None,
            Work::Refresh { partition, .. } => Some(*partition),
        }
    }
}

pub(crate) struct WorkerReport {
    pub(crate) acked: u64,
    pub(crate) unacked: u64,
    /// Whether the stop cut a batch short (it may be durable but not published).
    pub(crate) interrupted: bool,
}

pub(crate) struct Worker {
    id: usize,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Work>,
    timers_tx: mpsc::UnboundedSender<Work>,
    timers_rx: mpsc::UnboundedReceiver<Work>,
    /// Timers scheduled whose advance has not been taken from `timers_rx` yet.
    pending_timers: usize,
    stop: watch::Receiver<bool>,
    stop_all: Arc<watch::Sender<bool>>,
    rng: SmallRng,
    tally: BatchTally,
    acked: u64,
    ownership: Ownership,
    /// An adoption or revocation taken from the queue, handled once the batch before it is.
    control: Option<Work>,
    /// The durable batch whose records are being published, if any.
    publishing: Option<publish::Publishing>,
    /// A settled batch's emptied vector and tally, for the next batch to reuse.
    spare: Option<(Vec<Work>, BatchTally)>,
    /// Commands of batches whose publish was cut short: left for redelivery.
    abandoned: u64,
}

/// One new state of a batch, with the version the store had.
struct Write {
    expected: u64,
    state: OrderState,
    partition: Option<i32>,
}

/// What a batch decided, before anything is written.
#[derive(Default)]
struct Plan {
    records: Vec<TransitionRecord>,
    dead_letters: Vec<DeadLetter>,
    /// New states with the version each write expects in the store.
    writes: Vec<Write>,
    /// Advances to schedule: order, version to advance from, delay.
    timers: Vec<(OrderId, u64, Duration)>,
    /// Orders written, by partition, and whether each is now finished.
    held: Vec<(i32, OrderId, bool)>,
}

/// A batch-local view of an order: the version in the store and the state being built.
struct Cached {
    stored_version: u64,
    state: Option<OrderState>,
    dirty: bool,
    partition: Option<i32>,
}

enum Interrupted {
    Stopped,
    Failed(Error),
}

impl Worker {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Work>,
        stop: watch::Receiver<bool>,
        stop_all: Arc<watch::Sender<bool>>,
        seed: u64,
    ) -> Self {
        let (timers_tx, timers_rx) = mpsc::unbounded_channel();
        Self {
            id,
            shared,
            commands,
            timers_tx,
            timers_rx,
            pending_timers: 0,
            stop,
            stop_all,
            rng: SmallRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            tally: BatchTally::default(),
            acked: 0,
            ownership: Ownership::default(),
            control: None,
            publishing: None,
            spare: None,
            abandoned: 0,
        }
    }

    /// Puts `work` in the batch, holds it back as the pending control item, or drops it (a
    /// timer of a partition no longer held).
    fn take(&mut self, work: Work, batch: &mut Vec<Work>) {
        match work {
            Work::Advance {
                owner: Some((partition, epoch)),
                ..
            } if !self.ownership.is_current(partition, epoch) => {}
            Work::Adopt { .. }
            | Work::Revoke { .. }
            | Work::Checkpoint(_)
            | Work::Refresh { .. } => self.control = Some(work),
            work => batch.push(work),
        }
    }

    pub(crate) async fn run(mut self) -> Result<WorkerReport, Error> {
        let mut batch: Vec<Work> = Vec::with_capacity(self.shared.max_batch);
        let mut commands_open = true;
        let mut outcome = Ok(());
        let mut interrupted = false;
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let idle = !commands_open && self.pending_timers == 0 && self.publishing.is_none();
            if *self.stop.borrow() || idle {
                break;
            }
            let mut step = Ok(());
            tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                result = publish::wait(&mut self.publishing), if self.publishing.is_some() => {
                    step = self.published(result);
                }
                Some(work) = self.timers_rx.recv() => {
                    self.pending_timers -= 1;
                    self.take(work, &mut batch);
                }
                work = self.commands.recv(), if commands_open => match work {
                    Some(work) => self.take(work, &mut batch),
                    None => {
                        commands_open = false;
                        continue;
                    }
                },
                _ = sweep.tick() => {}
            }
            while batch.len() < self.shared.max_batch && self.control.is_none() {
                let Ok(work) = self.timers_rx.try_recv() else {
                    break;
                };
                self.pending_timers -= 1;
                self.take(work, &mut batch);
            }
            while batch.len() < self.shared.max_batch && self.control.is_none() {
                let Ok(work) = self.commands.try_recv() else {
                    break;
                };
                self.take(work, &mut batch);
            }
            if step.is_ok() && !batch.is_empty() {
                step = self.process(&mut batch).await;
            }
            if step.is_ok() {
                if let Some(control) = self.control.take() {
                    // What came before a control item is finished first: published too.
                    step = self.finish_publishing().await;
                    if step.is_ok() {
                        step = self.control(control).await;
                    }
                }
            }
            if step.is_ok() {
                step = self.expire().await;
            }
            match step {
                Ok(()) => {}
                Err(Interrupted::Stopped) => {
                    interrupted = true;
                    break;
                }
                Err(Interrupted::Failed(e)) => {
                    self.stop_all.send_replace(true);
                    outcome = Err(e);
                    break;
                }
            }
        }
        // A batch being published is finished as on the way, unless the worker failed.
        if self.publishing.is_some() {
            if outcome.is_err() {
                if let Some(publishing) = self.publishing.take() {
                    self.abandoned += publishing.abandon();
                }
            } else {
                match self.finish_publishing().await {
                    Ok(()) => {}
                    Err(Interrupted::Stopped) => interrupted = true,
                    Err(Interrupted::Failed(e)) => outcome = Err(e),
                }
            }
        }
        // Whatever is left was never applied: it stays unacknowledged for redelivery.
        self.commands.close();
        let mut unacked = self.abandoned + publish::commands_in(&batch);
        while let Ok(work) = self.commands.try_recv() {
            unacked += u64::from(matches!(work, Work::Command { .. }));
        }
        outcome.map(|()| WorkerReport {
            acked: self.acked,
            unacked,
            interrupted,
        })
    }

    /// Runs `op` until it succeeds, waiting between attempts as [`Self::retry_after`] does.
    async fn retrying<T, Fut>(
        &mut self,
        what: &str,
        mut op: impl FnMut() -> Fut,
    ) -> Result<T, Interrupted>
    where
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => self.retry_after(&mut attempt, e, what).await?,
            }
        }
    }

    /// Waits before another attempt after `error`, or gives up on it.
    async fn retry_after(
        &mut self,
        attempt: &mut u32,
        error: Error,
        what: &str,
    ) -> Result<(), Interrupted> {
        publish::retry_after(&self.shared, &mut self.stop, self.id, attempt, error, what).await?;
        // A batch published meanwhile is acknowledged now, not after the step that waits.
        self.settle_if_published()
    }

    /// Plans, makes durable, publishes and acknowledges one batch, retrying what may
    /// succeed later. On success the batch is drained; on interruption it is left as it was.
    ///
    /// With a state log the batch's publish may still be in flight on return (see
    /// [`publish`]): it is finished before the next batch is published, before a control
    /// item, and at the end of the run.
    async fn process(&mut self, batch: &mut Vec<Work>) -> Result<(), Interrupted> {
        let in_flight = crate::telemetry::InFlight::start();
        self.settle_if_published()?;
        if self.shared.state_log.is_none() {
            let plan = self.decide_shared(batch).await?;
            let settle = self.settlement(batch, plan.held, plan.timers, in_flight);
            self.settle(settle);
            return Ok(());
        }
        let (plan, published_up_to) = self.decide(batch).await?;
        // The previous batch is published and acknowledged before this one is published.
        self.finish_publishing().await?;
        let settle = self.settlement(batch, plan.held, plan.timers, in_flight);
        if self.shared.sink.is_some() && !plan.records.is_empty() {
            self.start_publishing(plan.records, published_up_to, settle);
        } else {
            self.settle(settle);
        }
        Ok(())
    }

    /// Moves a decided batch and its tally out, to be settled once published.
    fn settlement(
        &mut self,
        batch: &mut Vec<Work>,
        held: Vec<(i32, OrderId, bool)>,
        timers: Vec<(OrderId, u64, Duration)>,
        in_flight: crate::telemetry::InFlight,
    ) -> publish::Settle {
        let (spare_work, spare_tally) = self.spare.take().unwrap_or_default();
        publish::Settle {
            work: std::mem::replace(batch, spare_work),
            held,
            timers,
            tally: std::mem::replace(&mut self.tally, spare_tally),
            in_flight,
        }
    }

    /// With a state log: plan once, then make exactly that plan durable (dead letters, the
    /// state log, the store), retrying each step with the same content, so an
    /// `(order, version)` never gets two contents. Returns the plan with, for each order it
    /// changed, the version it found in the store: published once this batch's publish
    /// starts (for the next batch).
    async fn decide(
        &mut self,
        batch: &[Work],
    ) -> Result<(Plan, HashMap<OrderId, u64>), Interrupted> {
        let shared = Arc::clone(&self.shared);
        let mut attempt = 0;
        let mut plan = loop {
            self.tally.clear();
            match self.plan(batch).await {
                Ok(plan) => break plan,
                Err(e) => self.retry_after(&mut attempt, e, "store").await?,
            }
        };
        for letter in &plan.dead_letters {
            self.retrying("dead-letter sink", || {
                shared.dead_letters.dead_letter(letter)
            })
            .await?;
        }
        let lifecycle = shared.engine.lifecycle();
        let mut changes = Vec::with_capacity(plan.writes.len());
        let mut published = HashMap::with_capacity(plan.writes.len());
        for write in std::mem::take(&mut plan.writes) {
            match write.partition {
                Some(partition) => {
                    plan.held.push((
                        partition,
                        write.state.id,
                        lifecycle.is_terminal(write.state.status),
                    ));
                    // The batch in flight may not have published the stored version yet: then
                    // only what that batch found in the store is. This batch is published
                    // after that one, so for the next batch what it found here is.
                    let published_up_to = self
                        .publishing
                        .as_ref()
                        .and_then(|p| p.published_up_to(write.state.id))
                        .unwrap_or(write.expected);
                    published.insert(write.state.id, write.expected);
                    changes.push(StateChange {
                        partition,
                        state: write.state,
                        published_up_to,
                    });
                }
                None => {
                    self.retrying("store", || shared.store.put(write.state.clone()))
                        .await?;
                }
            }
        }
        if let (Some(log), false) = (&shared.state_log, changes.is_empty()) {
            self.retrying("state log", || log.append(&changes)).await?;
        }
        for change in changes {
            self.retrying("store", || shared.store.put(change.state.clone()))
                .await?;
        }
        Ok((plan, published))
    }

    /// Without a state log (the store is shared or the only copy): publish, then
    /// compare-and-set; any failure plans the batch again from the store.
    async fn decide_shared(&mut self, batch: &[Work]) -> Result<Plan, Interrupted> {
        let mut attempt = 0u32;
        loop {
            self.tally.clear();
            let result = match self.plan(batch).await {
                Ok(mut plan) => self.write(&mut plan).await.map(|()| plan),
                Err(e) => Err(e),
            };
            match result {
                Ok(plan) => return Ok(plan),
                Err(e) => self.retry_after(&mut attempt, e, "batch").await?,
            }
        }
    }

    /// Publishes records and dead letters, then commits the new states (moving them out of
    /// the plan: a retry plans again from the store).
    async fn write(&mut self, plan: &mut Plan) -> Result<(), Error> {
        if let (Some(sink), false) = (&self.shared.sink, plan.records.is_empty()) {
            sink.publish(&plan.records).await?;
        }
        for letter in &plan.dead_letters {
            self.shared.dead_letters.dead_letter(letter).await?;
        }
        let lifecycle = self.shared.engine.lifecycle();
        for write in &plan.writes {
            if let Some(partition) = write.partition {
                plan.held.push((
                    partition,
                    write.state.id,
                    lifecycle.is_terminal(write.state.status),
                ));
            }
        }
        // One call (one round trip for stores that batch). On a conflict another writer moved
        // an order: the other writes happened, and re-planning sees them as duplicates.
        let writes = plan
            .writes
            .iter()
            .map(|w| (w.expected, w.state.clone()))
            .collect();
        self.shared.store.compare_and_set_many(writes).await
    }
}
