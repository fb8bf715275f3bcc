//! `--metrics-addr`: the Prometheus scrape endpoint of every long-running program.
//!
//! The programs install [`metrics_exporter_prometheus`] as the recorder of the
//! [`order_fsm::telemetry`] metrics (the names are listed there) and serve them in
//! Prometheus' text format at `http://ADDR/metrics` (any path answers). Durations are
//! histograms with fixed buckets from 0.5 ms to 5 min, so that Prometheus can aggregate
//! them across processes (`histogram_quantile`).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Upper bounds of the duration histograms' buckets, in seconds.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// The scrape endpoint's flag.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on this address (`GET /metrics`); none when unset.
    #[arg(long, env = "ORDER_FSM_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Installs the recorder and starts the endpoint when `--metrics-addr` is given. Call
    /// it first thing in `main`, inside the Tokio runtime: components record into the
    /// recorder that is installed when they first record.
    pub fn install(&self) -> Result<(), metrics_exporter_prometheus::BuildError> {
        let Some(addr) = self.metrics_addr else {
            return Ok(());
        };
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
            .install()?;
        tracing::info!(%addr, "metrics: serving Prometheus text format");
        eprintln!("metrics on http://{addr}/metrics");
        Ok(())
    }
}
