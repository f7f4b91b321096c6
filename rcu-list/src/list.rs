//! [`RcuList`]: the doubly linked kind.

use crate::adapter::Adapter;
use crate::link::ListLink;
use crate::raw::Iter;
use crate::raw::list::List;
use crate::removed::Removed;
use rcu_core::{Guard, RcuDomain};
use std::fmt;

/// An RCU-protected doubly linked intrusive list: QEMU's `QLIST`/`QTAILQ`,
/// Linux's `list_*_rcu`.
///
/// Elements embed a [`ListLink`]; the adapter `A` (from
/// [`intrusive_adapter!`](crate::intrusive_adapter)) names the element type,
/// the link and the pointer kind the list owns elements by (`Box`, `Arc`,
/// `&'static`).
///
/// * **Readers** ([`iter`](Self::iter), [`front`](Self::front),
///   [`back`](Self::back)) take a guard of the list's domain and never lock,
///   never write shared memory: one `Acquire` load per element. What they
///   return lives as long as the guard.
/// * **Writers** (`&self`, any thread) are serialised by an internal mutex,
///   held for a few pointer stores; they never wait for a grace period.
///   Removed elements come back as [`Removed`] handles, created after the
///   mutex is released; dropping one retires the element through the
///   domain.
/// * Positions are given by element references (`insert_after(&pos, new)`),
///   checked to be in *this* list: an element of another list is refused.
///
/// Costs: every write is O(1) under the lock (`clear` is O(len));
/// `len` is a load. A list is five words (head, tail, length, id, a mutex)
/// plus the domain handle; a link is three words.
///
/// ```
/// use rcu_list::{ListLink, RcuList, intrusive_adapter};
/// use std::sync::Arc;
///
/// struct Route { prefix: u32, link: ListLink }
/// intrusive_adapter!(RouteAdapter = Arc<Route>: Route { link => ListLink });
///
/// let table = Arc::new(RcuList::<RouteAdapter>::new());
/// let default = Arc::new(Route { prefix: 0, link: ListLink::new() });
/// table.push_back(default.clone());
/// table.push_front(Arc::new(Route { prefix: 10, link: ListLink::new() }));
///
/// let reader = {
///     let table = Arc::clone(&table);
///     std::thread::spawn(move || {
///         let guard = rcu_core::read_lock();
///         table.iter(&guard).map(|r| r.prefix).collect::<Vec<_>>()
///     })
/// };
/// let five = Arc::new(Route { prefix: 5, link: ListLink::new() });
/// assert!(table.insert_before(&default, five).is_ok());
/// let seen = reader.join().unwrap(); // [10, 0] or [10, 5, 0]
/// assert!(seen == [10, 0] || seen == [10, 5, 0]);
///
/// let old = table.remove(&default).unwrap(); // readers may still see it
/// drop(old); // the list's Arc is dropped after a grace period
/// assert_eq!(table.len(), 2);
/// ```
pub struct RcuList<A: Adapter<Link = ListLink>> {
    raw: List<A>,
}

// SAFETY: the list owns its elements through `A::Pointer`s: sending it sends
// them (`A::Pointer: Send`). Its other fields are atomics, a mutex and a
// domain handle, all `Send + Sync`.
unsafe impl<A: Adapter<Link = ListLink>> Send for RcuList<A> where A::Pointer: Send {}
// SAFETY: through `&RcuList` other threads read elements (`&A::Value`:
// `A::Value: Sync`) and insert or remove owning pointers, which the reclaim
// thread then drops (`A::Pointer: Send`).
unsafe impl<A: Adapter<Link = ListLink>> Sync for RcuList<A>
where
    A::Pointer: Send,
    A::Value: Sync,
{
}

#[cfg(not(rcu_loom))]
impl<A> RcuList<A>
where
    A: Adapter<Link = ListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    /// An empty list in the process-wide domain: read it under
    /// [`rcu_core::read_lock`] (or any guard of that domain).
    pub fn new() -> Self {
        Self::new_in(&RcuDomain::global())
    }
}

impl<A> RcuList<A>
where
    A: Adapter<Link = ListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    /// An empty list bound to `domain`: read under that domain's guards,
    /// elements retired through its grace periods.
    ///
    /// ```
    /// # use rcu_list::{ListLink, RcuList, intrusive_adapter};
    /// # struct N { link: ListLink }
    /// # intrusive_adapter!(NA = Box<N>: N { link => ListLink });
    /// let domain = rcu_core::RcuDomain::new();
    /// let list = RcuList::<NA>::new_in(&domain);
    /// list.push_back(Box::new(N { link: ListLink::new() }));
    /// let reader = domain.register();
    /// assert_eq!(list.iter(&reader.read_lock()).count(), 1);
    /// ```
    pub fn new_in(domain: &RcuDomain) -> Self {
        RcuList {
            raw: List::new_in(domain),
        }
    }

    /// The domain the list is bound to.
    pub fn domain(&self) -> &RcuDomain {
        self.raw.domain()
    }

    /// The raw core, for the loom self-check that skips a grace period.
    #[cfg(all(test, rcu_loom))]
    pub(crate) fn raw_for_tests(&self) -> &List<A> {
        &self.raw
    }

    /// The number of elements linked now (a snapshot; one load).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the list is empty now (a snapshot; one load).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether `value` is linked in this list now (a snapshot; one load).
    pub fn contains(&self, value: &A::Value) -> bool {
        self.raw.contains(value)
    }

    /// Iterates over the elements, front to back, lock-free. The walk sees
    /// every element that stays linked throughout, in order; elements
    /// inserted or removed meanwhile may or may not be seen (a reader
    /// standing on a removed element still moves on to its old successor).
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

    /// The last element, lock-free.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the list.
    #[track_caller]
    pub fn back<'g>(&'g self, guard: &'g impl Guard) -> Option<&'g A::Value> {
        self.raw.back(guard)
    }

    /// Links `new` at the front.
    ///
    /// # Panics
    /// If `new`'s link is claimed: it is in a list (this one or another), or
    /// was removed from one less than a grace period ago. `new` is dropped.
    #[track_caller]
    pub fn push_front(&self, new: A::Pointer) {
        self.raw.push_front(new);
    }

    /// Links `new` at the back.
    ///
    /// # Panics
    /// As [`push_front`](Self::push_front).
    #[track_caller]
    pub fn push_back(&self, new: A::Pointer) {
        self.raw.push_back(new);
    }

    /// Links `new` right after `pos`.
    ///
    /// # Errors
    /// Gives `new` back if `pos` is not linked in this list (it belongs to
    /// another list, or another writer removed it).
    ///
    /// # Panics
    /// As [`push_front`](Self::push_front).
    #[track_caller]
    pub fn insert_after(&self, pos: &A::Value, new: A::Pointer) -> Result<(), A::Pointer> {
        self.raw.insert_after(pos, new)
    }

    /// Links `new` right before `pos`.
    ///
    /// # Errors
    /// As [`insert_after`](Self::insert_after).
    ///
    /// # Panics
    /// As [`push_front`](Self::push_front).
    #[track_caller]
    pub fn insert_before(&self, pos: &A::Value, new: A::Pointer) -> Result<(), A::Pointer> {
        self.raw.insert_before(pos, new)
    }

    /// Unlinks `value`, if it is linked in this list. It keeps its forward
    /// link, so readers standing on it move on; see [`Removed`].
    pub fn remove(&self, value: &A::Value) -> Option<Removed<A::Pointer>> {
        let raw = self.raw.remove(value)?;
        Some(Removed::new(raw, self.raw.domain()))
    }

    /// Puts `new` in `old`'s place with one publishing store (Linux's
    /// `list_replace_rcu`): a reader sees one or the other, never neither.
    /// Returns `old`, removed.
    ///
    /// # Errors
    /// Gives `new` back if `old` is not linked in this list.
    ///
    /// # Panics
    /// As [`push_front`](Self::push_front), for `new`.
    #[track_caller]
    pub fn replace(
        &self,
        old: &A::Value,
        new: A::Pointer,
    ) -> Result<Removed<A::Pointer>, A::Pointer> {
        let raw = self.raw.replace(old, new)?;
        Ok(Removed::new(raw, self.raw.domain()))
    }

    /// Unlinks the first element.
    pub fn pop_front(&self) -> Option<Removed<A::Pointer>> {
        let raw = self.raw.pop_front()?;
        Some(Removed::new(raw, self.raw.domain()))
    }

    /// Unlinks the last element.
    pub fn pop_back(&self) -> Option<Removed<A::Pointer>> {
        let raw = self.raw.pop_back()?;
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
    /// # use rcu_list::{ListLink, RcuList, intrusive_adapter};
    /// # struct N { v: u32, link: ListLink }
    /// # intrusive_adapter!(NA = Box<N>: N { link => ListLink });
    /// let list = RcuList::<NA>::new();
    /// for v in 0..6 {
    ///     list.push_front(Box::new(N { v, link: ListLink::new() }));
    /// }
    /// list.retain(|n| n.v % 2 == 0);
    /// let guard = rcu_core::read_lock();
    /// assert_eq!(list.iter(&guard).map(|n| n.v).collect::<Vec<_>>(), [4, 2, 0]);
    /// ```
    pub fn retain(&self, keep: impl FnMut(&A::Value) -> bool) {
        self.raw.retain(keep);
    }

    /// Unlinks every element; they are dropped after a grace period (one
    /// callback for all). Readers standing on one of them walk to the old
    /// end.
    pub fn clear(&self) {
        self.raw.clear();
    }
}

#[cfg(not(rcu_loom))]
impl<A> Default for RcuList<A>
where
    A: Adapter<Link = ListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Extend<A::Pointer> for RcuList<A>
where
    A: Adapter<Link = ListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    /// Pushes each element at the back.
    ///
    /// # Panics
    /// As [`push_front`](Self::push_front).
    fn extend<I: IntoIterator<Item = A::Pointer>>(&mut self, iter: I) {
        for p in iter {
            self.push_back(p);
        }
    }
}

#[cfg(not(rcu_loom))]
impl<A> FromIterator<A::Pointer> for RcuList<A>
where
    A: Adapter<Link = ListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    /// A list of the process-wide domain, in iteration order.
    fn from_iter<I: IntoIterator<Item = A::Pointer>>(iter: I) -> Self {
        let mut list = Self::new();
        list.extend(iter);
        list
    }
}

impl<A> fmt::Debug for RcuList<A>
where
    A: Adapter<Link = ListLink> + 'static,
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
