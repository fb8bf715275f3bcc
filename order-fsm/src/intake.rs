//! What every API (gRPC, HTTP, ...) does with a request before a runner sees it: field
//! checks, ids derived from idempotency keys, batch limits, the command to submit, and an
//! immediate answer decided with [`Engine::decide`] against the read model.
//!
//! An API decodes its wire format into a [`PlaceRequest`] or an [`EventRequest`], calls
//! [`Intake`], and maps the core [`Error`] it may get onto its own status codes; the
//! texts both APIs answer with come from [`message`].
//!
//! Writes are asynchronous: an accepted request is a [`Command`] submitted to a
//! [`CommandSink`]; a runner applies it later. A retried request carrying the same
//! idempotency key maps to the same order and event ids (UUID v5 of the key), so the runner
//! recognises the repeat as a duplicate, and the intake answers it from the read model once
//! the first one was applied.
//!
//! ```
//! # async fn demo() -> Result<(), order_fsm::Error> {
//! use std::sync::Arc;
//! use order_fsm::intake::{Intake, PlaceRequest};
//! use order_fsm::{Engine, Lifecycle, MemoryQueue, MemoryStore, Purchase};
//!
//! let queue = MemoryQueue::new();
//! let intake = Intake::new(
//!     Engine::new(Lifecycle::ecommerce()),
//!     Arc::new(queue.clone()),
//!     Arc::new(MemoryStore::new()),
//! );
//! let request = PlaceRequest::new(Purchase::example()).with_key("checkout-42");
//! let placed = intake.place(request.clone()).await?;
//! assert!(!placed.already_existed);
//! // Retried before a runner applied it: the same ids, recognised downstream.
//! assert_eq!(intake.place(request).await?.order_id, placed.order_id);
//! assert_eq!(queue.pending(), 2);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use recent::RecentPlacements;

use crate::{
    Clock, Command, CommandSink, Decision, Engine, Error, EventId, OrderId, OrderState, OrderStore,
    Purchase, StateId, SystemClock, MAX_FIELD_CHARS,
};

/// Most placements one batch call (`PlaceOrders`, `POST /orders/batch`) may carry.
pub const MAX_PLACEMENTS_PER_CALL: usize = 1_000;

/// Largest request either API accepts, in bytes: a gRPC message (`OUT_OF_RANGE` beyond it)
/// or an HTTP body (`413`). A batch of [`MAX_PLACEMENTS_PER_CALL`] purchases with every
/// field at its longest ASCII length (about 2.5 MB in either encoding) fits.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Namespace of the UUID v5 ids derived from idempotency keys (do not change: ids derived
/// from a key must stay the same across versions).
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_722d_6673_6d2d_6772_7063_0001);

fn derived(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&KEY_NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// Checks an idempotency key: 1 to [`MAX_FIELD_CHARS`] characters, no control characters.
///
/// # Errors
/// [`Error::InvalidField`] naming `idempotency_key`.
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.chars().count() > MAX_FIELD_CHARS || key.chars().any(char::is_control)
    {
        return Err(Error::invalid_field(
            "idempotency_key",
            "must be 1 to 256 characters without control characters",
        ));
    }
    Ok(())
}

/// Checks an event's reason: at most [`MAX_FIELD_CHARS`] characters.
///
/// # Errors
/// [`Error::InvalidField`] naming `reason`.
pub fn check_reason(reason: &str) -> Result<(), Error> {
    if reason.chars().count() > MAX_FIELD_CHARS {
        return Err(Error::invalid_field(
            "reason",
            "is longer than 256 characters",
        ));
    }
    Ok(())
}

/// Checks the number of placements of a batch call: 1 to [`MAX_PLACEMENTS_PER_CALL`].
///
/// # Errors
/// [`Error::InvalidField`] naming `orders`.
pub fn check_batch(len: usize) -> Result<(), Error> {
    if len == 0 {
        return Err(Error::invalid_field("orders", "is empty"));
    }
    if len > MAX_PLACEMENTS_PER_CALL {
        return Err(Error::invalid_field(
            "orders",
            format!("has more than {MAX_PLACEMENTS_PER_CALL} placements"),
        ));
    }
    Ok(())
}

/// The order and event ids of a placement: derived from its idempotency key (UUID v5, the
/// same for every retry), fresh random ones without a key.
///
/// # Errors
/// As [`check_key`].
pub fn placement_ids(key: Option<&str>) -> Result<(OrderId, EventId), Error> {
    let Some(key) = key else {
        return Ok((OrderId::random(), EventId::random()));
    };
    check_key(key)?;
    let order = derived(&["order", key]).as_u128();
    let event = derived(&["place", key]).as_u128();
    Ok((OrderId::from_u128(order), EventId::from_u128(event)))
}

/// The id of an event for `order_id`: derived from its idempotency key (UUID v5, the same
/// for every retry; one key names different events on different orders), a fresh random
/// one without a key.
///
/// # Errors
/// As [`check_key`].
pub fn event_id(order_id: OrderId, key: Option<&str>) -> Result<EventId, Error> {
    let Some(key) = key else {
        return Ok(EventId::random());
    };
    check_key(key)?;
    let order = order_id.to_string();
    Ok(EventId::from_u128(
        derived(&["event", &order, key]).as_u128(),
    ))
}

/// Checks a keyed placement against the order its key already placed: the same purchase
/// is a retry (answer with `existing`), another one is a reused key.
///
/// # Errors
/// [`Error::IdempotencyKeyReused`] when the purchases differ.
pub fn check_existing(purchase: &Purchase, existing: &OrderState) -> Result<(), Error> {
    if *existing.purchase != *purchase {
        return Err(Error::IdempotencyKeyReused {
            order_id: existing.id,
        });
    }
    Ok(())
}

/// The text an API answers `error` with; `event` names the event being applied, if any,
/// so that a terminal state's refusal names both state and event, and an unknown event
/// names its field.
pub fn message(error: &Error, event: Option<&str>) -> String {
    match error {
        Error::UnknownEvent { event } => {
            format!("invalid field `event`: unknown event `{event}`")
        }
        Error::Terminal { state } => format!(
            "illegal transition: event `{}` is not allowed in terminal state `{state}`",
            event.unwrap_or("?")
        ),
        other => other.to_string(),
    }
}

/// One placement as an API received it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlaceRequest {
    /// What is bought (checked by the intake).
    pub purchase: Purchase,
    /// Retries with the same key place the same order once.
    pub idempotency_key: Option<String>,
    /// Who asks (the caller's API key name; see [`crate::access`]).
    pub actor: Option<String>,
}

impl PlaceRequest {
    /// A placement of `purchase` without an idempotency key.
    pub fn new(purchase: Purchase) -> Self {
        Self {
            purchase,
            idempotency_key: None,
            actor: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets who asks.
    #[must_use]
    pub fn with_actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }
}

/// The answer to a placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placed {
    /// The order.
    pub order_id: OrderId,
    /// The placement's event id.
    pub event_id: EventId,
    /// The order's state: the initial one for a new order, the current one for an order
    /// its key already placed.
    pub status: StateId,
    /// The order's version (1 for a new order).
    pub version: u64,
    /// Whether the idempotency key had already placed this order (nothing was submitted).
    pub already_existed: bool,
}

/// One event for an order as an API received it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventRequest {
    /// The order.
    pub order_id: OrderId,
    /// The event's name in the lifecycle (`prepare`, `cancel`, ...).
    pub event: String,
    /// Apply only if the order is at exactly this version.
    pub expected_version: Option<u64>,
    /// Why (required by events like `fail`; at most 256 characters).
    pub reason: Option<String>,
    /// Retries with the same key apply the event once.
    pub idempotency_key: Option<String>,
    /// Who asks (the caller's API key name; see [`crate::access`]).
    pub actor: Option<String>,
}

impl EventRequest {
    /// Applies only to the order at `version`.
    #[must_use]
    pub fn with_expected_version(mut self, version: Option<u64>) -> Self {
        self.expected_version = version;
        self
    }

    /// Sets the reason.
    #[must_use]
    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn with_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// `event` for `order_id`, without version guard, reason or key.
    pub fn new(order_id: OrderId, event: impl Into<String>) -> Self {
        Self {
            order_id,
            event: event.into(),
            expected_version: None,
            reason: None,
            idempotency_key: None,
            actor: None,
        }
    }

    /// Sets who asks.
    #[must_use]
    pub fn with_actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }
}

/// The answer to an accepted event: the transition the read model's state allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The order.
    pub order_id: OrderId,
    /// The event's id.
    pub event_id: EventId,
    /// State before.
    pub from: StateId,
    /// State after.
    pub to: StateId,
    /// Order version after.
    pub version: u64,
    /// Whether this was a retry of an event already applied (nothing was submitted).
    pub already_applied: bool,
}

/// An error of a batch call, with the placement it is about (`None`: the whole call).
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchError {
    /// Index of the placement in the call.
    pub index: Option<usize>,
    /// What is wrong.
    pub error: Error,
}

impl From<Error> for BatchError {
    fn from(error: Error) -> Self {
        Self { error, index: None }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "orders[{index}]: {}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A checked placement: a command to submit, or the order its key already placed.
enum Placement {
    New(Command, Placed),
    Existing(Placed),
}

/// The intake every API shares: checks requests, answers them from the read model and
/// submits their commands. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    engine: Engine,
    commands: Arc<dyn CommandSink>,
    store: Arc<dyn OrderStore>,
    clock: Arc<dyn Clock>,
    recent: Arc<RecentPlacements>,
}

/// How long the intake remembers that it placed an order (reads of it answer
/// [`Error::NotYetVisible`] instead of [`Error::NotFound`] meanwhile): longer than the
/// workers take to process a placement, even saturated (p99 under 5 s measured).
pub const RECENT_PLACEMENTS_WINDOW: Duration = Duration::from_secs(30);
/// Most orders remembered (the oldest are forgotten first): about 20 MB at most, so a
/// burst above 8,000 placements/s shortens the window rather than growing memory.
pub const RECENT_PLACEMENTS_CAPACITY: usize = 250_000;
/// The retry hint of [`Error::NotYetVisible`].
pub const NOT_YET_VISIBLE_RETRY: Duration = Duration::from_millis(200);

impl Intake {
    /// An intake submitting to `commands` and reading the orders from `store` (the read
    /// model a runner writes), on the system clock.
    pub fn new(engine: Engine, commands: Arc<dyn CommandSink>, store: Arc<dyn OrderStore>) -> Self {
        Self {
            engine,
            commands,
            store,
            clock: Arc::new(SystemClock),
            recent: Arc::new(RecentPlacements::new(
                RECENT_PLACEMENTS_WINDOW,
                RECENT_PLACEMENTS_CAPACITY,
            )),
        }
    }

    /// Reads an order for an API: read-your-writes for what this intake placed. An order
    /// the store does not hold yet but this intake placed within
    /// [`RECENT_PLACEMENTS_WINDOW`] is [`Error::NotYetVisible`] (retry shortly), not
    /// [`Error::NotFound`]. Another intake's fresh placement is still `NotFound` until the
    /// workers have processed it.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotYetVisible`], the store's error.
    pub async fn get(&self, order_id: OrderId) -> Result<OrderState, Error> {
        match self.store.get(order_id).await? {
            Some(order) => Ok(order),
            None => Err(self.missing(order_id)),
        }
    }

    /// What a missing order is: not found, or placed here and not processed yet.
    fn missing(&self, order_id: OrderId) -> Error {
        if self.recent.contains(order_id) {
            Error::NotYetVisible {
                order_id,
                retry_after: NOT_YET_VISIBLE_RETRY,
            }
        } else {
            Error::NotFound { order_id }
        }
    }

    /// Stamps placements and decisions with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The engine the intake decides with.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks one placement and decides what it creates, without submitting anything.
    async fn prepare(&self, request: PlaceRequest) -> Result<Placement, Error> {
        request.purchase.validate()?;
        let key = request.idempotency_key.as_deref();
        let (order_id, event_id) = placement_ids(key)?;
        if key.is_some() {
            if let Some(existing) = self.store.get(order_id).await? {
                check_existing(&request.purchase, &existing)?;
                return Ok(Placement::Existing(Placed {
                    order_id,
                    event_id: existing.placed_by,
                    status: existing.status,
                    version: existing.version,
                    already_existed: true,
                }));
            }
        }
        let command = Command::Place {
            order_id,
            event_id,
            purchase: request.purchase.into(),
            // End-to-end latency runs from here, the moment the intake accepted the order.
            placed_at: Some(self.clock.now()),
            actor: request.actor,
        };
        let placed = Placed {
            order_id,
            event_id,
            status: self.engine.lifecycle().initial(),
            version: 1,
            already_existed: false,
        };
        Ok(Placement::New(command, placed))
    }

    /// Places one order: checks the purchase and the key, answers a retried key with the
    /// order it placed, else submits the placement.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the purchase's field or `idempotency_key`;
    /// [`Error::IdempotencyKeyReused`]; the store's or the sink's error
    /// ([`Error::Unavailable`]: retry with the same key).
    pub async fn place(&self, request: PlaceRequest) -> Result<Placed, Error> {
        match self.prepare(request).await? {
            Placement::Existing(placed) => Ok(placed),
            Placement::New(command, placed) => {
                self.commands.submit(&[command]).await?;
                self.recent.insert([placed.order_id]);
                Ok(placed)
            }
        }
    }

    /// Places up to [`MAX_PLACEMENTS_PER_CALL`] orders, all or none: checks every placement
    /// first, then submits the new ones in one sink call.
    ///
    /// # Errors
    /// As [`check_batch`] and [`Intake::place`], with the index of the placement at fault;
    /// a key repeated within the call is [`Error::InvalidField`] (`idempotency_key`).
    pub async fn place_many(&self, requests: Vec<PlaceRequest>) -> Result<Vec<Placed>, BatchError> {
        check_batch(requests.len())?;
        let mut commands = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        let mut keys = HashMap::new();
        for (index, request) in requests.into_iter().enumerate() {
            let at = |error| BatchError {
                index: Some(index),
                error,
            };
            if let Some(key) = &request.idempotency_key {
                if let Some(first) = keys.insert(key.clone(), index) {
                    let reason = format!("repeats the key of orders[{first}]");
                    return Err(at(Error::invalid_field("idempotency_key", reason)));
                }
            }
            match self.prepare(request).await.map_err(at)? {
                Placement::Existing(placed) => replies.push(placed),
                Placement::New(command, placed) => {
                    commands.push(command);
                    replies.push(placed);
                }
            }
        }
        if !commands.is_empty() {
            self.commands.submit(&commands).await?;
            self.recent.insert(commands.iter().map(Command::order_id));
        }
        Ok(replies)
    }

    /// Applies an event: checks it, decides it with [`Engine::decide`] against the read
    /// model's state of the order, answers a retried key with what it did the first time,
    /// else submits it. The runner decides again when it applies it.
    ///
    /// # Errors
    /// [`Error::UnknownEvent`] (answered before reading the store); [`Error::InvalidField`]
    /// naming `reason` or `idempotency_key`; [`Error::NotFound`]; the engine's verdict
    /// ([`Error::IllegalTransition`], [`Error::Terminal`], [`Error::StaleVersion`], a
    /// missing reason); [`Error::AlreadyRejected`] for a retried key whose event was
    /// rejected; the store's or the sink's error.
    pub async fn apply(&self, request: EventRequest) -> Result<Accepted, Error> {
        // The one check that needs no read: a name the lifecycle lacks costs no I/O.
        if self.engine.lifecycle().event(&request.event).is_none() {
            return Err(Error::UnknownEvent {
                event: request.event,
            });
        }
        if let Some(reason) = &request.reason {
            check_reason(reason)?;
        }
        let order_id = request.order_id;
        let event_id = event_id(order_id, request.idempotency_key.as_deref())?;
        let command = Command::Apply {
            order_id,
            event_id,
            event: request.event,
            expected_version: request.expected_version,
            reason: request.reason,
            actor: request.actor,
        };
        let current = self.store.get(order_id).await?;
        let transition = match self
            .engine
            .decide(&command, current.as_ref(), self.clock.now())
        {
            Ok(Decision::Apply(transition)) => transition,
            Ok(Decision::Place(_)) => unreachable!("an event never places an order"),
            Err(Error::Duplicate { event_id }) => {
                return match current {
                    Some(order) => already_applied(&order, event_id),
                    None => Err(self.missing(order_id)),
                };
            }
            Err(Error::NotFound { order_id }) => return Err(self.missing(order_id)),
            Err(e) => return Err(e),
        };
        self.commands.submit(&[command]).await?;
        Ok(Accepted {
            order_id,
            event_id,
            from: transition.from,
            to: transition.to,
            version: transition.version,
            already_applied: false,
        })
    }
}

/// The answer to a retried event: what it did the first time.
fn already_applied(order: &OrderState, event_id: EventId) -> Result<Accepted, Error> {
    let Some(entry) = order.history.iter().find(|h| h.event_id == event_id) else {
        return Err(Error::AlreadyRejected { event_id });
    };
    Ok(Accepted {
        order_id: order.id,
        event_id,
        from: entry.from,
        to: entry.to,
        version: entry.version,
        already_applied: true,
    })
}

mod recent;

#[cfg(test)]
mod tests;
