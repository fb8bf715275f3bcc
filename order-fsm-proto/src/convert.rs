//! Conversions between the messages of `order_fsm.v1` and the core types.

use std::borrow::Cow;
use std::sync::Arc;

use order_fsm::{Command, Error, EventId, OrderId, Purchase, Timestamp, TransitionRecord};
use prost::Message;

use crate::v1;

mod state;
pub use state::{decode_state, encode_state};

/// A wire purchase as a core purchase (not yet validated). A bad price names `price`.
impl TryFrom<v1::Purchase> for Purchase {
    type Error = Error;

    fn try_from(p: v1::Purchase) -> Result<Self, Error> {
        let mut purchase = Purchase::new(p.product, p.price.parse()?);
        purchase.payment_gateway = p.payment_gateway;
        purchase.card_brand = p.card_brand;
        purchase.bank = p.bank;
        purchase.region = p.region;
        purchase.shipping_address = p.shipping_address;
        purchase.customer_email = p.customer_email;
        purchase.quantity = p.quantity;
        purchase.category = p.category;
        Ok(purchase)
    }
}

/// The wire form of a purchase (price as a decimal string).
impl From<&Purchase> for v1::Purchase {
    fn from(p: &Purchase) -> Self {
        Self {
            product: p.product.clone(),
            price: p.price.to_string(),
            payment_gateway: p.payment_gateway.clone(),
            card_brand: p.card_brand.clone(),
            bank: p.bank.clone(),
            region: p.region.clone(),
            shipping_address: p.shipping_address.clone(),
            customer_email: p.customer_email.clone(),
            quantity: p.quantity,
            category: p.category.clone(),
        }
    }
}

/// The state change of `record` as the service shows it (`Order.history`, `WatchOrder`).
pub fn transition_of(record: &TransitionRecord) -> v1::Transition {
    v1::Transition {
        version: record.version,
        from_status: record.from.as_ref().map(|s| s.to_string()),
        to_status: record.to.to_string(),
        event: record.event.to_string(),
        event_id: record.event_id.to_string(),
        at_micros: record.at.as_micros(),
        in_previous_state_micros: record.in_previous_state_micros,
        terminal: record.terminal,
        reason: record.reason.clone(),
        actor: record.actor.clone(),
    }
}

/// The protobuf payload (`order_fsm.v1.CommandRecord`) of `command`.
///
/// # Errors
/// [`Error::InvalidField`] (`type`) for a kind of command newer than this schema.
pub fn encode_command(command: &Command) -> Result<Vec<u8>, Error> {
    let kind = match command {
        Command::Place {
            purchase,
            placed_at,
            ..
        } => v1::command_record::Command::Place(v1::Placement {
            purchase: Some(v1::Purchase::from(&**purchase)),
            placed_at_micros: placed_at.map(|t| t.as_micros()),
        }),
        Command::Apply {
            event,
            expected_version,
            reason,
            ..
        } => v1::command_record::Command::Apply(v1::EventCommand {
            event: event.clone(),
            expected_version: *expected_version,
            reason: reason.clone(),
        }),
        _ => {
            return Err(Error::InvalidField {
                field: "type",
                reason: "this kind of command has no protobuf form yet".into(),
            })
        }
    };
    Ok(v1::CommandRecord {
        order_id: command.order_id().to_string(),
        event_id: command.event_id().to_string(),
        actor: command.actor().map(str::to_owned),
        command: Some(kind),
    }
    .encode_to_vec())
}

/// The command in a protobuf payload (`order_fsm.v1.CommandRecord`).
///
/// # Errors
/// [`Error::Decode`] when the bytes are not a `CommandRecord`, or a field is missing or
/// invalid (the reason names it: `order_id`, `event_id`, `purchase`, `price`, ...).
pub fn decode_command(payload: &[u8]) -> Result<Command, Error> {
    let record = v1::CommandRecord::decode(payload).map_err(not_a("CommandRecord"))?;
    let order_id: OrderId = parse_id(&record.order_id, "order_id")?;
    let event_id: EventId = parse_id(&record.event_id, "event_id")?;
    let actor = record.actor;
    Ok(match record.command.ok_or_else(|| missing("command"))? {
        v1::command_record::Command::Place(placement) => {
            let purchase = placement.purchase.ok_or_else(|| missing("purchase"))?;
            Command::Place {
                order_id,
                event_id,
                purchase: Arc::new(Purchase::try_from(purchase).map_err(decode)?),
                placed_at: placement.placed_at_micros.map(Timestamp::from_micros),
                actor,
            }
        }
        v1::command_record::Command::Apply(apply) => {
            if apply.event.is_empty() {
                return Err(missing("event"));
            }
            Command::Apply {
                order_id,
                event_id,
                event: apply.event,
                expected_version: apply.expected_version,
                reason: apply.reason,
                actor,
            }
        }
    })
}

/// The protobuf payload (`order_fsm.v1.TransitionRecord`) of `record`.
pub fn encode_transition(record: &TransitionRecord) -> Vec<u8> {
    to_wire(record).encode_to_vec()
}

/// The protobuf payload (`order_fsm.v1.TransitionPack`) of `records`, in their order.
pub fn encode_transition_pack<'a>(
    records: impl IntoIterator<Item = &'a TransitionRecord>,
) -> Vec<u8> {
    v1::TransitionPack {
        records: records.into_iter().map(to_wire).collect(),
    }
    .encode_to_vec()
}

/// The transition records in a protobuf payload (`order_fsm.v1.TransitionPack`), in order.
///
/// # Errors
/// [`Error::Decode`] when the bytes are not a `TransitionPack`, or a record in it is
/// invalid (the reason names the record's index and the field).
pub fn decode_transition_pack(payload: &[u8]) -> Result<Vec<TransitionRecord>, Error> {
    let pack = v1::TransitionPack::decode(payload).map_err(not_a("TransitionPack"))?;
    pack.records
        .into_iter()
        .enumerate()
        .map(|(i, wire)| {
            from_wire(wire).map_err(|e| Error::Decode {
                reason: format!("records[{i}]: {}", reason_of(e)),
            })
        })
        .collect()
}

fn to_wire(record: &TransitionRecord) -> v1::TransitionRecord {
    v1::TransitionRecord {
        order_id: record.order_id.to_string(),
        transition: Some(transition_of(record)),
        placed_at_micros: record.placed_at.as_micros(),
        purchase: Some(v1::Purchase::from(&*record.purchase)),
    }
}

fn reason_of(e: Error) -> String {
    match e {
        Error::Decode { reason } => reason,
        other => other.to_string(),
    }
}

/// The transition record in a protobuf payload (`order_fsm.v1.TransitionRecord`).
///
/// # Errors
/// [`Error::Decode`] when the bytes are not a `TransitionRecord`, or a field is missing or
/// invalid (the reason names it).
pub fn decode_transition(payload: &[u8]) -> Result<TransitionRecord, Error> {
    from_wire(v1::TransitionRecord::decode(payload).map_err(not_a("TransitionRecord"))?)
}

fn from_wire(wire: v1::TransitionRecord) -> Result<TransitionRecord, Error> {
    let order_id = parse_id(&wire.order_id, "order_id")?;
    let t = wire.transition.ok_or_else(|| missing("transition"))?;
    let purchase = wire.purchase.ok_or_else(|| missing("purchase"))?;
    let purchase = Arc::new(Purchase::try_from(purchase).map_err(decode)?);
    if t.to_status.is_empty() {
        return Err(missing("to_status"));
    }
    if t.event.is_empty() {
        return Err(missing("event"));
    }
    let mut record = TransitionRecord::new(
        order_id,
        parse_id(&t.event_id, "event_id")?,
        t.version,
        t.event,
        t.to_status,
        Timestamp::from_micros(t.at_micros),
        purchase,
    );
    record.from = t.from_status.map(Cow::Owned);
    record.placed_at = Timestamp::from_micros(wire.placed_at_micros);
    record.in_previous_state_micros = t.in_previous_state_micros;
    record.terminal = t.terminal;
    record.reason = t.reason;
    record.actor = t.actor;
    Ok(record)
}

fn parse_id<T: std::str::FromStr>(text: &str, field: impl std::fmt::Display) -> Result<T, Error> {
    text.parse().map_err(|_| Error::Decode {
        reason: format!("field `{field}`: {text:?} is not a UUID"),
    })
}

fn missing(field: impl std::fmt::Display) -> Error {
    Error::Decode {
        reason: format!("field `{field}` is missing"),
    }
}

fn not_a(message: &'static str) -> impl FnOnce(prost::DecodeError) -> Error {
    move |e| Error::Decode {
        reason: format!("not a protobuf {message}: {e}"),
    }
}

/// Any error met while decoding, as a decode error (a message, not a request).
fn decode(e: Error) -> Error {
    match e {
        Error::Decode { .. } => e,
        other => Error::Decode {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
