//! `PostgresStore` against a real PostgreSQL server (`ORDER_FSM_POSTGRES_URL`, started by
//! `scripts/postgres.sh`): the core's store conformance suite, concurrent compare-and-set,
//! batches, the state-log role, migrations and connection errors.

use std::sync::Arc;

use order_fsm::testing::{service_address, store_conformance};
use order_fsm::{
    Engine, Error, Event, Lifecycle, OrderId, OrderState, OrderStore, Purchase, StateChange,
    StateLog, Timestamp,
};
use order_fsm_postgres::{PostgresBuilder, PostgresError, PostgresStore};

async fn store() -> Option<PostgresStore> {
    let url = service_address(order_fsm_postgres::URL_ENV)?;
    let store = PostgresBuilder::new(url)
        .with_pool_size(16)
        .build(Arc::new(Lifecycle::ecommerce()))
        .await
        .expect("connect and migrate");
    Some(store)
}

fn engine() -> Engine {
    Engine::new(Lifecycle::ecommerce())
}

fn placed(engine: &Engine) -> OrderState {
    engine.place(
        OrderId::random(),
        Purchase::example().into(),
        Timestamp::from_micros(1_700_000_000_000_000),
    )
}

/// `order` advanced along its happy path by one transition, with `reason` in the history
/// (so two writers' versions differ in content).
fn advanced(engine: &Engine, order: &OrderState, reason: &str) -> OrderState {
    let mut next = order.clone();
    let kind = engine
        .lifecycle()
        .advance_event(next.status)
        .expect("advances");
    let event = Event::new(
        kind,
        next.updated_at.plus(std::time::Duration::from_millis(3)),
    )
    .with_reason(reason);
    engine.apply_in_place(&mut next, &event).expect("legal");
    next
}

#[tokio::test]
async fn who_placed_and_who_changed_an_order_are_kept() {
    let Some(store) = store().await else { return };
    let engine = engine();
    let mut order = placed(&engine);
    order.placed_by_actor = Some("backend".into());
    store.compare_and_set(0, order.clone()).await.unwrap();
    let mut next = order.clone();
    let kind = engine.lifecycle().advance_event(next.status).unwrap();
    let event = Event::new(
        kind,
        next.updated_at.plus(std::time::Duration::from_millis(1)),
    )
    .with_actor(Some("ops".into()));
    engine.apply_in_place(&mut next, &event).unwrap();
    store.compare_and_set(1, next.clone()).await.unwrap();
    let back = store.get(order.id).await.unwrap().unwrap();
    assert_eq!(back.placed_by_actor.as_deref(), Some("backend"));
    assert_eq!(back.history[0].actor.as_deref(), Some("ops"));
    assert_eq!(back, next);
}

#[tokio::test]
async fn passes_the_store_conformance_suite() {
    let Some(store) = store().await else { return };
    store_conformance(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_compare_and_set_has_exactly_one_winner_per_version() {
    let Some(store) = store().await else { return };
    let engine = engine();
    let orders: Vec<OrderState> = (0..20).map(|_| placed(&engine)).collect();
    store
        .compare_and_set_many(orders.iter().map(|o| (0, o.clone())).collect())
        .await
        .expect("create");
    for order in &orders {
        // 16 writers race for version 2 of the same order, each with its own content.
        let tasks: Vec<_> = (0..16)
            .map(|writer| {
                let (store, next) = (
                    store.clone(),
                    advanced(&engine, order, &format!("w{writer}")),
                );
                tokio::spawn(async move { store.compare_and_set(1, next).await })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(()) => winners += 1,
                Err(Error::Conflict { expected: 1, .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners, 1, "exactly one writer wins version 2");
        let stored = store.get(order.id).await.expect("get").expect("exists");
        assert_eq!(stored.version, 2);
        assert_eq!(stored.history.len(), 1, "one transition written");
    }
}

#[tokio::test]
async fn a_batch_writes_what_matches_and_names_a_conflict() {
    let Some(store) = store().await else { return };
    let engine = engine();
    let orders: Vec<OrderState> = (0..100).map(|_| placed(&engine)).collect();
    store
        .compare_and_set_many(orders.iter().map(|o| (0, o.clone())).collect())
        .await
        .expect("100 creates in one statement");
    // 90 right versions, 10 stale ones (expect 5 where 1 is stored).
    let writes: Vec<(u64, OrderState)> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                if i % 10 == 3 { 5 } else { 1 },
                advanced(&engine, o, "batch"),
            )
        })
        .collect();
    let err = store
        .compare_and_set_many(writes)
        .await
        .expect_err("10 stale writes");
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 5,
                actual: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    for (i, o) in orders.iter().enumerate() {
        let version = store.get(o.id).await.expect("get").expect("exists").version;
        assert_eq!(version, if i % 10 == 3 { 1 } else { 2 }, "order {i}");
    }
    let again = store
        .compare_and_set_many(orders.iter().map(|o| (0, o.clone())).collect())
        .await;
    assert!(
        matches!(again, Err(Error::Conflict { expected: 0, .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn the_state_log_restores_a_partitions_live_orders_only() {
    let Some(store) = store().await else { return };
    let engine = engine();
    // A source of this run's own, so a shared database holds no other orders of it.
    let store = store.with_source(format!("test-{}", OrderId::random()));
    let p = 3;
    let (a, b, other) = (placed(&engine), placed(&engine), placed(&engine));
    let a2 = advanced(&engine, &a, "moved");
    let change = |partition, state: &OrderState, published_up_to| {
        StateChange::new(partition, state.clone(), published_up_to)
    };
    store
        .append(&[change(p, &a, 0), change(p, &b, 0), change(p + 1, &other, 0)])
        .await
        .expect("append");
    store.append(&[change(p, &a2, 1)]).await.expect("append");
    // A stale writer (an old owner) cannot move an order back.
    store.append(&[change(p, &a, 0)]).await.expect("append");

    let other_source = store
        .clone()
        .with_source(format!("other-{}", OrderId::random()));
    other_source
        .append(&[change(p, &placed(&engine), 0)])
        .await
        .expect("append");
    let mut restored = store.restore(p).await.expect("restore");
    restored.sort_by_key(|c| c.state.version);
    assert_eq!(
        restored.len(),
        2,
        "only this source's partition {p}'s orders"
    );
    assert_eq!(restored[0].state, b);
    assert_eq!(
        restored[1].state, a2,
        "the latest version, not the stale one"
    );
    assert_eq!(restored[1].published_up_to, 1);
    assert_eq!(restored[1].unpublished(engine.lifecycle()).len(), 1);

    store.forget(p, &[b.id]).await.expect("forget");
    let restored = store.restore(p).await.expect("restore");
    assert_eq!(restored.len(), 1, "a forgotten order is not restored");
    assert_eq!(
        store.get(b.id).await.expect("get"),
        Some(b),
        "but stays readable"
    );

    store.release(p).await.expect("release");
    let restored = store.restore(p).await.expect("restore");
    assert!(
        restored[0].unpublished(engine.lifecycle()).is_empty(),
        "after a clean hand-over nothing is republished"
    );
}

#[tokio::test]
async fn migrations_apply_once_however_often_the_store_starts() {
    let Some(url) = service_address(order_fsm_postgres::URL_ENV) else {
        return;
    };
    let starts =
        (0..4).map(|_| PostgresBuilder::new(url.clone()).build(Arc::new(Lifecycle::ecommerce())));
    for started in futures_join(starts).await {
        started.expect("concurrent starts all succeed");
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT version, name FROM order_fsm_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("migrations table");
    let recorded: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let shipped: Vec<(i32, String)> = PostgresStore::migrations()
        .map(|(v, n)| (v, n.to_owned()))
        .collect();
    assert_eq!(
        recorded, shipped,
        "each shipped migration recorded exactly once"
    );
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_bad_connection_string_names_what_is_wrong_without_the_password() {
    // Nothing listens on port 1; the error names the target, never the password.
    let unreachable = PostgresBuilder::new("postgres://shop:hunter2@127.0.0.1:1/orders")
        .with_connect_timeout(std::time::Duration::from_secs(2))
        .build(Arc::new(Lifecycle::ecommerce()))
        .await
        .expect_err("nothing listens on port 1");
    let text = format!("{unreachable} / {unreachable:?}");
    assert!(
        matches!(unreachable, PostgresError::Unreachable { .. }),
        "{text}"
    );
    assert!(unreachable.is_retryable());
    assert!(text.contains("shop@127.0.0.1:1/orders"), "{text}");
    assert!(
        text.contains("refused"),
        "says the connection was refused: {text}"
    );
    assert!(!text.contains("hunter2"), "password leaked: {text}");

    let malformed = PostgresBuilder::new("postgres://shop:hunter2@127.0.0.1:port/orders")
        .build(Arc::new(Lifecycle::ecommerce()))
        .await
        .expect_err("port is not a number");
    let text = format!("{malformed} / {malformed:?}");
    assert!(matches!(malformed, PostgresError::Config { .. }), "{text}");
    assert!(!malformed.is_retryable());
    assert!(!text.contains("hunter2"), "password leaked: {text}");

    // A database that does not exist on the real server: refused at login, not transient.
    let Some(url) = service_address(order_fsm_postgres::URL_ENV) else {
        return;
    };
    let wrong_db = format!("{}_does_not_exist", url);
    let missing = PostgresBuilder::new(wrong_db)
        .build(Arc::new(Lifecycle::ecommerce()))
        .await
        .expect_err("no such database");
    let text = missing.to_string();
    assert!(text.contains("does not exist"), "names the cause: {text}");
    let core: Error = missing.into();
    assert!(!core.is_retryable(), "a missing database is not transient");
}
