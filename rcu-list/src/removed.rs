//! [`Removed`]: an element unlinked from a list that readers may still see.

use crate::adapter::OwningPointer;
use crate::raw::Retired;
use rcu_core::RcuDomain;
use std::fmt;
use std::ops::Deref;

/// An element removed from a list (by `remove`, `replace` or a pop), which
/// readers that found it before may still be reading: rcu-core's
/// [`Unlinked`](rcu_core::Unlinked) for intrusive elements.
///
/// It dereferences to the element. Dropping it hands the element to the
/// list's domain ([`RcuDomain::call_rcu`]), which drops the owning pointer
/// after a grace period, on its reclaim thread or, for a thread that keeps
/// dropping them, on that thread at a later drop (see
/// [`Config::offload_callbacks`](rcu_core::Config::offload_callbacks)); the
/// drop never waits for that grace period. [`into_inner`](Self::into_inner) waits for the grace
/// period instead and gives the pointer back, its link free again, so the
/// element can be inserted anew.
///
/// **Under a memory limit** ([`Config::memory_limit`](rcu_core::Config::memory_limit)),
/// dropping a `Removed` is a `call_rcu` like any other: while the domain is
/// over its limit, a thread outside any critical section (and outside a
/// `retain` closure) that drops one helps run ready callbacks (other elements' drops, of any list or thread
/// of the domain) on its own thread, for up to about a millisecond. So do
/// not drop a `Removed` while holding a lock that an element's `Drop` (or
/// another callback of the domain) takes. Below the limit, drops run on
/// the reclaim thread, on a thread in `drain` (which runs the callbacks
/// queued before it itself when the reclaim thread is not collecting them
/// already), or on the thread that dropped them, at a later drop (its own
/// only); a domain with `offload_callbacks` set keeps them off it.
///
/// Until then the element's link stays *claimed*: inserting the element
/// (another `Arc` to it, say) into any list panics, because a reader may
/// still be standing on it and following its old `next` link.
///
/// ```
/// use rcu_list::{ListLink, RcuList, intrusive_adapter};
///
/// struct Job { id: u32, link: ListLink }
/// intrusive_adapter!(JobAdapter = Box<Job>: Job { link => ListLink });
///
/// let queue = RcuList::<JobAdapter>::new();
/// queue.push_back(Box::new(Job { id: 7, link: ListLink::new() }));
/// let job = queue.pop_front().unwrap();
/// assert_eq!(job.id, 7);                // still readable
/// let job: Box<Job> = job.into_inner(); // after a grace period
/// assert!(!job.link.is_linked());
/// queue.push_front(job);                // free to link again
/// ```
#[must_use = "dropping a Removed retires the element after a grace period; bind it or drop it explicitly"]
pub struct Removed<P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    /// Always `Some` until `into_inner` or `drop` takes it.
    raw: Option<Retired<P>>,
    domain: Domain,
}

/// The domain a removed element retires through. The process-wide one is
/// named rather than cloned: cloning any `RcuDomain` handle bumps a shared
/// owner count, one contended atomic per removal on every writer thread.
enum Domain {
    #[cfg(not(rcu_loom))]
    Global,
    Other(RcuDomain),
}

impl Domain {
    fn of(domain: &RcuDomain) -> Self {
        #[cfg(not(rcu_loom))]
        if domain.is_global() {
            return Domain::Global;
        }
        Domain::Other(domain.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&RcuDomain) -> R) -> R {
        match self {
            #[cfg(not(rcu_loom))]
            Domain::Global => f(&RcuDomain::global()),
            Domain::Other(d) => f(d),
        }
    }
}

impl<P> Removed<P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    pub(crate) fn new(raw: Retired<P>, domain: &RcuDomain) -> Self {
        Removed {
            raw: Some(raw),
            domain: Domain::of(domain),
        }
    }

    fn take(&mut self) -> Retired<P> {
        self.raw
            .take()
            .expect("rcu-list: Removed used after it was consumed")
    }

    /// Waits for a grace period of the list's domain, after which no reader
    /// can see the element, and gives its pointer back, its link free.
    ///
    /// # Panics
    /// Inside a read-side critical section of the domain on this thread, or
    /// in a reclaim callback, as [`rcu_core::synchronize`]. Never call it
    /// while this task holds an [`OwnedReadGuard`](rcu_core::OwnedReadGuard)
    /// of the domain: the grace period would wait for it forever.
    pub fn into_inner(mut self) -> P {
        // Waits with the element still in `self`: should the wait panic,
        // dropping `self` retires the element instead of leaking it.
        self.domain.with(RcuDomain::synchronize);
        // SAFETY: a full grace period has passed since the element was
        // unlinked (before this handle was made).
        unsafe { self.take().finish() }
    }

    /// Awaits a grace period without blocking the executor thread, then
    /// gives the pointer back: the async form of
    /// [`into_inner`](Self::into_inner). Do not hold a guard of the domain
    /// across the `.await`. A future dropped before it completes retires the
    /// element, as dropping the handle does.
    #[cfg(not(rcu_loom))]
    pub async fn into_inner_async(mut self) -> P {
        // As in `into_inner`: the element stays in `self` across the await.
        match &self.domain {
            Domain::Global => RcuDomain::global().synchronize_async().await,
            Domain::Other(d) => d.synchronize_async().await,
        }
        // SAFETY: as in `into_inner`.
        unsafe { self.take().finish() }
    }
}

impl<P> Deref for Removed<P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    type Target = P::Target;

    #[inline]
    fn deref(&self) -> &P::Target {
        self.raw
            .as_ref()
            .expect("rcu-list: Removed used after it was consumed")
            .value()
    }
}

impl<P> Drop for Removed<P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.domain.with(|d| raw.retire(d));
        }
    }
}

impl<P> fmt::Debug for Removed<P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Removed").field(&**self).finish()
    }
}
