//! Runs every side-by-side benchmark, writes `target/bench/report.json` and `report.md`, and
//! with `--write-readme` rewrites README's generated performance table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use order_fsm_benches::{replace_between_markers, run_suite, Options, Size, BEGIN, END};

// The allocator of the programs in `examples/`: anchors and subjects both run under it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: cargo run --release -p order-fsm-benches -- [--quick | --full | --tiny]
           [--write-readme] [--only ID[,ID...]] [--out DIR] [--readme PATH]

  --quick         every comparison at sizes that fit in 5 minutes on 2 cores (default)
  --full          README's sizes (1 M Kafka commands, ...), several more minutes
  --tiny          tiny sizes, 2 rounds: checks that everything runs (figures mean nothing)
  --write-readme  rewrite README.md between <!-- benches:begin --> and <!-- benches:end -->
  --only ID       run only comparisons whose id contains ID (engine, kafka, kafka.sink, grpc, ...)
  --out DIR       where report.json and report.md go (default: target/bench)
  --readme PATH   the README to rewrite (default: the workspace's README.md)

Real servers are measured too when their addresses are set: ORDER_FSM_KAFKA_BROKERS,
ORDER_FSM_ES_URL, ORDER_FSM_POSTGRES_URL (eval \"$(bash scripts/<service>.sh start)\").
";

struct Args {
    options: Options,
    write_readme: bool,
    out: PathBuf,
    readme: PathBuf,
}

fn parse() -> Result<Args, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    let mut args = Args {
        options: Options {
            size: Size::Quick,
            only: Vec::new(),
        },
        write_readme: false,
        out: root.join("target").join("bench"),
        readme: root.join("README.md"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => args.options.size = Size::Quick,
            "--full" => args.options.size = Size::Full,
            "--tiny" => args.options.size = Size::Tiny,
            "--write-readme" => args.write_readme = true,
            "--only" => args
                .options
                .only
                .extend(value()?.split(',').map(|s| s.trim().to_owned())),
            "--out" => args.out = value()?.into(),
            "--readme" => args.readme = value()?.into(),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = run_suite(&args.options, "mimalloc").await;

    let written = std::fs::create_dir_all(&args.out)
        .and_then(|()| {
            let json = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
            std::fs::write(args.out.join("report.json"), json)
        })
        .and_then(|()| std::fs::write(args.out.join("report.md"), report.markdown()));
    if let Err(e) = written {
        eprintln!("error: cannot write into {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!("{}", report.markdown());
    println!(
        "wrote {} and report.md",
        args.out.join("report.json").display()
    );

    if args.write_readme {
        let readme = match std::fs::read_to_string(&args.readme) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", args.readme.display());
                return ExitCode::FAILURE;
            }
        };
        let Some(updated) = replace_between_markers(&readme, &report.table()) else {
            eprintln!(
                "error: {} has no {BEGIN} ... {END} markers",
                args.readme.display()
            );
            return ExitCode::FAILURE;
        };
        if let Err(e) = std::fs::write(&args.readme, updated) {
            eprintln!("error: cannot write {}: {e}", args.readme.display());
            return ExitCode::FAILURE;
        }
        println!("rewrote the generated table of {}", args.readme.display());
    }
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
