//! Instruction-count probe for the read side, for callgrind:
//!
//! ```text
//! cargo build --release -p rcu-bench --example read_path
//! valgrind --tool=callgrind --toggle-collect='*rcu_pairs*' target/release/examples/read_path rcu
//! valgrind --tool=callgrind --toggle-collect='*epoch_pairs*' target/release/examples/read_path epoch
//! ```
//!
//! Each run does `N` pairs inside the toggled function; instructions / N is
//! the cost of one pair (the loop's own two or three instructions included;
//! `empty` measures those).

use clap::{Parser, ValueEnum};

const N: u64 = 1_000_000;

/// Runs one million read-side pairs of one workload, for callgrind.
#[derive(Parser)]
#[command(name = "read_path")]
struct Cli {
    /// The workload.
    #[arg(value_enum, default_value_t = Workload::Rcu)]
    workload: Workload,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Workload {
    /// rcu-rs read_lock / drop (`rcu_pairs`).
    Rcu,
    /// crossbeam_epoch::pin / drop (`epoch_pairs`).
    Epoch,
    /// The same loop with nothing in it (`empty_pairs`).
    Empty,
}

fn main() {
    let which = Cli::parse().workload;
    // Warm up: registration and the first pin happen outside the toggle.
    rcu_core::register_thread();
    drop(crossbeam_epoch::pin());
    match which {
        Workload::Rcu => rcu_bench::rcu_pairs(N),
        Workload::Epoch => rcu_bench::epoch_pairs(N),
        Workload::Empty => rcu_bench::empty_pairs(N),
    }
    println!("{which:?}: {N} pairs");
}
