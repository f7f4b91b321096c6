//! One `Guard` for every domain, the owned guard, domain-bound pointers and
//! the raw retire (`defer_free`).

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{DropCount, Token, block_on, eventually, finishes};
use rcu_core::{Guard, OwnedReadGuard, RcuCell, RcuDomain, RcuPtr, read_lock, read_lock_owned};
use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

assert_impl_all!(OwnedReadGuard: Send, Sync, Guard);
assert_impl_all!(rcu_core::ReadGuard: Guard);
assert_not_impl_any!(rcu_core::ReadGuard: Send, Sync);
assert_not_impl_any!(rcu_core::DomainGuard<'static>: Send);
assert_impl_all!(rcu_core::LocalReadGuard: Guard);
assert_not_impl_any!(rcu_core::LocalReadGuard: Send, Sync);
assert_impl_all!(RcuDomain: Send, Sync, Clone);

/// The generic reader every structure is written against.
fn read<G: Guard>(cell: &RcuCell<u64>, guard: &G) -> u64 {
    *cell.read(guard)
}

#[test]
fn one_generic_reader_works_with_every_guard_kind() {
    let global = RcuCell::new(1);
    assert_eq!(read(&global, &read_lock()), 1);
    assert_eq!(read(&global, &read_lock_owned()), 1);
    assert_eq!(
        read(&global, &RcuDomain::global().register().read_lock()),
        1
    );

    let domain = RcuDomain::new();
    let bound = RcuCell::new_in(2, &domain);
    let reader = domain.register();
    assert_eq!(read(&bound, &reader.read_lock()), 2);
    assert_eq!(read(&bound, &domain.read_lock_owned()), 2);
    assert_eq!(read(&bound, &domain.read_lock_local()), 2);
    let p = RcuPtr::new_in(3u64, &domain);
    assert_eq!(p.load(&domain.read_lock_owned()), Some(&3));
}

/// A local guard is a critical section tied to its thread, without a
/// registration: a wait for the domain's grace period on that thread while
/// it is held panics (as under a `DomainGuard`; under an owned guard, which
/// could be anywhere, it would wait forever), it holds up other threads'
/// grace periods, and once dropped nothing is held.
#[test]
fn a_local_guard_is_tied_to_its_thread() {
    let domain = Arc::new(RcuDomain::new());
    let cell = RcuCell::new_in(1u64, &domain);
    let guard = domain.read_lock_local();
    assert_eq!(read(&cell, &guard), 1);
    for wait in ["synchronize", "drain"] {
        let msg = panic_message(catch_unwind(AssertUnwindSafe(|| match wait {
            "synchronize" => domain.synchronize(),
            _ => domain.drain(),
        })));
        assert!(
            msg.contains("inside a read-side critical section"),
            "{wait}: {msg}"
        );
    }
    // Another thread's grace period waits for it.
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (domain, done) = (Arc::clone(&domain), Arc::clone(&done));
        std::thread::spawn(move || {
            domain.synchronize();
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !done.load(Ordering::SeqCst),
        "a grace period ended under a local guard"
    );
    drop(guard);
    waiter.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    // Dropped: this thread may wait again; its record went back to the pool
    // as an ordinary owned guard's (which does not count as this thread's).
    domain.synchronize();
    let owned = domain.read_lock_owned();
    std::thread::scope(|s| {
        s.spawn(|| drop(owned));
    });
    domain.synchronize();
}

fn panic_message<R>(r: std::thread::Result<R>) -> String {
    let e = r.err().expect("expected a panic");
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Pointers of the process-wide domain publish bare words, those of other
/// domains a tag bit where the type's alignment leaves it free: every API
/// hands values back untagged (zero-sized, alignment 1 and larger types), a
/// stale `compare_exchange` still fails, and every kind of guard of the
/// process-wide domain reads them.
#[test]
fn process_wide_pointers_of_every_alignment_read_and_write_back_untagged() {
    #[derive(Debug, PartialEq)]
    #[repr(align(8))]
    struct Zst8;
    let p = RcuPtr::new(Zst8);
    {
        let g = read_lock();
        assert_eq!(p.load(&g), Some(&Zst8));
        let old = p
            .compare_exchange(p.load(&g), Some(Zst8), &g)
            .expect("current");
        assert_eq!(old.as_deref(), Some(&Zst8));
    }
    assert_eq!(p.swap(None).map(|u| u.into_inner()), Some(Zst8));
    assert!(p.is_null());
    assert_eq!(p.load(&read_lock()), None);

    let unit = RcuPtr::new(());
    assert_eq!(unit.load(&read_lock()), Some(&()));
    assert_eq!(unit.into_inner(), Some(()));

    let byte = RcuCell::new(7u8);
    let word = RcuPtr::new(70u64);
    let global = RcuDomain::global();
    let reader = global.register();
    for round in 0..2u8 {
        let (b, w) = (7 + round, 70 + u64::from(round));
        assert_eq!(*byte.read(&read_lock()), b);
        assert_eq!(*byte.read(&reader.read_lock()), b);
        assert_eq!(*byte.read(&read_lock_owned()), b);
        assert_eq!(word.load(&read_lock()), Some(&w));
        assert_eq!(word.load(&reader.read_lock()), Some(&w));
        assert_eq!(word.load(&read_lock_owned()), Some(&w));
        let g = read_lock();
        // A stale expected value: refused, the value found given back.
        let stale = w + 100;
        let err = word
            .compare_exchange(Some(&stale), Some(0), &g)
            .expect_err("stale");
        assert_eq!((err.current, err.new), (Some(&w), Some(0)));
        let old = word
            .compare_exchange(word.load(&g), Some(w + 1), &g)
            .expect("current");
        assert_eq!(old.map(|u| *u), Some(w));
        drop(g);
        assert_eq!(*byte.update(|v| v + 1), b);
    }
    let mut byte = byte;
    *byte.get_mut() += 1;
    assert_eq!(byte.into_inner(), 10);
    let mut word = word;
    assert_eq!(word.get_mut(), Some(&mut 72));
    assert_eq!(word.into_inner(), Some(72));
}

/// A pointer of another domain tags its word even when null, so a
/// process-wide guard's fast path (which takes a bare word as its own)
/// refuses it: a null pointer made by `null_in`, or emptied by `swap`, is
/// refused as a full one is; its own domain's guard reads it as `None`, and
/// every writer API sees null as null.
#[test]
fn a_null_pointer_of_another_domain_is_refused_by_a_process_wide_guard() {
    let domain = RcuDomain::new();
    let reader = domain.register();
    let p = RcuPtr::<u64>::null_in(&domain);
    let refused = |p: &RcuPtr<u64>| {
        panic_message(catch_unwind(AssertUnwindSafe(|| {
            let _ = p.load(&read_lock());
        })))
    };
    assert!(refused(&p).contains("guard of another domain"));
    assert!(p.is_null());
    assert_eq!(p.load(&reader.read_lock()), None);
    {
        let g = reader.read_lock();
        let old = p
            .compare_exchange(None, Some(5), &g)
            .expect("null is current");
        assert!(old.is_none());
        assert_eq!(p.load(&g), Some(&5));
    }
    assert!(!p.is_null());
    assert!(refused(&p).contains("guard of another domain"));
    assert_eq!(p.swap(None).map(|u| u.into_inner()), Some(5));
    assert!(p.is_null());
    assert!(refused(&p).contains("guard of another domain"));
    let g = reader.read_lock();
    let err = p.compare_exchange(Some(&1), Some(6), &g).expect_err("null");
    assert_eq!((err.current, err.new), (None, Some(6)));
    drop(g);
    assert_eq!(p.into_inner(), None);
}

#[test]
fn a_guard_of_another_domain_is_refused() {
    let domain = RcuDomain::new();
    let bound = RcuCell::new_in(2u64, &domain);
    let global = RcuCell::new(1u64);
    // The process-wide guard on a domain's cell.
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        read(&bound, &read_lock())
    })));
    assert!(msg.contains("guard of another domain"), "{msg}");
    // A domain's guard on a process-wide cell.
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        read(&global, &domain.read_lock_owned())
    })));
    assert!(msg.contains("process-wide domain"), "{msg}");
    // Two independent domains.
    let other = RcuDomain::new();
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        read(&bound, &other.register().read_lock())
    })));
    assert!(msg.contains("guard of another domain"), "{msg}");
}

#[test]
fn an_owned_guard_moved_to_another_thread_holds_up_grace_periods_until_dropped_there() {
    let domain = RcuDomain::new();
    let guard = domain.read_lock_owned();
    let (give, take) = mpsc::channel::<OwnedReadGuard>();
    let (release, released) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let guard = take.recv().unwrap();
        released.recv().unwrap();
        drop(guard);
    });
    give.send(guard).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (domain, done) = (domain.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            domain.synchronize();
            done.store(true, Ordering::SeqCst);
        })
    };
    // Held: several polls pass and the grace period is still waiting.
    std::thread::sleep(Duration::from_millis(if cfg!(miri) { 200 } else { 50 }));
    assert!(
        !done.load(Ordering::SeqCst),
        "synchronize ignored the owned guard"
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    assert!(eventually(|| done.load(Ordering::SeqCst)));
    writer.join().unwrap();
}

#[test]
fn owned_guard_records_are_reused() {
    let domain = RcuDomain::new();
    for _ in 0..100 {
        drop(domain.read_lock_owned());
    }
    let alive: Vec<_> = (0..3).map(|_| domain.read_lock_owned()).collect();
    drop(alive);
    for _ in 0..100 {
        drop(domain.read_lock_owned());
    }
    // Three alive at most at once: three records (this thread's shard).
    assert!(domain.stats().readers <= 3, "{:?}", domain.stats().readers);
}

/// A value that knows whether it has been dropped, and counts drops.
struct Canary {
    alive: AtomicBool,
    _token: Token,
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

#[test]
fn defer_free_waits_for_readers_and_frees_once() {
    let domain = RcuDomain::new();
    let drops = DropCount::default();
    let slot = Arc::new(AtomicPtr::new(Box::into_raw(Box::new(Canary {
        alive: AtomicBool::new(true),
        _token: drops.token(),
    }))));
    let (entered, wait_entered) = mpsc::channel();
    let (leave, wait_leave) = mpsc::channel::<()>();
    let reader = {
        let (domain, slot) = (domain.clone(), Arc::clone(&slot));
        std::thread::spawn(move || {
            let guard = domain.read_lock_owned();
            // SAFETY: published below and retired only through
            // `defer_free`, which waits for this guard.
            let canary = unsafe { &*slot.load(Ordering::Acquire) };
            entered.send(()).unwrap();
            wait_leave.recv().unwrap();
            assert!(canary.alive.load(Ordering::SeqCst), "freed under a reader");
            drop(guard);
        })
    };
    wait_entered.recv().unwrap();
    let new = Box::into_raw(Box::new(Canary {
        alive: AtomicBool::new(true),
        _token: drops.token(),
    }));
    let old = slot.swap(new, Ordering::AcqRel);
    // SAFETY: `old` came from `Box::into_raw`, is unlinked (the swap above),
    // and is retired once; the reader uses this domain's guard.
    unsafe { domain.defer_free(old) };
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(drops.get(), 0, "dropped while a reader was inside");
    leave.send(()).unwrap();
    reader.join().unwrap();
    domain.drain();
    assert_eq!(drops.get(), 1);
    // SAFETY: the last pointer, never retired; no reader is left.
    drop(unsafe { Box::from_raw(slot.load(Ordering::Acquire)) });
    assert_eq!(drops.get(), 2);
}

#[test]
fn global_defer_free_drops_after_drain() {
    let drops = DropCount::default();
    let p = Box::into_raw(Box::new(drops.token()));
    // SAFETY: never published; retired once.
    unsafe { rcu_core::defer_free(p) };
    rcu_core::drain();
    assert_eq!(drops.get(), 1);
}

#[test]
fn a_domain_lives_while_data_bound_to_it_does() {
    let drops = DropCount::default();
    let cell = {
        let domain = RcuDomain::new();
        RcuCell::new_in(drops.token(), &domain)
        // The handle is dropped here; the cell keeps the domain.
    };
    drop(cell.replace(drops.token()));
    cell.domain().drain();
    assert_eq!(drops.get(), 1);
    drop(cell);
    assert_eq!(drops.get(), 2);
}

#[test]
fn into_inner_async_waits_for_a_grace_period() {
    let domain = RcuDomain::new();
    let cell = RcuCell::new_in(1u32, &domain);
    let guard = domain.read_lock_owned();
    let old = cell.replace(2);
    let finished = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&finished);
    let t = std::thread::spawn(move || {
        let v = block_on(old.into_inner_async());
        f.store(v as usize, Ordering::SeqCst);
    });
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "resolved under a reader"
    );
    drop(guard);
    t.join().unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert!(finishes(move || drop(cell)));
}

/// `in_critical_section` agrees with `synchronize`'s refusal to wait
/// inside one, whatever the guard of the process-wide domain: it looked at
/// `read_lock`'s record only, and said `false` under a `Reader`'s guard of
/// `RcuDomain::global()` and under a `LocalReadGuard`, where `synchronize`
/// panicked (a helper's attack).
#[test]
fn in_critical_section_sees_every_guard_of_the_process_wide_domain() {
    let global = RcuDomain::global();
    let reader = global.register();
    for kind in ["a Reader's guard", "a LocalReadGuard", "read_lock"] {
        let (inside, refused) = match kind {
            "a Reader's guard" => {
                let _g = reader.read_lock();
                let inside = rcu_core::in_critical_section();
                (inside, panic_message(catch_unwind(rcu_core::synchronize)))
            }
            "a LocalReadGuard" => {
                let _g = global.read_lock_local();
                let inside = rcu_core::in_critical_section();
                (inside, panic_message(catch_unwind(rcu_core::synchronize)))
            }
            _ => {
                let _g = read_lock();
                let inside = rcu_core::in_critical_section();
                (inside, panic_message(catch_unwind(rcu_core::synchronize)))
            }
        };
        assert!(
            refused.contains("inside a read-side critical section"),
            "{kind}: {refused}"
        );
        assert!(inside, "in_critical_section() said false under {kind}");
        assert!(!rcu_core::in_critical_section(), "after {kind}");
    }
    // Another domain's guard is not one of the process-wide domain's.
    let other = RcuDomain::new();
    let r = other.register();
    let _g = r.read_lock();
    assert!(!rcu_core::in_critical_section());
}

/// A `ReadGuard` kept in a thread-local that is destroyed after the
/// thread's registration: its thread is still inside a critical section
/// until the guard drops.
#[test]
fn in_critical_section_sees_a_guard_kept_past_the_registration() {
    struct Holder(
        Option<rcu_core::ReadGuard>,
        Option<mpsc::Sender<(bool, bool)>>,
    );
    impl Drop for Holder {
        fn drop(&mut self) {
            let inside = rcu_core::in_critical_section();
            drop(self.0.take());
            let after = rcu_core::in_critical_section();
            let _ = self.1.take().unwrap().send((inside, after));
        }
    }
    thread_local!(static HOLDER: std::cell::RefCell<Option<Holder>> = const { std::cell::RefCell::new(None) });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        HOLDER.with(|h| *h.borrow_mut() = Some(Holder(None, Some(tx))));
        // Registers the thread now, after `HOLDER`: its registration is
        // torn down first.
        let g = read_lock();
        HOLDER.with(|h| h.borrow_mut().as_mut().unwrap().0 = Some(g));
    })
    .join()
    .unwrap();
    assert_eq!(
        rx.recv().unwrap(),
        (true, false),
        "(inside while held, inside after)"
    );
}

/// Owned guards taken on one thread and dropped on another, one at a time,
/// reuse one record or a few: the taker takes the records its guards left
/// in the dropper's share of the pool before it makes new ones. It made a
/// record per guard before, all of them scanned by every grace period (a
/// reviewer's test: 10 000 records for 10 000 guards).
#[test]
fn owned_guards_handed_to_another_thread_reuse_their_records() {
    let domain = Arc::new(RcuDomain::new());
    let (to_dropper, guards) = mpsc::channel::<OwnedReadGuard>();
    let (to_taker, dropped) = mpsc::channel::<()>();
    let dropper = std::thread::spawn(move || {
        for g in guards {
            drop(g);
            to_taker.send(()).unwrap();
        }
    });
    let d = Arc::clone(&domain);
    let n = if cfg!(miri) { 50 } else { 2_000 };
    std::thread::spawn(move || {
        for _ in 0..n {
            to_dropper.send(d.read_lock_owned()).unwrap();
            dropped.recv().unwrap();
        }
    })
    .join()
    .unwrap();
    dropper.join().unwrap();
    let records = domain.stats().readers;
    assert!(
        records <= 2,
        "{records} records for {n} guards handed over one at a time"
    );
}

/// Threads taking their first owned guards of a domain at once, each with
/// its share of the pool empty, look in the others' shares: one at a time.
/// The first version looked while it still held its own share's lock, and
/// two threads each holding theirs and waiting for the other's deadlocked
/// (Miri found it in a map test).
#[test]
fn first_owned_guards_taken_at_once_never_deadlock() {
    assert!(
        finishes(|| {
            let threads = 8;
            for _ in 0..if cfg!(miri) { 2 } else { 300 } {
                let domain = RcuDomain::new();
                let start = std::sync::Barrier::new(threads);
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            start.wait();
                            for _ in 0..4 {
                                drop(domain.read_lock_owned());
                            }
                        });
                    }
                });
            }
        }),
        "threads taking owned guards at once deadlocked"
    );
}

/// A value whose `Debug` and `Clone` wait for a grace period of its domain
/// (`None`: the process-wide one), as a value that retires something and
/// waits for it might.
struct Waits(Option<RcuDomain>);

impl Waits {
    fn wait(&self) {
        match &self.0 {
            Some(domain) => domain.synchronize(),
            None => rcu_core::synchronize(),
        }
    }
}

impl std::fmt::Debug for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.wait();
        f.write_str("Waits")
    }
}

impl Clone for Waits {
    fn clone(&self) -> Self {
        self.wait();
        Waits(self.0.clone())
    }
}

/// Runs `op` on a helper thread and returns its panic message, or `None`
/// if it returned; fails if it is still running after `STALL_BOUND`.
fn panic_of(what: &str, op: impl FnOnce() + Send + 'static) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(op));
        let _ = tx.send(r.err().map(|e| panic_message::<()>(Err(e))));
    });
    rx.recv_timeout(common::STALL_BOUND)
        .unwrap_or_else(|_| panic!("{what} still waits: it waits for its own guard"))
}

/// The library's own reads that run user code (`Debug` of `RcuPtr` and
/// `RcuCell`, `RcuCell::get`'s clone) hold a guard tied to the thread, so a
/// wait for a grace period in that code panics as inside any thread-tied
/// guard. Under an owned guard, which the wait cannot see, they waited for
/// themselves forever.
#[test]
fn user_code_run_inside_the_librarys_reads_cannot_wait_for_its_own_grace_period() {
    for domain in [Some(RcuDomain::new()), None] {
        let (cell, ptr) = match &domain {
            Some(d) => (
                RcuCell::new_in(Waits(domain.clone()), d),
                RcuPtr::new_in(Waits(domain.clone()), d),
            ),
            None => (RcuCell::new(Waits(None)), RcuPtr::new(Waits(None))),
        };
        let (cell, ptr) = (Arc::new(cell), Arc::new(ptr));
        let c = Arc::clone(&cell);
        let cell_debug = panic_of("RcuCell's Debug", move || drop(format!("{c:?}")));
        let c = Arc::clone(&cell);
        let cell_get = panic_of("RcuCell::get", move || drop(c.get()));
        let p = Arc::clone(&ptr);
        let ptr_debug = panic_of("RcuPtr's Debug", move || drop(format!("{p:?}")));
        for (what, msg) in [
            ("RcuCell's Debug", cell_debug),
            ("RcuCell::get", cell_get),
            ("RcuPtr's Debug", ptr_debug),
        ] {
            let msg = msg.unwrap_or_else(|| panic!("{what} ({domain:?}): the wait returned"));
            assert!(
                msg.contains("critical section"),
                "{what} ({domain:?}) panicked otherwise: {msg}"
            );
        }
        // Outside the library's reads the same waits return.
        assert_eq!(format!("{:?}", Waits(domain.clone())), "Waits");
        drop(Waits(domain).clone());
    }
}
