//! `--metrics-addr`, as separate processes on tansu: the intake and a worker serve
//! Prometheus' text format, Python's `prometheus_client` parser (an independent reader of
//! the format) reads it, and the figures are what the test did: every placement, every
//! state change, every refused request and every order's final state counted once.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, until, IntakeAndWorker};
use order_fsm::telemetry;
use order_fsm::testing::service_address;
use order_fsm::Purchase;
use order_fsm_grpc::proto::order_service_client::OrderServiceClient;
use order_fsm_grpc::proto::GetOrderRequest;

const ORDERS: usize = 40;

/// One sample of a scrape.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Whether Python's Prometheus parser is here; in CI it must be (scripts/services.sh).
fn parser_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "python3 with prometheus_client is required in CI: pip install prometheus-client"
        );
        eprintln!(
            "SKIPPED: python3 -c 'import prometheus_client' failed; pip install prometheus-client"
        );
    }
    found
}

/// The samples at `addr`'s `/metrics`, parsed by prometheus_client (panics if it does not
/// parse); `None` while the endpoint does not answer.
async fn scrape(http: &reqwest::Client, addr: &str) -> Option<Vec<Sample>> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/parse_metrics.py");
    let mut parser = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON sample"))
            .collect(),
    )
}

/// The value of `name` with exactly the `labels` given among its labels (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_and_a_worker_expose_what_happened_in_prometheus_format() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    if !parser_available() {
        return;
    }
    let (intake_metrics, worker_metrics) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let processes = IntakeAndWorker::start(
        &brokers,
        "metrics",
        &["--metrics-addr", &worker_metrics],
        &["--metrics-addr", &intake_metrics],
    );
    let (grpc, http_addr) = (&processes.grpc, &processes.http);
    let http = reqwest::Client::new();
    until(
        "the intake's HTTP listener",
        Duration::from_secs(60),
        || {
            let (http, url) = (http.clone(), format!("http://{http_addr}/orders/x"));
            async move { http.get(url).send().await.is_ok() }
        },
    )
    .await;
    let refused_before = scrape(&http, &intake_metrics)
        .await
        .expect("intake metrics");
    let refused = |samples: &[Sample], api: &str, code: &str| {
        value(
            samples,
            telemetry::REFUSED_REQUESTS,
            &[("api", api), ("code", code)],
        )
    };
    let base_400 = refused(&refused_before, "http", "400");

    let purchase = serde_json::to_value(Purchase::example()).unwrap();
    for _ in 0..ORDERS {
        let answer = http
            .post(format!("http://{http_addr}/orders"))
            .json(&purchase)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    }
    // Refused: not declared as JSON (415), a bad price (400), a bad id over gRPC.
    let not_json = http
        .post(format!("http://{http_addr}/orders"))
        .header("content-type", "text/plain")
        .body(purchase.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let mut bad_price = purchase.clone();
    bad_price["price"] = serde_json::json!(12.5);
    let bad = http
        .post(format!("http://{http_addr}/orders"))
        .json(&bad_price)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let mut raw = OrderServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let status = raw
        .get_order(GetOrderRequest {
            order_id: "not-an-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // The intake's read model sees every order complete; its per-state gauge says so.
    let completed =
        |samples: &[Sample]| value(samples, telemetry::ORDERS, &[("state", "completed")]) as usize;
    until("every order completed", Duration::from_secs(120), || {
        let http = http.clone();
        let addr = intake_metrics.clone();
        async move {
            scrape(&http, &addr)
                .await
                .is_some_and(|s| completed(&s) == ORDERS)
        }
    })
    .await;
    let intake = scrape(&http, &intake_metrics).await.unwrap();
    for state in ["processing", "preparing", "shipped", "delivered"] {
        assert_eq!(
            value(&intake, telemetry::ORDERS, &[("state", state)]),
            0.0,
            "no order left in {state}"
        );
    }
    assert_eq!(refused(&intake, "http", "415"), 1.0);
    assert_eq!(refused(&intake, "http", "400") - base_400, 1.0);
    assert_eq!(refused(&intake, "grpc", "invalid_argument"), 1.0);

    // The intake measures the workers' lag on each of the 4 partitions; it drains to 0 as
    // they commit.
    let lag = |samples: &[Sample]| {
        let series: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == telemetry::CONSUMER_LAG)
            .collect();
        (series.len(), series.iter().map(|s| s.value).sum::<f64>())
    };
    until("the workers' lag to drain", Duration::from_secs(30), || {
        let http = http.clone();
        let addr = intake_metrics.clone();
        async move {
            scrape(&http, &addr)
                .await
                .is_some_and(|s| lag(&s) == (4, 0.0))
        }
    })
    .await;

    // The worker counts a batch just after acknowledging it: wait for the last one.
    let finished = |samples: &[Sample]| {
        value(samples, telemetry::TRANSITIONS, &[("to", "completed")]) as usize
    };
    until("the worker's last batch", Duration::from_secs(30), || {
        let http = http.clone();
        let addr = worker_metrics.clone();
        async move {
            scrape(&http, &addr)
                .await
                .is_some_and(|s| finished(&s) == ORDERS)
        }
    })
    .await;
    let worker = scrape(&http, &worker_metrics)
        .await
        .expect("worker metrics");
    assert_eq!(value(&worker, telemetry::ORDERS_PLACED, &[]), ORDERS as f64);
    for (from, to) in [
        ("processing", "preparing"),
        ("preparing", "shipped"),
        ("shipped", "delivered"),
        ("delivered", "completed"),
    ] {
        assert_eq!(
            value(
                &worker,
                telemetry::TRANSITIONS,
                &[("from", from), ("to", to)]
            ),
            ORDERS as f64,
            "{from} -> {to}"
        );
        let histogram_count = format!("{}_count", telemetry::TRANSITION_SECONDS);
        assert_eq!(
            value(&worker, &histogram_count, &[("from", from), ("to", to)]),
            ORDERS as f64,
            "a latency sample per {from} -> {to}"
        );
    }
    let lifetimes = format!("{}_count", telemetry::ORDER_SECONDS);
    assert_eq!(value(&worker, &lifetimes, &[]), ORDERS as f64);
    let infinite_bucket = format!("{}_bucket", telemetry::ORDER_SECONDS);
    assert_eq!(
        value(&worker, &infinite_bucket, &[("le", "+Inf")]),
        ORDERS as f64,
        "durations are Prometheus histograms with buckets"
    );
    assert!(
        value(&worker, telemetry::COMMANDS_ACKED, &[]) >= ORDERS as f64,
        "every placement acknowledged"
    );
    assert_eq!(value(&worker, telemetry::IN_FLIGHT_BATCHES, &[]), 0.0);
}
