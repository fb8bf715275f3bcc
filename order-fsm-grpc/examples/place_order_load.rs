//! PlaceOrder throughput and latency over loopback, beside a bare tonic service measured
//! the same way in the same run; then the same orders through `PlaceOrders` calls of 100.
//!
//! The bare service implements the same generated `OrderService` and answers `PlaceOrder`
//! with a constant reply (no decoding of the purchase into core types, no validation, no
//! id derivation, no store lookup, no sink), so the ratio is the cost of the real handler
//! on top of tonic's own.
//!
//! ```text
//! cargo run --release -p order-fsm-grpc --example place_order_load -- \
//!     [--calls 20000] [--concurrency 64] [--connections 4] [--rounds 5]
//! ```

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

struct Args {
    calls: usize,
    concurrency: usize,
    connections: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut out = Args {
        calls: 20_000,
        concurrency: 64,
        connections: 4,
        rounds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--calls" => out.calls = value,
            "--concurrency" => out.concurrency = value.max(1),
            "--connections" => out.connections = value.max(1),
            "--rounds" => out.rounds = value.max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    out
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

/// User + system CPU time of this process in microseconds (Linux, 100 ticks/s), if known.
fn process_cpu_micros() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// CPU microseconds per item since `before` (a [`process_cpu_micros`] reading), if known.
fn cpu_per_item(before: Option<u64>, items: u64) -> Option<f64> {
    process_cpu_micros()
        .zip(before)
        .map(|(after, before)| (after - before) as f64 / items as f64)
}

/// A loopback channel to `url` with Nagle off.
async fn connect(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

/// `calls` PlaceOrder calls from `concurrency` tasks over `connections` connections.
async fn measure(url: &str, args: &Args, tag: &str, round: usize) -> Figures {
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(connect(url).await);
    }
    let per_task = args.calls.div_ceil(args.concurrency);
    let cpu_before = process_cpu_micros();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let mut client = OrderServiceClient::new(channels[t % channels.len()].clone());
            let tag = format!("{tag}-{round}-{t}");
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new(3).unwrap();
                let purchase = purchase();
                for i in 0..per_task {
                    let request = proto::PlaceOrderRequest {
                        purchase: Some(purchase.clone()),
                        idempotency_key: Some(format!("{tag}-{i}")),
                    };
                    let t0 = Instant::now();
                    client.place_order(request).await.expect("place_order");
                    histogram.record(t0.elapsed().as_micros() as u64).unwrap();
                }
                histogram
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).unwrap();
    for task in tasks {
        all.add(task.await.unwrap()).unwrap();
    }
    let elapsed = started.elapsed();
    let cpu = cpu_per_item(cpu_before, all.len());
    Figures {
        cpu_us_per_call: cpu,
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: all.value_at_quantile(0.50),
        p99_us: all.value_at_quantile(0.99),
    }
}

/// The same load as `PlaceOrders` calls of `batch` orders; returns orders per second and the
/// CPU per order.
async fn measure_bulk(url: &str, args: &Args, batch: usize) -> (f64, Option<f64>) {
    let channel = connect(url).await;
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
                            idempotency_key: Some(format!("bulk-{t}-{i}-{j}")),
                        })
                        .collect();
                    let reply = client
                        .place_orders(proto::PlaceOrdersRequest { orders })
                        .await
                        .expect("place_orders");
                    placed += reply.into_inner().orders.len();
                }
                placed
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        placed += task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let cpu = cpu_per_item(cpu_before, placed as u64);
    (placed as f64 / elapsed.as_secs_f64(), cpu)
}

#[tokio::main]
async fn main() {
    let args = args();

    // The real service: MemoryQueue as the command sink, MemoryStore for the idempotency
    // lookup; no runner competes for the CPU.
    let queue = MemoryQueue::new();
    let store = Arc::new(MemoryStore::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let order_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        OrderServiceBuilder::new(Lifecycle::ecommerce())
            .with_commands(Arc::new(queue.clone()))
            .with_store(store)
            .serve_with_listener(listener, std::future::pending()),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OrderServiceServer::new(Bare))
            .serve_with_incoming(incoming),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    println!(
        "PlaceOrder over loopback: {} calls per run, {} concurrent clients, {} connections, {} rounds",
        args.calls, args.concurrency, args.connections, args.rounds
    );
    // Warm up both.
    let warm = Args {
        calls: 2_000,
        ..args
    };
    measure(&bare_url, &warm, "warm-bare", 0).await;
    measure(&order_url, &warm, "warm-order", 0).await;

    // Paired rounds (bare, then order-fsm, back to back) so drift in machine load hits both.
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let bare = measure(&bare_url, &args, "bare", round).await;
        let order = measure(&order_url, &args, "order", round).await;
        for (name, f) in [
            ("bare tonic PlaceOrder", &bare),
            ("order-fsm PlaceOrder ", &order),
        ] {
            println!(
                "round {round}  {name}  {:>9.0} calls/s  p50 {:>5} µs  p99 {:>5} µs  cpu {:>6.1} µs/call",
                f.per_second,
                f.p50_us,
                f.p99_us,
                f.cpu_us_per_call.unwrap_or(f64::NAN)
            );
        }
        rounds.push((bare, order));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pick = |f: fn(&Figures) -> f64, which: usize| {
        median(
            rounds
                .iter()
                .map(|r| f(if which == 0 { &r.0 } else { &r.1 }))
                .collect(),
        )
    };
    let rate = |f: &Figures| f.per_second;
    let p50 = |f: &Figures| f.p50_us as f64;
    let p99 = |f: &Figures| f.p99_us as f64;
    println!(
        "median: bare {:.0} calls/s (p50 {:.0} µs, p99 {:.0} µs); order-fsm {:.0} calls/s (p50 {:.0} µs, p99 {:.0} µs)",
        pick(rate, 0), pick(p50, 0), pick(p99, 0), pick(rate, 1), pick(p50, 1), pick(p99, 1)
    );
    let ratio = median(
        rounds
            .iter()
            .map(|(b, o)| o.per_second / b.per_second)
            .collect(),
    );
    let cpu = |f: &Figures| f.cpu_us_per_call.unwrap_or(f64::NAN);
    println!(
        "median CPU per call (clients + server): bare {:.1} µs, order-fsm {:.1} µs; bare/order-fsm {:.2}x",
        pick(cpu, 0),
        pick(cpu, 1),
        pick(cpu, 0) / pick(cpu, 1)
    );
    println!(
        "median paired ratio order-fsm / bare throughput: {ratio:.2}x (target >= 0.80x); commands queued: {}",
        queue.pending()
    );

    // Bulk intake: the same orders in PlaceOrders calls of 100.
    let (rate, cpu) = measure_bulk(&order_url, &args, 100).await;
    println!(
        "order-fsm PlaceOrders, 100 per call: {rate:.0} orders/s, cpu {:.1} µs/order",
        cpu.unwrap_or(f64::NAN)
    );
}
