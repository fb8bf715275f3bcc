//! A soak's minute-by-minute report: each metrics window of the runner (one a minute) is
//! printed with the intake's backlog, the read model's lag and the process's memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use order_fsm::{Error, MemorySink, MetricsRecord, MetricsSink};
use order_fsm_kafka::{FollowerProgress, KafkaCommandSink};

use crate::report::{fmt_us, rss_bytes};

/// How long a soak's report windows are.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Prints a line per metrics window and keeps the windows (for the charts).
pub struct MinuteReport {
    /// Every window so far.
    pub windows: Arc<MemorySink>,
    commands: Arc<KafkaCommandSink>,
    read_model: Option<FollowerProgress>,
    minute: AtomicU64,
}

impl MinuteReport {
    /// A report on the backlog of `commands` and the lag of `read_model`.
    pub fn new(commands: Arc<KafkaCommandSink>, read_model: Option<FollowerProgress>) -> Self {
        Self {
            windows: Arc::new(MemorySink::new()),
            commands,
            read_model,
            minute: AtomicU64::new(0),
        }
    }

    /// The header of the lines.
    pub fn print_header() {
        println!(
            "{:>6} {:>12} {:>10} {:>10} {:>14} {:>16} {:>10}",
            "minute", "orders/s", "p50", "p99", "intake backlog", "read-model lag", "RSS MiB"
        );
    }
}

#[async_trait]
impl MetricsSink for MinuteReport {
    async fn record(&self, record: &MetricsRecord) -> Result<(), Error> {
        self.windows.record(record).await?;
        let minute = self.minute.fetch_add(1, Ordering::Relaxed) + 1;
        let secs = record.window_end.micros_since(record.window_start) as f64 / 1e6;
        let m = &record.metrics;
        let rss = rss_bytes("VmRSS").map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
        println!(
            "{minute:>6} {:>12.0} {:>10} {:>10} {:>14} {:>16} {rss:>10.0}",
            m.orders_finished_total() as f64 / secs.max(1e-9),
            fmt_us(m.end_to_end.p50_us),
            fmt_us(m.end_to_end.p99_us),
            self.commands.backlog().unwrap_or(0),
            self.read_model.as_ref().map_or(0, FollowerProgress::lag),
        );
        Ok(())
    }
}
