//! The process-wide domain's free functions: [`read_lock`],
//! [`synchronize`], [`call_rcu`], [`drain`], … (Not built under loom, whose
//! models build their own domains.)
//!
//! Each thread's record in the process-wide domain is found through a
//! `const` thread-local pointer, so the read side's hot path is one TLS load.
use crate::config::{Config, ConfigError};
use crate::domain::{GLOBAL, GpCookie, Handle, RcuDomain};
use crate::guard::{OwnedReadGuard, ReadGuard};
use crate::registry::{NotifierHandle, Record};
use crate::stats::{RcuEvent, StallWarning, Stats};
use crate::sync::{Arc, lock};
use std::cell::{Cell, RefCell};
use std::ptr;

/// The record of every thread that has none in the process-wide domain
/// yet (or any more): its counter sends `read_lock` to the out-of-line
/// path, which registers the thread. So the hot path needs no null check:
/// one test of the record's counter covers registration, nesting and fence
/// mode.
static SENTINEL: Record = Record::sentinel(&GLOBAL.gp.readers);

thread_local! {
    /// The calling thread's record in the process-wide domain, or
    /// [`SENTINEL`]. `const` and without a destructor: one TLS access on
    /// the hot path, valid even while the thread's destructors run.
    static LOCAL: Cell<*const Record> = const { Cell::new(&raw const SENTINEL) };
    /// Owns the registration; its destructor unregisters the thread.
    static REGISTRATION: Registration = const { Registration(RefCell::new(None)) };
}

struct Registration(RefCell<Option<Arc<Record>>>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(rec) = self.0.get_mut().take() {
            LOCAL.with(|l| l.set(&raw const SENTINEL));
            GLOBAL.gp.readers.unregister(&rec);
        }
    }
}

#[cold]
#[inline(never)]
fn register_current_thread() -> *const Record {
    let rec = GLOBAL.register();
    let p = Arc::as_ptr(&rec);
    let kept = REGISTRATION
        .try_with(|r| *r.0.borrow_mut() = Some(Arc::clone(&rec)))
        .is_ok();
    if !kept {
        // The registration slot is already destroyed: a `read_lock` from
        // another thread-local's destructor. The record serves until the
        // outermost unlock, which releases it and points `LOCAL` back at
        // the sentinel (the next `read_lock` takes one again, from the free
        // list), so nothing stays registered after the thread is gone.
        crate::registry::ORPHAN_RELEASED.get_or_init(|| forget_local);
        rec.orphan();
    }
    LOCAL.with(|l| l.set(p));
    p
}

/// Points `LOCAL` back at the sentinel if it points to `rec` (an orphaned
/// record about to be released at its outermost unlock, on this thread).
fn forget_local(rec: &Record) {
    LOCAL.with(|l| {
        if ptr::eq(l.get(), rec) {
            l.set(&raw const SENTINEL);
        }
    });
}

/// Whether the thread's registration slot is usable (not yet destroyed by
/// thread-local teardown).
fn registration_alive() -> bool {
    REGISTRATION.try_with(|_| ()).is_ok()
}

/// The calling thread's record, or the sentinel.
#[inline(always)]
fn local_record() -> &'static Record {
    let p = LOCAL.with(Cell::get);
    // SAFETY: `p` points to `SENTINEL` or to a record of `GLOBAL`'s
    // registry. Records are never removed from a registry and `GLOBAL` is a
    // `static`, so the record lives for the rest of the program. Only this
    // thread uses its owner-only fields: it is our registration until the
    // thread's `Registration` destructor releases it (which also points
    // `LOCAL` back at the sentinel), or, for a record orphaned in a
    // critical section or taken during thread-local teardown, until the
    // outermost unlock of the guards this thread holds on it releases it.
    // The sentinel's owner-only fields are never touched (see
    // `read_lock_slow`).
    unsafe { &*p }
}

/// The calling thread's registered record (registering it if needed).
fn registered_record() -> &'static Record {
    let rec = local_record();
    if !ptr::eq(rec, &SENTINEL) {
        return rec;
    }
    // SAFETY: as in `local_record`: a record of `GLOBAL`'s registry.
    unsafe { &*register_current_thread() }
}

/// `read_lock`'s out-of-line path: the thread has no record yet (`rec` is
/// the sentinel), or the domain is in fence mode (or the counter is past
/// `2^63`); `c` is the counter `try_lock` found. Returns the record it
/// locked.
#[cold]
#[inline(never)]
fn read_lock_slow(rec: &'static Record, c: u64) -> &'static Record {
    let gp_ctr = &GLOBAL.gp.readers.gp_ctr.0;
    if ptr::eq(rec, &SENTINEL) {
        let rec = registered_record();
        rec.lock(gp_ctr);
        rec
    } else {
        rec.lock_slow_inline(c, gp_ctr);
        rec
    }
}

/// Enters a read-side critical section of the process-wide domain; it
/// lasts until the guard is dropped.
///
/// Nestable, and guards may be dropped in any order. The first call on a
/// thread registers it (the thread is unregistered when it exits).
/// Thread-local teardown may run in any order: a guard kept in a
/// thread-local that is destroyed after the thread's registration keeps
/// the record until it is dropped, and a `read_lock` from a destructor
/// that runs after the registration is gone takes a record for that
/// critical section only; either way the record is released when the
/// last guard on it drops. Cost
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
    let mut rec = local_record();
    if let Err(c) = rec.try_lock(&GLOBAL.gp.readers.gp_ctr.0) {
        rec = read_lock_slow(rec, c);
    }
    ReadGuard::entered(rec)
}

/// Enters a read-side critical section of the process-wide domain that
/// is not tied to the calling thread: see [`OwnedReadGuard`](crate::OwnedReadGuard).
///
/// ```
/// let guard = rcu_core::read_lock_owned();
/// std::thread::spawn(move || drop(guard)).join().unwrap();
/// ```
#[track_caller]
pub fn read_lock_owned() -> OwnedReadGuard {
    GLOBAL.read_lock_owned(None)
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
    unsafe { RcuDomain::global().defer_free(ptr) }
}

/// The reclaim thread's hold on the process-wide domain.
static HANDLE: Handle = Handle::Static(&GLOBAL);

/// Waits for a grace period: every read-side critical section that was
/// running when it was called has ended. Concurrent callers share grace
/// periods. Against idle readers it returns in microseconds; it polls
/// readers that hold it up every `poll_interval` and forces the grace
/// period after `max_polls` polls.
///
/// # Panics
/// Inside a read-side critical section (it would wait for itself), in
/// a reclaim callback or force-quiescent notifier, or inside
/// [`RcuDomain::no_grace_period_waits`](crate::RcuDomain::no_grace_period_waits)
/// of the process-wide domain (as in an `RcuCell::update` closure).
///
/// # Deadlock
/// Never call it while this task holds an
/// [`OwnedReadGuard`](crate::OwnedReadGuard) of the process-wide domain:
/// that guard is not tied to the thread, so the call cannot tell, and waits
/// for it forever. The same holds for every wait for a grace period
/// ([`drain`], the `into_inner` of a retiring handle).
///
/// ```
/// rcu_core::synchronize();
/// ```
#[track_caller]
pub fn synchronize() {
    GLOBAL.synchronize(false);
}

/// Like [`synchronize`], but forces the grace period at once: readers
/// holding it up get their notifiers called and are asked to signal
/// their exit.
///
/// # Panics
/// As [`synchronize`].
#[track_caller]
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
    crate::SynchronizeFuture::new(HANDLE.clone())
}

/// Runs `f` after a grace period: on the reclaim thread, on a thread in
/// [`drain`] (which runs what was queued before it itself when the
/// reclaim thread is not collecting it already), or on the caller, at a
/// later `call_rcu` (see below). Never waits for a grace period while the
/// domain is under its [`memory_limit`](crate::Config::memory_limit);
/// over it, a caller outside any critical section helps run ready
/// callbacks and may wait up to 1 ms (see there). Each time the caller's
/// batch fills (256 calls between two harvests) it also runs up to two chunks of its
/// *own* earlier callbacks whose grace period has ended, unless the domain
/// offloads them ([`Config::offload_callbacks`](crate::Config::offload_callbacks)):
/// do not call it while holding a lock that its callbacks take. Callable
/// anywhere, including inside a critical section, a callback, a notifier
/// or a scope of
/// [`RcuDomain::no_grace_period_waits`](crate::RcuDomain::no_grace_period_waits),
/// where it neither helps, runs callbacks nor waits. A panicking
/// callback is reported through the event hook ([`set_event_hook`]) and
/// counted in [`Stats::callback_panics`]; later callbacks still run.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// static RAN: AtomicBool = AtomicBool::new(false);
/// rcu_core::call_rcu(|| RAN.store(true, Ordering::SeqCst));
/// rcu_core::drain();
/// assert!(RAN.load(Ordering::SeqCst));
/// ```
///
/// # Panics
/// If the reclaim thread cannot be started (the spawn error is in the
/// message); `f` is then leaked, neither queued nor dropped (see
/// [`RcuDomain::call_rcu`](crate::RcuDomain::call_rcu)).
pub fn call_rcu(f: impl FnOnce() + Send + 'static) {
    GLOBAL.call_rcu(&HANDLE, f, 0);
}

/// Drops `value` after a grace period, where [`call_rcu`] runs it (QEMU's
/// `g_free_rcu`; a [`call_rcu`]: over a memory limit, the caller may help
/// run callbacks). It counts `size_of::<T>()` bytes toward
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
    GLOBAL.call_rcu(&HANDLE, move || drop(value), heap_bytes);
}

/// Replaces the process-wide domain's event hook, called with each
/// [`RcuEvent`]: a reader that has held up a grace period for longer than
/// [`Config::stall_timeout`](crate::Config::stall_timeout) (default 10 s),
/// once per stall; membarrier unavailable at start or revoked after it
/// (once); a panicking callback or notifier. Without a hook each event is
/// one line on stderr ([`RcuEvent::log_to_stderr`]).
///
/// The hook runs on the thread that found the event (a grace-period
/// leader or the reclaim thread), with no engine lock held and inside a
/// catch, and must return quickly. Like a callback it may not wait for a
/// grace period of its domain (that panics).
///
/// ```
/// use rcu_core::RcuEvent;
/// rcu_core::set_event_hook(|e| match e {
///     RcuEvent::Stall(w) => eprintln!("stall: {:?} for {:?}", w.thread_name, w.stalled_for),
///     other => other.log_to_stderr(),
/// });
/// ```
pub fn set_event_hook(hook: impl Fn(&RcuEvent) + Send + Sync + 'static) {
    GLOBAL.gp.set_event_hook(Some(std::sync::Arc::new(hook)));
}

/// Replaces the process-wide domain's event hook with one that passes each
/// stall warning to `hook` and logs every other event on stderr: the hook
/// of earlier versions, kept as a shim over [`set_event_hook`].
///
/// ```
/// rcu_core::set_stall_hook(|w| eprintln!("stall: {:?} for {:?}", w.thread_name, w.stalled_for));
/// ```
pub fn set_stall_hook(hook: impl Fn(&StallWarning) + Send + Sync + 'static) {
    set_event_hook(crate::stats::stall_only(hook));
}

/// Waits until every callback queued (by any thread) before this call
/// has run. Grace periods are forced while it waits.
///
/// Like Linux's `rcu_barrier`, it does not wait for callbacks that those
/// callbacks queue in turn: they are queued after the call. Drain again
/// (or loop until [`Stats::callbacks_pending`] is 0) to chase chains.
///
/// When the reclaim thread is not collecting callbacks at the moment (it
/// is idle, gathering a batch, or running one), the drain collects them
/// itself: it takes what is queued off the queue, waits for its grace
/// period and runs the callbacks queued before the call (of every thread)
/// on the calling thread, then leaves the rest to the reclaim thread. So
/// a drain costs about a grace period plus the callbacks' own work, with
/// no hand-off to the reclaim thread and back, and callbacks may run on
/// the thread that drains: do not drain while holding a lock that a
/// callback takes (it would deadlock on the reclaim thread too), nor
/// while a callback's thread-local state (a `RefCell` borrowed across the
/// call, say) is in use. A drain inside a critical section of another
/// domain (through a [`Reader`](crate::Reader), the process-wide guard or
/// a [`LocalReadGuard`](crate::LocalReadGuard), or an owned guard this
/// thread took and still holds; one taken on another thread and moved
/// here is not seen), or inside another domain's
/// [`no_grace_period_waits`](crate::RcuDomain::no_grace_period_waits),
/// runs none: it waits for the reclaim thread, as a callback that waits
/// for that domain's grace periods could not finish on this thread.
///
/// Callbacks still pending in the process-wide domain when the process
/// exits do not run (no destructor runs for a `static`, and the reclaim
/// thread is not joined): `drain` before returning from `main` if their
/// effects matter.
///
/// # Panics
/// As [`synchronize`].
#[track_caller]
pub fn drain() {
    GLOBAL.drain(&HANDLE);
}

/// Registers `f` to be called when a grace period is forced while the
/// calling thread holds it up; dropping the handle removes it (and waits
/// for a call in progress: see [`NotifierHandle`]). `f` runs on the
/// grace-period thread and must return quickly (e.g. set a flag that the
/// reader's loop polls, then leave the critical section). It is called
/// once per forced grace period the thread holds up, also when it was
/// registered after that grace period was forced.
///
/// It stands for the thread's own critical sections ([`read_lock`]'s
/// guards), not for [`LocalReadGuard`](crate::LocalReadGuard)s or
/// [`OwnedReadGuard`]s, which hold records of their own: a thread that
/// must be asked to leave reads through `read_lock`.
///
/// In a thread-local destructor that runs after the thread's own
/// registration was torn down, it registers nothing and returns a handle
/// that does nothing (no panic, which would abort the process there).
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
    if !registration_alive() {
        return NotifierHandle::inert();
    }
    let _ = registered_record();
    match REGISTRATION.try_with(|r| r.0.borrow().clone()) {
        Ok(Some(rec)) => NotifierHandle::register(rec, f),
        _ => NotifierHandle::inert(),
    }
}

/// Takes a cookie for polled grace periods: cheap, never blocks, starts
/// nothing (Linux's `get_state_synchronize_rcu`).
///
/// [`poll`] says whether a full grace period has elapsed since. On its
/// own, a cookie completes only when something else runs a grace period
/// (a [`synchronize`], the reclaim thread serving [`call_rcu`]): an
/// updater that wants to free without blocking takes its cookie with
/// [`start_poll`] instead.
///
/// ```
/// let c = rcu_core::cookie();
/// assert!(!rcu_core::poll(c)); // no grace period has run since
/// rcu_core::synchronize();
/// assert!(rcu_core::poll(c));
/// rcu_core::synchronize_since(c); // returns at once
/// ```
pub fn cookie() -> GpCookie {
    GLOBAL.cookie()
}

/// Takes a cookie and makes sure a grace period that completes it starts,
/// without waiting for it (Linux's `start_poll_synchronize_rcu`).
///
/// [`cookie`] alone starts nothing: on an otherwise idle process, [`poll`]
/// of it stays `false` until someone runs a grace period. `start_poll`
/// asks the reclaim thread to run one (once per target: calls that share a
/// cookie wake it once), so [`poll`] turns `true` within about a grace
/// period, typically microseconds when no reader holds it up. Costs a
/// wake-up of the reclaim thread; never blocks on readers. Callable
/// anywhere, including inside a critical section (the grace period then
/// waits for it, like any other).
///
/// This is the non-blocking updater's recipe: unlink, `start_poll`, keep
/// the old value aside, and free it once [`poll`] says so.
///
/// ```
/// use std::collections::VecDeque;
/// let mut retired: VecDeque<(rcu_core::GpCookie, Box<u64>)> = VecDeque::new();
/// // ... unlink `old` from a structure readers walk, then:
/// let old = Box::new(7);
/// retired.push_back((rcu_core::start_poll(), old));
/// // Later, from the updater's own loop, without blocking:
/// while let Some((c, _)) = retired.front() {
///     if !rcu_core::poll(*c) {
///         std::thread::sleep(std::time::Duration::from_millis(1)); // or other work
///         continue;
///     }
///     drop(retired.pop_front()); // no reader can see it any more
/// }
/// ```
///
/// # Panics
/// If the reclaim thread cannot be started (the spawn error is in the
/// message).
pub fn start_poll() -> GpCookie {
    GLOBAL.start_poll(&HANDLE)
}

/// Whether a full grace period has elapsed since `cookie` was taken.
/// Cheap; never blocks, never starts a grace period (see [`start_poll`]).
///
/// # Panics
/// If `cookie` came from an [`RcuDomain`](crate::RcuDomain).
#[track_caller]
pub fn poll(cookie: GpCookie) -> bool {
    GLOBAL.poll(cookie)
}

/// Waits until a full grace period has elapsed since `cookie` was taken;
/// returns at once when one has.
///
/// # Panics
/// If `cookie` came from an [`RcuDomain`](crate::RcuDomain); otherwise
/// as [`synchronize`] when it has to wait.
#[track_caller]
pub fn synchronize_since(cookie: GpCookie) {
    GLOBAL.synchronize_since(cookie);
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
/// [`ConfigError::Invalid`] for a value out of its range (see
/// [`Config`]), [`ConfigError::MembarrierUnavailable`] when
/// [`Config::require_membarrier`] is set and membarrier cannot be used.
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
/// [`read_lock`]; idempotent. Does nothing in a thread-local destructor
/// that runs after the thread's registration is gone.
pub fn register_thread() {
    if registration_alive() {
        let _ = registered_record();
    }
}

/// Whether the calling thread is inside a read-side critical section of
/// the process-wide domain: through [`read_lock`] (one thread-local load),
/// or else through a [`Reader`](crate::Reader) of
/// [`RcuDomain::global`], a [`LocalReadGuard`](crate::LocalReadGuard), or
/// a [`ReadGuard`] kept past the thread's registration (a scan of the
/// domain's records under its lock, as [`synchronize`] makes to refuse to
/// wait there; owned guards, which may move between threads, aside). It
/// once looked at `read_lock`'s record alone, and said `false` where
/// `synchronize` panicked.
///
/// Cost: when the answer is `false`, that scan takes the domain's registry
/// lock, which grace periods hold across their barrier: a check for
/// assertions and slow paths, not for a hot loop.
pub fn in_critical_section() -> bool {
    // The sentinel is never inside one.
    local_record().in_critical_section()
        || lock(&GLOBAL.gp.readers.registry).current_thread_reading()
}
