//! The `OrderService` handlers over the core seams.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use order_fsm::{
    Clock, Command, CommandSink, Engine, Error as CoreError, Event, EventId, ListQuery, OrderId,
    OrderStore, SystemClock, MAX_FIELD_CHARS,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{order_to_proto, purchase_from_proto};
use crate::deadline::{budget, within};
use crate::error::{invalid, to_status};
use crate::proto;
use crate::proto::order_service_server::OrderService;
use crate::watch::{Watch, WatchHub};

/// Namespace of the UUID v5 ids derived from idempotency keys.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_722d_6673_6d2d_6772_7063_0001);

/// What the handlers share.
pub(crate) struct Service {
    pub(crate) engine: Engine,
    pub(crate) commands: Arc<dyn CommandSink>,
    pub(crate) store: Arc<dyn OrderStore>,
    pub(crate) hub: Option<WatchHub>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) default_page_size: u32,
    pub(crate) max_page_size: u32,
    pub(crate) cancel_event: String,
    pub(crate) watch_poll_interval: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// One event request, from `ApplyEvent` or `CancelOrder`.
struct EventRequest {
    order_id: String,
    event: String,
    expected_version: Option<u64>,
    reason: Option<String>,
    idempotency_key: Option<String>,
}

fn core(error: CoreError) -> Status {
    to_status(error, None)
}

fn check_key(key: &str) -> Result<(), Status> {
    if key.is_empty() || key.chars().count() > MAX_FIELD_CHARS || key.chars().any(char::is_control)
    {
        return Err(invalid(
            "idempotency_key",
            "must be 1 to 256 characters without control characters",
        ));
    }
    Ok(())
}

fn derived(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&KEY_NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// Most placements one `PlaceOrders` call may carry; a longer call is `INVALID_ARGUMENT`.
pub const MAX_PLACEMENTS_PER_CALL: usize = 1_000;

/// A checked placement: a command to submit, or the order its idempotency key already named.
enum Placement {
    New {
        command: Command,
        reply: proto::PlaceOrderResponse,
    },
    Existing(proto::PlaceOrderResponse),
}

/// Names the placement of a `PlaceOrders` call that a status is about.
fn in_call(index: usize, status: Status) -> Status {
    Status::new(
        status.code(),
        format!("orders[{index}]: {}", status.message()),
    )
}

impl Service {
    /// Checks one placement and decides what it creates, without submitting anything.
    async fn prepare(&self, req: proto::PlaceOrderRequest) -> Result<Placement, Status> {
        let wire = req
            .purchase
            .ok_or_else(|| invalid("purchase", "is required"))?;
        let purchase = purchase_from_proto(wire).map_err(core)?;
        purchase.validate().map_err(core)?;
        let lifecycle = self.engine.lifecycle();
        let (order_id, event_id) = match req.idempotency_key.as_deref() {
            Some(key) => {
                check_key(key)?;
                let order = derived(&["order", key]).as_u128();
                let event = derived(&["place", key]).as_u128();
                (OrderId::from_u128(order), EventId::from_u128(event))
            }
            None => (OrderId::random(), EventId::random()),
        };
        if req.idempotency_key.is_some() {
            if let Some(existing) = self.store.get(order_id).await.map_err(core)? {
                if *existing.purchase != purchase {
                    return Err(Status::already_exists(format!(
                        "invalid field `idempotency_key`: already used for order {order_id} with a different purchase"
                    )));
                }
                return Ok(Placement::Existing(proto::PlaceOrderResponse {
                    order_id: order_id.to_string(),
                    status: lifecycle.state_name(existing.status).to_owned(),
                    version: existing.version,
                    event_id: existing.placed_by.to_string(),
                    already_existed: true,
                }));
            }
        }
        let command = Command::Place {
            order_id,
            event_id,
            purchase: purchase.into(),
            // End-to-end latency runs from here, the moment the intake accepted the order.
            placed_at: Some(SystemClock.now()),
        };
        Ok(Placement::New {
            command,
            reply: proto::PlaceOrderResponse {
                order_id: order_id.to_string(),
                status: lifecycle.state_name(lifecycle.initial()).to_owned(),
                version: 1,
                event_id: event_id.to_string(),
                already_existed: false,
            },
        })
    }

    async fn place(
        &self,
        req: proto::PlaceOrderRequest,
    ) -> Result<proto::PlaceOrderResponse, Status> {
        match self.prepare(req).await? {
            Placement::Existing(reply) => Ok(reply),
            Placement::New { command, reply } => {
                self.commands.submit(&[command]).await.map_err(core)?;
                Ok(reply)
            }
        }
    }

    /// Checks every placement first, then submits the new ones in one sink call.
    async fn place_many(
        &self,
        req: proto::PlaceOrdersRequest,
    ) -> Result<proto::PlaceOrdersResponse, Status> {
        if req.orders.is_empty() {
            return Err(invalid("orders", "is empty"));
        }
        if req.orders.len() > MAX_PLACEMENTS_PER_CALL {
            return Err(invalid(
                "orders",
                &format!("has more than {MAX_PLACEMENTS_PER_CALL} placements"),
            ));
        }
        let mut commands = Vec::with_capacity(req.orders.len());
        let mut replies = Vec::with_capacity(req.orders.len());
        let mut keys = std::collections::HashMap::new();
        for (index, order) in req.orders.into_iter().enumerate() {
            if let Some(key) = &order.idempotency_key {
                if let Some(first) = keys.insert(key.clone(), index) {
                    let reason = format!("repeats the key of orders[{first}]");
                    return Err(in_call(index, invalid("idempotency_key", &reason)));
                }
            }
            match self.prepare(order).await.map_err(|s| in_call(index, s))? {
                Placement::Existing(reply) => replies.push(reply),
                Placement::New { command, reply } => {
                    commands.push(command);
                    replies.push(reply);
                }
            }
        }
        if !commands.is_empty() {
            self.commands.submit(&commands).await.map_err(core)?;
        }
        Ok(proto::PlaceOrdersResponse { orders: replies })
    }

    async fn order(&self, id: &str) -> Result<order_fsm::OrderState, Status> {
        let order_id: OrderId = id.parse().map_err(core)?;
        self.store
            .get(order_id)
            .await
            .map_err(core)?
            .ok_or_else(|| core(CoreError::NotFound { order_id }))
    }

    async fn list(
        &self,
        req: proto::ListOrdersRequest,
    ) -> Result<proto::ListOrdersResponse, Status> {
        let lifecycle = self.engine.lifecycle();
        let status = match req.status.as_str() {
            "" => None,
            name => Some(
                lifecycle
                    .state(name)
                    .ok_or_else(|| invalid("status", &format!("unknown state `{name}`")))?,
            ),
        };
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(
                token
                    .parse::<OrderId>()
                    .map_err(|_| invalid("page_token", "is not a token from a previous page"))?,
            ),
        };
        let page_size = match req.page_size {
            0 => self.default_page_size,
            n => n.min(self.max_page_size),
        } as usize;
        let query = ListQuery {
            status,
            after,
            limit: page_size + 1,
        };
        let mut orders = self.store.list(query).await.map_err(core)?;
        let more = orders.len() > page_size;
        orders.truncate(page_size);
        let next_page_token = match (more, orders.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(proto::ListOrdersResponse {
            orders: orders
                .iter()
                .map(|o| order_to_proto(lifecycle, o))
                .collect(),
            next_page_token,
        })
    }

    async fn event(&self, req: EventRequest) -> Result<proto::EventAccepted, Status> {
        let lifecycle = self.engine.lifecycle();
        let order_id: OrderId = req.order_id.parse().map_err(core)?;
        let kind = lifecycle.event(&req.event).ok_or_else(|| {
            core(CoreError::UnknownEvent {
                event: req.event.clone(),
            })
        })?;
        if let Some(reason) = &req.reason {
            if reason.chars().count() > MAX_FIELD_CHARS {
                return Err(invalid("reason", "is longer than 256 characters"));
            }
        }
        let event_id = match req.idempotency_key.as_deref() {
            Some(key) => {
                check_key(key)?;
                let id = order_id.to_string();
                EventId::from_u128(derived(&["event", &id, key]).as_u128())
            }
            None => EventId::random(),
        };
        let order = self.order(&req.order_id).await?;
        let event = Event {
            id: event_id,
            kind,
            at: SystemClock.now(),
            expected_version: req.expected_version,
            reason: req.reason.clone(),
        };
        let transition = match self.engine.apply(&order, &event) {
            Ok(t) => t,
            Err(CoreError::Duplicate { .. }) => {
                return already_applied(lifecycle, &order, event_id)
            }
            Err(e) => return Err(to_status(e, Some(&req.event))),
        };
        let command = Command::Apply {
            order_id,
            event_id,
            event: req.event,
            expected_version: req.expected_version,
            reason: req.reason,
        };
        self.commands.submit(&[command]).await.map_err(core)?;
        Ok(proto::EventAccepted {
            order_id: order_id.to_string(),
            event_id: event_id.to_string(),
            from_status: lifecycle.state_name(transition.from).to_owned(),
            to_status: lifecycle.state_name(transition.to).to_owned(),
            version: transition.version,
            already_applied: false,
        })
    }
}

/// The answer to a retried event: what it did the first time.
fn already_applied(
    lifecycle: &order_fsm::Lifecycle,
    order: &order_fsm::OrderState,
    event_id: EventId,
) -> Result<proto::EventAccepted, Status> {
    let Some(entry) = order.history.iter().find(|h| h.event_id == event_id) else {
        return Err(Status::failed_precondition(format!(
            "event {event_id} (same idempotency key) was already rejected"
        )));
    };
    Ok(proto::EventAccepted {
        order_id: order.id.to_string(),
        event_id: event_id.to_string(),
        from_status: lifecycle.state_name(entry.from).to_owned(),
        to_status: lifecycle.state_name(entry.to).to_owned(),
        version: entry.version,
        already_applied: true,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::Transition, Status>> + Send>>;

#[tonic::async_trait]
impl OrderService for Service {
    async fn place_order(
        &self,
        request: Request<proto::PlaceOrderRequest>,
    ) -> Result<Response<proto::PlaceOrderResponse>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        within(limit, self.place(request.into_inner()))
            .await
            .map(Response::new)
    }

    async fn place_orders(
        &self,
        request: Request<proto::PlaceOrdersRequest>,
    ) -> Result<Response<proto::PlaceOrdersResponse>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        within(limit, self.place_many(request.into_inner()))
            .await
            .map(Response::new)
    }

    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let req = request.into_inner();
        let order = within(limit, self.order(&req.order_id)).await?;
        Ok(Response::new(order_to_proto(
            self.engine.lifecycle(),
            &order,
        )))
    }

    async fn list_orders(
        &self,
        request: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        within(limit, self.list(request.into_inner()))
            .await
            .map(Response::new)
    }

    async fn apply_event(
        &self,
        request: Request<proto::ApplyEventRequest>,
    ) -> Result<Response<proto::EventAccepted>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let req = request.into_inner();
        let req = EventRequest {
            order_id: req.order_id,
            event: req.event,
            expected_version: req.expected_version,
            reason: req.reason,
            idempotency_key: req.idempotency_key,
        };
        within(limit, self.event(req)).await.map(Response::new)
    }

    async fn cancel_order(
        &self,
        request: Request<proto::CancelOrderRequest>,
    ) -> Result<Response<proto::EventAccepted>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let req = request.into_inner();
        let req = EventRequest {
            order_id: req.order_id,
            event: self.cancel_event.clone(),
            expected_version: req.expected_version,
            reason: req.reason,
            idempotency_key: req.idempotency_key,
        };
        within(limit, self.event(req)).await.map(Response::new)
    }

    type WatchOrderStream = WatchStream;

    async fn watch_order(
        &self,
        request: Request<proto::WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        // Only the client's deadline bounds a stream; the server's cap is for unary calls.
        let limit = budget(request.metadata(), None);
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        let req = request.into_inner();
        // Subscribe before reading the store so no record falls between the two.
        let live = self.hub.as_ref().map(WatchHub::subscribe);
        let order = within(limit, self.order(&req.order_id)).await?;
        let watch = Watch {
            order,
            lifecycle: Arc::clone(self.engine.lifecycle()),
            store: Arc::clone(&self.store),
            live,
            poll: self.watch_poll_interval,
            deadline,
            shutdown: self.shutdown.clone(),
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(watch.run(tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
