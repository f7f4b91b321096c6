//! The grace-period machine: the sequence and its sharing between callers
//! (leader and followers), the normal and forced states of
//! `wait_for_readers`, force-quiescent notifiers, and stall checks.
//!
//! Everything here runs on the thread that leads a grace period: a
//! `synchronize()` caller or the reclaim thread. User code it calls
//! (notifiers, the stall hook) runs with no engine lock held and inside
//! [`run_user`], which catches every panic, payload drop included: nothing
//! may unwind between the two bumps of the sequence.

use crate::barrier::{self, AtomicCounter, Mode};
use crate::batch::Batches;
use crate::config::{Config, ConfigError};
use crate::event::Event;
#[cfg(not(rcu_loom))]
use crate::registry::reading;
use crate::registry::{NotifierFn, ReadSide, Record, holding_up};
#[cfg(not(rcu_loom))]
use crate::stats::StallWarning;
use crate::stats::{GpHistogram, HISTOGRAM_BUCKETS, RcuEvent};
use crate::sync::{
    Arc, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering, lock, report, spin_loop,
    thread, thread_local,
};
use std::any::Any;
use std::cell::Cell;
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

/// What kind of user code the engine is running on this thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserCode {
    Callback,
    Notifier,
    #[cfg_attr(rcu_loom, allow(dead_code))] // no event checks under loom
    EventHook,
}

impl UserCode {
    fn describe(self) -> &'static str {
        match self {
            UserCode::Callback => "a call_rcu callback",
            UserCode::Notifier => "a force-quiescent notifier",
            UserCode::EventHook => "an event hook (or stall hook)",
        }
    }
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// The domain (its grace-period machine) whose user code this thread is
    /// running, and which kind.
    static CONTEXT: Cell<Option<(*const GracePeriods, UserCode)>> = const { Cell::new(None) };
}
#[cfg(rcu_loom)]
thread_local! {
    static CONTEXT: Cell<Option<(*const GracePeriods, UserCode)>> = Cell::new(None);
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// The domains (by id: unique for the process's life, so a stale entry
    /// never names a later domain) whose grace periods this thread may not
    /// wait for now ([`refuse_waits`]), innermost last.
    static REFUSED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with waits for `domain`'s grace periods refused on this thread
/// ([`GracePeriods::check_caller`] panics on them), and with no help given
/// over the memory limit: see [`RcuDomain::no_grace_period_waits`](crate::RcuDomain::no_grace_period_waits).
/// Unlike a critical section, it holds up no grace period. (Loom models
/// refuse nothing: loom threads share the OS thread's thread-locals.)
pub(crate) fn refuse_waits<R>(domain: &GracePeriods, f: impl FnOnce() -> R) -> R {
    #[cfg(not(rcu_loom))]
    {
        /// Ends the refusal when `f` returns or unwinds.
        struct End(u64);
        impl Drop for End {
            fn drop(&mut self) {
                let _ = REFUSED.try_with(|r| {
                    let mut r = r.borrow_mut();
                    // By value, innermost first: scopes that end out of
                    // order (a stackful coroutine switching inside one) at
                    // worst leave a refusal standing, never a dangling entry.
                    if let Some(i) = r.iter().rposition(|&d| d == self.0) {
                        r.remove(i);
                    }
                });
            }
        }
        let key = domain.readers.id;
        // During thread-local teardown nothing is refused (nor checked).
        let _end = REFUSED
            .try_with(|r| r.borrow_mut().push(key))
            .is_ok()
            .then(|| End(key));
        f()
    }
    #[cfg(rcu_loom)]
    {
        let _ = domain;
        f()
    }
}

/// Whether this thread refuses waits for `domain`'s grace periods, or (with
/// `domain` `None`) for any domain's.
pub(crate) fn refusing_waits(domain: Option<&GracePeriods>) -> bool {
    #[cfg(not(rcu_loom))]
    {
        REFUSED
            .try_with(|r| {
                let r = r.borrow();
                match domain {
                    Some(d) => r.contains(&d.readers.id),
                    None => !r.is_empty(),
                }
            })
            .unwrap_or(false)
    }
    #[cfg(rcu_loom)]
    {
        let _ = domain;
        false
    }
}

/// The user code this thread is running on behalf of an engine, if any.
pub(crate) fn current_user_code() -> Option<(*const GracePeriods, UserCode)> {
    CONTEXT.try_with(Cell::get).ok().flatten()
}

/// User code panicked; its message, when the payload was a string.
pub(crate) struct Panicked(pub(crate) Option<String>);

/// Runs user code `f` of `domain`, marked as `kind` in [`CONTEXT`], catching
/// any panic. The payload is dropped inside a catch too (a payload whose own
/// `Drop` panics must not unwind into the engine); one that still panics is
/// leaked. Returns `Err` if `f` panicked.
pub(crate) fn run_user(
    domain: &GracePeriods,
    kind: UserCode,
    f: impl FnOnce(),
) -> Result<(), Panicked> {
    struct Restore(Option<(*const GracePeriods, UserCode)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0;
            let _ = CONTEXT.try_with(|c| c.set(old));
        }
    }
    let _restore = Restore(CONTEXT.with(|c| c.replace(Some((domain, kind)))));
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => Ok(()),
        Err(payload) => {
            // Reading the payload runs no user code (a downcast and a copy).
            let message = payload
                .downcast_ref::<&'static str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            drop_payload(payload);
            Err(Panicked(message))
        }
    }
}

/// Drops a panic payload without letting a panic in its `Drop` escape.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // Its drop panicked too: leak this one rather than loop.
        std::mem::forget(again);
    }
}

/// Aborts the process if dropped during an unwind: armed where an unwind
/// would leave the engine's state lying (between the two bumps of the
/// grace-period sequence). Every user code path is caught, so only an
/// engine bug can trigger it, and then stopping beats freeing memory that
/// readers still use.
pub(crate) struct AbortOnUnwind(pub(crate) &'static str);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        // Not under loom: it reports a failed model (a deadlock, a causality
        // violation) by panicking in the model's threads, grace periods
        // included, and the self-checks expect that panic.
        if !cfg!(rcu_loom) && std::thread::panicking() {
            report(format_args!(
                "rcu: fatal: a panic unwound through {}; aborting rather than end a grace period \
                 that readers may still be inside",
                self.0
            ));
            std::process::abort();
        }
    }
}

/// Decrements a counter when dropped, so a counter raised for the length of
/// a call is lowered on every way out, unwinding included.
pub(crate) struct Raised<'a>(&'a AtomicUsize);

impl<'a> Raised<'a> {
    pub(crate) fn new(counter: &'a AtomicUsize) -> Self {
        // SeqCst: read by `force_cause` on the grace-period thread, which
        // must see it before it sleeps again (the kick orders it too).
        counter.fetch_add(1, Ordering::SeqCst);
        // The child of a fork keeps only the forking thread's raises.
        #[cfg(all(unix, not(rcu_loom), not(miri)))]
        crate::fork::note_raised(counter, true);
        Raised(counter)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        #[cfg(all(unix, not(rcu_loom), not(miri)))]
        crate::fork::note_raised(self.0, false);
        // SeqCst: as in `new`.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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

/// The event hook: called with each event, on the thread that found it.
pub(crate) type EventHook = std::sync::Arc<dyn Fn(&RcuEvent) + Send + Sync + 'static>;

/// Tunables the grace period reads (fixed when the domain starts).
struct Tunables {
    callback_threshold: AtomicUsize,
    poll_interval_ns: AtomicU64,
    max_polls: AtomicU32,
    memory_limit: AtomicUsize,
    stall_timeout_ns: AtomicU64,
    callback_pacing_ns: AtomicU64,
    offload_callbacks: std::sync::atomic::AtomicBool,
}

/// What forces a grace period from outside it: callbacks and their bytes
/// pending (kept by the callback layer), and drains and expedited grace
/// periods in progress.
pub(crate) struct Pressure {
    /// Callbacks queued and not yet taken into a batch (plus the batch in
    /// flight, until its grace period ends).
    pub(crate) pending: AtomicUsize,
    /// Bytes held by callbacks queued and not yet run. Producers add before
    /// they enqueue, so it never drops below the bytes actually queued
    /// (unless their total ever passed `usize::MAX`: see [`ByteCount`]).
    pub(crate) pending_bytes: ByteCount,
    pub(crate) drains: AtomicUsize,
    pub(crate) expedites: AtomicUsize,
    /// Callbacks still in producers' per-thread batches (counted by the
    /// forcing checks with `pending` and `pending_bytes`).
    pub(crate) batches: Batches,
}

/// A domain's count of pending callback bytes, saturating instead of
/// wrapping: at `usize::MAX` when adding, at 0 when subtracting. Each callback counts at most
/// [`MAX_BYTES`](crate::queue::MAX_BYTES), which bounds a batch's sum, not
/// the domain's: a thousand callbacks that each declared about
/// `usize::MAX / 1024` bytes wrapped a plain counter to a few bytes, and the
/// domain looked under its memory limit (no help, no forcing) while they
/// were pending. Saturated, the count is exact as long as the true total
/// fits in a `usize`; beyond that it reads `usize::MAX` (over any limit),
/// and after the excess runs it may read low by at most that excess.
///
/// SeqCst throughout: read by the forcing checks (`force_cause`), by
/// producers deciding to help, and by runners, alongside the other pending
/// counts; a stale value only delays or advances one round of help or one
/// forcing check.
pub(crate) struct ByteCount(AtomicUsize);

impl ByteCount {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            ByteCount(AtomicUsize::new(0))
        }
    }

    /// Adds `bytes`; returns the count before.
    #[inline]
    pub(crate) fn add(&self, bytes: usize) -> usize {
        match self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(bytes))
            }) {
            Ok(before) | Err(before) => before,
        }
    }

    /// Subtracts `bytes` (added before).
    #[inline]
    pub(crate) fn sub(&self, bytes: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(bytes))
            });
    }

    #[inline]
    pub(crate) fn load(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the count (a `fork()` child's recount, when it is the only
    /// thread).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    pub(crate) fn set(&self, bytes: usize) {
        self.0.store(bytes, Ordering::SeqCst);
    }
}

/// Grace-period statistics.
#[derive(Default)]
pub(crate) struct GpCounters {
    pub(crate) grace_periods: AtomicCounter,
    pub(crate) forced: AtomicCounter,
    pub(crate) forced_callbacks: AtomicCounter,
    pub(crate) forced_polls: AtomicCounter,
    pub(crate) forced_drain: AtomicCounter,
    pub(crate) forced_expedite: AtomicCounter,
    pub(crate) forced_memory: AtomicCounter,
    pub(crate) stalls: AtomicCounter,
    pub(crate) histogram: [AtomicCounter; HISTOGRAM_BUCKETS],
    pub(crate) polls: AtomicCounter,
    pub(crate) notifier_calls: AtomicCounter,
    pub(crate) heavy_barriers: AtomicCounter,
    pub(crate) longest_gp_ns: AtomicCounter,
}

impl GpCounters {
    const fn new() -> Self {
        GpCounters {
            grace_periods: AtomicCounter::new(),
            forced: AtomicCounter::new(),
            forced_callbacks: AtomicCounter::new(),
            forced_polls: AtomicCounter::new(),
            forced_drain: AtomicCounter::new(),
            forced_expedite: AtomicCounter::new(),
            forced_memory: AtomicCounter::new(),
            stalls: AtomicCounter::new(),
            histogram: [const { AtomicCounter::new() }; HISTOGRAM_BUCKETS],
            polls: AtomicCounter::new(),
            notifier_calls: AtomicCounter::new(),
            heavy_barriers: AtomicCounter::new(),
            longest_gp_ns: AtomicCounter::new(),
        }
    }
}

/// Deliberate defects for the loom models' self-checks (set before a
/// model's threads start; plain `std` atomics, not part of the protocol).
#[cfg(rcu_loom)]
#[derive(Default)]
pub(crate) struct LoomDefects {
    /// Arm `waiting` on the first forced iteration only (the seed patch).
    pub(crate) arm_waiting_once: std::sync::atomic::AtomicBool,
    /// Never arm `waiting`: readers never signal the forced state.
    pub(crate) never_arm_waiting: std::sync::atomic::AtomicBool,
    /// Return from a grace period without waiting for readers.
    pub(crate) skip_wait_for_readers: std::sync::atomic::AtomicBool,
    /// Let the reclaim thread leave at shutdown without looking at the
    /// queue again (a bug loom once found).
    pub(crate) exit_without_recheck: std::sync::atomic::AtomicBool,
}

#[cfg(rcu_loom)]
impl LoomDefects {
    pub(crate) fn get(flag: &std::sync::atomic::AtomicBool) -> bool {
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
pub(crate) struct Leader {
    pub(crate) leading: bool,
    /// The leading thread (for the fork handlers: a leader that does not
    /// exist in the child must not stay leader there).
    #[cfg(not(rcu_loom))]
    pub(crate) thread: Option<std::thread::ThreadId>,
    /// Scratch list of the readers the current grace period waits for, kept
    /// to save an allocation per grace period.
    holders: Vec<Arc<Record>>,
    /// Callers asleep on `gp_done` (or about to be: counted under this lock
    /// before their wait releases it), so that the end of a grace period
    /// nobody waits for costs no `notify_all` (a futex system call each).
    pub(crate) followers: usize,
}

/// One domain's grace-period machine.
pub(crate) struct GracePeriods {
    /// What readers share with it (counter, registry, event).
    pub(crate) readers: ReadSide,
    /// Grace-period sequence: odd while one runs, +2 per grace period.
    pub(crate) seq: AtomicU64,
    pub(crate) leader: Mutex<Leader>,
    /// Signalled when a grace period ends.
    gp_done: Condvar,
    /// Interrupts the normal-state sleep: force now.
    pub(crate) kick: Event,
    /// The highest sequence target [`start_poll`](crate::start_poll) asked
    /// the reclaim thread to reach (0: none).
    pub(crate) requested: AtomicU64,
    pub(crate) pressure: Pressure,
    tunables: Tunables,
    /// `None`: the default hook ([`RcuEvent::log_to_stderr`]).
    pub(crate) event_hook: std::sync::Mutex<Option<EventHook>>,
    /// Why the domain started in fence mode although its configuration
    /// allowed membarrier; reported (and cleared) at the end of its first
    /// grace period.
    pub(crate) unavailable: std::sync::Mutex<Option<&'static str>>,
    /// The membarrier revocation has been reported to this domain's hook.
    revoked_reported: std::sync::atomic::AtomicBool,
    /// Whether the first scan of the domain's latest grace period (any
    /// caller's) found a reader in a critical section, in membarrier mode:
    /// readers are running, and each grace period interrupts them (a hint
    /// for callback pacing, not part of the protocol; a plain `std` atomic
    /// under loom too).
    readers_seen: std::sync::atomic::AtomicBool,
    pub(crate) stats: GpCounters,
    /// loom models only: deliberate defects, to show the models can fail.
    #[cfg(rcu_loom)]
    pub(crate) defects: LoomDefects,
}

/// Ends a leader's turn: clears `leading` and wakes the followers, on every
/// way out.
struct Finish<'a>(&'a GracePeriods);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut leader = lock(&self.0.leader);
        leader.leading = false;
        #[cfg(not(rcu_loom))]
        {
            leader.thread = None;
        }
        let wake = leader.followers > 0;
        drop(leader);
        // A follower counts itself under `leader` before its wait releases
        // the lock, so one we do not count here was not yet waiting: it
        // checks the sequence under the lock before it waits, and sees the
        // grace period this leader completed.
        if wake {
            self.0.gp_done.notify_all();
        }
    }
}

impl GracePeriods {
    loom_const_fn! {
        pub(crate) fn new(id: u64) -> Self {
            let d = Config::DEFAULT;
            GracePeriods {
                readers: ReadSide::new(id),
                seq: AtomicU64::new(0),
                leader: Mutex::new(Leader {
                    leading: false,
                    #[cfg(not(rcu_loom))]
                    thread: None,
                    holders: Vec::new(),
                    followers: 0,
                }),
                gp_done: Condvar::new(),
                kick: Event::new(),
                requested: AtomicU64::new(0),
                pressure: Pressure {
                    pending: AtomicUsize::new(0),
                    pending_bytes: ByteCount::new(),
                    drains: AtomicUsize::new(0),
                    expedites: AtomicUsize::new(0),
                    batches: Batches::new(),
                },
                tunables: Tunables {
                    callback_threshold: AtomicUsize::new(d.callback_threshold),
                    poll_interval_ns: AtomicU64::new(d.poll_interval.as_nanos() as u64),
                    max_polls: AtomicU32::new(d.max_polls),
                    memory_limit: AtomicUsize::new(d.memory_limit),
                    stall_timeout_ns: AtomicU64::new(d.stall_timeout.as_nanos() as u64),
                    callback_pacing_ns: AtomicU64::new(d.callback_pacing.as_nanos() as u64),
                    offload_callbacks: std::sync::atomic::AtomicBool::new(d.offload_callbacks),
                },
                event_hook: std::sync::Mutex::new(None),
                unavailable: std::sync::Mutex::new(None),
                revoked_reported: std::sync::atomic::AtomicBool::new(false),
                readers_seen: std::sync::atomic::AtomicBool::new(false),
                stats: GpCounters::new(),
                #[cfg(rcu_loom)]
                defects: LoomDefects {
                    arm_waiting_once: std::sync::atomic::AtomicBool::new(false),
                    never_arm_waiting: std::sync::atomic::AtomicBool::new(false),
                    skip_wait_for_readers: std::sync::atomic::AtomicBool::new(false),
                    exit_without_recheck: std::sync::atomic::AtomicBool::new(false),
                },
            }
        }
    }

    /// Stores the tunables. The caller holds the domain's start lock and
    /// publishes them with the Release store that marks the domain started.
    pub(crate) fn set_tunables(&self, config: &Config) -> Result<(), ConfigError> {
        config.validate()?;
        let t = &self.tunables;
        // Relaxed (all seven): see above.
        t.callback_threshold
            .store(config.callback_threshold, Ordering::Relaxed);
        t.poll_interval_ns
            .store(nanos(config.poll_interval), Ordering::Relaxed);
        t.max_polls.store(config.max_polls, Ordering::Relaxed);
        t.memory_limit.store(config.memory_limit, Ordering::Relaxed);
        t.stall_timeout_ns
            .store(nanos(config.stall_timeout), Ordering::Relaxed);
        t.callback_pacing_ns
            .store(nanos(config.callback_pacing), Ordering::Relaxed);
        t.offload_callbacks
            .store(config.offload_callbacks, Ordering::Relaxed);
        Ok(())
    }

    #[inline]
    pub(crate) fn callback_threshold(&self) -> usize {
        // Relaxed: configuration, fixed at start.
        self.tunables.callback_threshold.load(Ordering::Relaxed)
    }

    #[cfg_attr(rcu_loom, allow(dead_code))]
    pub(crate) fn callback_pacing(&self) -> Duration {
        // Relaxed: configuration, fixed at start.
        Duration::from_nanos(self.tunables.callback_pacing_ns.load(Ordering::Relaxed))
    }

    #[cfg_attr(rcu_loom, allow(dead_code))]
    #[inline]
    pub(crate) fn offload_callbacks(&self) -> bool {
        // Relaxed: configuration, fixed at start.
        self.tunables.offload_callbacks.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn memory_limit(&self) -> usize {
        // Relaxed: configuration, fixed at start.
        self.tunables.memory_limit.load(Ordering::Relaxed)
    }

    #[cfg_attr(rcu_loom, allow(dead_code))]
    fn stall_timeout(&self) -> Duration {
        // Relaxed: configuration, fixed at start.
        Duration::from_nanos(self.tunables.stall_timeout_ns.load(Ordering::Relaxed))
    }

    /// Panics on calls that would wait for the caller itself: inside a
    /// critical section of this domain, or inside this domain's user code.
    /// `what` names the call; `any_domain_user_code` refuses it inside any
    /// domain's user code too (calls that wait for a reclaim thread, which
    /// could wait for this one through a chain of domains).
    #[track_caller]
    pub(crate) fn check_caller(&self, what: &str, any_domain_user_code: bool) {
        if let Some((domain, kind)) = current_user_code() {
            if std::ptr::eq(domain, self) {
                panic!(
                    "rcu: {what}() called from {} of the same domain; it would wait for itself",
                    kind.describe()
                );
            }
            if any_domain_user_code {
                panic!(
                    "rcu: {what}() called from {} (of another domain); it waits for a reclaim \
                     thread, which could be waiting for this one: queue a callback instead",
                    kind.describe()
                );
            }
        }
        if refusing_waits(Some(self)) {
            panic!(
                "rcu: {what}() called where waits for this domain's grace periods are refused \
                 (a closure run under a writer lock, such as an `RcuCell::update` or a \
                 structure's `retain`): the grace period could wait for a reader that waits \
                 for that lock"
            );
        }
        if lock(&self.readers.registry).current_thread_reading() {
            panic!(
                "rcu: {what}() called inside a read-side critical section; the grace period \
                 would wait for the caller forever (drop the guard first)"
            );
        }
    }

    /// `synchronize()` / `synchronize_expedited()`.
    #[track_caller]
    pub(crate) fn synchronize(&self, expedite: bool) {
        self.check_caller(
            if expedite {
                "synchronize_expedited"
            } else {
                "synchronize"
            },
            false,
        );
        if expedite {
            let _raised = Raised::new(&self.pressure.expedites);
            self.kick.set();
            self.wait_grace_period();
        } else {
            self.wait_grace_period();
        }
    }

    /// The grace-period sequence value that marks "a full grace period has
    /// elapsed since now": the end of the next grace period if none runs, of
    /// the one after the running one otherwise (`seq` is odd while one runs,
    /// +2 per grace period).
    pub(crate) fn cookie(&self) -> u64 {
        // SeqCst read-modify-write (Release is what matters): every grace
        // period that starts later starts with an Acquire RMW of `seq`, which
        // reads this RMW's value or a later one in its release sequence, so
        // everything the caller did before (its unpublish) happens before
        // that grace period's `gp_ctr` store, and so before every reader
        // snapshot of the new counter (see `Record::lock`). A plain load
        // here, even after a fence, gives no such edge.
        let s = self.seq.fetch_add(0, Ordering::SeqCst);
        (s + 3) & !1
    }

    /// Whether the grace period a [`cookie`](Self::cookie) names has ended.
    pub(crate) fn poll(&self, cookie: u64) -> bool {
        // SeqCst (at least Acquire): pairs with the leader's final increment,
        // which follows its Acquire scans, so what the caller frees next is
        // ordered after the readers' critical sections.
        self.seq.load(Ordering::SeqCst) >= cookie
    }

    /// Waits until the grace period `target` names has ended, running grace
    /// periods (or sharing other callers') as needed.
    #[track_caller]
    pub(crate) fn synchronize_since(&self, target: u64) {
        if self.poll(target) {
            return;
        }
        self.check_caller("synchronize_since", false);
        self.wait_for(target);
    }

    /// Waits for a full grace period that starts after this call, sharing
    /// grace periods with concurrent callers.
    ///
    /// A caller that sees `s` needs the sequence to reach `(s + 3) & !1`.
    /// One caller at a time leads (runs grace periods); the others sleep on
    /// `gp_done` and are served by whichever grace period reaches their
    /// target, so all callers that arrive while one grace period runs share
    /// the next one.
    pub(crate) fn wait_grace_period(&self) {
        self.wait_for(self.cookie());
    }

    /// Waits until the sequence reaches `target` (a cookie), with no
    /// caller checks: for the reclaim thread.
    pub(crate) fn wait_until(&self, target: u64) {
        self.wait_for(target);
    }

    fn wait_for(&self, target: u64) {
        let mut state = lock(&self.leader);
        while !self.poll(target) {
            if state.leading {
                state.followers += 1;
                state = match self.gp_done.wait(state) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                state.followers -= 1;
                continue;
            }
            state.leading = true;
            #[cfg(not(rcu_loom))]
            {
                state.thread = Some(std::thread::current().id());
            }
            let mut holders = std::mem::take(&mut state.holders);
            drop(state);
            let finish = Finish(self);
            // Let callers that are runnable right now take their snapshots
            // first, so this grace period serves them too: without it, on a
            // machine with fewer cores than callers, a grace period that
            // takes microseconds ends before the others are even scheduled,
            // and each caller runs its own.
            thread::yield_now();
            self.run_grace_period(&mut holders);
            drop(finish);
            self.report_barrier_events();
            state = lock(&self.leader);
            state.holders = holders;
        }
    }

    /// One grace period. Only the leader runs it.
    fn run_grace_period(&self, holders: &mut Vec<Arc<Record>>) {
        let started = Instant::now();
        // SeqCst RMW (Acquire is what the ordering argument needs): reads the
        // latest value of `seq`, so it synchronises with every caller's
        // cookie RMW before it (see `cookie`): their unpublishes happen
        // before our `gp_ctr` store below.
        self.seq.fetch_add(1, Ordering::SeqCst);
        // From here to the second bump nothing may unwind: a sequence left
        // odd would make "the next grace period has started" read as "a
        // grace period has elapsed". User code below is caught; anything
        // else aborts.
        let bomb = AbortOnUnwind("the middle of a grace period");
        let read = &self.readers;
        let mode = read.mode();
        let gp = {
            let registry = lock(&read.registry);
            // Relaxed: `gp_ctr` is written only here, by the leader.
            let gp = read.gp_ctr.0.load(Ordering::Relaxed) + 2;
            // Release: pairs with the Acquire load in `Record::lock`: a reader
            // that snapshots the new counter sees every unpublish the grace
            // period serves (they happen before the RMW above).
            read.gp_ctr.0.store(gp, Ordering::Release);
            // Orders the store above before the scans (the Dekker pair with
            // each reader's counter store and light barrier): a reader we
            // scan as idle reads the new counter at its next lock, or, if it
            // was already past its light barrier, its store is seen here.
            barrier::heavy(mode, &self.stats.heavy_barriers);
            holders.clear();
            holders.extend(
                registry
                    .records
                    .iter()
                    .filter(|r| holding_up(r, gp))
                    .cloned(),
            );
            // A hint for the reclaim thread's pacing (which loom models do
            // not run), read after this grace period by whoever waited for
            // it: a reader is running, so each grace period interrupts it
            // (membarrier's IPI; fence mode interrupts no one). A reader in
            // a critical section that began after our counter store counts
            // too.
            #[cfg(not(rcu_loom))]
            {
                let seen = matches!(mode, Mode::Membarrier)
                    && (!holders.is_empty() || registry.records.iter().any(|r| reading(r)));
                // Relaxed: a hint, ordered with nothing.
                self.readers_seen
                    .store(seen, std::sync::atomic::Ordering::Relaxed);
            }
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
        self.count(forced, started.elapsed());
        std::mem::forget(bomb);
        // SeqCst: see `cookie`. It also publishes the grace period's end to
        // callers that read it (their Acquire-or-stronger load, then the
        // free, is ordered after our Acquire scans).
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the first scan of the domain's latest grace period found a
    /// reader in a critical section, in membarrier mode (see
    /// [`Config::callback_pacing`]).
    pub(crate) fn readers_seen(&self) -> bool {
        // Relaxed: a hint (see the store in `run_grace_period`).
        self.readers_seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, forced: Option<Cause>, elapsed: Duration) {
        let stats = &self.stats;
        stats.grace_periods.bump();
        // Release: pairs with the Acquire fences in `stats()`, which read the
        // counts below before `grace_periods`: a snapshot that counts this
        // grace period in them counts it in `grace_periods` too.
        std::sync::atomic::fence(Ordering::Release);
        // The histogram next, then the forcing: a `fork()` that cuts this
        // sequence short leaves the child counts it can make agree again
        // (`grace_periods` from the histogram, `forced` from its causes).
        stats.histogram[GpHistogram::bucket_of(elapsed)].bump();
        stats.longest_gp_ns.max(nanos(elapsed));
        if let Some(cause) = forced {
            stats.forced.bump();
            // Release: pairs with the first Acquire fence in `stats()`, which
            // reads the causes before `forced`.
            std::sync::atomic::fence(Ordering::Release);
            match cause {
                Cause::Expedite => stats.forced_expedite.bump(),
                Cause::Drain => stats.forced_drain.bump(),
                Cause::Memory => stats.forced_memory.bump(),
                Cause::Callbacks => stats.forced_callbacks.bump(),
                Cause::Polls => stats.forced_polls.bump(),
            }
        }
    }

    /// The condition that forces the current grace period, if any.
    fn force_cause(&self, polls: u32) -> Option<Cause> {
        let p = &self.pressure;
        // SeqCst (all four): each is paired with a `kick.set()` after the
        // writer's update; the normal state resets `kick` before it checks
        // here, so a change is either seen here or wakes the sleep.
        if p.expedites.load(Ordering::SeqCst) > 0 {
            return Some(Cause::Expedite);
        } else if p.drains.load(Ordering::SeqCst) > 0 {
            return Some(Cause::Drain);
        }
        // Callbacks in per-thread batches count too (a snapshot: the batches
        // move to the queue on their own before long; see `batch.rs`).
        let (batched, batched_bytes) = p.batches.pending();
        if p.pending_bytes.load().saturating_add(batched_bytes) >= self.memory_limit() {
            Some(Cause::Memory)
        } else if p.pending.load(Ordering::SeqCst).saturating_add(batched)
            >= self.callback_threshold()
        {
            Some(Cause::Callbacks)
        // Relaxed: configuration, fixed at start.
        } else if polls >= self.tunables.max_polls.load(Ordering::Relaxed) {
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
        // The notifiers this grace period has called (see `notify`).
        let mut notified = Vec::new();
        let mut armed = false;
        let mut rescans = 0u32;
        let mut polls = 0u32;
        loop {
            if holders.is_empty() {
                return forced;
            }
            if forced.is_none() {
                forced = self.force_cause(polls);
            }
            if forced.is_some() {
                self.notify(holders, &mut notified);
                // Forced state. Re-arm on every iteration: a reader that
                // cleared `waiting` and re-entered with a stale counter would
                // otherwise never signal again (the lost wake-up in the seed
                // patch, which sets `waiting` once).
                self.readers.gp_event.reset();
                if self.arm_waiting(armed) {
                    for r in holders.iter() {
                        // Ordered before the scan below by the heavy
                        // barrier; the reader's side is its unlock's light
                        // barrier.
                        r.arm_waiting();
                    }
                    armed = true;
                }
                barrier::heavy(mode, &self.stats.heavy_barriers);
                holders.retain(|r| {
                    let holding = holding_up(r, gp);
                    if !holding {
                        // A hint; a stale flag costs one spurious wake-up at
                        // that reader's next unlock.
                        r.disarm_waiting();
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
                let interval =
                    Duration::from_nanos(self.tunables.poll_interval_ns.load(Ordering::Relaxed));
                self.sleep_normal(interval, holders, gp, &mut stalls);
                polls += 1;
                self.stats.polls.bump();
                holders.retain(|r| holding_up(r, gp));
                self.check_stalls(holders, &mut stalls);
            }
        }
    }

    /// The normal state's sleep of one poll `interval`, cut short by a
    /// kick. A stall timeout shorter than the interval wakes it on the way
    /// (counting no poll) to report the readers that have held this grace
    /// period up that long: the check after each poll alone missed a reader
    /// that left within the poll's sleep however long it had held up the
    /// grace period (1 s, with a 20 ms stall timeout and a 3 s interval),
    /// and reported one that stayed only at the poll's end.
    fn sleep_normal(
        &self,
        interval: Duration,
        holders: &mut Vec<Arc<Record>>,
        gp: u64,
        stalls: &mut StallCheck,
    ) {
        #[cfg(rcu_loom)]
        {
            // No clocks under loom, nor stall checks.
            let _ = (holders, gp, stalls);
            self.kick.wait_timeout(interval);
        }
        #[cfg(not(rcu_loom))]
        {
            let end = Instant::now() + interval;
            let stall_at = stalls.started + self.stall_timeout();
            loop {
                let now = Instant::now();
                if stall_at <= now {
                    // Past the deadline (already on the way in, when the
                    // rescans took longer than the stall timeout, as under
                    // Miri's clock): report the readers holding the grace
                    // period up now (each once), then sleep out the poll.
                    holders.retain(|r| holding_up(r, gp));
                    self.check_stalls(holders, stalls);
                    if !holders.is_empty() {
                        self.kick
                            .wait_timeout(end.saturating_duration_since(Instant::now()));
                    }
                    return;
                }
                if stall_at >= end {
                    // Beyond this sleep: the check after the poll covers it.
                    self.kick.wait_timeout(end - now);
                    return;
                }
                if self.kick.wait_timeout(stall_at - now) {
                    return;
                }
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
            self.readers.gp_event.wait();
        }
        #[cfg(not(rcu_loom))]
        {
            let slice =
                (self.stall_timeout() / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
            if !self.readers.gp_event.wait_timeout(slice) {
                self.check_stalls(holders, stalls);
            }
        }
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
            let cold = lock(&r.cold);
            if let Some(thread) = &cold.owner {
                warnings.push(StallWarning {
                    thread_id: thread.id(),
                    thread_name: thread.name().map(str::to_owned),
                    stalled_for,
                    owned_guard_taken_at: cold.taken_at.map(crate::registry::TakenAt::location),
                    owner_exited: r.owner_exited(),
                });
            }
        }
        for w in warnings {
            self.stats.stalls.bump();
            self.emit(&RcuEvent::Stall(w));
        }
    }

    /// Reports `event` through the event hook (or the default), as user
    /// code: with no lock held and inside a catch. A hook that panics is
    /// reported on stderr.
    pub(crate) fn emit(&self, event: &RcuEvent) {
        let hook = self
            .event_hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let panicked = run_user(self, UserCode::EventHook, move || {
            match &hook {
                Some(hook) => hook(event),
                None => event.log_to_stderr(),
            }
            // The hook (user code) may be dropped here if it was replaced
            // meanwhile: inside the catch too.
            drop(hook);
        });
        if panicked.is_err() {
            report(format_args!("rcu: the event hook panicked"));
        }
    }

    /// Replaces the event hook (`None`: the default, one line on stderr).
    pub(crate) fn set_event_hook(&self, hook: Option<EventHook>) {
        let old = std::mem::replace(
            &mut *self
                .event_hook
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            hook,
        );
        // User code: dropped after the lock is released.
        drop(old);
    }

    /// Records why the domain started in fence mode against its
    /// configuration, for [`report_barrier_events`](Self::report_barrier_events).
    pub(crate) fn set_membarrier_unavailable(&self, reason: &'static str) {
        *self
            .unavailable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    /// After a grace period, outside every engine lock: reports once per
    /// domain that membarrier was unavailable at start, or was revoked.
    fn report_barrier_events(&self) {
        let unavailable = self
            .unavailable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(reason) = unavailable {
            self.emit(&RcuEvent::MembarrierUnavailable { reason });
        }
        if self.readers.mode() == Mode::Membarrier
            && let Some(revoked) = barrier::revoked()
            // Relaxed: only decides who reports.
            && !self.revoked_reported.swap(true, Ordering::Relaxed)
        {
            self.emit(&RcuEvent::MembarrierRevoked {
                error: revoked.error,
                fallback: revoked.fallback,
            });
        }
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

    /// Calls the force-quiescent notifiers of the readers in `holders` that
    /// this grace period has not called yet (`called`: their ids), with no
    /// lock held, catching panics (and the drop of a notifier whose handle
    /// went away meanwhile, which is user code too). Each forced iteration
    /// calls it, so a notifier registered after the grace period was forced
    /// (or a handle replaced then) is called too; it was called only on
    /// entering the forced state, and such a reader was never asked to
    /// leave.
    fn notify(&self, holders: &[Arc<Record>], called: &mut Vec<u64>) {
        let mut notifiers: Vec<NotifierFn> = Vec::new();
        for r in holders {
            for (id, f) in lock(&r.cold).notifiers.iter().flat_map(|l| l.iter()) {
                if !called.contains(id) {
                    called.push(*id);
                    notifiers.push(std::sync::Arc::clone(f));
                }
            }
        }
        for n in notifiers {
            // Not called once its handle's drop has begun (which waits
            // for a call in progress: `Notifier`).
            let panicked = n.begin_call().map(|call| {
                self.stats.notifier_calls.bump();
                let panicked = run_user(self, UserCode::Notifier, || n.f()());
                drop(call);
                panicked
            });
            let dropped = run_user(self, UserCode::Notifier, move || drop(n));
            for r in [panicked.unwrap_or(Ok(())), dropped] {
                if let Err(Panicked(message)) = r {
                    self.emit(&RcuEvent::NotifierPanic { message });
                }
            }
        }
    }
}

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
