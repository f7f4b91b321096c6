//! Instruction-count probe for the reclaim path, for callgrind: one producer
//! queues `N` callbacks (a counter bump each, the runner's "closures" row)
//! and drains; everything retired has run when it returns.
//!
//! ```text
//! cargo build --release -p rcu-bench --example reclaim_path
//! valgrind --tool=callgrind target/release/examples/reclaim_path rcu
//! valgrind --tool=callgrind target/release/examples/reclaim_path epoch
//! valgrind --tool=callgrind target/release/examples/reclaim_path empty
//! ```
//!
//! Total instructions of all threads (callgrind's `summary`, every thread's
//! file summed: `callgrind_annotate` prints the total of each) minus the
//! `empty` run's, divided by `N`: the whole cost of one callback, queueing,
//! grace periods, hand-off and run, on whichever thread it falls.

use clap::{Parser, ValueEnum};
use std::sync::atomic::{AtomicU64, Ordering};

const N: u64 = 1_000_000;

static COUNT: AtomicU64 = AtomicU64::new(0);

/// Queues one million callbacks and waits until all have run.
#[derive(Parser)]
#[command(name = "reclaim_path")]
struct Cli {
    /// The workload.
    #[arg(value_enum, default_value_t = Workload::Rcu)]
    workload: Workload,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Workload {
    /// `rcu_core::call_rcu`, then `drain`.
    Rcu,
    /// crossbeam-epoch `pin().defer`, flushing until all have run.
    Epoch,
    /// The same bumps run directly.
    Empty,
}

fn bump() {
    COUNT.fetch_add(1, Ordering::Relaxed);
}

fn main() {
    let cli = Cli::parse();
    match cli.workload {
        Workload::Rcu => {
            for _ in 0..N {
                rcu_core::call_rcu(bump);
            }
            rcu_core::drain();
        }
        Workload::Epoch => {
            for _ in 0..N {
                crossbeam_epoch::pin().defer(bump);
            }
            while COUNT.load(Ordering::Relaxed) < N {
                crossbeam_epoch::pin().flush();
            }
        }
        Workload::Empty => {
            for _ in 0..N {
                std::hint::black_box(bump as fn())();
            }
        }
    }
    assert_eq!(COUNT.load(Ordering::Relaxed), N, "every callback ran");
}
