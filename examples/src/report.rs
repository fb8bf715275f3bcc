//! What a run writes for people: a JSON summary and SVG charts.

use std::path::Path;

use order_fsm::{MetricsRecord, MetricsSnapshot};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
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

/// Windows from the first with any activity to the last with any: start-up (group joins,
/// warm-up) before the first order and idle time after the last are not the run.
fn active(windows: &[MetricsRecord]) -> &[MetricsRecord] {
    let busy = |w: &MetricsRecord| w.metrics.orders_placed > 0 || w.metrics.transitions > 0;
    let first = windows.iter().position(busy).unwrap_or(windows.len());
    let last = windows.iter().rposition(busy).map_or(first, |i| i + 1);
    &windows[first..last.max(first)]
}

fn throughput_chart(path: &Path, windows: &[MetricsRecord]) -> ChartResult {
    let windows = active(windows);
    let start = windows.first().map_or(0, |w| w.window_start.as_micros());
    let at = |w: &MetricsRecord| w.window_end.as_micros().saturating_sub(start) as f64 / 1e6;
    let placed: Vec<(f64, f64)> = windows
        .iter()
        .map(|w| {
            (
                at(w),
                w.metrics.orders_placed as f64 / w.metrics.elapsed_secs.max(1e-9),
            )
        })
        .collect();
    let finished: Vec<(f64, f64)> = windows
        .iter()
        .map(|w| (at(w), w.metrics.orders_finished_per_sec))
        .collect();
    let transitions: Vec<(f64, f64)> = windows
        .iter()
        .map(|w| (at(w), w.metrics.transitions_per_sec))
        .collect();
    let max_t = transitions.iter().map(|p| p.0).fold(0.1, f64::max);
    let max_y = [&placed, &finished, &transitions]
        .iter()
        .flat_map(|series| series.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.25; // headroom for the legend
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput, from the first order to the last",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..max_t, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first order")
        .y_desc("per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let series = [
        ("state changes / s", &transitions, RGBColor(84, 162, 75)),
        ("orders placed / s", &placed, RGBColor(76, 120, 168)),
        ("orders finished / s", &finished, RGBColor(245, 133, 24)),
    ];
    for (name, points, color) in series {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A transition whose p99 is at most this many microseconds took no time worth a bar (a
/// chained step without dwell): it is named, not drawn.
const NO_TIME_US: u64 = 50;

fn latency_chart(path: &Path, metrics: &MetricsSnapshot) -> ChartResult {
    let rows = &metrics.per_transition;
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
            "Time in a state before each transition (p50 / p90 / p99)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(56)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n as f64, 0.0..max_y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("milliseconds")
        .draw()?;
    let series = [
        ("p50", RGBColor(90, 160, 220)),
        ("p90", RGBColor(240, 170, 60)),
        ("p99", RGBColor(210, 70, 70)),
    ];
    for (k, (name, color)) in series.into_iter().enumerate() {
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .filter(|(_, t)| t.latency.p99_us > NO_TIME_US)
                    .map(|(i, t)| {
                        let v = [t.latency.p50_us, t.latency.p90_us, t.latency.p99_us][k];
                        let x0 = i as f64 + 0.15 + 0.23 * k as f64;
                        Rectangle::new([(x0, 0.0), (x0 + 0.22, ms(v))], color.filled())
                    }),
            )?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    // Each group is named under the axis, centred on its bars; one that took no time says so
    // where its bars would be.
    let centred = |size: u32| {
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top))
    };
    for (i, t) in rows.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(format!("{} →", t.from), (x, y + 8), centred(14)))?;
        root.draw(&Text::new(t.to.to_string(), (x, y + 26), centred(14)))?;
        if t.latency.p99_us <= NO_TIME_US {
            let note = format!("no wait (p99 {} µs)", t.latency.p99_us);
            root.draw(&Text::new(note, (x, y - 24), centred(13)))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::{MetricsSnapshot, Timestamp};

    fn window(start_ms: u64, placed: u64, transitions: u64) -> MetricsRecord {
        let mut metrics = MetricsSnapshot::default();
        metrics.orders_placed = placed;
        metrics.transitions = transitions;
        MetricsRecord::new(
            Timestamp::from_micros(start_ms * 1_000),
            Timestamp::from_micros((start_ms + 100) * 1_000),
            metrics,
        )
    }

    #[test]
    fn charts_cover_the_first_order_to_the_last_not_start_up_or_idle_time() {
        let windows: Vec<_> = [(0, 0), (0, 0), (5, 0), (3, 9), (0, 4), (0, 0)]
            .iter()
            .enumerate()
            .map(|(i, &(placed, transitions))| window(i as u64 * 100, placed, transitions))
            .collect();
        let run = active(&windows);
        assert_eq!(run.len(), 3);
        assert_eq!(run[0].window_start.as_micros(), 200_000);
        assert!(active(&windows[..2]).is_empty(), "nothing happened");
    }

    #[test]
    fn writes_both_charts_with_units_and_names_transitions_that_took_no_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut metrics = MetricsSnapshot::default();
        for (from, to, p99_us) in [
            ("processing", "preparing", 40_000),
            ("preparing", "shipped", 3),
        ] {
            let mut latency = order_fsm::LatencySummary::default();
            latency.count = 10;
            latency.p50_us = p99_us / 2;
            latency.p90_us = p99_us;
            latency.p99_us = p99_us;
            latency.max_us = p99_us;
            latency.mean_us = p99_us as f64 / 2.0;
            metrics
                .per_transition
                .push(order_fsm::TransitionLatency::new(from, to, latency));
        }
        let summary = Summary::new(10, 1.0, metrics);
        let windows = [window(0, 0, 0), window(100, 10, 20)];
        write_all(dir.path(), &summary, &windows).unwrap();
        let throughput = std::fs::read_to_string(dir.path().join("throughput.svg")).unwrap();
        assert!(throughput.contains("seconds since the first order"));
        assert!(throughput.contains("per second"));
        let latency = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
        assert!(latency.contains("milliseconds"));
        assert!(
            latency.contains("no wait (p99 3 µs)"),
            "the empty group says why"
        );
        assert!(latency.contains("processing →"));
    }
}
