//! 1,000 concurrent placements create exactly 1,000 orders; retries with the same keys
//! create none.

mod common;

use std::collections::HashSet;

use common::{wait_until, Harness, Options};
use order_fsm::{OrderId, Purchase, PLACE_EVENT};
use order_fsm_grpc::OrderClient;

const CALLS: usize = 1_000;

async fn place_all(client: &OrderClient) -> Vec<(OrderId, bool)> {
    let tasks: Vec<_> = (0..CALLS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut purchase = Purchase::example();
                purchase.product = format!("product {i}");
                let placed = client
                    .place_order(&purchase, Some(&format!("load-{i}")))
                    .await
                    .expect("place");
                (placed.order_id, placed.already_existed)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(CALLS);
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_create_one_order_each_and_retries_none() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;

    let first = place_all(&client).await;
    let ids: HashSet<_> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), CALLS, "every call got its own order");
    assert!(first.iter().all(|(_, existed)| !existed));

    // Retried at once, while the runner may still be busy with the first round: duplicates
    // that reach the queue are recognised by event id.
    let second = place_all(&client).await;
    assert_eq!(
        second.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        first.iter().map(|(id, _)| *id).collect::<Vec<_>>()
    );
    h.drained().await;
    wait_until(|| h.store.len() == CALLS).await;

    // Retried after processing: answered from the store, nothing submitted.
    let pending_before = h.queue.committed();
    let third = place_all(&client).await;
    assert!(third.iter().all(|(_, existed)| *existed));
    assert_eq!(h.queue.committed(), pending_before, "nothing new submitted");
    h.drained().await;

    assert_eq!(h.store.len(), CALLS);
    let placements = h
        .sink
        .records()
        .iter()
        .filter(|r| r.event == PLACE_EVENT)
        .count();
    assert_eq!(placements, CALLS, "one placement record per order");
    h.stop().await;
}
