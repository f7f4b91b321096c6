//! Read-side cost: a lock/unlock pair against crossbeam-epoch's pin/unpin,
//! in membarrier and fence modes, idle and with a writer in a
//! `synchronize()` loop.

use criterion::{Criterion, criterion_group, criterion_main};
use rcu_core::{Config, RcuDomain};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

fn read_side(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_side");
    g.bench_function("empty loop", |b| b.iter(|| black_box(0u64)));
    g.bench_function("rcu read_lock (membarrier)", |b| {
        rcu_core::register_thread();
        b.iter(|| {
            let guard = rcu_core::read_lock();
            black_box(&guard);
        })
    });
    let fence = RcuDomain::with_config(Config::default().membarrier(false));
    let reader = fence.register();
    g.bench_function("rcu read_lock (fence fallback)", |b| {
        b.iter(|| {
            let guard = reader.read_lock();
            black_box(&guard);
        })
    });
    g.bench_function("crossbeam_epoch pin", |b| {
        b.iter(|| {
            let guard = crossbeam_epoch::pin();
            black_box(&guard);
        })
    });
    g.bench_function("rcu read_lock nested", |b| {
        let _outer = rcu_core::read_lock();
        b.iter(|| {
            let guard = rcu_core::read_lock();
            black_box(&guard);
        })
    });
    drop(reader);

    // The normal state must not slow readers down: a writer in a
    // synchronize() loop on the other core.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                rcu_core::synchronize();
            }
        });
        g.bench_function("rcu read_lock (membarrier) + synchronize loop", |b| {
            b.iter(|| {
                let guard = rcu_core::read_lock();
                black_box(&guard);
            })
        });
        stop.store(true, Ordering::Relaxed);
    });
    g.finish();
}

criterion_group!(benches, read_side);
criterion_main!(benches);
