//! The `OrderService` handlers over the core seams.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use order_fsm::intake::{self, BatchError, EventRequest, Intake, PlaceRequest, Placed};
use order_fsm::{Engine, Error as CoreError, ListQuery, OrderId, OrderStore, Purchase};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::convert::order_to_proto;
use crate::deadline::{budget, within};
use crate::error::{invalid, to_status};
use crate::proto;
use crate::proto::order_service_server::OrderService;
use crate::watch::{Watch, WatchHub};

/// Most placements one `PlaceOrders` call may carry; a longer call is `INVALID_ARGUMENT`.
pub use order_fsm::intake::MAX_PLACEMENTS_PER_CALL;

/// What the handlers share.
pub(crate) struct Service {
    pub(crate) engine: Engine,
    pub(crate) intake: Intake,
    pub(crate) store: Arc<dyn OrderStore>,
    pub(crate) hub: Option<WatchHub>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) default_page_size: u32,
    pub(crate) max_page_size: u32,
    pub(crate) cancel_event: String,
    pub(crate) watch_poll_interval: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

fn core(error: impl Into<CoreError>) -> Status {
    to_status(error.into(), None)
}

/// Names the placement of a `PlaceOrders` call that a status is about.
fn in_call(index: usize, status: Status) -> Status {
    Status::new(
        status.code(),
        format!("orders[{index}]: {}", status.message()),
    )
}

/// A wire placement as the intake's request (the purchase converted, not yet checked),
/// asked for by `actor`.
fn place_request(
    req: proto::PlaceOrderRequest,
    actor: Option<String>,
) -> Result<PlaceRequest, Status> {
    let wire = req
        .purchase
        .ok_or_else(|| invalid("purchase", "is required"))?;
    let mut request = PlaceRequest::new(Purchase::try_from(wire).map_err(core)?).with_actor(actor);
    request.idempotency_key = req.idempotency_key;
    Ok(request)
}

/// The name of the caller the access layer authenticated, if access control is on.
fn actor_of<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<order_fsm::access::Identity>()
        .map(|caller| caller.name().to_owned())
}

impl Service {
    fn placed(&self, placed: Placed) -> proto::PlaceOrderResponse {
        proto::PlaceOrderResponse {
            order_id: placed.order_id.to_string(),
            status: self.engine.lifecycle().state_name(placed.status).to_owned(),
            version: placed.version,
            event_id: placed.event_id.to_string(),
            already_existed: placed.already_existed,
        }
    }

    async fn place(
        &self,
        req: proto::PlaceOrderRequest,
        actor: Option<String>,
    ) -> Result<proto::PlaceOrderResponse, Status> {
        let placed = self
            .intake
            .place(place_request(req, actor)?)
            .await
            .map_err(core)?;
        Ok(self.placed(placed))
    }

    /// Checks every placement first, then submits the new ones in one sink call.
    async fn place_many(
        &self,
        req: proto::PlaceOrdersRequest,
        actor: Option<String>,
    ) -> Result<proto::PlaceOrdersResponse, Status> {
        intake::check_batch(req.orders.len()).map_err(core)?;
        let requests = req
            .orders
            .into_iter()
            .enumerate()
            .map(|(index, order)| {
                place_request(order, actor.clone()).map_err(|s| in_call(index, s))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let placed = self.intake.place_many(requests).await.map_err(
            |BatchError { index, error, .. }| match index {
                Some(index) => in_call(index, core(error)),
                None => core(error),
            },
        )?;
        Ok(proto::PlaceOrdersResponse {
            orders: placed.into_iter().map(|p| self.placed(p)).collect(),
        })
    }

    async fn order(&self, id: &str) -> Result<order_fsm::OrderState, Status> {
        let order_id: OrderId = id.parse().map_err(core)?;
        self.intake.get(order_id).await.map_err(core)
    }

    /// A page of orders; with `masked`, customers' e-mail and address are masked.
    async fn list(
        &self,
        req: proto::ListOrdersRequest,
        masked: bool,
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
        let query = ListQuery::new(page_size + 1)
            .with_status(status)
            .after(after);
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
                .map(|o| {
                    let mut order = order_to_proto(lifecycle, o);
                    if masked {
                        let purchase = order_fsm::access::mask_personal_data(&o.purchase);
                        order.purchase = Some(proto::Purchase::from(&purchase));
                    }
                    order
                })
                .collect(),
            next_page_token,
        })
    }

    async fn event(&self, req: EventRequest) -> Result<proto::EventAccepted, Status> {
        let lifecycle = self.engine.lifecycle();
        let event = req.event.clone();
        let accepted = self
            .intake
            .apply(req)
            .await
            .map_err(|e| to_status(e, Some(&event)))?;
        Ok(proto::EventAccepted {
            order_id: accepted.order_id.to_string(),
            event_id: accepted.event_id.to_string(),
            from_status: lifecycle.state_name(accepted.from).to_owned(),
            to_status: lifecycle.state_name(accepted.to).to_owned(),
            version: accepted.version,
            already_applied: accepted.already_applied,
        })
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::Transition, Status>> + Send>>;

#[tonic::async_trait]
impl OrderService for Service {
    async fn place_order(
        &self,
        request: Request<proto::PlaceOrderRequest>,
    ) -> Result<Response<proto::PlaceOrderResponse>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let actor = actor_of(&request);
        within(limit, self.place(request.into_inner(), actor))
            .await
            .map(Response::new)
    }

    async fn place_orders(
        &self,
        request: Request<proto::PlaceOrdersRequest>,
    ) -> Result<Response<proto::PlaceOrdersResponse>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let actor = actor_of(&request);
        within(limit, self.place_many(request.into_inner(), actor))
            .await
            .map(Response::new)
    }

    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let caller = request
            .extensions()
            .get::<order_fsm::access::Identity>()
            .cloned();
        let req = request.into_inner();
        let order = within(limit, self.order(&req.order_id)).await?;
        if caller.is_some_and(|caller| !caller.may_read(&order)) {
            return Err(Status::permission_denied(
                "a shop key reads only the orders it placed",
            ));
        }
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
        // Without access control every caller may see everything.
        let masked = request
            .extensions()
            .get::<order_fsm::access::Identity>()
            .is_some_and(|caller| !caller.role().sees_personal_data());
        within(limit, self.list(request.into_inner(), masked))
            .await
            .map(Response::new)
    }

    async fn apply_event(
        &self,
        request: Request<proto::ApplyEventRequest>,
    ) -> Result<Response<proto::EventAccepted>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let actor = actor_of(&request);
        let req = request.into_inner();
        let event = EventRequest::new(req.order_id.parse().map_err(core)?, req.event)
            .with_expected_version(req.expected_version)
            .with_reason(req.reason)
            .with_key(req.idempotency_key)
            .with_actor(actor);
        within(limit, self.event(event)).await.map(Response::new)
    }

    async fn cancel_order(
        &self,
        request: Request<proto::CancelOrderRequest>,
    ) -> Result<Response<proto::EventAccepted>, Status> {
        let limit = budget(request.metadata(), self.request_timeout);
        let actor = actor_of(&request);
        let req = request.into_inner();
        let event = EventRequest::new(
            req.order_id.parse().map_err(core)?,
            self.cancel_event.clone(),
        )
        .with_expected_version(req.expected_version)
        .with_reason(req.reason)
        .with_key(req.idempotency_key)
        .with_actor(actor);
        within(limit, self.event(event)).await.map(Response::new)
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
