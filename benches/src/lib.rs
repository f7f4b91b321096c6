//! Shared pieces of the `rcu-bench` benchmarks: the workloads each
//! benchmark measures, written once so the criterion benches and the
//! instruction-count probe measure the same code.

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
