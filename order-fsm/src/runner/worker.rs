//! One worker: takes a batch from its queue, plans it with the engine, publishes, commits,
//! acknowledges.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};

use super::metrics::BatchTally;
use super::Shared;
use crate::{
    Command, DeadLetter, Envelope, Error, Event, EventId, OrderId, OrderState, Origin,
    TransitionRecord, TransitionSink,
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
    /// A timer fired: advance `order_id` if it is still at `version`.
    Advance { order_id: OrderId, version: u64 },
}

pub(crate) struct WorkerReport {
    pub(crate) acked: u64,
    pub(crate) unacked: u64,
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
}

/// What a batch decided, before anything is written.
#[derive(Default)]
struct Plan {
    records: Vec<TransitionRecord>,
    dead_letters: Vec<DeadLetter>,
    /// New states with the version each write expects in the store.
    writes: Vec<(u64, OrderState)>,
    /// Advances to schedule: order, version to advance from, delay.
    timers: Vec<(OrderId, u64, Duration)>,
}

/// A batch-local view of an order: the version in the store and the state being built.
struct Cached {
    stored_version: u64,
    state: Option<OrderState>,
    dirty: bool,
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
        }
    }

    pub(crate) async fn run(mut self) -> Result<WorkerReport, Error> {
        let mut batch: Vec<Work> = Vec::with_capacity(self.shared.max_batch);
        let mut commands_open = true;
        let mut outcome = Ok(());
        loop {
            if *self.stop.borrow() || (!commands_open && self.pending_timers == 0) {
                break;
            }
            tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                Some(work) = self.timers_rx.recv() => {
                    self.pending_timers -= 1;
                    batch.push(work);
                }
                work = self.commands.recv(), if commands_open => match work {
                    Some(work) => batch.push(work),
                    None => {
                        commands_open = false;
                        continue;
                    }
                },
            }
            while batch.len() < self.shared.max_batch {
                let Ok(work) = self.timers_rx.try_recv() else {
                    break;
                };
                self.pending_timers -= 1;
                batch.push(work);
            }
            while batch.len() < self.shared.max_batch {
                let Ok(work) = self.commands.try_recv() else {
                    break;
                };
                batch.push(work);
            }
            match self.process(&mut batch).await {
                Ok(()) => {}
                Err(Interrupted::Stopped) => break,
                Err(Interrupted::Failed(e)) => {
                    self.stop_all.send_replace(true);
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Whatever is left was never applied: it stays unacknowledged for redelivery.
        self.commands.close();
        let mut unacked = batch
            .iter()
            .filter(|w| matches!(w, Work::Command { .. }))
            .count() as u64;
        while let Ok(work) = self.commands.try_recv() {
            unacked += u64::from(matches!(work, Work::Command { .. }));
        }
        outcome.map(|()| WorkerReport {
            acked: self.acked,
            unacked,
        })
    }

    /// Plans, publishes, commits and acknowledges one batch, retrying what may succeed later.
    /// On success the batch is drained; on interruption it is left as it was.
    async fn process(&mut self, batch: &mut Vec<Work>) -> Result<(), Interrupted> {
        let mut attempt = 0u32;
        let plan = loop {
            self.tally.clear();
            let result = match self.plan(batch).await {
                Ok(mut plan) => self.write(&mut plan).await.map(|()| plan),
                Err(e) => Err(e),
            };
            match result {
                Ok(plan) => break plan,
                Err(e) if e.is_retryable() && self.shared.retry.allows(attempt + 1) => {
                    attempt += 1;
                    tracing::warn!(worker = self.id, attempt, error = %e, "retrying batch");
                    self.backoff(attempt).await?;
                }
                Err(e) => return Err(Interrupted::Failed(e)),
            }
        };
        for work in batch.drain(..) {
            if let Work::Command { envelope, received } = work {
                envelope.ack.ack();
                self.acked += 1;
                self.tally
                    .processing_micros
                    .push(received.elapsed().as_micros() as u64);
            }
        }
        for (order_id, version, delay) in plan.timers {
            self.pending_timers += 1;
            let tx = self.timers_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Work::Advance { order_id, version });
            });
        }
        self.shared.metrics.record(self.id, &self.tally);
        Ok(())
    }

    async fn backoff(&mut self, attempt: u32) -> Result<(), Interrupted> {
        tokio::select! {
            _ = tokio::time::sleep(self.shared.retry.backoff(attempt)) => Ok(()),
            _ = self.stop.changed() => Err(Interrupted::Stopped),
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
        let mut conflict = None;
        for (expected, state) in &plan.writes {
            match self
                .shared
                .store
                .compare_and_set(*expected, state.clone())
                .await
            {
                Ok(()) => {}
                // Another writer moved the order: finish the other writes, then re-plan.
                // Re-planning sees what was committed here as duplicates.
                Err(e @ Error::Conflict { .. }) => conflict = Some(e),
                Err(e) => return Err(e),
            }
        }
        conflict.map_or(Ok(()), Err)
    }

    async fn plan(&mut self, batch: &[Work]) -> Result<Plan, Error> {
        let mut plan = Plan::default();
        let mut cache: HashMap<OrderId, Cached> = HashMap::new();
        for work in batch {
            match work {
                Work::Command { envelope, .. } => {
                    let order_id = envelope.command.order_id();
                    let cached = self.load(&mut cache, order_id).await?;
                    let outcome = self.apply_command(cached, &envelope.command, &mut plan);
                    if let Err(e) = outcome {
                        self.reject(&mut plan, envelope, e);
                    }
                }
                &Work::Advance { order_id, version } => {
                    let cached = self.load(&mut cache, order_id).await?;
                    let Some(state) = cached.state.as_mut().filter(|s| s.version == version) else {
                        continue; // the order moved on since the timer was set
                    };
                    let Some(kind) = self.shared.engine.lifecycle().advance_event(state.status)
                    else {
                        continue;
                    };
                    let event = Event {
                        id: EventId::auto_advance(order_id, version),
                        kind,
                        at: self.shared.clock.now(),
                        expected_version: Some(version),
                        reason: None,
                    };
                    match self.transition(state, &event, &mut plan) {
                        Ok(()) => cached.dirty = true,
                        Err(Error::Duplicate { .. }) => {}
                        Err(e) => {
                            tracing::error!(%order_id, error = %e, "automatic advance rejected")
                        }
                    }
                }
            }
        }
        plan.writes = cache
            .into_values()
            .filter(|c| c.dirty)
            .filter_map(|c| c.state.map(|s| (c.stored_version, s)))
            .collect();
        Ok(plan)
    }

    async fn load<'c>(
        &self,
        cache: &'c mut HashMap<OrderId, Cached>,
        id: OrderId,
    ) -> Result<&'c mut Cached, Error> {
        Ok(match cache.entry(id) {
            Entry::Occupied(cached) => cached.into_mut(),
            Entry::Vacant(slot) => {
                let state = self.shared.store.get(id).await?;
                slot.insert(Cached {
                    stored_version: state.as_ref().map_or(0, |s| s.version),
                    state,
                    dirty: false,
                })
            }
        })
    }

    /// Applies one command to the batch-local state; `Err` is a rejection to dead-letter
    /// (or a duplicate to skip).
    fn apply_command(
        &mut self,
        cached: &mut Cached,
        command: &Command,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        let engine = &self.shared.engine;
        match command {
            Command::Place {
                order_id,
                event_id,
                purchase,
                placed_at,
            } => {
                if let Some(existing) = &cached.state {
                    return Err(if existing.has_seen(*event_id) {
                        Error::Duplicate {
                            event_id: *event_id,
                        }
                    } else {
                        Error::Conflict {
                            order_id: *order_id,
                            expected: 0,
                            actual: Some(existing.version),
                        }
                    });
                }
                purchase.validate()?;
                let at = placed_at.unwrap_or_else(|| self.shared.clock.now());
                let state = engine.place_with(*order_id, Arc::clone(purchase), *event_id, at);
                plan.records
                    .push(TransitionRecord::placed(engine.lifecycle(), &state));
                self.tally.placed += 1;
                let state = cached.state.insert(state);
                cached.dirty = true;
                self.after_transition(state, plan);
                Ok(())
            }
            Command::Apply {
                order_id,
                event_id,
                event,
                expected_version,
                reason,
            } => {
                let kind = engine
                    .lifecycle()
                    .event(event)
                    .ok_or_else(|| Error::UnknownEvent {
                        event: event.clone(),
                    })?;
                let state = cached.state.as_mut().ok_or(Error::NotFound {
                    order_id: *order_id,
                })?;
                let event = Event {
                    id: *event_id,
                    kind,
                    at: self.shared.clock.now(),
                    expected_version: *expected_version,
                    reason: reason.clone(),
                };
                let outcome = self.transition(state, &event, plan);
                if let Err(e) = &outcome {
                    if e.is_rejection() {
                        state.remember_rejection(*event_id);
                    }
                }
                cached.dirty |= !matches!(outcome, Err(Error::Duplicate { .. }));
                outcome
            }
        }
    }

    /// Applies `event`, records it, and follows the automatic path.
    fn transition(
        &mut self,
        state: &mut OrderState,
        event: &Event,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        self.commit_event(state, event, plan)?;
        self.after_transition(state, plan);
        Ok(())
    }

    /// Applies `event` to the batch-local state and records the transition.
    fn commit_event(
        &mut self,
        state: &mut OrderState,
        event: &Event,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        let engine = &self.shared.engine;
        let transition = engine.apply(state, event)?;
        state.commit(&transition, event.reason.clone())?;
        plan.records.push(TransitionRecord::of_transition(
            engine.lifecycle(),
            state,
            &transition,
            event.reason.clone(),
        ));
        self.tally.transitions.push((transition, state.created_at));
        Ok(())
    }

    /// With auto-advance on: takes the state's automatic advance now (no dwell) or
    /// schedules it.
    fn after_transition(&mut self, state: &mut OrderState, plan: &mut Plan) {
        let Some(dwell) = self.shared.auto_advance else {
            return;
        };
        while let Some(kind) = self.shared.engine.lifecycle().advance_event(state.status) {
            let delay = dwell.sample(&mut self.rng);
            if !delay.is_zero() {
                plan.timers.push((state.id, state.version, delay));
                return;
            }
            let event = Event {
                id: EventId::auto_advance(state.id, state.version),
                kind,
                at: self.shared.clock.now(),
                expected_version: Some(state.version),
                reason: None,
            };
            if self.commit_event(state, &event, plan).is_err() {
                return;
            }
        }
    }

    fn reject(&mut self, plan: &mut Plan, envelope: &Envelope, error: Error) {
        match error {
            Error::Duplicate { .. } => self.tally.duplicates += 1,
            error => {
                self.tally.dead_lettered += 1;
                let reason = match &error {
                    Error::Conflict { .. } => {
                        format!("order {} already exists", envelope.command.order_id())
                    }
                    other => other.to_string(),
                };
                plan.dead_letters.push(DeadLetter {
                    command: envelope.command.clone(),
                    reason,
                    origin: Origin { ..envelope.origin },
                });
            }
        }
    }
}
