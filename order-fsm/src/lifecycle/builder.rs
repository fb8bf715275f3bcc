//! Declaring a lifecycle and validating it.

use std::collections::VecDeque;

use super::{Cell, Labels, Lifecycle, StateId, StateInfo, NONE};
use crate::Error;

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
    pub(super) fn new(name: &'static str) -> Self {
        Self {
            name,
            states: Vec::new(),
            initial: None,
            transitions: Vec::new(),
            reason_required: Vec::new(),
        }
    }

    /// Declares a non-terminal state with its labels by language
    /// (`&[("en", "Processing"), ("es", "Procesando")]`, or `&[]`).
    pub fn state(self, name: &'static str, labels: Labels) -> Self {
        self.push_state(name, labels, false)
    }

    /// Declares a terminal state (no event leaves it).
    pub fn terminal(self, name: &'static str, labels: Labels) -> Self {
        self.push_state(name, labels, true)
    }

    fn push_state(mut self, name: &'static str, labels: Labels, terminal: bool) -> Self {
        self.states.push(StateInfo {
            name,
            labels,
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
