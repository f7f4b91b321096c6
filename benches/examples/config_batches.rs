//! What a batch of config reads costs per read, by the number of reads per
//! critical section, on one thread with no writer:
//!
//! ```text
//! cargo run --release -p rcu-bench --example config_batches
//! ```
//!
//! Each row is the fastest of five passes of 200 M reads of one field
//! through `RcuCell::read`, in the runner's batched loop
//! ([`rcu_bench::suites::config::rcu_cell_reads`]: a `read_lock`, then an
//! inner loop over the batch), then two references: the same read under one
//! guard for the whole pass (no batch ends at all) and arc-swap's `Cache`.
//!
//! It shows where the batched row's time goes. A `read_lock`/unlock pair
//! costs about a nanosecond, yet each batch end costs 12-20 ns on the 2-CPU
//! VM, from 32 reads per batch up (against 0.3 ns per read under one guard
//! for the whole pass), and a flat loop that re-locks every 64 reads with an
//! `if` pays the same. That is a mispredicted branch at the end of a loop
//! too long for the predictor's history (batches of 8 to 24 reads, whose
//! ends are predicted, cost 0.39-0.45 ns per read); the VM has no hardware
//! counters to confirm it. So a batch of `b` reads costs about 0.3 ns per
//! read plus 12-20 ns spread over `b`, and any loop of that shape pays it,
//! whatever it reads.

use rcu_bench::suites::config::{Limits, rcu_cell_reads};
use std::hint::black_box;
use std::time::Instant;

/// Reads per pass.
const N: u64 = 200_000_000;

/// Prints the fastest of five passes of `reads(N)`, in ns per read.
fn row(name: &str, mut reads: impl FnMut(u64)) {
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            reads(N);
            t.elapsed().as_secs_f64() * 1e9 / N as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name:40} {best:6.3} ns per read");
}

fn main() {
    let cell = rcu_core::RcuCell::new(Limits::version(0));
    let swap = arc_swap::ArcSwap::from_pointee(Limits::version(0));
    row("read_lock per read", rcu_cell_reads::<1>(&cell));
    row("read_lock per 8 reads", rcu_cell_reads::<8>(&cell));
    row("read_lock per 16 reads", rcu_cell_reads::<16>(&cell));
    row("read_lock per 24 reads", rcu_cell_reads::<24>(&cell));
    row("read_lock per 32 reads", rcu_cell_reads::<32>(&cell));
    row("read_lock per 64 reads", rcu_cell_reads::<64>(&cell));
    row("read_lock per 256 reads", rcu_cell_reads::<256>(&cell));
    row("read_lock per 1024 reads", rcu_cell_reads::<1024>(&cell));
    row("read_lock per 4096 reads", rcu_cell_reads::<4096>(&cell));
    row("flat loop, re-lock every 64 reads", |n| {
        let mut g = rcu_core::read_lock();
        for i in 0..n {
            if i % 64 == 63 {
                drop(g);
                g = rcu_core::read_lock();
            }
            black_box(cell.read(&g).limit);
        }
    });
    row("one read_lock per pass", |n| {
        let g = rcu_core::read_lock();
        for _ in 0..n {
            black_box(cell.read(&g).limit);
        }
    });
    let mut cache = arc_swap::Cache::new(&swap);
    row("arc_swap Cache::load", |n| {
        for _ in 0..n {
            black_box(cache.load().limit);
        }
    });
}
