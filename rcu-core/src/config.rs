//! Tunables.

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

impl Config {
    /// Checks the values the engine cannot run with.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.callback_threshold == 0 {
            return Err(ConfigError::Invalid(
                "callback_threshold must be at least 1",
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError::Invalid("poll_interval must be non-zero"));
        }
        if self.stall_timeout.is_zero() {
            return Err(ConfigError::Invalid("stall_timeout must be non-zero"));
        }
        Ok(())
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
