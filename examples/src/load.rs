//! Placing orders against an intake, gRPC or HTTP, at a chosen pace, measuring latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use order_fsm::{LatencySummary, Purchase};
use order_fsm_grpc::{ClientConfig, OrderClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which intake receives the orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Intake {
    /// `order_fsm.v1.OrderService/PlaceOrder`.
    Grpc,
    /// `POST /orders` with a JSON purchase.
    Http,
}

/// How orders are sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Everything at once, limited only by the concurrency.
    Burst,
    /// A steady stream of this many orders per second.
    Steady(f64),
}

impl Pace {
    /// A steady stream of `rate` orders per second; `0` (or less) is a burst.
    pub fn from_rate(rate: f64) -> Self {
        if rate > 0.0 {
            Self::Steady(rate)
        } else {
            Self::Burst
        }
    }
}

/// A connected intake client.
pub enum Target {
    /// gRPC client (boxed: it is much larger than the HTTP variant).
    Grpc(Box<OrderClient>),
    /// HTTP client and base URL.
    Http(reqwest::Client, String),
}

impl Target {
    /// Connects to the intake at `addr`.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn connect(
        intake: Intake,
        addr: SocketAddr,
        api_key: Option<&str>,
    ) -> Result<Self, BoxError> {
        Self::connect_url(intake, &format!("http://{addr}"), api_key).await
    }

    /// Connects to the intake at `url` (`http://host:port`), sending `api_key` with every
    /// request when given.
    ///
    /// # Errors
    /// Connection failures, or a key that is not printable ASCII.
    pub async fn connect_url(
        intake: Intake,
        url: &str,
        api_key: Option<&str>,
    ) -> Result<Self, BoxError> {
        Ok(match intake {
            Intake::Grpc => {
                let mut config = ClientConfig::new(url);
                if let Some(key) = api_key {
                    config = config.with_api_key(key);
                }
                Target::Grpc(Box::new(OrderClient::connect(config).await?))
            }
            Intake::Http => {
                let mut headers = reqwest::header::HeaderMap::new();
                if let Some(key) = api_key {
                    let mut value =
                        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?;
                    value.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                let client = reqwest::Client::builder()
                    .default_headers(headers)
                    .build()?;
                Target::Http(client, url.trim_end_matches('/').to_owned())
            }
        })
    }

    /// Places `purchases` in one request: gRPC `PlaceOrder` or `POST /orders` for one,
    /// gRPC `PlaceOrders` or `POST /orders/batch` for more.
    async fn place(&self, purchases: &[Purchase]) -> Result<(), Refused> {
        match (self, purchases) {
            (Target::Grpc(client), [purchase]) => client
                .place_order(purchase, None)
                .await
                .map(drop)
                .map_err(Refused::from),
            (Target::Grpc(client), _) => client
                .place_orders(purchases)
                .await
                .map(drop)
                .map_err(Refused::from),
            (Target::Http(client, base), [purchase]) => {
                accepted(client.post(format!("{base}/orders")).json(purchase)).await
            }
            (Target::Http(client, base), _) => {
                accepted(client.post(format!("{base}/orders/batch")).json(purchases)).await
            }
        }
    }
}

/// Why a request placed nothing.
enum Refused {
    /// Back-pressure (`RESOURCE_EXHAUSTED`, HTTP 429): send it again after this long.
    Throttled(Duration),
    /// Anything else.
    Failed(BoxError),
}

/// The wait of a back-pressure answer without a hint.
const DEFAULT_THROTTLE: Duration = Duration::from_millis(250);

impl From<order_fsm_grpc::GrpcError> for Refused {
    fn from(error: order_fsm_grpc::GrpcError) -> Self {
        if error.is_throttled() {
            Self::Throttled(error.retry_after().unwrap_or(DEFAULT_THROTTLE))
        } else {
            Self::Failed(error.into())
        }
    }
}

/// Sends `request`; 429 is back-pressure (waits as its `retry-after-ms` header says),
/// another answer other than 2xx is an error with its status and body.
async fn accepted(request: reqwest::RequestBuilder) -> Result<(), Refused> {
    let response = request
        .send()
        .await
        .map_err(|e| Refused::Failed(e.into()))?;
    if response.status().is_success() {
        return Ok(());
    }
    if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let wait = response
            .headers()
            .get(order_fsm_http::RETRY_AFTER_MS)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map_or(DEFAULT_THROTTLE, Duration::from_millis);
        return Err(Refused::Throttled(wait));
    }
    Err(Refused::Failed(
        format!(
            "{}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        )
        .into(),
    ))
}

/// What the intake side of a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Orders accepted by the intake.
    pub accepted: u64,
    /// Orders refused (or failed) at the intake, for good.
    pub errors: u64,
    /// Requests refused for back-pressure and sent again after the intake's retry hint.
    pub throttled: u64,
    /// Wall time of the placing.
    pub elapsed: Duration,
    /// Request latency.
    pub latency: LatencySummary,
}

impl LoadResult {
    /// Accepted orders per second.
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How the orders are sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sending {
    /// Burst or steady stream.
    pub pace: Pace,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Orders per request: 1 sends `PlaceOrder` (or `POST /orders`), more send
    /// `PlaceOrders` calls (or `POST /orders/batch`) of this many orders (at most 1,000).
    pub batch: usize,
}

impl Sending {
    /// A burst with `concurrency` single-order requests in flight.
    pub fn burst(concurrency: usize) -> Self {
        Self {
            pace: Pace::Burst,
            concurrency,
            batch: 1,
        }
    }
}

/// Places every purchase through `target` as `sending` says. A steady pace spaces orders
/// (a batch leaves when its first order is due); each order's latency is that of the
/// request that carried it. A request refused for back-pressure (`RESOURCE_EXHAUSTED`,
/// HTTP 429) is sent again after the intake's retry hint, and counted in
/// [`LoadResult::throttled`].
///
/// # Errors
/// Only a histogram failure; request errors are counted in [`LoadResult::errors`].
pub async fn place_all(
    target: &Target,
    purchases: &[Purchase],
    sending: Sending,
    progress: bool,
) -> Result<LoadResult, BoxError> {
    let bar = if progress {
        let bar = ProgressBar::new(purchases.len() as u64);
        bar.set_style(ProgressStyle::with_template(
            "{bar:40} {pos}/{len} orders {per_sec} eta {eta}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let interval = match sending.pace {
        Pace::Steady(rate) if rate > 0.0 => Some(Duration::from_secs_f64(1.0 / rate)),
        _ => None,
    };
    let batch = sending
        .batch
        .clamp(1, order_fsm_grpc::MAX_PLACEMENTS_PER_CALL);
    let bar = Arc::new(bar);
    let results: Vec<Sent> = stream::iter(purchases.chunks(batch).enumerate())
        .map(|(i, chunk)| {
            let bar = Arc::clone(&bar);
            async move {
                if let Some(interval) = interval {
                    let due = started + interval.mul_f64((i * batch) as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = send(target, chunk).await;
                bar.inc(chunk.len() as u64);
                sent
            }
        })
        .buffer_unordered(sending.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    tally(&results, started.elapsed())
}

/// One request's outcome: orders it carried, times it was throttled, latency or error.
type Sent = (usize, u64, Result<u64, String>);

/// Sends one request; a throttled request is sent again after the intake's hint, and its
/// latency runs from the first try.
async fn send(target: &Target, chunk: &[Purchase]) -> Sent {
    let sent = Instant::now();
    let mut throttled = 0;
    let result = loop {
        match target.place(chunk).await {
            Ok(()) => break Ok(sent.elapsed().as_micros() as u64),
            Err(Refused::Throttled(wait)) => {
                throttled += 1;
                tokio::time::sleep(wait).await;
            }
            Err(Refused::Failed(e)) => break Err(e.to_string()),
        }
    };
    (chunk.len(), throttled, result)
}

/// Places the purchases of `pool` over and over (each placement a new order) at
/// `sending`'s pace until `duration` has passed: a soak. A burst pace sends as fast as
/// `sending.concurrency` allows.
///
/// # Errors
/// Only a histogram failure; request errors are counted in [`LoadResult::errors`].
pub async fn place_for(
    target: &Target,
    pool: &[Purchase],
    sending: Sending,
    duration: Duration,
) -> Result<LoadResult, BoxError> {
    if pool.is_empty() {
        return Err("no purchases to place".into());
    }
    let started = Instant::now();
    let interval = match sending.pace {
        Pace::Steady(rate) if rate > 0.0 => Some(Duration::from_secs_f64(1.0 / rate)),
        _ => None,
    };
    let batch = sending
        .batch
        .clamp(1, order_fsm_grpc::MAX_PLACEMENTS_PER_CALL)
        .min(pool.len());
    let chunks = pool.len() / batch;
    let results: Vec<Sent> = stream::iter(0usize..)
        .map(|i| async move {
            if let Some(interval) = interval {
                let due = started + interval.mul_f64((i * batch) as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            if started.elapsed() >= duration {
                return None;
            }
            let first = (i % chunks) * batch;
            Some(send(target, &pool[first..first + batch]).await)
        })
        .buffered(sending.concurrency.max(1))
        .take_while(|sent| std::future::ready(sent.is_some()))
        .filter_map(std::future::ready)
        .collect()
        .await;
    tally(&results, started.elapsed())
}

fn tally(results: &[Sent], elapsed: Duration) -> Result<LoadResult, BoxError> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut errors = 0;
    let throttled = results.iter().map(|(_, t, _)| t).sum();
    for (orders, _, result) in results {
        match result {
            Ok(us) => histogram.saturating_record_n((*us).max(1), *orders as u64),
            Err(e) => {
                if errors == 0 {
                    tracing::warn!(error = %e, "order refused");
                }
                errors += *orders as u64;
            }
        }
    }
    Ok(LoadResult {
        accepted: histogram.len(),
        errors,
        throttled,
        elapsed,
        latency: LatencySummary::from_histogram(&histogram),
    })
}
