//! The one report format every comparison fills: an anchor and a subject measured in
//! alternating rounds, the median and spread (min–max) of each and of their per-round ratio,
//! extra figures, and the comparisons skipped or failed with their reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Median and spread of a set of per-round values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// (max − min) / median, in percent: how far a single round can be trusted.
    pub spread_pct: f64,
    /// Every round, in the order measured.
    pub rounds: Vec<f64>,
}

impl Stats {
    /// The statistics of `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let (min, max) = (
            sorted.first().copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN),
        );
        Self {
            median,
            min,
            max,
            spread_pct: (max - min) / median * 100.0,
            rounds: values.to_vec(),
        }
    }
}

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// A rate: more per second is better.
    Higher,
    /// A cost: less time per item is better.
    Lower,
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// What it is (`raw BaseConsumer loop`, `KafkaSource + Runner`).
    pub name: String,
    /// Its figure per round.
    pub stats: Stats,
}

/// A comparison that ran: anchor and subject, alternately, for several rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Stable identifier (`kafka.source.mock`), the key a reader of the JSON uses.
    pub id: String,
    /// What is compared, for the table.
    pub title: String,
    /// Where it ran (`in process`, `librdkafka mock cluster`, `tansu-0.6.0 at 127.0.0.1:9092`).
    pub backend: String,
    /// Sizes and settings of one round.
    pub setup: String,
    /// Unit of anchor and subject (`msg/s`, `ns/apply`).
    pub unit: String,
    /// Which way the unit is better.
    pub better: Better,
    /// The baseline.
    pub anchor: Side,
    /// Our code.
    pub subject: Side,
    /// subject / anchor per round (a rate ratio below 1 or a cost ratio above 1 is overhead).
    pub ratio: Stats,
    /// The target on the median ratio, as README states it (`>= 0.7`), if any.
    pub target: Option<Target>,
    /// Whether the median ratio meets the target.
    pub target_met: Option<bool>,
    /// Further figures of the same rounds (latency percentiles, CPU per call, ...).
    pub extras: BTreeMap<String, Extra>,
    /// What a reader should know to judge the figures.
    pub notes: Vec<String>,
}

/// A further figure measured in the rounds of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    /// Its unit.
    pub unit: String,
    /// Its rounds.
    pub stats: Stats,
}

/// A bound on the median ratio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtLeast(v) => ratio >= v,
            Target::AtMost(v) => ratio <= v,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtLeast(v) => format!("≥ {v}×"),
            Target::AtMost(v) => format!("≤ {v}×"),
        }
    }
}

/// A comparison that did not run, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotRun {
    /// The comparison's identifier.
    pub id: String,
    /// Why (`ORDER_FSM_ES_URL is not set`, `--full only`, or the error).
    pub reason: String,
}

/// Everything one run of the suite measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `tiny`, `quick` or `full`.
    pub suite: String,
    /// The machine and build the figures come from.
    pub machine: Machine,
    /// Seconds the whole suite took.
    pub duration_secs: f64,
    /// The comparisons that ran.
    pub comparisons: Vec<Comparison>,
    /// The comparisons left out (service not configured, `--full` only).
    pub skipped: Vec<NotRun>,
    /// The comparisons that started and failed.
    pub failed: Vec<NotRun>,
}

/// What a comparison module states about itself; [`Rounds::finish`] adds the figures.
pub(crate) struct Spec {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) backend: String,
    pub(crate) setup: String,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    pub(crate) anchor: String,
    pub(crate) subject: String,
    pub(crate) target: Option<Target>,
    pub(crate) notes: Vec<String>,
}

/// Collects the rounds of one comparison.
#[derive(Default)]
pub(crate) struct Rounds {
    anchor: Vec<f64>,
    subject: Vec<f64>,
    extras: BTreeMap<String, (String, Vec<f64>)>,
}

impl Rounds {
    /// Whether round `round` measures the anchor first: they take turns, so whatever the
    /// first of a pair pays (a cold cache, a neighbour's burst) falls on both alike.
    pub(crate) fn anchor_first(round: usize) -> bool {
        round.is_multiple_of(2)
    }

    /// One round's anchor and subject figures.
    pub(crate) fn push(&mut self, anchor: f64, subject: f64) {
        eprintln!(
            "    round {}: anchor {anchor:.1}, subject {subject:.1}, ratio {:.3}",
            self.anchor.len() + 1,
            subject / anchor
        );
        self.anchor.push(anchor);
        self.subject.push(subject);
    }

    /// A further figure of this round.
    pub(crate) fn extra(&mut self, name: &str, unit: &str, value: f64) {
        self.extras
            .entry(name.to_owned())
            .or_insert_with(|| (unit.to_owned(), Vec::new()))
            .1
            .push(value);
    }

    pub(crate) fn finish(self, spec: Spec) -> Comparison {
        let ratios: Vec<f64> = self
            .anchor
            .iter()
            .zip(&self.subject)
            .map(|(a, s)| s / a)
            .collect();
        let ratio = Stats::of(&ratios);
        Comparison {
            setup: format!("{}, {} rounds", spec.setup, ratios.len()),
            target_met: spec.target.map(|t| t.met(ratio.median)),
            id: spec.id,
            title: spec.title,
            backend: spec.backend,
            unit: spec.unit.to_owned(),
            better: spec.better,
            anchor: Side {
                name: spec.anchor,
                stats: Stats::of(&self.anchor),
            },
            subject: Side {
                name: spec.subject,
                stats: Stats::of(&self.subject),
            },
            ratio,
            target: spec.target,
            extras: self
                .extras
                .into_iter()
                .map(|(name, (unit, values))| {
                    let stats = Stats::of(&values);
                    (name, Extra { unit, stats })
                })
                .collect(),
            notes: spec.notes,
        }
    }
}

/// A figure with thousands separators and sensible precision (`1,234,567`, `45.2`, `3.51`).
pub fn figure(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn median_range(s: &Stats) -> String {
    format!("{} ({}–{})", figure(s.median), figure(s.min), figure(s.max))
}

impl Report {
    /// The generated table of README's performance section, with the machine line above it.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Generated by `cargo run --release -p order-fsm-benches -- --{} --write-readme` \
             in {:.0} s: anchor and subject take turns in each round; figures are the median \
             (min–max) of the rounds, the ratio is subject / anchor per round. Machine: {} \
             cores, load average {} at start, {} allocator, {} build, revision {}.",
            self.suite,
            self.duration_secs,
            m.cores,
            m.load_average,
            m.allocator,
            m.profile,
            m.git_revision,
        );
        out.push('\n');
        out.push_str("| comparison | backend | anchor | subject | ratio | target | notes |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for c in &self.comparisons {
            let target = match (c.target, c.target_met) {
                (Some(t), Some(true)) => t.text(),
                (Some(t), _) => format!("{} **missed**", t.text()),
                (None, _) => String::new(),
            };
            let mut notes: Vec<String> = c
                .extras
                .iter()
                .map(|(name, e)| format!("{name} {} {}", median_range(&e.stats), e.unit))
                .collect();
            notes.extend(c.notes.iter().cloned());
            let _ = writeln!(
                out,
                "| {} ({}) | {} | {}: {} {} | {}: {} {} | {}× ({}–{}) | {} | {} |",
                c.title,
                c.setup,
                c.backend,
                c.anchor.name,
                median_range(&c.anchor.stats),
                c.unit,
                c.subject.name,
                median_range(&c.subject.stats),
                c.unit,
                figure(c.ratio.median),
                figure(c.ratio.min),
                figure(c.ratio.max),
                target,
                notes.join("; "),
            );
        }
        if !self.skipped.is_empty() || !self.failed.is_empty() {
            out.push('\n');
            for s in &self.skipped {
                let _ = writeln!(out, "- skipped `{}`: {}", s.id, s.reason);
            }
            for s in &self.failed {
                let _ = writeln!(out, "- **failed** `{}`: {}", s.id, s.reason);
            }
        }
        out
    }

    /// `report.md`: a heading, the machine, the table.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        format!(
            "# order-fsm benches ({} suite, {:.0} s)\n\n\
             - machine: {} cores ({}), {}, load average at start {}\n\
             - build: {} profile, {} allocator, revision {}\n\
             - started: {} (unix seconds)\n\n{}",
            self.suite,
            self.duration_secs,
            m.cores,
            m.cpu,
            m.memory,
            m.load_average,
            m.profile,
            m.allocator,
            m.git_revision,
            m.started_unix,
            self.table()
        )
    }
}

/// The markers around the generated part of README.md.
pub const BEGIN: &str = "<!-- benches:begin -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- benches:end -->";

/// `readme` with the text between [`BEGIN`] and [`END`] replaced by `table`; `None` when the
/// markers are missing or out of order.
pub fn replace_between_markers(readme: &str, table: &str) -> Option<String> {
    let begin = readme.find(BEGIN)? + BEGIN.len();
    let end = begin + readme[begin..].find(END)?;
    Some(format!(
        "{}\n\n{}\n\n{}",
        &readme[..begin],
        table.trim_end(),
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stats::of(&[1.0, 2.0, 3.0, 4.0]).median, 2.5);
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(figure(1_234_567.4), "1,234,567");
        assert_eq!(figure(999.0), "999");
        assert_eq!(figure(45.25), "45.2");
        assert_eq!(figure(0.874), "0.87");
    }

    #[test]
    fn markers_keep_what_is_outside() {
        let readme = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        let out = replace_between_markers(&readme, "new table\n").unwrap();
        assert_eq!(out, format!("a\n{BEGIN}\n\nnew table\n\n{END}\nb\n"));
        // Idempotent.
        assert_eq!(replace_between_markers(&out, "new table\n").unwrap(), out);
        assert!(replace_between_markers("no markers", "x").is_none());
    }
}
