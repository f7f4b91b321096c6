//! Userspace RCU for Rust, after QEMU's "unify force quiescent state" design.
//!
//! # Summary
//!
//! Read-copy-update lets readers walk shared data with no locks, no atomic
//! read-modify-write and (on Linux) no memory fence, while writers publish new
//! versions and reclaim old ones only after a *grace period*: once every
//! reader that might still see an old version has left its read-side
//! critical section.
//!
//! * Readers: [`read_lock`] returns a [`ReadGuard`]; the critical section
//!   lasts until it is dropped. Entering and leaving cost two plain stores and
//!   a predicted branch each (see [How it works](#how-it-works)).
//! * Writers: [`synchronize`] waits for a grace period; [`call_rcu`] and
//!   [`defer_drop`] queue work for a background reclaim thread to run after
//!   one; [`drain`] waits for everything queued so far.
//! * Pointers: [`RcuPtr`] (atomic owning pointer) and [`RcuCell`] (always
//!   holds a value; copy-update) are the safe building blocks.
//! * Long readers: a thread that stays inside a critical section for long (an
//!   event loop) registers a notifier with [`on_force_quiescent`]; when a
//!   grace period is *forced*, the notifier asks it to step out, so it can
//!   never stall reclamation.
//!
//! ```
//! use rcu_core::{RcuCell, read_lock};
//!
//! let config = RcuCell::new(vec!["a".to_string()]);
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let guard = read_lock();
//!         assert!(!config.read(&guard).is_empty()); // no lock, no RMW
//!     });
//!     // The old vector is dropped by the reclaim thread after a grace period.
//!     config.update(|old| { let mut v = old.clone(); v.push("b".into()); v });
//! });
//! rcu_core::drain();
//! ```
//!
//! # Trade-offs
//!
//! * Readers are as cheap as reading gets; writers pay instead. A grace
//!   period costs one `membarrier(2)` system call (about 0.2 µs on an idle
//!   process, more when the process's other threads are running), and it
//!   waits for the slowest reader in a critical section.
//! * Memory is reclaimed in batches, after grace periods, not at once.
//!   Callbacks pile up while a reader holds a grace period up; the forced
//!   state (below) bounds how long that lasts for readers that cooperate
//!   through notifiers.
//! * A guard must not be held across blocking waits for other RCU writers on
//!   the same thread: [`synchronize`] inside a critical section would wait for
//!   itself, and panics instead.
//!
//! # How it works
//!
//! A global 64-bit counter `gp_ctr` (odd, +2 per grace period) and one
//! cache-line-sized record per reader thread, in a registry:
//!
//! * **Lock**: if the reader's own `ctr` is 0 (outermost level), copy
//!   `gp_ctr` into it, then a *light* barrier; otherwise count one nesting
//!   level. **Unlock**: at the outermost level store 0, light barrier, and if
//!   the record's `waiting` flag is set, clear it and signal the grace period.
//!   A reader holds up a grace period when `ctr != 0 && ctr != gp_ctr`.
//! * **Barriers**: on Linux the process registers for
//!   `MEMBARRIER_CMD_PRIVATE_EXPEDITED` once; the light barrier is then only a
//!   compiler fence, and the grace period's *heavy* barrier is the membarrier
//!   system call, which executes a full fence on every running thread of the
//!   process. Elsewhere (or under Miri, loom, seccomp, or with
//!   `RCU_NO_MEMBARRIER=1`) both are `fence(SeqCst)`. [`Stats::membarrier`]
//!   says which.
//! * **Grace period**: heavy barrier, `gp_ctr += 2`, then wait for the
//!   readers that hold it up, in two states (the seed's unification):
//!   - *Normal*: rescan a few times (spinning, then yielding), then sleep
//!     `poll_interval` (10 ms) between scans. Readers are never asked to
//!     signal, so their unlock never leaves its fast path.
//!   - *Forced*, entered when ≥ `callback_threshold` (30) callbacks are
//!     pending (or they hold `memory_limit` bytes), after `max_polls` (5)
//!     sleeps, while a [`drain`] runs, or for
//!     [`synchronize_expedited`]: call the force-quiescent notifiers of the
//!     readers still holding it up, then loop: reset the event, set `waiting`
//!     on each of them, heavy barrier, rescan, block on the event. `waiting`
//!     is re-armed on *every* iteration: the seed patch set it once, and a
//!     reader that clears it and re-enters with a stale counter would leave
//!     the writer blocked forever. The sleep of the normal state is
//!     interruptible, so a forcing condition acts at once.
//! * **Sharing**: concurrent [`synchronize`] callers share grace periods
//!   (a sequence snapshot, as in Linux): a caller waits for the end of the
//!   first grace period that starts after it arrived, whoever runs it.
//! * **Callbacks**: [`call_rcu`] is a wait-free enqueue; the reclaim thread
//!   starts a grace period as soon as a callback arrives (the seed removed
//!   QEMU's 10–50 ms batching delay), then runs the callbacks counted before
//!   it, in order, catching panics.
//!
//! Reclamation is ordered after readers' accesses by `Release` stores of
//! `ctr` in lock and unlock paired with `Acquire` loads in the scans, so no
//! extra heavy barrier is needed after the last scan.
//!
//! # How to use
//!
//! * Read-mostly values: [`RcuCell`]. Nullable or hand-managed: [`RcuPtr`].
//! * Your own structures: publish with a `Release` store, read with an
//!   `Acquire` load under a [`ReadGuard`], unlink, then retire the old node
//!   with [`defer_drop`] (or [`synchronize`] and free it yourself).
//! * Long-running readers: keep the [`NotifierHandle`] from
//!   [`on_force_quiescent`] and leave the critical section (or call
//!   [`ReadGuard::quiescent`]) when it fires.
//! * Non-blocking updaters: take a [`cookie`] after unlinking, [`poll`] it
//!   later, free once it says a grace period has passed; or await
//!   [`synchronize_async`] from async code.
//! * Operations: [`stats`] (grace periods by cause, a duration histogram,
//!   callbacks and bytes pending), [`set_stall_hook`] for readers that hold a
//!   grace period up longer than [`Config::stall_timeout`], and
//!   [`Config::memory_limit`] to bound what pending callbacks hold.
//! * Isolation and tests: [`RcuDomain`] is an independent domain with its own
//!   grace periods and reclaim thread; its threads register a [`Reader`].
//! * Tunables: [`configure`] before the process-wide domain starts.

#[macro_use]
mod sync;
mod barrier;
mod config;
mod domain;
mod event;
#[cfg(not(rcu_loom))]
mod future;
mod guard;
#[cfg(all(test, rcu_loom))]
mod loom_tests;
#[cfg(not(rcu_loom))]
mod ptr;
mod queue;
mod reader;

pub use config::{
    Config, ConfigError, ForcedCauses, GpHistogram, HISTOGRAM_BUCKETS, StallWarning, Stats,
};
pub use domain::{DomainGuard, GpCookie, RcuDomain, Reader};
#[cfg(not(rcu_loom))]
pub use future::SynchronizeFuture;
#[cfg(not(rcu_loom))]
pub use global::*;
pub use guard::{Guard, OwnedReadGuard};
#[cfg(not(rcu_loom))]
pub use ptr::{CompareExchangeError, RcuCell, RcuPtr, Unlinked};
pub use reader::NotifierHandle;

/// The process-wide domain and its free functions. (Not built under loom,
/// whose models build their own domains.)
#[cfg(not(rcu_loom))]
mod global {
    use crate::config::{Config, ConfigError, StallWarning, Stats};
    use crate::domain::{GpCookie, Handle, Inner};
    use crate::reader::{NotifierHandle, RawGuard, Record};
    use crate::sync::Arc;
    use std::cell::{Cell, RefCell};
    use std::ptr;

    pub(crate) static GLOBAL: Inner = Inner::new(0);

    thread_local! {
        /// The calling thread's record in the process-wide domain, or null.
        /// `const` and without a destructor: one TLS access on the hot path,
        /// valid even while the thread's destructors run.
        static LOCAL: Cell<*const Record> = const { Cell::new(ptr::null()) };
        /// Owns the registration; its destructor unregisters the thread.
        static REGISTRATION: Registration = const { Registration(RefCell::new(None)) };
    }

    struct Registration(RefCell<Option<Arc<Record>>>);

    impl Drop for Registration {
        fn drop(&mut self) {
            if let Some(rec) = self.0.get_mut().take() {
                LOCAL.with(|l| l.set(ptr::null()));
                GLOBAL.unregister(&rec);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn register_current_thread() -> *const Record {
        let rec = GLOBAL.register();
        let p = Arc::as_ptr(&rec);
        // If the registration slot is already destroyed (a read_lock from
        // another thread-local's destructor), the record simply stays
        // registered: it is never reused, and grace periods skip it whenever
        // it is outside a critical section.
        let _ = REGISTRATION.try_with(|r| *r.0.borrow_mut() = Some(rec));
        LOCAL.with(|l| l.set(p));
        p
    }

    #[inline(always)]
    fn local_record() -> &'static Record {
        let mut p = LOCAL.with(Cell::get);
        if p.is_null() {
            p = register_current_thread();
        }
        // SAFETY: `p` points to a record of `GLOBAL`'s registry. Records are
        // never removed from a registry and `GLOBAL` is a `static`, so the
        // record lives for the rest of the program. Only this thread uses
        // its owner-only fields: it is our registration until the thread's
        // `Registration` destructor releases it, which also clears `LOCAL`.
        unsafe { &*p }
    }

    /// Enters a read-side critical section of the process-wide domain; it
    /// lasts until the guard is dropped.
    ///
    /// Nestable, and guards may be dropped in any order. The first call on a
    /// thread registers it (the thread is unregistered when it exits). Cost
    /// once registered: at the outermost level a load of the global counter,
    /// a store, and a compiler fence (membarrier mode); nested, an increment
    /// of a thread-private counter.
    ///
    /// ```
    /// let guard = rcu_core::read_lock();
    /// let inner = rcu_core::read_lock(); // nested
    /// drop(guard);                        // any order
    /// drop(inner);
    /// ```
    #[inline]
    pub fn read_lock() -> ReadGuard {
        ReadGuard {
            raw: RawGuard::new(local_record(), &GLOBAL.gp_ctr.0),
        }
    }

    /// A read-side critical section of the process-wide domain, from
    /// [`read_lock`]. Neither `Send` nor `Sync`.
    #[must_use = "the critical section ends when the guard is dropped"]
    pub struct ReadGuard {
        raw: RawGuard<'static>,
    }

    impl ReadGuard {
        /// Reports a quiescent state: leaves the critical section and enters
        /// a new one, so a grace period waiting for this thread can end.
        /// References read under the guard cannot survive the call (it takes
        /// `&mut self`). Returns `false`, doing nothing, when other (nested)
        /// guards are held on this thread.
        ///
        /// ```
        /// let mut guard = rcu_core::read_lock();
        /// for _ in 0..3 {
        ///     // ... a long-running loop's iteration under the guard ...
        ///     assert!(guard.quiescent());
        /// }
        /// ```
        pub fn quiescent(&mut self) -> bool {
            self.raw.rec.quiesce(&GLOBAL.gp_ctr.0)
        }
    }

    impl crate::guard::sealed::Sealed for ReadGuard {}

    impl crate::Guard for ReadGuard {
        #[inline(always)]
        fn protects(&self, domain: &crate::RcuDomain) -> bool {
            domain.is_global()
        }
    }

    /// Enters a read-side critical section of the process-wide domain that
    /// is not tied to the calling thread: see [`OwnedReadGuard`](crate::OwnedReadGuard).
    ///
    /// ```
    /// let guard = rcu_core::read_lock_owned();
    /// std::thread::spawn(move || drop(guard)).join().unwrap();
    /// ```
    #[track_caller]
    pub fn read_lock_owned() -> crate::OwnedReadGuard {
        crate::OwnedReadGuard::new(handle())
    }

    /// Retires a node of the process-wide domain: see
    /// [`RcuDomain::defer_free`](crate::RcuDomain::defer_free).
    ///
    /// # Safety
    /// As [`RcuDomain::defer_free`](crate::RcuDomain::defer_free): `ptr`
    /// came from `Box::into_raw`, is unreachable for new readers, is retired
    /// once, and its readers use guards of the process-wide domain.
    pub unsafe fn defer_free<T: Send + 'static>(ptr: *mut T) {
        // SAFETY: the caller's promises are `defer_free`'s.
        unsafe { crate::RcuDomain::global().defer_free(ptr) }
    }

    impl std::fmt::Debug for ReadGuard {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ReadGuard").finish_non_exhaustive()
        }
    }

    fn handle() -> Handle {
        Handle::Static(&GLOBAL)
    }

    /// Waits for a grace period: every read-side critical section that was
    /// running when it was called has ended. Concurrent callers share grace
    /// periods. Against idle readers it returns in microseconds; it polls
    /// readers that hold it up every `poll_interval` and forces the grace
    /// period after `max_polls` polls.
    ///
    /// # Panics
    /// Inside a read-side critical section (it would wait for itself), or in
    /// a reclaim callback or force-quiescent notifier.
    ///
    /// ```
    /// rcu_core::synchronize();
    /// ```
    pub fn synchronize() {
        GLOBAL.synchronize(false);
    }

    /// Like [`synchronize`], but forces the grace period at once: readers
    /// holding it up get their notifiers called and are asked to signal
    /// their exit.
    ///
    /// # Panics
    /// As [`synchronize`].
    pub fn synchronize_expedited() {
        GLOBAL.synchronize(true);
    }

    /// A future that resolves after a full grace period, driven by the
    /// reclaim thread: async code waits for a grace period without blocking
    /// an executor thread. Needs no async runtime.
    ///
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::sync::Arc;
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl Wake for Unpark { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::park(); }
    /// # }
    /// let old = Box::new(42);
    /// block_on(async {
    ///     // ... unpublish `old` ...
    ///     rcu_core::synchronize_async().await;
    ///     drop(old); // no reader can see it any more
    /// });
    /// ```
    pub fn synchronize_async() -> crate::SynchronizeFuture {
        crate::SynchronizeFuture::new(handle())
    }

    /// Runs `f` on the reclaim thread after a grace period. Wait-free for
    /// the caller; callable anywhere, including inside a critical section.
    /// A panicking callback is reported on stderr and counted in
    /// [`Stats::callback_panics`]; later callbacks still run.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// static RAN: AtomicBool = AtomicBool::new(false);
    /// rcu_core::call_rcu(|| RAN.store(true, Ordering::SeqCst));
    /// rcu_core::drain();
    /// assert!(RAN.load(Ordering::SeqCst));
    /// ```
    pub fn call_rcu(f: impl FnOnce() + Send + 'static) {
        GLOBAL.call_rcu(handle, f, 0);
    }

    /// Drops `value` on the reclaim thread after a grace period (QEMU's
    /// `g_free_rcu`). It counts `size_of::<T>()` bytes toward
    /// [`Config::memory_limit`](crate::Config::memory_limit).
    pub fn defer_drop<T: Send + 'static>(value: T) {
        call_rcu(move || drop(value));
    }

    /// Like [`defer_drop`], counting `heap_bytes` more toward
    /// [`Config::memory_limit`](crate::Config::memory_limit): what `value`
    /// owns on the heap (a `Vec`'s capacity, say), which its size does not
    /// show.
    ///
    /// ```
    /// let buffer = vec![0u8; 1 << 20];
    /// let bytes = buffer.capacity();
    /// rcu_core::defer_drop_sized(buffer, bytes);
    /// ```
    pub fn defer_drop_sized<T: Send + 'static>(value: T, heap_bytes: usize) {
        GLOBAL.call_rcu(handle, move || drop(value), heap_bytes);
    }

    /// Replaces the process-wide domain's stall hook, called once per stall
    /// with each reader that has held up a grace period for longer than
    /// [`Config::stall_timeout`](crate::Config::stall_timeout) (default
    /// 10 s). The default hook writes one line to stderr. The hook runs on
    /// the grace-period thread and must return quickly.
    ///
    /// ```
    /// rcu_core::set_stall_hook(|w| eprintln!("stall: {:?} for {:?}", w.thread_name, w.stalled_for));
    /// ```
    pub fn set_stall_hook(hook: impl Fn(&StallWarning) + Send + Sync + 'static) {
        GLOBAL.set_stall_hook(Some(Arc::new(hook)));
    }

    /// Waits until every callback queued (by any thread) before this call
    /// has run. Grace periods are forced while it waits.
    ///
    /// # Panics
    /// As [`synchronize`].
    pub fn drain() {
        GLOBAL.drain(handle);
    }

    /// Registers `f` to be called when a grace period is forced while the
    /// calling thread holds it up; dropping the handle removes it. `f` runs
    /// on the grace-period thread and must return quickly (e.g. set a flag
    /// that the reader's loop polls, then leave the critical section).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    ///
    /// let stop = Arc::new(AtomicBool::new(false));
    /// let reader = {
    ///     let stop = Arc::clone(&stop);
    ///     std::thread::spawn(move || {
    ///         let flag = Arc::new(AtomicBool::new(false));
    ///         let f = Arc::clone(&flag);
    ///         let _n = rcu_core::on_force_quiescent(move || f.store(true, Ordering::SeqCst));
    ///         let mut guard = rcu_core::read_lock();
    ///         while !stop.load(Ordering::SeqCst) {
    ///             if flag.swap(false, Ordering::SeqCst) {
    ///                 guard.quiescent(); // let the grace period end
    ///             }
    ///             std::hint::spin_loop();
    ///         }
    ///     })
    /// };
    /// rcu_core::synchronize_expedited(); // forced: the notifier fires
    /// stop.store(true, Ordering::SeqCst);
    /// reader.join().unwrap();
    /// ```
    pub fn on_force_quiescent(f: impl Fn() + Send + Sync + 'static) -> NotifierHandle {
        let _ = local_record();
        let rec = REGISTRATION
            .with(|r| r.0.borrow().clone())
            .expect("on_force_quiescent: the thread is being torn down");
        NotifierHandle::register(rec, Arc::new(f))
    }

    /// Takes a cookie for polled grace periods: cheap, never blocks.
    ///
    /// [`poll`] says whether a full grace period has elapsed since; an
    /// updater can unlink something, take a cookie, do other work, and free
    /// it once `poll` is true, without ever blocking (Linux's
    /// `get_state_synchronize_rcu`).
    ///
    /// ```
    /// let c = rcu_core::cookie();
    /// assert!(!rcu_core::poll(c)); // no grace period has run since
    /// rcu_core::synchronize();
    /// assert!(rcu_core::poll(c));
    /// rcu_core::synchronize_since(c); // returns at once
    /// ```
    pub fn cookie() -> GpCookie {
        GLOBAL.start();
        GpCookie {
            seq: GLOBAL.cookie(),
            domain: GLOBAL.id,
        }
    }

    /// Whether a full grace period has elapsed since `cookie` was taken.
    /// Cheap; never blocks, never starts a grace period.
    ///
    /// # Panics
    /// If `cookie` came from an [`RcuDomain`](crate::RcuDomain).
    pub fn poll(cookie: GpCookie) -> bool {
        check_global(cookie);
        GLOBAL.poll(cookie.seq)
    }

    /// Waits until a full grace period has elapsed since `cookie` was taken;
    /// returns at once when one has.
    ///
    /// # Panics
    /// If `cookie` came from an [`RcuDomain`](crate::RcuDomain); otherwise
    /// as [`synchronize`] when it has to wait.
    pub fn synchronize_since(cookie: GpCookie) {
        check_global(cookie);
        GLOBAL.synchronize_since(cookie.seq);
    }

    fn check_global(cookie: GpCookie) {
        assert_eq!(
            cookie.domain, GLOBAL.id,
            "rcu: a GpCookie of RcuDomain #{} used with the process-wide domain",
            cookie.domain
        );
    }

    /// A snapshot of the process-wide domain's statistics.
    pub fn stats() -> Stats {
        GLOBAL.stats()
    }

    /// Sets the process-wide domain's tunables.
    ///
    /// # Errors
    /// [`ConfigError::AlreadyStarted`] once the domain has started (after the
    /// first `read_lock`, `synchronize`, `call_rcu`, …), and
    /// [`ConfigError::Invalid`] for a zero threshold or interval.
    ///
    /// ```
    /// // Too late here: doc tests of this crate have used the domain already,
    /// // or will; a program calls `configure` first thing in `main`.
    /// let _ = rcu_core::configure(rcu_core::Config::default());
    /// ```
    pub fn configure(config: Config) -> Result<(), ConfigError> {
        GLOBAL.configure(&config)
    }

    /// Registers the calling thread now rather than at its first
    /// [`read_lock`]; idempotent.
    pub fn register_thread() {
        let _ = local_record();
    }

    /// Whether the calling thread is inside a read-side critical section of
    /// the process-wide domain.
    pub fn in_critical_section() -> bool {
        let p = LOCAL.with(Cell::get);
        // SAFETY: as in `local_record`.
        !p.is_null() && unsafe { &*p }.in_critical_section()
    }
}

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
