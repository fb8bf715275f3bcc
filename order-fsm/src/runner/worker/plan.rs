//! Planning a batch: the pure engine applied to batch-local copies of the orders.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::{Cached, Plan, Work, Worker, Write};
use crate::{
    Command, DeadLetter, Decision, Envelope, Error, Event, EventId, OrderId, OrderState, Origin,
    Transition, TransitionRecord,
};

impl Worker {
    /// Plans `batch` with the engine against the stored states; writes nothing.
    pub(super) async fn plan(&mut self, batch: &[Work]) -> Result<Plan, Error> {
        let mut plan = Plan::default();
        let mut cache = self.prefetch(batch).await?;
        for work in batch {
            let partition = work.partition();
            match work {
                Work::Command { envelope, .. } => {
                    let order_id = envelope.command.order_id();
                    let cached = self.load(&mut cache, order_id, partition).await?;
                    let outcome = self.apply_command(cached, &envelope.command, &mut plan);
                    if let Err(e) = outcome {
                        self.reject(&mut plan, envelope, e);
                    }
                }
                &Work::Advance {
                    order_id, version, ..
                } => {
                    let cached = self.load(&mut cache, order_id, partition).await?;
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
                        actor: None,
                    };
                    match self.transition(state, &event, &mut plan) {
                        Ok(()) => cached.dirty = true,
                        Err(Error::Duplicate { .. }) => {}
                        Err(e) => {
                            tracing::error!(%order_id, error = %e, "automatic advance rejected")
                        }
                    }
                }
                Work::Adopt { .. }
                | Work::Revoke { .. }
                | Work::Checkpoint(_)
                | Work::Refresh { .. } => {}
            }
        }
        plan.writes = cache
            .into_values()
            .filter(|c| c.dirty)
            .filter_map(|c| {
                let (expected, partition) = (c.stored_version, c.partition);
                c.state.map(|state| Write {
                    expected,
                    state,
                    partition,
                })
            })
            .collect();
        Ok(plan)
    }

    /// Reads every order `batch` names with one store call.
    async fn prefetch(&self, batch: &[Work]) -> Result<HashMap<OrderId, Cached>, Error> {
        let mut ids: Vec<OrderId> = batch
            .iter()
            .filter_map(|work| match work {
                Work::Command { envelope, .. } => Some(envelope.command.order_id()),
                &Work::Advance { order_id, .. } => Some(order_id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let states = self.shared.store.get_many(&ids).await?;
        Ok(ids
            .into_iter()
            .zip(states)
            .map(|(id, state)| {
                let cached = Cached {
                    stored_version: state.as_ref().map_or(0, |s| s.version),
                    state,
                    dirty: false,
                    partition: None,
                };
                (id, cached)
            })
            .collect())
    }

    async fn load<'c>(
        &self,
        cache: &'c mut HashMap<OrderId, Cached>,
        id: OrderId,
        partition: Option<i32>,
    ) -> Result<&'c mut Cached, Error> {
        let cached = match cache.entry(id) {
            Entry::Occupied(cached) => cached.into_mut(),
            Entry::Vacant(slot) => {
                let state = self.shared.store.get(id).await?;
                slot.insert(Cached {
                    stored_version: state.as_ref().map_or(0, |s| s.version),
                    state,
                    dirty: false,
                    partition,
                })
            }
        };
        cached.partition = cached.partition.or(partition);
        Ok(cached)
    }

    /// Applies one command to the batch-local state as [`Engine::decide`](crate::Engine::decide)
    /// decides; `Err` is a rejection to dead-letter (or a duplicate to skip).
    fn apply_command(
        &mut self,
        cached: &mut Cached,
        command: &Command,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        let engine = &self.shared.engine;
        let now = self.shared.clock.now();
        match engine.decide(command, cached.state.as_ref(), now) {
            Ok(Decision::Place(state)) => {
                plan.records
                    .push(TransitionRecord::placed(engine.lifecycle(), &state));
                self.tally.placed += 1;
                let state = cached.state.insert(state);
                cached.dirty = true;
                self.after_transition(state, plan);
                Ok(())
            }
            Ok(Decision::Apply(transition)) => {
                let state = cached.state.as_mut().ok_or(Error::NotFound {
                    order_id: transition.order_id,
                })?;
                let reason = match command {
                    Command::Apply { reason, .. } => reason.clone(),
                    Command::Place { .. } => None,
                };
                let actor = command.actor().map(str::to_owned);
                cached.dirty = true;
                self.record_transition(state, &transition, reason, actor, plan)?;
                self.after_transition(state, plan);
                Ok(())
            }
            Err(error) => {
                if let (Command::Apply { event_id, .. }, Some(state)) =
                    (command, cached.state.as_mut())
                {
                    match error {
                        // The name never reached the order; a duplicate changes nothing.
                        Error::UnknownEvent { .. } | Error::Duplicate { .. } => {}
                        // Remembered, so that a redelivery stays rejected.
                        _ => {
                            if error.is_rejection() {
                                state.remember_rejection(*event_id);
                            }
                            cached.dirty = true;
                        }
                    }
                }
                Err(error)
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
        let transition = self.shared.engine.apply(state, event)?;
        let (reason, actor) = (event.reason.clone(), event.actor.clone());
        self.record_transition(state, &transition, reason, actor, plan)
    }

    /// Commits `transition` to the batch-local state and records it.
    fn record_transition(
        &mut self,
        state: &mut OrderState,
        transition: &Transition,
        reason: Option<String>,
        actor: Option<String>,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        state.commit(transition, reason.clone(), actor.clone())?;
        plan.records.push(TransitionRecord::of_transition(
            self.shared.engine.lifecycle(),
            state,
            transition,
            reason,
            actor,
        ));
        self.tally.transitions.push((*transition, state.created_at));
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
                actor: None,
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
                self.tally.dead_letter_reasons.push(error.kind());
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
