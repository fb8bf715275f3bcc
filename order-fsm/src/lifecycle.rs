//! The declarative transition table: states, events, `(state, event) → state`.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::Error;

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

/// One state's names: a stable machine name and human labels in English and Spanish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateInfo {
    /// Stable machine name (`processing`), used on the wire and in stores.
    pub name: &'static str,
    /// English label (`Processing`).
    pub label_en: &'static str,
    /// Spanish label (`Procesando`), as the original systems showed it.
    pub label_es: &'static str,
    /// Whether no event leaves this state.
    pub terminal: bool,
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
///     .state("received", "Received", "Recibido")
///     .state("preparing", "Preparing", "Preparando")
///     .state("delivering", "Delivering", "Entregando")
///     .terminal("done", "Done", "Finalizado")
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
        LifecycleBuilder {
            name,
            states: Vec::new(),
            initial: None,
            transitions: Vec::new(),
            reason_required: Vec::new(),
        }
    }

    /// The ecommerce lifecycle of the original systems: Processing → Preparing → Shipped →
    /// Delivered → Completed, `cancel` before shipping, and `fail` (with a reason) from any
    /// non-terminal state. See [`crate::ecommerce`] for its handles.
    pub fn ecommerce() -> Self {
        Self::builder("ecommerce")
            .state("processing", "Processing", "Procesando")
            .state("preparing", "Preparing", "Preparación")
            .state("shipped", "Shipped", "Enviado")
            .state("delivered", "Delivered", "Entregado")
            .terminal("completed", "Completed", "Finalizado")
            .terminal("cancelled", "Cancelled", "Cancelado")
            .terminal("failed", "Failed", "Fallido")
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

    /// Renders the table as a Mermaid `stateDiagram-v2`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        let _ = writeln!(out, "    [*] --> {}", self.state_name(self.initial));
        for (from, event, to) in self.transitions() {
            let (from, to, event) = (
                self.state_name(from),
                self.state_name(to),
                self.event_name(event),
            );
            let _ = writeln!(out, "    {from} --> {to}: {event}");
        }
        for state in self.states().filter(|s| self.is_terminal(*s)) {
            let _ = writeln!(out, "    {} --> [*]", self.state_name(state));
        }
        out
    }

    /// Renders the table as a Graphviz DOT digraph.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n    rankdir=LR;\n", self.name);
        for state in self.states() {
            let info = self.info(state);
            let shape = if info.terminal {
                "doublecircle"
            } else {
                "circle"
            };
            let _ = writeln!(
                out,
                "    \"{}\" [shape={shape}, label=\"{}\\n({})\"];",
                info.name, info.label_en, info.label_es
            );
        }
        for (from, event, to) in self.transitions() {
            let (from, to, event) = (
                self.state_name(from),
                self.state_name(to),
                self.event_name(event),
            );
            let _ = writeln!(out, "    \"{from}\" -> \"{to}\" [label=\"{event}\"];");
        }
        out.push_str("}\n");
        out
    }
}

/// Builds a [`Lifecycle`]; [`LifecycleBuilder::build`] validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct LifecycleBuilder {
    name: &'static str,
    states: Vec<StateInfo>,
    initial: Option<&'static str>,
    transitions: Vec<(&'static str, &'static str, &'static str, bool)>,
    reason_required: Vec<&'static str>,
}

impl LifecycleBuilder {
    /// Declares a non-terminal state with its English and Spanish labels.
    pub fn state(self, name: &'static str, label_en: &'static str, label_es: &'static str) -> Self {
        self.push_state(name, label_en, label_es, false)
    }

    /// Declares a terminal state (no event leaves it).
    pub fn terminal(
        self,
        name: &'static str,
        label_en: &'static str,
        label_es: &'static str,
    ) -> Self {
        self.push_state(name, label_en, label_es, true)
    }

    fn push_state(
        mut self,
        name: &'static str,
        en: &'static str,
        es: &'static str,
        terminal: bool,
    ) -> Self {
        self.states.push(StateInfo {
            name,
            label_en: en,
            label_es: es,
            terminal,
        });
        self
    }

    /// Sets the state new orders start in.
    pub fn initial(mut self, name: &'static str) -> Self {
        self.initial = Some(name);
        self
    }

    /// Declares `from --event--> to`.
    pub fn transition(mut self, from: &'static str, event: &'static str, to: &'static str) -> Self {
        self.transitions.push((from, event, to, false));
        self
    }

    /// Declares `from --event--> to` and makes it the automatic advance out of `from`, taken
    /// by the runner after the dwell time (at most one per state).
    pub fn advance(mut self, from: &'static str, event: &'static str, to: &'static str) -> Self {
        self.transitions.push((from, event, to, true));
        self
    }

    /// Requires events named `event` to carry a reason (like a failure).
    pub fn require_reason(mut self, event: &'static str) -> Self {
        self.reason_required.push(event);
        self
    }

    /// Validates and builds the table.
    ///
    /// # Errors
    /// [`Error::UnknownState`] for a transition or initial state that names an undeclared
    /// state, [`Error::DuplicateTransition`] for two transitions of one `(state, event)`,
    /// [`Error::UnreachableState`], [`Error::DeadEnd`] for a non-terminal state with no way
    /// out, and [`Error::Config`] for the rest (no state, no initial state, a transition out
    /// of a terminal state, two automatic advances out of one state, a duplicate state name).
    pub fn build(self) -> Result<Lifecycle, Error> {
        let lifecycle = self.name;
        let config = |msg: String| Error::Config(format!("lifecycle `{lifecycle}`: {msg}").into());
        if self.states.is_empty() {
            return Err(config("declares no state".into()));
        }
        if self.states.len() >= NONE as usize {
            return Err(config("declares too many states".into()));
        }
        for (i, s) in self.states.iter().enumerate() {
            if self.states[..i].iter().any(|t| t.name == s.name) {
                return Err(config(format!("state `{}` is declared twice", s.name)));
            }
        }
        let find = |name: &str| -> Result<u16, Error> {
            self.states
                .iter()
                .position(|s| s.name == name)
                .map(|i| i as u16)
                .ok_or_else(|| Error::UnknownState {
                    lifecycle,
                    state: name.to_owned(),
                })
        };
        let initial = find(
            self.initial
                .ok_or_else(|| config("has no initial state".into()))?,
        )?;

        let mut events: Vec<&'static str> = Vec::new();
        for (_, event, _, _) in &self.transitions {
            if !events.contains(event) {
                events.push(event);
            }
        }
        let (n_states, n_events) = (self.states.len(), events.len());
        let mut table = vec![NONE; n_states * n_events];
        let mut advance = vec![NONE; n_states];
        for &(from, event, to, is_advance) in &self.transitions {
            let (f, t) = (find(from)?, find(to)?);
            let e = events
                .iter()
                .position(|x| *x == event)
                .expect("collected above") as u16;
            if self.states[f as usize].terminal {
                return Err(config(format!(
                    "terminal state `{from}` has a transition (`{event}`)"
                )));
            }
            let slot = &mut table[f as usize * n_events + e as usize];
            if *slot != NONE {
                return Err(Error::DuplicateTransition {
                    lifecycle,
                    state: self.states[f as usize].name,
                    event,
                });
            }
            *slot = t;
            if is_advance {
                if advance[f as usize] != NONE {
                    return Err(config(format!("state `{from}` has two automatic advances")));
                }
                advance[f as usize] = e;
            }
        }
        let mut reason_required = vec![false; n_events];
        for name in &self.reason_required {
            let e = events
                .iter()
                .position(|x| x == name)
                .ok_or_else(|| config(format!("require_reason names unknown event `{name}`")))?;
            reason_required[e] = true;
        }

        // Reachability from the initial state (breadth-first over the table).
        let mut seen = vec![false; n_states];
        let mut queue = VecDeque::from([initial]);
        seen[initial as usize] = true;
        while let Some(s) = queue.pop_front() {
            for &to in &table[s as usize * n_events..(s as usize + 1) * n_events] {
                if to != NONE && !seen[to as usize] {
                    seen[to as usize] = true;
                    queue.push_back(to);
                }
            }
        }
        for (i, state) in self.states.iter().enumerate() {
            if !seen[i] {
                return Err(Error::UnreachableState {
                    lifecycle,
                    state: state.name,
                });
            }
            let has_exit = table[i * n_events..(i + 1) * n_events]
                .iter()
                .any(|&t| t != NONE);
            if !state.terminal && !has_exit {
                return Err(Error::DeadEnd {
                    lifecycle,
                    state: state.name,
                });
            }
        }

        let cells = table
            .iter()
            .enumerate()
            .map(|(slot, &to)| Cell {
                to,
                needs_reason: reason_required[slot % n_events],
                to_terminal: to != NONE && self.states[to as usize].terminal,
            })
            .collect();
        Ok(Lifecycle {
            name: self.name,
            states: self.states,
            events,
            cells,
            reason_required,
            advance,
            initial: StateId(initial),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> LifecycleBuilder {
        Lifecycle::builder("t")
            .state("a", "A", "A")
            .terminal("z", "Z", "Z")
            .initial("a")
    }

    #[test]
    fn ecommerce_has_the_original_labels_and_paths() {
        let l = Lifecycle::ecommerce();
        let labels: Vec<_> = l.states().map(|s| l.info(s).label_es).collect();
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
            .state("island", "I", "I")
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
            .state("stuck", "S", "S")
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
            .state("b", "B", "B")
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
