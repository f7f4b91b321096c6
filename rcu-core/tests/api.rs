//! The public API: misuse panics, callbacks, pointers, configuration.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{DropCount, eventually, scaled};
use rcu_core::{Config, ConfigError, RcuCell, RcuDomain, RcuPtr, read_lock};
use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

assert_not_impl_any!(rcu_core::ReadGuard: Send, Sync);
assert_not_impl_any!(rcu_core::DomainGuard<'static>: Send, Sync);
assert_not_impl_any!(rcu_core::Reader<'static>: Send, Sync);
assert_impl_all!(RcuDomain: Send, Sync);
assert_impl_all!(RcuPtr<String>: Send, Sync);
assert_impl_all!(RcuCell<Vec<u8>>: Send, Sync);
assert_impl_all!(rcu_core::Unlinked<String>: Send, Sync);
assert_impl_all!(rcu_core::NotifierHandle: Send, Sync);

fn panic_message(r: std::thread::Result<()>) -> String {
    let e = r.expect_err("expected a panic");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn waiting_inside_a_critical_section_panics() {
    let calls: [(&str, fn()); 3] = [
        ("synchronize", rcu_core::synchronize),
        ("synchronize_expedited", rcu_core::synchronize_expedited),
        ("drain", rcu_core::drain),
    ];
    for (name, f) in calls {
        let guard = read_lock();
        let msg = panic_message(catch_unwind(f));
        assert!(
            msg.contains("inside a read-side critical section"),
            "{name}: {msg}"
        );
        assert!(msg.contains(name), "{name}: {msg}");
        drop(guard);
        f(); // fine outside
    }
}

#[test]
fn waiting_inside_a_nested_domain_critical_section_panics() {
    let domain = RcuDomain::new();
    let reader = domain.register();
    let outer = reader.read_lock();
    let inner = reader.read_lock();
    drop(outer); // out of order: still inside
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| domain.synchronize())));
    assert!(msg.contains("inside a read-side critical section"), "{msg}");
    drop(inner);
    domain.synchronize();
    // Another domain's critical section does not block this one.
    let other = RcuDomain::new();
    let _g = reader.read_lock();
    other.synchronize();
}

#[test]
fn waiting_inside_a_callback_panics() {
    let (tx, rx) = mpsc::channel();
    let calls: [fn(); 3] = [
        rcu_core::synchronize,
        rcu_core::synchronize_expedited,
        rcu_core::drain,
    ];
    for f in calls {
        let tx = tx.clone();
        rcu_core::call_rcu(move || {
            tx.send(panic_message(catch_unwind(f))).unwrap();
        });
    }
    rcu_core::drain();
    for _ in 0..3 {
        let msg = rx.recv().unwrap();
        assert!(msg.contains("from a call_rcu callback"), "{msg}");
    }
}

#[test]
fn panicking_callback_is_reported_and_reclaim_goes_on() {
    let domain = RcuDomain::new();
    let ran = Arc::new(AtomicBool::new(false));
    domain.call_rcu(|| panic!("callback panic on purpose (test)"));
    let r = Arc::clone(&ran);
    domain.call_rcu(move || r.store(true, Ordering::SeqCst));
    domain.drain();
    assert!(ran.load(Ordering::SeqCst));
    let s = domain.stats();
    assert_eq!(s.callback_panics, 1, "{s:?}");
    assert_eq!(s.callbacks_run, s.callbacks_queued, "{s:?}");
}

#[test]
fn callbacks_run_once_in_order_per_producer() {
    let domain = RcuDomain::new();
    const PRODUCERS: usize = scaled(4, 2);
    const EACH: usize = scaled(500, 10);
    let seen: Arc<std::sync::Mutex<Vec<Vec<usize>>>> =
        Arc::new(std::sync::Mutex::new(vec![Vec::new(); PRODUCERS]));
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (domain, seen) = (&domain, Arc::clone(&seen));
            s.spawn(move || {
                for i in 0..EACH {
                    let seen = Arc::clone(&seen);
                    domain.call_rcu(move || seen.lock().unwrap()[p].push(i));
                }
            });
        }
    });
    domain.drain();
    let seen = seen.lock().unwrap();
    for per in seen.iter() {
        assert_eq!(*per, (0..EACH).collect::<Vec<_>>());
    }
}

#[test]
fn deferred_values_are_all_dropped_after_drain() {
    let drops = DropCount::default();
    let n = scaled(1000, 40);
    for _ in 0..n {
        rcu_core::defer_drop(drops.token());
    }
    rcu_core::drain();
    assert_eq!(drops.get(), n);
}

#[test]
fn domain_drop_runs_pending_callbacks() {
    let drops = DropCount::default();
    let domain = RcuDomain::new();
    let n = scaled(100, 10);
    for _ in 0..n {
        domain.defer_drop(drops.token());
    }
    drop(domain);
    assert_eq!(drops.get(), n);
}

#[test]
fn rcu_ptr_load_store_swap_cas() {
    let p = RcuPtr::new(1u64);
    let g = read_lock();
    assert_eq!(p.load(&g), Some(&1));
    drop(g);
    p.store(Some(2));
    let old = p.swap(Some(3)).unwrap();
    assert_eq!(*old, 2);
    assert_eq!(old.into_inner(), 2);
    let g = read_lock();
    let cur = p.load(&g);
    // Wrong expectation: fails, gives the value back.
    let err = p.compare_exchange(None, Some(9), &g).unwrap_err();
    assert_eq!((err.current, err.new), (cur, Some(9)));
    // Right expectation: succeeds.
    let unlinked = p.compare_exchange(cur, Some(4), &g).unwrap().unwrap();
    assert_eq!(*unlinked, 3);
    assert_eq!(p.load(&g), Some(&4));
    drop(g);
    assert_eq!(p.take().map(|u| u.into_inner()), Some(4));
    assert!(p.is_null());
    assert_eq!(p.into_inner(), None);
}

#[test]
fn rcu_ptr_drops_its_value_and_deferred_ones() {
    let drops = DropCount::default();
    let p = RcuPtr::new(drops.token());
    p.store(Some(drops.token()));
    p.store(Some(drops.token()));
    drop(p);
    rcu_core::drain();
    assert_eq!(drops.get(), 3);
}

/// A value that knows whether it has been dropped.
struct Canary {
    alive: AtomicBool,
    value: usize,
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

#[test]
fn rcu_cell_readers_never_see_a_dropped_value() {
    let cell = RcuCell::new(Canary {
        alive: AtomicBool::new(true),
        value: 0,
    });
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let started = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                started.fetch_add(1, Ordering::Relaxed);
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let g = read_lock();
                    let c = cell.read(&g);
                    assert!(c.alive.load(Ordering::SeqCst), "read a reclaimed value");
                    assert!(c.value >= last, "went back in time");
                    last = c.value;
                    drop(g);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The updates race with both readers reading, not with threads
        // still starting (CI's ThreadSanitizer self-check once saw the
        // updates end before the readers ran, and a broken engine pass).
        while started.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let updates = scaled(2000, 30);
        for i in 1..=updates {
            let old = cell.update(|old| Canary {
                alive: AtomicBool::new(true),
                value: old.value + 1,
            });
            assert_eq!(old.value, i - 1);
            if i % 10 == 0 {
                drop(old.into_inner()); // synchronous reclaim
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(cell.get_value(), scaled(2000, 30));
    assert!(reads.load(Ordering::Relaxed) > 0);
}

/// `synchronize` (here inside `Unlinked::into_inner`) does not return while
/// a reader that loaded the old value is still inside its critical section.
///
/// Deterministic, for ThreadSanitizer's self-check in `.ci/run` as much as
/// for this assertion: the handshake is `Relaxed` both ways, which gives
/// ThreadSanitizer no happens-before edge from the reader's read of the old
/// value to the writer's free. Only the engine's own ordering (the reader's
/// unlock, read by the grace period) may order them; a broken engine frees
/// under the reader, and ThreadSanitizer reports the free racing the read
/// every time, whatever the schedule.
#[test]
fn synchronize_waits_for_a_reader_holding_the_old_value() {
    let cell = RcuCell::new(Canary {
        alive: AtomicBool::new(true),
        value: 7,
    });
    // Relaxed (all three): a handshake that must order nothing (above).
    let read = AtomicBool::new(false);
    let waiting = AtomicBool::new(false);
    let returned = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let g = read_lock();
            let old = cell.read(&g);
            assert!(old.alive.load(Ordering::SeqCst));
            assert_eq!(old.value, 7);
            read.store(true, Ordering::Relaxed);
            assert!(
                eventually(|| waiting.load(Ordering::Relaxed)),
                "the writer never reached its grace period"
            );
            // The writer is at (or in) its grace period. A sound one waits
            // for us however long we stay; a broken one returns within
            // microseconds.
            let stay = Instant::now() + Duration::from_millis(scaled(300, 50) as u64);
            while Instant::now() < stay && !returned.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                !returned.load(Ordering::Relaxed),
                "a grace period ended under a reader inside its critical section"
            );
            drop(g);
        });
        assert!(eventually(|| read.load(Ordering::Relaxed)));
        let old = cell.update(|old| Canary {
            alive: AtomicBool::new(true),
            value: old.value + 1,
        });
        waiting.store(true, Ordering::Relaxed);
        let old = old.into_inner();
        returned.store(true, Ordering::Relaxed);
        assert_eq!(old.value, 7);
    });
    assert_eq!(cell.get_value(), 8);
}

trait GetValue {
    fn get_value(&self) -> usize;
}
impl GetValue for RcuCell<Canary> {
    fn get_value(&self) -> usize {
        self.read(&read_lock()).value
    }
}

#[test]
fn rcu_cell_update_panic_leaves_the_value() {
    let cell = RcuCell::new(5);
    let r = catch_unwind(AssertUnwindSafe(|| {
        cell.update(|_| panic!("update panic on purpose (test)"));
    }));
    assert!(r.is_err());
    assert_eq!(cell.get(), 5);
    drop(cell.replace(6));
    assert_eq!(cell.get(), 6);
    assert_eq!(cell.into_inner(), 6);
}

#[test]
fn configure_after_start_is_an_error() {
    drop(read_lock()); // the global domain has started
    assert_eq!(
        rcu_core::configure(Config::default()),
        Err(ConfigError::AlreadyStarted)
    );
    let e = rcu_core::configure(Config::default().callback_threshold(0)).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid(_)), "{e}");
    assert!(
        ConfigError::AlreadyStarted
            .to_string()
            .contains("already started")
    );
}

#[test]
#[should_panic(expected = "callback_threshold")]
fn invalid_domain_config_panics() {
    let _ = RcuDomain::with_config(Config::default().callback_threshold(0));
}

#[test]
fn notifier_handle_drop_unregisters() {
    let domain = Arc::new(RcuDomain::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let t = {
        let (domain, calls) = (Arc::clone(&domain), Arc::clone(&calls));
        std::thread::spawn(move || {
            let reader = domain.register();
            let c = Arc::clone(&calls);
            let handle = reader.on_force_quiescent(move || {
                c.fetch_add(1, Ordering::SeqCst);
            });
            drop(handle);
            let _g = reader.read_lock();
            ready_tx.send(()).unwrap();
            rx.recv().unwrap(); // leave when told
        })
    };
    ready_rx.recv().unwrap();
    let d = Arc::clone(&domain);
    let sync = std::thread::spawn(move || d.synchronize_expedited());
    // The grace period is forced and waiting on the reader, whose notifier
    // was removed: it is never called.
    assert!(eventually(|| domain.stats().heavy_barriers >= 2));
    tx.send(()).unwrap();
    sync.join().unwrap();
    t.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(domain.stats().notifier_calls, 0);
}

#[test]
fn quiescent_is_refused_while_nested() {
    let mut outer = read_lock();
    let inner = read_lock();
    assert!(!outer.quiescent());
    drop(inner);
    assert!(outer.quiescent());
    assert!(rcu_core::in_critical_section());
    drop(outer);
    assert!(!rcu_core::in_critical_section());
}

/// `read_lock` from a thread-local destructor that runs after the thread's
/// RCU registration was torn down still protects, and grace periods go on.
#[test]
fn read_lock_in_a_late_thread_local_destructor() {
    struct Late(mpsc::Sender<bool>);
    impl Drop for Late {
        fn drop(&mut self) {
            let cell = RcuCell::new(7u32);
            let g = read_lock();
            let ok = *cell.read(&g) == 7 && rcu_core::in_critical_section();
            drop(g);
            drop(cell.replace(8));
            let _ = self.0.send(ok);
        }
    }
    thread_local!(static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Registered first, so destroyed after the RCU registration.
        LATE.with(|l| *l.borrow_mut() = Some(Late(tx)));
        drop(read_lock());
    })
    .join()
    .unwrap();
    assert!(rx.recv().unwrap());
    rcu_core::synchronize();
    rcu_core::drain();
}
