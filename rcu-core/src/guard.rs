//! The [`Guard`] trait every reader-facing API takes, and the three guards:
//! [`ReadGuard`], [`DomainGuard`] and [`OwnedReadGuard`].

use crate::registry::{RawGuard, Record};
use crate::sync::Arc;
use std::fmt;

pub(crate) mod sealed {
    /// Only this crate's guards are guards: a [`Guard`](super::Guard) is a
    /// promise that a read-side critical section of the domain it names is
    /// open for as long as the guard lives, which code outside the engine
    /// cannot make.
    pub trait Sealed {}
}

/// The identity of an RCU domain, unique for the life of the process (never
/// reused, unlike an address): [`RcuDomain::id`](crate::RcuDomain::id),
/// [`Guard::domain_id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub(crate) u64);

impl DomainId {
    /// The process-wide domain's.
    pub const GLOBAL: DomainId = DomainId(0);
}

/// A read-side critical section: [`ReadGuard`] (the process-wide domain,
/// this thread), [`DomainGuard`] (an [`RcuDomain`](crate::RcuDomain), this
/// thread) or [`OwnedReadGuard`] (any domain, any thread).
///
/// Everything that reads RCU-protected data takes `&'g impl Guard` and hands
/// out references that live for `'g`, after checking that the guard protects
/// the data's domain ([`RcuDomain::assert_guard`](crate::RcuDomain::assert_guard)).
///
/// The trait is sealed: memory safety rests on a guard really holding a
/// critical section of the domain it names, so only this crate implements
/// it.
///
/// ```
/// use rcu_core::{Guard, RcuCell};
///
/// fn read<G: Guard>(cell: &RcuCell<u32>, guard: &G) -> u32 {
///     *cell.read(guard)
/// }
/// let cell = RcuCell::new(7);
/// assert_eq!(read(&cell, &rcu_core::read_lock()), 7);
/// assert_eq!(read(&cell, &rcu_core::read_lock_owned()), 7);
/// ```
pub trait Guard: sealed::Sealed {
    /// The domain whose critical section this guard holds.
    fn domain_id(&self) -> DomainId;
}

/// A read-side critical section of the process-wide domain, from
/// [`read_lock`](crate::read_lock). Neither `Send` nor `Sync`.
#[must_use = "the critical section ends when the guard is dropped"]
pub struct ReadGuard {
    raw: RawGuard<'static>,
}

impl ReadGuard {
    /// The guard of the critical section the caller has just entered on
    /// the thread's record of the process-wide domain.
    #[inline(always)]
    #[cfg_attr(rcu_loom, allow(dead_code))] // no process-wide domain under loom
    pub(crate) fn entered(rec: &'static Record) -> Self {
        ReadGuard {
            raw: RawGuard::entered(rec),
        }
    }

    /// Reports a quiescent state: leaves the critical section and enters
    /// a new one, so a grace period waiting for this thread can end.
    /// References read under the guard cannot survive the call (it takes
    /// `&mut self`). Returns `false`, doing nothing, when other guards
    /// nested with it (other `read_lock` guards of this thread) are held.
    /// Guards of the same domain with records of their own (a
    /// [`Reader`](crate::Reader)'s of [`RcuDomain::global`](crate::RcuDomain::global),
    /// a [`LocalReadGuard`]) do not count: each keeps its own critical
    /// section, so grace periods still wait for them, and this one's
    /// references are still gone.
    ///
    /// ```
    /// let mut guard = rcu_core::read_lock();
    /// for _ in 0..3 {
    ///     // ... a long-running loop's iteration under the guard ...
    ///     assert!(guard.quiescent());
    /// }
    /// ```
    pub fn quiescent(&mut self) -> bool {
        self.raw.rec.quiesce()
    }
}

impl sealed::Sealed for ReadGuard {}

impl Guard for ReadGuard {
    /// Always the process-wide domain: resolved by type, so the check in
    /// a read costs a compare with a constant.
    #[inline(always)]
    fn domain_id(&self) -> DomainId {
        DomainId::GLOBAL
    }
}

impl fmt::Debug for ReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").finish_non_exhaustive()
    }
}

/// A read-side critical section of an [`RcuDomain`](crate::RcuDomain); see
/// [`Reader::read_lock`](crate::Reader::read_lock). Neither `Send` nor
/// `Sync`.
#[must_use = "the critical section ends when the guard is dropped"]
pub struct DomainGuard<'r> {
    raw: RawGuard<'r>,
}

impl<'r> DomainGuard<'r> {
    #[inline(always)]
    pub(crate) fn new(rec: &'r Record) -> Self {
        DomainGuard {
            raw: RawGuard::new(rec, &rec.read_side().gp_ctr.0),
        }
    }

    /// Reports a quiescent state: leaves the critical section and enters a
    /// new one, so grace periods that waited for this thread can end.
    /// References read under the guard cannot survive it (it takes
    /// `&mut self`). Returns `false`, doing nothing, when other guards of
    /// the same [`Reader`](crate::Reader) (nested with it) are held. Guards
    /// with records of their own (another `Reader`'s, a
    /// [`LocalReadGuard`]) do not count: each keeps its own critical
    /// section, which grace periods still wait for.
    pub fn quiescent(&mut self) -> bool {
        self.raw.rec.quiesce()
    }
}

impl sealed::Sealed for DomainGuard<'_> {}

impl Guard for DomainGuard<'_> {
    #[inline]
    fn domain_id(&self) -> DomainId {
        DomainId(self.raw.rec.read_side().id)
    }
}

impl fmt::Debug for DomainGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainGuard").finish_non_exhaustive()
    }
}

/// Keeps an independent domain alive while an owned guard of it lives
/// (`None` for the process-wide domain, a `static`).
pub(crate) type KeepAlive = Option<std::sync::Arc<dyn Send + Sync>>;

/// A read-side critical section that is not tied to a thread, from
/// [`read_lock_owned`](crate::read_lock_owned) or
/// [`RcuDomain::read_lock_owned`](crate::RcuDomain::read_lock_owned):
/// `Send + Sync + 'static`.
///
/// Hold it across `.await` on a multi-threaded runtime, move it into another
/// thread, drop it there. It holds up grace periods of its domain like any
/// guard, and keeps the domain alive.
///
/// # Why it is correct on any thread
/// Each owned guard has a reader record of its own (pooled, not the
/// thread's), so the grace period scans it wherever the guard is. In
/// membarrier mode its lock and unlock use only compiler fences, like
/// [`read_lock`](crate::read_lock): the grace period's heavy barrier is a
/// `membarrier(2)` call that runs a full fence on *every* running thread of
/// the process, so it orders the guard's accesses whichever thread holds the
/// guard at that moment (a thread that is not running has passed through the
/// kernel's context switch, itself a full barrier). Moving the guard to
/// another thread goes through a synchronising hand-off (a channel, a task
/// wake-up), which orders the first thread's accesses before the second's.
///
/// # Cost
/// Taking one pops a record from the domain's pool (a lock sharded by
/// thread, so uncontended unless threads share a shard) and notes where it
/// was taken; dropping one pushes the record back. The runner's read-side
/// group measures it against [`read_lock`](crate::read_lock) and papaya's
/// `pin_owned`. Records are reused, so a grace period scans as many
/// owned-guard records as were ever alive at once, not as many as were ever
/// taken.
///
/// # Deadlock
/// Waiting for a grace period ([`synchronize`](crate::synchronize),
/// [`drain`](crate::drain), [`Unlinked::into_inner`](crate::Unlinked::into_inner),
/// awaiting [`synchronize_async`](crate::synchronize_async), dropping the
/// last handle of an independent domain, which runs its queued callbacks
/// first) while the same
/// task holds an owned guard of that domain can never end: the grace period
/// waits for the guard. Unlike a `ReadGuard` this cannot be detected (the
/// guard is not tied to a thread); the stall warning names the thread and
/// the source location where the guard was taken.
///
/// ```
/// let guard = rcu_core::read_lock_owned();
/// let cell = rcu_core::RcuCell::new(String::from("config"));
/// std::thread::scope(|s| {
///     s.spawn(move || {
///         assert_eq!(cell.read(&guard), "config");
///         drop(guard); // on another thread
///     });
/// });
/// ```
///
/// Queuing callbacks ([`call_rcu`](crate::call_rcu),
/// [`defer_drop`](crate::defer_drop), dropping an
/// [`Unlinked`](crate::Unlinked)) while the domain is over its
/// [`memory_limit`](crate::Config::memory_limit) makes the caller help run
/// callbacks, waiting up to a millisecond for more; a thread inside a
/// critical section skips the wait, since the grace period would wait for
/// it. For owned guards the engine counts the thread that took the guard:
/// while the guard is held, that thread never waits there (if the guard has
/// moved to another thread, its taker is then not slowed down either). The
/// thread it moved to is not recognised: while it holds the guard and the
/// domain stays over its limit, each of its retirements waits the full
/// millisecond for a grace period that its own guard holds up (a write
/// path that moves guards between threads, such as an async task resumed
/// elsewhere, should keep the domain under its limit or use no limit).
#[must_use = "the critical section ends when the guard is dropped"]
pub struct OwnedReadGuard {
    rec: Option<Arc<Record>>,
    /// Declared after `rec`: the domain outlives the record's return.
    _domain: KeepAlive,
    /// The token of the thread that took the guard, which counts it as
    /// held until it is dropped (`registry::owned_guard_taker`; `None` for
    /// a local guard's, counted on its thread instead).
    _taker: Option<std::sync::Arc<()>>,
}

impl OwnedReadGuard {
    /// Enters a critical section on a pooled record of `rec`'s domain.
    pub(crate) fn new(
        rec: Arc<Record>,
        domain: KeepAlive,
        taker: Option<std::sync::Arc<()>>,
    ) -> Self {
        OwnedReadGuard {
            rec: Some(rec),
            _domain: domain,
            _taker: taker,
        }
    }
}

impl Drop for OwnedReadGuard {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            let read_side: *const _ = rec.read_side();
            // SAFETY: `_domain` (dropped after this) keeps the `ReadSide`
            // alive, or it is the process-wide `static` one.
            unsafe { &*read_side }.unlock_owned(rec);
        }
    }
}

impl sealed::Sealed for OwnedReadGuard {}

impl Guard for OwnedReadGuard {
    #[inline]
    fn domain_id(&self) -> DomainId {
        match &self.rec {
            Some(rec) => DomainId(rec.read_side().id),
            None => unreachable!("an owned guard holds its record until dropped"),
        }
    }
}

/// A read-side critical section of an [`RcuDomain`](crate::RcuDomain) tied
/// to the thread that took it, without a registration: see
/// [`RcuDomain::read_lock_local`](crate::RcuDomain::read_lock_local). An
/// owned guard's record that stays on its thread, so that the engine can
/// tell that a wait for a grace period on that thread would wait for it.
/// Neither `Send` nor `Sync`.
#[must_use = "the critical section ends when the guard is dropped"]
pub struct LocalReadGuard {
    inner: OwnedReadGuard,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl LocalReadGuard {
    pub(crate) fn new(inner: OwnedReadGuard) -> Self {
        crate::registry::note_local_guard(true);
        LocalReadGuard {
            inner,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for LocalReadGuard {
    fn drop(&mut self) {
        // Counted off just before `inner` ends the critical section, on the
        // thread that took it (the guard is not `Send`).
        crate::registry::note_local_guard(false);
    }
}

impl sealed::Sealed for LocalReadGuard {}

impl Guard for LocalReadGuard {
    #[inline]
    fn domain_id(&self) -> DomainId {
        self.inner.domain_id()
    }
}

impl fmt::Debug for LocalReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalReadGuard")
            .field("domain", &self.domain_id())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OwnedReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedReadGuard")
            .field("domain", &self.domain_id())
            .finish_non_exhaustive()
    }
}
