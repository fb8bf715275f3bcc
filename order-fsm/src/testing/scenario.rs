//! Given/when/then tests of a lifecycle, in the style of cqrs-es's `TestFramework`.

use std::sync::Arc;

use crate::{Engine, Error, Event, EventKind, Lifecycle, OrderId, OrderState, Purchase, Timestamp};

/// Microseconds between the events of a scenario (each event happens this long after the
/// previous one, so times in a scenario are deterministic).
pub const STEP_MICROS: u64 = 1_000;

/// A lifecycle under test: start each case with [`Scenario::given`].
///
/// Events are named as in the lifecycle's table; a name the lifecycle does not know, or a
/// `given` event the table refuses, panics with the name and the state, so a typo in a test
/// fails loudly instead of testing something else.
///
/// ```
/// use order_fsm::testing::Scenario;
/// use order_fsm::Lifecycle;
///
/// Scenario::new(Lifecycle::ecommerce())
///     .given(&["prepare", "ship"])
///     .when("deliver")
///     .then_state("delivered")
///     .then_version(4)
///     .and_when("cancel")
///     .then_error("illegal transition: event `cancel` is not allowed in state `delivered`");
/// ```
#[derive(Clone, Debug)]
pub struct Scenario {
    engine: Engine,
}

impl Scenario {
    /// Scenarios over `lifecycle`.
    pub fn new(lifecycle: impl Into<Arc<Lifecycle>>) -> Self {
        Self {
            engine: Engine::new(lifecycle),
        }
    }

    /// An order just placed (version 1, initial state, at time 0), then `events` applied and
    /// committed in order.
    ///
    /// # Panics
    /// If an event is unknown or refused (the message names it and the state).
    pub fn given(&self, events: &[&str]) -> Given {
        let order = self.engine.place(
            OrderId::from_u128(1),
            Arc::new(Purchase::example()),
            Timestamp::from_micros(0),
        );
        let mut given = Given {
            engine: self.engine.clone(),
            order,
            steps: 0,
        };
        for name in events {
            let event = given.event(name);
            if let Err(e) = given.engine.apply_in_place(&mut given.order, &event) {
                panic!("given event `{name}` was refused: {e}");
            }
        }
        given
    }
}

/// An order in a known state: send it an event with [`Given::when`].
#[derive(Clone, Debug)]
pub struct Given {
    engine: Engine,
    order: OrderState,
    steps: u64,
}

impl Given {
    /// The order as the `given` events left it.
    pub fn order(&self) -> &OrderState {
        &self.order
    }

    /// Applies the event named `event` (no reason, no version guard).
    #[must_use = "a scenario asserts nothing until a then_* method is called"]
    pub fn when(self, event: &str) -> Then {
        self.when_with(event, |e| e)
    }

    /// Applies the event named `event` after `adjust` (add a reason, a version guard, an
    /// actor, or a redelivered id).
    #[must_use = "a scenario asserts nothing until a then_* method is called"]
    pub fn when_with(mut self, event: &str, adjust: impl FnOnce(Event) -> Event) -> Then {
        let event = adjust(self.event(event));
        self.when_event(event)
    }

    /// Applies `event` as given (for an event built by hand, e.g. a redelivery).
    #[must_use = "a scenario asserts nothing until a then_* method is called"]
    pub fn when_event(self, event: Event) -> Then {
        let outcome = self.engine.apply(&self.order, &event);
        Then {
            given: self,
            event,
            outcome,
        }
    }

    /// The next event named `name`, one step after the previous one.
    fn event(&mut self, name: &str) -> Event {
        let kind = self.kind(name);
        self.steps += 1;
        Event::new(kind, Timestamp::from_micros(self.steps * STEP_MICROS))
    }

    fn kind(&self, name: &str) -> EventKind {
        self.engine.lifecycle().event(name).unwrap_or_else(|| {
            panic!(
                "lifecycle `{}` has no event `{name}`",
                self.engine.lifecycle().name()
            )
        })
    }
}

/// What the engine decided: check it with the `then_*` methods, each of which panics with
/// the order's state and the outcome when the expectation fails.
#[derive(Debug)]
pub struct Then {
    given: Given,
    event: Event,
    outcome: Result<crate::Transition, Error>,
}

impl Then {
    /// The event was accepted and moved the order to the state named `state`.
    pub fn then_state(self, state: &str) -> Self {
        let lifecycle = self.given.engine.lifecycle();
        match &self.outcome {
            Ok(t) => assert_eq!(
                lifecycle.state_name(t.to),
                state,
                "event `{}` moved the order to `{}`, expected `{state}`",
                lifecycle.event_name(self.event.kind),
                lifecycle.state_name(t.to),
            ),
            Err(e) => panic!(
                "event `{}` was refused in `{}` ({e}), expected a move to `{state}`",
                lifecycle.event_name(self.event.kind),
                lifecycle.state_name(self.given.order.status),
            ),
        }
        self
    }

    /// The accepted event produced version `version`.
    pub fn then_version(self, version: u64) -> Self {
        let t = self.accepted("then_version");
        assert_eq!(t.version, version, "version after the event");
        self
    }

    /// The accepted event ended the lifecycle (its target state is terminal).
    pub fn then_terminal(self) -> Self {
        let t = self.accepted("then_terminal");
        assert!(t.terminal, "the order is not in a terminal state");
        self
    }

    /// The event was refused with an error whose message is `message` (errors name the
    /// state and event, so the message is the precise expectation).
    pub fn then_error(self, message: &str) -> Self {
        match &self.outcome {
            Err(e) => assert_eq!(e.to_string(), message, "the refusal's message"),
            Ok(t) => panic!(
                "expected a refusal `{message}`, but the event moved the order to `{}`",
                self.given.engine.lifecycle().state_name(t.to)
            ),
        }
        self
    }

    /// The event was refused with an error for which `check` holds (e.g. a `matches!` on
    /// the variant).
    pub fn then_error_matches(self, check: impl FnOnce(&Error) -> bool) -> Self {
        match &self.outcome {
            Err(e) => assert!(check(e), "the refusal `{e}` is not the one expected"),
            Ok(t) => panic!(
                "expected a refusal, but the event moved the order to `{}`",
                self.given.engine.lifecycle().state_name(t.to)
            ),
        }
        self
    }

    /// The engine's outcome, for checks the `then_*` methods do not cover.
    pub fn outcome(&self) -> &Result<crate::Transition, Error> {
        &self.outcome
    }

    /// Records the outcome (see [`Then::and`]) and sends the next event named `event`.
    #[must_use = "a scenario asserts nothing until a then_* method is called"]
    pub fn and_when(self, event: &str) -> Then {
        self.and_when_with(event, |e| e)
    }

    /// [`Then::and_when`] with an adjusted event.
    #[must_use = "a scenario asserts nothing until a then_* method is called"]
    pub fn and_when_with(self, event: &str, adjust: impl FnOnce(Event) -> Event) -> Then {
        self.and().when_with(event, adjust)
    }

    /// Records the outcome as [`Engine::apply_in_place`] does (an accepted transition is
    /// committed, a rejected event id remembered) and returns the order as it now is, to
    /// send it something else.
    pub fn and(self) -> Given {
        let mut given = self.given;
        match &self.outcome {
            Ok(t) => given
                .order
                .commit(t, self.event.reason.clone(), self.event.actor.clone())
                .expect("a transition the engine computed for this order commits"),
            Err(e) if e.is_rejection() => given.order.remember_rejection(self.event.id),
            Err(_) => {}
        }
        given
    }

    fn accepted(&self, what: &str) -> &crate::Transition {
        match &self.outcome {
            Ok(t) => t,
            Err(e) => panic!("{what}: the event was refused: {e}"),
        }
    }
}
