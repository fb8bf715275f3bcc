//! The whole order pipeline in one process, on embedded defaults.
//!
//! Generates a seeded data set, places every order, runs the state-machine workers until
//! every order is finished, mails each state change into an outbox folder, and prints and
//! writes a summary with charts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use order_fsm::{
    Command, Dwell, EventId, Lifecycle, MemoryQueue, MemorySink, MemoryStore, OrderId, Purchase,
    Runner,
};
use order_fsm_examples::notify::{EmailNotifier, Language};
use order_fsm_examples::{dataset, report};

#[derive(Parser, Debug)]
#[command(about = "Run the order pipeline on embedded defaults and print what happened")]
struct Args {
    /// Orders to place.
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// State-machine workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Time each order is held in each state, in milliseconds.
    #[arg(long, default_value_t = 0)]
    dwell_ms: u64,
    /// Seed of the generated data set.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Language of the notification mails.
    #[arg(long, value_enum, default_value_t = Language::En)]
    language: Language,
    /// Sender address of the notification mails.
    #[arg(
        long,
        env = "ORDER_FSM_MAIL_FROM",
        default_value = "orders@shop.example"
    )]
    mail_from: String,
    /// Where the summary, charts and outbox go.
    #[arg(long, default_value = "target/pipeline")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let lifecycle = Arc::new(Lifecycle::ecommerce());
    let outbox = args.out.join("outbox");
    if outbox.exists() {
        std::fs::remove_dir_all(&outbox)?;
    }
    let mail = Arc::new(EmailNotifier::outbox(
        &outbox,
        &args.mail_from,
        args.language,
        lifecycle.clone(),
    )?);
    let metrics = Arc::new(MemorySink::new());
    let dead_letters = Arc::new(MemorySink::new());
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(lifecycle.clone())
        .store(store.clone())
        .sink(mail)
        .dead_letters(dead_letters.clone())
        .metrics_sink(metrics.clone(), Duration::from_millis(100))
        .workers(args.workers)
        .auto_advance(Dwell::Fixed(Duration::from_millis(args.dwell_ms)))
        .build()?;

    let rows = dataset::generate(args.orders, args.seed);
    let queue = MemoryQueue::new();
    let started = Instant::now();
    queue.extend(rows.into_iter().enumerate().map(|(i, row)| Command::Place {
        order_id: OrderId::from_u128(i as u128 + 1),
        event_id: EventId::random(),
        purchase: Purchase::from(row),
        placed_at: None,
    }));
    queue.close();
    let run = runner.run(queue.subscribe(), async {
        let _ = tokio::signal::ctrl_c().await;
    });
    let run_report = run.await?;
    let elapsed = started.elapsed().as_secs_f64();

    let summary = report::Summary::new(args.orders as u64, elapsed, run_report.metrics);
    summary.print();
    println!(
        "dead letters       {:>10}",
        dead_letters.dead_letters().len()
    );
    println!(
        "mails in outbox    {:>10}",
        std::fs::read_dir(&outbox)?.count()
    );
    report::write_all(&args.out, &summary, &metrics.metrics())?;
    println!("summary and charts in {}", args.out.display());
    if summary.lost > 0 || store.len() != args.orders {
        return Err(format!("{} orders lost", summary.lost).into());
    }
    Ok(())
}
