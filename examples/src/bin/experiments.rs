//! Reruns the original systems' analyses on the embedded system and writes a markdown
//! report with tables and a chart: (a) 1–1,000 orders across worker/partition layouts beside
//! the original figures, (b) load levels, (c) burst versus steady, (d) gRPC versus HTTP,
//! (e) sustained load with dwell times across layouts (how throughput scales with workers ×
//! partitions).

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use order_fsm::simulation::LoadLevel;
use order_fsm::{Dwell, Purchase};
use order_fsm_examples::embedded::{self, EmbeddedConfig, EmbeddedRun};
use order_fsm_examples::load::{Intake, Pace, Sending};
use order_fsm_examples::{dataset, report};
use order_fsm_mail::Language;
use plotters::prelude::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "Rerun the original analyses and write a markdown report")]
struct Args {
    /// Where the report goes.
    #[arg(long, default_value = "target/experiments")]
    out: PathBuf,
    /// Time in each state for experiment (a), in milliseconds (the originals slept per state).
    #[arg(long, default_value_t = 0)]
    dwell_ms: u64,
    /// Orders for experiments (b), (c) and (d).
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// Orders for experiment (e), placed in `PlaceOrders` calls of 100.
    #[arg(long, default_value_t = 100_000)]
    sustained_orders: usize,
    /// Time in each state for experiment (e), in milliseconds.
    #[arg(long, default_value_t = 5)]
    sustained_dwell_ms: u64,
}

fn base(orders: usize) -> EmbeddedConfig {
    EmbeddedConfig {
        purchases: dataset::generate(orders, 42)
            .into_iter()
            .map(Purchase::from)
            .collect(),
        workers: 2,
        partitions: 4,
        dwell: Dwell::None,
        intake: Intake::Grpc,
        sending: Sending::burst(64),
        outbox: None,
        language: Language::En,
        mail_from: "orders@shop.example".into(),
        timeout: Duration::from_secs(600),
        retention: order_fsm::DEFAULT_RETENTION.into(),
        backlog_limit: embedded::backlog_limit(4),
        brokers: None,
        duration: None,
        dashboard_addr: None,
        wire_format: order_fsm_kafka::WireFormat::Json,
        packed_transitions: false,
    }
}

async fn measure(config: EmbeddedConfig) -> Result<EmbeddedRun, BoxError> {
    let run = embedded::run(config).await?;
    if run.summary.lost > 0 {
        return Err(format!("{} orders lost", run.summary.lost).into());
    }
    Ok(run)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let mut md = String::from("# order-fsm experiments\n\nEmbedded system (mock Kafka cluster, gRPC intake, runner, in-memory store; no mail), on this machine.\n\n");

    // (a) sizes × layouts.
    let sizes = [1usize, 200, 500, 700, 1_000];
    let layouts = [
        ("1 worker, 1 partition", 1, 1),
        ("2 workers, 1 partition", 2, 1),
        ("2 workers, 4 partitions", 2, 4),
    ];
    let original = ["6,305", "3,302", "2,100"];
    writeln!(
        md,
        "## (a) Orders through the whole lifecycle (dwell {} ms per state)\n",
        args.dwell_ms
    )?;
    md.push_str("| orders | ");
    md.push_str(&layouts.map(|l| format!("{} (ms)", l.0)).join(" | "));
    md.push_str(" |\n|---|---|---|---|\n");
    let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); layouts.len()];
    for size in sizes {
        let mut row = format!("| {size} |");
        for (i, (_, workers, partitions)) in layouts.iter().enumerate() {
            let mut config = base(size);
            config.workers = *workers;
            config.partitions = *partitions;
            config.dwell = Dwell::Fixed(Duration::from_millis(args.dwell_ms));
            let run = measure(config).await?;
            let ms = run.summary.elapsed_secs * 1e3;
            series[i].push((size as f64, ms));
            write!(row, " {ms:.0} |")?;
            eprintln!("(a) {size} orders, {workers} workers, {partitions} partitions: {ms:.0} ms");
        }
        md.push_str(&row);
        md.push('\n');
    }
    writeln!(
        md,
        "| 1,000, original systems | {} |\n",
        original.join(" | ")
    )?;
    md.push_str("![time per layout](layouts.svg)\n\n");
    layouts_chart(
        &args.out.join("layouts.svg"),
        &layouts.map(|l| l.0),
        &series,
    )?;

    // (b) load levels.
    md.push_str("## (b) Load levels (dwell drawn per state)\n\n| level | dwell range | orders/s | placed → completed p50 | p99 |\n|---|---|---|---|---|\n");
    for level in [LoadLevel::Low, LoadLevel::Medium, LoadLevel::High] {
        let mut config = base(args.orders.min(500));
        config.dwell = Dwell::Load(level);
        let run = measure(config).await?;
        let (lo, hi) = level.range();
        let e = &run.summary.metrics.end_to_end;
        writeln!(
            md,
            "| {level:?} | {}–{} ms | {:.0} | {} | {} |",
            lo.as_millis(),
            hi.as_millis(),
            run.summary.orders_per_sec,
            report::fmt_us(e.p50_us),
            report::fmt_us(e.p99_us)
        )?;
        eprintln!("(b) {level:?}: {:.0} orders/s", run.summary.orders_per_sec);
    }

    // (c) burst versus steady, (d) gRPC versus HTTP.
    md.push_str("\n## (c) Burst versus steady stream, (d) gRPC versus HTTP intake\n\n| run | intake orders/s | intake p50 | intake p99 | pipeline orders/s | placed → completed p99 |\n|---|---|---|---|---|---|\n");
    let steady_rate = 2_000.0;
    let runs = [
        ("burst, gRPC", Pace::Burst, Intake::Grpc),
        (
            "steady 2,000/s, gRPC",
            Pace::Steady(steady_rate),
            Intake::Grpc,
        ),
        ("burst, HTTP", Pace::Burst, Intake::Http),
        (
            "steady 2,000/s, HTTP",
            Pace::Steady(steady_rate),
            Intake::Http,
        ),
    ];
    for (name, pace, intake) in runs {
        let mut config = base(args.orders);
        config.sending.pace = pace;
        config.intake = intake;
        let run = measure(config).await?;
        writeln!(
            md,
            "| {name} | {:.0} | {} | {} | {:.0} | {} |",
            run.load.rate(),
            report::fmt_us(run.load.latency.p50_us),
            report::fmt_us(run.load.latency.p99_us),
            run.summary.orders_per_sec,
            report::fmt_us(run.summary.metrics.end_to_end.p99_us)
        )?;
        eprintln!(
            "(c/d) {name}: {:.0} orders/s at the intake",
            run.load.rate()
        );
    }
    // (e) sustained load across layouts.
    writeln!(
        md,
        "\n## (e) Sustained load by layout ({} orders in `PlaceOrders` calls of 100, 8 in flight, dwell {} ms per state)\n",
        args.sustained_orders, args.sustained_dwell_ms
    )?;
    md.push_str("| layout | orders/s | transitions/s | placed → completed p50 | p99 |\n|---|---|---|---|---|\n");
    let layouts = [(1, 1), (2, 2), (2, 4), (4, 4), (4, 8)];
    for (workers, partitions) in layouts {
        let mut config = base(args.sustained_orders);
        config.workers = workers;
        config.partitions = partitions;
        config.sending.concurrency = 8;
        config.sending.batch = 100;
        config.dwell = Dwell::Fixed(Duration::from_millis(args.sustained_dwell_ms));
        let run = measure(config).await?;
        let e = &run.summary.metrics.end_to_end;
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        writeln!(
            md,
            "| {workers} worker{}, {partitions} partition{} | {:.0} | {:.0} | {} | {} |",
            plural(workers),
            plural(partitions as usize),
            run.summary.orders_per_sec,
            run.summary.metrics.transitions_per_sec,
            report::fmt_us(e.p50_us),
            report::fmt_us(e.p99_us)
        )?;
        eprintln!(
            "(e) {workers} workers, {partitions} partitions: {:.0} orders/s",
            run.summary.orders_per_sec
        );
    }
    let path = args.out.join("report.md");
    std::fs::write(&path, md)?;
    println!("report written to {}", path.display());
    Ok(())
}

fn layouts_chart(
    path: &std::path::Path,
    names: &[&str],
    series: &[Vec<(f64, f64)>],
) -> Result<(), BoxError> {
    let max_y = series.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Time to finish N orders", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..1_050.0, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("orders")
        .y_desc("milliseconds")
        .draw()?;
    for (i, (name, points)) in names.iter().zip(series).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
