//! What crosses the seams: commands in, transition records and dead letters out.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    EventId, HistoryEntry, Lifecycle, OrderId, OrderState, Purchase, Timestamp, Transition,
};

/// A command for the state machine, as sources decode it (JSON by default:
/// `{"type":"place", ...}` or `{"type":"apply", ...}`).
///
/// Decoding reads the fields in any order without buffering the message (serde's internally
/// tagged enums buffer every field first); unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Create an order in the lifecycle's initial state.
    Place {
        /// The new order's id.
        order_id: OrderId,
        /// Id of this placement; a redelivered placement is recognised by it.
        event_id: EventId,
        /// What was bought (shared: the order state and every record point to it).
        purchase: Arc<Purchase>,
        /// When the customer placed it (defaults to when the runner handles it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placed_at: Option<Timestamp>,
        /// Who asked for it: the name of the caller's API key at the intake (`None`: no
        /// access control, or an internal command).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<String>,
    },
    /// Apply a named event to an existing order.
    Apply {
        /// The order.
        order_id: OrderId,
        /// Id of this event; a redelivered event is recognised by it.
        event_id: EventId,
        /// The event's name in the lifecycle (`cancel`, `ship`, ...).
        event: String,
        /// Apply only if the order is at exactly this version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<u64>,
        /// Why (required by events like `fail`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Who asked for it: the name of the caller's API key at the intake (`None`: no
        /// access control, or an internal command).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<String>,
    },
}

/// The wire form of [`Command`]: every variant's fields in one struct, so that serde reads
/// a message in one pass whatever the order of its fields.
#[derive(Deserialize)]
struct WireCommand {
    #[serde(rename = "type")]
    kind: CommandKind,
    order_id: OrderId,
    event_id: EventId,
    #[serde(default)]
    purchase: Option<Arc<Purchase>>,
    #[serde(default)]
    placed_at: Option<Timestamp>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    expected_version: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CommandKind {
    Place,
    Apply,
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let wire = WireCommand::deserialize(deserializer)?;
        Ok(match wire.kind {
            CommandKind::Place => Self::Place {
                order_id: wire.order_id,
                event_id: wire.event_id,
                purchase: wire
                    .purchase
                    .ok_or_else(|| D::Error::missing_field("purchase"))?,
                placed_at: wire.placed_at,
                actor: wire.actor,
            },
            CommandKind::Apply => Self::Apply {
                order_id: wire.order_id,
                event_id: wire.event_id,
                event: wire.event.ok_or_else(|| D::Error::missing_field("event"))?,
                expected_version: wire.expected_version,
                reason: wire.reason,
                actor: wire.actor,
            },
        })
    }
}

impl Command {
    /// The order the command is about (the partition / shard key).
    pub fn order_id(&self) -> OrderId {
        match self {
            Self::Place { order_id, .. } | Self::Apply { order_id, .. } => *order_id,
        }
    }

    /// The command's event id.
    pub fn event_id(&self) -> EventId {
        match self {
            Self::Place { event_id, .. } | Self::Apply { event_id, .. } => *event_id,
        }
    }

    /// A placement with fresh ids.
    pub fn place(purchase: Purchase) -> Self {
        Self::Place {
            order_id: OrderId::random(),
            event_id: EventId::random(),
            purchase: Arc::new(purchase),
            placed_at: None,
            actor: None,
        }
    }

    /// An event for `order_id` with a fresh event id.
    pub fn apply(order_id: OrderId, event: impl Into<String>) -> Self {
        Self::Apply {
            order_id,
            event_id: EventId::random(),
            event: event.into(),
            expected_version: None,
            reason: None,
            actor: None,
        }
    }

    /// Who asked for the command (see the variants' `actor`).
    pub fn actor(&self) -> Option<&str> {
        match self {
            Self::Place { actor, .. } | Self::Apply { actor, .. } => actor.as_deref(),
        }
    }

    /// The command, asked for by `actor`.
    #[must_use]
    pub fn with_actor(mut self, who: Option<String>) -> Self {
        match &mut self {
            Self::Place { actor, .. } | Self::Apply { actor, .. } => *actor = who,
        }
        self
    }
}

/// The published form of one state change (or of a placement, where `from` is `None` and
/// `event` is `"place"`). Sinks key it by `(order_id, version)`, which makes re-publishing
/// after a crash idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransitionRecord {
    /// The order.
    pub order_id: OrderId,
    /// The event that caused the change.
    pub event_id: EventId,
    /// Order version after the change (1 for a placement).
    pub version: u64,
    /// Machine name of the state before, `None` for a placement.
    pub from: Option<Cow<'static, str>>,
    /// Machine name of the state after.
    pub to: Cow<'static, str>,
    /// Event name (`"place"` for a placement).
    pub event: Cow<'static, str>,
    /// When the change happened.
    pub at: Timestamp,
    /// When the order was placed.
    pub placed_at: Timestamp,
    /// Microseconds spent in `from`.
    pub in_previous_state_micros: u64,
    /// Whether `to` is terminal.
    pub terminal: bool,
    /// Reason carried by the event, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked for the change (the name of an API key; `None` for automatic steps and
    /// intakes without access control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What was bought (notifications and analytics need it).
    pub purchase: Arc<Purchase>,
}

/// Event name used in records of placements.
pub const PLACE_EVENT: &str = "place";

impl TransitionRecord {
    /// A record of `order_id` entering `to` at `version` by `event`, at `at`; the other fields
    /// start empty (no previous state, placed at `at`, not terminal, no reason or actor) and
    /// are public to set. Adapters that rebuild records from their own storage use this;
    /// the runner builds them with [`TransitionRecord::of_transition`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        order_id: OrderId,
        event_id: EventId,
        version: u64,
        event: impl Into<Cow<'static, str>>,
        to: impl Into<Cow<'static, str>>,
        at: Timestamp,
        purchase: Arc<Purchase>,
    ) -> Self {
        Self {
            order_id,
            event_id,
            version,
            from: None,
            to: to.into(),
            event: event.into(),
            at,
            placed_at: at,
            in_previous_state_micros: 0,
            terminal: false,
            reason: None,
            actor: None,
            purchase,
        }
    }

    /// The record of `order`'s placement.
    pub fn placed(lifecycle: &Lifecycle, order: &OrderState) -> Self {
        Self {
            order_id: order.id,
            event_id: order.placed_by,
            version: 1,
            from: None,
            to: Cow::Borrowed(lifecycle.state_name(lifecycle.initial())),
            event: Cow::Borrowed(PLACE_EVENT),
            at: order.created_at,
            placed_at: order.created_at,
            in_previous_state_micros: 0,
            terminal: lifecycle.is_terminal(lifecycle.initial()),
            reason: None,
            actor: order.placed_by_actor.clone(),
            purchase: Arc::clone(&order.purchase),
        }
    }

    /// The record of `transition` applied to `order`.
    pub fn of_transition(
        lifecycle: &Lifecycle,
        order: &OrderState,
        t: &Transition,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Self {
        Self {
            order_id: t.order_id,
            event_id: t.event_id,
            version: t.version,
            from: Some(Cow::Borrowed(lifecycle.state_name(t.from))),
            to: Cow::Borrowed(lifecycle.state_name(t.to)),
            event: Cow::Borrowed(lifecycle.event_name(t.event)),
            at: t.at,
            placed_at: order.created_at,
            in_previous_state_micros: t.in_previous_state_micros,
            terminal: t.terminal,
            reason,
            actor,
            purchase: Arc::clone(&order.purchase),
        }
    }

    /// The record of one history entry of `order` (`previous_at` is when `entry.from` began).
    pub fn of_history(
        lifecycle: &Lifecycle,
        order: &OrderState,
        entry: &HistoryEntry,
        previous_at: Timestamp,
    ) -> Self {
        Self {
            order_id: order.id,
            event_id: entry.event_id,
            version: entry.version,
            from: Some(Cow::Borrowed(lifecycle.state_name(entry.from))),
            to: Cow::Borrowed(lifecycle.state_name(entry.to)),
            event: Cow::Borrowed(lifecycle.event_name(entry.event)),
            at: entry.at,
            placed_at: order.created_at,
            in_previous_state_micros: entry.at.micros_since(previous_at),
            terminal: lifecycle.is_terminal(entry.to),
            reason: entry.reason.clone(),
            actor: entry.actor.clone(),
            purchase: Arc::clone(&order.purchase),
        }
    }

    /// Every record of an order so far, placement first.
    pub fn all_of(lifecycle: &Lifecycle, order: &OrderState) -> Vec<Self> {
        let mut out = vec![Self::placed(lifecycle, order)];
        let mut previous_at = order.created_at;
        for entry in &order.history {
            out.push(Self::of_history(lifecycle, order, entry, previous_at));
            previous_at = entry.at;
        }
        out
    }
}

/// Where a message came from in its source (Kafka partition and offset; in-memory sources
/// use partition 0 and the message's index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Origin {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

impl Origin {
    /// Offset `offset` of partition `partition`.
    pub const fn new(partition: i32, offset: i64) -> Self {
        Self { partition, offset }
    }
}

/// A command that can never be applied, with the reason, for a dead-letter destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The command as decoded.
    pub command: Command,
    /// Why it was rejected (the error's message).
    pub reason: String,
    /// Where it came from.
    pub origin: Origin,
}

impl DeadLetter {
    /// `command`, read at `origin`, refused for `reason`.
    pub fn new(command: Command, reason: impl Into<String>, origin: Origin) -> Self {
        Self {
            command,
            reason: reason.into(),
            origin,
        }
    }
}

/// Rebuilding order states from published records: read models in other processes and
/// recovery after a restart.
impl OrderState {
    /// The order a placement record describes; `None` if `record` is not a placement or names
    /// a state the lifecycle does not have.
    pub fn from_placement(lifecycle: &Lifecycle, record: &TransitionRecord) -> Option<OrderState> {
        if record.from.is_some() || record.version != 1 {
            return None;
        }
        Some(OrderState {
            id: record.order_id,
            purchase: Arc::clone(&record.purchase),
            status: lifecycle.state(&record.to)?,
            version: 1,
            placed_by: record.event_id,
            placed_by_actor: record.actor.clone(),
            created_at: record.placed_at,
            updated_at: record.at,
            history: Vec::new(),
            rejected: Vec::new(),
        })
    }

    /// Applies the record that follows this state (version + 1). Returns `false` and changes
    /// nothing for a repeat, a gap, another order or names the lifecycle does not have.
    pub fn apply_record(&mut self, lifecycle: &Lifecycle, record: &TransitionRecord) -> bool {
        let (Some(from), Some(to), Some(event)) = (
            record.from.as_deref().and_then(|f| lifecycle.state(f)),
            lifecycle.state(&record.to),
            lifecycle.event(&record.event),
        ) else {
            return false;
        };
        if record.order_id != self.id || record.version != self.version + 1 || from != self.status {
            return false;
        }
        self.history.push(HistoryEntry {
            event_id: record.event_id,
            event,
            from,
            to,
            version: record.version,
            at: record.at,
            reason: record.reason.clone(),
            actor: record.actor.clone(),
        });
        self.status = to;
        self.version = record.version;
        self.updated_at = record.at;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(command: &Command) -> Command {
        serde_json::from_slice(&serde_json::to_vec(command).unwrap()).unwrap()
    }

    #[test]
    fn commands_round_trip_through_json() {
        let place = Command::place(Purchase::example());
        assert_eq!(round_trip(&place), place);
        let apply = Command::Apply {
            order_id: place.order_id(),
            event_id: EventId::random(),
            event: "fail".into(),
            expected_version: Some(3),
            reason: Some("card declined".into()),
            actor: None,
        };
        assert_eq!(round_trip(&apply), apply);
    }

    #[test]
    fn fields_are_read_in_any_order_and_unknown_ones_ignored() {
        let place = Command::place(Purchase::example());
        let mut value = serde_json::to_value(&place).unwrap();
        let object = value.as_object_mut().unwrap();
        let kind = object.remove("type").unwrap();
        object.insert("trace".into(), "ignored".into());
        object.insert("type".into(), kind);
        let decoded: Command = serde_json::from_value(value).unwrap();
        assert_eq!(decoded, place);
    }

    #[test]
    fn a_missing_field_or_unknown_type_is_named() {
        let id = OrderId::random();
        let event_id = EventId::random();
        let no_purchase =
            format!(r#"{{"type":"place","order_id":"{id}","event_id":"{event_id}"}}"#);
        let err = serde_json::from_str::<Command>(&no_purchase).unwrap_err();
        assert!(err.to_string().contains("purchase"), "{err}");
        let no_event = format!(r#"{{"type":"apply","order_id":"{id}","event_id":"{event_id}"}}"#);
        let err = serde_json::from_str::<Command>(&no_event).unwrap_err();
        assert!(err.to_string().contains("event"), "{err}");
        let launch = format!(r#"{{"type":"launch","order_id":"{id}","event_id":"{event_id}"}}"#);
        let err = serde_json::from_str::<Command>(&launch).unwrap_err();
        assert!(err.to_string().contains("launch"), "{err}");
    }
}
