//! Per-thread callback batches: `drain` covers callbacks still in another
//! thread's batch, in order; batches of exited threads still run; the
//! forcing threshold counts batched callbacks of every thread; and a
//! callback appended while another thread takes the batch out still runs
//! with nothing else happening; and callbacks queued by thread-local
//! destructors, after the thread's batches are gone, keep the thread's order
//! and their byte counts.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{Holder, OnDrop, config, eventually, scaled};
use rcu_core::RcuDomain;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const MANY: usize = 1 << 30;
const NEVER: u32 = u32::MAX;
const MINUTE: Duration = Duration::from_secs(60);

/// Starts a normal-state grace period that sleeps on `holder` until forced.
fn sleeping_grace_period(domain: &Arc<RcuDomain>) -> Holder {
    let holder = Holder::start(domain);
    domain.call_rcu(|| {});
    assert!(eventually(|| domain.stats().callbacks_pending == 1));
    holder
}

#[test]
fn drain_covers_callbacks_still_batched_in_another_live_thread() {
    // No count or poll ever forces; only the drain does. More callbacks than
    // one run chunk (256; 64 under Miri), so a marker queued ahead of them
    // would let `drain` return after the first chunk.
    let domain = Arc::new(RcuDomain::with_config(config(MANY, NEVER, MINUTE)));
    let holder = sleeping_grace_period(&domain);
    let n = scaled(300, 70);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let producer = {
        let (domain, ran, queued, release) = (
            Arc::clone(&domain),
            Arc::clone(&ran),
            Arc::clone(&queued),
            Arc::clone(&release),
        );
        std::thread::spawn(move || {
            for _ in 0..n {
                let ran = Arc::clone(&ran);
                domain.call_rcu(move || {
                    // Slow enough that the drain, were its marker queued
                    // ahead of these, would return while chunks remain.
                    std::thread::sleep(Duration::from_millis(1));
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
            queued.wait();
            // Alive, its batch not flushed by itself, while the drain runs.
            release.wait();
        })
    };
    queued.wait();
    domain.drain();
    assert_eq!(ran.load(Ordering::SeqCst), n, "{:?}", domain.stats());
    assert_eq!(holder.notifications(), 1);
    release.wait();
    producer.join().unwrap();
    let s = domain.stats();
    assert_eq!(s.callbacks_run, s.callbacks_queued, "{s:?}");
    assert_eq!(s.callbacks_pending, 0, "{s:?}");
}

#[test]
fn callbacks_batched_by_an_exited_thread_still_run() {
    let domain = Arc::new(RcuDomain::with_config(config(MANY, NEVER, MINUTE)));
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let (domain, ran) = (Arc::clone(&domain), Arc::clone(&ran));
        std::thread::spawn(move || {
            for _ in 0..5 {
                let ran = Arc::clone(&ran);
                domain.call_rcu(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
        .join()
        .unwrap();
    }
    // Without a drain: the reclaim thread harvests them on its own.
    assert!(eventually(|| ran.load(Ordering::SeqCst) == 15));
    domain.drain();
    // The drain's own marker is a callback too.
    let s = domain.stats();
    assert_eq!(s.callbacks_run, 16, "{s:?}");
    assert_eq!(s.callbacks_queued, 16, "{s:?}");
}

#[test]
fn the_threshold_counts_callbacks_batched_in_several_threads() {
    // Threshold 30, polls every 5 ms, never forced by polls: three threads
    // batch 12 callbacks each (each batch alone stays below the threshold),
    // and the sleeping grace period is forced for callbacks at its next
    // check, its holder notified.
    let domain = Arc::new(RcuDomain::with_config(config(
        30,
        NEVER,
        Duration::from_millis(5),
    )));
    let holder = sleeping_grace_period(&domain);
    let done = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (domain, done) = (Arc::clone(&domain), Arc::clone(&done));
            std::thread::spawn(move || {
                for _ in 0..12 {
                    domain.call_rcu(|| {});
                }
                done.wait();
                // Stay alive until the grace period is forced.
                done.wait();
            })
        })
        .collect();
    done.wait();
    assert!(
        eventually(|| domain.stats().forced_by.callbacks >= 1),
        "{:?}",
        domain.stats()
    );
    assert!(holder.notifications() >= 1);
    done.wait();
    for t in threads {
        t.join().unwrap();
    }
    domain.drain();
    // 1 + 36, and the drain's marker.
    let s = domain.stats();
    assert_eq!(s.callbacks_run, 38, "{s:?}");
}

#[test]
fn callbacks_appended_while_drains_take_the_batch_still_run_on_their_own() {
    // A producer appends while another thread drains in a loop, taking the
    // producer's batch out under its feet: an append may see the batch not
    // empty (a stale look at what was taken) and so not flag it. After the
    // round's last append the drainer stops, and nothing else happens: no
    // drain, no other call. Every round's last callback must still run (the
    // reclaim thread looks for such batches after each grace period). The
    // race is a few instructions wide: this checks the behaviour, it does
    // not force the interleaving.
    let domain = Arc::new(RcuDomain::with_config(config(MANY, NEVER, MINUTE)));
    let rounds = scaled(200, 5);
    for round in 0..rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drainer = {
            let (domain, stop) = (Arc::clone(&domain), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    domain.drain();
                }
            })
        };
        for _ in 0..scaled(500, 20) {
            domain.call_rcu(|| {});
        }
        // The last one races with the drainer's last take.
        let last = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&last);
        domain.call_rcu(move || flag.store(true, Ordering::SeqCst));
        stop.store(true, Ordering::Relaxed);
        drainer.join().unwrap();
        assert!(
            eventually(|| last.load(Ordering::SeqCst)),
            "round {round}: the last callback never ran: {:?}",
            domain.stats()
        );
    }
}

thread_local! {
    // Registered (first used) before the thread's first `call_rcu`, so its
    // destructor runs after the engine's per-thread batches are gone.
    static EARLY: std::cell::RefCell<OnDrop<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(OnDrop(None)) };
    // Registered after it: its destructor runs while the batch still exists.
    static LATE: std::cell::RefCell<OnDrop<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(OnDrop(None)) };
}

/// Every callback queued has run, and nothing is counted as pending.
fn assert_quiescent(domain: &RcuDomain, what: &str) {
    let s = domain.stats();
    assert_eq!(s.callbacks_run, s.callbacks_queued, "{what}: {s:?}");
    assert_eq!(s.callbacks_pending, 0, "{what}: {s:?}");
    assert_eq!(s.callbacks_pending_bytes, 0, "{what}: {s:?}");
}

#[test]
fn callbacks_queued_from_thread_local_destructors_keep_the_threads_order() {
    // A reader holds the first grace period, so nothing is harvested while
    // the thread exits; its last callback comes from a destructor that runs
    // after its batch is gone (it is queued alone) and must still run after
    // the ones its batch held. Found by a test written to break the batches.
    for round in 0..scaled(20, 2) {
        let domain = Arc::new(RcuDomain::with_config(config(MANY, NEVER, MINUTE)));
        let holder = Holder::start(&domain);
        domain.call_rcu(|| {});
        let log = Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
        let (d, l) = (Arc::clone(&domain), Arc::clone(&log));
        std::thread::spawn(move || {
            let (d1, l1) = (Arc::clone(&d), Arc::clone(&l));
            EARLY.with(|e| {
                e.borrow_mut().0 = Some(Box::new(move || {
                    d1.call_rcu(move || l1.lock().unwrap().push("early-dtor"));
                }))
            });
            for name in ["a", "b", "c"] {
                let l = Arc::clone(&l);
                d.call_rcu(move || l.lock().unwrap().push(name));
            }
            let (d2, l2) = (Arc::clone(&d), Arc::clone(&l));
            LATE.with(|e| {
                e.borrow_mut().0 = Some(Box::new(move || {
                    d2.call_rcu(move || l2.lock().unwrap().push("late-dtor"));
                }))
            });
        })
        .join()
        .unwrap();
        domain.drain();
        drop(holder);
        assert_eq!(
            *log.lock().unwrap(),
            ["a", "b", "c", "late-dtor", "early-dtor"],
            "round {round}: the thread's callbacks out of order"
        );
        assert_quiescent(&domain, "after the thread's exit");
    }
}

#[test]
fn a_huge_callback_queued_after_the_threads_batches_are_gone_leaves_no_bytes_behind() {
    // Queued alone (the thread's batches are gone), it must be counted as
    // the runner releases it: a callback counts for at most usize::MAX/256
    // bytes. Found by a test written to break the batches.
    let domain = Arc::new(RcuDomain::new());
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (d, flag) = (Arc::clone(&domain), Arc::clone(&dropped));
    std::thread::spawn(move || {
        let d1 = Arc::clone(&d);
        EARLY.with(|e| {
            e.borrow_mut().0 = Some(Box::new(move || {
                struct Flag(Arc<std::sync::atomic::AtomicBool>);
                impl Drop for Flag {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::SeqCst);
                    }
                }
                d1.defer_drop_sized(Flag(flag), usize::MAX / 2);
            }))
        });
        // The thread's batches are registered after EARLY.
        d.call_rcu(|| {});
    })
    .join()
    .unwrap();
    domain.drain();
    assert!(dropped.load(Ordering::SeqCst));
    assert_quiescent(&domain, "after a huge callback queued alone");
}

/// What a stream of `call_rcu` from one thread saw: the order its callbacks
/// ran in (each logs its number), and how many of them ran on the producer.
struct Stream {
    log: Arc<std::sync::Mutex<Vec<usize>>>,
    on_producer: Arc<AtomicUsize>,
    /// Callbacks the stream's callbacks queued that have run.
    nested: Arc<AtomicUsize>,
    queued: usize,
}

/// Queues callbacks from this thread, each of which logs its number, counts
/// itself if it runs on this thread, and queues a callback of its own (so
/// that a chunk this thread runs inside its `call_rcu` appends to the batch
/// that call is filling: a full ring's worth, under Miri too, as a chunk is
/// a batch), until `enough` holds, or `STALL_BOUND` has passed or a million
/// callbacks have been queued (what fails a test: the stream never saw it).
fn stream_until(domain: &Arc<RcuDomain>, mut enough: impl FnMut(&Stream) -> bool) -> Stream {
    let me = std::thread::current().id();
    let mut s = Stream {
        log: Arc::new(std::sync::Mutex::new(Vec::new())),
        on_producer: Arc::new(AtomicUsize::new(0)),
        nested: Arc::new(AtomicUsize::new(0)),
        queued: 0,
    };
    let deadline = std::time::Instant::now() + common::STALL_BOUND;
    while !enough(&s) && std::time::Instant::now() < deadline && s.queued < scaled(1 << 20, 1 << 13)
    {
        // A batch's worth between looks (the check takes the log's lock).
        for _ in 0..64 {
            let (log, on_producer, nested, d) = (
                Arc::clone(&s.log),
                Arc::clone(&s.on_producer),
                Arc::clone(&s.nested),
                Arc::clone(domain),
            );
            let i = s.queued;
            domain.call_rcu(move || {
                if std::thread::current().id() == me {
                    on_producer.fetch_add(1, Ordering::SeqCst);
                }
                log.lock().unwrap().push(i);
                d.call_rcu(move || {
                    nested.fetch_add(1, Ordering::SeqCst);
                });
            });
            s.queued += 1;
        }
    }
    s
}

/// By default a thread that keeps calling `call_rcu` runs its own callbacks
/// whose grace period has ended, inside its `call_rcu` (so it frees on its
/// own thread what it allocated there), in the order it queued them; a
/// callback that queues another from there lands in the batch being filled
/// (before the fix that moved the batch to the queue after running them, a
/// full chunk of such callbacks overfilled the ring). Before producers ran
/// their own, every callback ran on the reclaim thread and this stream
/// never ended.
#[test]
fn a_streaming_producer_runs_its_own_callbacks_in_order() {
    // No memory limit: a producer over it helps run callbacks (any
    // thread's) whatever `offload_callbacks` says.
    let domain = Arc::new(RcuDomain::with_config(
        rcu_core::Config::default().memory_limit(usize::MAX),
    ));
    let s = stream_until(&domain, |s| s.on_producer.load(Ordering::SeqCst) > 0);
    assert!(
        s.on_producer.load(Ordering::SeqCst) > 0,
        "none of {} callbacks ran on their producer",
        s.queued
    );
    domain.drain();
    domain.drain(); // the callbacks the last ones queued
    assert_eq!(*s.log.lock().unwrap(), (0..s.queued).collect::<Vec<_>>());
    assert_eq!(s.nested.load(Ordering::SeqCst), s.queued);
    assert_eq!(domain.stats().callbacks_pending, 0);
}

/// With `Config::offload_callbacks` (and no memory limit, over which
/// producers help), no callback of a stream runs on its producer, however long the stream (counted up to the drain, which may
/// run the last ones on this thread); the same stream runs some there by
/// default (the test above).
#[test]
fn offloaded_callbacks_never_run_on_their_producer() {
    let domain = Arc::new(RcuDomain::with_config(
        rcu_core::Config::default()
            .offload_callbacks(true)
            .memory_limit(usize::MAX),
    ));
    // Long enough that several of its batches have run meanwhile.
    let enough = scaled(16, 4) * 256;
    let s = stream_until(&domain, |s| s.log.lock().unwrap().len() >= enough);
    let on_producer = s.on_producer.load(Ordering::SeqCst);
    assert!(s.log.lock().unwrap().len() >= enough, "the stream stalled");
    domain.drain();
    domain.drain();
    assert_eq!(on_producer, 0, "callbacks ran on their producer");
    assert_eq!(*s.log.lock().unwrap(), (0..s.queued).collect::<Vec<_>>());
    assert_eq!(s.nested.load(Ordering::SeqCst), s.queued);
}

/// A producer that holds an owned guard of another domain, which it took,
/// runs none of its callbacks while it holds it: one of them may wait for a
/// grace period of that domain (`synchronize`, allowed in a callback of
/// another domain), which would wait for the producer's own guard. Before
/// the engine saw such guards, the producer ran its own ready callbacks at
/// a batch boundary and deadlocked in the first that did (a reviewer's
/// test, after 868 `call_rcu`s).
#[test]
fn a_producer_holding_another_domains_owned_guard_runs_no_callback() {
    let a = Arc::new(RcuDomain::with_config(
        rcu_core::Config::default().memory_limit(usize::MAX),
    ));
    let b = Arc::new(RcuDomain::new());
    let on_producer = Arc::new(AtomicUsize::new(0));
    let (a2, b2, on2) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&on_producer));
    assert!(
        common::finishes(move || {
            let me = std::thread::current().id();
            let guard = b2.read_lock_owned();
            // Long enough that batches come back ready (a few milliseconds).
            for _ in 0..scaled(200_000, 2_000) {
                let (b3, on3) = (Arc::clone(&b2), Arc::clone(&on2));
                a2.call_rcu(move || {
                    if std::thread::current().id() == me {
                        on3.fetch_add(1, Ordering::SeqCst);
                        b3.synchronize();
                    }
                });
            }
            drop(guard);
        }),
        "the producer deadlocked in a callback of its own"
    );
    a.drain();
    assert_eq!(on_producer.load(Ordering::SeqCst), 0);
    assert_eq!(a.stats().callbacks_pending, 0);
}

/// A job run by a thread-local's destructor.
type Job = OnDrop<Box<dyn FnOnce()>>;

thread_local! {
    /// An owned guard this thread took, held until its teardown.
    static HELD: std::cell::RefCell<Option<rcu_core::OwnedReadGuard>> =
        const { std::cell::RefCell::new(None) };
    /// A destructor that streams `call_rcu`.
    static PRODUCE: std::cell::RefCell<Option<Job>> =
        const { std::cell::RefCell::new(None) };
}

/// How many callbacks of a stream that a thread queues from a thread-local
/// destructor ran on that thread (it stops at the first). With `guard`,
/// the thread still holds an owned guard of another domain that it took,
/// in a thread-local destroyed after that destructor (thread-locals are
/// destroyed in the reverse order of their first use), while what the
/// engine keeps to see that guard (its first use came later) is destroyed
/// before it: a reviewer's layout.
fn own_callbacks_run_in_teardown(guard: bool) -> usize {
    let a = Arc::new(RcuDomain::with_config(
        rcu_core::Config::default().memory_limit(usize::MAX),
    ));
    let b = Arc::new(RcuDomain::new());
    let on_producer = Arc::new(AtomicUsize::new(0));
    let (a2, b2, on2) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&on_producer));
    std::thread::spawn(move || {
        HELD.with(|_| {}); // first used: destroyed last
        a2.call_rcu(|| {}); // the thread's batch, destroyed after PRODUCE
        let me = std::thread::current().id();
        let job: Box<dyn FnOnce()> = Box::new(move || {
            let deadline = std::time::Instant::now() + common::STALL_BOUND;
            for _ in 0..scaled(400_000, 4_000) {
                let on3 = Arc::clone(&on2);
                a2.call_rcu(move || {
                    if std::thread::current().id() == me {
                        on3.fetch_add(1, Ordering::SeqCst);
                    }
                });
                if on2.load(Ordering::SeqCst) > 0 || std::time::Instant::now() > deadline {
                    break;
                }
            }
        });
        PRODUCE.with(|p| *p.borrow_mut() = Some(OnDrop(Some(job))));
        if guard {
            HELD.with(|h| *h.borrow_mut() = Some(b2.read_lock_owned()));
        }
    })
    .join()
    .unwrap();
    a.drain();
    b.synchronize(); // the guard is gone with its thread
    on_producer.load(Ordering::SeqCst)
}

/// A producer runs its own callbacks from its thread-local destructors too
/// (what makes the next test mean something).
#[test]
#[cfg_attr(miri, ignore = "a stream long enough for a batch to come back")]
fn a_producer_runs_its_own_callbacks_in_its_thread_local_destructors() {
    assert!(own_callbacks_run_in_teardown(false) > 0);
}

/// ... but not while it holds an owned guard it took, even once the
/// engine's record of its guards is gone: it cannot tell then, and does not
/// run them. It ran them before (255 in a reviewer's run; with a callback
/// waiting for the guard's domain, a deadlock).
#[test]
fn a_producer_holding_an_owned_guard_runs_none_in_its_teardown() {
    assert_eq!(own_callbacks_run_in_teardown(true), 0);
}
