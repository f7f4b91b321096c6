//! Instruction-count probe for the read side, for callgrind:
//!
//! ```text
//! cargo build --release -p rcu-bench --example read_path
//! valgrind --tool=callgrind --toggle-collect='*rcu_pairs*' target/release/examples/read_path rcu
//! valgrind --tool=callgrind --toggle-collect='*epoch_pairs*' target/release/examples/read_path epoch
//! valgrind --tool=callgrind --toggle-collect='*rcu_nested_pairs*' target/release/examples/read_path nested
//! valgrind --tool=callgrind --toggle-collect='*rcu_cell_reads*' target/release/examples/read_path cell
//! valgrind --tool=callgrind --toggle-collect='*rcu_raw_reads*' target/release/examples/read_path raw
//! valgrind --tool=callgrind --toggle-collect='*rcu_cell_batched_reads*' target/release/examples/read_path cell-batched
//! valgrind --tool=callgrind --toggle-collect='*arc_swap_cache_reads*' target/release/examples/read_path cache
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
    /// Nested rcu-rs pairs under an outer guard (`rcu_nested_pairs`).
    Nested,
    /// Full `RcuCell` reads: lock, read (domain check), deref, unlock
    /// (`rcu_cell_reads`).
    Cell,
    /// The same through a bare `AtomicPtr`, no domain check
    /// (`rcu_raw_reads`).
    Raw,
    /// `RcuCell` reads, one critical section per 64 (`rcu_cell_batched_reads`).
    CellBatched,
    /// arc-swap `Cache::load` reads (`arc_swap_cache_reads`).
    Cache,
}

fn main() {
    let which = Cli::parse().workload;
    // Warm up: registration and the first pin happen outside the toggle.
    rcu_core::register_thread();
    drop(crossbeam_epoch::pin());
    let cell = rcu_core::RcuCell::new(7u64);
    let raw = std::sync::atomic::AtomicPtr::new(Box::into_raw(Box::new(7u64)));
    match which {
        Workload::Rcu => rcu_bench::rcu_pairs(N),
        Workload::Epoch => rcu_bench::epoch_pairs(N),
        Workload::Empty => rcu_bench::empty_pairs(N),
        Workload::Nested => rcu_bench::rcu_nested_pairs(N),
        Workload::Cell => {
            std::hint::black_box(rcu_bench::rcu_cell_reads(&cell, N));
        }
        Workload::Raw => {
            std::hint::black_box(rcu_bench::rcu_raw_reads(&raw, N));
        }
        Workload::CellBatched => {
            std::hint::black_box(rcu_bench::rcu_cell_batched_reads(&cell, N));
        }
        Workload::Cache => {
            let swap = arc_swap::ArcSwap::from_pointee(7u64);
            let mut cache = arc_swap::Cache::new(&swap);
            std::hint::black_box(cache.load()); // the first load fills it
            std::hint::black_box(rcu_bench::arc_swap_cache_reads(&mut cache, N));
        }
    }
    // SAFETY: from `Box::into_raw` above, never shared beyond this thread.
    drop(unsafe { Box::from_raw(raw.into_inner()) });
    println!("{which:?}: {N} pairs");
}
