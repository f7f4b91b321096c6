//! Soundness under unwinding and re-entrancy: user code (notifiers, stall
//! hooks, callbacks, closures and their drops) can never make a grace period
//! end early, kill the reclaim thread, or deadlock the engine.
//!
//! Its own test binary: several tests set hooks and panic on purpose.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{Holder, eventually, finishes};
use rcu_core::{Config, RcuCell, RcuDomain};
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the payload's drop panics (on purpose, test)");
        }
    }
}

fn panic_message<R>(r: std::thread::Result<R>) -> String {
    let e = r.err().expect("expected a panic");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A reader thread inside one critical section until told to leave.
struct Inside {
    leave: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Inside {
    fn enter(domain: &RcuDomain) -> Inside {
        let (leave, wait) = mpsc::channel();
        let (entered, is_in) = mpsc::channel();
        let domain = domain.clone();
        let thread = std::thread::spawn(move || {
            let reader = domain.register();
            let guard = reader.read_lock();
            entered.send(()).unwrap();
            let _ = wait.recv();
            drop(guard);
        });
        is_in.recv().unwrap();
        Inside {
            leave,
            thread: Some(thread),
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = self.leave.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_notifier_panicking_with_a_bomb_payload_cannot_end_grace_periods_early() {
    let domain = RcuDomain::new();
    let fired = Arc::new(AtomicBool::new(false));
    let (entered, is_in) = mpsc::channel();
    let a = {
        let (domain, fired) = (domain.clone(), Arc::clone(&fired));
        std::thread::spawn(move || {
            let reader = domain.register();
            let f = Arc::clone(&fired);
            let _n = reader.on_force_quiescent(move || {
                f.store(true, Ordering::SeqCst);
                panic_any(Bomb);
            });
            let guard = reader.read_lock();
            entered.send(()).unwrap();
            while !fired.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            drop(guard);
        })
    };
    is_in.recv().unwrap();
    // The notifier's panic (and its payload's panicking drop) stay inside
    // the engine: the expedited grace period returns normally.
    let r = catch_unwind(AssertUnwindSafe(|| domain.synchronize_expedited()));
    assert!(r.is_ok(), "a notifier's panic escaped the grace period");
    a.join().unwrap();

    // The sequence still tells the truth: a cookie taken while C is inside
    // does not poll true, and `synchronize_since` waits for C.
    let c = Inside::enter(&domain);
    let cookie = domain.cookie();
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (domain, done) = (domain.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            domain.synchronize_since(cookie);
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!domain.poll(cookie), "a grace period ended with C inside");
    assert!(
        !done.load(Ordering::SeqCst),
        "synchronize_since returned with C inside"
    );
    drop(c);
    waiter.join().unwrap();
    assert!(domain.poll(cookie));

    // And the expedite counter came down: a later grace period held up by a
    // reader is not forced "by expedite".
    let holder = Holder::start(&Arc::new(domain.clone()));
    let before = domain.stats().forced_by.expedite;
    let d2 = domain.clone();
    let t = std::thread::spawn(move || d2.synchronize());
    std::thread::sleep(Duration::from_millis(20));
    drop(holder);
    t.join().unwrap();
    assert_eq!(domain.stats().forced_by.expedite, before);
}

#[test]
fn panicking_callbacks_inside_a_chunk_skip_none_of_the_others() {
    // Callbacks run a chunk at a time under one catch; a panic must not lose
    // or repeat the callbacks after it in the chunk.
    let domain = RcuDomain::new();
    domain.set_event_hook(|_| {}); // quiet: 20 panics on purpose
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..60).map(|_| AtomicUsize::new(0)).collect());
    for i in 0..60 {
        let runs = Arc::clone(&runs);
        domain.call_rcu(move || {
            runs[i].fetch_add(1, Ordering::SeqCst);
            if i % 3 == 1 {
                panic!("callback {i} panics on purpose (test)");
            }
        });
    }
    let d = domain.clone();
    assert!(
        finishes(move || d.drain()),
        "drain hung: the callbacks after a panic in its chunk (the drain's marker among them) \
         were lost"
    );
    for (i, n) in runs.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::SeqCst),
            1,
            "callback {i} ran this many times"
        );
    }
    let s = domain.stats();
    assert_eq!(s.callback_panics, 20, "{s:?}");
    assert_eq!(s.callbacks_run, s.callbacks_queued, "{s:?}");
}

#[test]
fn a_callback_panicking_with_a_bomb_payload_leaves_the_reclaim_thread_running() {
    let domain = RcuDomain::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    domain.call_rcu(|| panic_any(Bomb));
    domain.call_rcu(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let d = domain.clone();
    assert!(
        finishes(move || d.drain()),
        "drain hung: the reclaim thread died"
    );
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "the rest of the batch was lost"
    );
    let s = domain.stats();
    assert_eq!(s.callback_panics, 1, "{s:?}");
    assert_eq!(s.callbacks_run, s.callbacks_queued, "{s:?}");
    // Still alive for later batches.
    let r = Arc::clone(&ran);
    domain.call_rcu(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    domain.drain();
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

/// Calls `rcu_core::stats()`-like engine entry points from its `Drop`.
struct TouchesTheEngine(RcuDomain);

impl Drop for TouchesTheEngine {
    fn drop(&mut self) {
        let _ = self.0.stats();
        let _reader = self.0.register();
    }
}

#[test]
fn a_notifier_dropped_at_thread_exit_may_call_into_the_engine() {
    let domain = RcuDomain::new();
    let d = domain.clone();
    assert!(
        finishes(move || {
            let t = std::thread::spawn(move || {
                let reader = d.register();
                let owned = TouchesTheEngine(d.clone());
                // Leaked on purpose: the registration's release drops it.
                std::mem::forget(reader.on_force_quiescent(move || {
                    let _ = &owned;
                }));
                drop(reader);
            });
            t.join().unwrap();
        }),
        "unregistering deadlocked on a notifier's drop"
    );
    let d = domain.clone();
    assert!(finishes(move || d.synchronize()));
}

#[test]
fn a_notifier_owning_another_handle_of_its_thread_can_be_dropped() {
    let domain = RcuDomain::new();
    assert!(finishes(move || {
        let reader = domain.register();
        let inner = reader.on_force_quiescent(|| {});
        let outer = reader.on_force_quiescent(move || {
            let _ = &inner;
        });
        drop(outer);
    }));
}

#[test]
fn a_reentrant_update_panics_instead_of_deadlocking() {
    let cell = Arc::new(RcuCell::new(1u32));
    let c = Arc::clone(&cell);
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        cell.update(|v| {
            drop(c.replace(5));
            v + 1
        })
    })));
    assert!(
        msg.contains("inside an update() closure of the same cell"),
        "{msg}"
    );
    // Nothing changed, and the cell works.
    assert_eq!(cell.get(), 1);
    drop(cell.update(|v| v + 1));
    assert_eq!(cell.get(), 2);
    // Other cells may be written from the closure.
    let other = RcuCell::new(0u32);
    drop(cell.update(|v| {
        drop(other.replace(7));
        *v
    }));
    assert_eq!(other.get(), 7);
}

#[test]
fn misuse_in_a_stall_hook_names_the_stall_hook() {
    let domain = RcuDomain::with_config(Config::default().stall_timeout(Duration::from_millis(5)));
    let (tx, rx) = mpsc::channel();
    let hook_domain = Arc::new(std::sync::Mutex::new(Some(domain.clone())));
    let hd = Arc::clone(&hook_domain);
    domain.set_stall_hook(move |_| {
        let d = hd.lock().unwrap().take();
        if let Some(d) = d {
            let _ = tx.send(panic_message(catch_unwind(AssertUnwindSafe(|| {
                d.synchronize()
            }))));
        }
    });
    let c = Inside::enter(&domain);
    let d = domain.clone();
    let t = std::thread::spawn(move || d.synchronize());
    let msg = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no stall reported");
    assert!(msg.contains("from an event hook"), "{msg}");
    drop(c);
    t.join().unwrap();
}

#[test]
fn waiting_for_another_domain_from_a_callback_is_refused_or_works() {
    let a = RcuDomain::new();
    let b = RcuDomain::new();
    let (tx, rx) = mpsc::channel();
    // drain() of another domain from a callback could wait for itself
    // through a chain of domains: refused.
    let b2 = b.clone();
    let tx2 = tx.clone();
    a.call_rcu(move || {
        let _ = tx2.send(panic_message(catch_unwind(AssertUnwindSafe(|| b2.drain()))));
    });
    let msg = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        msg.contains("drain() called from a call_rcu callback (of another domain)"),
        "{msg}"
    );
    // synchronize() of another domain works.
    let b3 = b.clone();
    a.call_rcu(move || {
        b3.synchronize();
        let _ = tx.send(String::from("synchronized"));
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        "synchronized"
    );
    // Dropping a domain's last handle from a callback (its own or another
    // one's) does not hang: the reclaim thread finishes on its own.
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    b.call_rcu(move || r.store(true, Ordering::SeqCst));
    a.call_rcu(move || drop(b));
    assert!(eventually(|| ran.load(Ordering::SeqCst)));
    let a2 = a.clone();
    a.call_rcu(move || drop(a2));
    assert!(finishes(move || a.drain()));
}

#[test]
fn pending_bytes_never_wrap_under_concurrent_producers() {
    let domain = RcuDomain::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..common::scaled(20_000, 50) {
                    domain.defer_drop_sized(i, 8);
                }
            });
        }
    });
    domain.drain();
    let s = domain.stats();
    let queued_bytes = s.callbacks_queued * 64;
    assert!(s.max_pending_bytes <= queued_bytes, "{s:?}");
    assert_eq!(s.callbacks_pending_bytes, 0, "{s:?}");
    assert_eq!(s.forced_by.memory, 0, "{s:?}");
}
