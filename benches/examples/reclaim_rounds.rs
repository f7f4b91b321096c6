//! The runner's "reclaim throughput, 1 producer, closures" row at other
//! round sizes: one producer queues `N` callbacks (a counter bump each),
//! then waits until all have run (`call_rcu` then `drain`, against
//! crossbeam-epoch's `Guard::defer` then `flush` until the counter is
//! reached), for one second, in turn, three times; it prints the mean time
//! per callback of each. The runner's rounds are 4096 callbacks, where the
//! round's end (a drain: a grace period and a hand-off with the reclaim
//! thread) weighs most; longer rounds show the cost per callback alone.
//! On the 2-CPU Intel VM (2026-12-02), ratios (crossbeam's time over
//! ours) of 0.70-0.78x at 4096, 0.68-0.82x at 100 000, 1.74-1.85x at
//! 1 000 000, and 1.05-1.08x at 4096 under `taskset -c 0` (the reclaim
//! thread's wake-ups on the idle CPU are what a short round pays).
//!
//! ```text
//! cargo run --release -p rcu-bench --example reclaim_rounds -- 4096 100000 1000000
//! ```

use rcu_bench::suites::grace_period::{call_rcu_round, defer_round};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Runs `round(n)` until a second has passed; the mean ns per callback.
fn per_callback(n: u64, mut round: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    let mut done = 0;
    while done == 0 || t.elapsed() < Duration::from_secs(1) {
        round(n);
        done += n;
    }
    t.elapsed().as_nanos() as f64 / done as f64
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("round sizes are numbers"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![4096, 100_000, 1_000_000]
    } else {
        sizes
    };
    for &n in &sizes {
        for _ in 0..3 {
            let ran: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
            let ours = per_callback(n, |n| call_rcu_round(ran, n));
            let ran: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
            let mut expected = 0;
            let peer = per_callback(n, |n| defer_round(ran, &mut expected, n));
            println!(
                "rounds of {n:>8}: call_rcu + drain {ours:6.2} ns, crossbeam defer + flush {peer:6.2} ns, ratio {:.2}x",
                peer / ours
            );
        }
    }
}
