//! Adversarial review of the engine's public promises (written by a
//! reviewer to break it): grace periods against every guard kind (nested,
//! out of order, moved, leaked, in several domains at once), misuse,
//! callbacks exactly once, drains, domain shutdown, cookies, forced
//! quiescent states, pointers, async forms, configuration bounds and
//! statistics. Three failed before their fixes: dropping a domain's last
//! handle under a local guard of it hung (two tests), and a `stats()`
//! snapshot could show more callbacks run than queued.
//!
//! Each test that could hang runs its body under a watchdog, so a hang shows
//! as a failure.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain; the sizes and
// watchdogs here are for native runs, not Miri's.
#![cfg(not(any(rcu_loom, miri)))]

use rcu_core::{Config, ConfigError, Guard, RcuCell, RcuDomain, RcuEvent, RcuPtr, read_lock};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `f` on its own thread; fails if it does not finish within `limit`
/// (the thread is left behind), re-raises its panic otherwise.
fn watchdog<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("attack-{what}"))
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .unwrap();
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: did not finish within {limit:?} (hang)"),
    }
}

fn panic_message<R>(r: std::thread::Result<R>) -> String {
    let e = match r {
        Ok(_) => panic!("expected a panic"),
        Err(e) => e,
    };
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Polls `cond` until it holds or `limit` passes.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    cond()
}

fn block_on<F: Future>(f: F) -> F::Output {
    use std::task::Wake;
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(Duration::from_millis(50));
    }
}

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    f.poll(&mut cx)
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn spin(n: u32) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// A value that counts its drops.
struct Val {
    v: u64,
    drops: Arc<AtomicUsize>,
}

impl Val {
    fn new(v: u64, drops: &Arc<AtomicUsize>) -> Val {
        Val {
            v,
            drops: Arc::clone(drops),
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// A table of canary states: a value's state goes ALIVE -> DEAD when it is
/// dropped. Readers check the state by id (never touching freed memory), so
/// a grace period that ends early shows as a DEAD id read under a guard.
const ALIVE: u8 = 1;
const DEAD: u8 = 2;

struct Table {
    states: Vec<AtomicU8>,
    next: AtomicUsize,
    double_drops: AtomicUsize,
}

impl Table {
    fn new(n: usize) -> Arc<Table> {
        Arc::new(Table {
            states: (0..n).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicUsize::new(0),
            double_drops: AtomicUsize::new(0),
        })
    }
    fn make(self: &Arc<Self>) -> Option<Canary> {
        let id = self.next.fetch_add(1, SeqCst);
        if id >= self.states.len() {
            self.next.fetch_sub(1, SeqCst);
            return None;
        }
        self.states[id].store(ALIVE, SeqCst);
        Some(Canary {
            id,
            table: Arc::clone(self),
        })
    }
    fn alive(&self, id: usize) -> bool {
        self.states[id].load(SeqCst) == ALIVE
    }
    fn dead(&self) -> usize {
        self.states
            .iter()
            .filter(|s| s.load(SeqCst) == DEAD)
            .count()
    }
}

struct Canary {
    id: usize,
    table: Arc<Table>,
}

impl Drop for Canary {
    fn drop(&mut self) {
        if self.table.states[self.id].swap(DEAD, SeqCst) != ALIVE {
            self.table.double_drops.fetch_add(1, SeqCst);
        }
    }
}

/// A thread that enters a critical section with `enter` (which returns what
/// keeps it open), reports, and leaves when released.
struct Held {
    release: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Held {
    fn start<G: 'static>(enter: impl FnOnce() -> G + Send + 'static) -> Held {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let g = enter();
            ready_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(g);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("holder did not enter");
        Held {
            release,
            thread: Some(thread),
        }
    }
    fn release(mut self) {
        let _ = self.release.send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f` on a thread; the flag says when it returned.
fn background(f: impl FnOnce() + Send + 'static) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&done);
    let t = thread::spawn(move || {
        f();
        d.store(true, SeqCst);
    });
    (done, t)
}

fn collect_events(domain: &RcuDomain) -> Arc<Mutex<Vec<RcuEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    domain.set_event_hook(move |ev| e.lock().unwrap().push(ev.clone()));
    events
}

// ---------------------------------------------------------------------------
// Grace-period guarantees
// ---------------------------------------------------------------------------

/// Readers in three domains at once (process-wide, a membarrier domain, a
/// fence-mode domain), with nested guards dropped out of order, owned and
/// local guards, and quiescent states, against writers that replace values
/// (deferred and synchronous) and run grace periods: no reader ever finds
/// a value it read under a still-open critical section dropped, and every
/// value is dropped exactly once.
#[test]
fn canaries_survive_nested_out_of_order_guards_in_three_domains() {
    watchdog("canaries", Duration::from_secs(30), || {
        let table = Table::new(1 << 17);
        let da = RcuDomain::new();
        let db = RcuDomain::with_config(Config::default().membarrier(false));
        let cg = RcuCell::new(table.make().unwrap());
        let ca = RcuCell::new_in(table.make().unwrap(), &da);
        let cb = RcuCell::new_in(table.make().unwrap(), &db);
        let stop = AtomicBool::new(false);
        let violations = AtomicUsize::new(0);
        let reads = AtomicUsize::new(0);
        let first_violation = Mutex::new(None::<String>);
        let check = |id: usize, what: &str| {
            if !table.alive(id) {
                violations.fetch_add(1, SeqCst);
                first_violation
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{what}: canary {id} dropped under a guard"));
            }
        };
        thread::scope(|s| {
            for r in 0..3u64 {
                let (cg, ca, cb, da, db, stop, reads, check) =
                    (&cg, &ca, &cb, &da, &db, &stop, &reads, &check);
                s.spawn(move || {
                    let reader_a = da.register();
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((r + 1) * 7919);
                    while !stop.load(SeqCst) {
                        let x = xorshift(&mut rng);
                        match x % 6 {
                            0 => {
                                let g1 = read_lock();
                                let id1 = cg.read(&g1).id;
                                let g2 = read_lock();
                                let id2 = cg.read(&g2).id;
                                spin(200);
                                drop(g1);
                                spin(200);
                                check(id1, "global, outer dropped first");
                                check(id2, "global, inner");
                                drop(g2);
                            }
                            1 => {
                                let g1 = reader_a.read_lock();
                                let id1 = ca.read(&g1).id;
                                let g2 = reader_a.read_lock();
                                let id2 = ca.read(&g2).id;
                                spin(200);
                                drop(g1);
                                spin(200);
                                check(id1, "domain, outer dropped first");
                                check(id2, "domain, inner");
                                drop(g2);
                            }
                            2 => {
                                let o = db.read_lock_owned();
                                let id1 = cb.read(&o).id;
                                let l = db.read_lock_local();
                                let id2 = cb.read(&l).id;
                                spin(200);
                                drop(o);
                                spin(200);
                                check(id2, "fence domain, local guard");
                                drop(l);
                                let _ = id1;
                            }
                            3 => {
                                let g = read_lock();
                                let ga = reader_a.read_lock();
                                let ob = db.read_lock_owned();
                                let ids = [cg.read(&g).id, ca.read(&ga).id, cb.read(&ob).id];
                                let mut slots = (Some(g), Some(ga), Some(ob));
                                spin(300);
                                let orders = [
                                    [0, 1, 2],
                                    [0, 2, 1],
                                    [1, 0, 2],
                                    [1, 2, 0],
                                    [2, 0, 1],
                                    [2, 1, 0],
                                ];
                                let order = orders[((x >> 8) % 6) as usize];
                                for k in order {
                                    match k {
                                        0 => drop(slots.0.take()),
                                        1 => drop(slots.1.take()),
                                        _ => drop(slots.2.take()),
                                    }
                                    spin(100);
                                    if slots.0.is_some() {
                                        check(ids[0], "three domains: global");
                                    }
                                    if slots.1.is_some() {
                                        check(ids[1], "three domains: domain");
                                    }
                                    if slots.2.is_some() {
                                        check(ids[2], "three domains: fence owned");
                                    }
                                }
                            }
                            4 => {
                                let mut g = read_lock();
                                let id = cg.read(&g).id;
                                spin(200);
                                check(id, "global before quiescent");
                                assert!(g.quiescent());
                                let id2 = cg.read(&g).id;
                                spin(200);
                                check(id2, "global after quiescent");
                                drop(g);
                                let mut ga = reader_a.read_lock();
                                let id = ca.read(&ga).id;
                                spin(200);
                                check(id, "domain before quiescent");
                                assert!(ga.quiescent());
                                let id2 = ca.read(&ga).id;
                                spin(200);
                                check(id2, "domain after quiescent");
                            }
                            _ => thread::yield_now(),
                        }
                        reads.fetch_add(1, SeqCst);
                    }
                });
            }
            for w in 0..2u64 {
                let (cg, ca, cb, da, db, stop, table) = (&cg, &ca, &cb, &da, &db, &stop, &table);
                s.spawn(move || {
                    let mut rng = 0xDEAD_BEEF_u64 + w;
                    while !stop.load(SeqCst) {
                        let x = xorshift(&mut rng);
                        let Some(new) = table.make() else { break };
                        match x % 10 {
                            0 => drop(cg.replace(new)),
                            1 => drop(ca.replace(new)),
                            2 => drop(cb.replace(new)),
                            3 => drop(cg.update(|_| new)),
                            4 => drop(ca.replace(new).into_inner()),
                            5 => drop(cb.replace(new).into_inner()),
                            6 => drop(cg.replace(new).into_inner()),
                            7 => {
                                drop(new);
                                match (x >> 8) % 4 {
                                    0 => rcu_core::synchronize(),
                                    1 => da.synchronize_expedited(),
                                    2 => db.synchronize(),
                                    _ => db.synchronize_expedited(),
                                }
                            }
                            8 => {
                                drop(new);
                                if (x >> 8).is_multiple_of(16) {
                                    match (x >> 12) % 3 {
                                        0 => da.drain(),
                                        1 => db.drain(),
                                        _ => rcu_core::drain(),
                                    }
                                }
                            }
                            _ => {
                                let old = ca.replace(new);
                                let old2 = cb.replace(table.make().unwrap_or_else(|| {
                                    stop.store(true, SeqCst);
                                    // A value to publish anyway.
                                    loop {
                                        thread::yield_now();
                                        if let Some(c) = table.make() {
                                            break c;
                                        }
                                    }
                                }));
                                drop(old2);
                                drop(old);
                            }
                        }
                    }
                });
            }
            thread::sleep(Duration::from_secs(2));
            stop.store(true, SeqCst);
        });
        da.drain();
        db.drain();
        rcu_core::drain();
        let created = table.next.load(SeqCst);
        assert_eq!(
            violations.load(SeqCst),
            0,
            "{:?}",
            first_violation.lock().unwrap()
        );
        assert_eq!(table.double_drops.load(SeqCst), 0, "values dropped twice");
        assert!(reads.load(SeqCst) > 100, "readers barely ran");
        assert_eq!(
            table.dead(),
            created - 3,
            "every replaced value dropped once after drain (3 still published)"
        );
        drop((cg, ca, cb));
        assert_eq!(
            table.dead(),
            created,
            "published values dropped with their cells"
        );
    });
}

/// `synchronize` does not return while a reader that entered before it is
/// inside, for every guard kind, including nested guards whose outer guard
/// was dropped first, an owned guard moved to another thread, a local
/// guard, and a fence-mode domain.
#[test]
fn synchronize_waits_for_every_kind_of_preexisting_reader() {
    watchdog("sync-kinds", Duration::from_secs(40), || {
        let membar = Arc::new(RcuDomain::new());
        let fence = Arc::new(RcuDomain::with_config(Config::default().membarrier(false)));
        type Enter = Box<dyn FnOnce() -> Box<dyn std::any::Any> + Send>;
        let mut cases: Vec<(&str, Option<Arc<RcuDomain>>, Enter)> = Vec::new();
        cases.push(("global ReadGuard", None, Box::new(|| Box::new(read_lock()))));
        cases.push((
            "global nested, outer dropped first",
            None,
            Box::new(|| {
                let g1 = read_lock();
                let g2 = read_lock();
                drop(g1);
                Box::new(g2)
            }),
        ));
        cases.push((
            "global owned guard on another thread",
            None,
            Box::new(|| {
                let g = rcu_core::read_lock_owned();
                // Moved to, and held by, a third thread.
                let (tx, rx) = mpsc::channel::<()>();
                let t = thread::spawn(move || {
                    let _ = rx.recv();
                    drop(g);
                });
                Box::new(DropJoin(Some(tx), Some(t)))
            }),
        ));
        for (name, d) in [("membarrier", &membar), ("fence", &fence)] {
            let d1 = Arc::clone(d);
            cases.push((
                if name == "fence" {
                    "fence DomainGuard nested OOO"
                } else {
                    "DomainGuard nested OOO"
                },
                Some(Arc::clone(d)),
                Box::new(move || {
                    // The reader must outlive its guards: leak it (one per
                    // case; `Reader` borrows the domain, which we keep).
                    let d: &'static RcuDomain = Box::leak(Box::new((*d1).clone()));
                    let r: &'static rcu_core::Reader<'static> = Box::leak(Box::new(d.register()));
                    let g1 = r.read_lock();
                    let g2 = r.read_lock();
                    drop(g1);
                    Box::new(g2)
                }),
            ));
            let d2 = Arc::clone(d);
            cases.push((
                if name == "fence" {
                    "fence owned guard moved"
                } else {
                    "owned guard moved"
                },
                Some(Arc::clone(d)),
                Box::new(move || {
                    let g = d2.read_lock_owned();
                    let (tx, rx) = mpsc::channel::<()>();
                    let t = thread::spawn(move || {
                        let _ = rx.recv();
                        drop(g);
                    });
                    Box::new(DropJoin(Some(tx), Some(t)))
                }),
            ));
            let d3 = Arc::clone(d);
            cases.push((
                if name == "fence" {
                    "fence local guard"
                } else {
                    "local guard"
                },
                Some(Arc::clone(d)),
                Box::new(move || Box::new(d3.read_lock_local())),
            ));
        }
        for (name, domain, enter) in cases {
            let held = Held::start(enter);
            let (done, waiter) = background(move || match domain {
                Some(d) => d.synchronize(),
                None => rcu_core::synchronize(),
            });
            thread::sleep(Duration::from_millis(120));
            assert!(
                !done.load(SeqCst),
                "{name}: synchronize returned while a reader that entered before it was inside"
            );
            held.release();
            assert!(
                eventually(Duration::from_secs(5), || done.load(SeqCst)),
                "{name}: synchronize did not return after the reader left"
            );
            waiter.join().unwrap();
        }
    });
}

/// Drops the sender (releasing the thread that holds an owned guard), then
/// joins it: the guard is dropped when this is.
struct DropJoin(Option<mpsc::Sender<()>>, Option<thread::JoinHandle<()>>);

impl Drop for DropJoin {
    fn drop(&mut self) {
        drop(self.0.take());
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

/// While a reader that entered first stays inside: a callback does not run,
/// neither a plain nor a started cookie completes, and a `synchronize_async`
/// future stays pending, even once the grace period is forced (no notifier
/// answers). All complete once it leaves.
#[test]
fn callbacks_cookies_and_futures_wait_for_a_preexisting_reader() {
    watchdog("cb-cookie-future", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::new());
        let d1 = Arc::clone(&d);
        let held = Held::start(move || {
            let d: &'static RcuDomain = Box::leak(Box::new((*d1).clone()));
            let r: &'static rcu_core::Reader<'static> = Box::leak(Box::new(d.register()));
            r.read_lock()
        });
        let c = d.cookie();
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        d.call_rcu(move || r.store(true, SeqCst));
        let c2 = d.start_poll();
        let mut fut = Box::pin(d.synchronize_async());
        assert!(poll_once(fut.as_mut()).is_pending());
        // Past `max_polls` (5 x 10 ms): the grace period is forced by now.
        thread::sleep(Duration::from_millis(150));
        assert!(
            !ran.load(SeqCst),
            "callback ran inside a reader's critical section"
        );
        assert!(
            !d.poll(c),
            "cookie completed inside a reader's critical section"
        );
        assert!(
            !d.poll(c2),
            "start_poll cookie completed inside a reader's critical section"
        );
        assert!(
            poll_once(fut.as_mut()).is_pending(),
            "future resolved early"
        );
        // The running grace period has passed `max_polls` (so it is forced:
        // stats count forced grace periods only once they end).
        assert!(eventually(Duration::from_secs(5), || d.stats().polls >= 5));
        thread::sleep(Duration::from_millis(20));
        assert!(
            !ran.load(SeqCst),
            "callback ran inside a reader's critical section"
        );
        assert!(
            !d.poll(c) && !d.poll(c2),
            "cookie completed inside a reader's critical section"
        );
        let s = d.stats();
        assert_eq!(s.callbacks_run, 0, "{s:?}");
        assert_eq!(s.grace_periods, 0, "{s:?}");
        held.release();
        block_on(fut);
        assert!(eventually(Duration::from_secs(5), || ran.load(SeqCst)));
        assert!(d.poll(c) && d.poll(c2));
    });
}

/// A cookie taken while a grace period is already running names the *next*
/// one: a reader that entered during the running one (after its counter
/// flip) and before the cookie still protects what the cookie's taker
/// unpublished. Then `start_poll` alone (nobody calls `synchronize`)
/// completes it once that reader leaves.
#[test]
fn a_cookie_taken_during_a_running_grace_period_waits_for_the_next_one() {
    watchdog("cookie-mid-gp", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::with_config(
            Config::default()
                .max_polls(u32::MAX)
                .poll_interval(Duration::from_millis(2)),
        ));
        let enter = |d: &Arc<RcuDomain>| {
            let d1 = Arc::clone(d);
            Held::start(move || {
                let d: &'static RcuDomain = Box::leak(Box::new((*d1).clone()));
                let r: &'static rcu_core::Reader<'static> = Box::leak(Box::new(d.register()));
                r.read_lock()
            })
        };
        let a = enter(&d);
        let c0 = d.cookie();
        let d2 = Arc::clone(&d);
        let (gp1_done, x) = background(move || d2.synchronize());
        // Grace period 1 is running once it has polled.
        assert!(eventually(Duration::from_secs(5), || d.stats().polls > 0));
        assert!(!d.poll(c0));
        let r = enter(&d); // enters during grace period 1
        let c = d.cookie();
        a.release();
        assert!(
            eventually(Duration::from_secs(5), || gp1_done.load(SeqCst)),
            "GP 1 did not end"
        );
        x.join().unwrap();
        assert!(d.poll(c0), "GP 1 ended: c0 must be complete");
        assert!(
            !d.poll(c),
            "a cookie taken during GP 1 was completed by GP 1, while a reader that \
             entered before the cookie is still inside"
        );
        let c2 = d.start_poll();
        thread::sleep(Duration::from_millis(100));
        assert!(!d.poll(c), "completed while the reader is inside");
        assert!(!d.poll(c2), "completed while the reader is inside");
        r.release();
        assert!(
            eventually(Duration::from_secs(5), || d.poll(c) && d.poll(c2)),
            "start_poll did not drive a grace period"
        );
        // A completed cookie: synchronize_since returns at once, even inside
        // a critical section.
        let reader = d.register();
        let _g = reader.read_lock();
        d.synchronize_since(c);
    });
}

/// `quiescent` on the only remaining guard (after an outer one was dropped
/// first) lets a grace period that started before it end, but a grace
/// period that starts after it still waits for the guard: process-wide,
/// membarrier and fence-mode domains.
#[test]
fn quiescent_ends_earlier_grace_periods_only() {
    watchdog("quiescent", Duration::from_secs(30), || {
        // Independent domains only: the process-wide one is shared with
        // this binary's other tests, whose guards may hold its grace
        // periods past this test's bounds (it failed once so in a loaded
        // run). The quiescent state is the same code on every domain.
        for kind in ["membarrier", "fence"] {
            let d = Arc::new(match kind {
                "fence" => RcuDomain::with_config(Config::default().membarrier(false)),
                _ => RcuDomain::new(),
            });
            let (ready_tx, ready_rx) = mpsc::channel::<()>();
            let (quiesce_tx, quiesce_rx) = mpsc::channel::<()>();
            let (ack_tx, ack_rx) = mpsc::channel::<bool>();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let d1 = Arc::clone(&d);
            let holder = thread::spawn(move || {
                let body = |q: &mut dyn FnMut() -> bool| {
                    ready_tx.send(()).unwrap();
                    quiesce_rx.recv().unwrap();
                    ack_tx.send(q()).unwrap();
                    release_rx.recv().unwrap();
                };
                let r = d1.register();
                let g1 = r.read_lock();
                let mut g2 = r.read_lock();
                drop(g1);
                body(&mut || g2.quiescent());
                drop(g2);
            });
            ready_rx.recv().unwrap();
            let sync = {
                let d = Arc::clone(&d);
                move || d.synchronize()
            };
            let (done1, w1) = background(sync.clone());
            thread::sleep(Duration::from_millis(100));
            assert!(
                !done1.load(SeqCst),
                "{kind}: GP ended inside the critical section"
            );
            quiesce_tx.send(()).unwrap();
            assert!(
                ack_rx.recv().unwrap(),
                "{kind}: quiescent() refused with one guard left"
            );
            assert!(
                eventually(Duration::from_secs(5), || done1.load(SeqCst)),
                "{kind}: a GP that began before quiescent() did not end after it"
            );
            w1.join().unwrap();
            let (done2, w2) = background(sync);
            thread::sleep(Duration::from_millis(100));
            assert!(
                !done2.load(SeqCst),
                "{kind}: a GP that began after quiescent() ended while the guard is held"
            );
            release_tx.send(()).unwrap();
            assert!(eventually(Duration::from_secs(5), || done2.load(SeqCst)));
            w2.join().unwrap();
            holder.join().unwrap();
        }
    });
}

/// A thread inside critical sections of three domains at once (a
/// `DomainGuard`, a `ReadGuard`, an owned guard): waiting on a fourth
/// domain works; waiting on the first two panics; other threads' waits on
/// each domain end exactly when that domain's guard is dropped.
#[test]
fn readers_in_several_domains_at_once_hold_each_domain_separately() {
    watchdog("several-domains", Duration::from_secs(30), || {
        let a = Arc::new(RcuDomain::new());
        let b = Arc::new(RcuDomain::with_config(Config::default().membarrier(false)));
        let c = RcuDomain::new();
        let reader_a = a.register();
        let ga = reader_a.read_lock();
        let gg = read_lock();
        let ob = b.read_lock_owned();
        c.synchronize();
        c.drain();
        c.synchronize_expedited();
        let msg = panic_message(catch_unwind(AssertUnwindSafe(|| a.synchronize())));
        assert!(msg.contains("inside a read-side critical section"), "{msg}");
        let msg = panic_message(catch_unwind(rcu_core::synchronize));
        assert!(msg.contains("inside a read-side critical section"), "{msg}");
        let (da, wa) = background({
            let a = Arc::clone(&a);
            move || a.synchronize()
        });
        let (dg, wg) = background(rcu_core::synchronize);
        let (db, wb) = background({
            let b = Arc::clone(&b);
            move || b.synchronize()
        });
        thread::sleep(Duration::from_millis(100));
        assert!(!da.load(SeqCst) && !dg.load(SeqCst) && !db.load(SeqCst));
        drop(ga);
        assert!(
            eventually(Duration::from_secs(5), || da.load(SeqCst)),
            "domain A wait stuck"
        );
        thread::sleep(Duration::from_millis(60));
        assert!(!dg.load(SeqCst), "global GP ended with a ReadGuard held");
        assert!(
            !db.load(SeqCst),
            "domain B GP ended with its owned guard held"
        );
        drop(gg);
        assert!(
            eventually(Duration::from_secs(5), || dg.load(SeqCst)),
            "global wait stuck"
        );
        thread::sleep(Duration::from_millis(60));
        assert!(
            !db.load(SeqCst),
            "domain B GP ended with its owned guard held"
        );
        drop(ob);
        assert!(
            eventually(Duration::from_secs(5), || db.load(SeqCst)),
            "domain B wait stuck"
        );
        for w in [wa, wg, wb] {
            w.join().unwrap();
        }
    });
}

/// Leaked guards (documented: grace periods wait for them forever, and the
/// stall warning says where): an owned guard forgotten on a named thread is
/// named with its thread and the exact source line it was taken at; a
/// `DomainGuard` forgotten before its `Reader` is dropped, on a live
/// thread, is reported as a leaked guard (`owner_exited`).
#[test]
fn leaked_guards_hold_grace_periods_and_are_named_in_stall_warnings() {
    watchdog("leaks", Duration::from_secs(30), || {
        let cfg = Config::default()
            .stall_timeout(Duration::from_millis(40))
            .poll_interval(Duration::from_millis(1))
            .max_polls(2);
        // Owned guard.
        let d = Arc::new(RcuDomain::with_config(cfg.clone()));
        let events = collect_events(&d);
        let d1 = Arc::clone(&d);
        let taken_line = thread::Builder::new()
            .name("attack-leaker".into())
            .spawn(move || {
                let (g, line) = (d1.read_lock_owned(), line!());
                std::mem::forget(g);
                line
            })
            .unwrap()
            .join()
            .unwrap();
        let d2 = Arc::clone(&d);
        let (done, _w) = background(move || d2.synchronize()); // never returns
        assert!(
            eventually(Duration::from_secs(5), || !events
                .lock()
                .unwrap()
                .is_empty()),
            "no stall warning for a leaked owned guard"
        );
        let w = match events.lock().unwrap()[0].clone() {
            RcuEvent::Stall(w) => w,
            other => panic!("expected a stall: {other:?}"),
        };
        let at = w.owned_guard_taken_at.expect("owned guard location");
        assert!(at.file().ends_with("adversarial.rs"), "{at}");
        assert_eq!(at.line(), taken_line, "{w:?}");
        assert_eq!(w.thread_name.as_deref(), Some("attack-leaker"), "{w:?}");
        assert!(
            !done.load(SeqCst),
            "a GP ended while a leaked owned guard is open"
        );
        assert!(d.stats().stalls >= 1);

        // DomainGuard leaked, then its Reader dropped; the thread lives on.
        let d = Arc::new(RcuDomain::with_config(cfg));
        let events = collect_events(&d);
        let (tx, rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let d1 = Arc::clone(&d);
        let t = thread::Builder::new()
            .name("attack-dropper".into())
            .spawn(move || {
                let r = d1.register();
                std::mem::forget(r.read_lock());
                drop(r);
                ready_tx.send(()).unwrap();
                let _ = rx.recv();
            })
            .unwrap();
        ready_rx.recv().unwrap();
        let d2 = Arc::clone(&d);
        let (done, _w) = background(move || d2.synchronize()); // never returns
        assert!(
            eventually(Duration::from_secs(5), || !events
                .lock()
                .unwrap()
                .is_empty()),
            "no stall warning for a leaked domain guard"
        );
        let w = match events.lock().unwrap()[0].clone() {
            RcuEvent::Stall(w) => w,
            other => panic!("expected a stall: {other:?}"),
        };
        assert!(w.owner_exited, "leaked guard not reported as such: {w:?}");
        assert!(w.owned_guard_taken_at.is_none(), "{w:?}");
        assert_eq!(w.thread_name.as_deref(), Some("attack-dropper"), "{w:?}");
        assert!(!done.load(SeqCst));
        drop(tx);
        t.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Misuse
// ---------------------------------------------------------------------------

/// Waits inside a critical section panic with the call's name, including
/// `synchronize_since` of an uncompleted cookie and `Unlinked::into_inner`
/// (whose value is then still retired exactly once); a completed cookie's
/// `synchronize_since` returns at once there. A panicking wait leaves no
/// forcing condition behind.
#[test]
fn waits_inside_critical_sections_panic_and_leave_nothing_behind() {
    watchdog("misuse-cs", Duration::from_secs(20), || {
        // Process-wide domain.
        let done = rcu_core::cookie();
        rcu_core::synchronize();
        let drops = Arc::new(AtomicUsize::new(0));
        let p = RcuPtr::new(Val::new(1, &drops));
        let old = p.swap(Some(Val::new(2, &drops))).unwrap();
        let g = read_lock();
        rcu_core::synchronize_since(done); // completed: no wait, no panic
        let fresh = rcu_core::cookie();
        let msg = panic_message(catch_unwind(|| rcu_core::synchronize_since(fresh)));
        assert!(msg.contains("synchronize_since"), "{msg}");
        assert!(msg.contains("inside a read-side critical section"), "{msg}");
        let msg = panic_message(catch_unwind(AssertUnwindSafe(move || old.into_inner())));
        assert!(msg.contains("inside a read-side critical section"), "{msg}");
        assert_eq!(
            drops.load(SeqCst),
            0,
            "value dropped inside the critical section"
        );
        drop(g);
        rcu_core::drain();
        assert_eq!(
            drops.load(SeqCst),
            1,
            "the Unlinked of a failed into_inner is retired once"
        );

        // Two domains on one thread; A's guard held.
        let a = Arc::new(RcuDomain::with_config(
            Config::default()
                .max_polls(u32::MAX)
                .callback_threshold(usize::MAX),
        ));
        let b = RcuDomain::new();
        let ra = a.register();
        let rb = b.register();
        let ga = ra.read_lock();
        {
            let _gb_other_domain = rb.read_lock();
        }
        b.synchronize();
        b.synchronize_expedited();
        b.drain();
        for (name, f) in [
            (
                "synchronize_expedited",
                Box::new(|| a.synchronize_expedited()) as Box<dyn Fn()>,
            ),
            ("drain", Box::new(|| a.drain())),
            (
                "synchronize_since",
                Box::new(|| a.synchronize_since(a.cookie())),
            ),
        ] {
            let msg = panic_message(catch_unwind(AssertUnwindSafe(&f)));
            assert!(msg.contains(name), "{name}: {msg}");
            assert!(
                msg.contains("inside a read-side critical section"),
                "{name}: {msg}"
            );
        }
        drop(ga);
        // Nothing forces A's grace periods now: one held 30 ms by another
        // reader stays unforced (a leaked `drains`/`expedites` count would
        // force it).
        let a1 = Arc::clone(&a);
        let held = Held::start(move || a1.read_lock_owned());
        let (done, w) = background({
            let a = Arc::clone(&a);
            move || a.synchronize()
        });
        thread::sleep(Duration::from_millis(30));
        held.release();
        assert!(eventually(Duration::from_secs(5), || done.load(SeqCst)));
        w.join().unwrap();
        let s = a.stats();
        assert_eq!(
            s.forced_grace_periods, 0,
            "a panicking wait left a forcing condition raised: {s:?}"
        );
        a.drain();
    });
}

/// Waits from inside a callback: of the same domain they panic with a
/// clear message (into_inner, synchronize_since of a fresh cookie,
/// synchronize_expedited); a drain of another domain is refused; a plain
/// synchronize of another domain works. The callback catches them, so no
/// callback panic is counted; the failed `into_inner`'s value is retired
/// exactly once.
#[test]
fn waits_inside_callbacks_panic_clearly_and_are_contained() {
    watchdog("misuse-cb", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::new());
        let other = Arc::new(RcuDomain::new());
        let drops = Arc::new(AtomicUsize::new(0));
        let p = RcuPtr::new_in(Val::new(1, &drops), &d);
        let old = p.take().unwrap();
        let (tx, rx) = mpsc::channel::<(&'static str, Result<(), String>)>();
        let (d1, o1) = (Arc::clone(&d), Arc::clone(&other));
        d.call_rcu(move || {
            let run = |f: &mut dyn FnMut()| -> Result<(), String> {
                match catch_unwind(AssertUnwindSafe(f)) {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()),
                }
            };
            let mut old = Some(old);
            tx.send((
                "into_inner",
                run(&mut || drop(old.take().unwrap().into_inner())),
            ))
            .unwrap();
            tx.send((
                "synchronize_since",
                run(&mut || d1.synchronize_since(d1.cookie())),
            ))
            .unwrap();
            tx.send((
                "synchronize_expedited",
                run(&mut || d1.synchronize_expedited()),
            ))
            .unwrap();
            tx.send(("other drain", run(&mut || o1.drain()))).unwrap();
            tx.send(("other synchronize", run(&mut || o1.synchronize())))
                .unwrap();
        });
        d.drain();
        let results: Vec<_> = rx.try_iter().collect();
        assert_eq!(results.len(), 5, "{results:?}");
        for (name, r) in &results {
            match *name {
                "other synchronize" => assert!(r.is_ok(), "{name}: {r:?}"),
                "other drain" => {
                    let m = r.as_ref().unwrap_err();
                    assert!(
                        m.contains("drain") && m.contains("another domain"),
                        "{name}: {m}"
                    );
                }
                _ => {
                    let m = r.as_ref().unwrap_err();
                    assert!(
                        m.contains("from a call_rcu callback of the same domain"),
                        "{name}: {m}"
                    );
                }
            }
        }
        d.drain(); // the Unlinked dropped by the failed into_inner
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(d.stats().callback_panics, 0);
    });
}

/// A guard of another domain is refused by every reader-facing API, before
/// anything changes (a refused compare_exchange publishes nothing and drops
/// the value it was given once); cookies of another domain are refused by
/// poll and synchronize_since; a clone's guard is accepted.
#[test]
fn guards_and_cookies_of_another_domain_are_refused_everywhere() {
    let a = RcuDomain::new();
    let b = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let p = RcuPtr::new_in(Val::new(1, &drops), &a);
    let rb = b.register();
    let gb = rb.read_lock();
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        let _ = p.compare_exchange(None, Some(Val::new(9, &drops)), &gb);
    })));
    assert!(msg.contains("guard of another domain"), "{msg}");
    assert_eq!(
        drops.load(SeqCst),
        1,
        "the refused new value is dropped once"
    );
    let ga = a.read_lock_owned();
    assert_eq!(p.load(&ga).map(|v| v.v), Some(1), "nothing was published");
    drop(ga);
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        let _ = p.load(&read_lock()).map(|v| v.v);
    })));
    assert!(msg.contains("guard of another domain"), "{msg}");
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| a.assert_guard(&gb))));
    assert!(msg.contains("guard of another domain"), "{msg}");
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| {
        RcuDomain::global().assert_guard(&gb)
    })));
    assert!(msg.contains("process-wide domain"), "{msg}");
    drop(gb);
    // A clone shares the domain: its guards are accepted.
    let a2 = a.clone();
    let ra2 = a2.register();
    assert_eq!(p.load(&ra2.read_lock()).map(|v| v.v), Some(1));
    assert_eq!(ra2.read_lock().domain_id(), a.id());
    // Cookies.
    let cb = b.cookie();
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| a.poll(cb))));
    assert!(msg.contains("a GpCookie of RcuDomain #"), "{msg}");
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| a.synchronize_since(cb))));
    assert!(msg.contains("a GpCookie of RcuDomain #"), "{msg}");
    let ca = a.cookie();
    let msg = panic_message(catch_unwind(|| rcu_core::poll(ca)));
    assert!(msg.contains("used with the process-wide domain"), "{msg}");
    let cg = rcu_core::cookie();
    let msg = panic_message(catch_unwind(AssertUnwindSafe(|| a.synchronize_since(cg))));
    assert!(
        msg.contains("a GpCookie of the process-wide domain"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------
// Callbacks: exactly once, drains, shutdown
// ---------------------------------------------------------------------------

/// Waves of short-lived threads queue callbacks (plain, chained from
/// callbacks, deferred drops, some panicking) while another thread drains
/// in a loop: each callback runs exactly once, panics are counted, and at
/// rest the statistics balance.
#[test]
fn every_callback_runs_exactly_once_from_short_lived_threads() {
    watchdog("exactly-once", Duration::from_secs(40), || {
        const THREADS: usize = 24;
        const EACH: usize = 150;
        const N: usize = THREADS * EACH;
        let d = Arc::new(RcuDomain::new());
        let events = collect_events(&d);
        let hits: Arc<Vec<AtomicU8>> = Arc::new((0..2 * N).map(|_| AtomicU8::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (d, stop) = (Arc::clone(&d), Arc::clone(&stop));
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(SeqCst) {
                    d.drain();
                    n += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                n
            })
        };
        struct Hit(Arc<Vec<AtomicU8>>, usize);
        impl Drop for Hit {
            fn drop(&mut self) {
                self.0[self.1].fetch_add(1, SeqCst);
            }
        }
        let mut chained = Vec::new();
        let mut panicking = 0;
        for t in 0..THREADS {
            for i in 0..EACH {
                match i % 5 {
                    1 => chained.push(t * EACH + i),
                    3 if i % 25 == 3 => panicking += 1,
                    _ => {}
                }
            }
        }
        // Silence the default panic message of the deliberate panics.
        for wave in 0..THREADS / 8 {
            let threads: Vec<_> = (wave * 8..wave * 8 + 8)
                .map(|t| {
                    let (d, hits) = (Arc::clone(&d), Arc::clone(&hits));
                    thread::spawn(move || {
                        for i in 0..EACH {
                            let id = t * EACH + i;
                            let h = Arc::clone(&hits);
                            match i % 5 {
                                0 => d.call_rcu(move || {
                                    h[id].fetch_add(1, SeqCst);
                                }),
                                1 => {
                                    let d2 = Arc::clone(&d);
                                    d.call_rcu(move || {
                                        h[id].fetch_add(1, SeqCst);
                                        let h2 = Arc::clone(&h);
                                        d2.call_rcu(move || {
                                            h2[N + id].fetch_add(1, SeqCst);
                                        });
                                    });
                                }
                                2 => d.defer_drop(Hit(h, id)),
                                3 if i % 25 == 3 => d.call_rcu(move || {
                                    h[id].fetch_add(1, SeqCst);
                                    panic!("deliberate callback panic (attack test)");
                                }),
                                _ => d.defer_drop_sized(Hit(h, id), 100),
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        stop.store(true, SeqCst);
        assert!(drainer.join().unwrap() > 0);
        let expected = N + chained.len();
        let mut rounds = 0;
        loop {
            d.drain();
            rounds += 1;
            let total: usize = hits.iter().map(|h| h.load(SeqCst) as usize).sum();
            if total >= expected || rounds > 10 {
                break;
            }
        }
        let mut wrong = Vec::new();
        for id in 0..N {
            let n = hits[id].load(SeqCst);
            if n != 1 {
                wrong.push((id, n));
            }
        }
        for &id in &chained {
            let n = hits[N + id].load(SeqCst);
            if n != 1 {
                wrong.push((N + id, n));
            }
        }
        let stray = (0..N)
            .filter(|id| !chained.contains(id) && hits[N + id].load(SeqCst) != 0)
            .count();
        assert!(
            wrong.is_empty(),
            "callbacks not run exactly once: {:?}",
            &wrong[..wrong.len().min(10)]
        );
        assert_eq!(stray, 0);
        let s = d.stats();
        assert_eq!(s.callback_panics, panicking as u64, "{s:?}");
        let reported = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, RcuEvent::CallbackPanic { message: Some(m) } if m.contains("deliberate")))
            .count();
        assert_eq!(reported, panicking);
        assert_eq!(s.callbacks_queued, s.callbacks_run, "{s:?}");
        assert_eq!(s.callbacks_pending, 0, "{s:?}");
        assert_eq!(s.callbacks_pending_bytes, 0, "{s:?}");
    });
}

/// `drain` returns only after every callback queued before it (by any
/// thread) has *finished*, also while producers over the memory limit run
/// chunks of callbacks on their own threads concurrently.
#[test]
fn drain_waits_for_callbacks_that_helpers_are_running() {
    watchdog("drain-helpers", Duration::from_secs(40), || {
        const P: usize = 3;
        const EACH: usize = 600;
        let d = Arc::new(RcuDomain::with_config(Config::default().memory_limit(4096)));
        let done: Arc<Vec<AtomicBool>> =
            Arc::new((0..P * EACH).map(|_| AtomicBool::new(false)).collect());
        let published: Arc<Vec<AtomicUsize>> =
            Arc::new((0..P).map(|_| AtomicUsize::new(0)).collect());
        struct Slow(Arc<Vec<AtomicBool>>, usize);
        impl Drop for Slow {
            fn drop(&mut self) {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(30) {
                    std::hint::spin_loop();
                }
                self.0[self.1].store(true, SeqCst);
            }
        }
        let producers: Vec<_> = (0..P)
            .map(|p| {
                let (d, done, published) =
                    (Arc::clone(&d), Arc::clone(&done), Arc::clone(&published));
                thread::spawn(move || {
                    for i in 0..EACH {
                        d.defer_drop_sized(Slow(Arc::clone(&done), p * EACH + i), 300);
                        published[p].store(i + 1, SeqCst);
                    }
                })
            })
            .collect();
        let mut checks = 0;
        let mut missing = Vec::new();
        while published.iter().any(|x| x.load(SeqCst) < EACH) && checks < 50 {
            let snap: Vec<usize> = published.iter().map(|x| x.load(SeqCst)).collect();
            d.drain();
            for p in 0..P {
                for i in 0..snap[p] {
                    if !done[p * EACH + i].load(SeqCst) {
                        missing.push((checks, p, i));
                    }
                }
            }
            checks += 1;
        }
        for t in producers {
            t.join().unwrap();
        }
        d.drain();
        assert!(
            missing.is_empty(),
            "drain returned before {} callbacks queued before it had finished (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(done.iter().all(|x| x.load(SeqCst)));
        let s = d.stats();
        assert_eq!(s.callbacks_pending_bytes, 0, "{s:?}");
        assert!(checks > 0);
    });
}

/// A chain of callbacks each queuing the next: one drain per level covers
/// it (drain covers what was queued before it, including what the last
/// level queued from the reclaim thread).
#[test]
fn chained_callbacks_are_covered_one_drain_per_level() {
    watchdog("chain", Duration::from_secs(20), || {
        const LEVELS: usize = 6;
        let d = Arc::new(RcuDomain::new());
        let levels: Arc<Vec<AtomicUsize>> =
            Arc::new((0..LEVELS).map(|_| AtomicUsize::new(0)).collect());
        fn chain(d: Arc<RcuDomain>, k: usize, levels: Arc<Vec<AtomicUsize>>) {
            let d2 = Arc::clone(&d);
            d.call_rcu(move || {
                levels[k].fetch_add(1, SeqCst);
                if k + 1 < LEVELS {
                    chain(d2, k + 1, levels);
                }
            });
        }
        chain(Arc::clone(&d), 0, Arc::clone(&levels));
        for i in 0..LEVELS {
            d.drain();
            for k in 0..=i {
                assert_eq!(
                    levels[k].load(SeqCst),
                    1,
                    "after {} drains, level {k}",
                    i + 1
                );
            }
        }
        let s = d.stats();
        assert_eq!(s.callbacks_pending, 0, "{s:?}");
        assert_eq!(s.callbacks_queued, s.callbacks_run, "{s:?}");
    });
}

/// Dropping the last handle of a domain runs every callback queued before
/// (it waits for a reader holding the grace period up, then returns with
/// all of them run). Callbacks that hold handles (so the last drop happens
/// in a callback, on the reclaim thread) and queue more still all run.
#[test]
fn dropping_a_domain_runs_everything_queued() {
    watchdog("domain-drop", Duration::from_secs(20), || {
        let ran = Arc::new(AtomicUsize::new(0));
        let d = RcuDomain::new();
        let og = d.read_lock_owned();
        for _ in 0..100 {
            let r = Arc::clone(&ran);
            d.call_rcu(move || {
                r.fetch_add(1, SeqCst);
            });
        }
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            drop(og);
        });
        let t = Instant::now();
        drop(d);
        assert_eq!(
            ran.load(SeqCst),
            100,
            "drop of the last handle returned with callbacks pending"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "did not wait for the reader"
        );
        releaser.join().unwrap();

        // Handles inside callbacks: the last drop happens on the reclaim
        // thread, and the children they queue still run.
        let ran = Arc::new(AtomicUsize::new(0));
        let d = RcuDomain::new();
        for _ in 0..20 {
            let (r, d2) = (Arc::clone(&ran), d.clone());
            d.call_rcu(move || {
                r.fetch_add(1, SeqCst);
                let r2 = Arc::clone(&r);
                d2.call_rcu(move || {
                    r2.fetch_add(1, SeqCst);
                });
                drop(d2);
            });
        }
        drop(d);
        assert!(
            eventually(Duration::from_secs(5), || ran.load(SeqCst) == 40),
            "callbacks of a dropped domain did not all run: {}",
            ran.load(SeqCst)
        );
    });
}

/// Dropping the last handle of a domain (with a callback pending) on a
/// thread that holds a `LocalReadGuard` of it: the drop waits for the
/// reclaim thread, whose grace period waits for this very thread. A local
/// guard is documented to turn such self-waits into panics rather than
/// hangs ("a wait for this domain's grace period on this thread while it is
/// held panics instead of waiting forever"). Expected: a panic or a return,
/// never a hang.
#[test]
fn dropping_the_last_handle_under_a_local_guard_does_not_hang() {
    let r = catch_unwind(|| {
        watchdog("drop-under-local-guard", Duration::from_secs(5), || {
            let d = RcuDomain::new();
            let g = d.read_lock_local();
            d.call_rcu(|| ());
            let r = catch_unwind(AssertUnwindSafe(move || drop(d)));
            drop(g);
            r.is_err()
        })
    });
    match r {
        Ok(_panicked) => {}
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// The same with a data structure: a cell is the last holder of its domain;
/// code holding a local guard retires a value and drops the cell.
#[test]
fn dropping_the_last_cell_of_a_domain_under_a_local_guard_does_not_hang() {
    watchdog(
        "cell-drop-under-local-guard",
        Duration::from_secs(5),
        || {
            let cell = {
                let d = RcuDomain::new();
                RcuCell::new_in(1u64, &d)
            };
            let g = cell.domain().read_lock_local();
            assert_eq!(*cell.read(&g), 1);
            drop(cell.replace(2));
            let r = catch_unwind(AssertUnwindSafe(move || drop(cell)));
            drop(g);
            let _ = r;
        },
    );
}

// ---------------------------------------------------------------------------
// Forced quiescent states
// ---------------------------------------------------------------------------

/// A reader that never leaves on its own but answers its notifier with
/// `quiescent()` keeps reclamation within the callback threshold (only the
/// threshold forces here: polls are 60 s apart and never force); once its
/// notifier handle is dropped it is no longer called, and a forced grace
/// period then waits for the reader to leave by itself.
#[test]
fn a_cooperating_reader_never_stalls_reclamation_and_a_dropped_notifier_stops() {
    watchdog("notifier", Duration::from_secs(30), || {
        const THRESHOLD: usize = 10;
        let d = Arc::new(RcuDomain::with_config(
            Config::default()
                .callback_threshold(THRESHOLD)
                .poll_interval(Duration::from_secs(60))
                .max_polls(u32::MAX),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (drop_tx, drop_rx) = mpsc::channel::<()>();
        let (ack_tx, ack_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let quiesced = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (d, stop, quiesced) = (Arc::clone(&d), Arc::clone(&stop), Arc::clone(&quiesced));
            thread::spawn(move || {
                let r = d.register();
                let asked = Arc::new(AtomicBool::new(false));
                let a = Arc::clone(&asked);
                let mut handle = Some(r.on_force_quiescent(move || a.store(true, SeqCst)));
                let mut g = r.read_lock();
                ready_tx.send(()).unwrap();
                while !stop.load(SeqCst) {
                    if drop_rx.try_recv().is_ok() {
                        drop(handle.take());
                        // A call made for a grace period that had already
                        // ended (the notifier runs after the scan that
                        // found us) may have left the flag set: forget it.
                        asked.store(false, SeqCst);
                        ack_tx.send(()).unwrap();
                    }
                    if asked.swap(false, SeqCst) {
                        quiesced.fetch_add(1, SeqCst);
                        assert!(g.quiescent());
                    }
                    thread::yield_now();
                }
                drop(g);
            })
        };
        ready_rx.recv().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let r = Arc::clone(&ran);
            d.call_rcu(move || {
                r.fetch_add(1, SeqCst);
            });
        }
        assert!(
            eventually(Duration::from_secs(5), || ran.load(SeqCst)
                > 100 - THRESHOLD),
            "reclamation stalled behind a cooperating reader: {} of 100 ran, {:?}",
            ran.load(SeqCst),
            d.stats()
        );
        let s = d.stats();
        assert!(s.notifier_calls >= 1, "{s:?}");
        assert!(s.forced_by.callbacks >= 1, "{s:?}");
        assert_eq!(s.stalls, 0, "{s:?}");
        assert!(quiesced.load(SeqCst) >= 1);
        d.drain();
        assert_eq!(ran.load(SeqCst), 100);
        // Without the notifier, a forced grace period waits for the reader.
        drop_tx.send(()).unwrap();
        ack_rx.recv().unwrap();
        let calls = d.stats().notifier_calls;
        let q = quiesced.load(SeqCst);
        let (done, w) = background({
            let d = Arc::clone(&d);
            move || d.synchronize_expedited()
        });
        thread::sleep(Duration::from_millis(200));
        assert!(
            !done.load(SeqCst),
            "a forced GP ended while the reader stayed inside"
        );
        assert_eq!(
            d.stats().notifier_calls,
            calls,
            "a dropped notifier was called"
        );
        assert_eq!(quiesced.load(SeqCst), q);
        stop.store(true, SeqCst);
        reader.join().unwrap();
        assert!(eventually(Duration::from_secs(5), || done.load(SeqCst)));
        w.join().unwrap();
    });
}

/// Two notifiers on one reader, the first panicking: the grace period goes
/// on, the panic is reported with its message, and the second is still
/// called (and lets the reader leave).
#[test]
fn a_panicking_notifier_does_not_stop_the_next_one() {
    watchdog("notifier-panic", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::new());
        let events = collect_events(&d);
        let called = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let reader = {
            let (d, called, stop) = (Arc::clone(&d), Arc::clone(&called), Arc::clone(&stop));
            thread::spawn(move || {
                let r = d.register();
                let _n1 = r.on_force_quiescent(|| panic!("notifier boom (attack test)"));
                let asked = Arc::new(AtomicBool::new(false));
                let a = Arc::clone(&asked);
                let c = Arc::clone(&called);
                let _n2 = r.on_force_quiescent(move || {
                    c.fetch_add(1, SeqCst);
                    a.store(true, SeqCst);
                });
                let g = r.read_lock();
                ready_tx.send(()).unwrap();
                while !asked.load(SeqCst) && !stop.load(SeqCst) {
                    thread::yield_now();
                }
                drop(g);
                while !stop.load(SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        ready_rx.recv().unwrap();
        d.synchronize_expedited();
        assert_eq!(called.load(SeqCst), 1);
        let ev = events.lock().unwrap().clone();
        assert!(
            ev.iter().any(|e| matches!(e, RcuEvent::NotifierPanic { message: Some(m) } if m.contains("notifier boom"))),
            "{ev:?}"
        );
        assert_eq!(d.stats().notifier_calls, 2);
        stop.store(true, SeqCst);
        reader.join().unwrap();
    });
}

/// A notifier handle that outlives its `Reader` (the record then serves
/// another thread) removes nothing of the new owner's when dropped, and its
/// notifier is never called for the new owner; a handle outliving its
/// whole domain drops harmlessly.
#[test]
fn a_notifier_handle_outliving_its_reader_is_inert() {
    watchdog("stale-handle", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::new());
        let a_calls = Arc::new(AtomicUsize::new(0));
        let stale = {
            let (d, a_calls) = (Arc::clone(&d), Arc::clone(&a_calls));
            thread::spawn(move || {
                let r = d.register();
                let h = r.on_force_quiescent(move || {
                    a_calls.fetch_add(1, SeqCst);
                });
                drop(r);
                h
            })
            .join()
            .unwrap()
        };
        let b_calls = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let b = {
            let (d, b_calls, stop) = (Arc::clone(&d), Arc::clone(&b_calls), Arc::clone(&stop));
            thread::spawn(move || {
                let r = d.register(); // most likely the record A released
                let bc = Arc::clone(&b_calls);
                let _h = r.on_force_quiescent(move || {
                    bc.fetch_add(1, SeqCst);
                });
                let g = r.read_lock();
                ready_tx.send(()).unwrap();
                while b_calls.load(SeqCst) == 0 && !stop.load(SeqCst) {
                    thread::yield_now();
                }
                drop(g);
                while !stop.load(SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        ready_rx.recv().unwrap();
        drop(stale); // must not remove B's notifier
        d.synchronize_expedited();
        assert_eq!(
            b_calls.load(SeqCst),
            1,
            "the new owner's notifier was not called"
        );
        assert_eq!(
            a_calls.load(SeqCst),
            0,
            "a released reader's notifier was called"
        );
        stop.store(true, SeqCst);
        b.join().unwrap();
        // A handle outliving its domain.
        let h = {
            let d = RcuDomain::new();
            let r = d.register();
            let h = r.on_force_quiescent(|| ());
            drop(r);
            h
        };
        drop(h);
    });
}

// ---------------------------------------------------------------------------
// Pointers and async forms
// ---------------------------------------------------------------------------

/// RcuPtr: a swapped-out value is dropped once, only after the reader that
/// holds it leaves (its memory intact meanwhile); `Unlinked::into_inner`
/// waits for that reader and returns the value undropped; compare_exchange
/// failure gives the new value back and reports the current one; the
/// pointer's own drop frees its value at once. Every value dropped once.
#[test]
fn rcu_ptr_values_are_dropped_once_and_only_after_readers_leave() {
    watchdog("ptr", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::new());
        let drops = Arc::new(AtomicUsize::new(0));
        let p = Arc::new(RcuPtr::new_in(Val::new(1, &drops), &d));
        let read_under_guard = |expect: u64| {
            let (d, p) = (Arc::clone(&d), Arc::clone(&p));
            let (ready_tx, ready_rx) = mpsc::channel::<()>();
            let (rel_tx, rel_rx) = mpsc::channel::<()>();
            let t = thread::spawn(move || {
                let r = d.register();
                let g = r.read_lock();
                let v = p.load(&g).expect("a value");
                assert_eq!(v.v, expect);
                ready_tx.send(()).unwrap();
                rel_rx.recv().unwrap();
                assert_eq!(v.v, expect, "value changed under the guard");
                drop(g);
            });
            ready_rx.recv().unwrap();
            (rel_tx, t)
        };
        // Deferred drop waits for the reader.
        let (rel, t) = read_under_guard(1);
        let old = p.swap(Some(Val::new(2, &drops))).unwrap();
        assert_eq!(old.v, 1);
        drop(old);
        let (drained, w) = background({
            let d = Arc::clone(&d);
            move || d.drain()
        });
        thread::sleep(Duration::from_millis(100));
        assert_eq!(drops.load(SeqCst), 0, "dropped under a reader");
        assert!(!drained.load(SeqCst));
        rel.send(()).unwrap();
        t.join().unwrap();
        w.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
        // into_inner waits, returns the value undropped.
        let (rel, t) = read_under_guard(2);
        let un = p.take().unwrap();
        assert!(p.is_null());
        assert!(p.take().is_none());
        assert!(p.swap(None).is_none());
        let (tx, rx) = mpsc::channel();
        let w = thread::spawn(move || tx.send(un.into_inner()).unwrap());
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "into_inner did not wait"
        );
        rel.send(()).unwrap();
        t.join().unwrap();
        let v = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("into_inner stuck");
        w.join().unwrap();
        assert_eq!(v.v, 2);
        assert_eq!(drops.load(SeqCst), 1, "into_inner's value was dropped");
        drop(v);
        assert_eq!(drops.load(SeqCst), 2);
        // compare_exchange.
        p.store(Some(Val::new(3, &drops)));
        let g = d.read_lock_owned();
        let cur = p.load(&g);
        let err = match p.compare_exchange(None, Some(Val::new(4, &drops)), &g) {
            Err(e) => e,
            Ok(_) => panic!("compare_exchange against null succeeded on a non-null pointer"),
        };
        assert_eq!(err.current.map(|v| v.v), Some(3));
        assert_eq!(err.new.as_ref().map(|v| v.v), Some(4));
        drop(err);
        assert_eq!(drops.load(SeqCst), 3);
        let old = match p.compare_exchange(cur, Some(Val::new(5, &drops)), &g) {
            Ok(Some(old)) => old,
            _ => panic!("compare_exchange with the current value failed"),
        };
        assert_eq!(old.v, 3);
        drop(g);
        drop(old);
        d.drain();
        assert_eq!(drops.load(SeqCst), 4);
        // The pointer's own value.
        let p = Arc::try_unwrap(p).ok().expect("unique");
        let v = p.into_inner().expect("value");
        assert_eq!(v.v, 5);
        assert_eq!(drops.load(SeqCst), 4);
        drop(v);
        let q = RcuPtr::new_in(Val::new(6, &drops), &d);
        drop(q);
        assert_eq!(
            drops.load(SeqCst),
            6,
            "RcuPtr's drop frees its value at once"
        );
        assert!(RcuPtr::<Val>::null_in(&d).into_inner().is_none());
        d.drain();
        assert_eq!(drops.load(SeqCst), 6);
    });
}

/// Readers of an RcuCell under concurrent `update`s always see a fully
/// built value (a consistent pair of fields), never a dropped one; each
/// old value is dropped once.
#[test]
fn cell_readers_always_see_fully_built_values() {
    watchdog("cell-built", Duration::from_secs(20), || {
        struct Pair {
            a: u64,
            b: u64,
            check: Vec<u64>,
            live: Arc<AtomicUsize>,
        }
        impl Drop for Pair {
            fn drop(&mut self) {
                self.live.fetch_sub(1, SeqCst);
                // Poison the value before its memory is freed.
                self.a = u64::MAX;
                self.b = 0;
            }
        }
        let live = Arc::new(AtomicUsize::new(1));
        let cell = Arc::new(RcuCell::new(Pair {
            a: 0,
            b: 0,
            check: vec![0; 16],
            live: Arc::clone(&live),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (cell, stop, bad) = (Arc::clone(&cell), Arc::clone(&stop), Arc::clone(&bad));
                thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(SeqCst) {
                        let g = read_lock();
                        let v = cell.read(&g);
                        let (a, b) = (v.a, v.b);
                        spin(50);
                        if b != a.wrapping_mul(3) || v.check.iter().any(|&c| c != a) || v.a != a {
                            bad.fetch_add(1, SeqCst);
                        }
                        drop(g);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut updates = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            let l = Arc::clone(&live);
            let old = cell.update(|old| {
                let a = old.a + 1;
                l.fetch_add(1, SeqCst);
                Pair {
                    a,
                    b: a * 3,
                    check: vec![a; 16],
                    live: l,
                }
            });
            updates += 1;
            if updates.is_multiple_of(64) {
                drop(old.into_inner());
            } else {
                drop(old);
            }
        }
        stop.store(true, SeqCst);
        let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        rcu_core::drain();
        assert_eq!(bad.load(SeqCst), 0, "a reader saw a torn or dropped value");
        assert!(reads > 0 && updates > 0);
        assert_eq!(live.load(SeqCst), 1, "old values not dropped exactly once");
        assert_eq!(cell.read(&read_lock()).a, updates);
    });
}

/// Async forms: `into_inner_async` resolves only after a reader that held
/// the value leaves, with the value undropped; futures polled once (or
/// never) and dropped are harmless (their callbacks run, nothing
/// leaks); a future polled inside a critical section of its domain stays
/// pending until the section ends, and stays ready once ready.
#[test]
fn async_forms_wait_for_readers_and_dropped_futures_are_harmless() {
    watchdog("async", Duration::from_secs(20), || {
        let d = Arc::new(RcuDomain::new());
        let drops = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(RcuCell::new_in(Val::new(1, &drops), &d));
        let (d1, c1) = (Arc::clone(&d), Arc::clone(&cell));
        let (tx_v, rx_v) = mpsc::channel::<u64>();
        let held = Held::start(move || {
            let g = d1.read_lock_owned();
            tx_v.send(c1.read(&g).v).unwrap();
            g
        });
        assert_eq!(rx_v.recv().unwrap(), 1);
        let old = cell.replace(Val::new(2, &drops));
        let (tx, rx) = mpsc::channel();
        let w = thread::spawn(move || tx.send(block_on(old.into_inner_async())).unwrap());
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "resolved under a reader"
        );
        held.release();
        let v = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("into_inner_async stuck");
        w.join().unwrap();
        assert_eq!(v.v, 1);
        assert_eq!(drops.load(SeqCst), 0);
        drop(v);
        assert_eq!(drops.load(SeqCst), 1);
        // Futures polled once, or never, then dropped.
        for i in 0..50 {
            let mut f = Box::pin(d.synchronize_async());
            if i % 2 == 0 {
                let _ = poll_once(f.as_mut());
            }
            drop(f);
        }
        d.drain();
        let s = d.stats();
        assert_eq!(s.callbacks_queued, s.callbacks_run, "{s:?}");
        assert_eq!(s.callbacks_pending, 0, "{s:?}");
        // Polled inside a critical section: pending until it ends.
        let g = d.read_lock_local();
        let mut f = Box::pin(d.synchronize_async());
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(100) {
            assert!(
                poll_once(f.as_mut()).is_pending(),
                "resolved inside the critical section"
            );
            thread::sleep(Duration::from_millis(5));
        }
        drop(g);
        block_on(f.as_mut());
        assert!(
            poll_once(f.as_mut()).is_ready(),
            "a resolved future went back to pending"
        );
        drop(cell);
        d.drain();
        assert_eq!(drops.load(SeqCst), 2);
    });
}

// ---------------------------------------------------------------------------
// Configuration and statistics
// ---------------------------------------------------------------------------

/// Values just outside each range are refused (naming the field); the
/// extreme accepted values make domains that work.
#[test]
fn config_bounds_are_exact_and_extreme_configs_work() {
    let d = Config::default;
    let nanos = Duration::from_nanos;
    for (cfg, field) in [
        (d().poll_interval(nanos(999)), "poll_interval"),
        (
            d().poll_interval(Config::MAX_POLL_INTERVAL + nanos(1)),
            "poll_interval",
        ),
        (d().stall_timeout(nanos(999_999)), "stall_timeout"),
        (
            d().callback_pacing(Config::MAX_CALLBACK_PACING + nanos(1)),
            "callback_pacing",
        ),
        (
            d().memory_limit(Config::MIN_MEMORY_LIMIT - 1),
            "memory_limit",
        ),
        (d().callback_threshold(0), "callback_threshold"),
    ] {
        match RcuDomain::try_with_config(cfg.clone()) {
            Err(ConfigError::Invalid(why)) => assert!(why.contains(field), "{field}: {why}"),
            Err(e) => panic!("{field}: not Invalid: {e}"),
            Ok(_) => panic!("{field}: accepted {cfg:?}"),
        }
        let msg = panic_message(catch_unwind(|| RcuDomain::with_config(cfg)));
        assert!(msg.contains("invalid RCU configuration"), "{msg}");
    }
    // Invalid beats AlreadyStarted for the process-wide domain; a valid one
    // after start is AlreadyStarted.
    rcu_core::synchronize();
    assert!(matches!(
        rcu_core::configure(d().callback_threshold(0)),
        Err(ConfigError::Invalid(_))
    ));
    assert_eq!(rcu_core::configure(d()), Err(ConfigError::AlreadyStarted));
    // Extremes that are accepted also work.
    watchdog("extreme-configs", Duration::from_secs(20), || {
        for cfg in [
            Config::default()
                .poll_interval(Config::MIN_POLL_INTERVAL)
                .max_polls(0)
                .callback_threshold(1)
                .memory_limit(Config::MIN_MEMORY_LIMIT)
                .stall_timeout(Config::MIN_STALL_TIMEOUT)
                .callback_pacing(Duration::ZERO),
            Config::default()
                .callback_threshold(usize::MAX)
                .max_polls(u32::MAX)
                .memory_limit(usize::MAX)
                .stall_timeout(Duration::MAX)
                .callback_pacing(Config::MAX_CALLBACK_PACING),
        ] {
            let dom = Arc::new(RcuDomain::with_config(cfg));
            let ran = Arc::new(AtomicUsize::new(0));
            let dd = Arc::clone(&dom);
            let held = Held::start(move || dd.read_lock_owned());
            for _ in 0..10 {
                let r = Arc::clone(&ran);
                dom.defer_drop_sized(
                    Token(move || {
                        r.fetch_add(1, SeqCst);
                    }),
                    1000,
                );
            }
            let (done, w) = background({
                let dom = Arc::clone(&dom);
                move || dom.drain()
            });
            thread::sleep(Duration::from_millis(30));
            assert_eq!(ran.load(SeqCst), 0, "ran under a reader");
            assert!(!done.load(SeqCst));
            held.release();
            w.join().unwrap();
            assert_eq!(ran.load(SeqCst), 10);
            dom.synchronize();
            dom.synchronize_expedited();
        }
    });
}

/// Runs its closure when dropped.
struct Token<F: FnMut()>(F);

impl<F: FnMut()> Drop for Token<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Statistics: exact at rest (queued vs run including the drain marker,
/// pending and pending bytes back to 0, the peak of pending bytes kept,
/// histogram total equal to grace periods, forced total equal to the sum of
/// causes); under load, each counter never decreases and no snapshot shows
/// more callbacks run than queued.
#[test]
fn stats_balance_at_rest_and_never_go_backwards() {
    watchdog("stats", Duration::from_secs(30), || {
        let d = Arc::new(RcuDomain::new());
        let d1 = Arc::clone(&d);
        let held = Held::start(move || d1.read_lock_owned());
        for _ in 0..10 {
            d.defer_drop_sized(vec![0u8; 100], 1000);
        }
        let s = d.stats();
        assert_eq!(s.callbacks_queued, 10, "{s:?}");
        assert_eq!(s.callbacks_run, 0, "{s:?}");
        assert!(s.callbacks_pending_bytes >= 10_000, "{s:?}");
        thread::sleep(Duration::from_millis(60));
        held.release();
        d.drain();
        let s = d.stats();
        assert_eq!(s.callbacks_queued, 11, "10 + the drain's marker: {s:?}");
        assert_eq!(s.callbacks_run, 11, "{s:?}");
        assert_eq!(s.callbacks_pending, 0, "{s:?}");
        assert_eq!(s.callbacks_pending_bytes, 0, "{s:?}");
        assert!(s.max_pending_bytes >= 10_000, "{s:?}");
        assert!(s.grace_periods >= 1, "{s:?}");
        assert_eq!(s.histogram.total(), s.grace_periods, "{s:?}");
        let f = s.forced_by;
        assert_eq!(
            s.forced_grace_periods,
            f.callbacks + f.polls + f.drain + f.expedite + f.memory,
            "{s:?}"
        );
        assert!(s.longest_grace_period >= Duration::from_millis(30), "{s:?}");

        // Under load.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (d, stop) = (Arc::clone(&d), Arc::clone(&stop));
            thread::spawn(move || {
                let mut prev = d.stats();
                let mut problems = Vec::new();
                let mut samples = 0;
                while !stop.load(SeqCst) {
                    let s = d.stats();
                    samples += 1;
                    let pairs = [
                        ("grace_periods", prev.grace_periods, s.grace_periods),
                        (
                            "callbacks_queued",
                            prev.callbacks_queued,
                            s.callbacks_queued,
                        ),
                        ("callbacks_run", prev.callbacks_run, s.callbacks_run),
                        ("heavy_barriers", prev.heavy_barriers, s.heavy_barriers),
                        ("polls", prev.polls, s.polls),
                        (
                            "max_pending_bytes",
                            prev.max_pending_bytes,
                            s.max_pending_bytes,
                        ),
                        (
                            "forced_grace_periods",
                            prev.forced_grace_periods,
                            s.forced_grace_periods,
                        ),
                    ];
                    for (name, a, b) in pairs {
                        if b < a && problems.len() < 10 {
                            problems.push(format!("{name} went back: {a} -> {b}"));
                        }
                    }
                    if s.callbacks_run > s.callbacks_queued && problems.len() < 10 {
                        problems.push(format!(
                            "run {} > queued {} (pending {}; previous sample: queued {} run {} pending {})",
                            s.callbacks_run,
                            s.callbacks_queued,
                            s.callbacks_pending,
                            prev.callbacks_queued,
                            prev.callbacks_run,
                            prev.callbacks_pending
                        ));
                    }
                    prev = s;
                }
                (problems, samples)
            })
        };
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let d = Arc::clone(&d);
                thread::spawn(move || {
                    for i in 0..3000 {
                        d.call_rcu(|| ());
                        if i % 500 == 499 && p == 0 {
                            d.drain();
                        }
                    }
                })
            })
            .collect();
        for t in producers {
            t.join().unwrap();
        }
        d.drain();
        stop.store(true, SeqCst);
        let (problems, samples) = sampler.join().unwrap();
        assert!(problems.is_empty(), "{problems:?} (in {samples} samples)");
        let s = d.stats();
        assert_eq!(s.callbacks_queued, s.callbacks_run, "{s:?}");
        assert_eq!(s.callbacks_pending, 0, "{s:?}");
        assert_eq!(s.callbacks_pending_bytes, 0, "{s:?}");
        assert_eq!(s.histogram.total(), s.grace_periods, "{s:?}");
    });
}

/// An `update` closure that waits for a grace period of the cell's domain,
/// while another thread inside a critical section waits for the cell's
/// writer lock (a `replace` under a guard, which writers allow): the grace
/// period waits for that reader, the reader for the lock, the lock for the
/// grace period. The closure runs where such waits are refused, so its wait
/// panics at once instead; the other writer then goes on.
#[test]
fn an_update_closure_waiting_for_a_grace_period_panics_rather_than_deadlocks() {
    let r = watchdog("update-waits", Duration::from_secs(20), || {
        let domain = RcuDomain::new();
        let cell = Arc::new(RcuCell::new_in(1u64, &domain));
        let (in_f_tx, in_f_rx) = mpsc::channel::<()>();
        let writer = {
            let (domain, cell) = (domain.clone(), Arc::clone(&cell));
            thread::spawn(move || {
                let reader = domain.register();
                let guard = reader.read_lock();
                in_f_rx.recv().unwrap();
                // Inside the critical section: waits for the update's lock.
                drop(cell.replace(10));
                *cell.read(&guard)
            })
        };
        let waited = catch_unwind(AssertUnwindSafe(|| {
            drop(cell.update(|v| {
                in_f_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(50)); // the writer reaches the lock
                domain.synchronize();
                v + 1
            }))
        }));
        let message = panic_message(waited);
        (message, writer.join().unwrap(), cell.get())
    });
    assert!(r.0.contains("refused"), "unexpected panic: {}", r.0);
    // The update changed nothing; the other writer's value is in.
    assert_eq!((r.1, r.2), (10, 10));
}

/// Refusing waits is not a critical section: while an `update` closure runs,
/// the domain's grace periods still end. (Run inside a read-side critical
/// section, as it briefly was, the closure held up every grace period of
/// the domain: here another thread's `synchronize`, which the closure waits
/// for, never returned.)
#[test]
fn grace_periods_end_while_an_update_closure_runs() {
    let r = watchdog(
        "update-holds-no-grace-period",
        Duration::from_secs(20),
        || {
            let domain = RcuDomain::new();
            let cell = RcuCell::new_in(1u64, &domain);
            let (in_f_tx, in_f_rx) = mpsc::channel::<()>();
            let (synced_tx, synced_rx) = mpsc::channel::<()>();
            let syncer = {
                let domain = domain.clone();
                thread::spawn(move || {
                    in_f_rx.recv().unwrap();
                    domain.synchronize();
                    synced_tx.send(()).unwrap();
                })
            };
            drop(cell.update(|v| {
                in_f_tx.send(()).unwrap();
                synced_rx.recv().unwrap();
                v + 1
            }));
            syncer.join().unwrap();
            cell.get()
        },
    );
    assert_eq!(r, 2);
}
