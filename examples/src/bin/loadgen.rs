//! Load generator: places orders from a CSV (or a generated data set) on an intake, over gRPC
//! or HTTP, as a steady stream or a burst, and prints throughput and latency percentiles.

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::Parser;
use order_fsm::Purchase;
use order_fsm_examples::cli::SendingArgs;
use order_fsm_examples::load::{self, Intake, Pace, Sending, Target};
use order_fsm_examples::{dataset, report};

#[derive(Parser, Debug)]
#[command(about = "Place orders on an intake and measure it")]
struct Args {
    /// Intake URL (`http://host:port`: the gRPC or the HTTP address).
    #[arg(
        long,
        env = "ORDER_FSM_INTAKE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    target: String,
    /// Protocol of the intake.
    #[arg(long, value_enum, default_value_t = Intake::Grpc)]
    intake: Intake,
    /// API key for an intake started with `--api-keys` (a `shop` or `operator` key); from
    /// the environment only, so that it does not show in `ps`.
    #[arg(skip = std::env::var("ORDER_FSM_API_KEY").ok())]
    api_key: Option<String>,
    /// Purchases CSV in the original layout; generated when absent.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Orders to generate when no CSV is given.
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// Seed of the generated data set.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Load level instead of a rate: low (100/s), medium (1,000/s), high (5,000/s).
    #[arg(long, value_parser = ["low", "medium", "high"])]
    level: Option<String>,
    #[command(flatten)]
    sending: SendingArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let purchases: Vec<Purchase> = match &args.csv {
        Some(path) => dataset::read_csv(std::fs::File::open(path)?)?,
        None => dataset::generate(args.orders, args.seed),
    }
    .into_iter()
    .map(Purchase::from)
    .collect();
    let rate = match args.level.as_deref() {
        Some("low") => 100.0,
        Some("medium") => 1_000.0,
        Some("high") => 5_000.0,
        _ => args.sending.rate,
    };
    let sending = Sending {
        pace: Pace::from_rate(rate),
        ..args.sending.sending()
    };
    let target = Target::connect_url(args.intake, &args.target, args.api_key.as_deref()).await?;
    eprintln!(
        "placing {} orders on {} ({:?}, {:?}, {} per request)",
        purchases.len(),
        args.target,
        args.intake,
        sending.pace,
        sending.batch
    );
    let result = load::place_all(&target, &purchases, sending, true).await?;
    println!("accepted   {:>10}", result.accepted);
    println!("refused    {:>10}", result.errors);
    println!("elapsed    {:>10.3} s", result.elapsed.as_secs_f64());
    println!("throughput {:>10.0} orders/s", result.rate());
    let l = &result.latency;
    println!(
        "latency    p50 {}  p90 {}  p99 {}  max {}",
        report::fmt_us(l.p50_us),
        report::fmt_us(l.p90_us),
        report::fmt_us(l.p99_us),
        report::fmt_us(l.max_us)
    );
    if result.errors > 0 {
        return Err(format!("{} orders refused", result.errors).into());
    }
    Ok(())
}
