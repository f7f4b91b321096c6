//! The [`Guard`] trait every reader-facing API takes, and the owned guard.

use crate::domain::{Handle, RcuDomain};
use crate::reader::Record;
use crate::sync::Arc;
use std::fmt;

pub(crate) mod sealed {
    /// Only this crate's guards are guards: a [`Guard`](super::Guard) is a
    /// promise that a read-side critical section of the domain it names is
    /// open for as long as the guard lives, which code outside the engine
    /// cannot make.
    pub trait Sealed {}
}

/// A read-side critical section: [`ReadGuard`](crate::ReadGuard) (the
/// process-wide domain, this thread), [`DomainGuard`](crate::DomainGuard)
/// (an [`RcuDomain`], this thread) or [`OwnedReadGuard`] (any domain, any
/// thread).
///
/// Everything that reads RCU-protected data takes `&'g impl Guard` and hands
/// out references that live for `'g`. The trait is sealed: memory safety
/// rests on a guard really holding a critical section of the domain it
/// names, so only this crate implements it.
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
    /// Whether this guard holds a critical section of `domain`.
    fn protects(&self, domain: &RcuDomain) -> bool;
}

/// A read-side critical section that is not tied to a thread, from
/// [`read_lock_owned`](crate::read_lock_owned) or
/// [`RcuDomain::read_lock_owned`]: `Send + Sync + 'static`.
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
/// the process, so it orders the guard's accesses whichever thread holds
/// the guard at that moment (a thread that is not running has passed
/// through the kernel's context switch, a full barrier). Moving the guard to
/// another thread goes through a synchronising hand-off (a channel, a task
/// wake-up), which orders the first thread's accesses before the second's.
///
/// # Cost
/// Taking one pops a record from a per-thread-shard pool (an uncontended
/// lock) and records where it was taken; dropping one pushes it back: tens
/// of nanoseconds, against about one for [`read_lock`](crate::read_lock).
/// Records are reused, so a grace period scans as many owned-guard records
/// as were ever alive at once, not as many as were ever taken.
///
/// # Deadlock
/// Waiting for a grace period ([`synchronize`](crate::synchronize),
/// [`drain`](crate::drain), [`Unlinked::into_inner`](crate::Unlinked::into_inner),
/// awaiting [`synchronize_async`](crate::synchronize_async)) while the same
/// task holds an owned guard of that domain can never end: the grace period
/// waits for the guard. Unlike a `ReadGuard` this cannot be detected, since
/// the guard is not tied to a thread; a stall warning names the place the
/// guard was taken.
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
#[must_use = "the critical section ends when the guard is dropped"]
pub struct OwnedReadGuard {
    rec: Option<Arc<Record>>,
    domain: Handle,
}

impl OwnedReadGuard {
    #[track_caller]
    pub(crate) fn new(domain: Handle) -> Self {
        let rec = domain.lock_owned(std::panic::Location::caller());
        OwnedReadGuard {
            rec: Some(rec),
            domain,
        }
    }
}

impl Drop for OwnedReadGuard {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.domain.unlock_owned(rec);
        }
    }
}

impl sealed::Sealed for OwnedReadGuard {}

impl Guard for OwnedReadGuard {
    #[inline]
    fn protects(&self, domain: &RcuDomain) -> bool {
        std::ptr::eq(&*self.domain, domain.inner_ptr())
    }
}

impl fmt::Debug for OwnedReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedReadGuard")
            .field("domain", &self.domain.id)
            .finish_non_exhaustive()
    }
}
