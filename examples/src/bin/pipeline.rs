//! The order pipeline on embedded defaults: in-memory queue, store and sink.
//!
//! Places `--orders` orders, lets the runner advance each through the ecommerce lifecycle
//! (optionally holding each state for `--dwell-ms`), and prints what happened.

use std::sync::Arc;
use std::time::Duration;

use order_fsm::{
    Command, Dwell, Lifecycle, MemoryQueue, MemorySink, MemoryStore, Purchase, Runner,
};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let orders: usize = arg("--orders", 1_000);
    let workers: usize = arg("--workers", 2);
    let dwell_ms: u64 = arg("--dwell-ms", 0);

    let lifecycle = Lifecycle::ecommerce();
    println!("lifecycle:\n{}", lifecycle.to_mermaid());
    let sink = Arc::new(MemorySink::new());
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::builder(lifecycle)
        .store(store.clone())
        .sink(sink.clone())
        .dead_letters(sink.clone())
        .workers(workers)
        .auto_advance(Dwell::Fixed(Duration::from_millis(dwell_ms)))
        .build()?;

    let queue = MemoryQueue::new();
    queue.extend((0..orders).map(|_| Command::place(Purchase::example())));
    queue.close();
    let report = runner
        .run(queue.subscribe(), std::future::pending())
        .await?;

    let m = &report.metrics;
    let finished = m.orders_finished_total();
    println!("orders placed:     {}", m.orders_placed);
    println!("orders completed:  {}", m.finished_in("completed"));
    println!("orders cancelled:  {}", m.finished_in("cancelled"));
    println!("orders failed:     {}", m.finished_in("failed"));
    println!("orders lost:       {}", orders as u64 - finished);
    println!(
        "transitions:       {} ({:.0}/s)",
        m.transitions, m.transitions_per_sec
    );
    println!("records published: {}", sink.published());
    println!("acknowledged:      {} of {}", report.acked, report.received);
    println!("elapsed:           {:.3} s", m.elapsed_secs);
    for t in &m.per_transition {
        println!(
            "  {:>10} -> {:<10} p50 {:>8} us  p99 {:>8} us  (n={})",
            t.from, t.to, t.latency.p50_us, t.latency.p99_us, t.latency.count
        );
    }
    println!(
        "  end-to-end             p50 {:>8} us  p99 {:>8} us",
        m.end_to_end.p50_us, m.end_to_end.p99_us
    );
    if finished != orders as u64 || store.len() != orders {
        return Err(format!("lost orders: {finished} of {orders} finished").into());
    }
    Ok(())
}
