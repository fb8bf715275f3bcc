//! Rendering a lifecycle as a diagram: Mermaid and Graphviz DOT.

use std::fmt::Write as _;

use super::Lifecycle;

impl Lifecycle {
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
                info.name,
                info.label("en").unwrap_or(info.name),
                info.label("es").unwrap_or(info.name)
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
