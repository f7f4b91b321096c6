//! [`Removed`]: an entry taken out of the tree that readers may still see.

use super::node::Leaf;
use rcu_core::RcuDomain;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

/// A value removed from (or replaced in) an
/// [`RcuRadixTree`](crate::RcuRadixTree) that readers may still be reading.
///
/// It derefs to the value (shared access, as readers have). Dropping it drops
/// the value on the reclaim thread after a grace period (never waiting);
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
    leaf: NonNull<Leaf<V>>,
    domain: RcuDomain,
    _owns: PhantomData<Box<Leaf<V>>>,
}

// SAFETY: a `Removed<V>` owns a leaf that readers on other threads may share:
// moving it (and dropping the value elsewhere) needs `V: Send`, sharing it
// needs `V: Sync`; the type requires both.
unsafe impl<V: Send + Sync + 'static> Send for Removed<V> {}
// SAFETY: as above.
unsafe impl<V: Send + Sync + 'static> Sync for Removed<V> {}

impl<V: Send + Sync + 'static> Removed<V> {
    /// # Safety
    /// `leaf` came from `Box::into_raw`, is unlinked from its tree, and is
    /// owned by no one else; the tree's readers read under `domain`'s guards.
    pub(crate) unsafe fn new(leaf: NonNull<Leaf<V>>, domain: &RcuDomain) -> Self {
        Removed {
            leaf,
            domain: domain.clone(),
            _owns: PhantomData,
        }
    }

    fn leaf(&self) -> &Leaf<V> {
        // SAFETY: the leaf is alive until `self` is dropped or consumed:
        // readers only share it, and the retire happens in `drop`.
        unsafe { self.leaf.as_ref() }
    }

    /// The entry's key.
    pub fn key(&self) -> u64 {
        self.leaf().head.key
    }

    /// Waits for a grace period, after which no reader can see the value,
    /// and returns it.
    ///
    /// # Panics
    /// Inside a read-side critical section of the tree's domain on this
    /// thread, or inside a reclaim callback (as
    /// [`RcuDomain::synchronize`]).
    pub fn into_inner(self) -> V {
        self.domain.synchronize();
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; its domain handle is
        // read out exactly once and dropped here.
        drop(unsafe { std::ptr::read(&this.domain) });
        // SAFETY: the leaf came from `Box::into_raw`, was unlinked before
        // `self` was made, `self` was its only owner, and the grace period
        // above has ended every critical section that could still see it.
        let leaf = unsafe { Box::from_raw(this.leaf.as_ptr()) };
        leaf.value
    }
}

impl<V: Send + Sync + 'static> Deref for Removed<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.leaf().value
    }
}

impl<V: Send + Sync + 'static> Drop for Removed<V> {
    fn drop(&mut self) {
        // SAFETY: the leaf came from `Box::into_raw`, was unlinked before
        // `self` was made (`new`'s contract), is retired once (here; a
        // consumed `Removed` is not dropped), and its readers read under this
        // domain's guards.
        unsafe { self.domain.defer_free(self.leaf.as_ptr()) };
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
