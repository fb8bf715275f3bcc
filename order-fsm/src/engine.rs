//! The pure, synchronous engine: order states as data, events applied by a stateless engine.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::lifecycle::NONE;
use crate::{Error, EventId, EventKind, Lifecycle, OrderId, Purchase, StateId};

/// One event addressed to an order, already resolved against the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// An event with a fresh random id and no version guard or reason.
    pub fn new(kind: EventKind, at: Timestamp) -> Self {
        Self {
            id: EventId::random(),
            kind,
            at,
            expected_version: None,
            reason: None,
            actor: None,
        }
    }
}

/// What applying an event decided: the order moves `from → to` and its version becomes
/// `version`. Computed by [`Engine::apply`], recorded by [`OrderState::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The stateless engine over one lifecycle. Cheap to clone; share it between workers.
///
/// ```
/// use order_fsm::{ecommerce, Engine, Event, Lifecycle, OrderId, Purchase, Timestamp, Error};
/// let engine = Engine::new(Lifecycle::ecommerce());
/// let mut order = engine.place(OrderId::random(), Purchase::example().into(), Timestamp::from_micros(0));
/// let t = engine.apply(&order, &Event::new(ecommerce::PREPARE, Timestamp::from_micros(5))).unwrap();
/// assert_eq!((t.from, t.to, t.version), (ecommerce::PROCESSING, ecommerce::PREPARING, 2));
/// order.commit(&t, None, None).unwrap();
/// let err = engine.apply(&order, &Event::new(ecommerce::COMPLETE, Timestamp::from_micros(6))).unwrap_err();
/// assert_eq!(err.to_string(), "illegal transition: event `complete` is not allowed in state `preparing`");
/// ```
#[derive(Clone, Debug)]
pub struct Engine {
    lifecycle: Arc<Lifecycle>,
    happy_path_len: usize,
}

impl Engine {
    /// An engine over `lifecycle`.
    pub fn new(lifecycle: impl Into<Arc<Lifecycle>>) -> Self {
        let lifecycle = lifecycle.into();
        Self {
            happy_path_len: lifecycle.happy_path_len(),
            lifecycle,
        }
    }

    /// The lifecycle.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// A new order in the initial state at version 1, placed by a fresh event id.
    pub fn place(&self, id: OrderId, purchase: Arc<Purchase>, at: Timestamp) -> OrderState {
        self.place_with(id, purchase, EventId::random(), at)
    }

    /// A new order in the initial state at version 1, placed by `event_id`.
    pub fn place_with(
        &self,
        id: OrderId,
        purchase: Arc<Purchase>,
        event_id: EventId,
        at: Timestamp,
    ) -> OrderState {
        OrderState {
            id,
            purchase,
            status: self.lifecycle.initial(),
            version: 1,
            placed_by: event_id,
            placed_by_actor: None,
            created_at: at,
            updated_at: at,
            history: Vec::with_capacity(self.happy_path_len),
            rejected: Vec::new(),
        }
    }

    /// Decides what `event` does to `order`, without changing anything.
    ///
    /// # Errors
    /// In this order of precedence: [`Error::Duplicate`] when the event id was already
    /// seen (applied or rejected); [`Error::Terminal`]; [`Error::StaleVersion`] when the event's expected version
    /// is not the order's; [`Error::IllegalTransition`] naming state and event;
    /// [`Error::InvalidField`] (`reason`) when the event requires a reason and has none.
    #[inline]
    pub fn apply(&self, order: &OrderState, event: &Event) -> Result<Transition, Error> {
        let has_reason = event.reason.as_deref().is_some_and(|r| !r.is_empty());
        self.transition(
            order,
            event.id,
            event.kind,
            event.at,
            event.expected_version,
            has_reason,
        )
    }

    /// [`Engine::apply`] on the event's parts, so that [`Engine::decide`] needs no [`Event`]
    /// (and no copy of its reason).
    #[inline]
    pub(crate) fn transition(
        &self,
        order: &OrderState,
        event_id: EventId,
        kind: EventKind,
        at: Timestamp,
        expected_version: Option<u64>,
        has_reason: bool,
    ) -> Result<Transition, Error> {
        let lifecycle = &*self.lifecycle;
        if order.has_seen(event_id) {
            return Err(Error::Duplicate { event_id });
        }
        let cell = lifecycle.cell(order.status, kind);
        let stale = expected_version.filter(|v| *v != order.version);
        if cell.to == NONE {
            // Terminal states have no cells, so this is where they are told apart.
            return Err(if lifecycle.is_terminal(order.status) {
                Error::Terminal {
                    state: lifecycle.state_name(order.status),
                }
            } else if let Some(expected) = stale {
                Error::StaleVersion {
                    expected,
                    actual: order.version,
                }
            } else {
                Error::IllegalTransition {
                    state: lifecycle.state_name(order.status),
                    event: lifecycle.event_name(kind),
                }
            });
        }
        if let Some(expected) = stale {
            return Err(Error::StaleVersion {
                expected,
                actual: order.version,
            });
        }
        if cell.needs_reason && !has_reason {
            return Err(Error::invalid_field("reason", "is required for this event"));
        }
        Ok(Transition {
            order_id: order.id,
            event_id,
            event: kind,
            from: order.status,
            to: StateId(cell.to),
            version: order.version + 1,
            at,
            in_previous_state_micros: at.micros_since(order.updated_at),
            terminal: cell.to_terminal,
        })
    }

    /// Applies and commits in one step, returning the transition. A rejected event is
    /// remembered in [`OrderState::rejected`], so its redelivery is a duplicate.
    ///
    /// # Errors
    /// As [`Engine::apply`]; on error only `rejected` may change.
    pub fn apply_in_place(
        &self,
        order: &mut OrderState,
        event: &Event,
    ) -> Result<Transition, Error> {
        match self.apply(order, event) {
            Ok(transition) => {
                order.commit(&transition, event.reason.clone(), event.actor.clone())?;
                Ok(transition)
            }
            Err(e) => {
                if e.is_rejection() {
                    order.remember_rejection(event.id);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecommerce::*;

    fn at(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn placed() -> (Engine, OrderState) {
        let engine = Engine::new(Lifecycle::ecommerce());
        let order = engine.place(OrderId::from_u128(1), Purchase::example().into(), at(100));
        (engine, order)
    }

    #[test]
    fn happy_path_versions_and_timing() {
        let (engine, mut order) = placed();
        for (i, kind) in [PREPARE, SHIP, DELIVER, COMPLETE].into_iter().enumerate() {
            let t = engine
                .apply_in_place(&mut order, &Event::new(kind, at(200 + 100 * i as u64)))
                .unwrap();
            assert_eq!(t.version, 2 + i as u64);
            assert_eq!(t.in_previous_state_micros, 100);
        }
        assert_eq!(order.status, COMPLETED);
        assert_eq!(order.history.len(), 4);
        let err = engine
            .apply(&order, &Event::new(CANCEL, at(900)))
            .unwrap_err();
        assert!(matches!(err, Error::Terminal { state: "completed" }));
    }

    #[test]
    fn duplicates_are_reported_not_applied_twice() {
        let (engine, mut order) = placed();
        let event = Event::new(PREPARE, at(1));
        engine.apply_in_place(&mut order, &event).unwrap();
        let err = engine.apply(&order, &event).unwrap_err();
        assert!(matches!(err, Error::Duplicate { event_id } if event_id == event.id));
        assert_eq!(order.version, 2);
    }

    #[test]
    fn stale_versions_and_missing_reasons_are_rejected() {
        let (engine, order) = placed();
        let mut event = Event::new(PREPARE, at(1));
        event.expected_version = Some(7);
        assert!(matches!(
            engine.apply(&order, &event),
            Err(Error::StaleVersion {
                expected: 7,
                actual: 1
            })
        ));
        let fail = Event::new(FAIL, at(1));
        assert!(matches!(
            engine.apply(&order, &fail),
            Err(Error::InvalidField {
                field: "reason",
                ..
            })
        ));
        let fail = Event {
            reason: Some("payment declined".into()),
            ..fail
        };
        assert_eq!(engine.apply(&order, &fail).unwrap().to, FAILED);
    }

    #[test]
    fn commit_refuses_a_transition_from_another_version() {
        let (engine, mut order) = placed();
        let t = engine.apply(&order, &Event::new(PREPARE, at(1))).unwrap();
        order.commit(&t, None, None).unwrap();
        assert!(order.commit(&t, None, None).is_err());
        assert_eq!(order.version, 2);
    }
}
