//! The grace-period engine: one [`Inner`] per RCU domain.
//!
//! The process-wide domain behind the free functions is a `static Inner`;
//! [`RcuDomain`] makes independent ones (tests, loom models, isolation).

use crate::barrier::{self, AtomicCounter, Mode};
use crate::config::{
    Config, ConfigError, ForcedCauses, GpHistogram, HISTOGRAM_BUCKETS, StallWarning, Stats,
};
use crate::event::Event;
use crate::guard::{Guard, OwnedReadGuard};
use crate::queue::{Callback, Queue};
use crate::reader::{NotifierFn, NotifierHandle, RawGuard, Record, Registry};
use crate::sync::{
    Arc, AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering, fence,
    lock, spin_loop, thread, thread_local,
};
use std::cell::Cell;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// Normal-state re-scans before the first sleep: the first spin with
/// doubling pauses (1 + 2 + ... + 512 spin hints, tens of microseconds in
/// all: most critical sections are sub-microsecond), the rest yield (a
/// reader preempted inside its critical section gets to finish it).
#[cfg(not(rcu_loom))]
const SPIN_RESCANS: u32 = 10;
#[cfg(not(rcu_loom))]
const YIELD_RESCANS: u32 = 10;
#[cfg(rcu_loom)]
const SPIN_RESCANS: u32 = 1;
#[cfg(rcu_loom)]
const YIELD_RESCANS: u32 = 0;

/// Shards of the owned-guard record pool.
#[cfg(not(rcu_loom))]
const OWNED_SHARDS: usize = 8;
#[cfg(rcu_loom)]
const OWNED_SHARDS: usize = 1;

#[cfg(not(rcu_loom))]
macro_rules! owned_shards {
    () => {
        [const { Mutex::new(Vec::new()) }; OWNED_SHARDS]
    };
}
#[cfg(rcu_loom)]
macro_rules! owned_shards {
    () => {
        [Mutex::new(Vec::new())]
    };
}

/// The owned-guard pool shard of the calling thread.
fn owned_shard() -> usize {
    #[cfg(not(rcu_loom))]
    {
        thread_local! {
            static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        SHARD
            .try_with(|s| {
                if s.get() == usize::MAX {
                    // Relaxed: only spreads threads over shards.
                    s.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % OWNED_SHARDS);
                }
                s.get()
            })
            .unwrap_or(0)
    }
    #[cfg(rcu_loom)]
    {
        0
    }
}

/// The next domain id (0 is the process-wide domain).
fn next_domain_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A value alone on its cache line (two, for adjacent-line prefetch).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

#[cfg(not(rcu_loom))]
thread_local! {
    /// The domain whose reclaim callback or notifier this thread is running.
    static CONTEXT: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
}
#[cfg(rcu_loom)]
thread_local! {
    /// The domain whose reclaim callback or notifier this thread is running.
    static CONTEXT: Cell<*const Inner> = Cell::new(std::ptr::null());
}

/// Runs `f` with [`CONTEXT`] set to `domain`.
fn in_context<R>(domain: &Inner, f: impl FnOnce() -> R) -> R {
    struct Restore(*const Inner);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0;
            let _ = CONTEXT.try_with(|c| c.set(old));
        }
    }
    let _restore = Restore(CONTEXT.with(|c| c.replace(domain)));
    f()
}

/// Why the forced state was entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Expedite,
    Drain,
    Memory,
    Callbacks,
    Polls,
}

/// The stall hook: called with each stall warning, on the grace-period
/// thread.
pub(crate) type StallHook = std::sync::Arc<dyn Fn(&StallWarning) + Send + Sync + 'static>;

#[derive(Default)]
struct Counters {
    grace_periods: AtomicCounter,
    forced: AtomicCounter,
    forced_callbacks: AtomicCounter,
    forced_polls: AtomicCounter,
    forced_drain: AtomicCounter,
    forced_expedite: AtomicCounter,
    forced_memory: AtomicCounter,
    stalls: AtomicCounter,
    histogram: [AtomicCounter; HISTOGRAM_BUCKETS],
    max_pending_bytes: std::sync::atomic::AtomicU64,
    polls: AtomicCounter,
    notifier_calls: AtomicCounter,
    reader_wakeups: AtomicCounter,
    heavy_barriers: AtomicCounter,
    callbacks_queued: AtomicCounter,
    callbacks_run: AtomicCounter,
    callback_panics: AtomicCounter,
    longest_gp_ns: std::sync::atomic::AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            grace_periods: AtomicCounter::new(),
            forced: AtomicCounter::new(),
            forced_callbacks: AtomicCounter::new(),
            forced_polls: AtomicCounter::new(),
            forced_drain: AtomicCounter::new(),
            forced_expedite: AtomicCounter::new(),
            forced_memory: AtomicCounter::new(),
            stalls: AtomicCounter::new(),
            histogram: [const { AtomicCounter::new() }; HISTOGRAM_BUCKETS],
            max_pending_bytes: std::sync::atomic::AtomicU64::new(0),
            polls: AtomicCounter::new(),
            notifier_calls: AtomicCounter::new(),
            reader_wakeups: AtomicCounter::new(),
            heavy_barriers: AtomicCounter::new(),
            callbacks_queued: AtomicCounter::new(),
            callbacks_run: AtomicCounter::new(),
            callback_panics: AtomicCounter::new(),
            longest_gp_ns: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Deliberate defects for the loom models' self-checks (set before a
/// model's threads start; plain `std` atomics, not part of the protocol).
#[cfg(rcu_loom)]
pub(crate) struct LoomDefects {
    /// Arm `waiting` on the first forced iteration only (the seed patch).
    pub(crate) arm_waiting_once: std::sync::atomic::AtomicBool,
    /// Never arm `waiting`: readers never signal the forced state.
    pub(crate) never_arm_waiting: std::sync::atomic::AtomicBool,
    /// Return from a grace period without waiting for readers.
    pub(crate) skip_wait_for_readers: std::sync::atomic::AtomicBool,
}

#[cfg(rcu_loom)]
impl LoomDefects {
    fn new() -> Self {
        use std::sync::atomic::AtomicBool;
        LoomDefects {
            arm_waiting_once: AtomicBool::new(false),
            never_arm_waiting: AtomicBool::new(false),
            skip_wait_for_readers: AtomicBool::new(false),
        }
    }

    fn get(flag: &std::sync::atomic::AtomicBool) -> bool {
        // Relaxed: set before the model's threads start.
        flag.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The stalls one grace period has reported. (Unread under loom, which has
/// no clock for stall warnings.)
#[cfg_attr(rcu_loom, allow(dead_code))]
struct StallCheck {
    started: Instant,
    /// Records (by address) already reported in this grace period.
    reported: Vec<usize>,
}

/// Grace-period leadership: one caller runs grace periods at a time.
struct GpState {
    leading: bool,
    /// Scratch list of the readers the current grace period waits for, kept
    /// to save an allocation per grace period.
    holders: Vec<Arc<Record>>,
}

/// Ends a leader's turn: clears `leading` and wakes the followers.
struct Finish<'a> {
    inner: &'a Inner,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        lock(&self.inner.gp).leading = false;
        self.inner.gp_done.notify_all();
    }
}

/// How the reclaim thread holds its domain.
pub(crate) enum Handle {
    #[cfg_attr(rcu_loom, allow(dead_code))]
    Static(&'static Inner),
    Shared(Arc<Inner>),
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        match self {
            Handle::Static(i) => Handle::Static(i),
            Handle::Shared(i) => Handle::Shared(Arc::clone(i)),
        }
    }
}

impl std::ops::Deref for Handle {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        match self {
            Handle::Static(i) => i,
            Handle::Shared(i) => i,
        }
    }
}

/// One RCU domain's state: the grace-period counter, the reader registry,
/// the callback queue, and the events and statistics that tie them together.
///
/// Once started, an `Inner` must not move (records and the queue point into
/// it): it is either a `static` or inside an `Arc`.
pub(crate) struct Inner {
    /// Bit 0 always set; +2 per grace period. Read by every reader's lock.
    pub(crate) gp_ctr: Padded<AtomicU64>,
    /// Unique for the life of the process (0: the process-wide domain), so a
    /// cookie of a dropped domain is never taken for a new one's.
    pub(crate) id: u64,
    /// [`RcuDomain`] handles alive (not counting the reclaim thread's): the
    /// last one to go shuts the reclaim thread down.
    owners: std::sync::atomic::AtomicUsize,
    /// Records of owned guards not in use, sharded by thread so taking and
    /// dropping an owned guard takes no domain-wide lock.
    owned_free: [Mutex<Vec<Arc<Record>>>; OWNED_SHARDS],
    started: AtomicBool,
    mode: AtomicU8,
    start_lock: Mutex<()>,
    callback_threshold: AtomicUsize,
    poll_interval_ns: AtomicU64,
    max_polls: AtomicU32,
    allow_membarrier: AtomicBool,
    memory_limit: AtomicUsize,
    stall_timeout_ns: AtomicU64,
    /// `None`: the default hook (one line on stderr).
    stall_hook: std::sync::Mutex<Option<StallHook>>,
    pub(crate) registry: Mutex<Registry>,
    /// Who leads grace periods, and the leader's scratch list.
    gp: Mutex<GpState>,
    /// Signalled when a grace period ends.
    gp_done: Condvar,
    /// Grace-period sequence: odd while one runs, +2 per grace period.
    gp_seq: AtomicU64,
    /// Readers signal it when they leave in the forced state.
    gp_event: Event,
    /// Interrupts the normal-state sleep: force now.
    kick: Event,
    queue: Queue,
    /// Callbacks queued and not yet taken into a batch (plus the batch in
    /// flight, until its grace period ends).
    pending: AtomicUsize,
    /// Bytes held by callbacks queued and not yet run.
    pending_bytes: AtomicUsize,
    call_ready: Event,
    drains: AtomicUsize,
    expedites: AtomicUsize,
    reclaim_started: AtomicBool,
    reclaim: Mutex<Option<thread::JoinHandle<()>>>,
    shutdown: AtomicBool,
    stats: Counters,
    /// loom models only: deliberate defects, to show the models can fail.
    #[cfg(rcu_loom)]
    pub(crate) defects: LoomDefects,
}

impl Inner {
    loom_const_fn! {
        pub(crate) fn new(id: u64) -> Self {
            Inner {
                gp_ctr: Padded(AtomicU64::new(1)),
                id,
                owners: std::sync::atomic::AtomicUsize::new(1),
                owned_free: owned_shards!(),
                started: AtomicBool::new(false),
                mode: AtomicU8::new(0),
                start_lock: Mutex::new(()),
                callback_threshold: AtomicUsize::new(Config::DEFAULT.callback_threshold),
                poll_interval_ns: AtomicU64::new(Config::DEFAULT.poll_interval.as_nanos() as u64),
                max_polls: AtomicU32::new(Config::DEFAULT.max_polls),
                allow_membarrier: AtomicBool::new(Config::DEFAULT.membarrier),
                memory_limit: AtomicUsize::new(Config::DEFAULT.memory_limit),
                stall_timeout_ns: AtomicU64::new(Config::DEFAULT.stall_timeout.as_nanos() as u64),
                stall_hook: std::sync::Mutex::new(None),
                registry: Mutex::new(Registry::new()),
                gp: Mutex::new(GpState { leading: false, holders: Vec::new() }),
                gp_done: Condvar::new(),
                gp_seq: AtomicU64::new(0),
                gp_event: Event::new(),
                kick: Event::new(),
                queue: Queue::new(),
                pending: AtomicUsize::new(0),
                pending_bytes: AtomicUsize::new(0),
                call_ready: Event::new(),
                drains: AtomicUsize::new(0),
                expedites: AtomicUsize::new(0),
                reclaim_started: AtomicBool::new(false),
                reclaim: Mutex::new(None),
                shutdown: AtomicBool::new(false),
                stats: Counters::new(),
                #[cfg(rcu_loom)]
                defects: LoomDefects::new(),
            }
        }
    }

    /// Sets the tunables; refused once the domain has started.
    pub(crate) fn configure(&self, config: &Config) -> Result<(), ConfigError> {
        if config.callback_threshold == 0 {
            return Err(ConfigError::Invalid(
                "callback_threshold must be at least 1",
            ));
        }
        if config.poll_interval.is_zero() {
            return Err(ConfigError::Invalid("poll_interval must be non-zero"));
        }
        if config.stall_timeout.is_zero() {
            return Err(ConfigError::Invalid("stall_timeout must be non-zero"));
        }
        let _g = lock(&self.start_lock);
        // Relaxed: read under `start_lock`, which `start` also holds.
        if self.started.load(Ordering::Relaxed) {
            return Err(ConfigError::AlreadyStarted);
        }
        // Relaxed (all six): published to other threads by the Release store
        // of `started` in `start`, which every user of the domain passes.
        self.callback_threshold
            .store(config.callback_threshold, Ordering::Relaxed);
        let ns = u64::try_from(config.poll_interval.as_nanos()).unwrap_or(u64::MAX);
        self.poll_interval_ns.store(ns, Ordering::Relaxed);
        self.max_polls.store(config.max_polls, Ordering::Relaxed);
        self.allow_membarrier
            .store(config.membarrier, Ordering::Relaxed);
        self.memory_limit
            .store(config.memory_limit, Ordering::Relaxed);
        let ns = u64::try_from(config.stall_timeout.as_nanos()).unwrap_or(u64::MAX);
        self.stall_timeout_ns.store(ns, Ordering::Relaxed);
        Ok(())
    }

    /// Starts the domain: fixes the configuration and the barrier mode.
    /// Idempotent and cheap after the first call.
    #[inline]
    pub(crate) fn start(&self) {
        // Acquire: pairs with the Release store below; whoever sees `true`
        // sees the mode, the configuration and the initialised queue.
        if !self.started.load(Ordering::Acquire) {
            self.start_slow();
        }
    }

    #[cold]
    fn start_slow(&self) {
        let _g = lock(&self.start_lock);
        // Relaxed: under `start_lock`.
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        // Relaxed: under `start_lock`, written by `configure` under it too.
        let mode = if self.allow_membarrier.load(Ordering::Relaxed) {
            barrier::process_mode()
        } else {
            Mode::Fence
        };
        // Relaxed: published by the Release store of `started`.
        self.mode.store(mode.as_u8(), Ordering::Relaxed);
        self.queue.init();
        // Release: pairs with the Acquire load in `start`.
        self.started.store(true, Ordering::Release);
    }

    pub(crate) fn mode(&self) -> Mode {
        // Relaxed: written before the Release store of `started`, which the
        // caller has Acquire-loaded (every path calls `start` first).
        if self.mode.load(Ordering::Relaxed) == Mode::Membarrier.as_u8() {
            Mode::Membarrier
        } else {
            Mode::Fence
        }
    }

    /// Registers the calling thread as a reader.
    pub(crate) fn register(&self) -> Arc<Record> {
        self.start();
        lock(&self.registry).acquire(self, self.mode())
    }

    /// Takes a record for an owned guard from the calling thread's shard of
    /// the pool (or makes one) and enters a critical section on it.
    pub(crate) fn lock_owned(
        &self,
        taken_at: &'static std::panic::Location<'static>,
    ) -> Arc<Record> {
        self.start();
        let pooled = lock(&self.owned_free[owned_shard()]).pop();
        let rec = match pooled {
            Some(rec) => rec,
            None => lock(&self.registry).acquire_owned(self, self.mode()),
        };
        {
            let mut cold = lock(&rec.cold);
            cold.owner = Some(thread::current());
            cold.taken_at = Some(taken_at);
        }
        rec.lock(&self.gp_ctr.0);
        rec
    }

    /// Leaves an owned guard's critical section and pools its record.
    pub(crate) fn unlock_owned(&self, rec: Arc<Record>) {
        rec.unlock();
        lock(&self.owned_free[owned_shard()]).push(rec);
    }

    pub(crate) fn unregister(&self, rec: &Record) {
        let notifiers = lock(&self.registry).release(rec);
        // User closures: dropped with no lock of ours held.
        drop(notifiers);
    }

    /// Called by a reader that left its critical section while a forced
    /// grace period waited for it.
    pub(crate) fn reader_woke(&self) {
        self.stats.reader_wakeups.bump();
        self.gp_event.set();
    }

    /// Panics on the calls that would wait for the caller itself.
    fn check_caller(&self, what: &str) {
        let context = CONTEXT.try_with(|c| c.get()).unwrap_or(std::ptr::null());
        if std::ptr::eq(context, self) {
            panic!(
                "rcu: {what}() called from a reclaim callback or force-quiescent notifier; \
                 it would wait for itself"
            );
        }
        if lock(&self.registry).current_thread_reading() {
            panic!(
                "rcu: {what}() called inside a read-side critical section; the grace period \
                 would wait for the caller forever (drop the ReadGuard first)"
            );
        }
    }

    /// `synchronize()` / `synchronize_expedited()`.
    pub(crate) fn synchronize(&self, expedite: bool) {
        self.start();
        self.check_caller(if expedite {
            "synchronize_expedited"
        } else {
            "synchronize"
        });
        if expedite {
            // SeqCst: read by `force_cause` on the grace-period thread, which
            // must see it before it sleeps again (the kick orders it too).
            self.expedites.fetch_add(1, Ordering::SeqCst);
            self.kick.set();
            self.wait_grace_period();
            self.expedites.fetch_sub(1, Ordering::SeqCst);
        } else {
            self.wait_grace_period();
        }
    }

    /// The grace-period sequence value that marks "a full grace period has
    /// elapsed since now": the end of the next grace period if none runs, of
    /// the one after the running one otherwise (`gp_seq` is odd while one
    /// runs, +2 per grace period).
    pub(crate) fn cookie(&self) -> u64 {
        // SeqCst fence: orders the caller's earlier stores (an unpublish)
        // before its snapshot, hence before the start of any grace period
        // that the snapshot counts; that grace period's heavy barrier then
        // orders them before its scans (the Dekker pair with the readers).
        fence(Ordering::SeqCst);
        // SeqCst: part of the total order the fence above relies on.
        (self.gp_seq.load(Ordering::SeqCst) + 3) & !1
    }

    /// Whether the grace period a [`cookie`](Self::cookie) names has ended.
    pub(crate) fn poll(&self, cookie: u64) -> bool {
        // SeqCst (at least Acquire): pairs with the leader's final increment,
        // which follows its Acquire scans, so what the caller frees next is
        // ordered after the readers' critical sections.
        self.gp_seq.load(Ordering::SeqCst) >= cookie
    }

    /// Waits until the grace period `target` names has ended, running grace
    /// periods (or sharing other callers') as needed.
    pub(crate) fn synchronize_since(&self, target: u64) {
        self.start();
        if self.poll(target) {
            return;
        }
        self.check_caller("synchronize_since");
        self.wait_for(target);
    }

    /// Waits for a full grace period that starts after this call, sharing
    /// grace periods with concurrent callers.
    ///
    /// The sequence `gp_seq` is odd while a grace period runs. A caller that
    /// sees `s` needs the sequence to reach `(s + 3) & !1`: the end of the
    /// next grace period if none runs, of the one after the running one
    /// otherwise. One caller at a time leads (runs grace periods); the
    /// others sleep on `gp_done` and are served by whichever grace period
    /// reaches their target, so all callers that arrive while one grace
    /// period runs share the next one.
    pub(crate) fn wait_grace_period(&self) {
        self.wait_for(self.cookie());
    }

    fn wait_for(&self, target: u64) {
        let mut state = lock(&self.gp);
        while !self.poll(target) {
            if state.leading {
                state = match self.gp_done.wait(state) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                continue;
            }
            state.leading = true;
            let mut holders = std::mem::take(&mut state.holders);
            drop(state);
            // Clear `leading` and wake the followers even if a notifier's
            // panic escapes (they are caught, but be robust).
            let finish = Finish { inner: self };
            // Let callers that are runnable right now take their snapshots
            // first, so this grace period serves them too: without it, on a
            // machine with fewer cores than callers, a grace period that
            // takes microseconds ends before the others are even scheduled,
            // and each caller runs its own.
            thread::yield_now();
            self.run_grace_period(&mut holders);
            drop(finish);
            state = lock(&self.gp);
            state.holders = holders;
        }
    }

    /// One grace period. Only the leader runs it.
    fn run_grace_period(&self, holders: &mut Vec<Arc<Record>>) {
        let started = Instant::now();
        // SeqCst: see `wait_grace_period`.
        self.gp_seq.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode();
        let gp = {
            let registry = lock(&self.registry);
            // Relaxed: `gp_ctr` is written only here, under the `gp` lock.
            let gp = self.gp_ctr.0.load(Ordering::Relaxed) + 2;
            // Relaxed: the heavy barrier below orders it before the scans;
            // readers that still read the old value only look older.
            self.gp_ctr.0.store(gp, Ordering::Relaxed);
            // Orders every earlier store of ours (and, through the fence in
            // `wait_grace_period`, of the callers we serve) before the scans.
            barrier::heavy(mode, &self.stats.heavy_barriers);
            holders.clear();
            holders.extend(
                registry
                    .records
                    .iter()
                    .filter(|r| holding_up(r, gp))
                    .cloned(),
            );
            gp
        };
        // A deliberately broken engine, for the self-checks of the loom
        // models and of the torture test (`--cfg rcu_broken_synchronize`):
        // the grace period ends without waiting for anyone.
        #[cfg(rcu_loom)]
        let broken = LoomDefects::get(&self.defects.skip_wait_for_readers);
        #[cfg(not(rcu_loom))]
        let broken = cfg!(rcu_broken_synchronize);
        if broken {
            holders.clear();
        }
        let forced = self.wait_for_readers(holders, gp, mode, started);
        holders.clear();

        let stats = &self.stats;
        stats.grace_periods.bump();
        if let Some(cause) = forced {
            stats.forced.bump();
            match cause {
                Cause::Expedite => stats.forced_expedite.bump(),
                Cause::Drain => stats.forced_drain.bump(),
                Cause::Memory => stats.forced_memory.bump(),
                Cause::Callbacks => stats.forced_callbacks.bump(),
                Cause::Polls => stats.forced_polls.bump(),
            }
        }
        let elapsed = started.elapsed();
        stats.histogram[GpHistogram::bucket_of(elapsed)].bump();
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: a statistic.
        stats
            .longest_gp_ns
            .fetch_max(ns, std::sync::atomic::Ordering::Relaxed);
        // SeqCst: see `wait_grace_period`. It also publishes the grace
        // period's end to callers that read it (their Acquire-or-stronger
        // load, then the free, is ordered after our Acquire scans).
        self.gp_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// The condition that forces the current grace period, if any.
    fn force_cause(&self, polls: u32) -> Option<Cause> {
        // SeqCst (all three): each is paired with a `kick.set()` after the
        // writer's update; the normal state resets `kick` before it checks
        // here, so a change is either seen here or wakes the sleep.
        if self.expedites.load(Ordering::SeqCst) > 0 {
            Some(Cause::Expedite)
        } else if self.drains.load(Ordering::SeqCst) > 0 {
            Some(Cause::Drain)
        } else if self.pending_bytes.load(Ordering::SeqCst)
            // Relaxed: configuration, fixed at start.
            >= self.memory_limit.load(Ordering::Relaxed)
        {
            Some(Cause::Memory)
        } else if self.pending.load(Ordering::SeqCst)
            // Relaxed: configuration, fixed at start.
            >= self.callback_threshold.load(Ordering::Relaxed)
        {
            Some(Cause::Callbacks)
        // Relaxed: configuration, fixed at start.
        } else if polls >= self.max_polls.load(Ordering::Relaxed) {
            Some(Cause::Polls)
        } else {
            None
        }
    }

    /// The seed's unified wait: poll in the normal state, force when a
    /// condition holds. Returns the cause if the grace period was forced.
    fn wait_for_readers(
        &self,
        holders: &mut Vec<Arc<Record>>,
        gp: u64,
        mode: Mode,
        started: Instant,
    ) -> Option<Cause> {
        let mut stalls = StallCheck {
            started,
            reported: Vec::new(),
        };
        let mut forced = None;
        let mut armed = false;
        let mut rescans = 0u32;
        let mut polls = 0u32;
        loop {
            if holders.is_empty() {
                return forced;
            }
            if forced.is_none() {
                forced = self.force_cause(polls);
                if forced.is_some() {
                    self.notify(holders);
                }
            }
            if forced.is_some() {
                // Forced state. Re-arm on every iteration: a reader that
                // cleared `waiting` and re-entered with a stale counter would
                // otherwise never signal again (the lost wake-up in the seed
                // patch, which sets `waiting` once).
                self.gp_event.reset();
                if self.arm_waiting(armed) {
                    for r in holders.iter() {
                        // Relaxed: ordered before the scan below by the heavy
                        // barrier; the reader's side is its unlock's light
                        // barrier.
                        r.waiting.store(true, Ordering::Relaxed);
                    }
                    armed = true;
                }
                barrier::heavy(mode, &self.stats.heavy_barriers);
                holders.retain(|r| {
                    let holding = holding_up(r, gp);
                    if !holding {
                        // Relaxed: a hint; a stale `true` costs one spurious
                        // wake-up at that reader's next unlock.
                        r.waiting.store(false, Ordering::Relaxed);
                    }
                    holding
                });
                if !holders.is_empty() {
                    self.wait_forced(holders, &mut stalls);
                }
            } else if rescans < SPIN_RESCANS + YIELD_RESCANS {
                if rescans < SPIN_RESCANS {
                    for _ in 0..1u32 << rescans {
                        spin_loop();
                    }
                } else {
                    thread::yield_now();
                }
                rescans += 1;
                holders.retain(|r| holding_up(r, gp));
            } else {
                // Normal state: sleep, interruptibly. Reset before checking,
                // so a kick after the check cuts the sleep short.
                self.kick.reset();
                if self.force_cause(polls).is_some() {
                    continue;
                }
                // Relaxed: configuration, fixed at start.
                let interval = Duration::from_nanos(self.poll_interval_ns.load(Ordering::Relaxed));
                self.kick.wait_timeout(interval);
                polls += 1;
                self.stats.polls.bump();
                holders.retain(|r| holding_up(r, gp));
                self.check_stalls(holders, &mut stalls);
            }
        }
    }

    /// The forced state's wait for a reader's signal. It wakes up now and
    /// then to report stalls (the caller then re-arms and rescans).
    fn wait_forced(&self, holders: &[Arc<Record>], stalls: &mut StallCheck) {
        #[cfg(rcu_loom)]
        {
            // No clocks under loom: block, so a lost wake-up is a deadlock
            // the model reports.
            let _ = (holders, stalls);
            self.gp_event.wait();
        }
        #[cfg(not(rcu_loom))]
        {
            let slice =
                (self.stall_timeout() / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
            if !self.gp_event.wait_timeout(slice) {
                self.check_stalls(holders, stalls);
            }
        }
    }

    #[cfg_attr(rcu_loom, allow(dead_code))]
    fn stall_timeout(&self) -> Duration {
        // Relaxed: configuration, fixed at start.
        Duration::from_nanos(self.stall_timeout_ns.load(Ordering::Relaxed))
    }

    /// Stall warnings need a clock, which loom models do not have.
    #[cfg(rcu_loom)]
    fn check_stalls(&self, _holders: &[Arc<Record>], _stalls: &mut StallCheck) {}

    /// Reports, once per stall, each reader that has held up this grace
    /// period for longer than the stall timeout.
    #[cfg(not(rcu_loom))]
    fn check_stalls(&self, holders: &[Arc<Record>], stalls: &mut StallCheck) {
        let stalled_for = stalls.started.elapsed();
        if stalled_for < self.stall_timeout() {
            return;
        }
        let mut warnings = Vec::new();
        for r in holders {
            let key = Arc::as_ptr(r).addr();
            if stalls.reported.contains(&key) {
                continue;
            }
            stalls.reported.push(key);
            if let Some(thread) = &lock(&r.cold).owner {
                warnings.push(StallWarning {
                    thread_id: thread.id(),
                    thread_name: thread.name().map(str::to_owned),
                    stalled_for,
                });
            }
        }
        if warnings.is_empty() {
            return;
        }
        let hook = self
            .stall_hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        in_context(self, || {
            for w in &warnings {
                self.stats.stalls.bump();
                match &hook {
                    Some(hook) => {
                        if catch_unwind(AssertUnwindSafe(|| hook(w))).is_err() {
                            eprintln!("rcu: the stall hook panicked");
                        }
                    }
                    None => eprintln!("{w}"),
                }
            }
        });
    }

    /// Replaces the stall hook (`None`: the default, one line on stderr).
    pub(crate) fn set_stall_hook(&self, hook: Option<StallHook>) {
        *self
            .stall_hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hook;
    }

    /// Whether this forced iteration arms `waiting`: always, except under
    /// the loom models' deliberate defects.
    #[inline]
    fn arm_waiting(&self, armed_before: bool) -> bool {
        #[cfg(rcu_loom)]
        {
            let d = &self.defects;
            if LoomDefects::get(&d.never_arm_waiting) {
                return false;
            }
            if LoomDefects::get(&d.arm_waiting_once) && armed_before {
                return false;
            }
        }
        let _ = armed_before;
        true
    }

    /// Calls the force-quiescent notifiers of the readers in `holders`, with
    /// no lock held, catching panics.
    fn notify(&self, holders: &[Arc<Record>]) {
        let notifiers: Vec<NotifierFn> = holders
            .iter()
            .flat_map(|r| {
                lock(&r.cold)
                    .notifiers
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(|(_, f)| std::sync::Arc::clone(f))
                    .collect::<Vec<_>>()
            })
            .collect();
        in_context(self, || {
            for f in notifiers {
                self.stats.notifier_calls.bump();
                if catch_unwind(AssertUnwindSafe(|| f())).is_err() {
                    eprintln!("rcu: a force-quiescent notifier panicked; the grace period goes on");
                }
            }
        });
    }

    /// `call_rcu`: queues `f` to run after a grace period. It counts toward
    /// the memory limit with its own size plus `extra_bytes`.
    pub(crate) fn call_rcu<F: FnOnce() + Send + 'static>(
        &self,
        handle: impl FnOnce() -> Handle,
        f: F,
        extra_bytes: usize,
    ) {
        self.start();
        self.ensure_reclaim_thread(handle);
        let bytes = size_of::<F>().saturating_add(extra_bytes);
        self.queue.push(f, bytes);
        // SeqCst: read by `force_cause`; the kick below orders it too.
        let held = self
            .pending_bytes
            .fetch_add(bytes, Ordering::SeqCst)
            .saturating_add(bytes);
        // Relaxed (both): a statistic. Written only when it grows, so the
        // common call does not take the line for an RMW.
        let max = &self.stats.max_pending_bytes;
        if held as u64 > max.load(std::sync::atomic::Ordering::Relaxed) {
            max.fetch_max(held as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // Kick the normal-state sleep when the bytes cross the limit.
        // Relaxed: configuration, fixed at start.
        let limit = self.memory_limit.load(Ordering::Relaxed);
        if held >= limit && held - bytes < limit {
            self.kick.set();
        }
        self.stats.callbacks_queued.bump();
        // SeqCst: the reclaim thread's `reset; load pending; wait` and our
        // `increment; set` form a Dekker pair; the count is also read by
        // `force_cause`.
        let pending = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        if pending == 1 {
            self.call_ready.set();
        }
        // Kick the normal-state sleep when the count reaches the threshold;
        // it rises one at a time, so every upward crossing passes here, and
        // the forced state, once entered, does not need more kicks.
        // Relaxed: configuration, fixed at start.
        if pending == self.callback_threshold.load(Ordering::Relaxed) {
            self.kick.set();
        }
    }

    /// `drain()`: waits until every callback queued before it has run.
    pub(crate) fn drain(&self, handle: impl FnOnce() -> Handle) {
        self.start();
        self.check_caller("drain");
        // SeqCst: see `force_cause`.
        self.drains.fetch_add(1, Ordering::SeqCst);
        self.kick.set();
        let done = Arc::new(Event::new());
        let signal = Arc::clone(&done);
        // The queue is FIFO, so when this runs, everything before it has.
        self.call_rcu(handle, move || signal.set(), 0);
        done.wait();
        self.drains.fetch_sub(1, Ordering::SeqCst);
    }

    fn ensure_reclaim_thread(&self, handle: impl FnOnce() -> Handle) {
        // Acquire: pairs with the Release store below (nothing is read
        // through it but the flag; kept for clarity of the once-only start).
        if self.reclaim_started.load(Ordering::Acquire) {
            return;
        }
        let mut slot = lock(&self.reclaim);
        // Relaxed: under `reclaim`.
        if self.reclaim_started.load(Ordering::Relaxed) {
            return;
        }
        let handle = handle();
        *slot = Some(spawn_reclaim(handle));
        // Release: see above.
        self.reclaim_started.store(true, Ordering::Release);
    }

    /// Stops the reclaim thread after it has run every queued callback.
    pub(crate) fn shutdown(&self) {
        // SeqCst: read by the reclaim thread after it finds nothing pending.
        self.shutdown.store(true, Ordering::SeqCst);
        self.call_ready.set();
        let thread = lock(&self.reclaim).take();
        if let Some(t) = thread {
            let own = CONTEXT
                .try_with(|c| std::ptr::eq(c.get(), self))
                .unwrap_or(false);
            if !own {
                let _ = t.join();
            }
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let s = &self.stats;
        // SeqCst: a snapshot for users; no ordering is derived from it.
        let pending = self.pending.load(Ordering::SeqCst) as u64;
        let started = self.started.load(Ordering::Acquire);
        Stats {
            grace_periods: s.grace_periods.get(),
            forced_grace_periods: s.forced.get(),
            expedited_grace_periods: s.forced_expedite.get(),
            forced_by: ForcedCauses {
                callbacks: s.forced_callbacks.get(),
                polls: s.forced_polls.get(),
                drain: s.forced_drain.get(),
                expedite: s.forced_expedite.get(),
                memory: s.forced_memory.get(),
            },
            polls: s.polls.get(),
            notifier_calls: s.notifier_calls.get(),
            reader_wakeups: s.reader_wakeups.get(),
            heavy_barriers: s.heavy_barriers.get(),
            callbacks_queued: s.callbacks_queued.get(),
            callbacks_run: s.callbacks_run.get(),
            callbacks_pending: pending,
            callback_panics: s.callback_panics.get(),
            readers: lock(&self.registry).registered(),
            // Relaxed: a statistic.
            longest_grace_period: Duration::from_nanos(
                s.longest_gp_ns.load(std::sync::atomic::Ordering::Relaxed),
            ),
            histogram: GpHistogram {
                buckets: std::array::from_fn(|i| s.histogram[i].get()),
            },
            stalls: s.stalls.get(),
            // SeqCst: a snapshot for users.
            callbacks_pending_bytes: self.pending_bytes.load(Ordering::SeqCst) as u64,
            // Relaxed: a statistic.
            max_pending_bytes: s
                .max_pending_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            membarrier: started && self.mode() == Mode::Membarrier,
        }
    }
}

/// Whether the reader holds up the grace period `gp`.
#[inline]
fn holding_up(r: &Record, gp: u64) -> bool {
    // Acquire: pairs with the reader's Release stores of `ctr` (0 at unlock,
    // the snapshot at lock): once we see either, every access of the critical
    // section before it is done, so the memory it read may be reclaimed.
    let c = r.ctr.load(Ordering::Acquire);
    c != 0 && c != gp
}

fn spawn_reclaim(handle: Handle) -> thread::JoinHandle<()> {
    #[cfg(not(rcu_loom))]
    {
        thread::Builder::new()
            .name("rcu-reclaim".into())
            .spawn(move || reclaim_loop(handle))
            .expect("failed to spawn the RCU reclaim thread")
    }
    #[cfg(rcu_loom)]
    {
        thread::spawn(move || reclaim_loop(handle))
    }
}

/// The reclaim thread: waits for callbacks, starts a grace period at once,
/// then runs the batch counted before it.
fn reclaim_loop(inner: Handle) {
    // The batch being run, kept to save an allocation per grace period.
    let mut batch = Vec::new();
    in_context(&inner, || {
        loop {
            let n = loop {
                inner.call_ready.reset();
                // SeqCst: see `call_rcu`.
                let n = inner.pending.load(Ordering::SeqCst);
                if n > 0 {
                    break n;
                }
                // SeqCst (Acquire is what matters): pairs with the store in
                // `shutdown`, which follows every `call_rcu` that must still
                // run. Only after seeing it is `pending` re-read: the load
                // above may predate a callback queued just before shutdown
                // (loom found this exit with a callback still queued).
                if inner.shutdown.load(Ordering::SeqCst) {
                    if inner.pending.load(Ordering::SeqCst) == 0 {
                        return;
                    }
                    continue;
                }
                inner.call_ready.wait();
            };
            inner.wait_grace_period();
            // Subtract only now, so the threshold check during the grace
            // period saw the batch in flight.
            inner.pending.fetch_sub(n, Ordering::SeqCst);
            // Take the whole batch off the queue, then account for it once:
            // per-callback RMWs here would bounce the counters' cache lines
            // between this thread and the producers on every callback. It is
            // counted as run, and its bytes as released, before any of it
            // runs: a `drain` returns from inside its own marker callback,
            // and must find the batch counted.
            batch.extend((0..n).map(|_| inner.queue.pop()));
            let bytes = batch.iter().map(Callback::bytes).sum::<usize>();
            inner.stats.callbacks_run.add(n as u64);
            // SeqCst: read by `force_cause`.
            inner.pending_bytes.fetch_sub(bytes, Ordering::SeqCst);
            for callback in batch.drain(..) {
                if catch_unwind(AssertUnwindSafe(|| callback.run())).is_err() {
                    inner.stats.callback_panics.bump();
                    eprintln!("rcu: a call_rcu callback panicked; the reclaim thread carries on");
                }
            }
        }
    });
}

/// A point in a domain's grace-period sequence, from
/// [`cookie`](crate::cookie): [`poll`](crate::poll) it to learn whether a
/// full grace period has elapsed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GpCookie {
    pub(crate) seq: u64,
    /// The id of the domain it belongs to (unique for the process's life).
    pub(crate) domain: u64,
}

/// An RCU domain: its own grace periods, readers, callbacks and reclaim
/// thread. A cheap handle: clones share the domain.
///
/// Most programs use the process-wide domain through the free functions
/// ([`read_lock`](crate::read_lock), [`synchronize`](crate::synchronize), …);
/// [`RcuDomain::global`] is a handle to it. [`RcuDomain::new`] makes an
/// independent one, which isolates a subsystem's grace periods from the rest
/// of the process (and lets tests observe exact statistics). Threads read
/// through a [`Reader`] registered with [`register`](Self::register), or take
/// an [`OwnedReadGuard`](crate::OwnedReadGuard) with
/// [`read_lock_owned`](Self::read_lock_owned).
///
/// Data bound to a domain ([`RcuCell::new_in`](crate::RcuCell::new_in), the
/// structures' `new_in`) keeps a clone of the handle. The reclaim thread of an
/// independent domain stops, after running every queued callback, when the
/// last handle is dropped.
///
/// ```
/// let domain = rcu_core::RcuDomain::new();
/// let reader = domain.register();
/// {
///     let _guard = reader.read_lock();
///     // ... read RCU-protected data ...
/// }
/// domain.synchronize();
/// assert_eq!(domain.stats().grace_periods, 1);
/// ```
pub struct RcuDomain {
    pub(crate) inner: Handle,
}

impl RcuDomain {
    /// A new independent domain with the default [`Config`].
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A new independent domain with `config`.
    ///
    /// # Panics
    /// If the configuration is invalid (a zero threshold or interval).
    pub fn with_config(config: Config) -> Self {
        let inner = Inner::new(next_domain_id());
        if let Err(e) = inner.configure(&config) {
            panic!("{e}");
        }
        RcuDomain {
            inner: Handle::Shared(Arc::new(inner)),
        }
    }

    /// A handle to the process-wide domain, the one the free functions
    /// ([`read_lock`](crate::read_lock), [`call_rcu`](crate::call_rcu), …)
    /// use. Dropping it does nothing.
    ///
    /// ```
    /// let d = rcu_core::RcuDomain::global();
    /// assert!(d.is_global());
    /// assert!(rcu_core::Guard::protects(&rcu_core::read_lock(), &d));
    /// ```
    #[cfg(not(rcu_loom))]
    pub const fn global() -> Self {
        RcuDomain {
            inner: Handle::Static(&crate::global::GLOBAL),
        }
    }

    /// Whether this is the process-wide domain.
    #[inline]
    pub fn is_global(&self) -> bool {
        matches!(self.inner, Handle::Static(_))
    }

    /// The address of the engine, for guard checks.
    #[inline]
    pub(crate) fn inner_ptr(&self) -> *const Inner {
        match &self.inner {
            Handle::Static(i) => *i,
            Handle::Shared(a) => Arc::as_ptr(a),
        }
    }

    /// Panics unless `guard` protects this domain. Every read of data bound
    /// to a domain checks its guard this way; for the process-wide
    /// [`ReadGuard`](crate::ReadGuard) the check is a compare of the
    /// handle's kind.
    ///
    /// # Panics
    /// If `guard` is a guard of another domain.
    #[inline]
    #[track_caller]
    pub fn assert_guard(&self, guard: &impl Guard) {
        if !guard.protects(self) {
            guard_mismatch(self);
        }
    }

    /// Registers the calling thread as a reader of this domain.
    pub fn register(&self) -> Reader<'_> {
        let rec = self.inner.register();
        Reader {
            domain: self,
            rec,
            _not_send: PhantomData,
        }
    }

    /// Enters a read-side critical section that is not tied to a thread:
    /// the guard is `Send + Sync + 'static`, so async code can hold it across
    /// `.await` on a multi-threaded runtime and drop it on another thread.
    /// See [`OwnedReadGuard`](crate::OwnedReadGuard).
    #[track_caller]
    pub fn read_lock_owned(&self) -> OwnedReadGuard {
        OwnedReadGuard::new(self.inner.clone())
    }

    /// Waits for a grace period: every read-side critical section of this
    /// domain that was running when it was called has ended.
    ///
    /// # Panics
    /// Inside a read-side critical section of this domain on this thread, or
    /// inside one of its callbacks or notifiers.
    pub fn synchronize(&self) {
        self.inner.synchronize(false);
    }

    /// Like [`synchronize`](Self::synchronize), but forces the grace period
    /// at once: notifiers run and readers are asked to signal their exit.
    ///
    /// # Panics
    /// As [`synchronize`](Self::synchronize).
    pub fn synchronize_expedited(&self) {
        self.inner.synchronize(true);
    }

    /// A cookie for polling: see [`crate::cookie`].
    pub fn cookie(&self) -> GpCookie {
        self.inner.start();
        GpCookie {
            seq: self.inner.cookie(),
            domain: self.inner.id,
        }
    }

    /// Whether a full grace period has elapsed since `cookie` was taken.
    ///
    /// # Panics
    /// If `cookie` came from another domain.
    pub fn poll(&self, cookie: GpCookie) -> bool {
        self.check_cookie(cookie);
        self.inner.poll(cookie.seq)
    }

    /// Waits until a full grace period has elapsed since `cookie` was taken;
    /// returns at once if one has.
    ///
    /// # Panics
    /// If `cookie` came from another domain; otherwise as
    /// [`synchronize`](Self::synchronize) when it has to wait.
    pub fn synchronize_since(&self, cookie: GpCookie) {
        self.check_cookie(cookie);
        self.inner.synchronize_since(cookie.seq);
    }

    #[track_caller]
    fn check_cookie(&self, cookie: GpCookie) {
        assert_eq!(
            cookie.domain, self.inner.id,
            "rcu: a GpCookie of domain {} used with domain {}",
            cookie.domain, self.inner.id
        );
    }

    /// Runs `f` on the reclaim thread after a grace period. Wait-free for
    /// the caller; callable anywhere, including inside a critical section.
    pub fn call_rcu(&self, f: impl FnOnce() + Send + 'static) {
        self.inner.call_rcu(|| self.inner.clone(), f, 0);
    }

    /// Drops `value` on the reclaim thread after a grace period.
    pub fn defer_drop<T: Send + 'static>(&self, value: T) {
        self.call_rcu(move || drop(value));
    }

    /// Like [`defer_drop`](Self::defer_drop), counting `heap_bytes` more
    /// toward [`Config::memory_limit`] (what `value` owns on the heap).
    pub fn defer_drop_sized<T: Send + 'static>(&self, value: T, heap_bytes: usize) {
        self.inner
            .call_rcu(|| self.inner.clone(), move || drop(value), heap_bytes);
    }

    /// Retires a node: drops the `Box` that `ptr` came from after a grace
    /// period, on the reclaim thread (crossbeam's `defer_destroy`, Linux's
    /// `kfree_rcu`). Nothing that asserts unique access to the node (no
    /// `Box`, no `&mut`) is made before the grace period has passed, so
    /// readers may keep their `&T` until their critical sections end.
    ///
    /// # Safety
    /// 1. `ptr` came from [`Box::into_raw`] (of a `Box<T>`).
    /// 2. It is already unreachable for readers that start a critical section
    ///    of this domain from now on (unlinked, with the unlinking store done
    ///    before this call).
    /// 3. It is retired once: nothing else frees it, now or later, and the
    ///    caller does not use it mutably after this call.
    /// 4. The readers that may still hold it read it under guards of this
    ///    domain.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicPtr, Ordering};
    /// let domain = rcu_core::RcuDomain::new();
    /// let slot = AtomicPtr::new(Box::into_raw(Box::new(1u64)));
    /// let old = slot.swap(Box::into_raw(Box::new(2)), Ordering::AcqRel);
    /// // SAFETY: `old` came from `Box::into_raw`, is unlinked, retired once.
    /// unsafe { domain.defer_free(old) };
    /// # drop(unsafe { Box::from_raw(slot.into_inner()) });
    /// domain.drain();
    /// ```
    pub unsafe fn defer_free<T: Send + 'static>(&self, ptr: *mut T) {
        let owned = OwnedPtr(ptr);
        let bytes = size_of::<T>();
        self.inner.call_rcu(
            || self.inner.clone(),
            move || {
                let owned = owned;
                // SAFETY: by `defer_free`'s contract `owned.0` came from
                // `Box::into_raw`, is retired once, and was unreachable for new
                // readers before the grace period that has now passed; so no
                // reader can still hold it and we are its only owner.
                drop(unsafe { Box::from_raw(owned.0) });
            },
            bytes,
        );
    }

    /// A future that resolves after a grace period of this domain: see
    /// [`crate::synchronize_async`].
    #[cfg(not(rcu_loom))]
    pub fn synchronize_async(&self) -> crate::SynchronizeFuture {
        crate::SynchronizeFuture::new(self.inner.clone())
    }

    /// Replaces this domain's stall hook: see [`crate::set_stall_hook`].
    pub fn set_stall_hook(&self, hook: impl Fn(&StallWarning) + Send + Sync + 'static) {
        self.inner.set_stall_hook(Some(std::sync::Arc::new(hook)));
    }

    /// Waits until every callback queued before this call has run.
    ///
    /// # Panics
    /// As [`synchronize`](Self::synchronize).
    pub fn drain(&self) {
        self.inner.drain(|| self.inner.clone());
    }

    /// A snapshot of this domain's statistics.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// A retired `Box<T>` pointer on its way to the reclaim thread.
struct OwnedPtr<T>(*mut T);

// SAFETY: `OwnedPtr<T>` owns a `T` (it is a `Box<T>` in waiting, by
// `defer_free`'s contract), so it may move to another thread when `T` may.
unsafe impl<T: Send> Send for OwnedPtr<T> {}

#[cold]
#[inline(never)]
#[track_caller]
fn guard_mismatch(domain: &RcuDomain) -> ! {
    if domain.is_global() {
        panic!(
            "rcu: a guard of another RcuDomain was used with data of the process-wide domain \
             (use rcu_core::read_lock())"
        );
    }
    panic!(
        "rcu: a guard of another domain was used with data bound to RcuDomain #{} (take the \
         guard from that domain)",
        domain.inner.id
    );
}

impl Default for RcuDomain {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for RcuDomain {
    fn clone(&self) -> Self {
        // Relaxed: as `Arc`'s clone; the handle we clone keeps it above 0.
        self.inner
            .owners
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RcuDomain {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for RcuDomain {
    /// The last handle of an independent domain runs every queued callback
    /// (each after its grace period), then stops the reclaim thread.
    fn drop(&mut self) {
        if self.is_global() {
            return;
        }
        // AcqRel: as `Arc`'s drop: the last owner sees every other owner's
        // work before it shuts down.
        if self
            .inner
            .owners
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.inner.shutdown();
        }
    }
}

impl std::fmt::Debug for RcuDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcuDomain")
            .field("id", &self.inner.id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A thread's registration with an [`RcuDomain`]: enters its read-side
/// critical sections. Unregisters on drop. Neither `Send` nor `Sync`.
pub struct Reader<'d> {
    domain: &'d RcuDomain,
    rec: Arc<Record>,
    _not_send: PhantomData<*const ()>,
}

impl Reader<'_> {
    /// Enters a read-side critical section, which lasts until the guard is
    /// dropped. Nestable; guards may be dropped in any order.
    #[inline]
    pub fn read_lock(&self) -> DomainGuard<'_> {
        DomainGuard {
            raw: RawGuard::new(&self.rec, &self.domain.inner.gp_ctr.0),
        }
    }

    /// Registers `f` to be called when a grace period of this domain is
    /// forced while this thread holds it up. `f` runs on the grace-period
    /// thread and must return quickly (e.g. set a flag the reader polls).
    pub fn on_force_quiescent(&self, f: impl Fn() + Send + Sync + 'static) -> NotifierHandle {
        NotifierHandle::register(Arc::clone(&self.rec), std::sync::Arc::new(f))
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        self.domain.inner.unregister(&self.rec);
    }
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

/// A read-side critical section of an [`RcuDomain`]; see
/// [`Reader::read_lock`].
#[must_use = "the critical section ends when the guard is dropped"]
pub struct DomainGuard<'r> {
    raw: RawGuard<'r>,
}

impl DomainGuard<'_> {
    /// Reports a quiescent state: leaves the critical section and enters a
    /// new one, so grace periods that waited for this thread can end.
    /// References read under the guard cannot survive it (it takes
    /// `&mut self`). Returns `false`, doing nothing, when the thread holds
    /// other (nested) guards of this domain.
    pub fn quiescent(&mut self) -> bool {
        let rec = self.raw.rec;
        rec.quiesce(&rec.domain().gp_ctr.0)
    }
}

impl crate::guard::sealed::Sealed for DomainGuard<'_> {}

impl Guard for DomainGuard<'_> {
    #[inline]
    fn protects(&self, domain: &RcuDomain) -> bool {
        std::ptr::eq(self.raw.rec.domain(), domain.inner_ptr())
    }
}

impl std::fmt::Debug for DomainGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainGuard").finish_non_exhaustive()
    }
}
