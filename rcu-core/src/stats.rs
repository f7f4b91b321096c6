//! Statistics: what [`stats`](crate::stats) returns; stall warnings and the
//! other events reported through the event hook ([`RcuEvent`]).

use std::fmt;
use std::time::Duration;

/// Why a grace period was forced, counted in [`Stats::forced_by`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForcedCauses {
    /// `callback_threshold` callbacks were pending.
    pub callbacks: u64,
    /// `max_polls` normal-state sleeps passed.
    pub polls: u64,
    /// A [`drain`](crate::drain) was in progress.
    pub drain: u64,
    /// An expedited grace period was asked for.
    pub expedite: u64,
    /// The pending callbacks held `memory_limit` bytes.
    pub memory: u64,
}

/// A snapshot of a domain's counters, from [`stats`](crate::stats) or
/// [`RcuDomain::stats`](crate::RcuDomain::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Grace periods completed.
    pub grace_periods: u64,
    /// Of those, the ones that entered the forced state.
    pub forced_grace_periods: u64,
    /// Of those, the ones forced because an expedited grace period was asked
    /// for.
    pub expedited_grace_periods: u64,
    /// Forced grace periods by the condition that forced them (the first that
    /// held, in the order expedite, drain, memory, callbacks, polls).
    pub forced_by: ForcedCauses,
    /// Normal-state sleeps (polls) between scans.
    pub polls: u64,
    /// Force-quiescent notifiers called.
    pub notifier_calls: u64,
    /// Times a reader leaving a critical section found `waiting` set and
    /// signalled the grace period. Zero while nothing is forced.
    pub reader_wakeups: u64,
    /// Times a thread woke the reclaim thread from its wait for work
    /// (callbacks, a drain, a `start_poll`): each a system call for that
    /// thread, and an interrupt to the CPU where the reclaim thread sleeps.
    /// A producer's first callback wakes it when it is idle, not while it
    /// gathers callbacks ([`Config::callback_pacing`](crate::Config::callback_pacing)).
    pub reclaim_wakeups: u64,
    /// Heavy barriers issued (each one a `membarrier` call in that mode).
    pub heavy_barriers: u64,
    /// Callbacks queued with `call_rcu` / `defer_drop` (and one per `drain`).
    /// In the child of a `fork()`, recounted from what the child holds:
    /// callbacks another thread was queueing at the instant of the fork are
    /// lost there and left out, so it may be lower than the parent's count
    /// at the fork.
    pub callbacks_queued: u64,
    /// Callbacks taken to run (including ones that panicked): a runner
    /// counts a chunk of up to 256 callbacks when it takes it, so this runs
    /// up to a chunk ahead of the callbacks that have started, and is exact
    /// once nothing runs (after a [`drain`](crate::drain), say).
    pub callbacks_run: u64,
    /// Callbacks whose grace period has not ended yet: batched, queued, or
    /// in the batch waiting for its grace period. Callbacks whose grace
    /// period has ended but that no runner has taken yet are in neither
    /// this count nor `callbacks_run` (so `callbacks_run +
    /// callbacks_pending <= callbacks_queued`, equal once nothing runs).
    pub callbacks_pending: u64,
    /// Callbacks that panicked.
    pub callback_panics: u64,
    /// Reader records in use: registered threads, and the records of owned
    /// (and local) guards, pooled for reuse once taken.
    pub readers: usize,
    /// The longest grace period so far.
    pub longest_grace_period: Duration,
    /// Grace-period durations, in power-of-two buckets.
    pub histogram: GpHistogram,
    /// Readers reported as stalling a grace period (once per stall).
    pub stalls: u64,
    /// Bytes held by callbacks queued and not yet run.
    pub callbacks_pending_bytes: u64,
    /// The most bytes pending callbacks have held at once.
    pub max_pending_bytes: u64,
    /// Whether readers use the membarrier fast path (`false`: fence fallback).
    pub membarrier: bool,
    /// Whether `membarrier(2)` stopped working after the process had
    /// registered for it (a sandbox revoked it). Readers keep their
    /// compiler-fence fast path; heavy barriers are then the process-wide
    /// fallback (see [`RcuEvent::MembarrierRevoked`]).
    pub membarrier_revoked: bool,
}

/// Number of buckets in [`GpHistogram`].
pub const HISTOGRAM_BUCKETS: usize = 24;

/// Grace-period durations in power-of-two buckets: bucket 0 counts grace
/// periods under 1 µs, bucket `i` those in `[2^(i-1), 2^i)` µs, and the
/// last one everything from about 4 s up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpHistogram {
    /// Counts per bucket.
    pub buckets: [u64; HISTOGRAM_BUCKETS],
}

impl GpHistogram {
    /// The bucket a duration falls in.
    pub fn bucket_of(d: Duration) -> usize {
        let us = d.as_micros();
        if us == 0 {
            0
        } else {
            (128 - us.leading_zeros() as usize).min(HISTOGRAM_BUCKETS - 1)
        }
    }

    /// The smallest duration that falls in bucket `i`.
    pub fn lower_bound(i: usize) -> Duration {
        if i == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(1 << (i - 1))
        }
    }

    /// Total grace periods counted.
    pub fn total(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl fmt::Display for GpHistogram {
    /// One `>= bound: count` entry per non-empty bucket.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, ">={:?}: {n}", GpHistogram::lower_bound(i))?;
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// A reader that has held up a grace period for longer than
/// [`Config::stall_timeout`](crate::Config::stall_timeout), passed to the event hook as
/// [`RcuEvent::Stall`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StallWarning {
    /// The stalling thread's id.
    pub thread_id: std::thread::ThreadId,
    /// Its name, if it has one.
    pub thread_name: Option<String>,
    /// How long it has held up the grace period so far.
    pub stalled_for: Duration,
    /// For an [`OwnedReadGuard`](crate::OwnedReadGuard): where it was taken
    /// (then `thread_id` and `thread_name` are those of the thread that took
    /// it, which need not be the one holding it now).
    pub owned_guard_taken_at: Option<&'static std::panic::Location<'static>>,
    /// The thread has exited while inside the critical section: a guard was
    /// leaked (`mem::forget`, a reference cycle) or is kept somewhere that
    /// is never dropped. No notifier can end this stall; grace periods wait
    /// for it for the rest of the process.
    pub owner_exited: bool,
}

impl fmt::Display for StallWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.thread_name.as_deref().unwrap_or("unnamed");
        match self.owned_guard_taken_at {
            None if self.owner_exited => write!(
                f,
                "rcu: stall: thread {:?} ({name}) exited inside a read-side critical section and \
                 has held up a grace period for {:.1?}: a guard it took was leaked (mem::forget, \
                 a reference cycle, a thread-local never dropped); grace periods will wait for \
                 it forever",
                self.thread_id, self.stalled_for
            ),
            Some(at) => write!(
                f,
                "rcu: stall: an OwnedReadGuard taken at {at} on thread {:?} ({name}) has held up \
                 a grace period for {:.1?}; drop it (a task that waits for a grace period while \
                 holding one waits forever)",
                self.thread_id, self.stalled_for
            ),
            None => write!(
                f,
                "rcu: stall: thread {:?} ({name}) has held up a grace period for {:.1?}; a reader \
                 that stays in a critical section should leave it when its force-quiescent \
                 notifier fires",
                self.thread_id, self.stalled_for
            ),
        }
    }
}

/// Something a domain reports through its event hook
/// ([`set_event_hook`](crate::set_event_hook),
/// [`RcuDomain::set_event_hook`](crate::RcuDomain::set_event_hook)).
///
/// The hook runs on the thread that found the event (a grace-period leader,
/// or the reclaim thread), with no engine lock held, inside a catch; it must
/// return quickly. Without a hook, [`log_to_stderr`](Self::log_to_stderr)
/// writes one line per event.
///
/// ```
/// use rcu_core::RcuEvent;
/// let domain = rcu_core::RcuDomain::new();
/// domain.set_event_hook(|e| match e {
///     RcuEvent::Stall(w) => eprintln!("stall on {:?}", w.thread_name),
///     other => other.log_to_stderr(),
/// });
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RcuEvent {
    /// A reader has held up a grace period for longer than
    /// [`Config::stall_timeout`](crate::Config::stall_timeout); once per
    /// stall.
    Stall(StallWarning),
    /// The domain started without `membarrier(2)` although its
    /// configuration allowed it: readers pay a full fence on every lock and
    /// unlock (several nanoseconds, about as much as crossbeam-epoch's pin).
    /// Reported once per domain, at the end of its first grace period.
    /// Not reported when membarrier was turned off on purpose
    /// (`RCU_NO_MEMBARRIER`, [`Config::membarrier`](crate::Config::membarrier)).
    MembarrierUnavailable {
        /// Why, in words.
        reason: &'static str,
    },
    /// `membarrier(2)` failed after the process had registered for it (a
    /// seccomp filter installed after start, say). Readers keep their
    /// compiler-fence fast path, and every heavy barrier from now on is the
    /// process-wide fallback named here. Reported once per domain, at the end
    /// of the grace period that found it.
    MembarrierRevoked {
        /// The error `membarrier` returned.
        error: String,
        /// The barrier used instead.
        fallback: &'static str,
    },
    /// A `call_rcu` callback panicked (on the reclaim thread, on a thread
    /// in `drain`, on its own producer at a batch boundary, or on a
    /// producer helping over the memory limit); the other callbacks still
    /// run.
    CallbackPanic {
        /// The panic message, when it was a string.
        message: Option<String>,
    },
    /// A force-quiescent notifier panicked; the grace period went on.
    NotifierPanic {
        /// The panic message, when it was a string.
        message: Option<String>,
    },
}

impl RcuEvent {
    /// What happens to an event without a hook: one line on stderr (write
    /// errors ignored). A membarrier fallback or revocation is written once
    /// per process, however many domains report it.
    pub fn log_to_stderr(&self) {
        use std::sync::atomic::{AtomicBool, Ordering};
        static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
        static REVOKED: AtomicBool = AtomicBool::new(false);
        let once = match self {
            RcuEvent::MembarrierUnavailable { .. } => Some(&UNAVAILABLE),
            RcuEvent::MembarrierRevoked { .. } => Some(&REVOKED),
            _ => None,
        };
        // Relaxed: only decides who writes the line.
        if once.is_some_and(|f| f.swap(true, Ordering::Relaxed)) {
            return;
        }
        crate::sync::report(format_args!("{self}"));
    }
}

impl fmt::Display for RcuEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RcuEvent::Stall(w) => w.fmt(f),
            RcuEvent::MembarrierUnavailable { reason } => write!(
                f,
                "rcu: membarrier unavailable ({reason}): readers use a full fence on every lock \
                 and unlock (set Config::require_membarrier to refuse to start instead)"
            ),
            RcuEvent::MembarrierRevoked { error, fallback } => write!(
                f,
                "rcu: membarrier failed after start ({error}); grace periods now use {fallback}"
            ),
            RcuEvent::CallbackPanic { message } => write!(
                f,
                "rcu: a call_rcu callback panicked{}; the other callbacks still run",
                PanicText(message)
            ),
            RcuEvent::NotifierPanic { message } => write!(
                f,
                "rcu: a force-quiescent notifier panicked{}; the grace period goes on",
                PanicText(message)
            ),
        }
    }
}

/// `: "message"` when there is one.
struct PanicText<'a>(&'a Option<String>);

impl fmt::Display for PanicText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(m) => write!(f, " ({m:?})"),
            None => Ok(()),
        }
    }
}

/// An event hook that passes stall warnings to `hook` and logs every other
/// event on stderr (what `set_stall_hook` installs).
pub(crate) fn stall_only(
    hook: impl Fn(&StallWarning) + Send + Sync + 'static,
) -> impl Fn(&RcuEvent) + Send + Sync + 'static {
    move |event| match event {
        RcuEvent::Stall(w) => hook(w),
        other => other.log_to_stderr(),
    }
}
