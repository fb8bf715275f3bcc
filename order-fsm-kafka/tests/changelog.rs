//! `KafkaStateLog`: a new instance restores the latest state of every live order of a
//! partition, reads only about as much as the live orders need, and skips what it cannot
//! decode.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::Broker;
use order_fsm::{
    ecommerce, Engine, Event, EventKind, Lifecycle, OrderId, OrderState, Purchase, StateChange,
    StateLog, StateRecord, Timestamp,
};
use order_fsm_kafka::{KafkaConfig, KafkaStateLog, WireFormat, HEADER_FORMAT};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn lifecycle() -> Arc<Lifecycle> {
    Arc::new(Lifecycle::ecommerce())
}

fn log(config: &KafkaConfig) -> KafkaStateLog {
    KafkaStateLog::new(config, lifecycle())
        .expect("state log")
        .with_restore_timeout(Duration::from_secs(60))
}

/// Orders of one test: their latest states, made by the real engine.
struct Orders {
    engine: Engine,
    clock: u64,
}

impl Orders {
    fn new() -> Self {
        Self {
            engine: Engine::new(lifecycle()),
            clock: 1,
        }
    }

    fn tick(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp::from_micros(self.clock)
    }

    fn place(&mut self) -> OrderState {
        let at = self.tick();
        self.engine
            .place(OrderId::random(), Arc::new(Purchase::example()), at)
    }

    /// `state` after the next step of the happy path.
    fn advance(&mut self, state: &OrderState) -> OrderState {
        let kind: EventKind = [
            ecommerce::PREPARE,
            ecommerce::SHIP,
            ecommerce::DELIVER,
            ecommerce::COMPLETE,
        ][state.version as usize - 1];
        let event = Event::new(kind, self.tick());
        let transition = self.engine.apply(state, &event).expect("a legal event");
        let mut next = state.clone();
        next.commit(&transition, None, None).expect("commit");
        next
    }
}

fn change(partition: i32, state: &OrderState) -> StateChange {
    // Vary what was published: it must come back as written.
    StateChange::new(
        partition,
        state.clone(),
        state.version - (state.version % 2),
    )
}

async fn restore_map(log: &KafkaStateLog, partition: i32) -> HashMap<OrderId, StateChange> {
    let restored = log.restore(partition).await.expect("restore");
    let mut map = HashMap::new();
    for change in restored {
        assert_eq!(change.partition, partition, "a change of another partition");
        let id = change.state.id;
        assert!(
            map.insert(id, change).is_none(),
            "order {id} restored twice"
        );
    }
    map
}

fn assert_same(
    what: &str,
    restored: &HashMap<OrderId, StateChange>,
    expected: &HashMap<OrderId, StateChange>,
) {
    for (id, change) in expected {
        let got = restored.get(id).unwrap_or_else(|| {
            panic!(
                "{what}: order {id} (version {}) is missing",
                change.state.version
            )
        });
        assert_eq!(got, change, "{what}: order {id} is not its latest state");
    }
    for id in restored.keys() {
        assert!(
            expected.contains_key(id),
            "{what}: order {id} was forgotten or belongs elsewhere but was restored"
        );
    }
}

/// What a partition should restore to: the latest change of each order not forgotten.
#[derive(Default)]
struct Expected {
    partitions: HashMap<i32, HashMap<OrderId, StateChange>>,
}

impl Expected {
    fn appended(&mut self, changes: &[StateChange]) {
        for c in changes {
            self.partitions
                .entry(c.partition)
                .or_default()
                .insert(c.state.id, c.clone());
        }
    }

    fn forgotten(&mut self, partition: i32, ids: &[OrderId]) {
        let p = self.partitions.entry(partition).or_default();
        for id in ids {
            p.remove(id);
        }
    }

    fn of(&self, partition: i32) -> HashMap<OrderId, StateChange> {
        self.partitions.get(&partition).cloned().unwrap_or_default()
    }
}

async fn a_new_log_restores_the_latest_live_states(broker: Broker) {
    const PARTITIONS: i32 = 3;
    let config = broker.config("changelog-latest", PARTITIONS).await;
    let writer = log(&config);
    // The owner restores before it writes (empty here), so its records carry real restore
    // points rather than "from the start".
    for p in 0..PARTITIONS {
        assert!(writer.restore(p).await.expect("restore empty").is_empty());
    }
    let mut orders = Orders::new();
    let mut expected = Expected::default();
    let mut states: Vec<(i32, OrderState)> =
        (0..45).map(|i| (i % PARTITIONS, orders.place())).collect();
    // Several versions each (1 to 4), every append spanning all partitions and repeating the
    // orders that did not move.
    for round in 0..4 {
        for (i, (_, state)) in states.iter_mut().enumerate() {
            if round > 0 && i % 4 >= round {
                *state = orders.advance(state);
            }
        }
        let changes: Vec<StateChange> = states.iter().map(|(p, s)| change(*p, s)).collect();
        writer.append(&changes).await.expect("append");
        expected.appended(&changes);
    }
    // Forget every fifth order.
    for p in 0..PARTITIONS {
        let gone: Vec<OrderId> = states
            .iter()
            .enumerate()
            .filter(|(i, (q, _))| *q == p && i % 5 == 0)
            .map(|(_, (_, s))| s.id)
            .collect();
        assert!(!gone.is_empty());
        writer.forget(p, &gone).await.expect("forget");
        expected.forgotten(p, &gone);
    }
    // One more change to a few orders after the tombstones.
    let late: Vec<StateChange> = states
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 1)
        .map(|(_, (p, s))| change(*p, &orders.advance(s)))
        .collect();
    writer.append(&late).await.expect("append late");
    expected.appended(&late);

    let reader = log(&config);
    for p in 0..PARTITIONS {
        let restored = restore_map(&reader, p).await;
        assert_same(&format!("partition {p}"), &restored, &expected.of(p));
    }

    // The new owner goes on writing from what it restored: a third instance still finds
    // everything (the restored bookkeeping gives correct restore points).
    let p = 1;
    let mut own = expected.of(p);
    let (mut ids, mut latest): (Vec<OrderId>, Vec<StateChange>) = (Vec::new(), Vec::new());
    for (id, c) in &own {
        if c.state.version < 5 && latest.len() < 3 {
            latest.push(change(p, &orders.advance(&c.state)));
        } else if ids.len() < 3 {
            ids.push(*id);
        }
    }
    reader.append(&latest).await.expect("append after restore");
    reader.forget(p, &ids).await.expect("forget after restore");
    for c in &latest {
        own.insert(c.state.id, c.clone());
    }
    for id in &ids {
        own.remove(id);
    }
    let third = log(&config);
    assert_same(
        "after the new owner wrote",
        &restore_map(&third, p).await,
        &own,
    );
    // A clean hand-over: the next restore knows every change was published.
    reader.release(p).await.expect("hand over");
    let handed_over = own
        .iter()
        .map(|(id, c)| {
            let mut c = c.clone();
            c.published_up_to = c.state.version;
            (*id, c)
        })
        .collect();
    assert_same(
        "after a clean hand-over",
        &restore_map(&log(&config), p).await,
        &handed_over,
    );
}

async fn restore_cost_depends_on_live_orders(broker: Broker) {
    const ORDERS: usize = 2_000;
    const LIVE: usize = 20;
    let config = broker.config("changelog-cost", 1).await;
    let writer = log(&config);
    assert!(writer.restore(0).await.expect("restore empty").is_empty());
    let mut orders = Orders::new();
    let mut written = 0u64;
    let mut live = Vec::new();
    let mut finished = Vec::new();
    // 2,000 orders in chunks, three versions each.
    for chunk in 0..ORDERS / 100 {
        let mut states: Vec<OrderState> = (0..100).map(|_| orders.place()).collect();
        for version in 1..=3 {
            if version > 1 {
                states = states.iter().map(|s| orders.advance(s)).collect();
            }
            let changes: Vec<StateChange> = states.iter().map(|s| change(0, s)).collect();
            writer.append(&changes).await.expect("append");
            written += changes.len() as u64;
        }
        // The live orders are spread over the history, the first among the oldest.
        for (i, s) in states.into_iter().enumerate() {
            if i == 0 && chunk < LIVE {
                live.push(s);
            } else {
                finished.push(s.id);
            }
        }
    }
    assert_eq!(live.len(), LIVE);
    for ids in finished.chunks(500) {
        writer.forget(0, ids).await.expect("forget");
        written += ids.len() as u64;
    }
    // The live orders go on: one more change each, so their latest records are recent. A
    // record's restore point is taken before it is produced, so it is the next append (one
    // more change) whose header shows where these records begin.
    let mut last: Vec<StateChange> = live.iter().map(|s| change(0, &orders.advance(s))).collect();
    writer
        .append(&last)
        .await
        .expect("append the live orders' changes");
    written += last.len() as u64;
    last[0] = change(0, &orders.advance(&last[0].state));
    writer
        .append(&last[..1])
        .await
        .expect("append one more change");
    written += 1;

    let reader = log(&config);
    let restored = restore_map(&reader, 0).await;
    let expected: HashMap<OrderId, StateChange> =
        last.iter().map(|c| (c.state.id, c.clone())).collect();
    assert_same("the live orders", &restored, &expected);
    let read = reader.records_read_by_last_restore();
    assert!(
        read >= LIVE as u64,
        "read {read} records for {LIVE} live orders"
    );
    assert!(
        read * 10 < written,
        "the restore read {read} of the partition's {written} records: it should depend on \
         the {LIVE} live orders, not on the history"
    );
}

/// Produces `payload` to `partition` of the state topic with a plain producer (no headers).
async fn produce_raw(config: &KafkaConfig, partition: i32, key: &str, payload: &[u8]) {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", config.brokers());
    for (k, v) in config.properties() {
        client.set(k, v);
    }
    let producer: FutureProducer = client.create().expect("raw producer");
    producer
        .send(
            FutureRecord::to(config.state_topic())
                .partition(partition)
                .key(key)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("raw record delivered");
}

async fn malformed_records_are_skipped(broker: Broker) {
    let config = broker.config("changelog-malformed", 2).await;
    let writer = log(&config);
    for p in 0..2 {
        assert!(writer.restore(p).await.expect("restore empty").is_empty());
    }
    let mut orders = Orders::new();
    let (a, b) = (orders.place(), orders.place());
    let first = [change(0, &a), change(0, &b)];
    writer.append(&first).await.expect("append");

    // Not JSON; then JSON of a state that names a status the lifecycle lacks, keyed by `a`.
    produce_raw(&config, 0, &OrderId::random().to_string(), b"{not json").await;
    let mut bogus = StateRecord::of_change(&lifecycle(), &change(0, &orders.advance(&a)));
    bogus.status = "teleported".into();
    let bogus = serde_json::to_vec(&bogus).expect("encode");
    produce_raw(&config, 0, &a.id.to_string(), &bogus).await;

    let (b2, d) = (orders.advance(&b), orders.place());
    let later = [change(0, &b2), change(0, &d)];
    writer
        .append(&later)
        .await
        .expect("append after the malformed records");

    // Partition 1 ends with a malformed record, which has no restore-from header.
    let e = orders.place();
    writer.append(&[change(1, &e)]).await.expect("append");
    produce_raw(&config, 1, "not-an-order-id", b"\x00\x01garbage").await;

    let reader = log(&config);
    let expected: HashMap<OrderId, StateChange> = [change(0, &a), change(0, &b2), change(0, &d)]
        .into_iter()
        .map(|c| (c.state.id, c))
        .collect();
    assert_same("partition 0", &restore_map(&reader, 0).await, &expected);
    // All six records of partition 0 are read: the restore point is `a`'s first record.
    assert!(reader.records_read_by_last_restore() >= 6);
    let expected: HashMap<OrderId, StateChange> = [(e.id, change(1, &e))].into_iter().collect();
    assert_same("partition 1", &restore_map(&reader, 1).await, &expected);
}

/// A checkpoint (`mark`, then `published_below`) spares the next owner republishing what
/// came before it, and only that.
async fn a_checkpoint_covers_what_was_appended_before_its_mark(broker: Broker) {
    let config = broker.config("changelog-mark", 1).await;
    let writer = log(&config);
    assert!(writer.restore(0).await.expect("restore empty").is_empty());
    let mut orders = Orders::new();
    let before: Vec<OrderState> = (0..5).map(|_| orders.place()).collect();
    let unpublished = |s: &OrderState| StateChange::new(0, s.clone(), 0);
    writer
        .append(&before.iter().map(unpublished).collect::<Vec<_>>())
        .await
        .expect("append");
    let mark = writer.mark(0).expect("a mark of a restored partition");
    let after: Vec<OrderState> = (0..5).map(|_| orders.place()).collect();
    writer
        .append(&after.iter().map(unpublished).collect::<Vec<_>>())
        .await
        .expect("append");
    writer.published_below(0, mark).await.expect("checkpoint");
    let restored = restore_map(&log(&config), 0).await;
    assert_eq!(restored.len(), 10);
    for s in &before {
        assert_eq!(restored[&s.id].published_up_to, 1, "checkpointed");
    }
    for s in &after {
        assert_eq!(restored[&s.id].published_up_to, 0, "after the mark");
    }
}

/// A deployment switched to protobuf: its state topic holds JSON records (header-less, from
/// before the header, and `json`) and protobuf ones, and a restore reads them all, whatever
/// the reader's own format.
async fn a_log_switched_to_protobuf_restores_both_formats(broker: Broker) {
    let json = broker.config("changelog-formats", 1).await;
    let proto = json.clone().with_wire_format(WireFormat::Protobuf);
    let (json_writer, proto_writer) = (log(&json), log(&proto));
    assert!(json_writer
        .restore(0)
        .await
        .expect("restore empty")
        .is_empty());
    let mut orders = Orders::new();
    let (a, b, c) = (orders.place(), orders.place(), orders.place());
    json_writer
        .append(&[change(0, &a), change(0, &b)])
        .await
        .expect("append JSON");
    // A record from before the format header: JSON without it.
    let old = orders.place();
    let record = serde_json::to_vec(&StateRecord::of_change(&lifecycle(), &change(0, &old)))
        .expect("encode");
    produce_raw(&json, 0, &old.id.to_string(), &record).await;
    assert!(proto_writer.restore(0).await.expect("restore").len() == 3);
    let b2 = orders.advance(&b);
    proto_writer
        .append(&[change(0, &b2), change(0, &c)])
        .await
        .expect("append protobuf");

    let formats: Vec<Option<String>> = common::read_topic(&json, json.state_topic())
        .await
        .iter()
        .map(|m| common::header(m, HEADER_FORMAT))
        .collect();
    assert_eq!(
        formats,
        [
            Some("json"),
            Some("json"),
            None,
            Some("proto"),
            Some("proto")
        ]
        .map(|f| f.map(String::from)),
        "each record names its format, but the one from before the header"
    );
    let expected: HashMap<OrderId, StateChange> = [
        change(0, &a),
        change(0, &old),
        change(0, &b2),
        change(0, &c),
    ]
    .into_iter()
    .map(|c| (c.state.id, c))
    .collect();
    for (what, config) in [("a JSON reader", &json), ("a protobuf reader", &proto)] {
        assert_same(what, &restore_map(&log(config), 0).await, &expected);
    }
}

against_both!(
    a_log_switched_to_protobuf_restores_both_formats,
    a_checkpoint_covers_what_was_appended_before_its_mark,
    a_new_log_restores_the_latest_live_states,
    restore_cost_depends_on_live_orders,
    malformed_records_are_skipped,
);
