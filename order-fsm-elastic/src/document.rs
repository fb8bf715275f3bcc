//! Documents: what each index holds, and their `_bulk` encoding.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use order_fsm::{
    DeadLetter, EventId, MetricsRecord, OrderId, Purchase, Timestamp, TransitionRecord,
};
use serde::{Deserialize, Serialize};

/// A document of the transitions index: the record plus fields for analyses (times in
/// milliseconds for `date` fields, micros kept exactly beside them).
#[derive(Serialize)]
struct TransitionDocRef<'a> {
    order_id: OrderId,
    event_id: EventId,
    version: u64,
    from: Option<&'a str>,
    to: &'a str,
    event: &'a str,
    at: u64,
    at_us: u64,
    placed_at: u64,
    placed_at_us: u64,
    in_previous_state_us: u64,
    since_placed_us: u64,
    terminal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    price_cents: i64,
    purchase: &'a Purchase,
}

/// The owned form read back from the index.
#[derive(Deserialize)]
pub(crate) struct TransitionDoc {
    order_id: OrderId,
    event_id: EventId,
    version: u64,
    from: Option<String>,
    to: String,
    event: String,
    at_us: u64,
    placed_at_us: u64,
    in_previous_state_us: u64,
    terminal: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    purchase: Purchase,
}

impl From<TransitionDoc> for TransitionRecord {
    fn from(d: TransitionDoc) -> Self {
        let mut record = TransitionRecord::new(
            d.order_id,
            d.event_id,
            d.version,
            d.event,
            d.to,
            Timestamp::from_micros(d.at_us),
            Arc::new(d.purchase),
        );
        record.from = d.from.map(Cow::Owned);
        record.placed_at = Timestamp::from_micros(d.placed_at_us);
        record.in_previous_state_micros = d.in_previous_state_us;
        record.terminal = d.terminal;
        record.reason = d.reason;
        record.actor = d.actor;
        record
    }
}

/// A document of the orders index: the order's latest state and what analyses group by
/// (no e-mail or address).
#[derive(Serialize)]
struct OrderDocRef<'a> {
    order_id: OrderId,
    status: &'a str,
    version: u64,
    last_event: &'a str,
    updated_at: u64,
    placed_at: u64,
    terminal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    product: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    price_cents: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<u32>,
    payment_gateway: &'a str,
    card_brand: &'a str,
    bank: &'a str,
    region: &'a str,
}

/// Which index a document goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Transitions,
    Orders,
    Metrics,
    DeadLetters,
}

/// One encoded bulk operation (action line and source line) with what is needed to report
/// on it.
#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) target: Target,
    pub(crate) id: String,
    /// Index of the record in the publish call it came from.
    pub(crate) slot: usize,
    pub(crate) bytes: Bytes,
}

/// Index names, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct Indices {
    pub(crate) transitions: String,
    pub(crate) orders: String,
    pub(crate) metrics: String,
    pub(crate) dead_letters: String,
}

impl Indices {
    pub(crate) fn name(&self, target: Target) -> &str {
        match target {
            Target::Transitions => &self.transitions,
            Target::Orders => &self.orders,
            Target::Metrics => &self.metrics,
            Target::DeadLetters => &self.dead_letters,
        }
    }
}

/// Writes `{"index":{...}}\n{source}\n` into `buf` and splits it off as one op.
fn push_op(
    buf: &mut BytesMut,
    index: &str,
    id: &str,
    external_version: Option<u64>,
    source: &impl Serialize,
) -> Result<Bytes, serde_json::Error> {
    let mut w = buf.writer();
    write!(w, r#"{{"index":{{"_index":"{index}","_id":"{id}""#).map_err(serde_json::Error::io)?;
    if let Some(v) = external_version {
        write!(w, r#","version":{v},"version_type":"external""#).map_err(serde_json::Error::io)?;
    }
    w.write_all(b"}}\n").map_err(serde_json::Error::io)?;
    serde_json::to_writer(&mut w, source)?;
    w.write_all(b"\n").map_err(serde_json::Error::io)?;
    let buf = w.into_inner();
    Ok(buf.split().freeze())
}

/// The id of a record's transition document.
pub(crate) fn transition_id(order_id: OrderId, version: u64) -> String {
    format!("{order_id}:{version}")
}

/// Encodes a publish call: one transitions document per record, and one orders document per
/// order (its highest version in the batch; older ones would be refused by the version guard
/// anyway).
pub(crate) fn encode_records(
    indices: &Indices,
    records: &[TransitionRecord],
) -> Result<Vec<Op>, serde_json::Error> {
    let mut buf = BytesMut::with_capacity(records.len() * 1024);
    let mut ops = Vec::with_capacity(records.len() * 2);
    let mut latest: HashMap<OrderId, usize> = HashMap::with_capacity(records.len());
    for (slot, r) in records.iter().enumerate() {
        let id = transition_id(r.order_id, r.version);
        let doc = TransitionDocRef {
            order_id: r.order_id,
            event_id: r.event_id,
            version: r.version,
            from: r.from.as_deref(),
            to: &r.to,
            event: &r.event,
            at: r.at.as_millis(),
            at_us: r.at.as_micros(),
            placed_at: r.placed_at.as_millis(),
            placed_at_us: r.placed_at.as_micros(),
            in_previous_state_us: r.in_previous_state_micros,
            since_placed_us: r.at.micros_since(r.placed_at),
            terminal: r.terminal,
            reason: r.reason.as_deref(),
            actor: r.actor.as_deref(),
            price_cents: r.purchase.price.minor_units(),
            purchase: &r.purchase,
        };
        let bytes = push_op(&mut buf, &indices.transitions, &id, None, &doc)?;
        ops.push(Op {
            target: Target::Transitions,
            id,
            slot,
            bytes,
        });
        latest
            .entry(r.order_id)
            .and_modify(|s| {
                if records[*s].version < r.version {
                    *s = slot;
                }
            })
            .or_insert(slot);
    }
    let mut slots: Vec<usize> = latest.into_values().collect();
    slots.sort_unstable();
    for slot in slots {
        let r = &records[slot];
        let p = &r.purchase;
        let doc = OrderDocRef {
            order_id: r.order_id,
            status: &r.to,
            version: r.version,
            last_event: &r.event,
            updated_at: r.at.as_millis(),
            placed_at: r.placed_at.as_millis(),
            terminal: r.terminal,
            reason: r.reason.as_deref(),
            product: &p.product,
            category: p.category.as_deref(),
            price_cents: p.price.minor_units(),
            quantity: p.quantity,
            payment_gateway: &p.payment_gateway,
            card_brand: &p.card_brand,
            bank: &p.bank,
            region: &p.region,
        };
        let id = r.order_id.to_string();
        let bytes = push_op(&mut buf, &indices.orders, &id, Some(r.version), &doc)?;
        ops.push(Op {
            target: Target::Orders,
            id,
            slot,
            bytes,
        });
    }
    Ok(ops)
}

#[derive(Serialize)]
struct StateCount<'a> {
    state: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct MetricsDocRef<'a> {
    window_start: u64,
    window_end: u64,
    elapsed_secs: f64,
    orders_placed: u64,
    transitions: u64,
    dead_lettered: u64,
    duplicates: u64,
    transitions_per_sec: f64,
    orders_finished_per_sec: f64,
    orders_finished: Vec<StateCount<'a>>,
    per_transition: &'a [order_fsm::TransitionLatency],
    end_to_end: &'a order_fsm::LatencySummary,
    processing: &'a order_fsm::LatencySummary,
}

/// The id of a metrics window's document.
pub(crate) fn metrics_id(m: &MetricsRecord) -> String {
    format!(
        "{}-{}",
        m.window_start.as_micros(),
        m.window_end.as_micros()
    )
}

/// Encodes one metrics window.
pub(crate) fn encode_metrics(
    indices: &Indices,
    m: &MetricsRecord,
) -> Result<Op, serde_json::Error> {
    let s = &m.metrics;
    let doc = MetricsDocRef {
        window_start: m.window_start.as_millis(),
        window_end: m.window_end.as_millis(),
        elapsed_secs: s.elapsed_secs,
        orders_placed: s.orders_placed,
        transitions: s.transitions,
        dead_lettered: s.dead_lettered,
        duplicates: s.duplicates,
        transitions_per_sec: s.transitions_per_sec,
        orders_finished_per_sec: s.orders_finished_per_sec,
        orders_finished: s
            .orders_finished
            .iter()
            .map(|(state, count)| StateCount {
                state,
                count: *count,
            })
            .collect(),
        per_transition: &s.per_transition,
        end_to_end: &s.end_to_end,
        processing: &s.processing,
    };
    let id = metrics_id(m);
    let mut buf = BytesMut::with_capacity(1024);
    let bytes = push_op(&mut buf, &indices.metrics, &id, None, &doc)?;
    Ok(Op {
        target: Target::Metrics,
        id,
        slot: 0,
        bytes,
    })
}

#[derive(Serialize)]
struct DeadLetterDocRef<'a> {
    order_id: OrderId,
    event_id: EventId,
    reason: &'a str,
    partition: i32,
    offset: i64,
    command: &'a order_fsm::Command,
}

/// Encodes one dead letter (id: the command's event id, so a repeat replaces it).
pub(crate) fn encode_dead_letter(
    indices: &Indices,
    l: &DeadLetter,
) -> Result<Op, serde_json::Error> {
    let doc = DeadLetterDocRef {
        order_id: l.command.order_id(),
        event_id: l.command.event_id(),
        reason: &l.reason,
        partition: l.origin.partition,
        offset: l.origin.offset,
        command: &l.command,
    };
    let id = l.command.event_id().to_string();
    let mut buf = BytesMut::with_capacity(512);
    let bytes = push_op(&mut buf, &indices.dead_letters, &id, None, &doc)?;
    Ok(Op {
        target: Target::DeadLetters,
        id,
        slot: 0,
        bytes,
    })
}

/// The command a rejected record stands for, so it can go to a dead-letter sink.
pub(crate) fn command_of(r: &TransitionRecord) -> order_fsm::Command {
    if r.from.is_none() {
        order_fsm::Command::Place {
            order_id: r.order_id,
            event_id: r.event_id,
            purchase: Arc::clone(&r.purchase),
            placed_at: Some(r.placed_at),
            actor: r.actor.clone(),
        }
    } else {
        order_fsm::Command::Apply {
            order_id: r.order_id,
            event_id: r.event_id,
            event: r.event.to_string(),
            expected_version: Some(r.version - 1),
            reason: r.reason.clone(),
            actor: r.actor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices() -> Indices {
        Indices {
            transitions: "p-transitions".into(),
            orders: "p-orders".into(),
            metrics: "p-metrics".into(),
            dead_letters: "p-dead_letters".into(),
        }
    }

    #[test]
    fn records_become_transition_docs_and_one_versioned_order_doc() {
        let records = order_fsm::testing::sample_records();
        let ops = encode_records(&indices(), &records).unwrap();
        assert_eq!(ops.len(), records.len() + 1);
        let order = ops.last().unwrap();
        assert_eq!(order.target, Target::Orders);
        assert_eq!(order.slot, records.len() - 1);
        let text = std::str::from_utf8(&order.bytes).unwrap();
        assert!(
            text.contains(r#""version":5,"version_type":"external""#),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2);
        let first = std::str::from_utf8(&ops[0].bytes).unwrap();
        let source: serde_json::Value =
            serde_json::from_str(first.lines().nth(1).unwrap()).unwrap();
        assert_eq!(ops[0].id, format!("{}:1", records[0].order_id));
        let back: TransitionRecord = serde_json::from_value::<TransitionDoc>(source)
            .unwrap()
            .into();
        assert_eq!(back, records[0]);
    }
}
