//! The pure, synchronous engine: a stateless function of (order, event) over one lifecycle.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::lifecycle::NONE;
use crate::{
    Error, Event, EventId, EventKind, Lifecycle, OrderId, OrderState, Purchase, StateId, Transition,
};

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
    fn commit_refuses_a_transition_from_another_version() {
        let (engine, mut order) = placed();
        let t = engine.apply(&order, &Event::new(PREPARE, at(1))).unwrap();
        order.commit(&t, None, None).unwrap();
        assert!(order.commit(&t, None, None).is_err());
        assert_eq!(order.version, 2);
    }
}
