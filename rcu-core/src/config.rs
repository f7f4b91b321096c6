//! Tunables and statistics.

use std::fmt;
use std::time::Duration;

/// Tunables of a domain. Set them before the domain starts.
///
/// The defaults are QEMU's: force the grace period once 30 callbacks are
/// pending or after 5 polls 10 ms apart.
///
/// ```
/// use std::time::Duration;
/// let config = rcu_core::Config::default().poll_interval(Duration::from_millis(5)).max_polls(3);
/// assert_eq!(config.callback_threshold, 30);
/// let domain = rcu_core::RcuDomain::with_config(config);
/// domain.synchronize();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Force the grace period when this many callbacks are pending.
    pub callback_threshold: usize,
    /// Sleep between scans in the normal state.
    pub poll_interval: Duration,
    /// Force the grace period after this many normal-state sleeps.
    pub max_polls: u32,
    /// Use `membarrier(2)` where the kernel offers it. With `false` the domain
    /// always uses the fence fallback. The process-wide switch
    /// `RCU_NO_MEMBARRIER=1` overrides `true`.
    pub membarrier: bool,
    /// Force the grace period when the pending callbacks hold at least this
    /// many bytes (the size of each callback's closure, which for
    /// [`defer_drop`](crate::defer_drop) is the value; see
    /// [`defer_drop_sized`](crate::defer_drop_sized) for heap memory).
    pub memory_limit: usize,
    /// Report a reader that holds up a grace period for this long, once per
    /// stall, through the stall hook ([`set_stall_hook`](crate::set_stall_hook)).
    pub stall_timeout: Duration,
}

impl Config {
    /// The defaults, usable in `const` context.
    pub const DEFAULT: Config = Config {
        callback_threshold: 30,
        poll_interval: Duration::from_millis(10),
        max_polls: 5,
        membarrier: true,
        memory_limit: 64 << 20,
        stall_timeout: Duration::from_secs(10),
    };
}

impl Config {
    /// Sets [`callback_threshold`](Self::callback_threshold).
    #[must_use]
    pub const fn callback_threshold(mut self, n: usize) -> Self {
        self.callback_threshold = n;
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    #[must_use]
    pub const fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`max_polls`](Self::max_polls).
    #[must_use]
    pub const fn max_polls(mut self, n: u32) -> Self {
        self.max_polls = n;
        self
    }

    /// Sets [`membarrier`](Self::membarrier).
    #[must_use]
    pub const fn membarrier(mut self, allow: bool) -> Self {
        self.membarrier = allow;
        self
    }

    /// Sets [`memory_limit`](Self::memory_limit).
    #[must_use]
    pub const fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Sets [`stall_timeout`](Self::stall_timeout).
    #[must_use]
    pub const fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The domain has started (a thread read, or a grace period or callback
    /// was requested); its tunables are fixed from then on.
    AlreadyStarted,
    /// `callback_threshold` or `poll_interval` was zero.
    Invalid(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AlreadyStarted => f.write_str(
                "the RCU domain has already started; configure it before its first read_lock, \
                 synchronize or call_rcu",
            ),
            ConfigError::Invalid(what) => write!(f, "invalid RCU configuration: {what}"),
        }
    }
}

impl std::error::Error for ConfigError {}

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
/// [`Config::stall_timeout`], passed to the stall hook.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StallWarning {
    /// The stalling thread's id.
    pub thread_id: std::thread::ThreadId,
    /// Its name, if it has one.
    pub thread_name: Option<String>,
    /// How long it has held up the grace period so far.
    pub stalled_for: Duration,
}

impl fmt::Display for StallWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rcu: stall: thread {:?} ({}) has held up a grace period for {:.1?}; a reader that \
             stays in a critical section should leave it when its force-quiescent notifier fires",
            self.thread_id,
            self.thread_name.as_deref().unwrap_or("unnamed"),
            self.stalled_for
        )
    }
}
