//! The doubly linked list's core: QEMU's `QTAILQ` / Linux's `list_*_rcu`
//! with a null-terminated chain (a head and a tail pointer, no circular
//! sentinel, so the list may move).
//!
//! [`Links`] and [`Locked`] do the link surgery on `*mut ListLink` alone,
//! with no element type, so it is compiled once (hashbrown's non-generic
//! inner table); [`List`] adds the element type, ownership and retirement.

use super::{Batch, Chain, Claimed, Iter, Retired, link_of, link_ref, value_of};
use crate::adapter::Adapter;
use crate::link::{LinkOps, ListLink, new_list_id};
use crate::sync::{AtomicPtr, AtomicUsize, Mutex, MutexGuard, Ordering, lock};
use rcu_core::{Guard, RcuDomain};
use std::marker::PhantomData;
use std::ptr;

/// The list's own words.
pub(crate) struct Links {
    /// The first link, or null. Read by readers (`Acquire`), stored under
    /// the lock (`Release`).
    head: AtomicPtr<ListLink>,
    /// The last link, or null. As `head` (readers may peek at the back).
    tail: AtomicPtr<ListLink>,
    /// Linked elements; stored under the lock, read anywhere.
    len: AtomicUsize,
    /// The writer lock.
    lock: Mutex<()>,
    /// The id linked elements' owner words hold.
    id: usize,
}

/// The writer lock, held: the link surgery lives here.
pub(crate) struct Locked<'a> {
    links: &'a Links,
    _guard: MutexGuard<'a, ()>,
}

impl Links {
    fn new() -> Self {
        Links {
            head: AtomicPtr::new(ptr::null_mut()),
            tail: AtomicPtr::new(ptr::null_mut()),
            len: AtomicUsize::new(0),
            lock: Mutex::new(()),
            id: new_list_id(),
        }
    }

    #[track_caller]
    fn lock(&self) -> Locked<'_> {
        super::check_not_retaining(ptr::from_ref(self).cast());
        Locked {
            _guard: lock(&self.lock),
            links: self,
        }
    }

    /// The first link, for readers.
    #[inline]
    fn first(&self) -> *mut ListLink {
        // Acquire: pairs with the Release stores of `head` in `Locked`, so
        // the element is initialised for us.
        self.head.load(Ordering::Acquire)
    }

    /// The last link, for readers.
    #[inline]
    fn last(&self) -> *mut ListLink {
        // Acquire: pairs with the Release stores of `tail` in `Locked`.
        self.tail.load(Ordering::Acquire)
    }
}

impl Locked<'_> {
    #[inline]
    fn first(&self) -> *mut ListLink {
        // Relaxed: `head` is stored only under the lock we hold.
        self.links.head.load(Ordering::Relaxed)
    }

    #[inline]
    fn last(&self) -> *mut ListLink {
        // Relaxed: `tail` is stored only under the lock we hold.
        self.links.tail.load(Ordering::Relaxed)
    }

    #[inline]
    fn add_len(&self, delta: isize) {
        // Relaxed: stored only under the lock; readers take a snapshot.
        let len = self.links.len.load(Ordering::Relaxed);
        self.links
            .len
            .store(len.wrapping_add_signed(delta), Ordering::Relaxed);
    }

    /// Points whatever links to the position after `prev` (the head when
    /// `prev` is null) at `link`, where readers see it.
    ///
    /// # Safety
    /// `prev` is null or linked in this list.
    #[inline]
    unsafe fn set_next_of(&self, prev: *mut ListLink, link: *mut ListLink) {
        if prev.is_null() {
            // Release: pairs with the Acquire load in `Links::first`.
            self.links.head.store(link, Ordering::Release);
        } else {
            // SAFETY: linked in this list, so alive (the caller).
            unsafe { &*prev }.publish_next(link);
        }
    }

    /// Points whatever links back to the position before `next` (the tail
    /// when `next` is null) at `link`.
    ///
    /// # Safety
    /// `next` is null or linked in this list.
    #[inline]
    unsafe fn set_prev_of(&self, next: *mut ListLink, link: *mut ListLink) {
        if next.is_null() {
            // Release: pairs with the Acquire load in `Links::last`.
            self.links.tail.store(link, Ordering::Release);
        } else {
            // SAFETY: linked in this list, so alive (the caller).
            unsafe { &*next }.set_prev(link);
        }
    }

    /// The list's own pointer to `link` if `link` is linked in this list:
    /// the one its predecessor (or the head) holds, which has the element's
    /// provenance (invariant 1), unlike `link` when it came from a caller's
    /// reference.
    ///
    /// # Safety
    /// `link` points to a live link.
    pub(crate) unsafe fn find(&self, link: *const ListLink) -> Option<*mut ListLink> {
        // SAFETY: live (the caller).
        let l = unsafe { &*link };
        if !l.owner().is(self.links.id) {
            return None;
        }
        let prev = l.prev();
        let own = if prev.is_null() {
            self.first()
        } else {
            // SAFETY: `l` is linked here, so its predecessor is too.
            unsafe { &*prev }.next_locked()
        };
        debug_assert_eq!(own.cast_const(), link, "rcu-list: corrupt links");
        Some(own)
    }

    /// Links `new` between `prev` and `next`, which are adjacent (null for
    /// the ends).
    ///
    /// # Safety
    /// 1. `prev` and `next` are null or linked in this list, adjacent.
    /// 2. `new` is claimed for this list, unpublished, and owned by it from
    ///    now on.
    unsafe fn insert_between(&self, prev: *mut ListLink, next: *mut ListLink, new: *mut ListLink) {
        // SAFETY: claimed and unpublished: only we touch it.
        let n = unsafe { &*new };
        n.init_next(next);
        n.set_prev(prev);
        // SAFETY: (1).
        unsafe {
            // The publishing store: readers may see `new` from here on.
            self.set_next_of(prev, new);
            self.set_prev_of(next, new);
        }
        self.add_len(1);
    }

    /// # Safety
    /// As `insert_between` (2).
    pub(crate) unsafe fn push_front(&self, new: *mut ListLink) {
        // SAFETY: the head and the first link are adjacent; (2) the caller's.
        unsafe { self.insert_between(ptr::null_mut(), self.first(), new) }
    }

    /// # Safety
    /// As `insert_between` (2).
    pub(crate) unsafe fn push_back(&self, new: *mut ListLink) {
        // SAFETY: the last link and the tail are adjacent; (2) the caller's.
        unsafe { self.insert_between(self.last(), ptr::null_mut(), new) }
    }

    /// # Safety
    /// `pos` is linked in this list; `new` as `insert_between` (2).
    pub(crate) unsafe fn insert_after(&self, pos: *mut ListLink, new: *mut ListLink) {
        // SAFETY: `pos` is linked (the caller), so is its successor.
        unsafe { self.insert_between(pos, (*pos).next_locked(), new) }
    }

    /// # Safety
    /// `pos` is linked in this list; `new` as `insert_between` (2).
    pub(crate) unsafe fn insert_before(&self, pos: *mut ListLink, new: *mut ListLink) {
        // SAFETY: `pos` is linked (the caller), so is its predecessor.
        unsafe { self.insert_between((*pos).prev(), pos, new) }
    }

    /// Unlinks `link`, which keeps its `next` so that a reader standing on
    /// it moves on, and marks it retiring.
    ///
    /// # Safety
    /// `link` is linked in this list.
    pub(crate) unsafe fn unlink(&self, link: *mut ListLink) {
        // SAFETY: linked (the caller).
        let l = unsafe { &*link };
        let (prev, next) = (l.prev(), l.next_locked());
        // SAFETY: `prev` and `next` are `l`'s neighbours in this list.
        unsafe {
            self.set_next_of(prev, next);
            self.set_prev_of(next, prev);
        }
        l.set_prev(ptr::null_mut());
        l.owner().retire();
        self.add_len(-1);
    }

    /// Puts `new` where `old` is, in one publishing store; `old` keeps its
    /// `next` and is marked retiring.
    ///
    /// # Safety
    /// `old` is linked in this list; `new` as `insert_between` (2).
    pub(crate) unsafe fn replace(&self, old: *mut ListLink, new: *mut ListLink) {
        // SAFETY: linked (the caller).
        let o = unsafe { &*old };
        // SAFETY: claimed and unpublished (the caller).
        let n = unsafe { &*new };
        let (prev, next) = (o.prev(), o.next_locked());
        n.init_next(next);
        n.set_prev(prev);
        // SAFETY: `prev` and `next` are `old`'s neighbours in this list.
        unsafe {
            self.set_next_of(prev, new);
            self.set_prev_of(next, new);
        }
        o.set_prev(ptr::null_mut());
        o.owner().retire();
    }

    /// Detaches every element at once, marking each retiring (so no writer
    /// touches them again), and returns the first of the still-chained
    /// elements, or null. O(len) under the lock, no allocation.
    pub(crate) fn detach_all(&self) -> *mut ListLink {
        let first = self.first();
        // Release: pairs with the Acquire loads of `head` and `tail`.
        self.links.head.store(ptr::null_mut(), Ordering::Release);
        self.links.tail.store(ptr::null_mut(), Ordering::Release);
        self.links.len.store(0, Ordering::Relaxed);
        let mut p = first;
        while !p.is_null() {
            // SAFETY: every element of the chain was linked here until the
            // stores above, and stays alive (we own it).
            let l = unsafe { &*p };
            l.owner().retire();
            p = l.next_locked();
        }
        first
    }
}

/// The generic doubly linked list: ownership, retirement, readers.
pub(crate) struct List<A: Adapter<Link = ListLink>> {
    links: Links,
    domain: RcuDomain,
    _owns: PhantomData<A::Pointer>,
}

impl<A> List<A>
where
    A: Adapter<Link = ListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    pub(crate) fn new_in(domain: &RcuDomain) -> Self {
        List {
            links: Links::new(),
            domain: domain.clone(),
            _owns: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn domain(&self) -> &RcuDomain {
        &self.domain
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a snapshot.
        self.links.len.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: a snapshot; nothing is dereferenced.
        self.links.head.load(Ordering::Relaxed).is_null()
    }

    #[inline]
    pub(crate) fn contains(&self, value: &A::Value) -> bool {
        link_ref::<A>(value).owner().is(self.links.id)
    }

    #[inline]
    #[track_caller]
    pub(crate) fn iter<'g>(&'g self, guard: &'g impl Guard) -> Iter<'g, A> {
        self.domain.assert_guard(guard);
        // SAFETY: loaded with Acquire from our head, under `guard`, which
        // protects our domain (checked) and lives for `'g`, as does our
        // borrow; elements are reclaimed only through that domain
        // (`Retired::retire`, `Chain`) or when the list is dropped.
        unsafe { Iter::new(self.links.first()) }
    }

    #[inline]
    #[track_caller]
    pub(crate) fn back<'g>(&'g self, guard: &'g impl Guard) -> Option<&'g A::Value> {
        self.domain.assert_guard(guard);
        // SAFETY: as in `iter`: the tail is a published link like the head.
        unsafe { Iter::<A>::new(self.links.last()) }.next()
    }

    /// Claims `new` for this list (panicking if it is linked elsewhere),
    /// then runs `f` under the lock.
    #[track_caller]
    fn with_claimed<R>(&self, new: A::Pointer, f: impl FnOnce(&Locked<'_>, Claimed<A>) -> R) -> R {
        let claimed = Claimed::<A>::new(new, self.links.id);
        f(&self.links.lock(), claimed)
    }

    #[track_caller]
    pub(crate) fn push_front(&self, new: A::Pointer) {
        self.with_claimed(new, |l, c| {
            // SAFETY: `c` is claimed for this list and unpublished.
            unsafe { l.push_front(c.into_link()) }
        });
    }

    #[track_caller]
    pub(crate) fn push_back(&self, new: A::Pointer) {
        self.with_claimed(new, |l, c| {
            // SAFETY: `c` is claimed for this list and unpublished.
            unsafe { l.push_back(c.into_link()) }
        });
    }

    #[track_caller]
    pub(crate) fn insert_after(&self, pos: &A::Value, new: A::Pointer) -> Result<(), A::Pointer> {
        let pos = link_of::<A>(pos);
        let done = self.with_claimed(new, |l, c| {
            // SAFETY: `pos` points into a live element (a reference).
            match unsafe { l.find(pos) } {
                Some(pos) => {
                    // SAFETY: `pos` is linked here; `c` claimed, unpublished.
                    unsafe { l.insert_after(pos, c.into_link()) };
                    Ok(())
                }
                None => Err(c),
            }
        });
        // The lock is released before the pointer goes back.
        done.map_err(Claimed::abandon)
    }

    #[track_caller]
    pub(crate) fn insert_before(&self, pos: &A::Value, new: A::Pointer) -> Result<(), A::Pointer> {
        let pos = link_of::<A>(pos);
        let done = self.with_claimed(new, |l, c| {
            // SAFETY: `pos` points into a live element (a reference).
            match unsafe { l.find(pos) } {
                Some(pos) => {
                    // SAFETY: `pos` is linked here; `c` claimed, unpublished.
                    unsafe { l.insert_before(pos, c.into_link()) };
                    Ok(())
                }
                None => Err(c),
            }
        });
        done.map_err(Claimed::abandon)
    }

    /// Wraps an unlinked, retiring element.
    ///
    /// # Safety
    /// `link` was just unlinked from this list by `unlink`, `replace` or a
    /// pop, under the lock.
    unsafe fn retired(link: *mut ListLink) -> Retired<A::Pointer> {
        // SAFETY: the pointer is the list's own (provenance of the element,
        // from `into_raw`); the link is retiring and unreachable for new
        // readers, who read it under guards of our domain only.
        unsafe { Retired::new(value_of::<A>(link), (*link).owner()) }
    }

    pub(crate) fn remove(&self, value: &A::Value) -> Option<Retired<A::Pointer>> {
        let link = link_of::<A>(value);
        let l = self.links.lock();
        // SAFETY: `link` points into a live element (a reference).
        let own = unsafe { l.find(link) }?;
        // SAFETY: linked here (found).
        unsafe { l.unlink(own) };
        drop(l);
        // SAFETY: just unlinked, under the lock.
        Some(unsafe { Self::retired(own) })
    }

    #[track_caller]
    pub(crate) fn replace(
        &self,
        old: &A::Value,
        new: A::Pointer,
    ) -> Result<Retired<A::Pointer>, A::Pointer> {
        let old = link_of::<A>(old);
        let done = self.with_claimed(new, |l, c| {
            // SAFETY: `old` points into a live element (a reference).
            match unsafe { l.find(old) } {
                Some(own) => {
                    // SAFETY: `own` is linked here; `c` claimed, unpublished.
                    unsafe { l.replace(own, c.into_link()) };
                    Ok(own)
                }
                None => Err(c),
            }
        });
        match done {
            // SAFETY: just unlinked (replaced), under the lock.
            Ok(own) => Ok(unsafe { Self::retired(own) }),
            Err(c) => Err(c.abandon()),
        }
    }

    pub(crate) fn pop_front(&self) -> Option<Retired<A::Pointer>> {
        let l = self.links.lock();
        let first = l.first();
        if first.is_null() {
            return None;
        }
        // SAFETY: the first link is linked here.
        unsafe { l.unlink(first) };
        drop(l);
        // SAFETY: just unlinked, under the lock.
        Some(unsafe { Self::retired(first) })
    }

    pub(crate) fn pop_back(&self) -> Option<Retired<A::Pointer>> {
        let l = self.links.lock();
        let last = l.last();
        if last.is_null() {
            return None;
        }
        // SAFETY: the last link is linked here.
        unsafe { l.unlink(last) };
        drop(l);
        // SAFETY: just unlinked, under the lock.
        Some(unsafe { Self::retired(last) })
    }

    pub(crate) fn retain(&self, mut keep: impl FnMut(&A::Value) -> bool) {
        // Declared before the lock: dropped (retired) after it is released,
        // even if `keep` panics.
        let mut batch = Batch::new(&self.domain);
        let l = self.links.lock();
        super::retaining(ptr::from_ref(&self.links).cast(), &self.domain, || {
            let mut p = l.first();
            while !p.is_null() {
                // SAFETY: reached from the head under the lock: linked here.
                let next = unsafe { &*p }.next_locked();
                // SAFETY: a linked element, alive while we hold the lock; `p`
                // has its provenance (invariant 1).
                if !keep(unsafe { &*value_of::<A>(p) }) {
                    // SAFETY: linked here; then just unlinked, under the lock.
                    unsafe {
                        l.unlink(p);
                        batch.push(Self::retired(p));
                    }
                }
                p = next;
            }
        });
        drop(l);
        drop(batch);
    }

    pub(crate) fn clear(&self) {
        let first = self.links.lock().detach_all();
        if first.is_null() {
            return;
        }
        // SAFETY: `detach_all` handed us the chain (owned, retiring, no
        // longer reachable from the head); the chain is dropped by the
        // callback, after a grace period of our domain.
        let chain = unsafe { Chain::<A>::new(first) };
        self.domain.call_rcu(move || drop(chain));
    }
}

impl<A: Adapter<Link = ListLink>> Drop for List<A> {
    fn drop(&mut self) {
        // Relaxed: `&mut self`: no writer or reader is left.
        let first = self.links.head.load(Ordering::Relaxed);
        // SAFETY: we own every linked element; `&mut self` means no reader
        // borrows the list, so none holds an element (their references live
        // no longer than their borrow of the list).
        drop(unsafe { Chain::<A>::new(first) });
    }
}
