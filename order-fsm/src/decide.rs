//! What a command may do, decided in one place for the runner and every intake.

use std::sync::Arc;

use crate::{Command, Engine, Error, OrderState, Timestamp, Transition};

/// What [`Engine::decide`] decided a command does. Nothing is changed yet: the caller
/// stores the new order, or commits the transition with [`OrderState::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// A placement creates this order (initial state, version 1).
    Place(OrderState),
    /// An event moves the existing order.
    Apply(Transition),
}

impl Engine {
    /// Decides what `command` does to `current`, the order it names as the deciding side
    /// sees it (`None`: no such order), without changing anything. `now` stamps the
    /// transition, and the placement when the command carries no `placed_at`.
    ///
    /// The runner decides with this against its stored state; an intake decides with it
    /// against its read model to answer a request at once.
    ///
    /// ```
    /// use order_fsm::{Command, Decision, Engine, Error, Lifecycle, Purchase, Timestamp};
    /// let engine = Engine::new(Lifecycle::ecommerce());
    /// let now = Timestamp::from_micros(1);
    /// let place = Command::place(Purchase::example());
    /// let Ok(Decision::Place(order)) = engine.decide(&place, None, now) else { panic!() };
    /// let deliver = Command::apply(order.id, "deliver");
    /// let err = engine.decide(&deliver, Some(&order), now).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "illegal transition: event `deliver` is not allowed in state `processing`"
    /// );
    /// ```
    ///
    /// # Errors
    /// For a placement: [`Error::Duplicate`] when `current` exists and has seen the
    /// command's event id (a redelivery), else [`Error::Conflict`] when `current` exists
    /// (another placement took the id); then [`Error::InvalidField`] from
    /// [`Purchase::validate`](crate::Purchase::validate).
    ///
    /// For an event: [`Error::UnknownEvent`] when the lifecycle has no event of that name;
    /// [`Error::NotFound`] when `current` is `None`; then the rules of [`Engine::apply`]
    /// (duplicate, terminal, stale version, illegal transition naming state and event,
    /// missing reason).
    pub fn decide(
        &self,
        command: &Command,
        current: Option<&OrderState>,
        now: Timestamp,
    ) -> Result<Decision, Error> {
        match command {
            Command::Place {
                order_id,
                event_id,
                purchase,
                placed_at,
                actor,
            } => {
                if let Some(existing) = current {
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
                let at = placed_at.unwrap_or(now);
                let mut order = self.place_with(*order_id, Arc::clone(purchase), *event_id, at);
                order.placed_by_actor.clone_from(actor);
                Ok(Decision::Place(order))
            }
            Command::Apply {
                order_id,
                event_id,
                event,
                expected_version,
                reason,
                actor: _,
            } => {
                let kind = self
                    .lifecycle()
                    .event(event)
                    .ok_or_else(|| Error::UnknownEvent {
                        event: event.clone(),
                    })?;
                let order = current.ok_or(Error::NotFound {
                    order_id: *order_id,
                })?;
                let has_reason = reason.as_deref().is_some_and(|r| !r.is_empty());
                self.transition(order, *event_id, kind, now, *expected_version, has_reason)
                    .map(Decision::Apply)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecommerce::*;
    use crate::{EventId, Lifecycle, OrderId, Purchase};

    fn at(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn engine() -> Engine {
        Engine::new(Lifecycle::ecommerce())
    }

    fn placed(engine: &Engine) -> (Command, OrderState) {
        let command = Command::place(Purchase::example());
        match engine.decide(&command, None, at(100)) {
            Ok(Decision::Place(order)) => (command, order),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn event(order: &OrderState, name: &str) -> Command {
        Command::apply(order.id, name)
    }

    #[test]
    fn a_placement_creates_the_order_at_version_one() {
        let engine = engine();
        let (command, order) = placed(&engine);
        assert_eq!(order.id, command.order_id());
        assert_eq!(order.placed_by, command.event_id());
        assert_eq!((order.status, order.version), (PROCESSING, 1));
        assert_eq!(order.created_at, at(100), "stamped now without placed_at");

        let stamped = Command::Place {
            order_id: OrderId::random(),
            event_id: EventId::random(),
            purchase: Purchase::example().into(),
            placed_at: Some(at(7)),
            actor: None,
        };
        let Ok(Decision::Place(order)) = engine.decide(&stamped, None, at(100)) else {
            panic!("placed");
        };
        assert_eq!(order.created_at, at(7), "the command's placed_at wins");
    }

    #[test]
    fn a_placement_on_an_existing_order_is_a_duplicate_or_a_conflict() {
        let engine = engine();
        let (command, order) = placed(&engine);
        assert!(matches!(
            engine.decide(&command, Some(&order), at(1)),
            Err(Error::Duplicate { event_id }) if event_id == command.event_id()
        ));
        let other = Command::Place {
            order_id: order.id,
            event_id: EventId::random(),
            purchase: Purchase::example().into(),
            placed_at: None,
            actor: None,
        };
        assert!(matches!(
            engine.decide(&other, Some(&order), at(1)),
            Err(Error::Conflict { order_id, expected: 0, actual: Some(1) }) if order_id == order.id
        ));
    }

    #[test]
    fn an_invalid_purchase_names_its_field() {
        let mut purchase = Purchase::example();
        purchase.customer_email = "nobody".into();
        let err = engine()
            .decide(&Command::place(purchase), None, at(1))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidField {
                field: "customer_email",
                ..
            }
        ));
    }

    #[test]
    fn an_event_moves_the_order_stamped_now() {
        let engine = engine();
        let (_, order) = placed(&engine);
        let Ok(Decision::Apply(t)) =
            engine.decide(&event(&order, "prepare"), Some(&order), at(150))
        else {
            panic!("applied");
        };
        assert_eq!(
            (t.from, t.to, t.version, t.at),
            (PROCESSING, PREPARING, 2, at(150))
        );
        assert_eq!(t.in_previous_state_micros, 50);
        assert_eq!(order.version, 1, "nothing changed yet");
    }

    #[test]
    fn event_errors_come_in_order_of_precedence() {
        let engine = engine();
        let (_, order) = placed(&engine);
        let teleport = event(&order, "teleport");
        assert!(matches!(
            engine.decide(&teleport, None, at(1)),
            Err(Error::UnknownEvent { event }) if event == "teleport"
        ));
        assert!(matches!(
            engine.decide(&event(&order, "prepare"), None, at(1)),
            Err(Error::NotFound { order_id }) if order_id == order.id
        ));
        let err = engine
            .decide(&event(&order, "deliver"), Some(&order), at(1))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::IllegalTransition {
                state: "processing",
                event: "deliver"
            }
        ));
        let mut stale = event(&order, "prepare");
        if let Command::Apply {
            expected_version, ..
        } = &mut stale
        {
            *expected_version = Some(3);
        }
        assert!(matches!(
            engine.decide(&stale, Some(&order), at(1)),
            Err(Error::StaleVersion {
                expected: 3,
                actual: 1
            })
        ));
        let fail = event(&order, "fail");
        assert!(matches!(
            engine.decide(&fail, Some(&order), at(1)),
            Err(Error::InvalidField {
                field: "reason",
                ..
            })
        ));
        let mut seen = order.clone();
        seen.remember_rejection(fail.event_id());
        assert!(matches!(
            engine.decide(&fail, Some(&seen), at(1)),
            Err(Error::Duplicate { .. })
        ));
    }

    #[test]
    fn a_terminal_order_accepts_no_event() {
        let engine = engine();
        let (_, mut order) = placed(&engine);
        let cancel = Command::Apply {
            order_id: order.id,
            event_id: EventId::random(),
            event: "cancel".into(),
            expected_version: None,
            reason: Some("changed my mind".into()),
            actor: None,
        };
        let Ok(Decision::Apply(t)) = engine.decide(&cancel, Some(&order), at(2)) else {
            panic!("cancelled");
        };
        order.commit(&t, None, None).unwrap();
        assert!(matches!(
            engine.decide(&event(&order, "prepare"), Some(&order), at(3)),
            Err(Error::Terminal { state: "cancelled" })
        ));
    }
}
