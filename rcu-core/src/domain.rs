//! RCU domains: [`RcuDomain`] (the public handle), [`Reader`], and `Inner`,
//! one domain's engine: its grace-period machine and its callbacks.
//!
//! The process-wide domain behind the free functions is the `static`
//! [`GLOBAL`]; [`RcuDomain::new`] makes independent ones (isolation, tests,
//! loom models).

use crate::barrier::{self, Mode};
use crate::callbacks::{self, Callbacks};
use crate::config::{Config, ConfigError};
use crate::grace_period::GracePeriods;
use crate::guard::{DomainGuard, DomainId, Guard, KeepAlive, LocalReadGuard, OwnedReadGuard};
use crate::registry::{NotifierHandle, Record};
use crate::stats::{ForcedCauses, GpHistogram, RcuEvent, StallWarning, Stats};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering, lock, thread};
use std::marker::PhantomData;
use std::time::Duration;

/// The process-wide domain.
#[cfg(not(rcu_loom))]
pub(crate) static GLOBAL: Inner = Inner::new(0);

/// One RCU domain's engine.
///
/// Once started, an `Inner` must not move (records and the queue point into
/// it): it is either the `static` [`GLOBAL`] or inside an `Arc`.
pub(crate) struct Inner {
    pub(crate) gp: GracePeriods,
    pub(crate) cb: Callbacks,
    /// [`RcuDomain`] handles alive (not counting the reclaim thread's or
    /// guards' keep-alives): the last one to go shuts the reclaim thread
    /// down.
    owners: std::sync::atomic::AtomicUsize,
    pub(crate) started: AtomicBool,
    pub(crate) start_lock: Mutex<()>,
    /// The configuration, kept until the domain starts.
    pub(crate) config: std::sync::Mutex<Config>,
}

impl Inner {
    loom_const_fn! {
        pub(crate) fn new(id: u64) -> Self {
            Inner {
                gp: GracePeriods::new(id),
                cb: Callbacks::new(),
                owners: std::sync::atomic::AtomicUsize::new(1),
                started: AtomicBool::new(false),
                start_lock: Mutex::new(()),
                config: std::sync::Mutex::new(Config::DEFAULT),
            }
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.gp.readers.id
    }

    /// Sets the tunables; refused once the domain has started.
    pub(crate) fn configure(&self, config: &Config) -> Result<(), ConfigError> {
        config.validate()?;
        if config.require_membarrier
            && let Err(u) = barrier::process_mode()
        {
            return Err(ConfigError::MembarrierUnavailable(u.reason));
        }
        let _g = lock(&self.start_lock);
        // Relaxed: read under `start_lock`, which `start` also holds.
        if self.started.load(Ordering::Relaxed) {
            return Err(ConfigError::AlreadyStarted);
        }
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config.clone();
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
        // Before the start lock, which the fork handlers take.
        #[cfg(all(unix, not(rcu_loom), not(miri)))]
        crate::fork::install();
        let _g = lock(&self.start_lock);
        // Relaxed: under `start_lock`.
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let config = self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.gp
            .set_tunables(&config)
            .expect("validated by `configure`");
        let mode = if config.membarrier {
            match barrier::process_mode() {
                Ok(()) => Mode::Membarrier,
                Err(u) => {
                    if !u.requested {
                        // Reported through the event hook after the first
                        // grace period (user code never runs here, under
                        // the start lock, on whatever path started us).
                        self.gp.set_membarrier_unavailable(u.reason);
                    }
                    Mode::Fence
                }
            }
        } else {
            Mode::Fence
        };
        self.gp.readers.set_mode(mode);
        self.cb.init();
        // Release: pairs with the Acquire load in `start`.
        self.started.store(true, Ordering::Release);
    }

    /// Registers the calling thread as a reader.
    pub(crate) fn register(&self) -> Arc<Record> {
        self.start();
        self.gp.readers.register()
    }

    #[track_caller]
    pub(crate) fn synchronize(&self, expedite: bool) {
        self.start();
        self.gp.synchronize(expedite);
    }

    pub(crate) fn no_grace_period_waits<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::grace_period::refuse_waits(&self.gp, f)
    }

    pub(crate) fn cookie(&self) -> GpCookie {
        self.start();
        GpCookie {
            seq: self.gp.cookie(),
            domain: self.id(),
        }
    }

    /// A cookie, and a grace period that completes it started on the
    /// reclaim thread (if none has been asked for yet). Never waits.
    pub(crate) fn start_poll(&self, handle: &Handle) -> GpCookie {
        self.start();
        GpCookie {
            seq: self
                .cb
                .start_poll(&self.gp, &|| spawn_reclaim(handle.clone())),
            domain: self.id(),
        }
    }

    #[track_caller]
    fn check_cookie(&self, cookie: GpCookie) {
        if cookie.domain != self.id() {
            cookie_mismatch(cookie.domain, self.id());
        }
    }

    #[track_caller]
    pub(crate) fn poll(&self, cookie: GpCookie) -> bool {
        self.check_cookie(cookie);
        self.gp.poll(cookie.seq)
    }

    #[track_caller]
    pub(crate) fn synchronize_since(&self, cookie: GpCookie) {
        self.check_cookie(cookie);
        self.start();
        self.gp.synchronize_since(cookie.seq);
    }

    pub(crate) fn call_rcu<F: FnOnce() + Send + 'static>(
        &self,
        handle: &Handle,
        f: F,
        extra_bytes: usize,
    ) {
        self.start();
        self.cb
            .call_rcu(&self.gp, &|| spawn_reclaim(handle.clone()), f, extra_bytes);
    }

    /// A task waits for the callback just queued: see
    /// [`Callbacks::hurry`](crate::callbacks::Callbacks::hurry).
    #[cfg_attr(rcu_loom, allow(dead_code))] // the futures are not built under loom
    pub(crate) fn hurry_callbacks(&self) {
        self.cb.hurry();
    }

    #[track_caller]
    pub(crate) fn drain(&self, handle: &Handle) {
        self.start();
        self.cb.drain(&self.gp, &|| spawn_reclaim(handle.clone()));
    }

    /// Takes an owned guard's record and enters its critical section.
    #[track_caller]
    pub(crate) fn read_lock_owned(&self, keep_alive: KeepAlive) -> OwnedReadGuard {
        self.start();
        let rec = self
            .gp
            .readers
            .lock_owned(std::panic::Location::caller(), false);
        OwnedReadGuard::new(rec, keep_alive, crate::registry::owned_guard_taker())
    }

    /// Takes a local guard's record and enters its critical section.
    #[track_caller]
    pub(crate) fn read_lock_local(&self, keep_alive: KeepAlive) -> LocalReadGuard {
        self.start();
        let rec = self
            .gp
            .readers
            .lock_owned(std::panic::Location::caller(), true);
        LocalReadGuard::new(OwnedReadGuard::new(rec, keep_alive, None))
    }

    pub(crate) fn stats(&self) -> Stats {
        let s = &self.gp.stats;
        let c = &self.cb.stats;
        let p = &self.gp.pressure;
        // Acquire: as in `start`.
        let started = self.started.load(Ordering::Acquire);
        // The counts of grace periods by cause and by duration before
        // `grace_periods`, which the leader counts first: a snapshot never
        // counts more of them than grace periods.
        let forced_by = ForcedCauses {
            callbacks: s.forced_callbacks.get(),
            polls: s.forced_polls.get(),
            drain: s.forced_drain.get(),
            expedite: s.forced_expedite.get(),
            memory: s.forced_memory.get(),
        };
        let histogram = GpHistogram {
            buckets: std::array::from_fn(|i| s.histogram[i].get()),
        };
        // Acquire: pairs with the leader's second Release fence in `count`:
        // `forced` includes every grace period counted by cause above.
        std::sync::atomic::fence(Ordering::Acquire);
        let forced = s.forced.get();
        // Run before queued: a callback is counted as queued before it can
        // be taken to run, so a snapshot never shows more run than queued.
        let run = c.run.get();
        // Acquire: pairs with the Release fence before a runner counts what
        // it ran (`run_ready`): the counts of queued below include every
        // callback counted in `run`; and with the one in the leader's
        // `count`: `grace_periods` below includes every grace period counted
        // above.
        std::sync::atomic::fence(Ordering::Acquire);
        // With every batch locked, so that no callback moving from a batch
        // to the queue is counted twice or missed. SeqCst (the two loads
        // of pending counts): a snapshot for users.
        let (batched, batched_bytes, queued, pending, pending_bytes) =
            p.batches.with_all_locked(|n, bytes| {
                // Pending before queued: see `enqueue`.
                let pending = p.pending.load(Ordering::SeqCst);
                (n, bytes, c.queued.get(), pending, p.pending_bytes.load())
            });
        Stats {
            grace_periods: s.grace_periods.get(),
            forced_grace_periods: forced,
            expedited_grace_periods: forced_by.expedite,
            forced_by,
            polls: s.polls.get(),
            notifier_calls: s.notifier_calls.get(),
            reader_wakeups: self.gp.readers.reader_wakeups.get(),
            reclaim_wakeups: self.cb.call_ready.wakeups(),
            heavy_barriers: s.heavy_barriers.get(),
            callbacks_queued: queued + batched as u64,
            callbacks_run: run,
            callbacks_pending: pending as u64 + batched as u64,
            callback_panics: c.panics.get(),
            readers: lock(&self.gp.readers.registry).registered(),
            longest_grace_period: Duration::from_nanos(s.longest_gp_ns.get()),
            histogram,
            stalls: s.stalls.get(),
            callbacks_pending_bytes: (pending_bytes as u64).saturating_add(batched_bytes as u64),
            max_pending_bytes: c.max_pending_bytes.get(),
            membarrier: started && self.gp.readers.mode() == Mode::Membarrier,
            membarrier_revoked: started
                && self.gp.readers.mode() == Mode::Membarrier
                && barrier::revoked().is_some(),
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn cookie_mismatch(cookie: u64, domain: u64) -> ! {
    let name = |id| {
        if id == 0 {
            "the process-wide domain".to_string()
        } else {
            format!("RcuDomain #{id}")
        }
    };
    panic!(
        "rcu: a GpCookie of {} used with {}",
        name(cookie),
        name(domain)
    );
}

#[cfg(all(test, not(rcu_loom)))]
thread_local! {
    /// Unit tests only: make the reclaim-thread spawns this thread asks for
    /// fail, as `clone` does with EAGAIN under a pids cgroup or
    /// `RLIMIT_NPROC`. Per thread, so that other tests running meanwhile
    /// still start theirs.
    pub(crate) static FAIL_SPAWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts a domain's reclaim thread, which holds the domain alive.
fn spawn_reclaim(handle: Handle) -> std::io::Result<thread::JoinHandle<()>> {
    #[cfg(all(test, not(rcu_loom)))]
    if FAIL_SPAWN.get() {
        return Err(std::io::Error::from(std::io::ErrorKind::WouldBlock));
    }
    let run = move || {
        let h = handle;
        callbacks::reclaim_loop(&h.cb, &h.gp);
    };
    #[cfg(not(rcu_loom))]
    {
        thread::Builder::new().name("rcu-reclaim".into()).spawn(run)
    }
    #[cfg(rcu_loom)]
    {
        Ok(thread::spawn(run))
    }
}

/// How the reclaim thread, owned guards and [`RcuDomain`] hold a domain.
pub(crate) enum Handle {
    #[cfg_attr(rcu_loom, allow(dead_code))]
    Static(&'static Inner),
    /// A `std` `Arc` even under loom: owned guards keep it alive type-erased
    /// (`Arc<dyn Send + Sync>`), which loom's `Arc` cannot express.
    Shared(std::sync::Arc<Inner>),
}

impl Handle {
    fn keep_alive(&self) -> KeepAlive {
        match self {
            Handle::Static(_) => None,
            Handle::Shared(a) => Some(std::sync::Arc::clone(a) as std::sync::Arc<dyn Send + Sync>),
        }
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        match self {
            Handle::Static(i) => Handle::Static(i),
            Handle::Shared(i) => Handle::Shared(std::sync::Arc::clone(i)),
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

/// The next independent domain's id (0 is the process-wide domain).
fn next_domain_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
/// an [`OwnedReadGuard`] with [`read_lock_owned`](Self::read_lock_owned).
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
    /// The domain's id, kept inline: checking a guard against it is one
    /// compare with the handle's first word.
    id: u64,
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
    /// If the configuration is refused: see
    /// [`try_with_config`](Self::try_with_config).
    #[track_caller]
    pub fn with_config(config: Config) -> Self {
        match Self::try_with_config(config) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// A new independent domain with `config`, or why it was refused.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value out of its range (the message
    /// names the range; see [`Config`]);
    /// [`ConfigError::MembarrierUnavailable`] when
    /// [`Config::require_membarrier`] is set and the process cannot use
    /// membarrier.
    ///
    /// ```
    /// use rcu_core::{Config, ConfigError, RcuDomain};
    /// use std::time::Duration;
    /// let e = RcuDomain::try_with_config(Config::default().poll_interval(Duration::MAX));
    /// assert!(matches!(e, Err(ConfigError::Invalid(_))));
    /// assert!(RcuDomain::try_with_config(Config::default()).is_ok());
    /// ```
    pub fn try_with_config(config: Config) -> Result<Self, ConfigError> {
        let id = next_domain_id();
        let inner = Inner::new(id);
        inner.configure(&config)?;
        let inner = std::sync::Arc::new(inner);
        // Reachable from the fork handlers from now on.
        #[cfg(all(unix, not(rcu_loom), not(miri)))]
        crate::fork::register(&inner);
        Ok(RcuDomain {
            id,
            inner: Handle::Shared(inner),
        })
    }

    /// A handle to the process-wide domain, the one the free functions
    /// ([`read_lock`](crate::read_lock), [`call_rcu`](crate::call_rcu), …)
    /// use. Dropping it does nothing.
    ///
    /// ```
    /// use rcu_core::{Guard, RcuDomain};
    /// let d = RcuDomain::global();
    /// assert!(d.is_global());
    /// assert_eq!(rcu_core::read_lock().domain_id(), d.id());
    /// ```
    #[cfg(not(rcu_loom))]
    pub const fn global() -> Self {
        RcuDomain {
            id: 0,
            inner: Handle::Static(&GLOBAL),
        }
    }

    /// Whether this is the process-wide domain.
    #[inline]
    pub fn is_global(&self) -> bool {
        self.id == 0
    }

    /// The domain's identity.
    #[inline]
    pub fn id(&self) -> DomainId {
        DomainId(self.id)
    }

    /// Panics unless `guard` protects this domain. Every read of data bound
    /// to a domain checks its guard this way; for the process-wide
    /// [`ReadGuard`](crate::ReadGuard) it is a compare of this handle's id
    /// with a constant. (`RcuPtr` and `RcuCell` of the process-wide domain
    /// check a guard of that domain against bit 0 of the pointer word they
    /// load instead, a bit that only other domains' words carry, and call
    /// this otherwise.)
    ///
    /// # Panics
    /// If `guard` is a guard of another domain.
    #[inline(always)]
    #[track_caller]
    pub fn assert_guard(&self, guard: &impl Guard) {
        if guard.domain_id().0 != self.id {
            guard_mismatch(self.id);
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
    /// see [`OwnedReadGuard`].
    #[track_caller]
    pub fn read_lock_owned(&self) -> OwnedReadGuard {
        self.inner.read_lock_owned(self.inner.keep_alive())
    }

    /// Enters a read-side critical section tied to the calling thread,
    /// without a [`Reader`] registration: for code that has the domain but
    /// no `Reader` of it (a library's internal reads, as `rcu-hashmap`'s on
    /// a domain of its caller's). It costs what an owned guard costs (a
    /// pooled record), and, like a [`DomainGuard`], it is neither `Send` nor
    /// `Sync`, so a wait for this domain's grace period on this thread while
    /// it is held ([`synchronize`](Self::synchronize), [`drain`](Self::drain))
    /// panics instead of waiting forever.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let cell = rcu_core::RcuCell::new_in(1, &domain);
    /// let guard = domain.read_lock_local();
    /// assert_eq!(*cell.read(&guard), 1);
    /// let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| domain.synchronize()));
    /// assert!(waited.is_err(), "a wait inside the guard's critical section panics");
    /// ```
    #[track_caller]
    pub fn read_lock_local(&self) -> LocalReadGuard {
        self.inner.read_lock_local(self.inner.keep_alive())
    }

    /// Waits for a grace period: every read-side critical section of this
    /// domain that was running when it was called has ended.
    ///
    /// # Panics
    /// Inside a read-side critical section of this domain on this thread,
    /// inside one of its callbacks, notifiers or stall hooks, or inside
    /// [`no_grace_period_waits`](Self::no_grace_period_waits) of this domain
    /// (as in an [`RcuCell::update`](crate::RcuCell::update) closure).
    ///
    /// # Deadlock
    /// Never call it while this task holds an
    /// [`OwnedReadGuard`](crate::OwnedReadGuard) of this domain: that guard
    /// is not tied to the thread, so the call cannot tell, and waits for it
    /// forever. The same holds for every wait for a grace period (`drain`,
    /// the `into_inner` of a retiring handle).
    #[track_caller]
    pub fn synchronize(&self) {
        self.inner.synchronize(false);
    }

    /// Runs `f` with waits for this domain's grace periods refused on this
    /// thread: [`synchronize`](Self::synchronize),
    /// [`synchronize_expedited`](Self::synchronize_expedited),
    /// [`drain`](Self::drain) and [`Unlinked::into_inner`](crate::Unlinked::into_inner)
    /// of this domain panic inside it instead of waiting, and a `call_rcu`
    /// over the memory limit does not help run callbacks (which would run
    /// inside `f`'s context).
    ///
    /// For code that runs a user's closure under a lock that writers may wait
    /// for while they hold a guard (a structure's writer lock, as in
    /// [`RcuCell::update`](crate::RcuCell::update)): a grace-period wait
    /// from the closure would wait for such a writer's critical section,
    /// which waits for the lock, which waits for the closure. A read-side
    /// critical section around the closure would refuse those waits too,
    /// but it would also hold up every grace period of the domain while the
    /// closure runs. Scopes nest; each costs a few thread-local accesses.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     domain.no_grace_period_waits(|| domain.synchronize())
    /// }));
    /// assert!(refused.is_err());
    /// domain.synchronize(); // outside the scope: waits as usual
    /// ```
    pub fn no_grace_period_waits<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inner.no_grace_period_waits(f)
    }

    /// Like [`synchronize`](Self::synchronize), but forces the grace period
    /// at once: notifiers run and readers are asked to signal their exit.
    ///
    /// # Panics
    /// As [`synchronize`](Self::synchronize).
    #[track_caller]
    pub fn synchronize_expedited(&self) {
        self.inner.synchronize(true);
    }

    /// A cookie for polling: see [`crate::cookie`]. Starts nothing: on an
    /// idle domain, [`poll`](Self::poll) of it stays `false` until something
    /// else runs a grace period; use [`start_poll`](Self::start_poll) for a
    /// cookie that completes on its own.
    pub fn cookie(&self) -> GpCookie {
        self.inner.cookie()
    }

    /// A cookie for polling, and a grace period that completes it started in
    /// the background (Linux's `start_poll_synchronize_rcu`): see
    /// [`crate::start_poll`]. Never waits.
    ///
    /// # Panics
    /// If the reclaim thread, which runs the grace period, cannot be
    /// started (the spawn error is in the message).
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let c = domain.start_poll();
    /// while !domain.poll(c) {
    ///     std::thread::sleep(std::time::Duration::from_millis(1)); // other work
    /// }
    /// ```
    pub fn start_poll(&self) -> GpCookie {
        self.inner.start_poll(&self.inner)
    }

    /// Whether a full grace period has elapsed since `cookie` was taken.
    ///
    /// # Panics
    /// If `cookie` came from another domain.
    #[track_caller]
    pub fn poll(&self, cookie: GpCookie) -> bool {
        self.inner.poll(cookie)
    }

    /// Waits until a full grace period has elapsed since `cookie` was taken;
    /// returns at once if one has.
    ///
    /// # Panics
    /// If `cookie` came from another domain; otherwise as
    /// [`synchronize`](Self::synchronize) when it has to wait.
    #[track_caller]
    pub fn synchronize_since(&self, cookie: GpCookie) {
        self.inner.synchronize_since(cookie);
    }

    /// Runs `f` after a grace period: on the reclaim thread, on a thread
    /// in [`drain`](Self::drain) (which runs what was queued before it
    /// itself when the reclaim thread is not collecting it already), or on
    /// the caller, at a later `call_rcu`. Never waits for a grace period
    /// while the domain is under its [`Config::memory_limit`]; over it, a
    /// caller outside any critical section helps run ready callbacks (of
    /// any thread of the domain) on its own thread and may wait up to about
    /// 1 ms (see there). Each time the caller's batch fills (256 calls between
    /// two of the reclaim thread's harvests) it also runs up to two chunks of its *own* earlier callbacks
    /// whose grace period has ended, unless the domain offloads them
    /// ([`Config::offload_callbacks`]). Callable anywhere, including inside
    /// a critical section, a callback, a notifier or
    /// [`no_grace_period_waits`](Self::no_grace_period_waits), where it
    /// neither helps, runs callbacks nor waits. So do not call it (or drop
    /// a handle that retires, such as [`Unlinked`](crate::Unlinked)) while
    /// holding a lock that its callbacks take, or, with a memory limit,
    /// that any callback of the domain takes.
    ///
    /// # Panics
    /// If the reclaim thread cannot be started (the spawn error is in the
    /// message); `f` is then leaked, neither queued nor dropped: what it
    /// captures may still be in readers' hands (a value a `defer_drop`
    /// retires), so dropping it at once could free it under them. (If the
    /// domain's reclaim thread exited just as `f` was queued, after the last
    /// [`RcuDomain`] handle went away, and a new one cannot start, `f` stays
    /// queued and runs once a later call starts one.)
    pub fn call_rcu(&self, f: impl FnOnce() + Send + 'static) {
        self.inner.call_rcu(&self.inner, f, 0);
    }

    /// Drops `value` after a grace period, where `call_rcu` runs it (a
    /// [`call_rcu`](Self::call_rcu): over a memory limit, the caller may
    /// help run callbacks).
    pub fn defer_drop<T: Send + 'static>(&self, value: T) {
        self.call_rcu(move || drop(value));
    }

    /// Like [`defer_drop`](Self::defer_drop), counting `heap_bytes` more
    /// toward [`Config::memory_limit`] (what `value` owns on the heap).
    pub fn defer_drop_sized<T: Send + 'static>(&self, value: T, heap_bytes: usize) {
        self.inner
            .call_rcu(&self.inner, move || drop(value), heap_bytes);
    }

    /// Retires a node: drops the `Box` that `ptr` came from after a grace
    /// period, where `call_rcu` runs it (crossbeam's `defer_destroy`, Linux's
    /// `kfree_rcu`; a [`call_rcu`](Self::call_rcu), so over a memory limit
    /// the caller may help run callbacks). Nothing that asserts unique access to the node (no
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
        let owned = RetiredBox(ptr);
        self.inner.call_rcu(
            &self.inner,
            move || {
                let owned = owned;
                // SAFETY: by `defer_free`'s contract `owned.0` came from
                // `Box::into_raw`, is retired once, and was unreachable for new
                // readers before the grace period that has now passed; so no
                // reader can still hold it and we are its only owner.
                drop(unsafe { Box::from_raw(owned.0) });
            },
            size_of::<T>(),
        );
    }

    /// A future that resolves after a grace period of this domain: see
    /// [`crate::synchronize_async`].
    #[cfg(not(rcu_loom))]
    pub fn synchronize_async(&self) -> crate::SynchronizeFuture {
        crate::SynchronizeFuture::new(self.inner.clone())
    }

    /// Replaces this domain's event hook: see [`crate::set_event_hook`].
    pub fn set_event_hook(&self, hook: impl Fn(&RcuEvent) + Send + Sync + 'static) {
        self.inner
            .gp
            .set_event_hook(Some(std::sync::Arc::new(hook)));
    }

    /// Replaces this domain's event hook with one that passes stall
    /// warnings to `hook` and logs every other event on stderr: see
    /// [`crate::set_stall_hook`].
    pub fn set_stall_hook(&self, hook: impl Fn(&StallWarning) + Send + Sync + 'static) {
        self.set_event_hook(crate::stats::stall_only(hook));
    }

    /// Waits until every callback queued before this call has run; not
    /// those they queue in turn (see [`crate::drain`], also for which
    /// callbacks it runs on the calling thread).
    ///
    /// Inside a critical section of another domain it waits as anywhere,
    /// so none of this domain's callbacks may wait for a grace period of
    /// that domain (it would wait for this thread: see the crate docs on
    /// waiting across domains).
    ///
    /// # Panics
    /// As [`synchronize`](Self::synchronize), and inside any domain's
    /// callback, notifier or stall hook (waiting for a reclaim thread from
    /// there could wait for itself through a chain of domains).
    #[track_caller]
    pub fn drain(&self) {
        self.inner.drain(&self.inner);
    }

    /// A snapshot of this domain's statistics.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// A retired `Box<T>` pointer on its way to the reclaim thread.
struct RetiredBox<T>(*mut T);

// SAFETY: `RetiredBox<T>` owns a `T` (it is a `Box<T>` in waiting, by
// `defer_free`'s contract), so it may move to another thread when `T` may.
unsafe impl<T: Send> Send for RetiredBox<T> {}

#[cold]
#[inline(never)]
#[track_caller]
fn guard_mismatch(domain: u64) -> ! {
    if domain == 0 {
        panic!(
            "rcu: a guard of another domain (an RcuDomain's) was used with data of the \
             process-wide domain: use rcu_core::read_lock()"
        );
    }
    panic!(
        "rcu: a guard of another domain was used with data bound to RcuDomain #{domain}: take \
         the guard from that domain"
    );
}

impl Default for RcuDomain {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for RcuDomain {
    fn clone(&self) -> Self {
        // The process-wide domain is never shut down: no count (and no
        // contended RMW) for its handles.
        if !self.is_global() {
            // Relaxed: as `Arc`'s clone; the handle we clone keeps it above 0.
            self.inner
                .owners
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        RcuDomain {
            id: self.id,
            inner: self.inner.clone(),
        }
    }
}

impl Drop for RcuDomain {
    /// The last handle of an independent domain runs every queued callback
    /// (each after its grace period), then stops the reclaim thread; the
    /// drop waits for that, unless the dropping thread holds a
    /// [`LocalReadGuard`] of the domain (which keeps the domain's state
    /// alive) or runs in user code the engine runs: the thread then
    /// finishes on its own, after the guard is dropped. Under an
    /// [`OwnedReadGuard`] that this task holds it waits forever, as
    /// [`synchronize`](Self::synchronize) would; inside a critical section
    /// of another domain it waits as [`drain`](Self::drain) does there.
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
            self.inner.cb.shutdown(&self.inner.gp);
        }
    }
}

impl std::fmt::Debug for RcuDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcuDomain")
            .field("id", &self.id)
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
        DomainGuard::new(&self.rec)
    }

    /// Registers `f` to be called when a grace period of this domain is
    /// forced while this thread holds it up through this `Reader`'s guards
    /// (not its [`LocalReadGuard`](crate::LocalReadGuard)s or owned guards,
    /// which hold records of their own). `f` runs on the grace-period
    /// thread and must return quickly (e.g. set a flag the reader polls);
    /// as [`on_force_quiescent`](crate::on_force_quiescent) otherwise.
    pub fn on_force_quiescent(&self, f: impl Fn() + Send + Sync + 'static) -> NotifierHandle {
        NotifierHandle::register(Arc::clone(&self.rec), f)
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        self.domain.inner.gp.readers.unregister(&self.rec);
    }
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}
