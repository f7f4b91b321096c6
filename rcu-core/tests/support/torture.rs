//! rcutorture for this engine: a pool of ten slots, each with an age and an
//! alive flag, published one at a time through an index that readers load
//! inside critical sections.
//!
//! The writer publishes a fresh slot, marks the old one retired (age 1), and
//! after a grace period marks it reclaimed (age 2) and dead, and returns it
//! to the pool. A reader that ever sees a dead slot, an age above 1, or its
//! slot reused under it (generation changed) has caught a grace period that
//! ended too early. Shared by `tests/torture.rs` and `examples/rcutorture.rs`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const POOL: usize = 10;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Readers, a writer rotating through every kind of grace period, extra
    /// `synchronize`/`drain` threads, long readers, thread churn.
    Stress,
    /// Readers only: the cost of a read.
    Rperf,
    /// Updaters only: the cost of an update (publish + grace period).
    Uperf,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub duration: Duration,
    /// Stop the writer after this many publications (for Miri).
    pub max_publications: u64,
    pub readers: usize,
    /// Readers that stay inside a critical section until their
    /// force-quiescent notifier fires.
    pub long_readers: usize,
    /// Threads that only call `synchronize` / `drain`.
    pub sync_threads: usize,
    /// Reader threads exit after a random number of reads and are replaced.
    pub churn: bool,
    /// Fail if the published slot does not advance for this long.
    pub stall_timeout: Duration,
    pub seed: u64,
}

impl Options {
    pub fn stress(duration: Duration) -> Self {
        Options {
            mode: Mode::Stress,
            duration,
            max_publications: u64::MAX,
            readers: 4,
            long_readers: 1,
            sync_threads: 2,
            churn: true,
            stall_timeout: Duration::from_secs(5),
            seed: 0x5eed,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub reads: u64,
    /// A reader saw a dead (reclaimed) slot.
    pub dead_seen: u64,
    /// A reader saw an age above 1.
    pub age_errors: u64,
    /// A reader's slot was reused while it held it.
    pub reuse_errors: u64,
    pub max_age_seen: u32,
    pub publications: u64,
    pub grace_periods: u64,
    pub forced_grace_periods: u64,
    pub notifier_calls: u64,
    pub callbacks_queued: u64,
    pub callbacks_run: u64,
    pub reader_threads_started: u64,
    pub stalled: bool,
    pub elapsed: Duration,
    /// Reader time per read (sum over readers), for rperf.
    pub ns_per_read: f64,
    /// Writer time per update, for uperf.
    pub ns_per_update: f64,
}

impl Report {
    pub fn errors(&self) -> u64 {
        self.dead_seen + self.age_errors + self.reuse_errors
    }
}

struct Slot {
    alive: AtomicBool,
    age: AtomicU32,
    generation: AtomicU64,
}

struct Shared {
    slots: [Slot; POOL],
    current: AtomicUsize,
    free: Mutex<Vec<usize>>,
    stop: AtomicBool,
    reads: AtomicU64,
    read_nanos: AtomicU64,
    dead_seen: AtomicU64,
    age_errors: AtomicU64,
    reuse_errors: AtomicU64,
    max_age_seen: AtomicU32,
    publications: AtomicU64,
    reader_threads: AtomicU64,
}

impl Shared {
    fn new() -> Self {
        let shared = Shared {
            slots: std::array::from_fn(|_| Slot {
                alive: AtomicBool::new(false),
                age: AtomicU32::new(0),
                generation: AtomicU64::new(0),
            }),
            current: AtomicUsize::new(0),
            free: Mutex::new((1..POOL).collect()),
            stop: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            read_nanos: AtomicU64::new(0),
            dead_seen: AtomicU64::new(0),
            age_errors: AtomicU64::new(0),
            reuse_errors: AtomicU64::new(0),
            max_age_seen: AtomicU32::new(0),
            publications: AtomicU64::new(0),
            reader_threads: AtomicU64::new(0),
        };
        shared.slots[0].alive.store(true, Ordering::Relaxed);
        shared
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Checks the slot a reader holds; returns its generation.
    fn check(&self, i: usize, generation: Option<u64>) -> u64 {
        let s = &self.slots[i];
        // Relaxed (all): a correct engine orders the writer's later stores
        // after this critical section; a broken one is what we look for.
        let g = s.generation.load(Ordering::Relaxed);
        let age = s.age.load(Ordering::Relaxed);
        if !s.alive.load(Ordering::Relaxed) {
            self.dead_seen.fetch_add(1, Ordering::Relaxed);
        }
        if age > 1 {
            self.age_errors.fetch_add(1, Ordering::Relaxed);
        }
        // Write the shared maximum only when it grows: an RMW per read
        // would make rperf measure this counter's cache line, not RCU.
        if age > self.max_age_seen.load(Ordering::Relaxed) {
            self.max_age_seen.fetch_max(age, Ordering::Relaxed);
        }
        if generation.is_some_and(|old| old != g) {
            self.reuse_errors.fetch_add(1, Ordering::Relaxed);
        }
        g
    }

    /// One read: load the published slot and check it, before and after a
    /// delay, at a random nesting depth.
    fn read(&self, rng: &mut Rng) {
        let depth = 1 + rng.below(3) as usize;
        let guards: Vec<rcu_core::ReadGuard> = (0..depth).map(|_| rcu_core::read_lock()).collect();
        // Acquire: pairs with the writer's AcqRel swap: the slot's reset is
        // visible.
        let i = self.current.load(Ordering::Acquire);
        let g = self.check(i, None);
        delay(rng);
        self.check(i, Some(g));
        // Guards may be dropped in any order.
        let mut guards = guards;
        while !guards.is_empty() {
            let k = rng.below(guards.len() as u64) as usize;
            drop(guards.swap_remove(k));
        }
    }

    /// After a grace period: the slot is reclaimed and goes back to the pool.
    fn reclaim(&self, i: usize) {
        let s = &self.slots[i];
        s.age.store(2, Ordering::Relaxed);
        s.alive.store(false, Ordering::Relaxed);
        self.free.lock().unwrap().push(i);
    }

    /// rperf's read: one critical section around the load and the check,
    /// with no delay and no nesting: what a read costs.
    fn plain_read(&self) {
        let guard = rcu_core::read_lock();
        // Acquire: as in `read`.
        let i = self.current.load(Ordering::Acquire);
        self.check(i, None);
        drop(guard);
    }
}

/// xorshift64*: deterministic per thread, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A random delay inside a critical section: mostly nothing, sometimes a
/// spin, rarely a yield or a short sleep.
fn delay(rng: &mut Rng) {
    match rng.below(1000) {
        0..=899 => {}
        900..=989 => {
            for _ in 0..rng.below(if cfg!(miri) { 4 } else { 2000 }) {
                std::hint::spin_loop();
            }
        }
        990..=998 => std::thread::yield_now(),
        _ => std::thread::sleep(Duration::from_micros(50)),
    }
}

fn reader_thread(shared: &Shared, seed: u64, churn: bool, plain: bool) {
    shared.reader_threads.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng::new(seed);
    let lifetime = if churn {
        100 + rng.below(5000)
    } else {
        u64::MAX
    };
    let start = Instant::now();
    let mut n = 0;
    while !shared.stopped() && n < lifetime {
        if plain {
            shared.plain_read();
        } else {
            shared.read(&mut rng);
        }
        n += 1;
    }
    shared.reads.fetch_add(n, Ordering::Relaxed);
    shared
        .read_nanos
        .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// Stays inside one critical section, re-checking its slot, until the
/// force-quiescent notifier asks it to step out; then re-enters.
fn long_reader_thread(shared: &Shared) {
    let asked = Arc::new(AtomicBool::new(false));
    let a = Arc::clone(&asked);
    let _notifier = rcu_core::on_force_quiescent(move || a.store(true, Ordering::SeqCst));
    let mut guard = rcu_core::read_lock();
    let mut i = shared.current.load(Ordering::Acquire);
    let mut g = shared.check(i, None);
    while !shared.stopped() {
        shared.check(i, Some(g));
        if asked.swap(false, Ordering::SeqCst) {
            assert!(guard.quiescent());
            i = shared.current.load(Ordering::Acquire);
            g = shared.check(i, None);
        }
        std::hint::spin_loop();
    }
}

fn writer_thread(shared: &Arc<Shared>, opts: &Options) -> Duration {
    let start = Instant::now();
    let mut step = 0u64;
    while !shared.stopped() && step < opts.max_publications {
        let new = loop {
            if let Some(i) = shared.free.lock().unwrap().pop() {
                break i;
            }
            // Everything is in flight: let the reclaim thread catch up.
            rcu_core::drain();
        };
        let s = &shared.slots[new];
        s.age.store(0, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::Relaxed);
        s.alive.store(true, Ordering::Relaxed);
        // AcqRel: Release publishes the reset slot to readers' Acquire load.
        let old = shared.current.swap(new, Ordering::AcqRel);
        shared.slots[old].age.store(1, Ordering::Relaxed);
        match step % 6 {
            0 => {
                rcu_core::synchronize();
                shared.reclaim(old);
            }
            1 | 4 => {
                let sh = Arc::clone(shared);
                rcu_core::call_rcu(move || sh.reclaim(old));
            }
            2 => {
                rcu_core::synchronize_expedited();
                shared.reclaim(old);
            }
            3 => {
                // A cookie does not start a grace period: queue a no-op
                // callback so one starts (Linux's start_poll_synchronize_rcu).
                let c = rcu_core::cookie();
                rcu_core::call_rcu(|| {});
                while !rcu_core::poll(c) {
                    if shared.stopped() {
                        rcu_core::synchronize_since(c);
                    }
                    std::thread::yield_now();
                }
                shared.reclaim(old);
            }
            _ => {
                let sh = Arc::clone(shared);
                rcu_core::call_rcu(move || sh.reclaim(old));
                rcu_core::drain();
            }
        }
        step += 1;
        shared.publications.fetch_add(1, Ordering::Relaxed);
    }
    start.elapsed()
}

fn sync_thread(shared: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.stopped() {
        if rng.below(2) == 0 {
            rcu_core::synchronize();
        } else {
            rcu_core::drain();
        }
        std::thread::sleep(Duration::from_micros(rng.below(500)));
    }
}

/// Runs the torture and reports. Never panics on an RCU error: it counts.
pub fn run(opts: &Options) -> Report {
    let shared = Arc::new(Shared::new());
    let before = rcu_core::stats();
    let start = Instant::now();
    let mut stalled = false;
    let mut writer_time = Duration::ZERO;
    std::thread::scope(|s| {
        let readers = if opts.mode == Mode::Uperf {
            0
        } else {
            opts.readers
        };
        for r in 0..readers {
            let (shared, churn) = (&shared, opts.churn && opts.mode == Mode::Stress);
            let plain = opts.mode == Mode::Rperf;
            let seed = opts.seed.wrapping_add(r as u64 * 7919);
            s.spawn(move || {
                let mut round = 0;
                loop {
                    // A churned reader runs on a fresh thread each time.
                    std::thread::scope(|t| {
                        t.spawn(|| reader_thread(shared, seed.wrapping_add(round), churn, plain));
                    });
                    round += 1;
                    if !churn || shared.stopped() {
                        break;
                    }
                }
            });
        }
        if opts.mode == Mode::Stress {
            for _ in 0..opts.long_readers {
                s.spawn(|| long_reader_thread(&shared));
            }
            for t in 0..opts.sync_threads {
                let seed = opts.seed ^ (t as u64 + 1) << 32;
                let shared = &shared;
                s.spawn(move || sync_thread(shared, seed));
            }
        }
        let writer = (opts.mode != Mode::Rperf).then(|| s.spawn(|| writer_thread(&shared, opts)));

        // The stall detector, and the clock.
        let mut last = (0, Instant::now());
        while start.elapsed() < opts.duration && writer.as_ref().is_none_or(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 20 }));
            let p = shared.publications.load(Ordering::Relaxed);
            if p != last.0 || writer.is_none() {
                last = (p, Instant::now());
            } else if last.1.elapsed() > opts.stall_timeout {
                stalled = true;
                break;
            }
        }
        shared.stop.store(true, Ordering::Relaxed);
        if let Some(w) = writer {
            writer_time = w.join().unwrap();
        }
    });
    let elapsed = start.elapsed();
    rcu_core::drain();
    let after = rcu_core::stats();
    let reads = shared.reads.load(Ordering::Relaxed);
    let publications = shared.publications.load(Ordering::Relaxed);
    Report {
        reads,
        dead_seen: shared.dead_seen.load(Ordering::Relaxed),
        age_errors: shared.age_errors.load(Ordering::Relaxed),
        reuse_errors: shared.reuse_errors.load(Ordering::Relaxed),
        max_age_seen: shared.max_age_seen.load(Ordering::Relaxed),
        publications,
        grace_periods: after.grace_periods - before.grace_periods,
        forced_grace_periods: after.forced_grace_periods - before.forced_grace_periods,
        notifier_calls: after.notifier_calls - before.notifier_calls,
        callbacks_queued: after.callbacks_queued - before.callbacks_queued,
        callbacks_run: after.callbacks_run - before.callbacks_run,
        reader_threads_started: shared.reader_threads.load(Ordering::Relaxed),
        stalled,
        elapsed,
        ns_per_read: shared.read_nanos.load(Ordering::Relaxed) as f64 / reads.max(1) as f64,
        ns_per_update: writer_time.as_nanos() as f64 / publications.max(1) as f64,
    }
}
