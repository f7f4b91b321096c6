//! Tunables.

use std::fmt;
use std::time::Duration;

/// Tunables of a domain. Set them before the domain starts.
///
/// The defaults are QEMU's: force the grace period once 30 callbacks are
/// pending or after 5 polls 10 ms apart.
///
/// Each value has an allowed range, checked by
/// [`RcuDomain::try_with_config`](crate::RcuDomain::try_with_config) and
/// [`configure`](crate::configure) ([`ConfigError::Invalid`] names it):
///
/// | field | allowed | "never" |
/// |---|---|---|
/// | `callback_threshold` | 1 ..= `usize::MAX` | `usize::MAX` |
/// | `poll_interval` | 1 µs ..= 60 s | |
/// | `max_polls` | 0 ..= `u32::MAX` | `u32::MAX` |
/// | `memory_limit` | 4 KiB ..= `usize::MAX` | `usize::MAX` |
/// | `stall_timeout` | 1 ms ..= `Duration::MAX` | `Duration::MAX` |
/// | `callback_pacing` | 0 ..= 10 s | 0 (never gather) |
/// | `offload_callbacks` | `false`, `true` | |
///
/// `poll_interval` is how long a `synchronize()` may sleep between scans,
/// so it is bounded; a `memory_limit` below a page would force every grace
/// period.
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
    /// A bound on the bytes pending callbacks hold.
    ///
    /// **What is counted**: each callback counts the size of its closure
    /// (for [`defer_drop`](crate::defer_drop), the value itself), plus
    /// what the caller declares on top: the `heap_bytes` of
    /// [`defer_drop_sized`](crate::defer_drop_sized), a retired
    /// [`Unlinked`](crate::Unlinked) value's own size plus its
    /// [`with_heap_bytes`](crate::Unlinked::with_heap_bytes), or an
    /// [`RcuCell`](crate::RcuCell)'s [`heap_size`](crate::RcuCell::heap_size)
    /// function, `size_of::<T>()` for [`defer_free`](crate::defer_free).
    /// Heap memory nobody declares is not seen; one callback counts for at
    /// most 16 MiB on 32-bit targets (2^54 bytes on 64-bit ones), and the
    /// domain's total stops at `usize::MAX` rather than wrap. Bytes are released when a
    /// runner takes a callback to run (at most 256 callbacks ahead of their
    /// actual frees). A thread's batch (see [`call_rcu`](crate::call_rcu))
    /// moves to the domain's queue once it holds a sixteenth of the limit,
    /// and forcing counts batched bytes too.
    ///
    /// **What happens at the limit**: once pending bytes reach it, grace
    /// periods are forced (notifiers run). While they exceed it, a producer
    /// that may wait (outside any critical section of any domain it reads
    /// through its own guards, not in a callback, notifier or hook, nor in
    /// a scope of [`RcuDomain::no_grace_period_waits`](crate::RcuDomain::no_grace_period_waits))
    /// *helps* inside its `call_rcu`: it runs
    /// callbacks whose grace period has ended, on its own thread, and waits
    /// for more to become ready: for at most 1 ms per call in all, running
    /// and waiting (plus the end of the chunk of up to 256 callbacks it is
    /// running then), however long the others keep the domain over its
    /// limit. Elsewhere `call_rcu`
    /// only forces and returns; it never deadlocks. A flood with no readers
    /// then stays within about the limit (the `flood` test measured a
    /// peak of 1.05x the limit with two producers, against 39x without
    /// helping); a reader that holds grace
    /// periods up lets it grow by at most one item per producer per
    /// millisecond.
    ///
    /// **Callback order**: each thread's callbacks run in the order it
    /// queued them, one after another, whoever runs them. Below the limit
    /// callbacks run on the reclaim thread, on a thread in
    /// [`drain`](crate::drain) (which runs those queued before it when the
    /// reclaim thread is not collecting them already), or on their own
    /// producer at its batch boundary (see [`offload_callbacks`](Self::offload_callbacks)).
    /// Runners take chunks in queue order but never two of one thread at
    /// once, so the callbacks of different threads may run side by side;
    /// while producers help, also on producers' threads.
    /// Two things always hold as well: a callback runs after a grace period
    /// that started after its `call_rcu`, and [`drain`](crate::drain) returns only
    /// after every callback queued before it has finished. A helper runs
    /// the callbacks of every thread, not only its own: a callback must not
    /// take a lock that *any* producer of the domain may hold while it calls
    /// `call_rcu` (the crate's own structures retire only after releasing
    /// theirs). A helper may also be a thread running its thread-local
    /// destructors (retiring a value from one), so a callback that uses
    /// thread-locals must allow for them being gone
    /// ([`LocalKey::try_with`](std::thread::LocalKey::try_with)), as
    /// crossbeam-epoch's deferred functions must. A callback run by a helper runs on the producer's thread,
    /// which is then inside no critical section of its own, nor holds an
    /// [`OwnedReadGuard`](crate::OwnedReadGuard) it took; one taken on
    /// another thread and moved to the producer is not seen, so a callback
    /// that waits for a grace period of that guard's domain would wait for
    /// the producer. A callback that blocks blocks
    /// its runner, and while its thread's later chunks wait for it the
    /// reclaim thread may wait too, whichever thread runs it (on the
    /// reclaim thread itself it would block it all the same).
    pub memory_limit: usize,
    /// Report a reader that holds up a grace period for this long, once per
    /// stall, through the event hook ([`set_event_hook`](crate::set_event_hook)).
    pub stall_timeout: Duration,
    /// Refuse to start rather than run without membarrier: with `true`,
    /// [`configure`](crate::configure) and
    /// [`RcuDomain::try_with_config`](crate::RcuDomain::try_with_config)
    /// return [`ConfigError::MembarrierUnavailable`] when the process cannot
    /// use it (the kernel lacks it, a sandbox refuses it, or
    /// `RCU_NO_MEMBARRIER` is set). Checked when the configuration is set,
    /// which registers the process with the kernel then.
    pub require_membarrier: bool,
    /// How long the reclaim thread gathers callbacks that keep arriving
    /// before it starts their grace period: the least time from the end of
    /// one callback grace period to the start of the next, *while the
    /// reclaim thread is busy* (it found callbacks waiting as soon as it
    /// had run the previous batch) *or readers are running* (the domain's
    /// latest grace period found a reader inside a critical section; in
    /// membarrier mode only, as fence mode interrupts no reader).
    ///
    /// A callback queued while the reclaim thread is idle, after a grace
    /// period that found no reader, starts its grace period at once; so
    /// does one queued more than this after the last grace period ended,
    /// and the one a [`synchronize_async`](crate::synchronize_async) future
    /// (or `into_inner_async`) waits for. So an occasional `call_rcu`, or
    /// one of a caller that waits for each callback in turn while nobody
    /// reads, runs within microseconds of a grace period whatever this is;
    /// a thread that blocks on its own callback while readers run may wait
    /// up to this long. Under a steady stream of `call_rcu`
    /// the reclaim thread would otherwise start grace periods back to back,
    /// or one per callback when they come slower than a grace period takes,
    /// tens of thousands a second, and each one costs
    /// every running reader an interrupt (membarrier's IPI: about 15 µs of
    /// a reader's time on a cloud VM). Pacing caps that at one grace period
    /// per `callback_pacing`: the gathering ends early only once pending
    /// bytes reach half the [`memory_limit`], and for a
    /// [`drain`](crate::drain), a [`start_poll`](crate::start_poll), a task
    /// awaiting a callback, or the domain's shutdown (a drain that runs the
    /// gathered callbacks itself ends it within 1 ms, without waking the
    /// reclaim thread; callbacks that arrive while it gathers wake no one
    /// either). However many callbacks
    /// it gathers, the grace period that follows counts them all for
    /// [`callback_threshold`] (it is forced when they reach it); the
    /// threshold does not end the gathering, since a writer retiring a node
    /// every 100 ns reaches 30 every few microseconds (it did end it once:
    /// tens of thousands of grace periods a second under a replacing
    /// `RcuHashMap::insert` loop, which then cost 258–263 ns an insert
    /// against 187–203 ns; the workspace README has the command).
    /// (liburcu's `call_rcu` thread sleeps 10 ms between batches
    /// unconditionally; Linux's lazy callbacks wait up to 10 s.)
    ///
    /// The default, 1 ms, bounds the added latency of a callback under
    /// load (a stream of callbacks, or readers running) to 1 ms, plus as
    /// much again at most while a stream goes on and its batch is left to
    /// its producers (see [`offload_callbacks`](Self::offload_callbacks)).
    /// `Duration::ZERO` starts every grace period at once.
    /// A callback that arrives just after a gathering ended (the reclaim
    /// thread took its batch) waits for the next one.
    ///
    /// What it buys, measured in a `RcuHashMap` loop of 98% `get`, 2%
    /// insert or remove on one thread
    /// (`cargo run --release -p rcu-bench --example pacing`): grace periods
    /// from about 30 000 a second to a few thousand, and the mix from 1.6–2x
    /// the cost of its `get`-only loop to about 1.0–1.2x.
    ///
    /// [`callback_threshold`]: Self::callback_threshold
    /// [`memory_limit`]: Self::memory_limit
    pub callback_pacing: Duration,
    /// Run every callback on the reclaim thread or in a
    /// [`drain`](crate::drain) (or, over the [`memory_limit`], on a
    /// helping producer), never on a producer at its batch boundary
    /// (Linux's `rcu_nocbs` offloading, per domain).
    ///
    /// With `false`, the default, a thread that keeps calling
    /// [`call_rcu`](crate::call_rcu) runs its *own* earlier callbacks whose
    /// grace period has ended: each time its batch fills (256 callbacks
    /// appended between two of the reclaim thread's harvests; 64 on 32-bit
    /// targets and under Miri), up to two chunks of at most that many, in
    /// its queue order,
    /// inside that `call_rcu`, and only where a helper may run callbacks
    /// (outside every critical section, callback, notifier, hook and
    /// [`no_grace_period_waits`](crate::RcuDomain::no_grace_period_waits)
    /// scope). crossbeam-epoch's `defer` and Linux's per-CPU callback lists
    /// do the same: the memory is freed where it was allocated, which
    /// spares the allocator a cross-thread free for each callback. The
    /// reclaim thread leaves its latest batch to them while the stream goes
    /// on, for up to 1 ms (at most the [`callback_pacing`](Self::callback_pacing)),
    /// and then runs what they left; at once when the stream stops, a drain
    /// starts, or pending bytes reach half the [`memory_limit`]; and it
    /// leaves none of a batch that holds a callback a task awaits
    /// ([`synchronize_async`](crate::synchronize_async)). A producer
    /// runs up to two chunks each time, so one that keeps its pace clears
    /// what it was left well within that. What it bought, replacing 64 K
    /// keys of an `RcuHashMap` in a loop on one thread (`cargo run
    /// --release -p rcu-bench --example map_get`, fastest samples, two runs
    /// of each build on a 2-CPU VM): 272–318 ns an insert before, 0.46–0.48x
    /// papaya's time; 140–161 ns with it, 0.82–0.89x. glibc's arena lock had
    /// been taken by the writer's allocations and the reclaim thread's frees
    /// in turn. The cost: callbacks that free nothing (a counter bump) no
    /// longer run beside their producer on another CPU, and a stream of
    /// them takes about 10% longer (the runner's one-producer closures
    /// row).
    ///
    /// A callback that takes a lock its own producer may hold while it
    /// calls `call_rcu` would deadlock there: with `false`, callbacks must
    /// keep to the rule the [`memory_limit`] states for helpers (the
    /// crate's own structures retire only after releasing their locks), and
    /// allow for running in the producer's thread-local destructors, as
    /// helped ones must. A callback run there that calls `call_rcu` queues
    /// its callback ahead of the one whose `call_rcu` ran it (both the
    /// producer's, so they run in that order).
    /// Set `true` to keep a producer's `call_rcu` latency flat below the
    /// memory limit, or for callbacks that take a lock their own producer
    /// holds around `call_rcu` (only below the limit: over it, `true` or
    /// `false`, a producer helps run any thread's callbacks, and the
    /// [`memory_limit`]'s rule stands; use `usize::MAX` as the limit, the
    /// default is 64 MiB, for such callbacks).
    ///
    /// [`memory_limit`]: Self::memory_limit
    pub offload_callbacks: bool,
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
        require_membarrier: false,
        callback_pacing: Duration::from_millis(1),
        offload_callbacks: false,
    };

    /// The smallest [`poll_interval`](Self::poll_interval).
    pub const MIN_POLL_INTERVAL: Duration = Duration::from_micros(1);
    /// The largest [`poll_interval`](Self::poll_interval).
    pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
    /// The smallest [`memory_limit`](Self::memory_limit).
    pub const MIN_MEMORY_LIMIT: usize = 4096;
    /// The smallest [`stall_timeout`](Self::stall_timeout).
    pub const MIN_STALL_TIMEOUT: Duration = Duration::from_millis(1);
    /// The largest [`callback_pacing`](Self::callback_pacing).
    pub const MAX_CALLBACK_PACING: Duration = Duration::from_secs(10);
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

    /// Sets [`callback_pacing`](Self::callback_pacing).
    ///
    /// ```
    /// use std::time::Duration;
    /// // A latency-sensitive user: at most 100 µs of gathering under load.
    /// let config = rcu_core::Config::default().callback_pacing(Duration::from_micros(100));
    /// let domain = rcu_core::RcuDomain::try_with_config(config).unwrap();
    /// domain.call_rcu(|| ());
    /// domain.drain();
    /// ```
    #[must_use]
    pub const fn callback_pacing(mut self, pacing: Duration) -> Self {
        self.callback_pacing = pacing;
        self
    }

    /// Sets [`offload_callbacks`](Self::offload_callbacks).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// // Callbacks that take a lock their producers hold around `call_rcu`:
    /// // none runs on a producer, with no memory limit to help under.
    /// let domain = rcu_core::RcuDomain::with_config(
    ///     rcu_core::Config::default()
    ///         .offload_callbacks(true)
    ///         .memory_limit(usize::MAX),
    /// );
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// for i in 0..1000 {
    ///     let held = log.lock().unwrap();
    ///     let log2 = Arc::clone(&log);
    ///     domain.call_rcu(move || log2.lock().unwrap().push(i));
    ///     drop(held);
    /// }
    /// domain.drain();
    /// assert_eq!(log.lock().unwrap().len(), 1000);
    /// ```
    #[must_use]
    pub const fn offload_callbacks(mut self, offload: bool) -> Self {
        self.offload_callbacks = offload;
        self
    }

    /// Sets [`require_membarrier`](Self::require_membarrier).
    ///
    /// ```
    /// use rcu_core::{Config, ConfigError, RcuDomain};
    /// match RcuDomain::try_with_config(Config::default().require_membarrier(true)) {
    ///     Ok(domain) => {
    ///         domain.synchronize(); // started: readers on the fast path
    ///         assert!(domain.stats().membarrier);
    ///     }
    ///     Err(ConfigError::MembarrierUnavailable(why)) => eprintln!("would run slow: {why}"),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    #[must_use]
    pub const fn require_membarrier(mut self, require: bool) -> Self {
        self.require_membarrier = require;
        self
    }
}

impl Config {
    /// Checks each value against its allowed range (see [`Config`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.callback_threshold == 0 {
            return Err(ConfigError::Invalid(
                "callback_threshold must be in 1..=usize::MAX (usize::MAX: never force for it)",
            ));
        }
        if !(Self::MIN_POLL_INTERVAL..=Self::MAX_POLL_INTERVAL).contains(&self.poll_interval) {
            return Err(ConfigError::Invalid(
                "poll_interval must be in 1µs..=60s (synchronize() may sleep that long between \
                 scans)",
            ));
        }
        if self.memory_limit < Self::MIN_MEMORY_LIMIT {
            return Err(ConfigError::Invalid(
                "memory_limit must be in 4096..=usize::MAX bytes (usize::MAX: no limit); a \
                 smaller one would force every grace period",
            ));
        }
        if self.stall_timeout < Self::MIN_STALL_TIMEOUT {
            return Err(ConfigError::Invalid(
                "stall_timeout must be in 1ms..=Duration::MAX (Duration::MAX: never warn)",
            ));
        }
        if self.callback_pacing > Self::MAX_CALLBACK_PACING {
            return Err(ConfigError::Invalid(
                "callback_pacing must be in 0..=10s (Duration::ZERO: start every grace period at \
                 once)",
            ));
        }
        if self.require_membarrier && !self.membarrier {
            return Err(ConfigError::Invalid(
                "require_membarrier needs membarrier = true",
            ));
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
    /// A value out of its allowed range; the message names the field and
    /// the range (see [`Config`]).
    Invalid(&'static str),
    /// [`Config::require_membarrier`] is set and the process cannot use
    /// membarrier; the reason in words.
    MembarrierUnavailable(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AlreadyStarted => f.write_str(
                "the RCU domain has already started; configure it before its first read_lock, \
                 synchronize or call_rcu",
            ),
            ConfigError::Invalid(what) => write!(f, "invalid RCU configuration: {what}"),
            ConfigError::MembarrierUnavailable(why) => write!(
                f,
                "membarrier is required (Config::require_membarrier) but unavailable: {why}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
