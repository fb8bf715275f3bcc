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

/// A connected intake client.
pub enum Target {
    /// gRPC client.
    Grpc(OrderClient),
    /// HTTP client and base URL.
    Http(reqwest::Client, String),
}

impl Target {
    /// Connects to the intake at `addr`.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn connect(intake: Intake, addr: SocketAddr) -> Result<Self, BoxError> {
        Self::connect_url(intake, &format!("http://{addr}")).await
    }

    /// Connects to the intake at `url` (`http://host:port`).
    ///
    /// # Errors
    /// Connection failures.
    pub async fn connect_url(intake: Intake, url: &str) -> Result<Self, BoxError> {
        Ok(match intake {
            Intake::Grpc => Target::Grpc(OrderClient::connect(ClientConfig::new(url)).await?),
            Intake::Http => {
                Target::Http(reqwest::Client::new(), url.trim_end_matches('/').to_owned())
            }
        })
    }

    async fn place(&self, purchase: &Purchase) -> Result<(), BoxError> {
        match self {
            Target::Grpc(client) => client
                .place_order(purchase, None)
                .await
                .map(drop)
                .map_err(Into::into),
            Target::Http(client, base) => {
                let response = client
                    .post(format!("{base}/orders"))
                    .json(purchase)
                    .send()
                    .await?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )
                    .into())
                }
            }
        }
    }
}

/// What the intake side of a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Orders accepted by the intake.
    pub accepted: u64,
    /// Orders refused (or failed) at the intake.
    pub errors: u64,
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

/// Places every purchase through `target` with at most `concurrency` requests in flight.
///
/// # Errors
/// Only a histogram failure; request errors are counted in [`LoadResult::errors`].
pub async fn place_all(
    target: &Target,
    purchases: &[Purchase],
    pace: Pace,
    concurrency: usize,
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
    let interval = match pace {
        Pace::Steady(rate) if rate > 0.0 => Some(Duration::from_secs_f64(1.0 / rate)),
        _ => None,
    };
    let bar = Arc::new(bar);
    let results: Vec<Result<u64, String>> = stream::iter(purchases.iter().enumerate())
        .map(|(i, purchase)| {
            let bar = Arc::clone(&bar);
            async move {
                if let Some(interval) = interval {
                    let due = started + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let result = target.place(purchase).await;
                bar.inc(1);
                result
                    .map(|()| sent.elapsed().as_micros() as u64)
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut errors = 0;
    for result in &results {
        match result {
            Ok(us) => histogram.saturating_record((*us).max(1)),
            Err(e) => {
                if errors == 0 {
                    tracing::warn!(error = %e, "order refused");
                }
                errors += 1;
            }
        }
    }
    Ok(LoadResult {
        accepted: histogram.len(),
        errors,
        elapsed,
        latency: LatencySummary::from_histogram(&histogram),
    })
}
