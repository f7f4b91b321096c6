//! Thread churn: a thousand short-lived reader threads while grace periods
//! run; their registrations are gone once they exit. (Its own test binary, so
//! the process-wide reader count is this test's alone.)

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::eventually;
use rcu_core::{RcuCell, RcuDomain, read_lock};
use std::sync::atomic::{AtomicBool, Ordering};

const THREADS: usize = if cfg!(miri) { 16 } else { 1000 };
const WAVE: usize = 8;

#[test]
fn short_lived_readers_unregister() {
    let baseline = rcu_core::stats().readers;
    let cell = RcuCell::new(0u64);
    let domain = RcuDomain::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                drop(cell.update(|v| v + 1));
                rcu_core::synchronize();
                domain.synchronize();
                n += 1;
            }
            n
        });
        for _ in 0..THREADS / WAVE {
            std::thread::scope(|wave| {
                for _ in 0..WAVE {
                    wave.spawn(|| {
                        for _ in 0..3 {
                            let g = read_lock();
                            std::hint::black_box(cell.read(&g));
                        }
                        let reader = domain.register();
                        drop(reader.read_lock());
                    });
                }
            });
        }
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
    });
    // `thread::scope` returns once the threads' closures are done, which
    // can be before their thread-local destructors (where the process-wide
    // registration is released) have run: wait for those, within the bound.
    assert!(
        eventually(|| rcu_core::stats().readers == baseline),
        "exited threads are still registered: {} readers, {baseline} before",
        rcu_core::stats().readers
    );
    assert_eq!(domain.stats().readers, 0);
    rcu_core::drain();
    let s = rcu_core::stats();
    assert_eq!(s.callbacks_run, s.callbacks_queued);
}
