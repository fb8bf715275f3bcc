//! Every query against values computed in the test from the records it indexed.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use order_fsm::{
    ecommerce, Engine, Event, Lifecycle, OrderId, Purchase, Timestamp, TransitionRecord,
};
use order_fsm_elastic::{LatencyStats, OrderField, TermCount};

const BANKS: [&str; 3] = ["Banco Estado", "Santander", "BCI"];
const REGIONS: [&str; 4] = ["Valparaíso", "Biobío", "Metropolitana", "Maule"];
/// 2023-11-14T22:13:20Z, so minutes are whole.
const BASE_US: u64 = 1_700_000_000_000_000;

/// `orders` orders with known times: placements 7 s apart (several minutes in all), dwell
/// times that differ per order, some cancelled and some failed.
fn dataset(orders: u64) -> Vec<TransitionRecord> {
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let engine = Engine::new(Arc::clone(&lifecycle));
    let mut out = Vec::new();
    for i in 0..orders {
        let mut purchase = Purchase::example();
        purchase.bank = BANKS[(i % 3) as usize].into();
        purchase.region = REGIONS[(i % 4) as usize].into();
        let mut at = BASE_US + i * 7_000_000;
        let mut order = engine.place(
            OrderId::from_u128(0xe1a5_0000 + u128::from(i)),
            purchase.into(),
            Timestamp::from_micros(at),
        );
        let path: Vec<_> = match i % 10 {
            3 => vec![ecommerce::PREPARE, ecommerce::CANCEL],
            7 => vec![ecommerce::PREPARE, ecommerce::SHIP, ecommerce::FAIL],
            9 => vec![ecommerce::PREPARE],
            _ => vec![
                ecommerce::PREPARE,
                ecommerce::SHIP,
                ecommerce::DELIVER,
                ecommerce::COMPLETE,
            ],
        };
        for (step, kind) in path.into_iter().enumerate() {
            at += 1_000 + (i * 7_919 + step as u64 * 104_729) % 20_000_000;
            let mut event = Event::new(kind, Timestamp::from_micros(at));
            if kind == ecommerce::FAIL {
                event.reason = Some("lost in transit".into());
            }
            engine
                .apply_in_place(&mut order, &event)
                .expect("legal path");
        }
        out.extend(TransitionRecord::all_of(&lifecycle, &order));
    }
    out
}

/// Exact count/avg/min/max; the percentiles must lie within one rank of the exact ones
/// (Elasticsearch's are approximate).
fn check_latency(what: &str, got: &LatencyStats, mut values: Vec<u64>) {
    values.sort_unstable();
    let n = values.len();
    assert_eq!(got.count, n as u64, "{what}: count");
    let avg = values.iter().sum::<u64>() as f64 / n as f64;
    assert!(
        (got.avg_us - avg).abs() < 1e-6 * avg.max(1.0),
        "{what}: avg {} vs {avg}",
        got.avg_us
    );
    assert_eq!(got.min_us, values[0] as f64, "{what}: min");
    assert_eq!(got.max_us, values[n - 1] as f64, "{what}: max");
    for (q, p) in [(0.5, got.p50_us), (0.9, got.p90_us), (0.99, got.p99_us)] {
        let rank = q * (n - 1) as f64;
        let lo = values[(rank.floor() as usize).saturating_sub(1)] as f64;
        let hi = values[(rank.ceil() as usize + 1).min(n - 1)] as f64;
        assert!(
            (lo..=hi).contains(&p),
            "{what}: p{} = {p} outside [{lo}, {hi}]",
            q * 100.0
        );
    }
    assert!(
        got.p50_us <= got.p90_us && got.p90_us <= got.p99_us,
        "{what}: percentiles ordered"
    );
}

fn counts(keys: impl Iterator<Item = String>) -> Vec<TermCount> {
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    for k in keys {
        *map.entry(k).or_default() += 1;
    }
    let mut out: Vec<TermCount> = map
        .into_iter()
        .map(|(key, count)| TermCount { key, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out
}

#[tokio::test]
async fn every_query_matches_values_computed_from_the_records() {
    let Some(url) = common::es_url() else { return };
    let sink = common::builder(&url, "queries")
        .with_max_batch_docs(64)
        .build()
        .await
        .expect("build");
    let records = dataset(60);
    // Several publish calls of different sizes, concurrently, as runner workers would.
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in records.chunks(37) {
        let (sink, chunk) = (sink.clone(), chunk.to_vec());
        tasks.spawn(async move { sink.index_records(&chunk).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task").expect("publish");
    }
    let q = sink.queries();
    q.refresh().await.expect("refresh");
    assert_eq!(
        q.count_transitions().await.expect("count"),
        records.len() as u64
    );

    // Latency per transition.
    let mut expected: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.from.is_some()) {
        expected
            .entry((
                r.from.as_deref().unwrap_or_default().to_owned(),
                r.to.to_string(),
            ))
            .or_default()
            .push(r.in_previous_state_micros);
    }
    let got = q
        .latency_per_transition()
        .await
        .expect("latency per transition");
    let got_keys: Vec<(String, String)> =
        got.iter().map(|t| (t.from.clone(), t.to.clone())).collect();
    assert_eq!(
        got_keys,
        expected.keys().cloned().collect::<Vec<_>>(),
        "one entry per (from, to)"
    );
    for t in &got {
        check_latency(
            &format!("{} -> {}", t.from, t.to),
            &t.latency,
            expected[&(t.from.clone(), t.to.clone())].clone(),
        );
    }

    // End to end, placed -> completed.
    let e2e: Vec<u64> = records
        .iter()
        .filter(|r| r.to == "completed")
        .map(|r| r.at.micros_since(r.placed_at))
        .collect();
    check_latency(
        "placed -> completed",
        &q.end_to_end("completed").await.expect("end to end"),
        e2e,
    );

    // Throughput per minute.
    let mut minutes: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.from.is_some()) {
        let minute = r.at.as_millis() / 60_000 * 60_000;
        let e = minutes.entry(minute).or_default();
        e.0 += 1;
        e.1 += u64::from(r.terminal);
    }
    let got = q.throughput_per_minute().await.expect("throughput");
    let got: BTreeMap<u64, (u64, u64)> = got
        .iter()
        .map(|b| {
            (
                b.minute_start.as_millis(),
                (b.transitions, b.orders_finished),
            )
        })
        .collect();
    assert!(minutes.len() >= 5, "the data set spans several minutes");
    assert_eq!(got, minutes, "transitions and finished orders per minute");

    // Orders per status, bank, region: the last record of each order.
    let mut last: HashMap<OrderId, &TransitionRecord> = HashMap::new();
    for r in &records {
        last.insert(r.order_id, r);
    }
    let status = counts(last.values().map(|r| r.to.to_string()));
    assert_eq!(q.orders_per_status().await.expect("status"), status);
    assert_eq!(
        status.len(),
        4,
        "completed, cancelled, failed and preparing"
    );
    assert_eq!(
        q.orders_per_bank().await.expect("bank"),
        counts(last.values().map(|r| r.purchase.bank.clone()))
    );
    assert_eq!(
        q.orders_per_region().await.expect("region"),
        counts(last.values().map(|r| r.purchase.region.clone()))
    );
    assert_eq!(
        q.orders_per(OrderField::CardBrand)
            .await
            .expect("card brand"),
        [TermCount {
            key: "Visa".into(),
            count: 60
        }]
    );
}
