//! The state topic's records (`order_fsm.v1.StateRecord`) ⇄ the core's [`StateRecord`].

use std::borrow::Cow;
use std::sync::Arc;

use order_fsm::{Error, HistoryRecord, Purchase, StateRecord, Timestamp};
use prost::Message;

use super::{decode, missing, not_a, parse_id};
use crate::v1;

/// The protobuf payload (`order_fsm.v1.StateRecord`) of `record`.
pub fn encode_state(record: &StateRecord) -> Vec<u8> {
    v1::StateRecord {
        order_id: record.order_id.to_string(),
        version: record.version,
        status: record.status.to_string(),
        placed_by: record.placed_by.to_string(),
        placed_by_actor: record.placed_by_actor.clone(),
        created_at_micros: record.created_at.as_micros(),
        updated_at_micros: record.updated_at.as_micros(),
        purchase: Some(v1::Purchase::from(&*record.purchase)),
        history: record
            .history
            .iter()
            .map(|h| v1::StateHistoryEntry {
                event_id: h.event_id.to_string(),
                event: h.event.to_string(),
                to: h.to.to_string(),
                at_micros: h.at.as_micros(),
                reason: h.reason.clone(),
                actor: h.actor.clone(),
            })
            .collect(),
        rejected: record.rejected.iter().map(ToString::to_string).collect(),
        published_up_to: record.published_up_to,
    }
    .encode_to_vec()
}

/// The state record in a protobuf payload (`order_fsm.v1.StateRecord`). Whether its states
/// and events exist in a lifecycle is checked when it becomes a change
/// ([`StateRecord::into_change`]).
///
/// # Errors
/// [`Error::Decode`] when the bytes are not a `StateRecord`, or a field is missing or
/// invalid (the reason names it: `order_id`, `placed_by`, `history[2].event_id`,
/// `rejected[0]`, `purchase`, ...).
pub fn decode_state(payload: &[u8]) -> Result<StateRecord, Error> {
    let wire = v1::StateRecord::decode(payload).map_err(not_a("StateRecord"))?;
    if wire.status.is_empty() {
        return Err(missing("status"));
    }
    let purchase = wire.purchase.ok_or_else(|| missing("purchase"))?;
    let mut record = StateRecord::new(
        parse_id(&wire.order_id, "order_id")?,
        wire.version,
        wire.status,
        parse_id(&wire.placed_by, "placed_by")?,
        Timestamp::from_micros(wire.created_at_micros),
        Arc::new(Purchase::try_from(purchase).map_err(decode)?),
    );
    record.placed_by_actor = wire.placed_by_actor;
    record.updated_at = Timestamp::from_micros(wire.updated_at_micros);
    record.published_up_to = wire.published_up_to;
    record.history = wire
        .history
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let field = |name: &str| format!("history[{i}].{name}");
            if h.event.is_empty() {
                return Err(missing(field("event")));
            }
            if h.to.is_empty() {
                return Err(missing(field("to")));
            }
            let mut entry = HistoryRecord::new(
                parse_id(&h.event_id, field("event_id"))?,
                Cow::Owned(h.event),
                Cow::Owned(h.to),
                Timestamp::from_micros(h.at_micros),
            );
            entry.reason = h.reason;
            entry.actor = h.actor;
            Ok(entry)
        })
        .collect::<Result<_, Error>>()?;
    record.rejected = wire
        .rejected
        .iter()
        .enumerate()
        .map(|(i, id)| parse_id(id, format_args!("rejected[{i}]")))
        .collect::<Result<_, Error>>()?;
    Ok(record)
}
