//! Bulk-indexing throughput of the Elasticsearch sink beside a raw `_bulk` loop: same
//! records, same batch size, same server, same run, rounds alternating between the two.
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
use order_fsm::{OrderId, TransitionRecord};
use order_fsm_elastic::ElasticBuilder;
use serde_json::{json, Value};

use crate::data::{count, records};
use crate::report::{Better, Comparison, Rounds, Spec, Target};
use crate::{BoxError, Size};

struct Args {
    url: String,
    records: usize,
    batch: usize,
    concurrency: usize,
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

pub(crate) async fn compare(size: Size, url: String) -> Result<Vec<Comparison>, BoxError> {
    let (records_n, rounds) = size.pick((100, 2), (6_000, 3), (12_000, 5));
    let a = Args {
        url,
        records: records_n,
        batch: 1_000,
        concurrency: 1,
    };
    let es = Elasticsearch::new(Transport::single_node(&a.url)?);
    let tag = &OrderId::random().to_string()[..8];
    let mut r = Rounds::default();
    for round in 0..rounds {
        let raw_prefix = format!("bench-{tag}-raw{round}-");
        // The sink's builder creates the raw loop's indices too, with the same mappings.
        drop(
            ElasticBuilder::new(&a.url)
                .with_index_prefix(&raw_prefix)
                .build()
                .await?,
        );
        let sink_prefix = format!("bench-{tag}-sink{round}-");
        let (raw_data, sink_data) = (Arc::new(records(a.records)), Arc::new(records(a.records)));
        let (anchor, subject) = if Rounds::anchor_first(round) {
            let anchor = rate(run_raw(&es, &raw_prefix, raw_data, &a).await?);
            (
                anchor,
                rate(run_sink(&a.url, &sink_prefix, sink_data, &a).await?),
            )
        } else {
            let subject = rate(run_sink(&a.url, &sink_prefix, sink_data, &a).await?);
            (
                rate(run_raw(&es, &raw_prefix, raw_data, &a).await?),
                subject,
            )
        };
        r.push(anchor, subject);
        // Keep the server's memory flat between rounds.
        delete(&es, &format!("bench-{tag}-*")).await;
    }
    Ok(vec![r.finish(Spec {
        id: "elastic.bulk".into(),
        title: "Elasticsearch sink vs a raw `_bulk` loop".into(),
        backend: format!("server at {}", a.url),
        setup: format!(
            "{} records per round, batches of {}, concurrency {}",
            count(a.records),
            count(a.batch),
            a.concurrency
        ),
        unit: "docs/s",
        better: Better::Higher,
        anchor: "raw `_bulk` (same documents, encoded in the loop)".into(),
        subject: "`ElasticSink::index_records`".into(),
        target: Some(Target::AtLeast(0.8)),
        notes: vec!["documents count transitions and orders documents alike".into()],
    })])
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
