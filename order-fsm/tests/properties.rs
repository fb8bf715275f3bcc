//! Properties of the engine over random event sequences.

use std::collections::HashSet;

use order_fsm::{
    Engine, Error, Event, EventId, EventKind, Lifecycle, OrderId, OrderState, Purchase, Timestamp,
};
use proptest::prelude::*;

fn engine() -> Engine {
    Engine::new(Lifecycle::ecommerce())
}

/// An event: (event index, with a reason?, micros after the previous one).
fn events() -> impl Strategy<Value = Vec<(usize, bool, u64)>> {
    prop::collection::vec((0usize..6, any::<bool>(), 0u64..1_000), 0..40)
}

fn to_event(engine: &Engine, (index, reason, _): (usize, bool, u64), at: u64, id: u128) -> Event {
    let kind: EventKind = engine
        .lifecycle()
        .events()
        .nth(index)
        .expect("index < events");
    let event = Event::identified(EventId::from_u128(id), kind, Timestamp::from_micros(at));
    if reason {
        event.with_reason("property")
    } else {
        event
    }
}

proptest! {
    #[test]
    fn random_events_never_leave_the_table(seq in events()) {
        let engine = engine();
        let lifecycle = engine.lifecycle().clone();
        let table: HashSet<_> = lifecycle.transitions().collect();
        let mut order = engine.place(OrderId::from_u128(1), Purchase::example().into(), Timestamp::from_micros(0));
        let mut at = 0;
        for (i, step) in seq.into_iter().enumerate() {
            at += step.2;
            let event = to_event(&engine, step, at, 1_000 + i as u128);
            let before = order.clone();
            match engine.apply_in_place(&mut order, &event) {
                Ok(t) => {
                    prop_assert!(table.contains(&(t.from, event.kind, t.to)), "transition outside the table");
                    prop_assert_eq!(t.version, before.version + 1, "version grows by exactly one");
                    prop_assert_eq!(order.version, before.version + 1);
                    prop_assert_eq!(t.terminal, lifecycle.is_terminal(t.to));
                }
                Err(e) => {
                    let mut expected = before.clone();
                    expected.remember_rejection(event.id);
                    prop_assert_eq!(&order, &expected, "a rejected event changes nothing but the rejected list");
                    let legal = lifecycle.target(before.status, event.kind).is_some();
                    match e {
                        Error::Terminal { .. } => prop_assert!(lifecycle.is_terminal(before.status)),
                        Error::IllegalTransition { .. } => prop_assert!(!legal),
                        Error::InvalidField { field: "reason", .. } => prop_assert!(legal && event.reason.is_none()),
                        other => prop_assert!(false, "unexpected error {other}"),
                    }
                }
            }
            prop_assert!(lifecycle.states().any(|s| s == order.status));
            prop_assert_eq!(order.history.len() as u64, order.version - 1);
        }
    }

    #[test]
    fn replaying_a_log_with_duplicates_gives_the_same_states(
        seqs in prop::collection::vec(events(), 1..6),
        repeats in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..30),
    ) {
        let engine = engine();
        // The log: (order index, event), interleaved round-robin across orders.
        let mut log: Vec<(usize, Event)> = Vec::new();
        let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut id = 0u128;
        for step in 0..longest {
            for (o, seq) in seqs.iter().enumerate() {
                if let Some(&e) = seq.get(step) {
                    id += 1;
                    log.push((o, to_event(&engine, e, step as u64 * 10, id)));
                }
            }
        }
        let place = |o: usize| engine.place_with(
            OrderId::from_u128(o as u128),
            Purchase::example().into(),
            EventId::from_u128(u128::MAX - o as u128),
            Timestamp::from_micros(0),
        );
        let replay = |log: &[(usize, Event)]| -> (Vec<OrderState>, usize) {
            let mut orders: Vec<OrderState> = (0..seqs.len()).map(place).collect();
            let mut duplicates = 0;
            for (o, event) in log {
                if let Err(Error::Duplicate { .. }) = engine.apply_in_place(&mut orders[*o], event) {
                    duplicates += 1;
                }
            }
            (orders, duplicates)
        };
        let (clean, clean_dups) = replay(&log);
        prop_assert_eq!(clean_dups, 0);
        // Redeliver earlier entries after later ones, as an at-least-once source would.
        let mut noisy = log.clone();
        if !log.is_empty() {
            for (what, after) in &repeats {
                let entry = log[what.index(log.len())].clone();
                let original = noisy.iter().position(|(_, e)| e.id == entry.1.id).expect("in the log");
                let position = original + 1 + after.index(noisy.len() - original);
                noisy.insert(position, entry);
            }
        }
        let (replayed, _) = replay(&noisy);
        for (a, b) in clean.iter().zip(&replayed) {
            prop_assert_eq!(a.status, b.status);
            prop_assert_eq!(a.version, b.version);
            let ids = |o: &OrderState| o.history.iter().map(|h| h.event_id).collect::<Vec<_>>();
            prop_assert_eq!(ids(a), ids(b));
        }
    }
}
