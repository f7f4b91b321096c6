//! rcutorture as a program, for long soaks and read/update cost.
//!
//! ```text
//! cargo run --release -p rcu-core --example rcutorture -- stress --seconds 600
//! cargo run --release -p rcu-core --example rcutorture -- rperf --readers 2
//! cargo run --release -p rcu-core --example rcutorture -- uperf
//! cargo run --release -p rcu-core --example rcutorture -- --help
//! ```
//!
//! Without a mode it runs `stress` (`rcutorture --seconds 5` too). Each mode takes
//! `--seconds S`, `--readers N`, `--long-readers N`, `--sync-threads N`,
//! `--no-churn` and `--seed X` (`mode --help` says more); anything else is an
//! error. Exits non-zero on any error or writer stall.

#[path = "../tests/support/torture.rs"]
mod torture;

use clap::{Args, Parser, Subcommand};
use std::time::Duration;
use torture::{Mode, Options};

/// The rcutorture test of rcu-rs: readers check that nothing they can see
/// is reclaimed under them while writers publish and reclaim.
///
/// Without a mode, runs `stress` with the options given here.
#[derive(Parser)]
#[command(name = "rcutorture", args_conflicts_with_subcommands = true)]
struct Cli {
    /// What to run [default: stress].
    #[command(subcommand)]
    mode: Option<Command>,
    #[command(flatten)]
    stress: Opts,
}

#[derive(Subcommand)]
enum Command {
    /// Readers, a writer rotating through every kind of grace period, extra
    /// synchronize/drain threads, long readers, thread churn.
    Stress(Opts),
    /// Readers only: the cost of a read.
    Rperf(Opts),
    /// Updaters only: the cost of an update (publish + grace period).
    Uperf(Opts),
}

#[derive(Args)]
struct Opts {
    /// How long to run.
    #[arg(long, value_name = "S", default_value_t = 10)]
    seconds: u64,
    /// Reader threads.
    #[arg(long, value_name = "N", default_value_t = 4)]
    readers: usize,
    /// Readers that stay inside a critical section until their
    /// force-quiescent notifier fires.
    #[arg(long, value_name = "N", default_value_t = 1)]
    long_readers: usize,
    /// Threads that only call synchronize / drain.
    #[arg(long, value_name = "N", default_value_t = 2)]
    sync_threads: usize,
    /// Keep reader threads for the whole run (by default they exit after a
    /// random number of reads and are replaced).
    #[arg(long)]
    no_churn: bool,
    /// Seed of the pseudo-random choices (decimal, or hex with 0x).
    #[arg(long, value_name = "X", default_value = "0x5eed", value_parser = parse_seed)]
    seed: u64,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{e}"))
}

fn main() {
    let cli = Cli::parse();
    let (mode, o) = match cli.mode {
        None => (Mode::Stress, cli.stress),
        Some(Command::Stress(o)) => (Mode::Stress, o),
        Some(Command::Rperf(o)) => (Mode::Rperf, o),
        Some(Command::Uperf(o)) => (Mode::Uperf, o),
    };
    let mut opts = Options::stress(Duration::from_secs(o.seconds));
    opts.mode = mode;
    opts.readers = o.readers;
    opts.long_readers = o.long_readers;
    opts.sync_threads = o.sync_threads;
    opts.churn = !o.no_churn;
    opts.seed = o.seed;

    let r = torture::run(&opts);
    println!("rcutorture {mode:?}: {:.1} s", r.elapsed.as_secs_f64());
    println!(
        "  reads            {} ({} reader threads started)",
        r.reads, r.reader_threads_started
    );
    println!("  publications     {}", r.publications);
    println!(
        "  grace periods    {} ({} forced)",
        r.grace_periods, r.forced_grace_periods
    );
    println!("  notifier calls   {}", r.notifier_calls);
    println!(
        "  callbacks        {} run of {} queued",
        r.callbacks_run, r.callbacks_queued
    );
    println!("  max age seen     {}", r.max_age_seen);
    println!(
        "  errors           {} (dead {}, age {}, reuse {})",
        r.errors(),
        r.dead_seen,
        r.age_errors,
        r.reuse_errors
    );
    match mode {
        Mode::Rperf => println!("  ns per read      {:.1}", r.ns_per_read),
        Mode::Uperf => println!("  ns per update    {:.1}", r.ns_per_update),
        Mode::Stress => {}
    }
    let failed = r.errors() > 0 || r.stalled || r.callbacks_run != r.callbacks_queued;
    if r.stalled {
        println!("  WRITER STALL: the published slot stopped advancing");
    }
    println!("{}", if failed { "FAILED" } else { "PASSED" });
    std::process::exit(i32::from(failed));
}
