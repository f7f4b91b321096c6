//! Grace-period latency: `synchronize()` with idle readers and against a
//! reader running short critical sections back to back, and `call_rcu` to
//! callback latency.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn grace_period(c: &mut Criterion) {
    let mut g = c.benchmark_group("grace_period");
    rcu_core::register_thread();

    g.bench_function("synchronize, idle readers", |b| {
        b.iter(rcu_core::synchronize)
    });

    g.bench_function("call_rcu to callback, idle readers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (tx, rx) = mpsc::sync_channel(1);
                let start = Instant::now();
                rcu_core::call_rcu(move || tx.send(Instant::now()).unwrap());
                total += rx.recv().unwrap() - start;
            }
            total
        })
    });

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let guard = rcu_core::read_lock();
                black_box(&guard);
            }
        });
        g.bench_function("synchronize, one reader in short sections", |b| {
            b.iter(rcu_core::synchronize)
        });
        stop.store(true, Ordering::Relaxed);
    });
    g.finish();
}

criterion_group!(benches, grace_period);
criterion_main!(benches);
