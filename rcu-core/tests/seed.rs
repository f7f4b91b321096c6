//! The seed's behaviours: prompt grace periods, a quiet normal state, the
//! four forcing conditions with their notifiers, and no stalls.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{Holder, config, eventually, finishes, scaled};
use rcu_core::RcuDomain;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const NEVER: u32 = u32::MAX;
const MANY: usize = 1 << 30;

#[test]
fn first_callback_starts_an_unforced_grace_period_at_once() {
    let domain = RcuDomain::new();
    let reader = domain.register();
    drop(reader.read_lock()); // a registered reader, outside any critical section
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    domain.call_rcu(move || r.store(true, Ordering::SeqCst));
    assert!(
        eventually(|| ran.load(Ordering::SeqCst)),
        "callback never ran"
    );
    let s = domain.stats();
    assert_eq!(s.grace_periods, 1, "{s:?}");
    assert_eq!(s.forced_grace_periods, 0, "{s:?}");
    // No 10 ms sleep happened: the grace period started as soon as the
    // callback arrived and found no reader to wait for.
    assert_eq!(s.polls, 0, "{s:?}");
    assert_eq!(s.callbacks_run, 1, "{s:?}");
}

#[test]
fn normal_state_never_makes_readers_signal() {
    let domain = Arc::new(RcuDomain::new());
    let stop = Arc::new(AtomicBool::new(false));
    let sections = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (domain, stop, sections) = (
            Arc::clone(&domain),
            Arc::clone(&stop),
            Arc::clone(&sections),
        );
        std::thread::spawn(move || {
            let reader = domain.register();
            while !stop.load(Ordering::Relaxed) {
                let g = reader.read_lock();
                std::hint::black_box(&g);
                drop(g);
                sections.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    assert!(eventually(|| sections.load(Ordering::Relaxed) > 0));
    let calls = scaled(200, 10);
    for _ in 0..calls {
        domain.synchronize();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let s = domain.stats();
    assert_eq!(s.grace_periods, calls as u64, "{s:?}");
    assert_eq!(s.reader_wakeups, 0, "{s:?}");
    assert_eq!(s.forced_grace_periods, 0, "{s:?}");
    assert!(sections.load(Ordering::Relaxed) > 0);
}

/// Two readers hold the grace period up; each notifier fires exactly once.
fn assert_both_notified_once(a: &Holder, b: &Holder) {
    assert!(eventually(
        || a.notifications() >= 1 && b.notifications() >= 1
    ));
    assert_eq!((a.notifications(), b.notifications()), (1, 1));
}

#[test]
fn forced_by_pending_callbacks() {
    let domain = Arc::new(RcuDomain::with_config(config(
        30,
        NEVER,
        Duration::from_millis(10),
    )));
    let (a, b) = (Holder::start(&domain), Holder::start(&domain));
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..30 {
        let ran = Arc::clone(&ran);
        domain.call_rcu(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    assert!(
        eventually(|| ran.load(Ordering::SeqCst) == 30),
        "{:?}",
        domain.stats()
    );
    assert_both_notified_once(&a, &b);
    let s = domain.stats();
    assert_eq!(s.forced_by.callbacks, 1, "{s:?}");
    assert_eq!(s.forced_grace_periods, 1, "{s:?}");
}

#[test]
fn forced_after_max_polls() {
    let domain = Arc::new(RcuDomain::with_config(config(
        MANY,
        5,
        Duration::from_millis(2),
    )));
    let (a, b) = (Holder::start(&domain), Holder::start(&domain));
    assert!(finishes({
        let d = Arc::clone(&domain);
        move || d.synchronize()
    }));
    assert_both_notified_once(&a, &b);
    let s = domain.stats();
    assert_eq!(s.forced_by.polls, 1, "{s:?}");
    assert_eq!(s.forced_grace_periods, 1, "{s:?}");
    assert_eq!(s.polls, 5, "{s:?}");
    assert!(s.reader_wakeups <= 2, "{s:?}");
}

#[test]
fn forced_by_drain() {
    let domain = Arc::new(RcuDomain::with_config(config(
        MANY,
        NEVER,
        Duration::from_millis(10),
    )));
    let (a, b) = (Holder::start(&domain), Holder::start(&domain));
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    domain.call_rcu(move || r.store(true, Ordering::SeqCst));
    assert!(finishes({
        let d = Arc::clone(&domain);
        move || d.drain()
    }));
    assert!(ran.load(Ordering::SeqCst));
    assert_both_notified_once(&a, &b);
    let s = domain.stats();
    assert_eq!(s.forced_by.drain, 1, "{s:?}");
    assert_eq!(s.forced_grace_periods, 1, "{s:?}");
}

#[test]
fn forced_by_expedite() {
    let domain = Arc::new(RcuDomain::with_config(config(
        MANY,
        NEVER,
        Duration::from_millis(10),
    )));
    let (a, b) = (Holder::start(&domain), Holder::start(&domain));
    assert!(finishes({
        let d = Arc::clone(&domain);
        move || d.synchronize_expedited()
    }));
    assert_both_notified_once(&a, &b);
    let s = domain.stats();
    assert_eq!(s.forced_by.expedite, 1, "{s:?}");
    assert_eq!(s.expedited_grace_periods, 1, "{s:?}");
    assert_eq!(s.forced_grace_periods, 1, "{s:?}");
}

/// A normal-state grace period that would sleep a minute per poll is cut
/// short by each forcing condition arriving mid-sleep.
fn sleeping_grace_period(domain: &Arc<RcuDomain>) -> Holder {
    let holder = Holder::start(domain);
    domain.call_rcu(|| {});
    // The reclaim thread's grace period is now (or soon) asleep on the holder.
    assert!(eventually(|| domain.stats().callbacks_pending == 1));
    std::thread::sleep(Duration::from_millis(20));
    holder
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn drain_interrupts_the_normal_state_sleep() {
    let domain = Arc::new(RcuDomain::with_config(config(MANY, 5, MINUTE)));
    let holder = sleeping_grace_period(&domain);
    let d = Arc::clone(&domain);
    assert!(finishes(move || d.drain()), "{:?}", domain.stats());
    assert_eq!(holder.notifications(), 1);
    assert_eq!(domain.stats().forced_by.drain, 1);
}

#[test]
fn expedite_interrupts_the_normal_state_sleep() {
    let domain = Arc::new(RcuDomain::with_config(config(MANY, 5, MINUTE)));
    let holder = sleeping_grace_period(&domain);
    let d = Arc::clone(&domain);
    assert!(
        finishes(move || d.synchronize_expedited()),
        "{:?}",
        domain.stats()
    );
    assert_eq!(holder.notifications(), 1);
    assert_eq!(domain.stats().forced_by.expedite, 1);
}

#[test]
fn callback_threshold_interrupts_the_normal_state_sleep() {
    let domain = Arc::new(RcuDomain::with_config(config(30, 5, MINUTE)));
    let holder = sleeping_grace_period(&domain);
    for _ in 0..29 {
        domain.call_rcu(|| {});
    }
    assert!(
        eventually(|| domain.stats().callbacks_run == 30),
        "{:?}",
        domain.stats()
    );
    assert_eq!(holder.notifications(), 1);
    assert_eq!(domain.stats().forced_by.callbacks, 1);
}

/// A reader that lives inside critical sections, stepping out only when its
/// notifier asks, never stalls call_rcu, drain or synchronize (the global
/// domain, through the thread-local fast path).
#[test]
fn long_reader_with_notifier_never_stalls_reclamation() {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let asked = Arc::new(AtomicBool::new(false));
            let a = Arc::clone(&asked);
            let _n = rcu_core::on_force_quiescent(move || a.store(true, Ordering::SeqCst));
            let mut guard = rcu_core::read_lock();
            tx.send(()).unwrap();
            while !stop.load(Ordering::SeqCst) {
                if asked.swap(false, Ordering::SeqCst) {
                    assert!(guard.quiescent());
                }
                std::hint::spin_loop();
            }
        })
    };
    rx.recv().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    rcu_core::call_rcu(move || r.store(true, Ordering::SeqCst));
    assert!(
        eventually(|| ran.load(Ordering::SeqCst)),
        "call_rcu stalled"
    );
    assert!(finishes(rcu_core::drain), "drain stalled");
    assert!(finishes(rcu_core::synchronize), "synchronize stalled");
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "how much sharing happens depends on the scheduler; Miri's is not an OS's"
)]
fn concurrent_synchronize_callers_share_grace_periods() {
    const THREADS: usize = 8;
    const CALLS: usize = 100;
    let domain = RcuDomain::new();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..CALLS {
                    domain.synchronize();
                }
            });
        }
    });
    let s = domain.stats();
    eprintln!(
        "{} callers x {} calls: {} grace periods",
        THREADS, CALLS, s.grace_periods
    );
    assert!(s.grace_periods >= CALLS as u64, "{s:?}");
    assert!(
        s.grace_periods <= (THREADS * CALLS / 2) as u64,
        "too little sharing: {s:?}"
    );
}
