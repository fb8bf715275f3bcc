//! The runner against mocks and in-memory parts: acknowledgement, retries, conflicts,
//! shutdown, dead letters, duplicates, timers and metrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mockall::mock;
use order_fsm::{
    Clock, Command, Dwell, Error, EventId, ListQuery, MemoryQueue, MemorySink, MemoryStore,
    OrderId, OrderState, OrderStore, Purchase, RetryPolicy, Runner, StopReason, Timestamp,
    TransitionRecord, TransitionSink,
};

mock! {
    Sink {}
    #[async_trait]
    impl TransitionSink for Sink {
        async fn publish(&self, records: &[TransitionRecord]) -> Result<(), Error>;
    }
}

mock! {
    Store {}
    #[async_trait]
    impl OrderStore for Store {
        async fn get(&self, id: OrderId) -> Result<Option<OrderState>, Error>;
        async fn compare_and_set(&self, expected_version: u64, state: OrderState) -> Result<(), Error>;
        async fn list(&self, query: ListQuery) -> Result<Vec<OrderState>, Error>;
    }
}

fn down() -> Error {
    Error::unavailable("test-sink", "connection refused")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .forever()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

fn queue_of(n: usize) -> MemoryQueue {
    let queue = MemoryQueue::new();
    queue.extend((0..n).map(|_| Command::place(Purchase::example())));
    queue.close();
    queue
}

#[tokio::test]
async fn a_failing_sink_means_no_acknowledgement_and_a_retry() {
    let queue = queue_of(1);
    let watched = queue.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut sink = MockSink::new();
    let counter = Arc::clone(&calls);
    sink.expect_publish().times(3).returning(move |records| {
        assert_eq!(records.len(), 5, "the whole batch is published again");
        assert_eq!(
            watched.committed(),
            0,
            "nothing is acknowledged while the sink fails"
        );
        let call = counter.fetch_add(1, Ordering::SeqCst);
        if call < 2 {
            Err(down())
        } else {
            Ok(())
        }
    });
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_store(store.clone())
        .with_sink(Arc::new(sink))
        .with_auto_advance(Dwell::None)
        .with_retry(fast_retry())
        .build()
        .unwrap();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!((report.acked, queue.committed()), (1, 1));
    assert_eq!(report.metrics.finished_in("completed"), 1);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_fatal_sink_error_stops_the_run_without_acknowledging() {
    let queue = queue_of(3);
    let mut sink = MockSink::new();
    sink.expect_publish()
        .times(1)
        .returning(|_| Err(Error::backend("test-sink", "authorization failed")));
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_sink(Arc::new(sink))
        .with_workers(1)
        .with_max_batch(8)
        .build()
        .unwrap();
    let err = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "test-sink",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(queue.committed(), 0);
    assert_eq!(queue.pending(), 3);
}

#[tokio::test]
async fn a_store_conflict_is_retried_from_a_fresh_read() {
    let real = Arc::new(MemoryStore::new());
    let mut store = MockStore::new();
    let (r1, r2) = (Arc::clone(&real), Arc::clone(&real));
    store.expect_get().returning(move |id| Ok(r1.get_now(id)));
    let mut conflicts = 0;
    store
        .expect_compare_and_set()
        .returning(move |expected, state| {
            if conflicts == 0 {
                conflicts += 1;
                return Err(Error::Conflict {
                    order_id: state.id,
                    expected,
                    actual: Some(9),
                });
            }
            r2.compare_and_set_now(expected, state)
        });
    let sink = Arc::new(MemorySink::new());
    let queue = queue_of(1);
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_store(Arc::new(store))
        .with_sink(sink.clone())
        .with_auto_advance(Dwell::None)
        .with_retry(fast_retry())
        .build()
        .unwrap();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.acked, 1);
    let stored = real.list(ListQuery::default()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].version, 5,
        "one placement and four transitions, committed once"
    );
    assert_eq!(stored[0].history.len(), 4);
    let versions: Vec<u64> = sink.records().iter().map(|r| r.version).collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5, 1, 2, 3, 4, 5],
        "records are published again after the conflict"
    );
}

#[tokio::test]
async fn shutdown_acknowledges_what_finished_and_nothing_else() {
    let queue = queue_of(5);
    let mut sink = MockSink::new();
    let mut calls = 0;
    // The first batch goes through; after it the sink is down for good.
    sink.expect_publish().returning(move |_| {
        calls += 1;
        if calls == 1 {
            Ok(())
        } else {
            Err(down())
        }
    });
    let runner = Arc::new(
        Runner::builder(order_fsm::Lifecycle::ecommerce())
            .with_sink(Arc::new(sink))
            .with_workers(1)
            .with_max_batch(1)
            .with_queue_capacity(2)
            .with_retry(fast_retry())
            .build()
            .unwrap(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let (runner, source) = (Arc::clone(&runner), queue.subscribe());
        async move {
            runner
                .run(source, async {
                    let _ = stop_rx.await;
                })
                .await
        }
    });
    while runner.metrics().orders_placed < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await; // the second batch is now retrying
    stop_tx.send(()).unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.stopped_by, StopReason::Shutdown);
    assert_eq!(report.acked, 1);
    assert_eq!(
        queue.committed(),
        1,
        "only the finished command is acknowledged"
    );
    assert_eq!(report.received, report.acked + report.unacked);
    let again: Vec<_> = {
        let mut source = queue.subscribe();
        let mut out = Vec::new();
        while let Some(e) = order_fsm::CommandSource::next(&mut source).await.unwrap() {
            out.push(e);
        }
        out
    };
    assert_eq!(
        again.len(),
        4,
        "the four unfinished commands are delivered again"
    );
}

#[tokio::test]
async fn bad_commands_are_dead_lettered_and_the_stream_goes_on() {
    let queue = MemoryQueue::new();
    let good = Command::place(Purchase::example());
    let good_id = good.order_id();
    let mut bad_purchase = Purchase::example();
    bad_purchase.price = order_fsm::Money::from_minor_units(-100);
    queue.extend([
        good.clone(),
        Command::apply(good_id, "teleport"),
        Command::apply(OrderId::random(), "cancel"),
        Command::apply(good_id, "complete"),
        Command::place(bad_purchase),
        Command::Place {
            order_id: good_id,
            event_id: EventId::random(),
            purchase: Purchase::example().into(),
            placed_at: None,
            actor: None,
        },
        Command::apply(good_id, "prepare"),
    ]);
    queue.close();
    let sink = Arc::new(MemorySink::new());
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_sink(sink.clone())
        .with_dead_letters(sink.clone())
        .build()
        .unwrap();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.acked, 7);
    let reasons: Vec<String> = sink
        .dead_letters()
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    // Orders are spread over workers, so only the order within one order is fixed.
    for fragment in [
        "unknown event `teleport`",
        "not found",
        "event `complete` is not allowed in state `processing`",
        "invalid field `price`",
        "already exists",
    ] {
        assert_eq!(
            reasons.iter().filter(|r| r.contains(fragment)).count(),
            1,
            "{fragment}: {reasons:?}"
        );
    }
    let last: Vec<_> = sink
        .records()
        .iter()
        .map(|r| (r.event.to_string(), r.to.to_string()))
        .collect();
    assert_eq!(
        last,
        [
            ("place".into(), "processing".into()),
            ("prepare".into(), "preparing".into())
        ]
    );
    assert_eq!(report.metrics.dead_lettered, 5);
}

#[tokio::test]
async fn redelivered_commands_are_duplicates_not_second_transitions() {
    let queue = MemoryQueue::new();
    let place = Command::place(Purchase::example());
    let cancel = Command::apply(place.order_id(), "cancel");
    queue.extend([
        place.clone(),
        place.clone(),
        cancel.clone(),
        cancel.clone(),
        place,
    ]);
    queue.close();
    let sink = Arc::new(MemorySink::new());
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_sink(sink.clone())
        .with_dead_letters(sink.clone())
        .build()
        .unwrap();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.metrics.duplicates, 3);
    assert_eq!(sink.records().len(), 2, "one placement, one cancellation");
    assert!(sink.dead_letters().is_empty());
}

/// A clock that follows tokio's (pausable) time, so dwell times are measured exactly.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(1_000_000 + self.0.elapsed().as_micros() as u64)
    }
}

#[tokio::test(start_paused = true)]
async fn dwell_times_run_on_timers_not_sleeping_workers() {
    let orders = 200;
    let queue = queue_of(orders);
    let sink = Arc::new(MemorySink::new());
    let start = tokio::time::Instant::now();
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_sink(sink.clone())
        .with_metrics_sink(sink.clone(), Duration::from_millis(500))
        .with_workers(1)
        .with_auto_advance(Dwell::Fixed(Duration::from_secs(1)))
        .with_clock(Arc::new(TokioClock(start)))
        .build()
        .unwrap();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    let m = &report.metrics;
    assert_eq!(m.finished_in("completed"), orders as u64);
    // One worker holding 200 orders for 4 s each would need 800 s if it slept; timers need ~4 s.
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(5), "virtual time {elapsed:?}");
    for t in &m.per_transition {
        assert_eq!(t.latency.count, orders as u64);
        assert!((1_000_000..1_010_000).contains(&t.latency.p50_us), "{t:?}");
    }
    assert!(
        (4_000_000..4_040_000).contains(&m.end_to_end.p50_us),
        "{:?}",
        m.end_to_end
    );
    let windows = sink.metrics();
    assert!(
        windows.len() >= 8,
        "a metrics window every 500 ms, got {}",
        windows.len()
    );
    let transitions: u64 = windows.iter().map(|w| w.metrics.transitions).sum();
    assert_eq!(
        transitions,
        4 * orders as u64,
        "windows add up to the whole run"
    );
}

#[tokio::test]
async fn a_restarted_runner_resumes_orders_waiting_for_an_advance() {
    let lifecycle = Arc::new(order_fsm::Lifecycle::ecommerce());
    let engine = order_fsm::Engine::new(Arc::clone(&lifecycle));
    let store = Arc::new(MemoryStore::new());
    // 50 orders left at `shipped` by a worker that crashed, and one already cancelled.
    for i in 0..50u128 {
        let mut order = engine.place(
            OrderId::from_u128(i + 1),
            Purchase::example().into(),
            Timestamp::from_micros(1),
        );
        for kind in [order_fsm::ecommerce::PREPARE, order_fsm::ecommerce::SHIP] {
            engine
                .apply_in_place(
                    &mut order,
                    &order_fsm::Event::new(kind, Timestamp::from_micros(2)),
                )
                .unwrap();
        }
        store.compare_and_set_now(0, order).unwrap();
    }
    let mut cancelled = engine.place(
        OrderId::from_u128(999),
        Purchase::example().into(),
        Timestamp::from_micros(1),
    );
    engine
        .apply_in_place(
            &mut cancelled,
            &order_fsm::Event::new(order_fsm::ecommerce::CANCEL, Timestamp::from_micros(2)),
        )
        .unwrap();
    store.compare_and_set_now(0, cancelled).unwrap();

    let queue = MemoryQueue::new();
    queue.close();
    let build = |resume| {
        Runner::builder(Arc::clone(&lifecycle))
            .with_store(store.clone())
            .with_auto_advance(Dwell::None)
            .with_resume_pending(resume)
            .build()
            .unwrap()
    };
    let idle = build(false)
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(idle.metrics.transitions, 0, "without resume nothing moves");
    let resumed = build(true)
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        resumed.metrics.transitions, 100,
        "deliver and complete for each waiting order"
    );
    assert_eq!(resumed.metrics.finished_in("completed"), 50);
    let completed = lifecycle.state("completed").unwrap();
    for i in 0..50u128 {
        let order = store.get_now(OrderId::from_u128(i + 1)).unwrap();
        assert_eq!((order.status, order.version), (completed, 5));
    }
    assert_eq!(
        store.get_now(OrderId::from_u128(999)).unwrap().version,
        2,
        "terminal orders stay"
    );
}

#[tokio::test]
async fn records_rebuild_the_same_states_in_a_read_model() {
    let queue = queue_of(20);
    let cancel_first = Command::apply(order_fsm::OrderId::from_u128(0), "cancel"); // dead letter
    queue.extend([cancel_first]);
    let sink = Arc::new(MemorySink::new());
    let store = Arc::new(MemoryStore::new());
    let lifecycle = order_fsm::Lifecycle::ecommerce();
    Runner::builder(lifecycle.clone())
        .with_store(store.clone())
        .with_sink(sink.clone())
        .with_auto_advance(Dwell::None)
        .build()
        .unwrap()
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    let read_model = MemoryStore::new();
    let records = sink.records();
    for record in &records {
        assert!(
            read_model.project(&lifecycle, record),
            "every record applies once, in order"
        );
    }
    for record in &records {
        assert!(
            !read_model.project(&lifecycle, record),
            "a repeated record changes nothing"
        );
    }
    let all = |s: &MemoryStore| {
        let mut v: Vec<_> = records
            .iter()
            .filter_map(|r| s.get_now(r.order_id))
            .collect();
        v.dedup_by_key(|o| o.id);
        v
    };
    let (original, rebuilt) = (all(&store), all(&read_model));
    assert_eq!(original.len(), 20);
    for (a, b) in original.iter().zip(&rebuilt) {
        assert_eq!(
            (a.status, a.version, a.created_at),
            (b.status, b.version, b.created_at)
        );
        assert_eq!(a.history, b.history);
    }
}

#[tokio::test]
async fn the_actor_of_each_command_is_on_its_records_and_in_the_history() {
    let queue = MemoryQueue::new();
    let placed = Command::place(Purchase::example()).with_actor(Some("backend".into()));
    let id = placed.order_id();
    queue.extend([
        placed,
        Command::apply(id, "prepare").with_actor(Some("ops".into())),
        Command::apply(id, "ship"),
    ]);
    queue.close();
    let sink = Arc::new(MemorySink::new());
    let store = Arc::new(order_fsm::MemoryStore::new());
    let runner = Runner::builder(order_fsm::Lifecycle::ecommerce())
        .with_store(store.clone())
        .with_sink(sink.clone())
        .build()
        .unwrap();
    runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .unwrap();
    let actors: Vec<(String, Option<String>)> = sink
        .records()
        .iter()
        .map(|r| (r.event.to_string(), r.actor.clone()))
        .collect();
    assert_eq!(
        actors,
        [
            ("place".to_owned(), Some("backend".to_owned())),
            ("prepare".to_owned(), Some("ops".to_owned())),
            ("ship".to_owned(), None),
        ]
    );
    let order = order_fsm::OrderStore::get(&*store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.placed_by_actor.as_deref(), Some("backend"));
    assert_eq!(order.history[0].actor.as_deref(), Some("ops"));
    assert_eq!(order.history[1].actor, None);
    // The records rebuild the same state, actors included.
    let lifecycle = order_fsm::Lifecycle::ecommerce();
    let records = order_fsm::TransitionRecord::all_of(&lifecycle, &order);
    let mut rebuilt = order_fsm::OrderState::from_placement(&lifecycle, &records[0]).unwrap();
    for r in &records[1..] {
        assert!(rebuilt.apply_record(&lifecycle, r));
    }
    assert_eq!(rebuilt.placed_by_actor, order.placed_by_actor);
    assert_eq!(rebuilt.history, order.history);
}
