//! PlaceOrder throughput and latency over loopback, beside a bare tonic service measured
//! the same way in the same run; then the same orders through `PlaceOrders` calls of 100.
//!
//! The bare service implements the same generated `OrderService` and answers `PlaceOrder`
//! with a constant reply (no decoding of the purchase into core types, no validation, no
//! id derivation, no store lookup, no sink), so the ratio is the cost of the real handler
//! on top of tonic's own. The real service has a `MemoryQueue` as its command sink and a
//! `MemoryStore` for the idempotency lookup; no runner competes for the CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use order_fsm::{Lifecycle, MemoryQueue, MemoryStore, Purchase};
use order_fsm_grpc::proto::order_service_client::OrderServiceClient;
use order_fsm_grpc::proto::order_service_server::{OrderService, OrderServiceServer};
use order_fsm_grpc::{proto, OrderServiceBuilder};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::data::{count, cpu_per_item, process_cpu_micros};
use crate::report::{Better, Comparison, Rounds, Spec, Target};
use crate::{BoxError, Size};

struct Args {
    calls: usize,
    concurrency: usize,
    connections: usize,
}

/// The baseline: same service definition, constant answer.
struct Bare;

#[tonic::async_trait]
impl OrderService for Bare {
    async fn place_order(
        &self,
        _: Request<proto::PlaceOrderRequest>,
    ) -> Result<Response<proto::PlaceOrderResponse>, Status> {
        Ok(Response::new(proto::PlaceOrderResponse {
            order_id: "00000000-0000-0000-0000-000000000001".into(),
            status: "processing".into(),
            version: 1,
            event_id: "00000000-0000-0000-0000-000000000002".into(),
            already_existed: false,
        }))
    }
    async fn place_orders(
        &self,
        _: Request<proto::PlaceOrdersRequest>,
    ) -> Result<Response<proto::PlaceOrdersResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn get_order(
        &self,
        _: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn list_orders(
        &self,
        _: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn apply_event(
        &self,
        _: Request<proto::ApplyEventRequest>,
    ) -> Result<Response<proto::EventAccepted>, Status> {
        Err(Status::unimplemented("bare"))
    }
    async fn cancel_order(
        &self,
        _: Request<proto::CancelOrderRequest>,
    ) -> Result<Response<proto::EventAccepted>, Status> {
        Err(Status::unimplemented("bare"))
    }
    type WatchOrderStream = tokio_stream::Empty<Result<proto::Transition, Status>>;
    async fn watch_order(
        &self,
        _: Request<proto::WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

fn purchase() -> proto::Purchase {
    proto::Purchase::from(&Purchase::example())
}

struct Figures {
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
    /// CPU time of the whole process (clients and server) per call, from `/proc/self/stat`;
    /// far less sensitive to other load on the machine than wall-clock throughput.
    cpu_us_per_call: Option<f64>,
}

/// A loopback channel to `url` with Nagle off.
async fn connect(url: &str) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// `calls` PlaceOrder calls from `concurrency` tasks over `connections` connections.
async fn measure(url: &str, args: &Args, tag: &str, round: usize) -> Result<Figures, BoxError> {
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(connect(url).await?);
    }
    let per_task = args.calls.div_ceil(args.concurrency);
    let cpu_before = process_cpu_micros();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let mut client = OrderServiceClient::new(channels[t % channels.len()].clone());
            let tag = format!("{tag}-{round}-{t}");
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new(3).expect("3 significant digits");
                let purchase = purchase();
                for i in 0..per_task {
                    let request = proto::PlaceOrderRequest {
                        purchase: Some(purchase.clone()),
                        idempotency_key: Some(format!("{tag}-{i}")),
                    };
                    let t0 = Instant::now();
                    client.place_order(request).await?;
                    histogram.saturating_record(t0.elapsed().as_micros() as u64);
                }
                Ok::<_, Status>(histogram)
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).expect("3 significant digits");
    for task in tasks {
        all.add(task.await??)?;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_per_item(cpu_before, all.len());
    Ok(Figures {
        cpu_us_per_call: cpu,
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: all.value_at_quantile(0.50),
        p99_us: all.value_at_quantile(0.99),
    })
}

/// The same load as `PlaceOrders` calls of `batch` orders; returns orders per second and the
/// CPU per order.
async fn measure_bulk(
    url: &str,
    args: &Args,
    batch: usize,
    round: usize,
) -> Result<(f64, Option<f64>), BoxError> {
    let channel = connect(url).await?;
    let calls = args.calls.div_ceil(batch);
    let tasks_n = args.concurrency.min(calls).max(1);
    let per_task = calls.div_ceil(tasks_n);
    let cpu_before = process_cpu_micros();
    let started = Instant::now();
    let tasks: Vec<_> = (0..tasks_n)
        .map(|t| {
            let mut client = OrderServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let purchase = purchase();
                let mut placed = 0;
                for i in 0..per_task {
                    let orders = (0..batch)
                        .map(|j| proto::PlaceOrderRequest {
                            purchase: Some(purchase.clone()),
                            idempotency_key: Some(format!("bulk-{round}-{t}-{i}-{j}")),
                        })
                        .collect();
                    let reply = client
                        .place_orders(proto::PlaceOrdersRequest { orders })
                        .await?;
                    placed += reply.into_inner().orders.len();
                }
                Ok::<_, Status>(placed)
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        placed += task.await??;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_per_item(cpu_before, placed as u64);
    Ok((placed as f64 / elapsed.as_secs_f64(), cpu))
}

pub(crate) async fn compare(size: Size) -> Result<Vec<Comparison>, BoxError> {
    let (calls, concurrency, rounds) = size.pick((200, 8, 2), (10_000, 64, 5), (20_000, 64, 7));
    let args = Args {
        calls,
        concurrency,
        connections: 4,
    };

    let queue = MemoryQueue::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let order_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(
        OrderServiceBuilder::new(Lifecycle::ecommerce())
            .with_commands(Arc::new(queue.clone()))
            .with_store(Arc::new(MemoryStore::new()))
            .serve_with_listener(listener, std::future::pending()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let bare_url = format!("http://{}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OrderServiceServer::new(Bare))
            .serve_with_incoming(incoming),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let warm = Args {
        calls: calls.min(2_000),
        ..args
    };
    measure(&bare_url, &warm, "warm-bare", 0).await?;
    measure(&order_url, &warm, "warm-order", 0).await?;

    let mut r = Rounds::default();
    for round in 1..=rounds {
        let (bare, order) = if Rounds::anchor_first(round - 1) {
            let bare = measure(&bare_url, &args, "bare", round).await?;
            (bare, measure(&order_url, &args, "order", round).await?)
        } else {
            let order = measure(&order_url, &args, "order", round).await?;
            (measure(&bare_url, &args, "bare", round).await?, order)
        };
        for (side, f) in [("bare", &bare), ("order-fsm", &order)] {
            r.extra(&format!("{side} p50"), "µs", f.p50_us as f64);
            r.extra(&format!("{side} p99"), "µs", f.p99_us as f64);
            if let Some(cpu) = f.cpu_us_per_call {
                r.extra(&format!("{side} CPU per call"), "µs", cpu);
            }
        }
        let (bulk, _) = measure_bulk(&order_url, &args, 100, round).await?;
        r.extra("order-fsm `PlaceOrders` of 100", "orders/s", bulk);
        r.push(bare.per_second, order.per_second);
    }
    Ok(vec![r.finish(Spec {
        id: "grpc.place_order".into(),
        title: "gRPC `PlaceOrder` vs a bare tonic service".into(),
        backend: "in-process servers, loopback".into(),
        setup: format!(
            "{} calls per round, {concurrency} concurrent, 4 connections",
            count(calls)
        ),
        unit: "calls/s",
        better: Better::Higher,
        anchor: "bare tonic (constant answer)".into(),
        subject: "`OrderServiceBuilder` service".into(),
        target: Some(Target::AtLeast(0.8)),
        notes: Vec::new(),
    })])
}
