//! `fork()`: handlers (`pthread_atfork`) that leave the child a working
//! engine, after liburcu's `rcu_bp_before_fork` / `after_fork_child` and
//! `call_rcu_after_fork_child`, but never waiting in the prepare handler.
//!
//! # Prepare: take every engine lock, wait for nothing else
//!
//! The prepare handler runs on the forking thread, which may be inside a
//! critical section, running a callback on a reclaim thread, or running a
//! notifier or an event hook as a grace-period leader. So it must not wait
//! for a grace period, for a reclaim thread, or for a lock that is ever held
//! across either, or across user code. It takes, in a fixed order, every
//! lock of every live domain; each of them is held only for a few
//! instructions or a system call and never across a wait for readers or
//! user code (the engine calls user code with no lock of its own held), so
//! taking them waits only for other threads to finish those few steps:
//!
//! 1. this module's own (`FORKING`, the domain list), then the barrier
//!    mode's one-time initialisation;
//! 2. per domain (the process-wide one first; no engine path holds locks of
//!    two domains): the start lock and the configuration, the leader state,
//!    the registry and then every record's cold data (the engine's order:
//!    registry before record), the owned-guard pool, the event hook, the
//!    reclaim-thread slot, the in-flight batch, the ready list, the batch
//!    list and then every batch (its order), and last the four events'
//!    internal locks (leaves: taken under a batch's lock by `enqueue`);
//! 3. last, the membarrier-revocation fallback's lock (a leaf the heavy
//!    barrier takes under a registry lock, for two `mprotect` calls, or,
//!    where membarrier was revoked on arm64, for a signal round trip to
//!    every thread: then a fork waits until each thread has been scheduled
//!    once, as a grace period does).
//!
//! What each is held across elsewhere, which is why taking it never waits
//! for readers, a reclaim thread or user code: the leader state, a flag
//! check (released before the grace period runs); the registry, a scan and
//! the heavy barrier (a system call, or the signal round trip above); a record's cold data, a copy; the
//! owned pool, a push or pop; the event hook, a clone; the reclaim slot, a
//! thread spawn; the in-flight batch, the reclaim thread's pops (which wait
//! at most for a producer between its count and its push, or its swap and
//! its link, steps that take no lock); the ready list, taking or returning
//! a chunk (a drain, or the reclaim thread waiting for a helper's chunk,
//! waits on its condition variable, which releases it); the batch list, a
//! thread's first `call_rcu`, a harvest, or a sum or scan of
//! the batches' counts; a batch, a move
//! (count and push: an append takes no lock, and one that another thread
//! had half done at the instant of fork is not seen in the child, where
//! that thread is gone); an event's
//! lock, a check and a notify (its waiters sleep with it released). None is
//! held by the forking thread itself: the engine calls user code with none
//! held.
//!
//! With all of them held, the state they guard is not half-modified, and
//! the child inherits no lock held by a thread it does not have: the
//! forking thread holds them all, and releases them in both processes.
//! (Locks outside the engine are not ours to take: the C library's and
//! the memory allocator's are handled by the C library; Rust's standard
//! library takes a process-wide lock whenever a thread starts or exits, for
//! its stack-overflow handler, and a fork at such an instant leaves the
//! child unable to start any thread, its reclaim thread included.)
//!
//! # Child: only the forking thread exists
//!
//! Per started domain, with every lock still held:
//!
//! * **Readers**: records of every other thread are freed, even inside a
//!   critical section, which no one can leave now (their notifiers are
//!   leaked, not run or dropped). The forking thread's record stays (its
//!   guards exist in the child and drop there), and so do owned guards'
//!   records (a guard in use exists in the child's memory).
//! * **Leader**: a leader that is another thread is gone; a grace period
//!   it had started (odd sequence) did not end and never will: the sequence
//!   goes back to its value before it, so no cookie counts it (a cookie
//!   needs a whole grace period run in the child; `gp_ctr` may have moved,
//!   which only makes the next grace period wait for more readers). A
//!   forking thread that is the leader (inside a notifier or hook) goes on
//!   leading.
//! * **Reclaim thread**: unless the forking thread is the domain's reclaim
//!   thread (a fork from a callback), it does not exist: `running` is
//!   cleared and its join handle forgotten, and the next `call_rcu`,
//!   `drain`, `start_poll` or `synchronize_async` starts one.
//! * **Callbacks**: the in-flight batch (of a consumer that is gone: the
//!   reclaim thread, or a thread in `drain`; the consumer token is given
//!   back) and the queue are rebuilt into one queue node in order; batches of threads that
//!   are gone are harvested normally (by the next harvest: the batches are
//!   marked dirty), and stay allocated (a 10 KiB ring each: the
//!   thread-locals that own them are never destroyed in the child).
//!   `pending` and `pending_bytes` are recounted from what is really
//!   queued, in flight and ready, and `callbacks_queued` as what has run
//!   plus those (a producer or drainer that was between its count and its
//!   push is gone, with its callbacks).
//!   Chunks that other threads were running are forgotten, so `drain` waits
//!   only for the forking thread's own chunk: in the child, the callback
//!   that was running and those after it in its chunk (at most 256) are
//!   leaked, not run (they run in the parent). They were counted as run,
//!   and their bytes released, when the chunk was taken, so the child's
//!   statistics count them as run too, and its pending counts are exact.
//! * **Forcing counts**: drains and expedited grace periods in progress are
//!   only the forking thread's own (none can be a drain).
//! * **Grace-period statistics**: a leader cut off by the fork may have
//!   counted its grace period only partly (the counters are bumped one after
//!   the other); `grace_periods` is recounted from the histogram and
//!   `forced` from its causes.
//!
//! And once per process: the membarrier registration is made again (the
//! kernel copies it with the `mm`, and clears it only at `exec`;
//! registering again is idempotent and makes the child not depend on that).
//!
//! # Parent
//!
//! Releases the locks; nothing else changes.
//!
//! # Cost
//!
//! Every `fork()` of the process pays for this, `std::process::Command`'s
//! included where it forks: a lock per record, batch and domain in the
//! parent, and in the child a walk of each domain's registry and pending
//! callbacks.

use crate::barrier::AtomicCounter;
use crate::batch::Locked;
use crate::callbacks::{Callbacks, Ready};
use crate::config::Config;
use crate::domain::{GLOBAL, Inner};
use crate::grace_period::{EventHook, Leader};
use crate::queue::{Callback, Chunk, Origin};
use crate::registry::{Cold, Record, Registry};
use crate::sync::{AtomicUsize, MutexGuard, lock, report, thread};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The independent domains (the process-wide one is always there).
static DOMAINS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());
/// Whether the handlers are installed (or being installed).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Serialises our handlers if the C library does not (glibc and musl do).
static FORKING: Mutex<()> = Mutex::new(());
/// The locks the prepare handler took, for the parent or child handler.
/// Touched only by the forking thread, between its handlers.
static HELD: Mutex<Option<Locks>> = Mutex::new(None);

/// Installs the fork handlers, once per process: at the first start of any
/// domain. (A fork racing with that very first start may run without them,
/// as before any domain exists.)
pub(crate) fn install() {
    // Relaxed: only decides who installs; nothing else is published.
    if INSTALLED.load(Ordering::Relaxed) || INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: the three handlers are `extern "C"` functions that never
    // unwind (see `guarded`), valid for the life of the process.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc != 0 {
        report(format_args!(
            "rcu: pthread_atfork failed ({}); fork() will not be handled",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
}

/// Makes an independent domain reachable from the fork handlers.
pub(crate) fn register(domain: &Arc<Inner>) {
    let mut list = DOMAINS.lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(domain));
}

thread_local! {
    /// The forcing counters (`drains`, `expedites`, by address) this thread
    /// has raised and not yet lowered: what the child of a fork keeps.
    static RAISED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// The callbacks (by address) whose reclaim thread this thread is.
    static RECLAIMS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Called by a reclaim thread when it starts: it serves `cb` for its life.
pub(crate) fn mark_reclaim_thread(cb: &Callbacks) {
    let _ = RECLAIMS.try_with(|r| r.set(std::ptr::from_ref(cb).addr()));
}

/// Whether this thread is the reclaim thread of `cb` (after a domain's
/// shutdown too, when its handle has left the slot).
fn is_reclaim_thread_of(cb: &Callbacks) -> bool {
    RECLAIMS.try_with(|r| r.get() == std::ptr::from_ref(cb).addr()) == Ok(true)
}

/// Notes that this thread raised (`true`) or lowered a forcing counter.
pub(crate) fn note_raised(counter: &AtomicUsize, raised: bool) {
    let key = std::ptr::from_ref(counter).addr();
    let _ = RAISED.try_with(|r| {
        let mut r = r.borrow_mut();
        if raised {
            r.push(key);
        } else if let Some(i) = r.iter().rposition(|&k| k == key) {
            r.swap_remove(i);
        }
    });
}

/// How many raises of `counter` this thread holds.
fn raised_by_me(counter: &AtomicUsize) -> usize {
    let key = std::ptr::from_ref(counter).addr();
    RAISED
        .try_with(|r| r.borrow().iter().filter(|&&k| k == key).count())
        .unwrap_or(0)
}

/// Extends a borrow to `'static`.
///
/// # Safety
/// The referent outlives every use of the result: here, everything borrowed
/// lives in a `static` domain or in a domain whose `Arc` the [`Locks`] that
/// hold the result keep, and is dropped after them.
unsafe fn forever<T: ?Sized>(r: &T) -> &'static T {
    // SAFETY: by the caller's promise.
    unsafe { &*std::ptr::from_ref(r) }
}

/// Every lock of one domain, in the order they are taken (module docs).
/// Field order is drop (unlock) order, which does not matter.
struct DomainLocks {
    inner: &'static Inner,
    _start: MutexGuard<'static, ()>,
    _config: std::sync::MutexGuard<'static, Config>,
    leader: MutexGuard<'static, Leader>,
    registry: MutexGuard<'static, Registry>,
    colds: Vec<MutexGuard<'static, Cold>>,
    _owned_free: Vec<MutexGuard<'static, Vec<crate::sync::Arc<Record>>>>,
    _event_hook: std::sync::MutexGuard<'static, Option<EventHook>>,
    _unavailable: std::sync::MutexGuard<'static, Option<&'static str>>,
    reclaim: MutexGuard<'static, Option<thread::JoinHandle<()>>>,
    in_flight: std::sync::MutexGuard<'static, crate::callbacks::InFlight>,
    ready: MutexGuard<'static, Ready>,
    _batch_list: MutexGuard<'static, Vec<Arc<crate::batch::Batch>>>,
    _batches: Vec<Locked<'static>>,
    _events: [MutexGuard<'static, ()>; 4],
}

/// What the prepare handler took. Fields drop in order: the barrier
/// fallback's lock, the domains' locks, the list, the domains themselves,
/// our own lock.
struct Locks {
    _barrier: Option<std::sync::MutexGuard<'static, ()>>,
    domains: Vec<DomainLocks>,
    _list: std::sync::MutexGuard<'static, Vec<Weak<Inner>>>,
    _arcs: Vec<Arc<Inner>>,
    _forking: std::sync::MutexGuard<'static, ()>,
}

// SAFETY: the guards are taken and released by the forking thread only
// (prepare, then parent or child, on the same thread); the `static` that
// holds them in between is touched by no one else.
unsafe impl Send for Locks {}

/// Runs a handler's body; a panic there (an engine bug) aborts rather than
/// unwind into the C library.
fn guarded(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        report(format_args!("rcu: fatal: a fork handler panicked"));
        std::process::abort();
    }
}

extern "C" fn prepare() {
    guarded(|| {
        let forking = FORKING.lock().unwrap_or_else(PoisonError::into_inner);
        let list = DOMAINS.lock().unwrap_or_else(PoisonError::into_inner);
        // A thread inside the mode's one-time initialisation (a few system
        // calls) finishes it first, so the child does not find it begun.
        let _ = crate::barrier::process_mode();
        let arcs: Vec<Arc<Inner>> = list.iter().filter_map(Weak::upgrade).collect();
        let mut domains = Vec::with_capacity(arcs.len() + 1);
        domains.push(lock_domain(&GLOBAL));
        for a in &arcs {
            // SAFETY: `arcs` keeps the domain alive, and is dropped after
            // the locks (`Locks`' field order).
            domains.push(lock_domain(unsafe { forever(&**a) }));
        }
        // Last: the heavy barrier takes it under a registry lock.
        let barrier = crate::barrier::lock_for_fork();
        let locks = Locks {
            _barrier: barrier,
            domains,
            _list: list,
            _arcs: arcs,
            _forking: forking,
        };
        *HELD.lock().unwrap_or_else(PoisonError::into_inner) = Some(locks);
    });
}

/// Takes every lock of `inner`, in the order of the module docs.
fn lock_domain(inner: &'static Inner) -> DomainLocks {
    let gp = &inner.gp;
    let cb = &inner.cb;
    let start = lock(&inner.start_lock);
    let config = inner.config.lock().unwrap_or_else(PoisonError::into_inner);
    let leader = lock(&gp.leader);
    let registry = lock(&gp.readers.registry);
    let colds = registry
        .records
        .iter()
        // SAFETY: records are never removed from their registry, which
        // lives as long as the domain (see `DomainLocks`' users).
        .map(|r| lock(unsafe { forever(&r.cold) }))
        .collect();
    let owned_free = gp.readers.owned_free.iter().map(lock).collect();
    let event_hook = gp.event_hook.lock().unwrap_or_else(PoisonError::into_inner);
    let unavailable = gp
        .unavailable
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let reclaim = lock(&cb.reclaim);
    let in_flight = cb.lock_in_flight();
    let ready = lock(&cb.ready);
    let batch_list = lock(&gp.pressure.batches.list);
    let batches = batch_list
        .iter()
        // SAFETY: a batch leaves the list only under the list's lock, held
        // until these guards are dropped (they drop first).
        .map(|b| unsafe { forever(&**b) }.lock())
        .collect();
    let events = [
        gp.readers.gp_event.lock_for_fork(),
        gp.kick.lock_for_fork(),
        cb.call_ready.lock_for_fork(),
        cb.ready_added.lock_for_fork(),
    ];
    DomainLocks {
        inner,
        _start: start,
        _config: config,
        leader,
        registry,
        colds,
        _owned_free: owned_free,
        _event_hook: event_hook,
        _unavailable: unavailable,
        reclaim,
        in_flight,
        ready,
        _batch_list: batch_list,
        _batches: batches,
        _events: events,
    }
}

extern "C" fn parent() {
    guarded(|| drop(HELD.lock().unwrap_or_else(PoisonError::into_inner).take()));
}

extern "C" fn child() {
    guarded(|| {
        let Some(mut locks) = HELD.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        reregister_membarrier();
        // `None` if the forking thread is so far into its teardown that
        // its handle is gone (a fork from a thread-local destructor): then
        // no record can be told to be its own, and none is freed.
        let me = catch_unwind(|| std::thread::current().id()).ok();
        for d in &mut locks.domains {
            // SAFETY: this is the child's only thread, holding every lock
            // of the domain.
            unsafe { d.repair(me) };
        }
        drop(locks);
    });
}

/// Registers the child for membarrier again (see the module docs).
fn reregister_membarrier() {
    #[cfg(target_os = "linux")]
    if crate::barrier::process_mode().is_ok() {
        use rustix::thread::{MembarrierCommand, membarrier};
        // An error leaves the heavy barrier to find out and fall back.
        let _ = membarrier(MembarrierCommand::RegisterPrivateExpedited);
    }
}

impl DomainLocks {
    /// Makes the domain's state consistent with a process whose only
    /// thread is `me` (module docs).
    ///
    /// # Safety
    /// The caller is the only thread of the process (the child's handler)
    /// and these are the domain's locks, held.
    unsafe fn repair(&mut self, me: Option<std::thread::ThreadId>) {
        let inner = self.inner;
        // Relaxed (every atomic access below): the only thread; the locks
        // released after this publish the values to threads started later.
        if !inner.started.load(Ordering::Relaxed) {
            return; // nothing but its configuration yet
        }
        let (gp, cb, p) = (&inner.gp, &inner.cb, &inner.gp.pressure);
        // SAFETY: the only thread, holding the registry's and every
        // record's lock.
        unsafe {
            if let Some(me) = me {
                self.registry.free_dead_threads_records(&mut self.colds, me);
            }
        }
        if self.leader.leading && (me.is_none() || self.leader.thread != me) {
            self.leader.leading = false;
            self.leader.thread = None;
            let seq = gp.seq.load(Ordering::Relaxed);
            if seq & 1 != 0 {
                gp.seq.store(seq - 1, Ordering::Relaxed);
            }
            // It may have been cut off while counting its grace period, one
            // counter after the other (`GracePeriods::count`: the total, the
            // histogram, `forced`, the cause): make the total agree with the
            // histogram and `forced` with its causes.
            let s = &gp.stats;
            s.grace_periods
                .set(s.histogram.iter().map(AtomicCounter::get).sum());
            s.forced.set(
                [
                    &s.forced_expedite,
                    &s.forced_drain,
                    &s.forced_memory,
                    &s.forced_callbacks,
                    &s.forced_polls,
                ]
                .iter()
                .map(|c| c.get())
                .sum(),
            );
        }
        // The forking thread, running one of its callbacks (or a notifier
        // or hook as its leader), goes on being the reclaim thread.
        let alive = is_reclaim_thread_of(cb);
        if !alive {
            // Dropping it would detach a thread that the C library's copy
            // of the parent's state still lists: forget it.
            std::mem::forget(self.reclaim.take());
            cb.running.store(false, Ordering::Relaxed);
            // It may have been gathering (`pace` holds no lock while it
            // waits): left set, the flag would keep producers from waking
            // the new thread, which might never gather to clear it.
            cb.end_pacing_after_fork();
        }
        // Followers asleep in the parent are threads the child lacks (the
        // forking thread waits for no grace period while it forks):
        // counted, each grace period would notify no one.
        self.leader.followers = 0;
        // The batch in flight goes back to the queue unless the forking
        // thread is its consumer (a notifier or hook it runs as the leader
        // of that batch's grace period, on the reclaim thread or in a
        // `drain`): a consumer that is gone would never finish it.
        let mut queued: Vec<Callback> = if me.is_some() && self.in_flight.consumer == me {
            Vec::new()
        } else {
            self.in_flight.consumer = None;
            std::mem::take(&mut self.in_flight.chunks)
                .into_iter()
                .flat_map(|c| c.callbacks)
                .collect()
        };
        // SAFETY: the only thread, holding the consumer's lock
        // (`in_flight`); the queue was initialised at start.
        queued.extend(unsafe { cb.queue.take_all_after_fork() });
        let bytes = |cbs: &mut dyn Iterator<Item = &Callback>| {
            cbs.map(Callback::bytes).fold(0usize, usize::saturating_add)
        };
        let pending = queued.len() + self.in_flight.chunks.iter().map(Chunk::len).sum::<usize>();
        let pending_bytes = bytes(&mut queued.iter())
            .saturating_add(bytes(
                &mut self.in_flight.chunks.iter().flat_map(|c| &c.callbacks),
            ))
            .saturating_add(bytes(
                &mut self.ready.list.iter().flat_map(|c| &c.callbacks),
            ));
        if !queued.is_empty() {
            // Of every thread that queued before the fork, merged: in
            // order with everything (see `Origin`).
            cb.queue.push(Chunk {
                origin: Origin::UNKNOWN,
                callbacks: queued,
            });
        }
        p.pending.store(pending, Ordering::Relaxed);
        p.pending_bytes.set(pending_bytes);
        // `queued` too, from what the child holds: run, pending, and ready
        // but not taken. A thread that counted callbacks as queued but had
        // not pushed them yet (a `drain` allocating its marker's node,
        // unlocked) lost them at the fork, and so did a runner that had
        // taken a chunk but not counted it run yet; either way the count
        // kept them, and `queued == run` never held again in the child.
        let ready: usize = self.ready.list.iter().map(Chunk::len).sum();
        cb.stats
            .queued
            .set(cb.stats.run.get().saturating_add((pending + ready) as u64));
        // Batches of threads that are gone may hold callbacks that no one
        // will flag: the next reclaim thread harvests them at once.
        let _ = p.batches.mark_dirty();
        self.ready.running.retain(|&(_, t, _)| Some(t) == me);
        self.ready.waiting = 0;
        p.drains.store(raised_by_me(&p.drains), Ordering::Relaxed);
        p.expedites
            .store(raised_by_me(&p.expedites), Ordering::Relaxed);
    }
}
