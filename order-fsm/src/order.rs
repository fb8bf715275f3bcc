//! The order model: an order's state, the events addressed to it, the transitions they make
//! and the history they leave. Plain data; the [`Engine`](crate::Engine) decides.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::{Error, EventId, EventKind, OrderId, Purchase, StateId};

/// One event addressed to an order, already resolved against the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Unique id of this occurrence; a second event with the same id is a duplicate.
    pub id: EventId,
    /// What happens.
    pub kind: EventKind,
    /// When it happened.
    pub at: Timestamp,
    /// If set, the event only applies to the order at exactly this version.
    pub expected_version: Option<u64>,
    /// Why (required by events like `fail`).
    pub reason: Option<String>,
    /// Who asked for it (an API key's name); `None` for automatic steps.
    pub actor: Option<String>,
}

impl Event {
    /// An event whose id its sender chose (deterministic ids; a redelivery carries the id of
    /// the first delivery), without version guard or reason.
    pub fn identified(id: EventId, kind: EventKind, at: Timestamp) -> Self {
        Self {
            id,
            kind,
            at,
            expected_version: None,
            reason: None,
            actor: None,
        }
    }

    /// The same event, applicable only to an order at `version` (optimistic concurrency).
    #[must_use]
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// The same event with a reason (required by events such as `fail`).
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The same event, sent by `actor` (an API key name), if any.
    #[must_use]
    pub fn with_actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }

    /// An event with a fresh random id and no version guard or reason.
    pub fn new(kind: EventKind, at: Timestamp) -> Self {
        Self::identified(EventId::random(), kind, at)
    }
}

/// What applying an event decided: the order moves `from → to` and its version becomes
/// `version`. Computed by [`Engine::apply`](crate::Engine::apply), recorded by [`OrderState::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The order.
    pub order_id: OrderId,
    /// The event that caused it.
    pub event_id: EventId,
    /// The event type.
    pub event: EventKind,
    /// State before.
    pub from: StateId,
    /// State after.
    pub to: StateId,
    /// Order version after the transition (previous version + 1).
    pub version: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Microseconds spent in `from`.
    pub in_previous_state_micros: u64,
    /// Whether `to` is terminal.
    pub terminal: bool,
}

/// One entry of an order's audit history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The event that caused the transition.
    pub event_id: EventId,
    /// The event type.
    pub event: EventKind,
    /// State before.
    pub from: StateId,
    /// State after.
    pub to: StateId,
    /// Version after.
    pub version: u64,
    /// When.
    pub at: Timestamp,
    /// The reason the event carried, if any.
    pub reason: Option<String>,
    /// Who asked for it (an API key's name), if anyone did.
    pub actor: Option<String>,
}

/// The current state of one order: status, version, timestamps and audit history.
///
/// Version 1 is the freshly placed order; every accepted transition adds exactly one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderState {
    /// The order.
    pub id: OrderId,
    /// What was bought.
    pub purchase: Arc<Purchase>,
    /// Current state.
    pub status: StateId,
    /// 1 when placed, +1 per transition.
    pub version: u64,
    /// The event id of the placement (a redelivered placement is a duplicate).
    pub placed_by: EventId,
    /// Who placed it (an API key's name), if access control named anyone.
    pub placed_by_actor: Option<String>,
    /// When the order was placed.
    pub created_at: Timestamp,
    /// When the order last changed state.
    pub updated_at: Timestamp,
    /// Every transition, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Ids of events that were rejected, so a redelivered rejected event stays rejected
    /// (as a duplicate) instead of being accepted once the order has moved on.
    pub rejected: Vec<EventId>,
}

impl OrderState {
    /// Records an accepted transition: status, version, timestamp and history.
    ///
    /// # Errors
    /// [`Error::StaleVersion`] if `transition` was not computed from this version of the order
    /// (its version is not `self.version + 1`), leaving the state untouched.
    pub fn commit(
        &mut self,
        transition: &Transition,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Result<(), Error> {
        if transition.version != self.version + 1 || transition.order_id != self.id {
            return Err(Error::StaleVersion {
                expected: transition.version.saturating_sub(1),
                actual: self.version,
            });
        }
        self.history.push(HistoryEntry {
            event_id: transition.event_id,
            event: transition.event,
            from: transition.from,
            to: transition.to,
            version: transition.version,
            at: transition.at,
            reason,
            actor,
        });
        self.status = transition.to;
        self.version = transition.version;
        self.updated_at = transition.at;
        Ok(())
    }

    /// Whether an event with this id was already seen: it placed the order, was applied, or
    /// was rejected.
    #[inline]
    pub fn has_seen(&self, event_id: EventId) -> bool {
        self.placed_by == event_id
            || self.history.iter().any(|h| h.event_id == event_id)
            || self.rejected.contains(&event_id)
    }

    /// Remembers that `event_id` was rejected (see [`OrderState::rejected`]).
    pub fn remember_rejection(&mut self, event_id: EventId) {
        if !self.rejected.contains(&event_id) {
            self.rejected.push(event_id);
        }
    }
}
