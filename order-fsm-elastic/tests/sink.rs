//! The sink against the server in `ORDER_FSM_ES_URL`: the core's conformance suite, the
//! version guard of the orders index, rejected documents, dead letters and metrics.

mod common;

use std::sync::Arc;

use order_fsm::testing::{sample_records, sink_conformance, Repeats};
use order_fsm::{
    Command, DeadLetter, DeadLetterSink, MemorySink, MetricsRecord, MetricsSink, MetricsSnapshot,
    Origin, Purchase, Timestamp, TransitionSink,
};
use order_fsm_elastic::{ElasticError, TermCount};
use serde_json::Value;

#[tokio::test]
async fn sink_conformance_with_replaced_repeats() {
    let Some(url) = common::es_url() else { return };
    let sink = common::builder(&url, "conf")
        .build()
        .await
        .expect("build the sink");
    let queries = sink.queries();
    sink_conformance(&sink, Repeats::Replaced, |order_id| {
        let queries = queries.clone();
        async move {
            queries.refresh().await?;
            Ok(queries.transitions_of(order_id).await?)
        }
    })
    .await;
}

#[tokio::test]
async fn an_older_record_never_overwrites_a_newer_order_state() {
    let Some(url) = common::es_url() else { return };
    let sink = common::builder(&url, "guard").build().await.expect("build");
    let records = sample_records();
    // The newest record first, then every older one, one publish each.
    sink.publish(&records[4..]).await.expect("publish v5");
    for r in records[..4].iter().rev() {
        sink.publish(std::slice::from_ref(r))
            .await
            .expect("publish an older version");
    }
    let queries = sink.queries();
    queries.refresh().await.expect("refresh");
    assert_eq!(
        queries.orders_per_status().await.expect("per status"),
        [TermCount {
            key: "completed".into(),
            count: 1
        }],
        "the order document keeps version 5's state"
    );
    // And the order of arrival does not matter for the transitions index either.
    let held = queries
        .transitions_of(records[0].order_id)
        .await
        .expect("read back");
    assert_eq!(held, records);
}

/// A transitions index whose mapping makes `purchase.bank` a number, so every transition
/// document is refused with a mapping error.
async fn poison_transitions_index(url: &str, index: &str) {
    let body =
        r#"{"mappings":{"properties":{"purchase":{"properties":{"bank":{"type":"long"}}}}}}"#;
    let (status, reply) = common::raw(url, "PUT", index, body).await;
    assert_eq!(status, 200, "create {index}: {reply}");
}

#[tokio::test]
async fn a_rejected_document_fails_the_publish_and_is_named() {
    let Some(url) = common::es_url() else { return };
    let builder = common::builder(&url, "reject");
    let index = builder.config().transitions_index();
    poison_transitions_index(&url, &index).await;
    let sink = builder.build().await.expect("build");
    let records = sample_records();
    let err = sink
        .index_records(&records)
        .await
        .expect_err("refused documents fail the publish");
    match &err {
        ElasticError::Rejected {
            index: i,
            id,
            status,
            more,
            ..
        } => {
            assert_eq!(i, &index);
            assert_eq!(id, &format!("{}:1", records[0].order_id));
            assert_eq!(*status, 400);
            assert_eq!(*more, records.len() - 1);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_retryable());
    let core: order_fsm::Error = err.into();
    assert!(
        matches!(core, order_fsm::Error::Backend { .. }),
        "fatal for the runner: {core}"
    );
}

#[tokio::test]
async fn rejected_documents_go_to_the_dead_letter_sink() {
    let Some(url) = common::es_url() else { return };
    let letters = Arc::new(MemorySink::new());
    let builder = common::builder(&url, "dlq").with_dead_letters(letters.clone());
    poison_transitions_index(&url, &builder.config().transitions_index()).await;
    let sink = builder.build().await.expect("build");
    let records = sample_records();
    sink.publish(&records)
        .await
        .expect("rejections are dead-lettered");
    let got = letters.dead_letters();
    assert_eq!(got.len(), records.len(), "one letter per rejected record");
    for (letter, record) in got.iter().zip(&records) {
        assert_eq!(letter.command.event_id(), record.event_id);
        assert!(
            letter
                .reason
                .contains(&format!("{}:{}", record.order_id, record.version)),
            "the reason names the document: {}",
            letter.reason
        );
    }
    assert!(matches!(got[0].command, Command::Place { .. }));
    assert!(
        matches!(&got[1].command, Command::Apply { event, expected_version: Some(1), .. } if event == "prepare")
    );
}

#[tokio::test]
async fn metrics_windows_and_dead_letters_are_indexed_once() {
    let Some(url) = common::es_url() else { return };
    let sink = common::builder(&url, "metrics")
        .build()
        .await
        .expect("build");
    let mut metrics = MetricsSnapshot::default();
    metrics.elapsed_secs = 10.0;
    metrics.orders_placed = 7;
    metrics.transitions = 20;
    metrics.orders_finished = vec![("completed".into(), 3)];
    metrics.transitions_per_sec = 2.0;
    let record = MetricsRecord::new(
        Timestamp::from_micros(1_700_000_000_000_000),
        Timestamp::from_micros(1_700_000_010_000_000),
        metrics,
    );
    sink.record(&record).await.expect("record");
    sink.record(&record).await.expect("record again");
    let letter = DeadLetter::new(
        Command::place(Purchase::example()),
        "test",
        Origin::new(1, 9),
    );
    sink.dead_letter(&letter).await.expect("dead letter");
    sink.dead_letter(&letter).await.expect("dead letter again");

    let queries = sink.queries();
    queries.refresh().await.expect("refresh");
    let config = sink.config();
    for (index, expected) in [
        (config.metrics_index(), 1),
        (config.dead_letters_index(), 1),
    ] {
        let (_, reply) = common::raw(&url, "GET", &format!("{index}/_search"), "").await;
        let hits: Value = serde_json::from_str(&reply).expect("json");
        let hits = hits["hits"]["hits"].as_array().expect("hits");
        assert_eq!(hits.len(), expected, "{index}: a repeat replaces");
        if index == config.metrics_index() {
            let doc = &hits[0]["_source"];
            assert_eq!(doc["transitions"], 20);
            assert_eq!(doc["window_start"], 1_700_000_000_000u64);
            assert_eq!(doc["orders_finished"][0]["state"], "completed");
        }
    }
}
