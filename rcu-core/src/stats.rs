//! Statistics: what [`stats`](crate::stats) returns, and stall warnings.

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
    /// Heavy barriers issued (each one a `membarrier` call in that mode).
    pub heavy_barriers: u64,
    /// Callbacks queued with `call_rcu` / `defer_drop` (and one per `drain`).
    pub callbacks_queued: u64,
    /// Callbacks run or running (including ones that panicked).
    pub callbacks_run: u64,
    /// Callbacks queued and not yet handed to a grace period's batch.
    pub callbacks_pending: u64,
    /// Callbacks that panicked.
    pub callback_panics: u64,
    /// Reader threads currently registered.
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
/// [`Config::stall_timeout`](crate::Config::stall_timeout), passed to the stall hook.
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
}

impl fmt::Display for StallWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.thread_name.as_deref().unwrap_or("unnamed");
        match self.owned_guard_taken_at {
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
