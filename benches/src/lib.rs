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
