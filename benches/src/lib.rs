//! The `rcu-bench` head-to-head runner and the pieces the criterion benches
//! share with it.
//!
//! * [`harness`]: fixed-duration measurement. Every thread of a measurement
//!   runs for the same wall-clock time and counts its own operations, so a
//!   slow peer cannot stretch another thread's timing (as criterion's `iter`
//!   would when readers and writers share a measurement).
//! * [`suites`]: the groups of comparisons (read side, grace periods).
//! * [`report`]: the table, JSON, CSV and SVG outputs.

pub mod harness;
pub mod report;
pub mod suites;

use std::hint::black_box;

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
