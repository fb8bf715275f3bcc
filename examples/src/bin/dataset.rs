//! Writes a seeded purchase data set in the original CSV layout.

#[global_allocator]
static ALLOCATOR: order_fsm_examples::Allocator = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::Parser;
use order_fsm_examples::dataset;

#[derive(Parser, Debug)]
#[command(
    about = "Generate purchases as CSV (product, price, gateway, card brand, bank, region, address, e-mail)"
)]
struct Args {
    /// Rows to write.
    #[arg(long, default_value_t = 1_000)]
    orders: usize,
    /// Seed; the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file (`-` for standard output).
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let rows = dataset::generate(args.orders, args.seed);
    if args.out.as_os_str() == "-" {
        dataset::write_csv(&rows, std::io::stdout().lock())?;
    } else {
        dataset::write_csv(&rows, std::fs::File::create(&args.out)?)?;
        eprintln!("wrote {} purchases to {}", rows.len(), args.out.display());
    }
    Ok(())
}
