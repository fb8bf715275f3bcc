//! Every side-by-side benchmark of the workspace in one place: each comparison runs an
//! anchor (the best raw client or a hand-written baseline) and a subject (our code) in
//! alternating rounds in one process, and all of them report in one format ([`Report`]).
//!
//! ```text
//! cargo run --release -p order-fsm-benches -- --quick|--full [--write-readme] [--only ID]
//! ```
//!
//! Embedded defaults run always (in-process code, librdkafka's mock cluster, in-process
//! gRPC servers); the real servers are measured too when their addresses are set
//! (`ORDER_FSM_KAFKA_BROKERS`, `ORDER_FSM_ES_URL`, `ORDER_FSM_POSTGRES_URL`, as the
//! `scripts/*.sh start` commands export them). A comparison whose service is not configured
//! is listed in the report as skipped, with the reason.

use order_fsm_kafka::WireFormat;
use std::future::Future;
use std::time::Instant;

pub mod engine;
mod machine;
mod report;

mod data;
mod elastic;
mod grpc;
mod kafka_sink;
mod kafka_source;
mod pipeline;
mod postgres;
mod runner;

pub use machine::Machine;
pub use report::{
    figure, replace_between_markers, Better, Comparison, Extra, NotRun, Report, Side, Stats,
    Target, BEGIN, END,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a run takes: the sizes of every comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Seconds: tiny sizes, two rounds; for the smoke test (figures mean nothing).
    Tiny,
    /// Within 5 minutes on the 2-core machine with every service set.
    Quick,
    /// README's sizes (1 M Kafka commands, 20,000 PostgreSQL orders, ...).
    Full,
}

impl Size {
    /// `tiny`, `quick` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Quick => "quick",
            Size::Full => "full",
        }
    }

    /// One of three values by size.
    pub(crate) fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Size::Tiny => tiny,
            Size::Quick => quick,
            Size::Full => full,
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The sizes.
    pub size: Size,
    /// Run only comparisons whose id contains one of these (all when empty).
    pub only: Vec<String>,
}

/// Where a Kafka comparison runs.
#[derive(Clone, Debug)]
pub(crate) enum Brokers {
    /// librdkafka's mock cluster, started by the comparison.
    Mock,
    /// A real broker: its address and, if known, its kind (`tansu-0.6.0`).
    Real { address: String, kind: String },
}

impl Brokers {
    fn suffix(&self) -> &'static str {
        match self {
            Brokers::Mock => "mock",
            Brokers::Real { .. } => "real",
        }
    }
}

/// A service address from the environment, or the reason it is missing.
fn service(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!("{var} is not set")),
    }
}

/// How a comparison's id and setup name the wire format: the id segment (`""`, `proto.`,
/// `json-pack.`, `proto-pack.`) and the words.
pub(crate) fn format_labels(format: WireFormat, packed: bool) -> (&'static str, &'static str) {
    match (format, packed) {
        (WireFormat::Json, false) => ("", "JSON"),
        (WireFormat::Json, true) => ("json-pack.", "JSON in packs"),
        (_, false) => ("proto.", "protobuf"),
        (_, true) => ("proto-pack.", "protobuf in packs"),
    }
}

/// Runs the suite and returns its report (failures are in it, not errors).
pub async fn run_suite(options: &Options, allocator: &str) -> Report {
    let machine = Machine::read(allocator);
    let started = Instant::now();
    let size = options.size;
    let mut suite = Suite {
        options,
        comparisons: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };

    suite
        .run("engine.apply", Ok(()), |()| async move {
            Ok(vec![engine::compare(size)])
        })
        .await;
    suite
        .run("engine.runner", Ok(()), |()| runner::compare(size))
        .await;

    let real = service("ORDER_FSM_KAFKA_BROKERS").map(|address| Brokers::Real {
        address,
        kind: std::env::var("ORDER_FSM_KAFKA_BROKER_KIND").unwrap_or_else(|_| "broker".into()),
    });
    for brokers in [Ok(Brokers::Mock), real] {
        let suffix = brokers.as_ref().map_or("real", Brokers::suffix);
        for format in [WireFormat::Json, WireFormat::Protobuf] {
            let (in_format, _) = format_labels(format, false);
            for placements in [false, true] {
                let kind = if placements {
                    "placements"
                } else {
                    "lifecycle"
                };
                let id = format!("kafka.source.{kind}.{in_format}{suffix}");
                let needs = brokers.clone();
                suite
                    .run(&id, needs, |b| {
                        kafka_source::compare(size, b, placements, format)
                    })
                    .await;
            }
            suite
                .run(
                    &format!("kafka.sink.{in_format}{suffix}"),
                    brokers.clone(),
                    |b| kafka_sink::compare(size, b, format),
                )
                .await;
            suite
                .run(
                    &format!("pipeline.kafka.{in_format}{suffix}"),
                    brokers.clone(),
                    |b| pipeline::compare(size, b, format, false),
                )
                .await;
            if format == WireFormat::Protobuf {
                suite
                    .run(
                        &format!("pipeline.kafka.proto-pack.{suffix}"),
                        brokers.clone(),
                        |b| pipeline::compare(size, b, format, true),
                    )
                    .await;
            }
        }
    }

    suite
        .run("grpc.place_order", Ok(()), |()| grpc::compare(size))
        .await;
    suite
        .run("elastic.bulk", service("ORDER_FSM_ES_URL"), |url| {
            elastic::compare(size, url)
        })
        .await;
    let postgres = service(order_fsm_postgres::URL_ENV);
    suite
        .run("postgres.batch", postgres.clone(), |_| {
            postgres::compare_batches(size)
        })
        .await;
    suite
        .run("postgres.runner", postgres, |_| {
            postgres::compare_runner(size)
        })
        .await;
    let by_hand = "not in the suite yet: the embedded pipeline at fixed offered rates is \
                   measured by hand (README's whole-system rows)";
    suite
        .run("pipeline.offered_rates", Err(by_hand.into()), |()| async {
            Ok(Vec::new())
        })
        .await;

    Report {
        suite: size.name().into(),
        machine,
        duration_secs: started.elapsed().as_secs_f64(),
        comparisons: suite.comparisons,
        skipped: suite.skipped,
        failed: suite.failed,
    }
}

struct Suite<'a> {
    options: &'a Options,
    comparisons: Vec<Comparison>,
    skipped: Vec<NotRun>,
    failed: Vec<NotRun>,
}

impl Suite<'_> {
    /// Runs the comparison `id` if it is selected and what it needs is there.
    async fn run<N, F, Fut>(&mut self, id: &str, needs: Result<N, String>, f: F)
    where
        F: FnOnce(N) -> Fut,
        Fut: Future<Output = Result<Vec<Comparison>, BoxError>>,
    {
        let only = &self.options.only;
        if !only.is_empty() && !only.iter().any(|o| id.contains(o.as_str())) {
            return;
        }
        let needs = match needs {
            Ok(n) => n,
            Err(reason) => {
                eprintln!("== {id}: skipped ({reason})");
                self.skipped.push(NotRun {
                    id: id.into(),
                    reason,
                });
                return;
            }
        };
        eprintln!("== {id}");
        let started = Instant::now();
        match f(needs).await {
            Ok(done) => {
                eprintln!("   {id}: {:.1} s", started.elapsed().as_secs_f64());
                self.comparisons.extend(done);
            }
            Err(e) => {
                eprintln!("   {id}: FAILED: {e}");
                self.failed.push(NotRun {
                    id: id.into(),
                    reason: e.to_string(),
                });
            }
        }
    }
}
