//! What the typed client returns: the server's answers as core types.

use order_fsm::{Error as CoreError, EventId, OrderId, Purchase, Timestamp};

use crate::proto;
use crate::GrpcError;
#[cfg(doc)]
use crate::OrderClient;

/// The answer to [`OrderClient::place_order`] (one per order of [`OrderClient::place_orders`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlacedOrder {
    /// The order's id.
    pub order_id: OrderId,
    /// The placement's event id.
    pub event_id: EventId,
    /// The initial state, or the current one when the order already existed.
    pub status: String,
    /// The order's version.
    pub version: u64,
    /// Whether the idempotency key named an existing order.
    pub already_existed: bool,
}

/// One transition of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransitionView {
    /// Version after the change (1 for the placement).
    pub version: u64,
    /// State before, `None` for the placement.
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// Event name.
    pub event: String,
    /// The event's id.
    pub event_id: EventId,
    /// When.
    pub at: Timestamp,
    /// Microseconds spent in `from`.
    pub in_previous_state_micros: u64,
    /// Whether `to` is terminal.
    pub terminal: bool,
    /// The event's reason, if any.
    pub reason: Option<String>,
    /// Who asked for it (an API key's name), if anyone did.
    pub actor: Option<String>,
}

/// An order as the server reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderView {
    /// The order's id.
    pub order_id: OrderId,
    /// What was bought.
    pub purchase: Purchase,
    /// Current state.
    pub status: String,
    /// Current version.
    pub version: u64,
    /// Whether the state is terminal.
    pub terminal: bool,
    /// When it was placed.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Every transition, the placement first.
    pub history: Vec<TransitionView>,
}

/// One page of [`OrderClient::list_orders`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderPage {
    /// Orders in ascending id order.
    pub orders: Vec<OrderView>,
    /// Token of the next page, `None` on the last one.
    pub next_page_token: Option<String>,
}

/// The answer to [`OrderClient::apply_event`] and [`OrderClient::cancel_order`]: the
/// transition the event will cause once the runner applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventAccepted {
    /// The order.
    pub order_id: OrderId,
    /// The event's id.
    pub event_id: EventId,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Version after.
    pub version: u64,
    /// Whether the same event (same idempotency key) was already applied.
    pub already_applied: bool,
}

fn response_err(e: impl Into<CoreError>) -> GrpcError {
    GrpcError::Response(e.into())
}

pub(crate) fn placed_from_proto(
    reply: proto::PlaceOrderResponse,
) -> Result<PlacedOrder, GrpcError> {
    Ok(PlacedOrder {
        order_id: reply.order_id.parse().map_err(response_err)?,
        event_id: reply.event_id.parse().map_err(response_err)?,
        status: reply.status,
        version: reply.version,
        already_existed: reply.already_existed,
    })
}

pub(crate) fn transition_from_proto(t: proto::Transition) -> Result<TransitionView, GrpcError> {
    Ok(TransitionView {
        version: t.version,
        from: t.from_status,
        to: t.to_status,
        event: t.event,
        event_id: t.event_id.parse().map_err(response_err)?,
        at: Timestamp::from_micros(t.at_micros),
        in_previous_state_micros: t.in_previous_state_micros,
        terminal: t.terminal,
        reason: t.reason,
        actor: t.actor,
    })
}

pub(crate) fn order_from_proto(o: proto::Order) -> Result<OrderView, GrpcError> {
    let purchase = o
        .purchase
        .ok_or_else(|| response_err(CoreError::invalid_field("purchase", "is missing")))?;
    Ok(OrderView {
        order_id: o.order_id.parse().map_err(response_err)?,
        purchase: Purchase::try_from(purchase).map_err(response_err)?,
        status: o.status,
        version: o.version,
        terminal: o.terminal,
        created_at: Timestamp::from_micros(o.created_at_micros),
        updated_at: Timestamp::from_micros(o.updated_at_micros),
        history: o
            .history
            .into_iter()
            .map(transition_from_proto)
            .collect::<Result<_, _>>()?,
    })
}

pub(crate) fn accepted_from_proto(a: proto::EventAccepted) -> Result<EventAccepted, GrpcError> {
    Ok(EventAccepted {
        order_id: a.order_id.parse().map_err(response_err)?,
        event_id: a.event_id.parse().map_err(response_err)?,
        from: a.from_status,
        to: a.to_status,
        version: a.version,
        already_applied: a.already_applied,
    })
}
