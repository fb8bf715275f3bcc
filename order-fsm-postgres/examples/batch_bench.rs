//! Batch compare-and-set on PostgreSQL beside its raw anchor, in the same run.
//!
//! - **anchor**: a raw batched `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO UPDATE` of
//!   the very rows the store writes, over a pool of the same size, no version check;
//! - **store**: `PostgresStore::compare_and_set_many` of the same batches (creates, then
//!   each order's four transitions, each checked against the stored version by the database);
//! - **runner**: placements through a `Runner` on `PostgresStore` (read the batch, publish,
//!   compare-and-set the batch) beside the same runner on the in-memory store.
//!
//! Anchor and store alternate for `--rounds` rounds on fresh orders; each phase prints rows
//! (order versions) written per second and the p50/p99 of one batch.
//!
//! ```sh
//! eval "$(scripts/postgres.sh start)"
//! cargo run --release -p order-fsm-postgres --example batch_bench -- --orders 20000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use order_fsm::{
    Command, Dwell, Engine, Event, Lifecycle, MemoryQueue, MemoryStore, OrderId, OrderState,
    OrderStore, Purchase, Runner, StateRecord, Timestamp,
};
use order_fsm_postgres::{PostgresBuilder, PostgresConfig};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

struct Args {
    orders: usize,
    batch: usize,
    tasks: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut parsed = Args {
        orders: 20_000,
        batch: 256,
        tasks: 4,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--orders" => parsed.orders = value,
            "--batch" => parsed.batch = value,
            "--tasks" => parsed.tasks = value,
            "--rounds" => parsed.rounds = value,
            other => panic!("unknown flag {other} (--orders, --batch, --tasks, --rounds)"),
        }
    }
    parsed
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
    fn line(&self, name: &str) -> String {
        format!(
            "{name:>7}: {:>9.0} rows/s  batch p50 {:>6.2} ms  p99 {:>6.2} ms",
            self.rate(),
            self.batches.value_at_quantile(0.5) as f64 / 1000.0,
            self.batches.value_at_quantile(0.99) as f64 / 1000.0
        )
    }
}

/// Writes `versions` step by step (all v1, then all v2, ...) in batches, `tasks` writers at
/// once, each batch through `write`.
async fn drive<W, F>(versions: &[Vec<OrderState>], args: &Args, write: W) -> Phase
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
            for t in h.await.expect("writer") {
                batches.record(t.max(1)).expect("record");
            }
        }
    }
    Phase {
        rows,
        elapsed: started.elapsed(),
        batches,
    }
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

async fn runner_rate(store: Arc<dyn OrderStore>, orders: usize, batch: usize) -> f64 {
    let queue = MemoryQueue::new();
    queue.extend((0..orders).map(|_| Command::place(Purchase::example())));
    queue.close();
    let runner = Runner::builder(Lifecycle::ecommerce())
        .with_store(store)
        .with_workers(4)
        .with_max_batch(batch)
        .with_auto_advance(Dwell::None)
        .build()
        .expect("runner");
    let started = Instant::now();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await
        .expect("run");
    assert_eq!(report.metrics.finished_in("completed"), orders as u64);
    report.metrics.transitions as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let config = PostgresConfig::from_env()?;
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let store = PostgresBuilder::with_config(config.clone())
        .with_pool_size(args.tasks)
        .build(Arc::clone(&lifecycle))
        .await?;
    // The anchor's pool: same server, same size.
    let url = std::env::var(order_fsm_postgres::URL_ENV)?;
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        url.parse::<tokio_postgres::Config>()?,
        tokio_postgres::NoTls,
    ))
    .max_size(args.tasks)
    .build()?;
    let engine = Engine::new(Arc::clone(&lifecycle));
    println!(
        "PostgreSQL at {}: {} orders x 5 versions, batches of {}, {} writers, {} rounds",
        store.target(),
        args.orders,
        args.batch,
        args.tasks,
        args.rounds
    );
    let mut ratios = Vec::new();
    for round in 1..=args.rounds {
        let anchor = {
            let versions = lifecycles(&engine, args.orders);
            let (pool, lifecycle) = (pool.clone(), Arc::clone(&lifecycle));
            drive(&versions, &args, move |rows| {
                let (pool, lifecycle) = (pool.clone(), Arc::clone(&lifecycle));
                async move { raw_upsert(&pool, &lifecycle, &rows).await }
            })
            .await
        };
        let subject = {
            let versions = lifecycles(&engine, args.orders);
            let store = store.clone();
            drive(&versions, &args, move |rows| {
                let store = store.clone();
                async move {
                    store
                        .compare_and_set_many(rows)
                        .await
                        .expect("no conflicts")
                }
            })
            .await
        };
        let ratio = subject.rate() / anchor.rate();
        ratios.push(ratio);
        println!(
            "round {round}\n{}\n{}\n  ratio: {ratio:.2}x",
            anchor.line("anchor"),
            subject.line("store")
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "store / anchor: median {:.2}x, range {:.2}-{:.2}x",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let orders = args.orders;
    let in_memory = runner_rate(Arc::new(MemoryStore::new()), orders, args.batch).await;
    let on_postgres = runner_rate(Arc::new(store), orders, args.batch).await;
    println!(
        "runner, {orders} orders, no dwell, 4 workers: in-memory store {in_memory:.0} transitions/s, \
         PostgresStore {on_postgres:.0} transitions/s ({:.3}x)",
        on_postgres / in_memory
    );
    Ok(())
}
