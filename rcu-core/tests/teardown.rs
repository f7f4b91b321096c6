//! Thread-local teardown in any order: a thread's record is released when
//! its last guard drops, whichever destructor runs first, and the engine's
//! calls never abort the process from a thread-local destructor.
//!
//! One test, so no other test of this binary registers threads while the
//! registered readers are counted.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

use rcu_core::ReadGuard;
use std::cell::RefCell;

thread_local! {
    /// A user thread-local holding a guard.
    static KEEP: RefCell<Option<ReadGuard>> = const { RefCell::new(None) };
    /// A user thread-local whose destructor reads, after the engine's.
    static LATE: Late = const { Late };
}

struct Late;

impl Drop for Late {
    fn drop(&mut self) {
        // After the thread's registration is gone.
        for _ in 0..3 {
            let outer = rcu_core::read_lock();
            let inner = rcu_core::read_lock();
            drop(outer); // any order
            drop(inner);
        }
        let mut g = rcu_core::read_lock();
        assert!(g.quiescent());
        drop(g);
        // Registers nothing now; no panic (which would abort here).
        let handle = rcu_core::on_force_quiescent(|| {});
        drop(handle);
        rcu_core::register_thread();
    }
}

fn readers() -> usize {
    rcu_core::stats().readers
}

fn run_threads(n: usize, body: fn()) {
    let threads: Vec<_> = (0..n).map(|_| std::thread::spawn(body)).collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn records_are_released_whatever_the_teardown_order() {
    rcu_core::register_thread();
    let baseline = readers();
    let n = if cfg!(miri) { 3 } else { 200 };

    // (a) A guard kept in a thread-local destroyed after the registration:
    // initialising `KEEP` first makes its destructor run last. Before the
    // fix each thread left its record registered forever.
    run_threads(n, || {
        KEEP.with(|k| assert!(k.borrow().is_none()));
        let guard = rcu_core::read_lock();
        KEEP.with(|k| *k.borrow_mut() = Some(guard));
    });
    assert_eq!(
        readers(),
        baseline,
        "records left by guards in thread-locals"
    );
    rcu_core::synchronize(); // nobody holds it up

    // (b) read_lock (nested, quiescent), on_force_quiescent and
    // register_thread from a destructor that runs after the registration.
    // Before the fix each thread leaked a record (and on_force_quiescent
    // panicked there, aborting the process).
    run_threads(n, || {
        LATE.with(|_| {});
        drop(rcu_core::read_lock());
    });
    assert_eq!(readers(), baseline, "records left by late read_locks");
    rcu_core::synchronize();

    // Records are reused: none of that grew the registry for good.
    run_threads(4, || drop(rcu_core::read_lock()));
    assert_eq!(readers(), baseline);
}
