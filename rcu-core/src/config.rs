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
}

impl Config {
    /// The defaults, usable in `const` context.
    pub const DEFAULT: Config = Config {
        callback_threshold: 30,
        poll_interval: Duration::from_millis(10),
        max_polls: 5,
        membarrier: true,
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
    /// held, in the order expedite, drain, callbacks, polls).
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
    /// Whether readers use the membarrier fast path (`false`: fence fallback).
    pub membarrier: bool,
}
