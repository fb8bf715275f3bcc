//! Bulk-indexing throughput of [`ElasticSink`] beside a raw `_bulk` loop: same records, same
//! batch size, same server, same run, rounds alternating between the two.
//!
//! ```sh
//! eval "$(scripts/elastic.sh start)"
//! cargo run --release -p order-fsm-elastic --example bulk_bench -- \
//!     [--es-url URL] [--records 12000] [--batch 1000] [--rounds 3] [--concurrency 1]
//! ```
//!
//! Each record becomes one transitions document, and each order of a batch one orders
//! document (external version), on both sides. Documents/s counts both kinds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use order_fsm::{Engine, Event, Lifecycle, OrderId, Purchase, Timestamp, TransitionRecord};
use order_fsm_elastic::ElasticBuilder;
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    url: String,
    records: usize,
    batch: usize,
    rounds: usize,
    concurrency: usize,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        url: std::env::var("ORDER_FSM_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into()),
        records: 12_000,
        batch: 1_000,
        rounds: 3,
        concurrency: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--es-url" => a.url = value,
            "--records" => a.records = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            "--rounds" => a.rounds = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    a.batch -= a.batch % 5; // whole orders per batch
    Ok(a)
}

/// Orders of five records each (placement and four transitions), fresh ids.
fn records(n: usize) -> Vec<TransitionRecord> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let engine = Engine::new(Arc::clone(&lifecycle));
    let purchase = Arc::new(Purchase::example());
    let mut out = Vec::with_capacity(n);
    let mut at = 1_700_000_000_000_000;
    while out.len() < n {
        let mut order = engine.place(
            OrderId::random(),
            Arc::clone(&purchase),
            Timestamp::from_micros(at),
        );
        while let Some(kind) = lifecycle.advance_event(order.status) {
            at += 1_000;
            engine
                .apply_in_place(&mut order, &Event::new(kind, Timestamp::from_micros(at)))
                .map_err(|e| e.to_string())
                .expect("the happy path is legal");
        }
        out.extend(TransitionRecord::all_of(&lifecycle, &order));
    }
    out.truncate(n);
    out
}

/// The raw loop's body for one batch: the same documents the sink writes (same fields, ids
/// and versioning), encoded by hand with `json!`.
fn raw_body(prefix: &str, batch: &[TransitionRecord]) -> (Bytes, usize) {
    let mut body = Vec::with_capacity(batch.len() * 1_200);
    let mut docs = 0;
    for r in batch {
        let action = json!({ "index": { "_index": format!("{prefix}transitions"), "_id": format!("{}:{}", r.order_id, r.version) } });
        let doc = json!({
            "order_id": r.order_id, "event_id": r.event_id, "version": r.version, "from": r.from,
            "to": r.to, "event": r.event, "at": r.at.as_millis(), "at_us": r.at.as_micros(),
            "placed_at": r.placed_at.as_millis(), "placed_at_us": r.placed_at.as_micros(),
            "in_previous_state_us": r.in_previous_state_micros,
            "since_placed_us": r.at.micros_since(r.placed_at), "terminal": r.terminal,
            "price_cents": r.purchase.price.minor_units(), "purchase": r.purchase,
        });
        for line in [action, doc] {
            serde_json::to_writer(&mut body, &line).expect("serialise");
            body.push(b'\n');
        }
        docs += 1;
        // Batches hold whole orders: the last record is the order's latest state.
        if r.terminal {
            let p = &r.purchase;
            let action = json!({ "index": { "_index": format!("{prefix}orders"), "_id": r.order_id.to_string(), "version": r.version, "version_type": "external" } });
            let doc = json!({
                "order_id": r.order_id, "status": r.to, "version": r.version, "last_event": r.event,
                "updated_at": r.at.as_millis(), "placed_at": r.placed_at.as_millis(),
                "terminal": r.terminal, "product": p.product, "category": p.category,
                "price_cents": p.price.minor_units(), "quantity": p.quantity,
                "payment_gateway": p.payment_gateway, "card_brand": p.card_brand, "bank": p.bank,
                "region": p.region,
            });
            for line in [action, doc] {
                serde_json::to_writer(&mut body, &line).expect("serialise");
                body.push(b'\n');
            }
            docs += 1;
        }
    }
    (Bytes::from(body), docs)
}

async fn raw_bulk(es: &Elasticsearch, body: Bytes) -> Result<(), BoxError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let reply = es
        .send(
            Method::Post,
            "/_bulk",
            headers,
            None::<&()>,
            Some(body),
            None,
        )
        .await?;
    let status = reply.status_code();
    let json: Value = reply.json().await?;
    if !status.is_success() || json["errors"].as_bool() != Some(false) {
        return Err(format!("bulk failed: HTTP {status}").into());
    }
    Ok(())
}

/// Runs `concurrency` loops over the batches, each taking every `concurrency`-th batch and
/// encoding it inside the timed loop, as the sink does.
async fn run_raw(
    es: &Elasticsearch,
    prefix: &str,
    data: Arc<Vec<TransitionRecord>>,
    a: &Args,
) -> Result<(usize, Duration), BoxError> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..a.concurrency {
        let (es, data, prefix) = (es.clone(), Arc::clone(&data), prefix.to_owned());
        let (step, batch) = (a.concurrency, a.batch);
        tasks.spawn(async move {
            let mut docs = 0;
            for chunk in data.chunks(batch).skip(lane).step_by(step) {
                let (body, n) = raw_body(&prefix, chunk);
                raw_bulk(&es, body).await?;
                docs += n;
            }
            Ok::<_, BoxError>(docs)
        });
    }
    let mut docs = 0;
    while let Some(r) = tasks.join_next().await {
        docs += r??;
    }
    Ok((docs, start.elapsed()))
}

async fn run_sink(
    url: &str,
    prefix: &str,
    data: Arc<Vec<TransitionRecord>>,
    a: &Args,
) -> Result<(usize, Duration), BoxError> {
    let sink = ElasticBuilder::new(url)
        .with_index_prefix(prefix)
        .with_max_batch_docs(a.batch + a.batch / 5)
        .with_max_batch_bytes(64 << 20)
        .with_max_in_flight(a.concurrency)
        .build()
        .await?;
    let docs = data.len() + data.iter().filter(|r| r.terminal).count();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..a.concurrency {
        let (sink, data, step, batch) = (sink.clone(), Arc::clone(&data), a.concurrency, a.batch);
        tasks.spawn(async move {
            for chunk in data.chunks(batch).skip(lane).step_by(step) {
                sink.index_records(chunk).await?;
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((docs, start.elapsed()))
}

fn rate((docs, elapsed): (usize, Duration)) -> f64 {
    docs as f64 / elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let a = args()?;
    let es = Elasticsearch::new(Transport::single_node(&a.url)?);
    let tag = &OrderId::random().to_string()[..8];
    println!(
        "bulk_bench: {} records per run, batch {} records, {} rounds, concurrency {}, server {}",
        a.records, a.batch, a.rounds, a.concurrency, a.url
    );
    let (mut raw, mut sink) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let raw_prefix = format!("bench-{tag}-raw{round}-");
        // The sink's builder creates the raw loop's indices too, with the same mappings.
        drop(
            ElasticBuilder::new(&a.url)
                .with_index_prefix(&raw_prefix)
                .build()
                .await?,
        );
        let data = Arc::new(records(a.records));
        let r = rate(run_raw(&es, &raw_prefix, data, &a).await?);
        let data = Arc::new(records(a.records));
        let s = rate(run_sink(&a.url, &format!("bench-{tag}-sink{round}-"), data, &a).await?);
        println!(
            "round {round}: raw _bulk {r:>10.0} docs/s   sink {s:>10.0} docs/s   ratio {:.2}",
            s / r
        );
        raw.push(r);
        sink.push(s);
        // Keep the server's memory flat between rounds.
        delete(&es, &format!("bench-{tag}-*")).await;
    }
    let (r, s) = (median(raw), median(sink));
    println!(
        "median:  raw _bulk {r:>10.0} docs/s   sink {s:>10.0} docs/s   ratio {:.2}",
        s / r
    );
    Ok(())
}

async fn delete(es: &Elasticsearch, pattern: &str) {
    let path = format!("/{pattern}");
    let headers = HeaderMap::new();
    let _ = es
        .send(
            Method::Delete,
            &path,
            headers,
            None::<&()>,
            None::<()>,
            None,
        )
        .await;
}
