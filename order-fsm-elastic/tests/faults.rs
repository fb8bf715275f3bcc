//! Failures between the sink and the server, through a proxy in the test: 429s, a server
//! that is not there at start, a server that goes away mid-run.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use order_fsm::testing::sample_records;
use order_fsm::{
    Command, Dwell, Lifecycle, MemoryQueue, Purchase, RetryPolicy, Runner, TransitionRecord,
    TransitionSink,
};
use order_fsm_elastic::{ElasticBuilder, ElasticError, Queries, TermCount};

fn records_of(orders: usize) -> Vec<TransitionRecord> {
    (0..orders).flat_map(|_| sample_records()).collect()
}

/// Queries straight to the server (not through the proxy), same indices as `builder`.
async fn direct_queries(url: &str, builder: &ElasticBuilder) -> Queries {
    ElasticBuilder::new(url)
        .with_index_prefix(builder.config().index_prefix.clone())
        .build_queries()
        .await
        .expect("queries")
}

/// Every record is held exactly once and intact.
async fn assert_exactly_once(q: &Queries, records: &[TransitionRecord]) {
    q.refresh().await.expect("refresh");
    assert_eq!(
        q.count_transitions().await.expect("count"),
        records.len() as u64,
        "no document lost or duplicated"
    );
    let mut by_order: std::collections::BTreeMap<_, Vec<TransitionRecord>> = Default::default();
    for r in records {
        by_order.entry(r.order_id).or_default().push(r.clone());
    }
    for (order_id, expected) in by_order {
        assert_eq!(
            q.transitions_of(order_id).await.expect("read back"),
            expected
        );
    }
}

#[tokio::test]
async fn bulk_429s_and_refused_items_are_retried_and_every_document_arrives_once() {
    let Some(url) = common::es_url() else { return };
    let proxy = common::Proxy::start(&url).await;
    proxy.state.reject_bulks.store(3, Ordering::SeqCst);
    proxy.state.refuse_odd_items.store(2, Ordering::SeqCst);
    let builder = common::builder(&proxy.url, "retry429")
        .with_retry(common::quick_retry(10))
        .with_max_batch_docs(50);
    let sink = builder
        .clone()
        .build()
        .await
        .expect("build through the proxy");
    let records = records_of(30);
    sink.publish(&records)
        .await
        .expect("published despite the 429s");

    let seen = proxy.state.bulk_requests.load(Ordering::SeqCst);
    let batches = (records.len() + 30).div_ceil(50); // transitions + one order doc each
    assert!(
        seen >= batches + 3 + 2,
        "429s were retried ({seen} bulk requests)"
    );
    assert_eq!(proxy.state.reject_bulks.load(Ordering::SeqCst), 0);
    assert!(
        proxy.state.refused_items.load(Ordering::SeqCst) > 0,
        "items were refused"
    );
    let q = direct_queries(&url, &builder).await;
    assert_exactly_once(&q, &records).await;
    assert_eq!(
        q.orders_per_status().await.expect("status"),
        [TermCount {
            key: "completed".into(),
            count: 30
        }]
    );
}

#[tokio::test]
async fn a_server_that_never_stops_answering_429_fails_retryably() {
    let Some(url) = common::es_url() else { return };
    let proxy = common::Proxy::start(&url).await;
    let sink = common::builder(&proxy.url, "always429")
        .with_retry(common::quick_retry(3))
        .build()
        .await
        .expect("build");
    proxy.state.reject_bulks.store(usize::MAX, Ordering::SeqCst);
    let err = sink
        .index_records(&sample_records())
        .await
        .expect_err("429 forever");
    assert!(
        matches!(err, ElasticError::Http { status: 429, .. }),
        "{err:?}"
    );
    assert_eq!(
        proxy.state.bulk_requests.load(Ordering::SeqCst),
        3,
        "as many attempts as the policy allows"
    );
    let core: order_fsm::Error = err.into();
    assert!(
        core.is_retryable(),
        "the runner retries and does not acknowledge: {core}"
    );
}

#[tokio::test]
async fn a_server_down_at_start_is_a_clear_unreachable_error() {
    if common::es_url().is_none() {
        return;
    }
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let err = ElasticBuilder::new(&url)
        .with_retry(common::quick_retry(1))
        .build()
        .await
        .expect_err("nothing listens there");
    match &err {
        ElasticError::Unreachable { url: u, .. } => assert_eq!(u, &url),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&url),
        "the message names the URL: {err}"
    );
    assert!(err.is_retryable());
    let missing = ElasticBuilder::new("not a url")
        .build()
        .await
        .expect_err("bad url");
    assert!(matches!(missing, ElasticError::Config(_)), "{missing:?}");
}

#[tokio::test]
async fn publish_fails_retryably_while_the_server_is_down_and_nothing_is_lost() {
    let Some(url) = common::es_url() else { return };
    let proxy = common::Proxy::start(&url).await;
    let builder = common::builder(&proxy.url, "down").with_retry(common::quick_retry(3));
    let sink = builder.clone().build().await.expect("build");
    let first = records_of(3);
    sink.publish(&first).await.expect("publish while up");

    proxy.state.down.store(true, Ordering::SeqCst);
    let second = records_of(4);
    let err = sink.publish(&second).await.expect_err("the server is down");
    assert!(
        matches!(
            err,
            order_fsm::Error::Unavailable {
                backend: "elasticsearch",
                ..
            }
        ),
        "retryable, so the runner does not acknowledge: {err}"
    );

    proxy.state.down.store(false, Ordering::SeqCst);
    sink.publish(&second)
        .await
        .expect("the same batch again once the server is back");
    let q = direct_queries(&url, &builder).await;
    assert_exactly_once(&q, &[first, second].concat()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_acknowledges_nothing_during_an_outage_and_loses_nothing() {
    let Some(url) = common::es_url() else { return };
    let proxy = common::Proxy::start(&url).await;
    let builder = common::builder(&proxy.url, "runner").with_retry(common::quick_retry(2));
    let sink = Arc::new(builder.clone().build().await.expect("build"));
    proxy.state.down.store(true, Ordering::SeqCst);

    let queue = MemoryQueue::new();
    queue.extend((0..20).map(|_| Command::place(Purchase::example())));
    queue.close();
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_sink(sink)
        .with_auto_advance(Dwell::None)
        .with_retry(
            RetryPolicy::default()
                .forever()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(100)),
        )
        .build()
        .expect("runner");
    let source = queue.subscribe();
    let run = tokio::spawn(async move { runner.run(source, std::future::pending()).await });

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        queue.committed(),
        0,
        "nothing is acknowledged while the sink fails"
    );
    assert_eq!(queue.pending(), 20);

    proxy.state.down.store(false, Ordering::SeqCst);
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the runner finishes once the server is back")
        .expect("task")
        .expect("run");
    assert_eq!(report.metrics.finished_in("completed"), 20);
    assert_eq!(queue.pending(), 0, "everything acknowledged");

    let q = direct_queries(&url, &builder).await;
    q.refresh().await.expect("refresh");
    assert_eq!(
        q.count_transitions().await.expect("count"),
        100,
        "placement + 4 transitions per order, once each"
    );
    assert_eq!(
        q.orders_per_status().await.expect("status"),
        [TermCount {
            key: "completed".into(),
            count: 20
        }]
    );
}

#[tokio::test]
async fn a_sink_built_lazily_while_the_server_is_down_creates_its_indices_once_it_answers() {
    let Some(url) = common::es_url() else { return };
    let proxy = common::Proxy::start(&url).await;
    proxy.state.down.store(true, Ordering::SeqCst);
    let builder = common::builder(&proxy.url, "lazy").with_retry(common::quick_retry(2));
    let err = builder
        .clone()
        .build()
        .await
        .expect_err("build checks the server");
    assert!(err.is_retryable(), "{err:?}");
    let sink = builder
        .clone()
        .build_lazily()
        .await
        .expect("no server needed to build lazily");
    let records = records_of(3);
    let err = sink
        .publish(&records)
        .await
        .expect_err("the server is down");
    assert!(
        matches!(err, order_fsm::Error::Unavailable { .. }),
        "retryable: {err}"
    );

    proxy.state.down.store(false, Ordering::SeqCst);
    sink.publish(&records)
        .await
        .expect("published once it answers");
    // The indices were created with their mappings, not by a bulk request's dynamic ones.
    let index = builder.config().transitions_index();
    let (status, mapping) = common::raw(&url, "GET", &format!("{index}/_mapping"), "").await;
    assert_eq!(status, 200, "{mapping}");
    let mapping: serde_json::Value = serde_json::from_str(&mapping).expect("json");
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["to"]["type"], "keyword",
        "{mapping}"
    );
    let q = direct_queries(&url, &builder).await;
    assert_exactly_once(&q, &records).await;
}
