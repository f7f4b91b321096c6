//! The `rcu-bench` head-to-head runner and the pieces the criterion benches
//! share with it.
//!
//! * [`harness`]: fixed-duration measurement. Every thread of a measurement
//!   runs for the same wall-clock time and counts its own operations, so a
//!   slow peer cannot stretch another thread's timing (as criterion's `iter`
//!   would when readers and writers share a measurement).
//! * [`suites`]: the groups of comparisons, one module each, registered in
//!   [`suites::GROUPS`] (its docs say how a structure crate adds its group).
//! * [`report`]: the results (serde), the table, Markdown, JSON, CSV and the
//!   comparison with a saved baseline; [`chart`]: the SVG charts (plotters).
//! * [`cli`]: the runner's flags (clap); [`output`]: where a run's files go.

pub mod chart;
pub mod cli;
pub mod harness;
pub mod output;
pub mod report;
pub mod suites;

use rcu_core::{Config, RcuDomain};
use std::hint::black_box;
use std::sync::{Arc, RwLock};

/// The key of index `i` in the map and radix groups and the examples:
/// splitmix64's finaliser, a bijection of `u64` (each step is invertible),
/// so distinct indices give distinct keys, spread as real ones are.
#[inline]
pub fn scramble(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64*: the examples' reproducible pseudo-random sequence
/// (advances `x`, which must not be 0, and returns the next number).
#[inline]
pub fn xorshift64star(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Mean nanoseconds per call of `f(i)` over `calls` indices `i` below `n`
/// (> 0), drawn by [`xorshift64star`] from a fixed seed, so every subject
/// timed with it sees the same sequence. The results are summed into a
/// black box, so the calls cannot be optimised away.
pub fn mean_ns_at_random(n: u64, calls: u32, mut f: impl FnMut(u64) -> u64) -> f64 {
    let mut x = 0x5ca1_ab1e_u64;
    let mut acc = 0u64;
    let t = std::time::Instant::now();
    for _ in 0..calls {
        acc = acc.wrapping_add(f(xorshift64star(&mut x) % n));
    }
    black_box(acc);
    t.elapsed().as_nanos() as f64 / f64::from(calls)
}

/// `n` lock/unlock pairs of the process-wide domain.
#[inline(never)]
pub fn rcu_pairs(n: u64) {
    for _ in 0..n {
        let g = rcu_core::read_lock();
        black_box(&g);
    }
}

/// `n` pin/unpin pairs of crossbeam-epoch's default collector.
#[inline(never)]
pub fn epoch_pairs(n: u64) {
    for _ in 0..n {
        let g = crossbeam_epoch::pin();
        black_box(&g);
    }
}

/// `n` nested lock/unlock pairs (an outer guard is held by the caller's
/// loop).
#[inline(never)]
pub fn rcu_nested_pairs(n: u64) {
    let outer = rcu_core::read_lock();
    for _ in 0..n {
        let g = rcu_core::read_lock();
        black_box(&g);
    }
    drop(outer);
}

/// `n` full config reads: lock, `RcuCell::read` (with its domain check),
/// deref, unlock.
#[inline(never)]
pub fn rcu_cell_reads(cell: &rcu_core::RcuCell<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let g = rcu_core::read_lock();
        sum = sum.wrapping_add(*cell.read(&g));
    }
    sum
}

/// `n` config reads as RCU code usually reads: one critical section per
/// [`suites::config::READS_PER_GUARD`] reads (the runner's batched config
/// row).
#[inline(never)]
pub fn rcu_cell_batched_reads(cell: &rcu_core::RcuCell<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    let mut left = n;
    while left > 0 {
        let batch = left.min(suites::config::READS_PER_GUARD);
        left -= batch;
        let g = rcu_core::read_lock();
        for _ in 0..batch {
            sum = sum.wrapping_add(*cell.read(&g));
        }
    }
    sum
}

/// `n` reads through arc-swap's `Cache` (a pointer compare each while the
/// value does not change): what the config rows compare against.
#[inline(never)]
pub fn arc_swap_cache_reads(
    cache: &mut arc_swap::Cache<&arc_swap::ArcSwap<u64>, Arc<u64>>,
    n: u64,
) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(**cache.load());
    }
    sum
}

/// `n` of the same reads through a bare `AtomicPtr` (no domain check): the
/// floor `rcu_cell_reads` is compared with.
#[inline(never)]
pub fn rcu_raw_reads(p: &std::sync::atomic::AtomicPtr<u64>, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let g = rcu_core::read_lock();
        // SAFETY: the probe's pointer is never freed while it runs.
        sum = sum.wrapping_add(unsafe { *p.load(std::sync::atomic::Ordering::Acquire) });
        drop(g);
    }
    sum
}

/// `n` take/drop pairs of the process-wide domain's owned (`Send`) guard.
#[inline(never)]
pub fn rcu_owned_pairs(n: u64) {
    for _ in 0..n {
        let g = rcu_core::read_lock_owned();
        black_box(&g);
    }
}

/// `n` `pin_owned`/drop pairs of a papaya map (its `Send` guard).
pub fn papaya_owned_pairs(map: &papaya::HashMap<u64, u64>) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = map.pin_owned();
            black_box(&g);
        }
    }
}

/// `n` iterations of the same loop with nothing in it: the floor.
#[inline(never)]
pub fn empty_pairs(n: u64) {
    for i in 0..n {
        black_box(i);
    }
}

/// A domain of its own that uses the `fence(SeqCst)` fallback.
pub fn fence_domain() -> Arc<RcuDomain> {
    Arc::new(RcuDomain::with_config(Config::default().membarrier(false)))
}

/// Lock/unlock pairs of `domain` on a reader registered by this call.
pub fn fence_pairs(domain: &RcuDomain) -> impl FnMut(u64) + '_ {
    let reader = domain.register();
    move |n| {
        for _ in 0..n {
            let g = reader.read_lock();
            black_box(&g);
        }
    }
}

/// Enter/leave pairs of a seize collector.
pub fn seize_pairs(collector: &seize::Collector) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = collector.enter();
            black_box(&g);
        }
    }
}

/// Loads of an `ArcSwap` (each a guard taken and dropped).
pub fn arc_swap_loads(swap: &arc_swap::ArcSwap<u64>) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = swap.load();
            black_box(**g);
        }
    }
}

/// Read locks of a `std::sync::RwLock` (taken and dropped).
pub fn rwlock_reads(lock: &RwLock<u64>) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = lock.read().unwrap();
            black_box(*g);
        }
    }
}
