//! The singly linked list's core: QEMU's `QSLIST` / Linux's `hlist_*_rcu`,
//! with the writer lock in the head's low bit (Linux's `hlist_bl`), so the
//! list's links are one word: the shape of a hash bucket.
//!
//! Links are at least pointer-aligned, so bit 0 of a link pointer is free.
//! A writer sets it with a compare-and-swap (`Acquire`) and clears it with
//! the store that ends its critical section (`Release`); while it holds
//! the bit, its stores of a new first element keep the bit set. Readers
//! mask the bit off and never wait for it.

use super::{Batch, Chain, Claimed, Iter, Retired, link_of, link_ref, value_of};
use crate::adapter::Adapter;
use crate::link::{LinkOps, SListLink, new_list_id};
use crate::sync::{AtomicPtr, Backoff, Ordering};
use rcu_core::{Guard, RcuDomain};
use std::marker::PhantomData;
use std::ptr;

/// The lock bit of the head word.
const LOCKED: usize = 1;

// Link pointers are aligned to at least 2, leaving bit 0 for the lock.
const _: () = assert!(align_of::<SListLink>() > LOCKED);

/// The head word, locked: the link surgery lives here. Dropping it unlocks.
pub(crate) struct Locked<'a> {
    head: &'a AtomicPtr<SListLink>,
}

impl Locked<'_> {
    #[inline]
    fn first(&self) -> *mut SListLink {
        // Relaxed: the head is stored only by the lock holder, us.
        self.head.load(Ordering::Relaxed).map_addr(|a| a & !LOCKED)
    }

    #[inline]
    fn set_first(&self, link: *mut SListLink) {
        // Release: pairs with the readers' Acquire load in `SList::first`;
        // the lock bit stays set.
        self.head
            .store(link.map_addr(|a| a | LOCKED), Ordering::Release);
    }

    /// Points whatever links to the position after `prev` (the head when
    /// `prev` is null) at `link`, where readers see it.
    ///
    /// # Safety
    /// `prev` is null or linked in this list.
    #[inline]
    unsafe fn set_next_of(&self, prev: *mut SListLink, link: *mut SListLink) {
        if prev.is_null() {
            self.set_first(link);
        } else {
            // SAFETY: linked here, so alive (the caller).
            unsafe { &*prev }.publish_next(link);
        }
    }

    /// # Safety
    /// `new` is claimed for this list, unpublished, and owned by it from now
    /// on.
    pub(crate) unsafe fn push_front(&self, new: *mut SListLink) {
        // SAFETY: claimed and unpublished: only we touch it.
        unsafe { &*new }.init_next(self.first());
        self.set_first(new);
    }

    /// # Safety
    /// `pos` is linked in this list; `new` as in `push_front`.
    pub(crate) unsafe fn insert_after(&self, pos: *const SListLink, new: *mut SListLink) {
        // SAFETY: linked here (the caller).
        let p = unsafe { &*pos };
        // SAFETY: claimed and unpublished (the caller).
        unsafe { &*new }.init_next(p.next_locked());
        p.publish_next(new);
    }

    /// Unlinks the element `link` points to if it is in this list, and
    /// returns the list's own pointer to it (with the element's
    /// provenance). `link` keeps its `next` and is marked retiring. O(n):
    /// it looks for the predecessor.
    ///
    /// # Safety
    /// `link` points to a live link.
    pub(crate) unsafe fn unlink(
        &self,
        id: usize,
        link: *const SListLink,
    ) -> Option<*mut SListLink> {
        // SAFETY: live (the caller).
        if !unsafe { &*link }.owner().is(id) {
            return None;
        }
        let mut prev: *mut SListLink = ptr::null_mut();
        let mut cur = self.first();
        while !cur.is_null() {
            // SAFETY: reached from the head under the lock: linked here.
            let c = unsafe { &*cur };
            if ptr::eq(cur, link) {
                // SAFETY: `prev` is `cur`'s predecessor here, or null.
                unsafe { self.set_next_of(prev, c.next_locked()) };
                c.owner().retire();
                return Some(cur);
            }
            prev = cur;
            cur = c.next_locked();
        }
        debug_assert!(false, "rcu-list: a linked element is missing from its list");
        None
    }

    /// Unlinks `cur`, whose predecessor is `prev` (null: the head); `cur`
    /// keeps its `next` and is marked retiring.
    ///
    /// # Safety
    /// `cur` is linked in this list, right after `prev`.
    pub(crate) unsafe fn unlink_after(&self, prev: *mut SListLink, cur: *mut SListLink) {
        // SAFETY: linked here (the caller).
        let c = unsafe { &*cur };
        // SAFETY: `prev` is `cur`'s predecessor here, or null.
        unsafe { self.set_next_of(prev, c.next_locked()) };
        c.owner().retire();
    }

    /// The first element, for the lock holder.
    pub(crate) fn first_locked(&self) -> *mut SListLink {
        self.first()
    }

    /// Unlinks the first element, if any; as `unlink`.
    pub(crate) fn pop_front(&self) -> Option<*mut SListLink> {
        let first = self.first();
        if first.is_null() {
            return None;
        }
        // SAFETY: the first element is linked here.
        let f = unsafe { &*first };
        self.set_first(f.next_locked());
        f.owner().retire();
        Some(first)
    }

    /// Detaches every element (marked retiring), returning the chain's
    /// first link or null; as `list::Locked::detach_all`.
    pub(crate) fn detach_all(&self) -> *mut SListLink {
        let first = self.first();
        self.set_first(ptr::null_mut());
        let mut p = first;
        while !p.is_null() {
            // SAFETY: linked here until the store above; we own it.
            let l = unsafe { &*p };
            l.owner().retire();
            p = l.next_locked();
        }
        first
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire of the next writer's lock (and
        // with readers' Acquire loads, like `set_first`).
        self.head.store(self.first(), Ordering::Release);
    }
}

/// The generic singly linked list.
pub(crate) struct SList<A: Adapter<Link = SListLink>> {
    /// The first link, with the writer lock in bit 0.
    head: AtomicPtr<SListLink>,
    /// The id linked elements' owner words hold.
    id: usize,
    domain: RcuDomain,
    _owns: PhantomData<A::Pointer>,
}

impl<A> SList<A>
where
    A: Adapter<Link = SListLink> + 'static,
    A::Pointer: Send + 'static,
    A::Value: Sync,
{
    pub(crate) fn new_in(domain: &RcuDomain) -> Self {
        SList {
            head: AtomicPtr::new(ptr::null_mut()),
            id: new_list_id(),
            domain: domain.clone(),
            _owns: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn domain(&self) -> &RcuDomain {
        &self.domain
    }

    #[track_caller]
    fn lock(&self) -> Locked<'_> {
        super::check_not_retaining(ptr::from_ref(self).cast());
        let mut backoff = Backoff::new();
        loop {
            // Relaxed: only a hint; the compare-and-swap below decides.
            let cur = self.head.load(Ordering::Relaxed);
            if cur.addr() & LOCKED == 0 {
                // Acquire: pairs with the Release store that unlocked, so the
                // previous writer's changes are visible to us.
                if self
                    .head
                    .compare_exchange_weak(
                        cur,
                        cur.map_addr(|a| a | LOCKED),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return Locked { head: &self.head };
                }
            }
            backoff.snooze();
        }
    }

    /// The first link, for readers.
    #[inline]
    fn first(&self) -> *mut SListLink {
        // Acquire: pairs with the Release stores of the head (`set_first`,
        // unlock), so the element is initialised for us.
        self.head.load(Ordering::Acquire).map_addr(|a| a & !LOCKED)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: a snapshot; nothing is dereferenced.
        self.head.load(Ordering::Relaxed).addr() & !LOCKED == 0
    }

    #[inline]
    pub(crate) fn contains(&self, value: &A::Value) -> bool {
        link_ref::<A>(value).owner().is(self.id)
    }

    #[inline]
    #[track_caller]
    pub(crate) fn iter<'g>(&'g self, guard: &'g impl Guard) -> Iter<'g, A> {
        self.domain.assert_guard(guard);
        // SAFETY: loaded with Acquire from our head, under `guard`, which
        // protects our domain (checked) and lives for `'g`, as does our
        // borrow; elements are reclaimed only through that domain or when
        // the list is dropped.
        unsafe { Iter::new(self.first()) }
    }

    #[track_caller]
    pub(crate) fn push_front(&self, new: A::Pointer) {
        let c = Claimed::<A>::new(new, self.id);
        let l = self.lock();
        // SAFETY: `c` is claimed for this list and unpublished.
        unsafe { l.push_front(c.into_link()) };
    }

    #[track_caller]
    pub(crate) fn insert_after(&self, pos: &A::Value, new: A::Pointer) -> Result<(), A::Pointer> {
        let c = Claimed::<A>::new(new, self.id);
        let pos = link_ref::<A>(pos);
        let l = self.lock();
        // Checked under the lock: only our writers, holding it, change it.
        if !pos.owner().is(self.id) {
            drop(l);
            return Err(c.abandon());
        }
        // SAFETY: `pos` is linked here (checked under the lock); `c` is
        // claimed and unpublished.
        unsafe { l.insert_after(pos, c.into_link()) };
        Ok(())
    }

    /// Wraps an unlinked, retiring element.
    ///
    /// # Safety
    /// `link` was just unlinked from this list under the lock, and is the
    /// list's own pointer to it.
    unsafe fn retired(link: *mut SListLink) -> Retired<A::Pointer> {
        // SAFETY: the list's own pointer (element provenance, from
        // `into_raw`); retiring and unreachable for new readers, who read
        // under guards of our domain only.
        unsafe { Retired::new(value_of::<A>(link), (*link).owner()) }
    }

    pub(crate) fn remove(&self, value: &A::Value) -> Option<Retired<A::Pointer>> {
        let link = link_of::<A>(value);
        let l = self.lock();
        // SAFETY: `link` points into a live element (a reference).
        let own = unsafe { l.unlink(self.id, link) };
        drop(l);
        // SAFETY: just unlinked under the lock; `own` is the list's pointer.
        own.map(|own| unsafe { Self::retired(own) })
    }

    pub(crate) fn pop_front(&self) -> Option<Retired<A::Pointer>> {
        let first = self.lock().pop_front();
        // SAFETY: just unlinked under the lock; the list's own pointer.
        first.map(|own| unsafe { Self::retired(own) })
    }

    pub(crate) fn retain(&self, mut keep: impl FnMut(&A::Value) -> bool) {
        // Declared before the lock: dropped (retired) after it is released,
        // even if `keep` panics.
        let mut batch = Batch::new(&self.domain);
        let l = self.lock();
        super::retaining(ptr::from_ref(self).cast(), &self.domain, || {
            let mut prev: *mut SListLink = ptr::null_mut();
            let mut cur = l.first_locked();
            while !cur.is_null() {
                // SAFETY: reached from the head under the lock: linked here.
                let next = unsafe { &*cur }.next_locked();
                // SAFETY: a linked element, alive while we hold the lock;
                // `cur` has its provenance (invariant 1).
                if keep(unsafe { &*value_of::<A>(cur) }) {
                    prev = cur;
                } else {
                    // SAFETY: `cur` is linked right after `prev`; then just
                    // unlinked, under the lock.
                    unsafe {
                        l.unlink_after(prev, cur);
                        batch.push(Self::retired(cur));
                    }
                }
                cur = next;
            }
        });
        drop(l);
        drop(batch);
    }

    pub(crate) fn clear(&self) {
        let first = self.lock().detach_all();
        if first.is_null() {
            return;
        }
        // SAFETY: `detach_all` handed us the chain (owned, retiring,
        // unreachable from the head); it is dropped after a grace period.
        let chain = unsafe { Chain::<A>::new(first) };
        self.domain.call_rcu(move || drop(chain));
    }
}

impl<A: Adapter<Link = SListLink>> Drop for SList<A> {
    fn drop(&mut self) {
        // Relaxed: `&mut self`: no writer holds the bit, no reader is left.
        let first = self.head.load(Ordering::Relaxed).map_addr(|a| a & !LOCKED);
        // SAFETY: as in `List`'s drop: we own every element and no reader
        // borrows the list.
        drop(unsafe { Chain::<A>::new(first) });
    }
}
