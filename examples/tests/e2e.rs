//! The system as separate processes on real services: tansu (Kafka protocol), osmem-server
//! (Elasticsearch API) and aiosmtpd (SMTP), all started by scripts/test.sh.
//!
//! 1,000 orders placed over gRPC on the intake process reach `completed` through a worker
//! process; Elasticsearch holds one order document per order and one document per
//! transition; the SMTP server received exactly one mail per transition; none is lost.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{free_port, kafka_args, mails_in, spawn, until};

use futures_util::stream::{self, StreamExt};
use order_fsm::testing::service_address;
use order_fsm::{OrderId, Purchase};
use order_fsm_elastic::ElasticBuilder;
use order_fsm_examples::dataset;
use order_fsm_grpc::{ClientConfig, OrderClient};

const ORDERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_through_separate_processes_on_real_services() {
    let (Some(brokers), Some(es_url), Some(smtp_url), Some(maildir)) = (
        service_address("ORDER_FSM_KAFKA_BROKERS"),
        service_address("ORDER_FSM_ES_URL"),
        service_address("ORDER_FSM_SMTP_URL"),
        service_address("ORDER_FSM_SMTP_MAILDIR"),
    ) else {
        return;
    };
    let prefix = format!("e2e-{}-", OrderId::random().as_u128() % 1_000_000_007);
    let grpc_port = free_port();
    let group = format!("{prefix}workers");
    let common = |extra: &[&str]| kafka_args(&brokers, &prefix, extra);
    let _worker = spawn(
        env!("CARGO_BIN_EXE_worker"),
        &common(&[
            "--group",
            &group,
            "--workers",
            "2",
            "--es-url",
            &es_url,
            "--es-index-prefix",
            &prefix,
            "--smtp-url",
            &smtp_url,
        ]),
    );
    let _intake = spawn(
        env!("CARGO_BIN_EXE_intake"),
        &common(&[
            "--grpc-addr",
            &format!("127.0.0.1:{grpc_port}"),
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
        ]),
    );

    let url = format!("http://127.0.0.1:{grpc_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok(client) = OrderClient::connect(ClientConfig::new(url.clone())).await {
            break client;
        }
        assert!(
            Instant::now() < deadline,
            "the intake never listened on {url}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let purchases: Vec<Purchase> = dataset::generate(ORDERS, 7)
        .into_iter()
        .map(Purchase::from)
        .collect();
    let placed: Vec<OrderId> = stream::iter(&purchases)
        .map(|p| {
            let client = client.clone();
            async move { client.place_order(p, None).await.expect("placed").order_id }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let ours: HashSet<OrderId> = placed.iter().copied().collect();
    assert_eq!(ours.len(), ORDERS, "one distinct order per call");

    let queries = ElasticBuilder::new(es_url.clone())
        .with_index_prefix(prefix.clone())
        .build_queries()
        .await
        .unwrap();
    let completed = || async {
        let _ = queries.refresh().await;
        let by_status = queries.orders_per_status().await.unwrap_or_default();
        by_status
            .iter()
            .find(|t| t.key == "completed")
            .map_or(0, |t| t.count)
    };
    until(
        "every order to complete",
        Duration::from_secs(180),
        || async { completed().await == ORDERS as u64 },
    )
    .await;
    let by_status = queries.orders_per_status().await.unwrap();
    assert_eq!(
        by_status.iter().map(|t| t.count).sum::<u64>(),
        ORDERS as u64,
        "{by_status:?}"
    );
    assert_eq!(
        queries.count_transitions().await.unwrap(),
        5 * ORDERS as u64,
        "one document per placement and per state change"
    );

    // The intake's read model follows the transitions topic: every order reads as completed.
    until("the intake's read model", Duration::from_secs(60), || {
        let client = client.clone();
        let placed = placed.clone();
        async move {
            for id in placed {
                match client.get_order(id).await {
                    Ok(view) if view.status == "completed" => {}
                    _ => return false,
                }
            }
            true
        }
    })
    .await;

    // Exactly one mail per record (placement and each state change) for our orders.
    let maildir = std::path::PathBuf::from(maildir);
    let mails_for_ours = || {
        mails_in(&maildir)
            .into_iter()
            .filter(|(order, _)| ours.contains(order))
            .collect::<Vec<_>>()
    };
    until("the mails", Duration::from_secs(60), || async {
        mails_for_ours().len() >= 5 * ORDERS
    })
    .await;
    let mails = mails_for_ours();
    let distinct: HashSet<_> = mails.iter().collect();
    assert_eq!(mails.len(), 5 * ORDERS, "no mail twice, none missing");
    assert_eq!(distinct.len(), 5 * ORDERS);
}
