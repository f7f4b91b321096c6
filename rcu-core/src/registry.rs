//! Reader records, the registry the grace period scans, and what readers
//! share with it ([`ReadSide`]): the lowest layer of the engine.
//!
//! This module and [`crate::queue`] hold the engine's `unsafe` code: turning
//! a record's pointer back into a reference, and the owner-only nesting
//! counter.

use crate::barrier::{AtomicCounter, Mode};
use crate::event::Event;
use crate::sync::{Arc, AtomicU8, AtomicU64, Mutex, Ordering, fence, lock, thread};
use std::cell::Cell;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::atomic::compiler_fence;

/// A force-quiescent notifier: called on the grace-period thread. (A `std`
/// `Arc` even under loom: no model registers a notifier.)
pub(crate) type NotifierFn = std::sync::Arc<Notifier>;

/// A record's notifiers, by handle id.
#[allow(clippy::box_collection)] // one word in the record's line, not three
pub(crate) type Notifiers = Box<Vec<(u64, NotifierFn)>>;

/// A registered notifier's closure, and whether a grace period is calling
/// it now, so that dropping its handle can wait for that call: once the
/// drop returns, the closure is not running and is never called again. (A
/// grace period copies the notifiers of the readers it forces out of their
/// records, then calls them with no lock held: a drop that only took the
/// notifier out of its record let a copy taken before run after it, so a
/// notifier ran after its handle's drop had returned.)
///
/// Two `std` atomics (no loom model registers a notifier) in a Dekker
/// pair: the caller stores itself in `caller`, then loads `removed`; the
/// drop stores `removed`, then loads `caller` (all SeqCst). Either the
/// call sees the removal and does not happen, or the drop sees the call
/// and waits for it. Atomics, not a lock: the child of a `fork()` clears a
/// call that a thread it does not have was making
/// ([`forget_other_threads_call`](Self::forget_other_threads_call)), where
/// a lock held by that thread could never be taken again.
pub(crate) struct Notifier {
    f: Box<dyn Fn() + Send + Sync + 'static>,
    /// Its handle was dropped (or its thread's registration released).
    removed: std::sync::atomic::AtomicBool,
    /// The calling thread's [`thread_token`], or 0.
    caller: std::sync::atomic::AtomicUsize,
}

/// A number that tells this thread from every other thread alive: the
/// address of a thread-local with no destructor (so it is there during
/// thread-local teardown too). Never 0.
fn thread_token() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| std::ptr::from_ref(t).addr())
}

impl Notifier {
    fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        Notifier {
            f: Box::new(f),
            removed: std::sync::atomic::AtomicBool::new(false),
            caller: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Marks a call by this thread as begun; `None` (and no call) if the
    /// notifier was removed. The call ends when the returned token drops.
    pub(crate) fn begin_call(&self) -> Option<NotifierCall<'_>> {
        use std::sync::atomic::Ordering::SeqCst;
        // SeqCst (both): our side of the Dekker pair with `remove`.
        self.caller.store(thread_token(), SeqCst);
        if self.removed.load(SeqCst) {
            self.caller.store(0, SeqCst);
            return None;
        }
        Some(NotifierCall(self))
    }

    /// The closure (called between `begin_call` and the token's drop).
    pub(crate) fn f(&self) -> &(dyn Fn() + Send + Sync) {
        &*self.f
    }

    /// Marks it removed, then waits for a call in progress on another
    /// thread to return (a call on this thread is the caller's own: a
    /// notifier that drops its handle, or another's, inside a call).
    /// Notifiers return quickly, so the wait polls.
    fn remove(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // SeqCst (both): our side of the Dekker pair with `begin_call`.
        self.removed.store(true, SeqCst);
        let me = thread_token();
        let mut polls = 0u32;
        loop {
            let caller = self.caller.load(SeqCst);
            if caller == 0 || caller == me {
                return;
            }
            if polls < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            polls = polls.saturating_add(1);
        }
    }

    /// In the child of a `fork()`: forgets a call in progress by another
    /// thread, which the child does not have (the call will never end).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    fn forget_other_threads_call(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.caller.load(SeqCst) != thread_token() {
            self.caller.store(0, SeqCst);
        }
    }
}

/// A call of a [`Notifier`] in progress; dropping it ends the call.
pub(crate) struct NotifierCall<'a>(&'a Notifier);

impl Drop for NotifierCall<'_> {
    fn drop(&mut self) {
        // SeqCst: read by `remove`'s wait.
        self.0.caller.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Removes `notifiers` (waiting for calls in progress, see
/// [`Notifier::remove`]), then drops them: with no lock of ours held, as
/// their closures are user code.
fn remove_notifiers(notifiers: Option<Notifiers>) {
    for (_, n) in notifiers.iter().flat_map(|l| l.iter()) {
        n.remove();
    }
    drop(notifiers);
}

/// A value alone on its cache line (two, for adjacent-line prefetch).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// Shards of the owned-guard record pool.
#[cfg(not(rcu_loom))]
const OWNED_SHARDS: usize = 8;
#[cfg(rcu_loom)]
const OWNED_SHARDS: usize = 1;

/// What a domain's readers share with its grace periods: the counter they
/// snapshot, the registry of their records, the event they signal in the
/// forced state, and the pool of owned-guard records.
///
/// Records point here (not to the whole domain), so the read side depends
/// on nothing above this module. Once the domain has started, a `ReadSide`
/// must not move: it lives in a `static` or inside an `Arc`.
pub(crate) struct ReadSide {
    /// Bit 0 always set; +2 per grace period. Read by every reader's lock.
    pub(crate) gp_ctr: Padded<AtomicU64>,
    /// The domain's id (see [`crate::DomainId`]).
    pub(crate) id: u64,
    /// The barrier mode ([`Mode::as_u8`]), fixed when the domain starts.
    mode: AtomicU8,
    pub(crate) registry: Mutex<Registry>,
    /// Readers signal it when they leave in the forced state.
    pub(crate) gp_event: Event,
    pub(crate) reader_wakeups: AtomicCounter,
    /// Records of owned guards not in use, sharded by thread so taking and
    /// dropping an owned guard takes no domain-wide lock.
    pub(crate) owned_free: [Mutex<Vec<Arc<Record>>>; OWNED_SHARDS],
}

impl ReadSide {
    loom_const_fn! {
        pub(crate) fn new(id: u64) -> Self {
            ReadSide {
                gp_ctr: Padded(AtomicU64::new(1)),
                id,
                mode: AtomicU8::new(0),
                registry: Mutex::new(Registry::new()),
                gp_event: Event::new(),
                reader_wakeups: AtomicCounter::new(),
                owned_free: owned_shards!(),
            }
        }
    }

    /// Fixes the barrier mode. Called once, before the domain is published
    /// as started.
    pub(crate) fn set_mode(&self, mode: Mode) {
        // Relaxed: published by the Release store that marks the domain
        // started, which every user of the mode has Acquire-loaded.
        self.mode.store(mode.as_u8(), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn mode(&self) -> Mode {
        // Relaxed: see `set_mode`.
        Mode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Registers the calling thread as a reader.
    pub(crate) fn register(&self) -> Arc<Record> {
        let rec = lock(&self.registry).acquire(self);
        #[cfg(not(rcu_loom))]
        note_mine(&rec);
        rec
    }

    /// Unregisters a thread's record (it exits, or its `Reader` is dropped).
    pub(crate) fn unregister(&self, rec: &Record) {
        let notifiers = lock(&self.registry).release(rec);
        remove_notifiers(notifiers);
    }

    /// Releases a record whose owner let go of it inside a critical
    /// section, at its outermost unlock.
    fn release_orphan(&self, rec: &Record) {
        let notifiers = lock(&self.registry).release_orphan(rec);
        remove_notifiers(notifiers);
    }

    /// Takes a record for an owned guard from the calling thread's shard of
    /// the pool (or makes one) and enters a critical section on it.
    // Loom models have one shard.
    #[cfg_attr(rcu_loom, allow(clippy::modulo_one))]
    pub(crate) fn lock_owned(
        &self,
        taken_at: &'static Location<'static>,
        local: bool,
    ) -> Arc<Record> {
        let shard = owned_shard();
        // A statement of its own: its lock is released before the search
        // below, which takes the other shards' locks one at a time (taken
        // inside one expression, it was held across the search, and two
        // threads each holding theirs deadlocked: Miri found it).
        let mine = lock(&self.owned_free[shard]).pop();
        let pooled = mine.or_else(|| {
            // A guard dropped on another thread pooled its record in that
            // thread's shard: take one of those before making a new record,
            // so that the registry (which every grace period scans) stays
            // at about the guards held at once. A thread that took guards
            // and handed each to another to drop made a record per guard
            // (10 000 for 10 000, a reviewer's test).
            (1..OWNED_SHARDS).find_map(|i| lock(&self.owned_free[(shard + i) % OWNED_SHARDS]).pop())
        });
        let rec = match pooled {
            Some(rec) => rec,
            None => lock(&self.registry).acquire_owned(self),
        };
        {
            let mut cold = lock(&rec.cold);
            cold.owner = Some(thread::current());
            cold.taken_at = Some(TakenAt::new(taken_at, local));
        }
        rec.lock(&self.gp_ctr.0);
        rec
    }

    /// Leaves an owned guard's critical section and pools its record.
    pub(crate) fn unlock_owned(&self, rec: Arc<Record>) {
        rec.unlock();
        lock(&self.owned_free[owned_shard()]).push(rec);
    }

    /// Called by a reader that left its critical section while a forced
    /// grace period waited for it.
    fn reader_woke(&self) {
        self.reader_wakeups.bump();
        self.gp_event.set();
    }
}

#[cfg(not(rcu_loom))]
macro_rules! owned_shards {
    () => {
        [const { Mutex::new(Vec::new()) }; OWNED_SHARDS]
    };
}
#[cfg(rcu_loom)]
macro_rules! owned_shards {
    () => {
        [Mutex::new(Vec::new())]
    };
}
use owned_shards;

/// The owned-guard pool shard of the calling thread.
fn owned_shard() -> usize {
    #[cfg(not(rcu_loom))]
    {
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        thread_local! {
            static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        SHARD
            .try_with(|s| {
                if s.get() == usize::MAX {
                    // Relaxed: only spreads threads over shards.
                    s.set(NEXT.fetch_add(1, Relaxed) % OWNED_SHARDS);
                }
                s.get()
            })
            .unwrap_or(0)
    }
    #[cfg(rcu_loom)]
    {
        0
    }
}

/// Data of a record that only slow paths touch.
#[derive(Default)]
pub(crate) struct Cold {
    /// Boxed to keep the record in one cache line (one word, not a `Vec`'s
    /// three; notifiers are rare).
    pub(crate) notifiers: Option<Notifiers>,
    /// The thread that owns the record (its id, and its name for stall
    /// warnings), `None` while the record is free. For a record of owned
    /// guards: the thread that took the current (or last) guard.
    pub(crate) owner: Option<thread::Thread>,
    /// For a record of owned guards: where the current (or last) guard was
    /// taken, and whether it is a local one. `None` for a thread's record.
    pub(crate) taken_at: Option<TakenAt>,
}

/// Where an owned guard was taken, and whether it is a
/// [`LocalReadGuard`](crate::LocalReadGuard) (which stays on the thread that
/// took it): the location's address, with bit 0 set for a local guard. One
/// word, so that a record stays one cache line.
#[derive(Clone, Copy)]
pub(crate) struct TakenAt(std::ptr::NonNull<Location<'static>>);

// A `Location` is word-aligned (it holds a `&str`): bit 0 is free.
const _: () = assert!(align_of::<Location<'static>>() >= 2);

// SAFETY: a `TakenAt` is a `&'static Location` (which is `Send + Sync`) with
// a flag in its low bit.
unsafe impl Send for TakenAt {}
// SAFETY: as above.
unsafe impl Sync for TakenAt {}

impl TakenAt {
    pub(crate) fn new(at: &'static Location<'static>, local: bool) -> Self {
        TakenAt(std::ptr::NonNull::from(at).map_addr(|a| a | usize::from(local)))
    }

    /// (Read by stall reports, which loom models have no clock for.)
    #[cfg_attr(rcu_loom, allow(dead_code))]
    pub(crate) fn location(self) -> &'static Location<'static> {
        // SAFETY: with the flag cleared, the pointer `new` was given: a
        // `&'static Location`.
        unsafe { &*self.0.as_ptr().map_addr(|a| a & !1) }
    }

    pub(crate) fn is_local(self) -> bool {
        self.0.addr().get() & 1 != 0
    }
}

/// One reader thread's (or owned guard's) state, scanned by the grace
/// period.
///
/// The fields the read side touches come first and the whole record is
/// aligned to (and fits in) one cache line, so a reader's lock and unlock
/// touch exactly one line of shared memory, and two readers never share one.
///
/// # The read side's three states, in one load
/// `ctr` tells the lock everything with a single load and compare:
/// * `0`: outside any critical section, membarrier mode: the inline fast
///   path (copy `gp_ctr`, compiler fence).
/// * a snapshot (odd: bit 0 of `gp_ctr` is always set), below `2^63`: inside
///   a critical section: one nesting level more, inline.
/// * [`IDLE_SLOW`] (even, and negative as an `i64`): outside any critical
///   section, but the lock takes the out-of-line path: a record of a
///   fence-mode domain, or the process-wide domain's sentinel (a thread that
///   has no record yet).
///
/// A snapshot at or above `2^63` (after `2^62` grace periods) would only
/// take the out-of-line path too, which handles it: the counter stays
/// 64-bit, and only speed depends on it staying small.
///
/// The unlock first reads the owner-only nesting word: 0 is the outermost
/// level in membarrier mode, which stores 0 and then tests
/// [`flags`](Self::flags) once (the forced state's [`WAITING`], the
/// orphan's [`ORPHANED`]; zero on the fast path). A fence-mode record
/// carries [`FENCE_MODE`] in its nesting word, so its outermost unlock never
/// takes the fast path: it goes out of line, where the fence is.
#[repr(C, align(64))]
pub(crate) struct Record {
    /// `0` or [`IDLE_SLOW`] outside any critical section; otherwise the
    /// domain's `gp_ctr` as it was read at the outermost lock. Written only
    /// by the owner.
    pub(crate) ctr: AtomicU64,
    /// Critical sections entered beyond the outermost one, plus
    /// [`FENCE_MODE`] for a record of a fence-mode domain (fixed at
    /// creation). Owner-only. The count needs no overflow check: 2^63
    /// guards cannot be taken (centuries at one per nanosecond), even
    /// leaked with `mem::forget`.
    nesting: Cell<u64>,
    /// Bits that send the outermost unlock to its slow path: [`WAITING`]
    /// (set by a forced grace period: "signal the event when you leave") and
    /// [`ORPHANED`] (released by its owner while inside a critical section,
    /// or taken for one critical section during thread-local teardown:
    /// "release the record when you leave"); with it, [`EXITED`] (for stall
    /// warnings: the owner exited, or dropped its `Reader`, inside a
    /// critical section).
    flags: AtomicU8,
    /// The read side of the domain the record belongs to.
    read_side: *const ReadSide,
    /// Notifiers and owner.
    pub(crate) cold: Mutex<Cold>,
}

// A reader record fits one cache line (DESIGN: readers touch one line).
#[cfg(all(not(rcu_loom), target_pointer_width = "64"))]
const _: () = assert!(size_of::<Record>() == 64);

// SAFETY: the only non-`Sync` parts are `nesting` and `read_side`. `nesting`
// is read and written only by the thread that currently owns the record
// (lock, unlock and quiesce run on the owner, or on the thread that holds the
// owned guard; the registry never touches it; the process-wide sentinel,
// shared by every thread without a record, is only ever read: its `ctr`
// sends every lock to the out-of-line path, which never locks it), and
// ownership moves only through synchronising hand-offs (registration under
// the registry lock, the owned pool's locks, `Send` of an owned guard).
// `read_side` is written once before the record is shared and points to a
// `ReadSide` that outlives the record's users (see `ReadSide`).
unsafe impl Sync for Record {}
// SAFETY: as above.
unsafe impl Send for Record {}

/// [`Record::ctr`] outside any critical section when the lock must take the
/// out-of-line path (fence mode, or the sentinel): even, so never a
/// snapshot, and negative as an `i64`, so one test of the loaded value tells
/// it from both `0` and a snapshot.
pub(crate) const IDLE_SLOW: u64 = u64::MAX - 1;

impl Record {
    fn new(read_side: &ReadSide) -> Self {
        let fence = read_side.mode() == Mode::Fence;
        Record {
            ctr: AtomicU64::new(if fence { IDLE_SLOW } else { 0 }),
            nesting: Cell::new(if fence { FENCE_MODE } else { 0 }),
            flags: AtomicU8::new(0),
            read_side,
            cold: Mutex::new(Cold {
                notifiers: None,
                owner: None,
                taken_at: None,
            }),
        }
    }

    /// The process-wide domain's sentinel: the record of every thread that
    /// has none yet. Never registered, never locked: its [`IDLE_SLOW`]
    /// counter sends `read_lock` to the out-of-line path, which registers
    /// the thread.
    #[cfg(not(rcu_loom))]
    pub(crate) const fn sentinel(read_side: &'static ReadSide) -> Self {
        Record {
            ctr: AtomicU64::new(IDLE_SLOW),
            nesting: Cell::new(0),
            flags: AtomicU8::new(0),
            read_side,
            cold: Mutex::new(Cold {
                notifiers: None,
                owner: None,
                taken_at: None,
            }),
        }
    }

    /// Enters a critical section. `gp_ctr` is this record's domain's counter
    /// (passed in so the process-wide domain's is a constant address).
    #[inline(always)]
    pub(crate) fn lock(&self, gp_ctr: &AtomicU64) {
        if let Err(c) = self.try_lock(gp_ctr) {
            self.lock_slow(c, gp_ctr);
        }
    }

    /// The inline part of [`lock`](Self::lock): enters at the outermost
    /// level in membarrier mode, or one level deeper. Otherwise (a
    /// fence-mode record outside any critical section, the sentinel) does
    /// nothing and returns the counter it found, for
    /// [`lock_slow`](Self::lock_slow).
    #[inline(always)]
    pub(crate) fn try_lock(&self, gp_ctr: &AtomicU64) -> Result<(), u64> {
        // Relaxed: `ctr` is written only by this thread (the sentinel's,
        // never); this reads our own last store.
        let c = self.ctr.load(Ordering::Relaxed);
        if c == 0 {
            self.enter(gp_ctr);
            // Membarrier mode's light barrier: a compiler fence. Orders the
            // store above before the loads of the critical section against
            // the heavy barrier (a `membarrier` IPI, a full fence on this
            // CPU) that follows the grace period's `gp_ctr` store and
            // precedes its scan: the Dekker pair.
            compiler_fence(Ordering::SeqCst);
            Ok(())
        } else if (c as i64) > 0 {
            // A snapshot: nested.
            self.nest();
            Ok(())
        } else {
            Err(c)
        }
    }

    /// The outermost lock's store of the snapshot (without its barrier).
    #[inline(always)]
    fn enter(&self, gp_ctr: &AtomicU64) {
        // Acquire: pairs with the Release store of a new `gp_ctr` in the
        // grace period. Seeing the new counter, we also see everything the
        // updaters it serves did before asking for it (their unpublish):
        // each updater's Release RMW of the grace-period sequence is read
        // by the leader's Acquire RMW before it stores `gp_ctr` (see
        // `GracePeriods::start`). Otherwise we could take the new counter
        // as our snapshot, read an old pointer, and be skipped by the
        // scan. On x86 this is the same `mov` as Relaxed. A stale value
        // only makes this reader look older (waited for longer).
        let snapshot = gp_ctr.load(Ordering::Acquire);
        // Release: pairs with the Acquire loads of `ctr` in the scans
        // (`holding_up`). A grace period that reads this value (rather
        // than the 0 stored by our last unlock) must still see every
        // access of the critical section before; C++20 release sequences
        // no longer carry a later plain store.
        self.ctr.store(snapshot, Ordering::Release);
    }

    /// One nesting level more.
    #[inline(always)]
    fn nest(&self) {
        // Cannot overflow (see `nesting`): no check on the hot path.
        self.nesting.set(self.nesting.get().wrapping_add(1));
    }

    /// The out-of-line lock: a fence-mode record outside any critical
    /// section (`c` is [`IDLE_SLOW`]), or a snapshot at or above `2^63`
    /// (nested). Never the sentinel (its caller registers the thread first).
    #[cold]
    #[inline(never)]
    fn lock_slow(&self, c: u64, gp_ctr: &AtomicU64) {
        self.lock_slow_inline(c, gp_ctr);
    }

    /// [`lock_slow`](Self::lock_slow)'s body, for callers that are out of
    /// line already (one call, not two, per fence-mode lock).
    #[inline(always)]
    pub(crate) fn lock_slow_inline(&self, c: u64, gp_ctr: &AtomicU64) {
        if c & 1 != 0 {
            self.nest();
            return;
        }
        debug_assert_eq!(self.nesting.get(), FENCE_MODE);
        self.enter(gp_ctr);
        // Fence mode's light barrier: the Dekker pair with the grace
        // period's `fence(SeqCst)` between its `gp_ctr` store and its scan.
        fence(Ordering::SeqCst);
    }

    /// Leaves a critical section (one guard's worth).
    #[inline(always)]
    pub(crate) fn unlock(&self) {
        self.leave(true);
    }

    /// [`unlock`](Self::unlock); an orphaned record is released at the
    /// outermost level only if `release` (not when the caller re-enters at
    /// once, as [`quiesce`](Self::quiesce) does).
    #[inline(always)]
    fn leave(&self, release: bool) {
        if self.nesting.get() == 0 {
            // Outermost, membarrier mode.
            // Release: pairs with the Acquire loads of `ctr` in the scans: a
            // grace period that sees 0 sees every access of this critical
            // section done, so it may reclaim.
            self.ctr.store(0, Ordering::Release);
            // Membarrier mode's light barrier: orders the store above before
            // the load of `flags` (Dekker pair with the forced state's
            // `WAITING` store, heavy barrier, `ctr` scan): either the grace
            // period sees 0 or we see `WAITING`.
            compiler_fence(Ordering::SeqCst);
            // Relaxed: ordered by the barrier above.
            let flags = self.flags.load(Ordering::Relaxed);
            if flags != 0 {
                self.unlock_slow(flags, release);
            }
        } else {
            // No code: it only makes the nesting word be read again here,
            // so the test above stays one compare with memory (the loaded
            // value has no other use). One instruction less per outermost
            // unlock, measured with callgrind.
            compiler_fence(Ordering::Acquire);
            // One level less; the only word that overflows (as an `i64`) is
            // `FENCE_MODE` alone: the outermost level of a fence-mode record.
            let (n, fence_mode_outermost) = (self.nesting.get() as i64).overflowing_sub(1);
            self.nesting.set(n as u64);
            if fence_mode_outermost {
                self.unlock_fence(release);
            }
        }
    }

    /// The outermost unlock of a fence-mode record.
    #[cold]
    #[inline(never)]
    fn unlock_fence(&self, release: bool) {
        // Undo `leave`'s decrement.
        self.nesting.set(FENCE_MODE);
        // Back to the idle value whose lock takes the out-of-line path.
        // Release: pairs with the Acquire loads of `ctr` in the scans (as
        // the store of 0 in membarrier mode).
        self.ctr.store(IDLE_SLOW, Ordering::Release);
        // Fence mode's light barrier: orders the store above before the
        // load of `flags` (the Dekker pair with the forced state's
        // `WAITING` store, `fence(SeqCst)`, `ctr` scan).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        let flags = self.flags.load(Ordering::Relaxed);
        if flags != 0 {
            self.unlock_slow(flags, release);
        }
    }

    /// The outermost unlock's slow path: a grace period waits on us, or the
    /// record's owner is gone. `flags` is what the unlock read after its
    /// store and barrier.
    #[cold]
    #[inline(never)]
    fn unlock_slow(&self, flags: u8, release: bool) {
        if flags & WAITING != 0 {
            // Relaxed: the event's SeqCst `set` below orders it; clearing
            // early only saves further wake-ups.
            let before = self.flags.fetch_and(!WAITING, Ordering::Relaxed);
            if before & WAITING != 0 {
                self.read_side().reader_woke();
            }
        }
        if release && flags & ORPHANED != 0 {
            // Before the release: once released, another thread may take
            // the record, and this thread must hold no pointer to it.
            if let Some(forget) = ORPHAN_RELEASED.get() {
                forget(self);
            }
            self.read_side().release_orphan(self);
        }
    }

    /// Asks the reader to signal the grace-period event when it leaves.
    /// Relaxed: ordered before the forced state's scan by its heavy barrier;
    /// the reader's side is its unlock's light barrier.
    pub(crate) fn arm_waiting(&self) {
        self.flags.fetch_or(WAITING, Ordering::Relaxed);
    }

    /// Withdraws [`arm_waiting`](Self::arm_waiting). Relaxed: a hint; a
    /// stale flag costs one spurious wake-up at the reader's next unlock.
    pub(crate) fn disarm_waiting(&self) {
        self.flags.fetch_and(!WAITING, Ordering::Relaxed);
    }

    /// Marks the record to be released at its outermost unlock: its owner
    /// let go of it while inside a critical section (thread-local teardown),
    /// or it serves a single critical section of a thread that has no
    /// registration any more. Owner thread only.
    // Loom models have no process-wide domain (its only caller).
    #[cfg_attr(rcu_loom, allow(dead_code))]
    pub(crate) fn orphan(&self) {
        // Relaxed: read by this same thread's later unlock.
        self.flags.fetch_or(ORPHANED, Ordering::Relaxed);
    }

    /// Whether the owner let go of the record inside a critical section
    /// (a leaked guard): for stall warnings (none under loom).
    #[cfg_attr(rcu_loom, allow(dead_code))]
    pub(crate) fn owner_exited(&self) -> bool {
        // Relaxed: a report.
        self.flags.load(Ordering::Relaxed) & EXITED != 0
    }

    /// The read side the record belongs to.
    pub(crate) fn read_side(&self) -> &ReadSide {
        // SAFETY: `read_side` was set at creation and the `ReadSide` outlives
        // the record's users: records live in its registry (in a `static`
        // domain, or inside the domain's `Arc`), and every path that reaches
        // a record (a guard, a `Reader`, the thread-local registration of the
        // process-wide domain, an owned guard, a `NotifierHandle` only for
        // its own `cold` mutex) keeps the domain alive or uses the `static`
        // one.
        unsafe { &*self.read_side }
    }

    /// Puts the record back outside any critical section, with no nesting
    /// and no flags, as a fresh record of its domain's mode.
    ///
    /// # Safety
    /// The record's owner no longer exists, and no other thread can touch
    /// the record during the call (a fork child's handler).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    unsafe fn reset_after_fork(&self) {
        let fence = self.read_side().mode() == Mode::Fence;
        // Relaxed (both): the caller is the only thread; the registry lock
        // the fork handler releases publishes them.
        self.ctr
            .store(if fence { IDLE_SLOW } else { 0 }, Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
        self.nesting.set(if fence { FENCE_MODE } else { 0 });
    }

    /// Whether the owner is inside a critical section. Owner thread only, or
    /// under the registry lock for a best-effort look.
    pub(crate) fn in_critical_section(&self) -> bool {
        // Relaxed: read by the owner (its own store) or for a misuse check.
        is_snapshot(self.ctr.load(Ordering::Relaxed))
    }

    /// Leaves a critical section and enters a new one at the current grace
    /// period, if this is the only level held. Returns whether it did.
    pub(crate) fn quiesce(&self) -> bool {
        if self.nesting.get() & !FENCE_MODE != 0 {
            return false;
        }
        self.leave(false);
        self.lock(&self.read_side().gp_ctr.0);
        true
    }
}

/// Whether a value of [`Record::ctr`] is a snapshot (inside a critical
/// section), not one of the idle values `0` and [`IDLE_SLOW`].
#[inline]
fn is_snapshot(c: u64) -> bool {
    c & 1 != 0
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// This thread's records, in every domain (weak: a domain may go away),
    /// for [`reading_in_any_domain`]. Pushed at registration; owned guards'
    /// records are not (they are not tied to a thread).
    static MINE: std::cell::RefCell<Vec<std::sync::Weak<Record>>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// [`LocalReadGuard`](crate::LocalReadGuard)s this thread holds, in
    /// every domain, for [`reading_in_any_domain`]: their records are
    /// pooled, not this thread's, but the guards never leave it.
    static LOCAL_GUARDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// This thread's token for the [`OwnedReadGuard`](crate::OwnedReadGuard)s
    /// it takes, in every domain: each holds a clone until it is dropped,
    /// wherever that is, so the strong count less this one is how many of
    /// them are still held (for [`reading_in_any_domain`]). Two uncontended
    /// atomic operations per guard; a list of the records taken, tried
    /// first, made each take scan every guard still held (2.7 s to take
    /// 20 000, a reviewer measured) and each check lock each record.
    static TAKER: std::sync::Arc<()> = std::sync::Arc::new(());
}

/// A clone of this thread's [`TAKER`] token, for an owned guard it takes
/// (`None` once the thread's locals are being destroyed: the guard then
/// counts nowhere, and [`reading_in_any_domain`] answers "yes" there
/// anyway).
pub(crate) fn owned_guard_taker() -> Option<std::sync::Arc<()>> {
    #[cfg(not(rcu_loom))]
    {
        TAKER.try_with(std::sync::Arc::clone).ok()
    }
    #[cfg(rcu_loom)]
    {
        None
    }
}

/// Whether an owned guard this thread took, of any domain, is still held,
/// wherever it is now. "Yes" when the thread's token is gone (its locals
/// being destroyed): it cannot tell, and a false "yes" only leaves
/// callbacks to the reclaim thread (a reviewer's test held a guard in a
/// thread-local that outlived the list this replaced, and deadlocked).
#[cfg(not(rcu_loom))]
fn holds_owned_guard_it_took() -> bool {
    TAKER
        .try_with(|t| std::sync::Arc::strong_count(t) > 1)
        .unwrap_or(true)
}

/// Counts a local guard taken (`+1`) or dropped (`-1`) on this thread.
pub(crate) fn note_local_guard(taken: bool) {
    #[cfg(not(rcu_loom))]
    let _ = LOCAL_GUARDS.try_with(|n| {
        n.set(if taken {
            n.get() + 1
        } else {
            n.get().saturating_sub(1)
        });
    });
    #[cfg(rcu_loom)]
    let _ = taken;
}

/// Adds `rec` to this thread's records (once), forgetting those of
/// domains that are gone. Once the list is destroyed (thread-local
/// teardown) it is not added, and [`reading_in_any_domain`] answers "yes"
/// from then on, as it cannot tell.
#[cfg(not(rcu_loom))]
fn note_mine(rec: &Arc<Record>) {
    let _ = MINE.try_with(|m| {
        let mut m = m.borrow_mut();
        m.retain(|w| w.strong_count() > 0);
        if !m.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(rec))) {
            m.push(Arc::downgrade(rec));
        }
    });
}

/// Whether the calling thread is inside a critical section of any domain,
/// through a record it registered, a local guard it holds, or an owned
/// guard it took and has not dropped, wherever that guard is now (an owned
/// guard taken on another thread and moved here is not seen). A record since released
/// and taken by another thread may answer for that thread: a false "yes",
/// which only makes a producer skip helping and a drain leave callbacks to
/// the reclaim thread (`callbacks.rs`), never a false "no" for a record
/// this thread still holds. Once the thread's locals that it reads are
/// destroyed it answers "yes": it cannot tell (it answered "no" once, and a
/// producer holding an owned guard in a thread-local destroyed later ran
/// its callbacks from an earlier destructor: a reviewer's test). (Local
/// guards were not counted once: a drain inside another domain's local
/// guard, which the map takes on its caller's domain, ran callbacks there:
/// an attack round's test.)
#[cfg_attr(rcu_loom, allow(dead_code))]
pub(crate) fn reading_in_any_domain() -> bool {
    #[cfg(not(rcu_loom))]
    {
        LOCAL_GUARDS.try_with(std::cell::Cell::get).unwrap_or(0) > 0
            || holds_owned_guard_it_took()
            || MINE
                .try_with(|m| {
                    m.borrow()
                        .iter()
                        .any(|w| w.upgrade().is_some_and(|r| r.in_critical_section()))
                })
                .unwrap_or(true)
    }
    #[cfg(rcu_loom)]
    {
        false
    }
}

/// Called on the owner thread just before an orphaned record is released at
/// its outermost unlock: the process-wide domain clears its thread-local
/// pointer to the record there. (Set by the layer above, which this module
/// does not import.)
#[cfg_attr(rcu_loom, allow(dead_code))]
pub(crate) static ORPHAN_RELEASED: std::sync::OnceLock<fn(&Record)> = std::sync::OnceLock::new();

/// [`Record::flags`]: a forced grace period waits for the reader's exit.
const WAITING: u8 = 1;
/// [`Record::flags`]: release the record at its outermost unlock.
const ORPHANED: u8 = 2;
/// [`Record::flags`], only with [`ORPHANED`]: the owner let go of the
/// record inside a critical section (a leaked guard, for stall warnings).
const EXITED: u8 = 8;
/// [`Record::nesting`]: the record belongs to a fence-mode domain (set at
/// creation, never cleared): no unlock finds the nesting word 0, so the
/// outermost unlock goes out of line, to its fence.
const FENCE_MODE: u64 = 1 << 63;

/// Whether the reader holds up the grace period `gp`.
#[inline]
pub(crate) fn holding_up(r: &Record, gp: u64) -> bool {
    // Acquire: pairs with the reader's Release stores of `ctr` (0 at unlock,
    // the snapshot at lock): once we see either, every access of the critical
    // section before it is done, so the memory it read may be reclaimed.
    let c = r.ctr.load(Ordering::Acquire);
    is_snapshot(c) && c != gp
}

/// Whether the reader is inside a critical section, of any grace period (a
/// hint for callback pacing: a reader is running).
#[cfg(not(rcu_loom))]
#[inline]
pub(crate) fn reading(r: &Record) -> bool {
    // Relaxed: a hint, ordered with nothing; `holding_up` is the scan that
    // decides the grace period.
    is_snapshot(r.ctr.load(Ordering::Relaxed))
}

/// The records of one domain. Records are never freed while the domain
/// lives: a released record goes on the free list for the next thread, so a
/// pointer to a record stays valid for the life of its domain.
pub(crate) struct Registry {
    pub(crate) records: Vec<Arc<Record>>,
    free: Vec<usize>,
}

impl Registry {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            Registry { records: Vec::new(), free: Vec::new() }
        }
    }

    /// Takes a free record or makes one, owned by the calling thread.
    fn acquire(&mut self, read_side: &ReadSide) -> Arc<Record> {
        let rec = match self.free.pop() {
            Some(i) => Arc::clone(&self.records[i]),
            None => {
                let rec = Arc::new(Record::new(read_side));
                self.records.push(Arc::clone(&rec));
                rec
            }
        };
        lock(&rec.cold).owner = Some(thread::current());
        rec
    }

    /// Makes a record for owned guards; it lives in the domain's owned-guard
    /// pool between guards.
    fn acquire_owned(&mut self, read_side: &ReadSide) -> Arc<Record> {
        let rec = Arc::new(Record::new(read_side));
        self.records.push(Arc::clone(&rec));
        rec
    }

    /// Gives a record back when its thread is done with it.
    ///
    /// A record still inside a critical section (a guard was leaked with
    /// `mem::forget`, or outlives the thread-local registration during thread
    /// teardown) is kept registered and never reused: grace periods keep
    /// waiting for it, as they must, and its memory stays valid for the late
    /// unlock.
    ///
    /// Returns the record's notifiers, for the caller to drop once it holds
    /// no lock: their closures are user code.
    #[must_use = "drop the notifiers after releasing the registry lock"]
    fn release(&mut self, rec: &Record) -> Option<Notifiers> {
        let mut cold = lock(&rec.cold);
        let notifiers = cold.notifiers.take();
        if rec.in_critical_section() {
            // Kept registered (grace periods wait for it, as they must)
            // until its outermost unlock, which releases it: a guard kept in
            // a thread-local destroyed after the registration. A guard leaked
            // with `mem::forget` never unlocks: the stall warning says so.
            // Relaxed: read by this thread's later unlock, and by stall
            // warnings (a report).
            rec.flags.fetch_or(ORPHANED | EXITED, Ordering::Relaxed);
            return notifiers;
        }
        cold.owner = None;
        drop(cold);
        let i = self
            .records
            .iter()
            .position(|r| std::ptr::eq(&**r, rec))
            .expect("released record is not in its registry");
        self.free.push(i);
        notifiers
    }

    /// Releases an orphaned record at its outermost unlock (see
    /// [`Record::orphan`]). Its notifiers went with its owner.
    fn release_orphan(&mut self, rec: &Record) -> Option<Notifiers> {
        // Relaxed: only the thread that unlocks it touches these bits now.
        rec.flags.fetch_and(!(ORPHANED | EXITED), Ordering::Relaxed);
        self.release(rec)
    }

    /// In the child of a `fork()`: frees the records of the threads that do
    /// not exist there (every thread but the caller), even those inside a
    /// critical section, which no thread can ever leave now, and the records
    /// of the local guards those threads held ([`LocalReadGuard`](crate::LocalReadGuard)s: tied to
    /// their thread, so never dropped in the child). `colds` are the
    /// records' `cold` data, locked, in the order of `records`. Records of
    /// owned guards stay as they are (a guard in use exists in the child's
    /// memory and may be dropped there), and so do the caller's own; a
    /// notifier call that a vanished grace-period leader was making on any
    /// record is forgotten. Returns how many records were freed.
    ///
    /// A freed record's notifiers are leaked, not dropped: they are user
    /// closures whose captures may belong to the thread that is gone (a
    /// lock it held, say), and this runs in a fork handler.
    ///
    /// # Safety
    /// The caller is the only thread of the process (a fork child's
    /// handler), and holds the registry's lock and every record's `cold`
    /// lock (`colds`).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    pub(crate) unsafe fn free_dead_threads_records(
        &mut self,
        colds: &mut [crate::sync::MutexGuard<'_, Cold>],
        me: std::thread::ThreadId,
    ) -> usize {
        debug_assert_eq!(colds.len(), self.records.len());
        let mut freed = 0;
        for (i, (rec, cold)) in self.records.iter().zip(colds.iter_mut()).enumerate() {
            // A grace period led by a thread the child does not have may
            // have been calling a notifier (of a record that stays): that
            // call never ends, and a drop of its handle would wait for it.
            for (_, n) in cold.notifiers.iter().flat_map(|l| l.iter()) {
                n.forget_other_threads_call();
            }
            // A thread's own record, or the record of a local guard held
            // now (which only its taker can drop): dead with a taker the
            // child does not have. (A held local guard's record held up
            // every grace period of its domain in the child: a fork while
            // another thread ran a map's internal read on a private domain
            // hung the child.) A pooled record is idle (unlocked before it
            // is pooled) and stays in its pool, whoever took it last: freed
            // here too, it would be handed to a thread and to a guard at
            // once.
            let thread_record = cold.taken_at.is_none();
            let held_local =
                cold.taken_at.is_some_and(TakenAt::is_local) && rec.in_critical_section();
            let dead =
                (thread_record || held_local) && cold.owner.as_ref().is_some_and(|t| t.id() != me);
            if !dead {
                continue;
            }
            cold.taken_at = None;
            // SAFETY: the record's owner does not exist in this process,
            // and the caller is its only thread: nothing else touches the
            // owner-only fields.
            unsafe { rec.reset_after_fork() };
            std::mem::forget(cold.notifiers.take());
            std::mem::forget(cold.owner.take());
            self.free.push(i);
            freed += 1;
        }
        freed
    }

    /// Records currently owned by a thread or an owned guard's pool.
    pub(crate) fn registered(&self) -> usize {
        self.records.len() - self.free.len()
    }

    /// Whether a critical section in this registry may be the calling
    /// thread's: one of its own, or an owned guard it took that is still
    /// held (most likely here: owned guards can move to other threads, but
    /// rarely do while their taker keeps working). For helping, which
    /// must not wait for a grace period the caller may be holding up (loom
    /// models only: natively, [`reading_in_any_domain`] answers without a
    /// lock).
    #[cfg(rcu_loom)]
    pub(crate) fn current_thread_may_be_reading(&self) -> bool {
        let me = thread::current().id();
        self.records.iter().any(|r| {
            r.in_critical_section()
                && lock(&r.cold).owner.as_ref().map(thread::Thread::id) == Some(me)
        })
    }

    /// Whether the calling thread holds a critical section in this registry
    /// (owned guards, which may be anywhere, aside; local guards, which stay
    /// on the thread that took them, included).
    pub(crate) fn current_thread_reading(&self) -> bool {
        let me = thread::current().id();
        self.records.iter().any(|r| {
            r.in_critical_section() && {
                let cold = lock(&r.cold);
                cold.taken_at.is_none_or(TakenAt::is_local)
                    && cold.owner.as_ref().map(thread::Thread::id) == Some(me)
            }
        })
    }
}

/// The guard logic shared by [`crate::ReadGuard`] and [`crate::DomainGuard`].
pub(crate) struct RawGuard<'a> {
    pub(crate) rec: &'a Record,
    /// Guards stay on the thread that took them: `!Send` and `!Sync`.
    _not_send: PhantomData<*const ()>,
}

impl<'a> RawGuard<'a> {
    /// Enters a critical section on `rec`, whose domain's counter is
    /// `gp_ctr`.
    #[inline(always)]
    pub(crate) fn new(rec: &'a Record, gp_ctr: &AtomicU64) -> Self {
        rec.lock(gp_ctr);
        Self::entered(rec)
    }

    /// The guard of a critical section the caller has just entered on `rec`
    /// (one level of it: dropping the guard leaves that level).
    #[inline(always)]
    pub(crate) fn entered(rec: &'a Record) -> Self {
        RawGuard {
            rec,
            _not_send: PhantomData,
        }
    }
}

impl Drop for RawGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.rec.unlock();
    }
}

/// A registered notifier; dropping it unregisters the notifier.
///
/// Returned by [`on_force_quiescent`](crate::on_force_quiescent) and
/// [`Reader::on_force_quiescent`](crate::Reader::on_force_quiescent). When the
/// thread exits, its notifiers are removed with its registration and dropping
/// the handle afterwards does nothing.
///
/// Once the drop returns the notifier is never called again, and a call in
/// progress on another thread (a grace period's) has returned: the drop
/// waits for it, so a notifier must not wait for the thread that drops its
/// handle. A drop does not wait for a call on its own thread (a notifier
/// that drops its own handle).
#[must_use = "dropping the handle unregisters the notifier at once"]
pub struct NotifierHandle {
    /// `None`: registered nowhere (see [`NotifierHandle::inert`]).
    rec: Option<Arc<Record>>,
    id: u64,
    /// The notifier, even once its record let go of it: a thread's exit
    /// takes its notifiers out of the record before it removes them, and a
    /// drop on another thread meanwhile must still wait for a call.
    notifier: std::sync::Weak<Notifier>,
}

impl NotifierHandle {
    pub(crate) fn register(rec: Arc<Record>, f: impl Fn() + Send + Sync + 'static) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Relaxed: only uniqueness matters.
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = std::sync::Arc::new(Notifier::new(f));
        let notifier = std::sync::Arc::downgrade(&f);
        lock(&rec.cold)
            .notifiers
            .get_or_insert_with(Box::default)
            .push((id, f));
        NotifierHandle {
            rec: Some(rec),
            id,
            notifier,
        }
    }

    /// A handle of a notifier that was not registered (the thread is being
    /// torn down); dropping it does nothing.
    #[cfg_attr(rcu_loom, allow(dead_code))]
    pub(crate) fn inert() -> Self {
        NotifierHandle {
            rec: None,
            id: 0,
            notifier: std::sync::Weak::new(),
        }
    }
}

impl Drop for NotifierHandle {
    fn drop(&mut self) {
        // The closure is user code (its captures' `Drop` too): drop it only
        // after the record's lock is released.
        let Some(rec) = &self.rec else { return };
        let removed = {
            let mut cold = lock(&rec.cold);
            cold.notifiers.as_mut().and_then(|l| {
                let i = l.iter().position(|(id, _)| *id == self.id)?;
                Some(l.remove(i))
            })
        };
        // Removed (and a call in progress waited for) even if the record
        // let go of it first (its thread's exit, which removes it too):
        // while a grace period holds a copy, it may still be called.
        if let Some(n) = self.notifier.upgrade() {
            n.remove();
        }
        drop(removed);
    }
}

impl std::fmt::Debug for NotifierHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierHandle")
            .field("id", &self.id)
            .finish()
    }
}

#[cfg(all(test, not(rcu_loom)))]
mod tests {
    use super::*;

    /// A read side in `mode` (a `static`: records point to it), its counter
    /// set to `gp`.
    fn read_side(mode: Mode, gp: u64) -> &'static ReadSide {
        let rs: &'static ReadSide = Box::leak(Box::new(ReadSide::new(u64::MAX)));
        rs.set_mode(mode);
        rs.gp_ctr.0.store(gp, Ordering::SeqCst);
        rs
    }

    /// Nested locks, an outer guard dropped first, and `quiesce`, checking
    /// the counter the grace period scans after each step.
    fn nest_and_leave(mode: Mode, gp: u64) {
        let rs = read_side(mode, gp);
        let rec = rs.register();
        let idle = rec.ctr.load(Ordering::SeqCst);
        assert_eq!(idle, if mode == Mode::Fence { IDLE_SLOW } else { 0 });
        assert!(!holding_up(&rec, gp + 2) && !rec.in_critical_section());
        rec.lock(&rs.gp_ctr.0);
        rec.lock(&rs.gp_ctr.0);
        assert_eq!(rec.ctr.load(Ordering::SeqCst), gp);
        assert!(holding_up(&rec, gp + 2) && rec.in_critical_section());
        assert!(!rec.quiesce(), "nested: no quiescent state");
        rec.unlock(); // either guard: only the count says which is last
        assert!(holding_up(&rec, gp + 2), "one level still held");
        rs.gp_ctr.0.store(gp + 2, Ordering::SeqCst);
        assert!(rec.quiesce());
        assert_eq!(rec.ctr.load(Ordering::SeqCst), gp + 2);
        rec.unlock();
        assert_eq!(rec.ctr.load(Ordering::SeqCst), idle);
        assert!(!holding_up(&rec, gp + 4) && !rec.in_critical_section());
        rs.unregister(&rec);
    }

    #[test]
    fn membarrier_mode_records_nest_and_leave() {
        nest_and_leave(Mode::Membarrier, 1);
    }

    #[test]
    fn fence_mode_records_nest_and_leave() {
        nest_and_leave(Mode::Fence, 1);
    }

    /// Past 2^62 grace periods a snapshot is negative as an `i64`: the lock
    /// takes the out-of-line path, which must still nest (only speed
    /// depends on the counter staying small).
    #[test]
    fn snapshots_past_two_to_the_63_still_nest() {
        for mode in [Mode::Membarrier, Mode::Fence] {
            nest_and_leave(mode, (1 << 63) + 1);
            nest_and_leave(mode, u64::MAX - 4);
        }
    }

    /// The record the read side touches stays one cache line, with the
    /// fields the hot path reads first.
    #[test]
    fn the_hot_fields_share_the_record_line() {
        assert_eq!(align_of::<Record>(), 64);
        assert!(std::mem::offset_of!(Record, flags) < 24);
    }
}
