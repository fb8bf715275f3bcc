//! `WatchOrder`: history replay, then live transitions in order, ending at a terminal state.

mod common;

use std::time::Duration;

use common::{assert_status, read_until, Harness, Options};
use futures_util::StreamExt;
use order_fsm::{Dwell, OrderId, Purchase};
use order_fsm_grpc::{EventOptions, OrderClient, TransitionView};
use tonic::Code;

async fn collect(client: &OrderClient, id: OrderId) -> Vec<TransitionView> {
    let stream = client.watch_order(id).await.expect("watch");
    let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends at a terminal state");
    items.into_iter().map(|i| i.expect("item")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_receives_every_transition_in_order_ending_at_completed() {
    let h = Harness::start(Options {
        auto_advance: Some(Dwell::Fixed(Duration::from_millis(40))),
        ..Options::default()
    })
    .await;
    let client = h.client().await;
    let placed = client
        .place_order(&Purchase::example(), None)
        .await
        .unwrap();
    // Watch while the order moves: some records come from the store, the rest live.
    read_until(&client, placed.order_id, |_| true).await;
    let transitions = collect(&client, placed.order_id).await;
    let path: Vec<_> = transitions.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(
        path,
        [
            "processing",
            "preparing",
            "shipped",
            "delivered",
            "completed"
        ]
    );
    let versions: Vec<_> = transitions.iter().map(|t| t.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(transitions[0].event, "place");
    assert_eq!(transitions[0].from, None);
    assert!(transitions.last().unwrap().terminal);
    assert!(transitions[..4].iter().all(|t| !t.terminal));

    // Watching a finished order replays its history and ends at once.
    let replay = collect(&client, placed.order_id).await;
    assert_eq!(replay, transitions);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_commands_and_ends_at_cancelled() {
    let h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let id = client
        .place_order(&Purchase::example(), None)
        .await
        .unwrap()
        .order_id;
    read_until(&client, id, |_| true).await;
    let stream = client.watch_order(id).await.unwrap();
    let watcher = tokio::spawn(async move { stream.collect::<Vec<_>>().await });
    client
        .apply_event(id, "prepare", EventOptions::default())
        .await
        .unwrap();
    read_until(&client, id, |o| o.version == 2).await;
    client
        .cancel_order(id, EventOptions::default())
        .await
        .unwrap();
    let items = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("ends")
        .unwrap();
    let events: Vec<_> = items.into_iter().map(|i| i.unwrap().event).collect();
    assert_eq!(events, ["place", "prepare", "cancel"]);

    assert_status(
        client.watch_order(OrderId::from_u128(5)).await.map(|_| ()),
        Code::NotFound,
        &["not found"],
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_watches_end_with_unavailable_at_shutdown() {
    let mut h = Harness::start(Options::default()).await;
    let client = h.client().await;
    let id = client
        .place_order(&Purchase::example(), None)
        .await
        .unwrap()
        .order_id;
    read_until(&client, id, |_| true).await;
    let mut stream = Box::pin(client.watch_order(id).await.unwrap());
    assert_eq!(stream.next().await.unwrap().unwrap().version, 1);
    h.shutdown_server();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream ends");
    let error = end.expect("an error item").expect_err("unavailable");
    assert_eq!(error.code(), Some(Code::Unavailable));
    h.stop().await;
}
