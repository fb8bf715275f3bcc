//! Test helpers (feature `testing`): given/when/then [`Scenario`]s of a lifecycle, and the
//! conformance suite for sources, sinks and stores.
//!
//! Each function exercises one trait's `# Contract` against a live implementation and panics
//! with a message naming the broken rule. The core runs them against its in-memory types;
//! adapters run them against their real servers. They use fresh random order ids, so they can
//! run against a store or topic that already holds other data.

mod scenario;

pub use scenario::{Given, Scenario, Then, STEP_MICROS};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Command, CommandSource, Engine, Envelope, Error, Event, EventId, Lifecycle, ListQuery, OrderId,
    OrderState, OrderStore, Purchase, Timestamp, TransitionRecord, TransitionSink,
};

/// The address of a real service for an integration test, from environment variable `var`
/// (set by the project's service scripts).
///
/// When the variable is unset, returns `None` after printing why the test is skipped, so a
/// developer without the service sees the skip; under CI (`CI=true`) it panics instead,
/// because there every service must be present.
pub fn service_address(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: CI must start this service (see scripts/)")
        }
        _ => {
            eprintln!(
                "SKIPPED: {var} is not set; start the service with scripts/ or run scripts/test.sh"
            );
            None
        }
    }
}

/// Commands for `orders` fresh orders: a placement followed by `events_per_order - 1` events
/// each, interleaved across orders the way a real stream mixes them.
pub fn sample_commands(orders: usize, events_per_order: usize) -> Vec<Command> {
    let ids: Vec<OrderId> = (0..orders).map(|_| OrderId::random()).collect();
    let names = ["prepare", "ship", "deliver", "complete"];
    let mut out = Vec::with_capacity(orders * events_per_order);
    for step in 0..events_per_order {
        for id in &ids {
            out.push(if step == 0 {
                Command::Place {
                    order_id: *id,
                    event_id: EventId::random(),
                    purchase: Purchase::example().into(),
                    placed_at: None,
                    actor: None,
                }
            } else {
                Command::apply(*id, names[(step - 1) % names.len()])
            });
        }
    }
    out
}

async fn next_within(source: &mut dyn CommandSource, wait: Duration) -> Option<Envelope> {
    match tokio::time::timeout(wait, source.next()).await {
        Ok(Ok(envelope)) => envelope,
        Ok(Err(e)) => panic!("source contract: next() failed: {e}"),
        Err(_) => None,
    }
}

/// Reads until every id in `wanted` was seen or `wait` passes without a message; returns the
/// envelopes of wanted ids in arrival order and acknowledges foreign ones.
async fn collect(
    source: &mut dyn CommandSource,
    wanted: &HashSet<EventId>,
    wait: Duration,
) -> Vec<Envelope> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while seen.len() < wanted.len() {
        let Some(envelope) = next_within(source, wait).await else {
            break;
        };
        let id = envelope.command.event_id();
        if wanted.contains(&id) {
            seen.insert(id);
            out.push(envelope);
        } else {
            envelope.ack.ack();
        }
    }
    out
}

/// Checks a [`CommandSource`]: delivery of everything produced, per-order ordering,
/// redelivery of what was not acknowledged, no redelivery once everything is acknowledged.
///
/// `produce` appends commands to the underlying log; `open` starts a new reader of the same
/// log (a new consumer in the same group) and must release the previous reader's claim when
/// that reader is dropped. `wait` bounds each read (use a few seconds for real brokers).
pub async fn source_conformance<P, PF, O, OF>(mut produce: P, mut open: O, wait: Duration)
where
    P: FnMut(Vec<Command>) -> PF,
    PF: Future<Output = Result<(), Error>>,
    O: FnMut() -> OF,
    OF: Future<Output = Result<Box<dyn CommandSource>, Error>>,
{
    let commands = sample_commands(8, 4);
    let wanted: HashSet<EventId> = commands.iter().map(Command::event_id).collect();
    let mut expected_order: HashMap<OrderId, Vec<EventId>> = HashMap::new();
    for c in &commands {
        expected_order
            .entry(c.order_id())
            .or_default()
            .push(c.event_id());
    }
    let mut first = open().await.expect("open the first reader");
    produce(commands.clone())
        .await
        .expect("produce the commands");

    let received = collect(first.as_mut(), &wanted, wait).await;
    assert_eq!(
        received.len(),
        wanted.len(),
        "source contract: every produced command is delivered"
    );
    let mut actual_order: HashMap<OrderId, Vec<EventId>> = HashMap::new();
    for e in &received {
        actual_order
            .entry(e.command.order_id())
            .or_default()
            .push(e.command.event_id());
    }
    assert_eq!(
        actual_order, expected_order,
        "source contract: commands of one order arrive in order"
    );
    let original: HashMap<EventId, Command> =
        commands.into_iter().map(|c| (c.event_id(), c)).collect();
    for e in &received {
        assert_eq!(
            &e.command,
            &original[&e.command.event_id()],
            "source contract: commands arrive intact"
        );
    }

    // Acknowledge the placements only: every other command must come again.
    let mut unacked = HashSet::new();
    for envelope in received {
        if matches!(envelope.command, Command::Place { .. }) {
            envelope.ack.ack();
        } else {
            unacked.insert(envelope.command.event_id());
        }
    }
    drop(first);

    let mut second = open().await.expect("open the second reader");
    let again = collect(second.as_mut(), &unacked, wait).await;
    let again_ids: HashSet<EventId> = again.iter().map(|e| e.command.event_id()).collect();
    assert_eq!(
        again_ids, unacked,
        "source contract: unacknowledged commands are delivered again"
    );
    for envelope in again {
        envelope.ack.ack();
    }
    drop(second);

    let mut third = open().await.expect("open the third reader");
    let leftovers = collect(third.as_mut(), &wanted, wait).await;
    assert!(
        leftovers.is_empty(),
        "source contract: nothing comes back once everything is acknowledged (got {} commands)",
        leftovers.len()
    );
}

/// How a sink treats a record published twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeats {
    /// The destination keys records by `(order_id, version)`: a repeat replaces, never adds.
    Replaced,
    /// The destination is a log: a repeat may appear again.
    Appended,
}

/// Records of one fresh order going through the ecommerce lifecycle: placement plus four
/// transitions, versions 1 to 5. The placement names the actor `sample-shop` and the first
/// transition `sample-operator` (the later ones are automatic), so that destinations show
/// they keep who did what.
pub fn sample_records() -> Vec<TransitionRecord> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let engine = Engine::new(Arc::clone(&lifecycle));
    let mut order = engine.place(
        OrderId::random(),
        Purchase::example().into(),
        Timestamp::from_micros(1_000),
    );
    order.placed_by_actor = Some("sample-shop".into());
    let mut out = vec![TransitionRecord::placed(&lifecycle, &order)];
    let mut at = 1_000;
    while let Some(kind) = lifecycle.advance_event(order.status) {
        at += 250;
        let mut event = Event::new(kind, Timestamp::from_micros(at));
        if out.len() == 1 {
            event.actor = Some("sample-operator".into());
        }
        let t = engine
            .apply_in_place(&mut order, &event)
            .expect("the happy path is legal");
        out.push(TransitionRecord::of_transition(
            &lifecycle,
            &order,
            &t,
            None,
            event.actor.clone(),
        ));
    }
    out
}

/// Checks a [`TransitionSink`]: a batch is accepted, a repeated batch is accepted and treated
/// as `repeats` says, the empty batch is accepted. `read_back` returns what the destination
/// holds for one order, in destination order.
pub async fn sink_conformance<R, RF>(sink: &dyn TransitionSink, repeats: Repeats, read_back: R)
where
    R: Fn(OrderId) -> RF,
    RF: Future<Output = Result<Vec<TransitionRecord>, Error>>,
{
    let records = sample_records();
    let order_id = records[0].order_id;
    sink.publish(&records)
        .await
        .expect("sink contract: a batch is accepted");
    sink.publish(&records)
        .await
        .expect("sink contract: a repeated batch is accepted");
    sink.publish(&[])
        .await
        .expect("sink contract: the empty batch is accepted");

    let held = read_back(order_id)
        .await
        .expect("read the destination back");
    let mut versions: Vec<u64> = held.iter().map(|r| r.version).collect();
    match repeats {
        Repeats::Replaced => {
            versions.sort_unstable();
            assert_eq!(
                versions,
                [1, 2, 3, 4, 5],
                "sink contract: one record per (order, version)"
            );
        }
        Repeats::Appended => {
            let first_pass: Vec<u64> = versions.iter().copied().take(records.len()).collect();
            assert_eq!(
                first_pass,
                [1, 2, 3, 4, 5],
                "sink contract: records of an order keep version order"
            );
            assert_eq!(
                versions.len(),
                2 * records.len(),
                "sink contract: both batches are durable"
            );
        }
    }
    for record in &held {
        let original = &records[(record.version - 1) as usize];
        assert_eq!(record, original, "sink contract: records arrive intact");
    }
}

/// Checks an [`OrderStore`]: absent orders, compare-and-set on version, listing by status
/// with paging in id order.
pub async fn store_conformance(store: &dyn OrderStore) {
    let engine = Engine::new(Lifecycle::ecommerce());
    let at = Timestamp::from_micros(5);
    let order = engine.place(OrderId::random(), Purchase::example().into(), at);
    let id = order.id;

    assert!(
        store.get(id).await.expect("get").is_none(),
        "store contract: unknown order is None"
    );
    store
        .compare_and_set(0, order.clone())
        .await
        .expect("store contract: create with expected 0");
    assert_eq!(
        store.get(id).await.expect("get").as_ref(),
        Some(&order),
        "store contract: read your write"
    );

    let again = store.compare_and_set(0, order.clone()).await;
    assert!(
        matches!(
            again,
            Err(Error::Conflict {
                expected: 0,
                actual: Some(1),
                ..
            })
        ),
        "store contract: a second create is a conflict naming version 1, got {again:?}"
    );

    let mut moved = order.clone();
    let kind = engine
        .lifecycle()
        .advance_event(moved.status)
        .expect("processing advances");
    engine
        .apply_in_place(&mut moved, &Event::new(kind, at))
        .expect("legal");
    let stale = store.compare_and_set(7, moved.clone()).await;
    assert!(
        matches!(
            stale,
            Err(Error::Conflict {
                expected: 7,
                actual: Some(1),
                ..
            })
        ),
        "store contract: a wrong expected version is a conflict, got {stale:?}"
    );
    assert_eq!(
        store.get(id).await.expect("get").map(|s| s.version),
        Some(1),
        "store contract: a conflict writes nothing"
    );
    store
        .compare_and_set(1, moved.clone())
        .await
        .expect("store contract: the right version writes");
    assert_eq!(store.get(id).await.expect("get"), Some(moved.clone()));
    let unknown = OrderId::random();
    assert_eq!(
        store.get_many(&[id, unknown, id]).await.expect("get_many"),
        vec![Some(moved.clone()), None, Some(moved.clone())],
        "store contract: get_many answers each id in order"
    );

    // Listing: our orders in state `failed` (an unusual state, so a shared store rarely has
    // others), paged two at a time.
    let failed = engine
        .lifecycle()
        .state("failed")
        .expect("ecommerce has failed");
    let fail = engine
        .lifecycle()
        .event("fail")
        .expect("ecommerce has fail");
    let mut ours: Vec<OrderState> = Vec::new();
    for _ in 0..5 {
        let mut o = engine.place(OrderId::random(), Purchase::example().into(), at);
        let event = Event {
            reason: Some("conformance".into()),
            ..Event::new(fail, at)
        };
        engine
            .apply_in_place(&mut o, &event)
            .expect("fail is legal");
        store.compare_and_set(0, o.clone()).await.expect("create");
        ours.push(o);
    }
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(ListQuery {
                status: Some(failed),
                after,
                limit: 2,
            })
            .await
            .expect("list");
        assert!(
            page.len() <= 2,
            "store contract: a page holds at most `limit` orders"
        );
        assert!(
            page.iter().all(|o| o.status == failed),
            "store contract: listing filters by status"
        );
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        listed.extend(page);
    }
    let ids: Vec<OrderId> = listed.iter().map(|o| o.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        ids, sorted,
        "store contract: pages are in ascending id order without repeats"
    );
    for o in &ours {
        assert!(
            ids.contains(&o.id),
            "store contract: every order in the state is listed"
        );
    }
    assert!(
        !ids.contains(&id),
        "store contract: orders in other states are not listed"
    );
}

/// A log destination that keeps everything written to it, for tests that check what was
/// logged. Clones share one buffer; give a clone to the subscriber
/// (`tracing_subscriber::fmt().with_writer(move || log.clone())`) and read [`CapturedLog::text`].
#[derive(Clone, Debug, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
