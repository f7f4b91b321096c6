//! [`RcuSList`]: the singly linked kind.

use crate::adapter::Adapter;
use crate::link::SListLink;
use crate::raw::Iter;
use crate::raw::slist::SList;
use crate::removed::Removed;
use rcu_core::{Guard, RcuDomain};
use std::fmt;

/// An RCU-protected singly linked intrusive list: QEMU's `QSLIST`, Linux's
/// `hlist_*_rcu`, the shape of a hash bucket.
///
/// Its links are one word, the head pointer, whose low bit is the writer
/// lock (Linux's `hlist_bl`); it also holds its id and its domain handle.
/// Elements embed an [`SListLink`] (two words).
///
/// * **Readers** ([`iter`](Self::iter), [`front`](Self::front)) are
///   lock-free, as in [`RcuList`](crate::RcuList), and ignore the lock bit.
/// * **Writers** spin on the bit (then yield) for the few stores of an
///   update. [`push_front`](Self::push_front),
///   [`insert_after`](Self::insert_after) and
///   [`pop_front`](Self::pop_front) are O(1); [`remove`](Self::remove) walks
///   to the element's predecessor, O(position), as `QSLIST_REMOVE` does.
///
/// ```
/// use rcu_list::{RcuSList, SListLink, intrusive_adapter};
///
/// struct Entry { key: u64, val: &'static str, link: SListLink }
/// intrusive_adapter!(EntryAdapter = Box<Entry>: Entry { link => SListLink });
///
/// let bucket = RcuSList::<EntryAdapter>::new();
/// for (key, val) in [(1, "one"), (2, "two")] {
///     bucket.push_front(Box::new(Entry { key, val, link: SListLink::new() }));
/// }
/// let guard = rcu_core::read_lock();
/// let two = bucket.iter(&guard).find(|e| e.key == 2).unwrap();
/// assert_eq!(two.val, "two");
/// drop(bucket.remove(two)); // dropped after a grace period (ours too)
/// assert_eq!(two.val, "two"); // still valid under our guard
/// ```
pub struct RcuSList<A: Adapter<Link = SListLink>> {
    raw: SList<A>,
}

// SAFETY: as `RcuList`'s: the list owns its elements' pointers.
unsafe impl<A: Adapter<Link = SListLink>> Send for RcuSList<A> where A::Pointer: Send {}
// SAFETY: as `RcuList`'s: readers share `&A::Value`, writers hand pointers
// to the reclaim thread.
unsafe impl<A: Adapter<Link = SListLink>> Sync for RcuSList<A>
where
    A::Pointer: Send,
    A::Value: Sync,
{
}

#[cfg(not(rcu_loom))]
impl<A> RcuSList<A>
where
    A: Adapter<Link = SListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    /// An empty list in the process-wide domain.
    pub fn new() -> Self {
        Self::new_in(&RcuDomain::global())
    }
}

impl<A> RcuSList<A>
where
    A: Adapter<Link = SListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    /// An empty list bound to `domain`.
    pub fn new_in(domain: &RcuDomain) -> Self {
        RcuSList {
            raw: SList::new_in(domain),
        }
    }

    /// The domain the list is bound to.
    pub fn domain(&self) -> &RcuDomain {
        self.raw.domain()
    }

    /// Whether the list is empty now (a snapshot; one load).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether `value` is linked in this list now (a snapshot; one load).
    pub fn contains(&self, value: &A::Value) -> bool {
        self.raw.contains(value)
    }

    /// Iterates over the elements, front to back, lock-free; as
    /// [`RcuList::iter`](crate::RcuList::iter).
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the list.
    #[track_caller]
    pub fn iter<'g>(&'g self, guard: &'g impl Guard) -> Iter<'g, A> {
        self.raw.iter(guard)
    }

    /// The first element, lock-free.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the list.
    #[track_caller]
    pub fn front<'g>(&'g self, guard: &'g impl Guard) -> Option<&'g A::Value> {
        self.raw.iter(guard).next()
    }

    /// Links `new` at the front.
    ///
    /// # Panics
    /// If `new`'s link is claimed: it is in a list, or was removed from one
    /// less than a grace period ago. `new` is dropped.
    #[track_caller]
    pub fn push_front(&self, new: A::Pointer) {
        self.raw.push_front(new);
    }

    /// Links `new` right after `pos`.
    ///
    /// # Errors
    /// Gives `new` back if `pos` is not linked in this list.
    ///
    /// # Panics
    /// As [`push_front`](Self::push_front).
    #[track_caller]
    pub fn insert_after(&self, pos: &A::Value, new: A::Pointer) -> Result<(), A::Pointer> {
        self.raw.insert_after(pos, new)
    }

    /// Unlinks `value` if it is linked in this list (O(position): it finds
    /// the predecessor). It keeps its forward link; see [`Removed`].
    pub fn remove(&self, value: &A::Value) -> Option<Removed<A::Pointer>> {
        let raw = self.raw.remove(value)?;
        Some(Removed::new(raw, self.raw.domain()))
    }

    /// Unlinks the first element.
    pub fn pop_front(&self) -> Option<Removed<A::Pointer>> {
        let raw = self.raw.pop_front()?;
        Some(Removed::new(raw, self.raw.domain()))
    }

    /// Unlinks every element for which `keep` returns `false`, in one pass
    /// under the writer lock; they are dropped after a grace period (one
    /// callback for all), as `Vec::retain` would drop them. O(len).
    ///
    /// `keep` runs under the lock, where waits for the list's domain's grace
    /// periods are refused ([`RcuDomain::no_grace_period_waits`]); it may
    /// read the list (and other lists).
    /// If it panics, the elements removed so far are still retired and the
    /// list stays consistent.
    ///
    /// # Panics
    /// If `keep` calls one of this list's writer methods (it would wait for
    /// the lock `retain` holds), or waits for a grace period of the list's
    /// domain (`synchronize`, `drain`, [`Removed::into_inner`]: under the
    /// lock it could wait for a reader that waits for the lock, so it must
    /// not wait for another thread that waits for one either); the list
    /// stays consistent, as above.
    ///
    /// ```
    /// # use rcu_list::{SListLink, RcuSList, intrusive_adapter};
    /// # struct N { v: u32, link: SListLink }
    /// # intrusive_adapter!(NA = Box<N>: N { link => SListLink });
    /// let list = RcuSList::<NA>::new();
    /// for v in 0..6 {
    ///     list.push_front(Box::new(N { v, link: SListLink::new() }));
    /// }
    /// list.retain(|n| n.v % 2 == 0);
    /// let guard = rcu_core::read_lock();
    /// assert_eq!(list.iter(&guard).map(|n| n.v).collect::<Vec<_>>(), [4, 2, 0]);
    /// ```
    pub fn retain(&self, keep: impl FnMut(&A::Value) -> bool) {
        self.raw.retain(keep);
    }

    /// Unlinks every element; they are dropped after a grace period.
    pub fn clear(&self) {
        self.raw.clear();
    }
}

#[cfg(not(rcu_loom))]
impl<A> Default for RcuSList<A>
where
    A: Adapter<Link = SListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A> fmt::Debug for RcuSList<A>
where
    A: Adapter<Link = SListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync + fmt::Debug,
{
    /// The elements, read under a guard of the list's domain tied to this
    /// thread, so an element's `fmt` that waits for a grace period of that
    /// domain panics rather than waiting for itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.domain().read_lock_local();
        f.debug_list().entries(self.iter(&guard)).finish()
    }
}
