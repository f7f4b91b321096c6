//! [`Removed`]: an entry taken out of the tree that readers may still see.

use super::Place;
use rcu_core::RcuDomain;
use std::fmt;
use std::ops::Deref;

/// A value removed from (or replaced in) an
/// [`RcuRadixTree`](crate::RcuRadixTree) that readers may still be reading.
///
/// It derefs to the value (shared access, as readers have). Dropping it drops
/// the value on the reclaim thread after a grace period (never waiting for
/// it; over a memory limit the dropping thread may help run ready callbacks:
/// see [`RcuDomain::call_rcu`](rcu_core::RcuDomain::call_rcu));
/// [`into_inner`](Self::into_inner) waits for a grace period here and returns
/// the value. It keeps the tree's domain alive.
///
/// ```
/// let tree = rcu_radix::RcuRadixTree::new();
/// tree.insert(7, String::from("seven"));
/// let old = tree.remove(7).unwrap();
/// assert_eq!((old.key(), old.as_str()), (7, "seven"));
/// assert_eq!(old.into_inner(), "seven"); // waits for a grace period
/// ```
pub struct Removed<V: Send + Sync + 'static> {
    place: Option<Place<V>>,
    domain: RcuDomain,
}

// SAFETY: a `Removed<V>` owns an entry that readers on other threads may
// share: moving it (and dropping the value elsewhere) needs `V: Send`,
// sharing it needs `V: Sync`; the type requires both.
unsafe impl<V: Send + Sync + 'static> Send for Removed<V> {}
// SAFETY: as above.
unsafe impl<V: Send + Sync + 'static> Sync for Removed<V> {}

impl<V: Send + Sync + 'static> Removed<V> {
    /// # Safety
    /// `place` is unlinked from its tree and owned by no one else; the
    /// tree's readers read under `domain`'s guards.
    pub(crate) unsafe fn new(place: Place<V>, domain: &RcuDomain) -> Self {
        Removed {
            place: Some(place),
            domain: domain.clone(),
        }
    }

    fn place(&self) -> &Place<V> {
        self.place
            .as_ref()
            .expect("a Removed holds its entry until consumed")
    }

    /// The entry's key.
    pub fn key(&self) -> u64 {
        self.place().key()
    }

    /// Waits for a grace period, after which no reader can see the value,
    /// and returns it.
    ///
    /// # Panics
    /// Inside a read-side critical section of the tree's domain on this
    /// thread, or inside a reclaim callback (as
    /// [`RcuDomain::synchronize`]). Never call it while this task holds an
    /// [`OwnedReadGuard`](rcu_core::OwnedReadGuard) of the tree's domain:
    /// that guard is not tied to the thread, so the call cannot tell, and
    /// the grace period would wait for it forever.
    pub fn into_inner(mut self) -> V {
        // If this panics, `self` still holds the entry and retires it as
        // usual when dropped.
        self.domain.synchronize();
        let place = self
            .place
            .take()
            .expect("a Removed holds its entry until consumed");
        // SAFETY: the entry was unlinked before `self` was made, `self` was
        // its only owner, and the grace period above has ended every critical
        // section that could still see it.
        unsafe { place.take() }
    }
}

impl<V: Send + Sync + 'static> Deref for Removed<V> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: the entry stays (neither dropped nor taken) until `self`
        // is dropped or consumed, which the borrow of `self` outlasts.
        unsafe { self.place().value() }
    }
}

impl<V: Send + Sync + 'static> Drop for Removed<V> {
    fn drop(&mut self) {
        if let Some(place) = self.place.take() {
            // The callback owns the entry; `V: Send` moves it to the reclaim
            // thread.
            self.domain.call_rcu(move || {
                let mut panicked = None;
                // SAFETY: the entry was unlinked before `self` was made
                // (`new`'s contract), is dropped once (here), after a grace
                // period of the domain its readers read under.
                unsafe { place.drop_into(&mut panicked) };
                if let Some(payload) = panicked {
                    std::panic::resume_unwind(payload);
                }
            });
        }
    }
}

impl<V: Send + Sync + fmt::Debug + 'static> fmt::Debug for Removed<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Removed")
            .field("key", &self.key())
            .field("value", &**self)
            .finish()
    }
}
