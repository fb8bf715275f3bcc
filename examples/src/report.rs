//! What a run writes for people: a JSON summary and SVG charts.

use std::path::Path;

use order_fsm::{MetricsRecord, MetricsSnapshot};
use plotters::prelude::*;
use serde::Serialize;

/// The JSON summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Orders the run placed.
    pub orders_placed: u64,
    /// Orders that reached `completed`.
    pub completed: u64,
    /// Orders that reached `cancelled`.
    pub cancelled: u64,
    /// Orders that reached `failed`.
    pub failed: u64,
    /// Placed orders that reached no terminal state (must be 0).
    pub lost: u64,
    /// Wall time of the run, seconds.
    pub elapsed_secs: f64,
    /// Orders reaching a terminal state per second.
    pub orders_per_sec: f64,
    /// Peak resident memory of this process (the whole embedded system) at the end of the
    /// run, bytes (`VmHWM` of `/proc/self/status`; `None` where there is none).
    pub peak_rss_bytes: Option<u64>,
    /// Everything the runner measured.
    pub metrics: MetricsSnapshot,
}

/// The peak resident memory of this process so far (`VmHWM`), bytes; Linux only.
pub fn peak_rss_bytes() -> Option<u64> {
    rss_bytes("VmHWM")
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`, `VmHWM`), bytes.
pub fn rss_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Summary {
    /// A summary of `metrics` for a run that placed `placed` orders in `elapsed_secs`.
    pub fn new(placed: u64, elapsed_secs: f64, metrics: MetricsSnapshot) -> Self {
        let finished = metrics.orders_finished_total();
        Self {
            orders_placed: placed,
            completed: metrics.finished_in("completed"),
            cancelled: metrics.finished_in("cancelled"),
            failed: metrics.finished_in("failed"),
            lost: placed.saturating_sub(finished),
            elapsed_secs,
            orders_per_sec: finished as f64 / elapsed_secs.max(1e-9),
            peak_rss_bytes: peak_rss_bytes(),
            metrics,
        }
    }

    /// Prints the summary for a terminal.
    pub fn print(&self) {
        println!("orders placed      {:>10}", self.orders_placed);
        println!("  completed        {:>10}", self.completed);
        println!("  cancelled        {:>10}", self.cancelled);
        println!("  failed           {:>10}", self.failed);
        println!("  lost             {:>10}", self.lost);
        println!("elapsed            {:>10.3} s", self.elapsed_secs);
        println!("throughput         {:>10.0} orders/s", self.orders_per_sec);
        if let Some(bytes) = self.peak_rss_bytes {
            println!(
                "peak RSS           {:>10.0} MiB",
                bytes as f64 / (1024.0 * 1024.0)
            );
        }
        println!(
            "transitions        {:>10} ({:.0}/s)",
            self.metrics.transitions, self.metrics.transitions_per_sec
        );
        println!("latency (time in state before each change)      p50        p90        p99");
        for t in &self.metrics.per_transition {
            println!(
                "  {:>10} -> {:<12} {:>20} {:>10} {:>10}",
                t.from,
                t.to,
                fmt_us(t.latency.p50_us),
                fmt_us(t.latency.p90_us),
                fmt_us(t.latency.p99_us)
            );
        }
        let e = &self.metrics.end_to_end;
        println!(
            "  placed -> terminal {:>30} {:>10} {:>10}",
            fmt_us(e.p50_us),
            fmt_us(e.p90_us),
            fmt_us(e.p99_us)
        );
        let p = &self.metrics.processing;
        println!(
            "  command -> ack      {:>29} {:>10} {:>10}",
            fmt_us(p.p50_us),
            fmt_us(p.p90_us),
            fmt_us(p.p99_us)
        );
    }
}

/// Microseconds as a short human figure (`850 µs`, `12.5 ms`, `3.20 s`).
pub fn fmt_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

type ChartResult = Result<(), Box<dyn std::error::Error>>;

/// Writes `throughput.svg` (transitions per second in each metrics window) and
/// `latency.svg` (p50 / p90 / p99 of each kind of state change) into `dir`, and
/// `summary.json`.
///
/// # Errors
/// I/O errors.
pub fn write_all(dir: &Path, summary: &Summary, windows: &[MetricsRecord]) -> ChartResult {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(summary)?,
    )?;
    throughput_chart(&dir.join("throughput.svg"), windows)?;
    latency_chart(&dir.join("latency.svg"), &summary.metrics)?;
    Ok(())
}

fn throughput_chart(path: &Path, windows: &[MetricsRecord]) -> ChartResult {
    let start = windows.first().map_or(0, |w| w.window_start.as_micros());
    let points: Vec<(f64, f64)> = windows
        .iter()
        .map(|w| {
            let t = w.window_end.as_micros().saturating_sub(start) as f64 / 1e6;
            (t, w.metrics.transitions_per_sec)
        })
        .collect();
    let max_t = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput over time", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_t, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("transitions / s")
        .draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), &BLUE))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
    root.present()?;
    Ok(())
}

fn latency_chart(path: &Path, metrics: &MetricsSnapshot) -> ChartResult {
    let rows = &metrics.per_transition;
    let labels: Vec<String> = rows
        .iter()
        .map(|t| format!("{}→{}", t.from, t.to))
        .collect();
    let ms = |us: u64| us as f64 / 1e3;
    let max_y = rows
        .iter()
        .map(|t| ms(t.latency.p99_us))
        .fold(0.001, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency per transition (p50 / p90 / p99)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, 0.0..max_y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("milliseconds")
        .draw()?;
    // Each group is named above its bars (plotters places axis ticks on round numbers).
    chart.draw_series(rows.iter().zip(&labels).enumerate().map(|(i, (t, label))| {
        Text::new(
            label.clone(),
            (i as f64 + 0.12, ms(t.latency.p99_us) + max_y * 0.03),
            ("sans-serif", 14),
        )
    }))?;
    let series = [
        (0, RGBColor(90, 160, 220)),
        (1, RGBColor(240, 170, 60)),
        (2, RGBColor(210, 70, 70)),
    ];
    for (k, color) in series {
        let name = ["p50", "p90", "p99"][k];
        chart
            .draw_series(rows.iter().enumerate().map(|(i, t)| {
                let v = [t.latency.p50_us, t.latency.p90_us, t.latency.p99_us][k];
                let x0 = i as f64 + 0.15 + 0.23 * k as f64;
                Rectangle::new([(x0, 0.0), (x0 + 0.22, ms(v))], color.filled())
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
