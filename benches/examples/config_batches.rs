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
//! inner loop over the batch), then three references: a flat loop that
//! re-locks every 64 reads with an `if`, the same read under one guard for
//! the whole pass (no batch ends at all), and arc-swap's `Cache`.
//!
//! It shows where the batched row's time goes. A `read_lock`/unlock pair
//! costs about a nanosecond, yet on the 2-CPU VM each batch's end costs
//! 15-20 ns from 64 reads per batch up (against about 0.3 ns per read under
//! one guard for the whole pass), and the flat loop pays as much. That fits
//! a mispredicted exit of a loop too long for the predictor's history; the
//! VM has no hardware counters to confirm it. Below 64 reads per batch the
//! figures move with the code's placement from build to build (0.36-0.88 ns
//! per read for 8 to 32 reads, in three builds). So a batch of `b` reads
//! costs about 0.3 ns per read plus its end's cost spread over `b`, and any
//! loop of that shape pays it, whatever it reads.

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
