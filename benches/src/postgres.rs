//! Batch compare-and-set on PostgreSQL beside its raw anchor, in the same run.
//!
//! - **anchor**: a raw batched `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO UPDATE` of
//!   the very rows the store writes, over a pool of the same size, no version check;
//! - **store**: `PostgresStore::compare_and_set_many` of the same batches (creates, then
//!   each order's four transitions, each checked against the stored version by the database);
//! - **runner**: placements through a `Runner` on `PostgresStore` (read the batch, publish,
//!   compare-and-set the batch) beside the same runner on the in-memory store.
//!
//! Anchor and store alternate for several rounds on fresh orders; each side reports rows
//! (order versions) written per second and the p50/p99 of one batch.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use order_fsm::{
    Command, Dwell, Engine, Event, Lifecycle, MemoryQueue, MemoryStore, OrderId, OrderState,
    OrderStore, Purchase, Runner, StateRecord, Timestamp,
};
use order_fsm_postgres::{PostgresBuilder, PostgresConfig, PostgresStore};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::data::count;
use crate::report::{Better, Comparison, Rounds, Spec, Target};
use crate::{BoxError, Size};

struct Args {
    orders: usize,
    batch: usize,
    tasks: usize,
    rounds: usize,
}

impl Args {
    fn of(size: Size) -> Self {
        let (orders, rounds) = size.pick((200, 2), (5_000, 5), (20_000, 5));
        Self {
            orders,
            batch: 256,
            tasks: 4,
            rounds,
        }
    }
}

/// Every version (1..=5) of `orders` fresh orders: `versions[v - 1][i]` is order i at v.
fn lifecycles(engine: &Engine, orders: usize) -> Vec<Vec<OrderState>> {
    let at = Timestamp::from_micros(1_700_000_000_000_000);
    let mut versions: Vec<Vec<OrderState>> = (0..5).map(|_| Vec::with_capacity(orders)).collect();
    for _ in 0..orders {
        let mut state = engine.place(OrderId::random(), Purchase::example().into(), at);
        versions[0].push(state.clone());
        for v in versions.iter_mut().skip(1) {
            let kind = engine
                .lifecycle()
                .advance_event(state.status)
                .expect("advances");
            engine
                .apply_in_place(&mut state, &Event::new(kind, at))
                .expect("legal");
            v.push(state.clone());
        }
    }
    versions
}

struct Phase {
    rows: usize,
    elapsed: Duration,
    batches: Histogram<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    fn p50_ms(&self) -> f64 {
        self.batches.value_at_quantile(0.5) as f64 / 1000.0
    }

    fn p99_ms(&self) -> f64 {
        self.batches.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// Writes `versions` step by step (all v1, then all v2, ...) in batches, `tasks` writers at
/// once, each batch through `write`.
///
/// A writer that panics (a failed statement) fails the phase.
async fn drive<W, F>(versions: &[Vec<OrderState>], args: &Args, write: W) -> Result<Phase, BoxError>
where
    W: Fn(Vec<(u64, OrderState)>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut batches = Histogram::<u64>::new(3).expect("histogram");
    let mut rows = 0;
    for step in versions {
        let chunks: Vec<Vec<(u64, OrderState)>> = step
            .chunks(args.batch)
            .map(|c| c.iter().map(|s| (s.version - 1, s.clone())).collect())
            .collect();
        rows += step.len();
        let per_task = chunks.len().div_ceil(args.tasks);
        let mut chunks = chunks.into_iter();
        let mut handles = Vec::new();
        for _ in 0..args.tasks {
            let mine: Vec<_> = chunks.by_ref().take(per_task).collect();
            let write = write.clone();
            handles.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(mine.len());
                for chunk in mine {
                    let t = Instant::now();
                    write(chunk).await;
                    times.push(t.elapsed().as_micros() as u64);
                }
                times
            }));
        }
        for h in handles {
            for t in h.await? {
                batches.record(t.max(1)).expect("record");
            }
        }
    }
    Ok(Phase {
        rows,
        elapsed: started.elapsed(),
        batches,
    })
}

const RAW_UPSERT: &str = "INSERT INTO order_fsm_orders (order_id, version, status, placed_by,
    created_at, updated_at, purchase, history, rejected)
SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::timestamptz[],
    $6::timestamptz[], $7::jsonb[], $8::jsonb[], $9::jsonb[])
ON CONFLICT (order_id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
    placed_by = EXCLUDED.placed_by, created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, purchase = EXCLUDED.purchase,
    history = EXCLUDED.history, rejected = EXCLUDED.rejected";

fn time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(t.as_micros())
}

/// The anchor's write: the same columns the store writes, one upsert, no version check.
async fn raw_upsert(
    pool: &deadpool_postgres::Pool,
    lifecycle: &Lifecycle,
    rows: &[(u64, OrderState)],
) {
    let mut id = Vec::new();
    let (mut version, mut status, mut placed_by) = (Vec::new(), Vec::new(), Vec::new());
    let (mut created, mut updated) = (Vec::new(), Vec::new());
    let (mut purchase, mut history, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    for (_, s) in rows {
        let record = StateRecord::of_state(lifecycle, s, 0);
        id.push(Uuid::from_u128(s.id.as_u128()));
        version.push(s.version as i64);
        status.push(lifecycle.state_name(s.status));
        placed_by.push(Uuid::from_u128(s.placed_by.as_u128()));
        created.push(time(s.created_at));
        updated.push(time(s.updated_at));
        purchase.push(tokio_postgres::types::Json(record.purchase));
        history.push(tokio_postgres::types::Json(record.history));
        rejected.push(tokio_postgres::types::Json(record.rejected));
    }
    let params: [&(dyn ToSql + Sync); 9] = [
        &id, &version, &status, &placed_by, &created, &updated, &purchase, &history, &rejected,
    ];
    let client = pool.get().await.expect("pooled connection");
    let statement = client.prepare_cached(RAW_UPSERT).await.expect("prepare");
    client.execute(&statement, &params).await.expect("upsert");
}

async fn runner_rate(
    store: Arc<dyn OrderStore>,
    orders: usize,
    batch: usize,
) -> Result<f64, BoxError> {
    let queue = MemoryQueue::new();
    queue.extend((0..orders).map(|_| Command::place(Purchase::example())));
    queue.close();
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_store(store)
        .with_workers(4)
        .with_max_batch(batch)
        .with_auto_advance(Dwell::None)
        .build()?;
    let started = Instant::now();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await?;
    let completed = report.metrics.finished_in("completed");
    if completed != orders as u64 {
        return Err(format!("runner: {completed} of {orders} orders completed").into());
    }
    Ok(report.metrics.transitions as f64 / started.elapsed().as_secs_f64())
}

/// The store and the anchor's pool, same server, same size.
async fn connect(
    args: &Args,
    lifecycle: &Arc<Lifecycle>,
) -> Result<(PostgresStore, deadpool_postgres::Pool), BoxError> {
    let config = PostgresConfig::from_env()?;
    let store = PostgresBuilder::with_config(config)
        .with_pool_size(args.tasks)
        .build(Arc::clone(lifecycle))
        .await?;
    let url = std::env::var(order_fsm_postgres::URL_ENV)?;
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        url.parse::<tokio_postgres::Config>()?,
        tokio_postgres::NoTls,
    ))
    .max_size(args.tasks)
    .build()?;
    Ok((store, pool))
}

/// The server without its password, for the report.
fn target(store: &PostgresStore) -> String {
    format!("PostgreSQL at {}", store.target())
}

/// `PostgresStore::compare_and_set_many` vs the raw batched upsert.
pub(crate) async fn compare_batches(size: Size) -> Result<Vec<Comparison>, BoxError> {
    let args = Args::of(size);
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let (store, pool) = connect(&args, &lifecycle).await?;
    let engine = Engine::new(Arc::clone(&lifecycle));
    let args = &args;
    let anchor = |versions: Vec<Vec<OrderState>>| {
        let (pool, lifecycle) = (pool.clone(), Arc::clone(&lifecycle));
        async move {
            drive(&versions, args, move |rows| {
                let (pool, lifecycle) = (pool.clone(), Arc::clone(&lifecycle));
                async move { raw_upsert(&pool, &lifecycle, &rows).await }
            })
            .await
        }
    };
    let subject = |versions: Vec<Vec<OrderState>>| {
        let store = store.clone();
        async move {
            drive(&versions, args, move |rows| {
                let store = store.clone();
                async move {
                    store
                        .compare_and_set_many(rows)
                        .await
                        .expect("no conflicts")
                }
            })
            .await
        }
    };
    let mut r = Rounds::default();
    for round in 0..args.rounds {
        let (a_versions, s_versions) = (
            lifecycles(&engine, args.orders),
            lifecycles(&engine, args.orders),
        );
        let (a, s) = if Rounds::anchor_first(round) {
            let a = anchor(a_versions).await?;
            (a, subject(s_versions).await?)
        } else {
            let s = subject(s_versions).await?;
            (anchor(a_versions).await?, s)
        };
        for (side, phase) in [("anchor", &a), ("store", &s)] {
            r.extra(&format!("{side} batch p50"), "ms", phase.p50_ms());
            r.extra(&format!("{side} batch p99"), "ms", phase.p99_ms());
        }
        r.push(a.rate(), s.rate());
    }
    Ok(vec![r.finish(Spec {
        id: "postgres.batch".into(),
        title: "`PostgresStore::compare_and_set_many` vs a raw batched `UPSERT` of the same rows"
            .into(),
        backend: target(&store),
        setup: format!(
            "{} orders × 5 versions, batches of {}, {} writers, pools of {}",
            count(args.orders),
            args.batch,
            args.tasks,
            args.tasks
        ),
        unit: "rows/s",
        better: Better::Higher,
        anchor: "raw `INSERT … ON CONFLICT DO UPDATE`, no version check".into(),
        subject: "`compare_and_set_many`".into(),
        target: Some(Target::AtLeast(0.7)),
        notes: Vec::new(),
    })])
}

/// The runner on `PostgresStore` vs the same runner on the in-memory store.
pub(crate) async fn compare_runner(size: Size) -> Result<Vec<Comparison>, BoxError> {
    let args = Args {
        orders: size.pick(200, 20_000, 20_000),
        ..Args::of(size)
    };
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let (store, _) = connect(&args, &lifecycle).await?;
    let rounds = args.rounds.min(3);
    let mut r = Rounds::default();
    for round in 0..rounds {
        let memory = || runner_rate(Arc::new(MemoryStore::new()), args.orders, args.batch);
        let postgres = || runner_rate(Arc::new(store.clone()), args.orders, args.batch);
        let (a, s) = if Rounds::anchor_first(round) {
            let a = memory().await?;
            (a, postgres().await?)
        } else {
            let s = postgres().await?;
            (memory().await?, s)
        };
        r.push(a, s);
    }
    Ok(vec![r.finish(Spec {
        id: "postgres.runner".into(),
        title: "runner with its orders in PostgreSQL vs in memory".into(),
        backend: target(&store),
        setup: format!(
            "{} orders, no dwell, 4 workers, in-memory source",
            count(args.orders)
        ),
        unit: "transitions/s",
        better: Better::Higher,
        anchor: "`MemoryStore`".into(),
        subject: "`PostgresStore` (one read, one compare-and-set per batch)".into(),
        target: None,
        notes: Vec::new(),
    })])
}
