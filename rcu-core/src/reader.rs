//! Reader records, the registry the grace period scans, and read-side guards.
//!
//! This module and [`crate::queue`] hold the engine's `unsafe` code: turning
//! the thread-local record pointer back into a reference, and the owner-only
//! nesting counter.

use crate::barrier;
use crate::domain::Inner;
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering, lock, thread};
use std::cell::Cell;
use std::marker::PhantomData;

/// A force-quiescent notifier: called on the grace-period thread. (A `std`
/// `Arc` even under loom, whose `Arc` cannot hold a `dyn Fn`.)
pub(crate) type NotifierFn = std::sync::Arc<dyn Fn() + Send + Sync + 'static>;

/// A record's notifiers, by handle id.
#[allow(clippy::box_collection)] // one word in the record's line, not three
pub(crate) type Notifiers = Box<Vec<(u64, NotifierFn)>>;

/// Data of a record that only slow paths touch.
#[derive(Default)]
pub(crate) struct Cold {
    /// Boxed to keep the record in one cache line (one word, not a `Vec`'s
    /// three; notifiers are rare).
    pub(crate) notifiers: Option<Notifiers>,
    /// The thread that owns the record (its id, and its name for stall
    /// warnings), `None` while the record is free or serves owned guards.
    pub(crate) owner: Option<thread::Thread>,
    /// For a record of owned guards (whose `owner` is the thread that took
    /// the current or last guard): where that guard was taken.
    pub(crate) taken_at: Option<&'static std::panic::Location<'static>>,
}

/// One reader thread's state, scanned by the grace period.
///
/// The fields the read side touches come first and the whole record is
/// aligned to (and fits in) one cache line, so a reader's lock and unlock
/// touch exactly one line of shared memory, and two readers never share one.
#[repr(C, align(64))]
pub(crate) struct Record {
    /// 0 outside any critical section; otherwise the domain's `gp_ctr` as it
    /// was read at the outermost lock. Written only by the owner.
    pub(crate) ctr: AtomicU64,
    /// Critical sections entered beyond the outermost one. Owner-only.
    nesting: Cell<u32>,
    /// The barrier mode, [`barrier::Mode::as_u8`], fixed at registration.
    mode: u8,
    /// Set by a forced grace period: "signal the event when you leave".
    pub(crate) waiting: AtomicBool,
    /// The domain the record belongs to, for the unlock slow path.
    domain: *const Inner,
    /// Notifiers and owner.
    pub(crate) cold: Mutex<Cold>,
}

// A reader record fits one cache line (DESIGN: readers touch one line).
#[cfg(all(not(rcu_loom), target_pointer_width = "64"))]
const _: () = assert!(size_of::<Record>() == 64);

// SAFETY: the only non-`Sync` parts are `nesting` and `domain`. `nesting` is
// read and written only by the thread that owns the record (lock, unlock and
// release all run on the owner; the registry never touches it). `domain` is
// written once before the record is shared and points to a domain that
// outlives the record's registration (see `Inner`).
unsafe impl Sync for Record {}
// SAFETY: as above; a record moves between threads only inside an `Arc` held
// by the registry, and ownership of `nesting` moves with registration.
unsafe impl Send for Record {}

impl Record {
    fn new(domain: &Inner, mode: barrier::Mode) -> Self {
        Record {
            ctr: AtomicU64::new(0),
            nesting: Cell::new(0),
            mode: mode.as_u8(),
            waiting: AtomicBool::new(false),
            domain,
            cold: Mutex::new(Cold::default()),
        }
    }

    /// Enters a critical section.
    #[inline(always)]
    pub(crate) fn lock(&self, gp_ctr: &AtomicU64) {
        // Relaxed: `ctr` is written only by this thread; this reads our own
        // last store.
        if self.ctr.load(Ordering::Relaxed) == 0 {
            // Relaxed: a stale value only makes this reader look older, so a
            // grace period waits for it longer than needed, never shorter.
            let snapshot = gp_ctr.load(Ordering::Relaxed);
            // Release: pairs with the Acquire loads of `ctr` in
            // `Inner::holding_up`. A grace period that reads this value
            // (rather than the 0 stored by our last unlock) must still see
            // every access of the critical section before, and C++20 release
            // sequences no longer carry a later plain store. On x86 this is
            // the same `mov` as Relaxed.
            self.ctr.store(snapshot, Ordering::Release);
            // Light barrier: orders the store above before the loads of the
            // critical section (the Dekker pair with the heavy barrier that
            // follows an updater's unpublish).
            barrier::light(self.mode);
        } else {
            let n = self.nesting.get();
            self.nesting.set(
                n.checked_add(1)
                    .expect("read_lock nested more than u32::MAX deep"),
            );
        }
    }

    /// Leaves a critical section (one guard's worth).
    #[inline(always)]
    pub(crate) fn unlock(&self) {
        let n = self.nesting.get();
        if n == 0 {
            // Release: pairs with the Acquire loads of `ctr` in
            // `Inner::holding_up`: a grace period that sees 0 sees every
            // access of this critical section done, so it may reclaim.
            self.ctr.store(0, Ordering::Release);
            // Light barrier: orders the store above before the load of
            // `waiting` (Dekker pair with the forced state's `waiting` store,
            // heavy barrier, `ctr` scan): either the grace period sees 0 or
            // we see `waiting`.
            barrier::light(self.mode);
            // Relaxed: ordered by the light barrier above.
            if self.waiting.load(Ordering::Relaxed) {
                self.wake_grace_period();
            }
        } else {
            self.nesting.set(n - 1);
        }
    }

    /// The forced state's slow path: a grace period waits on us.
    #[cold]
    #[inline(never)]
    fn wake_grace_period(&self) {
        // Relaxed: the event's SeqCst `set` below orders it; clearing early
        // only saves further wake-ups.
        self.waiting.store(false, Ordering::Relaxed);
        self.domain().reader_woke();
    }

    /// The domain the record belongs to.
    pub(crate) fn domain(&self) -> &Inner {
        // SAFETY: `domain` was set at creation and the domain outlives its
        // records: the records live in the domain's registry (a `static`, or
        // inside the domain's `Arc<Inner>`), and every path that reaches a
        // record (a guard, a `Reader`, the thread-local registration of the
        // global domain, a `NotifierHandle` only for its own `cold` mutex)
        // holds the domain alive or is the `static` one.
        unsafe { &*self.domain }
    }

    /// Whether the owner is inside a critical section. Owner thread only, or
    /// under the registry lock for a best-effort look.
    pub(crate) fn in_critical_section(&self) -> bool {
        // Relaxed: read by the owner (its own store) or for a misuse check.
        self.ctr.load(Ordering::Relaxed) != 0
    }

    /// Leaves a critical section and enters a new one at the current grace
    /// period, if this is the only level held. Returns whether it did.
    pub(crate) fn quiesce(&self, gp_ctr: &AtomicU64) -> bool {
        if self.nesting.get() != 0 {
            return false;
        }
        self.unlock();
        self.lock(gp_ctr);
        true
    }
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
    pub(crate) fn acquire(&mut self, domain: &Inner, mode: barrier::Mode) -> Arc<Record> {
        let rec = match self.free.pop() {
            Some(i) => Arc::clone(&self.records[i]),
            None => {
                let rec = Arc::new(Record::new(domain, mode));
                self.records.push(Arc::clone(&rec));
                rec
            }
        };
        lock(&rec.cold).owner = Some(thread::current());
        rec
    }

    /// Makes a record for owned guards: no owner thread; it lives in the
    /// domain's owned-guard pool between guards.
    pub(crate) fn acquire_owned(&mut self, domain: &Inner, mode: barrier::Mode) -> Arc<Record> {
        let rec = Arc::new(Record::new(domain, mode));
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
    pub(crate) fn release(&mut self, rec: &Record) -> Option<Notifiers> {
        let mut cold = lock(&rec.cold);
        let notifiers = cold.notifiers.take();
        if rec.in_critical_section() {
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

    /// Records currently owned by a thread.
    pub(crate) fn registered(&self) -> usize {
        self.records.len() - self.free.len()
    }

    /// Whether the calling thread holds a critical section in this registry.
    pub(crate) fn current_thread_reading(&self) -> bool {
        let me = thread::current().id();
        self.records.iter().any(|r| {
            r.in_critical_section() && {
                let cold = lock(&r.cold);
                // Owned guards' records belong to no thread.
                cold.taken_at.is_none() && cold.owner.as_ref().map(thread::Thread::id) == Some(me)
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
    #[inline(always)]
    pub(crate) fn new(rec: &'a Record, gp_ctr: &AtomicU64) -> Self {
        rec.lock(gp_ctr);
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
#[must_use = "dropping the handle unregisters the notifier at once"]
pub struct NotifierHandle {
    rec: Arc<Record>,
    id: u64,
}

impl NotifierHandle {
    pub(crate) fn register(rec: Arc<Record>, f: NotifierFn) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Relaxed: only uniqueness matters.
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&rec.cold)
            .notifiers
            .get_or_insert_with(Box::default)
            .push((id, f));
        NotifierHandle { rec, id }
    }
}

impl Drop for NotifierHandle {
    fn drop(&mut self) {
        // The closure is user code (its captures' `Drop` too): drop it only
        // after the record's lock is released.
        let removed = {
            let mut cold = lock(&self.rec.cold);
            let list = cold.notifiers.as_mut();
            list.and_then(|l| {
                let i = l.iter().position(|(id, _)| *id == self.id)?;
                Some(l.remove(i))
            })
        };
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
