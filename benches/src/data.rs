//! What several comparisons share: the records and commands they send, CPU time, ids.

use std::sync::Arc;

use order_fsm::{
    Command, Engine, Event, Lifecycle, OrderId, Purchase, Timestamp, TransitionRecord,
};

/// Orders of five records each (placement and four transitions), fresh ids, `n` records.
pub(crate) fn records(n: usize) -> Vec<TransitionRecord> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let engine = Engine::new(Arc::clone(&lifecycle));
    let purchase = Arc::new(Purchase::example());
    let mut out = Vec::with_capacity(n);
    let mut at = 1_700_000_000_000_000;
    while out.len() < n {
        let mut order = engine.place(
            OrderId::random(),
            Arc::clone(&purchase),
            Timestamp::from_micros(at),
        );
        while let Some(kind) = lifecycle.advance_event(order.status) {
            at += 1_000;
            engine
                .apply_in_place(&mut order, &Event::new(kind, Timestamp::from_micros(at)))
                .map_err(|e| e.to_string())
                .expect("the happy path is legal");
        }
        out.extend(TransitionRecord::all_of(&lifecycle, &order));
    }
    out.truncate(n);
    out
}

/// `count` commands: placements, or placements each followed by the four events of the
/// ecommerce happy path (a trailing partial order is only partly driven).
pub(crate) fn commands(count: usize, lifecycle: bool) -> Vec<Command> {
    const EVENTS: [&str; 4] = ["prepare", "ship", "deliver", "complete"];
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let place = Command::place(Purchase::example());
        let order = place.order_id();
        out.push(place);
        if lifecycle {
            for event in EVENTS.iter().take(count - out.len()) {
                out.push(Command::apply(order, *event));
            }
        }
    }
    out
}

/// User + system CPU time of this process in microseconds (Linux, 100 ticks/s), if known.
pub(crate) fn process_cpu_micros() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// CPU microseconds per item since `before` (a [`process_cpu_micros`] reading), if known.
pub(crate) fn cpu_per_item(before: Option<u64>, items: u64) -> Option<f64> {
    process_cpu_micros()
        .zip(before)
        .map(|(after, before)| (after - before) as f64 / items as f64)
}

/// Eight hex digits that keep topics, groups and indices of one run apart.
pub(crate) fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// `n` with thousands separators.
pub(crate) fn count(n: usize) -> String {
    if n < 1000 {
        n.to_string()
    } else {
        crate::figure(n as f64)
    }
}
