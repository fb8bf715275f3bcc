//! The declarative transition table: states, events, `(state, event) → state`.

mod builder;
mod render;

pub use builder::LifecycleBuilder;

/// Handle of a state within one [`Lifecycle`] (an index; cheap to copy and compare).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId(pub(crate) u16);

/// Handle of an event type within one [`Lifecycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKind(pub(crate) u16);

impl StateId {
    /// The index of the state in declaration order.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl EventKind {
    /// The index of the event in declaration order.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Human labels of a state, by language: `(language tag, label)` pairs such as
/// `[("en", "Processing"), ("es", "Procesando")]`.
pub type Labels = &'static [(&'static str, &'static str)];

/// One state's names: a stable machine name and human labels by language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateInfo {
    /// Stable machine name (`processing`), used on the wire and in stores.
    pub name: &'static str,
    /// Labels by language tag (the ecommerce lifecycle has `en` and `es`).
    pub labels: Labels,
    /// Whether no event leaves this state.
    pub terminal: bool,
}

impl StateInfo {
    /// The label in `language` (a tag such as `"es"`), if the lifecycle declares one.
    ///
    /// ```
    /// use order_fsm::{ecommerce, Lifecycle};
    /// let l = Lifecycle::ecommerce();
    /// assert_eq!(l.info(ecommerce::SHIPPED).label("es"), Some("Enviado"));
    /// assert_eq!(l.info(ecommerce::SHIPPED).label("fr"), None);
    /// ```
    pub fn label(&self, language: &str) -> Option<&'static str> {
        self.labels
            .iter()
            .find(|(tag, _)| *tag == language)
            .map(|(_, label)| *label)
    }

    /// The label in `language`, else the machine name.
    pub fn label_or_name(&self, language: &str) -> &'static str {
        self.label(language).unwrap_or(self.name)
    }
}

pub(crate) const NONE: u16 = u16::MAX;

/// Everything the engine needs about one `(state, event)`, in one load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    /// Target state, or `NONE`.
    pub(crate) to: u16,
    /// The event must carry a reason.
    pub(crate) needs_reason: bool,
    /// The target state is terminal.
    pub(crate) to_terminal: bool,
}

const NO_CELL: Cell = Cell {
    to: NONE,
    needs_reason: false,
    to_terminal: false,
};

/// A validated transition table.
///
/// Names are `&'static str` so the engine can name states and events in its errors without
/// allocating; a lifecycle read from configuration at run time can leak its names once with
/// `Box::leak`, since a lifecycle lives as long as the process.
///
/// ```
/// use order_fsm::Lifecycle;
/// let delivery = Lifecycle::builder("delivery")
///     .state("received", &[("en", "Received"), ("es", "Recibido")])
///     .state("preparing", &[("en", "Preparing"), ("es", "Preparando")])
///     .state("delivering", &[("en", "Delivering"), ("es", "Entregando")])
///     .terminal("done", &[("en", "Done"), ("es", "Finalizado")])
///     .initial("received")
///     .advance("received", "prepare", "preparing")
///     .advance("preparing", "dispatch", "delivering")
///     .advance("delivering", "hand_over", "done")
///     .build()
///     .unwrap();
/// assert_eq!(delivery.states().count(), 4);
/// assert!(delivery.to_mermaid().contains("received --> preparing: prepare"));
/// ```
#[derive(Debug, Clone)]
pub struct Lifecycle {
    name: &'static str,
    states: Vec<StateInfo>,
    events: Vec<&'static str>,
    reason_required: Vec<bool>,
    /// `cells[state * events.len() + event]`.
    cells: Box<[Cell]>,
    /// The automatic advance out of each state, or `NONE`.
    advance: Vec<u16>,
    initial: StateId,
}

impl Lifecycle {
    /// Starts a lifecycle definition.
    pub fn builder(name: &'static str) -> LifecycleBuilder {
        LifecycleBuilder::new(name)
    }

    /// The ecommerce lifecycle of the original systems: Processing → Preparing → Shipped →
    /// Delivered → Completed, `cancel` before shipping, and `fail` (with a reason) from any
    /// non-terminal state. See [`crate::ecommerce`] for its handles.
    pub fn ecommerce() -> Self {
        Self::builder("ecommerce")
            .state("processing", &[("en", "Processing"), ("es", "Procesando")])
            .state("preparing", &[("en", "Preparing"), ("es", "Preparación")])
            .state("shipped", &[("en", "Shipped"), ("es", "Enviado")])
            .state("delivered", &[("en", "Delivered"), ("es", "Entregado")])
            .terminal("completed", &[("en", "Completed"), ("es", "Finalizado")])
            .terminal("cancelled", &[("en", "Cancelled"), ("es", "Cancelado")])
            .terminal("failed", &[("en", "Failed"), ("es", "Fallido")])
            .initial("processing")
            .advance("processing", "prepare", "preparing")
            .advance("preparing", "ship", "shipped")
            .advance("shipped", "deliver", "delivered")
            .advance("delivered", "complete", "completed")
            .transition("processing", "cancel", "cancelled")
            .transition("preparing", "cancel", "cancelled")
            .transition("processing", "fail", "failed")
            .transition("preparing", "fail", "failed")
            .transition("shipped", "fail", "failed")
            .transition("delivered", "fail", "failed")
            .require_reason("fail")
            .build()
            .expect("the built-in ecommerce lifecycle is valid")
    }

    /// The lifecycle's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The state every order starts in.
    pub fn initial(&self) -> StateId {
        self.initial
    }

    /// All states in declaration order.
    pub fn states(&self) -> impl ExactSizeIterator<Item = StateId> + '_ {
        (0..self.states.len() as u16).map(StateId)
    }

    /// All event types in declaration order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = EventKind> + '_ {
        (0..self.events.len() as u16).map(EventKind)
    }

    /// Looks a state up by machine name.
    pub fn state(&self, name: &str) -> Option<StateId> {
        self.states
            .iter()
            .position(|s| s.name == name)
            .map(|i| StateId(i as u16))
    }

    /// Looks an event up by name.
    pub fn event(&self, name: &str) -> Option<EventKind> {
        self.events
            .iter()
            .position(|e| *e == name)
            .map(|i| EventKind(i as u16))
    }

    /// Names and labels of a state.
    ///
    /// # Panics
    /// If `state` comes from another lifecycle with more states.
    pub fn info(&self, state: StateId) -> &StateInfo {
        &self.states[state.index()]
    }

    /// Machine name of a state.
    pub fn state_name(&self, state: StateId) -> &'static str {
        self.states[state.index()].name
    }

    /// Name of an event.
    pub fn event_name(&self, event: EventKind) -> &'static str {
        self.events[event.index()]
    }

    /// Whether no event leaves `state`.
    #[inline]
    pub fn is_terminal(&self, state: StateId) -> bool {
        self.states[state.index()].terminal
    }

    /// Whether `event` must carry a reason (like `fail`).
    #[inline]
    pub fn requires_reason(&self, event: EventKind) -> bool {
        self.reason_required[event.index()]
    }

    /// The target of `(state, event)`, if the table has that transition.
    #[inline]
    pub fn target(&self, state: StateId, event: EventKind) -> Option<StateId> {
        match self.cell(state, event).to {
            NONE => None,
            to => Some(StateId(to)),
        }
    }

    #[inline]
    pub(crate) fn cell(&self, state: StateId, event: EventKind) -> Cell {
        let slot = state.index() * self.events.len() + event.index();
        self.cells.get(slot).copied().unwrap_or(NO_CELL)
    }

    /// Number of automatic advances from the initial state to a state without one (the
    /// length of the happy path), used to size an order's history up front.
    pub fn happy_path_len(&self) -> usize {
        let mut state = self.initial;
        let mut steps = 0;
        while let Some(to) = self
            .advance_event(state)
            .and_then(|e| self.target(state, e))
        {
            state = to;
            steps += 1;
            if steps > self.states.len() {
                break; // an automatic cycle: the path has no end
            }
        }
        steps
    }

    /// The event that advances `state` automatically (the happy path), if any.
    #[inline]
    pub fn advance_event(&self, state: StateId) -> Option<EventKind> {
        match self.advance[state.index()] {
            NONE => None,
            e => Some(EventKind(e)),
        }
    }

    /// Every `(from, event, to)` of the table, ordered by state then event.
    pub fn transitions(&self) -> impl Iterator<Item = (StateId, EventKind, StateId)> + '_ {
        self.states().flat_map(move |from| {
            self.events()
                .filter_map(move |event| self.target(from, event).map(|to| (from, event, to)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn base() -> LifecycleBuilder {
        Lifecycle::builder("t")
            .state("a", &[("en", "A"), ("es", "A")])
            .terminal("z", &[("en", "Z"), ("es", "Z")])
            .initial("a")
    }

    #[test]
    fn ecommerce_has_the_original_labels_and_paths() {
        let l = Lifecycle::ecommerce();
        let labels: Vec<_> = l.states().map(|s| l.info(s).label_or_name("es")).collect();
        assert_eq!(
            &labels[..5],
            [
                "Procesando",
                "Preparación",
                "Enviado",
                "Entregado",
                "Finalizado"
            ]
        );
        let mut s = l.initial();
        let mut path = vec![l.state_name(s)];
        while let Some(e) = l.advance_event(s) {
            s = l.target(s, e).unwrap();
            path.push(l.state_name(s));
        }
        assert_eq!(
            path,
            [
                "processing",
                "preparing",
                "shipped",
                "delivered",
                "completed"
            ]
        );
        let cancel = l.event("cancel").unwrap();
        assert!(l.target(l.state("preparing").unwrap(), cancel).is_some());
        assert!(l.target(l.state("shipped").unwrap(), cancel).is_none());
        assert!(l.requires_reason(l.event("fail").unwrap()));
    }

    #[test]
    fn builder_rejects_unknown_states() {
        let err = base().transition("a", "go", "nowhere").build().unwrap_err();
        assert!(
            matches!(err, Error::UnknownState { ref state, .. } if state == "nowhere"),
            "{err}"
        );
        let err = base()
            .initial("ghost")
            .transition("a", "go", "z")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, Error::UnknownState { ref state, .. } if state == "ghost"),
            "{err}"
        );
    }

    #[test]
    fn builder_rejects_duplicate_pairs() {
        let err = base()
            .transition("a", "go", "z")
            .transition("a", "go", "a")
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::DuplicateTransition {
                    state: "a",
                    event: "go",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn builder_rejects_unreachable_states() {
        let err = base()
            .state("island", &[("en", "I"), ("es", "I")])
            .transition("a", "go", "z")
            .transition("island", "go", "z")
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnreachableState {
                    state: "island",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn builder_rejects_dead_ends() {
        let err = base()
            .state("stuck", &[("en", "S"), ("es", "S")])
            .transition("a", "go", "z")
            .transition("a", "wait", "stuck")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, Error::DeadEnd { state: "stuck", .. }),
            "{err}"
        );
    }

    #[test]
    fn builder_rejects_exits_from_terminal_states_and_double_advances() {
        let err = base()
            .transition("a", "go", "z")
            .transition("z", "back", "a")
            .build();
        assert!(matches!(err, Err(Error::Config(_))));
        let err = base()
            .state("b", &[("en", "B"), ("es", "B")])
            .advance("a", "go", "z")
            .advance("a", "other", "b")
            .transition("b", "go", "z")
            .build();
        assert!(matches!(err, Err(Error::Config(_))));
    }

    #[test]
    fn renders_mermaid_and_dot() {
        let l = Lifecycle::ecommerce();
        let mermaid = l.to_mermaid();
        assert!(mermaid.starts_with("stateDiagram-v2\n    [*] --> processing\n"));
        assert!(mermaid.contains("    shipped --> delivered: deliver\n"));
        assert!(mermaid.contains("    cancelled --> [*]\n"));
        assert_eq!(
            mermaid.matches("-->").count(),
            1 + l.transitions().count() + 3
        );
        let dot = l.to_dot();
        assert!(dot.contains("\"processing\" -> \"cancelled\" [label=\"cancel\"];"));
        assert!(
            dot.contains("\"completed\" [shape=doublecircle, label=\"Completed\\n(Finalizado)\"];")
        );
    }
}
