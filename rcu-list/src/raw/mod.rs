//! The unsafe core: element ⇄ link conversion, claimed and retired
//! elements, the reader iterator, and the two list kinds' link surgery
//! ([`list`], [`slist`]).
//!
//! Invariants every function here relies on:
//!
//! 1. **Provenance.** Every link pointer a list stores (in a head, a tail or
//!    a `next`/`prev` field) was computed from the pointer
//!    [`OwningPointer::into_raw`] returned, so it carries the provenance of
//!    the whole element, and turning it back into the element (by
//!    subtracting [`Adapter::LINK_OFFSET`]) and then into the owning pointer
//!    is sound. A link pointer computed from a caller's `&Value` is only
//!    compared and read through, never stored: where a list needs the
//!    element's own pointer it takes it from the neighbour or head that
//!    links to it ([`list::Locked::find`]).
//! 2. **Ownership.** A link whose owner word is a list's id is in that list
//!    and its element is owned by it; it is changed only under that list's
//!    writer lock. An insertion claims the link (the id with the `PENDING`
//!    bit) before it takes the lock, and writes the bare id only as it
//!    links the element under the lock, so a pending element is never taken
//!    for a position in the list. A removed element is `RETIRING` and still
//!    owned by the
//!    list's [`Retired`] handle until a grace period has passed; only then
//!    is the link released and the pointer rebuilt.
//! 3. **Reader safety.** Readers reach elements only from the head, under a
//!    guard of the list's domain, through `Acquire` loads of pointers that
//!    were published by `Release` stores after the element was initialised.
//!    An element is retired (dropped, or given back) only through the
//!    domain's grace period after it became unreachable from the head, so
//!    whatever a reader reached stays alive until its guard is dropped. The
//!    one exception is the list's own drop, which frees its elements at
//!    once: it has `&mut`, and readers' references borrow the list.

pub(crate) mod list;
pub(crate) mod slist;

use crate::adapter::{Adapter, OwningPointer};
use crate::link::{LinkOps, Owner};
use rcu_core::RcuDomain;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// A `retain` walk in progress on this thread, on its stack: the closure it
/// runs holds the list's writer lock, so a write to the same list from it
/// would wait for that lock forever. Walks nest (a closure may retain
/// another list), hence the chain, in stack order (a closure that switched
/// to another stack inside it, as a stackful coroutine could, would break
/// that order).
#[cfg(not(rcu_loom))]
struct Retaining {
    list: *const (),
    outer: *const Retaining,
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// The innermost [`Retaining`] of this thread, or null.
    static RETAINING: std::cell::Cell<*const Retaining> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Runs `walk` (a `retain` under the lock of the list at `list`) marked as
/// such for [`check_not_retaining`], with waits for the list's `domain`'s
/// grace periods refused ([`RcuDomain::no_grace_period_waits`]): such a wait
/// from the `retain` closure panics instead of waiting, under the lock, for
/// a reader that may be waiting for that lock (a write made inside a
/// critical section, which the lists allow).
pub(crate) fn retaining<R>(list: *const (), domain: &RcuDomain, walk: impl FnOnce() -> R) -> R {
    #[cfg(not(rcu_loom))]
    {
        /// Unmarks the walk when it returns or unwinds.
        struct Unmark<'r>(&'r Retaining);
        impl Drop for Unmark<'_> {
            fn drop(&mut self) {
                // Walks nest in stack order (see `Retaining`).
                debug_assert!(
                    RETAINING
                        .try_with(std::cell::Cell::get)
                        .map_or(true, |r| r == std::ptr::from_ref(self.0)),
                    "rcu-list: retain walks ended out of stack order"
                );
                let _ = RETAINING.try_with(|r| r.set(self.0.outer));
            }
        }
        let run = Retaining {
            list,
            outer: RETAINING
                .try_with(std::cell::Cell::get)
                .unwrap_or(std::ptr::null()),
        };
        // During thread-local teardown nothing is marked (nor checked).
        let _ = RETAINING.try_with(|r| r.set(&run));
        let _unmark = Unmark(&run);
        domain.no_grace_period_waits(walk)
    }
    // Loom models run no `retain`, and loom threads share the OS thread's
    // thread-locals.
    #[cfg(rcu_loom)]
    {
        let _ = (list, domain);
        walk()
    }
}

/// Panics if this thread is inside a `retain` closure of the list at
/// `list`: the write about to take its lock would deadlock.
#[inline]
#[track_caller]
pub(crate) fn check_not_retaining(list: *const ()) {
    #[cfg(not(rcu_loom))]
    {
        let mut r = RETAINING
            .try_with(std::cell::Cell::get)
            .unwrap_or(std::ptr::null());
        while !r.is_null() {
            // SAFETY: a marked walk lives on the stack of a `retain` below
            // us on this thread, which unmarks it before it returns or
            // unwinds past it.
            let run = unsafe { &*r };
            if run.list == list {
                panic!(
                    "rcu-list: a write to the list from inside its own `retain` closure (the \
                     closure runs under the list's writer lock)"
                );
            }
            r = run.outer;
        }
    }
    #[cfg(rcu_loom)]
    let _ = list;
}

/// The link inside the element `value` points to. Pure address arithmetic
/// (`wrapping_byte_add`), so it keeps `value`'s provenance and is safe to
/// compute; dereferencing the result is what needs a live element.
#[inline]
pub(crate) fn link_of<A: Adapter>(value: *const A::Value) -> *mut A::Link {
    value
        .wrapping_byte_add(A::LINK_OFFSET)
        .cast::<A::Link>()
        .cast_mut()
}

/// The element around the link `link` points to (`container_of`).
#[inline]
pub(crate) fn value_of<A: Adapter>(link: *const A::Link) -> *const A::Value {
    link.wrapping_byte_sub(A::LINK_OFFSET).cast::<A::Value>()
}

/// The link of an element the caller can see.
#[inline]
pub(crate) fn link_ref<A: Adapter>(value: &A::Value) -> &A::Link {
    // SAFETY: by `Adapter`'s contract a `Link` field lies at `LINK_OFFSET`
    // inside every `Value`; `value` is live for the borrow, and the pointer
    // derived from it covers the whole element.
    unsafe { &*link_of::<A>(value) }
}

#[cold]
#[inline(never)]
#[track_caller]
fn already_linked() -> ! {
    panic!(
        "rcu-list: the element is already in a list (or was removed less than a grace period \
         ago); an element can be linked in one list at a time"
    )
}

/// An element given to a list, its link claimed for the list, not yet
/// published. Dropping it gives the claim back and drops the pointer.
pub(crate) struct Claimed<A: Adapter> {
    value: NonNull<A::Value>,
    /// The list it is claimed for.
    id: usize,
    _owns: PhantomData<A::Pointer>,
}

impl<A: Adapter> Claimed<A> {
    /// Takes `ptr` and claims its link for list `id`.
    ///
    /// # Panics
    /// If the link is already claimed (the element is in a list, or was
    /// removed from one less than a grace period ago). `ptr` is dropped
    /// first.
    #[track_caller]
    pub(crate) fn new(ptr: A::Pointer, id: usize) -> Self {
        let value = OwningPointer::into_raw(ptr);
        // SAFETY: `into_raw` gives a pointer valid for shared access
        // (`OwningPointer` contract 1), non-null by the same contract.
        let claimed = unsafe { link_ref::<A>(&*value) }.owner().claim(id);
        if !claimed {
            // SAFETY: `value` came from `into_raw` just above and was not
            // published anywhere.
            drop(unsafe { A::Pointer::from_raw(value) });
            already_linked();
        }
        Claimed {
            // SAFETY: non-null (`OwningPointer` contract 1).
            value: unsafe { NonNull::new_unchecked(value.cast_mut()) },
            id,
            _owns: PhantomData,
        }
    }

    /// The element's link, with the element's provenance.
    #[inline]
    pub(crate) fn link(&self) -> *mut A::Link {
        link_of::<A>(self.value.as_ptr())
    }

    /// Hands the element to the list, which links it now, under its lock,
    /// and owns it from here on (invariant 2): its owner word says linked
    /// from here on.
    #[inline]
    pub(crate) fn into_link(self) -> *mut A::Link {
        let this = ManuallyDrop::new(self);
        let link = this.link();
        // SAFETY: the element is ours and live (we hold its pointer).
        unsafe { &*link }.owner().linked(this.id);
        link
    }

    /// Gives the element back unpublished, its claim released.
    pub(crate) fn abandon(self) -> A::Pointer {
        let this = ManuallyDrop::new(self);
        // SAFETY: the element is ours and live (we hold its pointer).
        unsafe { &*this.link() }.owner().release();
        // SAFETY: `value` came from `into_raw` in `new`, was never
        // published, and `this` is forgotten, so it is taken back once.
        unsafe { A::Pointer::from_raw(this.value.as_ptr()) }
    }
}

impl<A: Adapter> Drop for Claimed<A> {
    /// Reached only when a claim is dropped before it was linked or
    /// abandoned (an unwinding caller): gives the claim back and drops the
    /// pointer.
    fn drop(&mut self) {
        // SAFETY: the element is ours and live (we hold its pointer).
        unsafe { &*self.link() }.owner().release();
        // SAFETY: `value` came from `into_raw` in `new`, was never published,
        // and is not used again.
        drop(unsafe { A::Pointer::from_raw(self.value.as_ptr()) });
    }
}

/// An element unlinked from its list that readers may still see: it owns
/// the pointer until a grace period has passed. It has no `Drop` (a drop
/// leaks the element): the public [`Removed`](crate::Removed) retires it
/// when dropped, and keeps it while it waits, and [`Batch`] finishes every
/// one it holds.
pub(crate) struct Retired<P: OwningPointer> {
    value: NonNull<P::Target>,
    owner: NonNull<Owner>,
    _owns: PhantomData<P>,
}

// SAFETY: a `Retired<P>` owns a `P` (sent: `P: Send`) and hands out
// `&P::Target` on whatever thread holds it while readers elsewhere may read
// the same element (`P::Target: Sync`). The owner word is an atomic.
unsafe impl<P: OwningPointer + Send> Send for Retired<P> where P::Target: Sync {}
// SAFETY: `&Retired<P>` gives only `&P::Target`, shared already with readers.
unsafe impl<P: OwningPointer> Sync for Retired<P> where P::Target: Sync {}

impl<P: OwningPointer> Retired<P> {
    /// # Safety
    /// 1. `value` came from `P::into_raw` and is owned by the caller.
    /// 2. `owner` is the owner word of the element's link, marked
    ///    `RETIRING`.
    /// 3. The element is unreachable for readers that start a critical
    ///    section of the list's domain from now on (the unlinking stores are
    ///    done), and readers reach it only under guards of that domain.
    pub(crate) unsafe fn new(value: *const P::Target, owner: *const Owner) -> Self {
        Retired {
            // SAFETY: `value` is non-null by `OwningPointer` contract 1.
            value: unsafe { NonNull::new_unchecked(value.cast_mut()) },
            // SAFETY: a field of the live element `value` points to.
            owner: unsafe { NonNull::new_unchecked(owner.cast_mut()) },
            _owns: PhantomData,
        }
    }

    /// The element.
    #[inline]
    pub(crate) fn value(&self) -> &P::Target {
        // SAFETY: the element stays alive until `finish` (we own its
        // pointer); nothing asserts unique access to it (contract 3).
        unsafe { self.value.as_ref() }
    }

    /// Releases the link and rebuilds the pointer.
    ///
    /// # Safety
    /// A grace period of the list's domain has passed since the element
    /// was unlinked.
    pub(crate) unsafe fn finish(self) -> P {
        // SAFETY: the owner word lives in the element, alive until the
        // pointer below is dropped. Released first: once `P` is rebuilt
        // (a `Box`, say) we no longer touch the element through `self`.
        unsafe { self.owner.as_ref() }.release();
        // SAFETY: `value` came from `P::into_raw` and `self` (consumed) was
        // its only owner; after the grace period no reader holds it.
        unsafe { P::from_raw(self.value.as_ptr()) }
    }

    /// Drops the element after a grace period of `domain`, on its reclaim
    /// thread.
    pub(crate) fn retire(self, domain: &RcuDomain)
    where
        P: Send + 'static,
        P::Target: Sync,
    {
        domain.call_rcu(move || {
            // SAFETY: `call_rcu` runs this after a grace period that started
            // after the element was unlinked (`Retired::new` contract 3).
            drop(unsafe { self.finish() });
        });
    }
}

/// Elements removed together (`retain`), retired with one callback when
/// the batch is dropped, which a caller arranges to happen after it has
/// released the list's lock, on unwinding too.
pub(crate) struct Batch<'d, P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    retired: Vec<Retired<P>>,
    domain: &'d RcuDomain,
}

impl<'d, P> Batch<'d, P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    pub(crate) fn new(domain: &'d RcuDomain) -> Self {
        Batch {
            retired: Vec::new(),
            domain,
        }
    }

    pub(crate) fn push(&mut self, r: Retired<P>) {
        self.retired.push(r);
    }
}

impl<P> Drop for Batch<'_, P>
where
    P: OwningPointer + Send + 'static,
    P::Target: Sync,
{
    fn drop(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let retired = std::mem::take(&mut self.retired);
        self.domain.call_rcu(move || {
            drop_each(retired.into_iter().map(|r| {
                // SAFETY: `call_rcu` runs this after a grace period that
                // started after every element of the batch was unlinked.
                unsafe { r.finish() }
            }));
        });
    }
}

/// A chain of elements detached from a list all at once (`clear`, or the
/// list's drop), each still linked to the next. Dropping it releases each
/// link and drops each pointer, in order; a panicking drop does not leak
/// the rest.
pub(crate) struct Chain<A: Adapter> {
    first: *mut A::Link,
    _owns: PhantomData<A::Pointer>,
}

// SAFETY: the chain owns its elements' pointers (`P: Send`) and touches only
// their links (atomics) until it rebuilds the pointers.
unsafe impl<A: Adapter> Send for Chain<A> where A::Pointer: Send {}

impl<A: Adapter> Chain<A> {
    /// # Safety
    /// 1. `first` is null or the first link of a null-terminated chain of
    ///    elements that the caller owns (each came from `into_raw`, links
    ///    claimed), no longer reachable from the list's head.
    /// 2. The chain is dropped only when no reader can reach its elements:
    ///    after a grace period of the list's domain, or when the list is
    ///    dropped (`&mut`: no reader borrows it).
    pub(crate) unsafe fn new(first: *mut A::Link) -> Self {
        Chain {
            first,
            _owns: PhantomData,
        }
    }

    fn pop(&mut self) -> Option<A::Pointer> {
        if self.first.is_null() {
            return None;
        }
        let cur = self.first;
        // SAFETY: the chain owns the element (`new` contract 1).
        let link = unsafe { &*cur };
        // Read `next` before the element can go.
        self.first = link.next_relaxed();
        link.owner().release();
        // SAFETY: `cur` (not `link`, whose provenance is the link field's
        // only) came from `into_raw` with the element's provenance
        // (invariant 1); it is taken back once (we moved past it), and no
        // reader can reach it (`new` contract 2).
        Some(unsafe { A::Pointer::from_raw(value_of::<A>(cur)) })
    }
}

impl<A: Adapter> Drop for Chain<A> {
    fn drop(&mut self) {
        drop_each(std::iter::from_fn(|| self.pop()));
    }
}

/// Drops every item `items` yields, even when some drops panic: it goes on
/// with the rest, then resumes the first panic. (Dropping the rest while
/// unwinding from the first, as `Vec` does, would abort the process at a
/// second panicking drop.)
fn drop_each<T>(items: impl Iterator<Item = T>) {
    let mut first_panic = None;
    for item in items {
        // AssertUnwindSafe: the item is gone either way, and what follows
        // touches only the iterator, which a drop cannot reach.
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(item)))
        {
            first_panic.get_or_insert(payload);
        }
    }
    if let Some(payload) = first_panic {
        std::panic::resume_unwind(payload);
    }
}

/// A reader's iterator over a list's elements: see
/// [`RcuList::iter`](crate::RcuList::iter) and
/// [`RcuSList::iter`](crate::RcuSList::iter).
///
/// Lock-free: each step is one `Acquire` load of the current element's
/// `next` link. Elements yielded live as long as the guard (`'g`). It sees
/// every element that stays in the list for the whole walk, in order, and
/// may or may not see elements inserted or removed during it.
pub struct Iter<'g, A: Adapter> {
    next: *const A::Link,
    _guarded: PhantomData<&'g A::Value>,
}

impl<'g, A: Adapter> Iter<'g, A> {
    /// # Safety
    /// `first` was loaded (`Acquire`) from the head of a list whose
    /// elements are reclaimed only through its domain's grace periods, under
    /// a guard of that domain that lives for `'g`, with the list borrowed for
    /// `'g`.
    pub(crate) unsafe fn new(first: *const A::Link) -> Self {
        Iter {
            next: first,
            _guarded: PhantomData,
        }
    }
}

impl<'g, A: Adapter> Iterator for Iter<'g, A> {
    type Item = &'g A::Value;

    #[inline]
    fn next(&mut self) -> Option<&'g A::Value> {
        if self.next.is_null() {
            return None;
        }
        let cur = self.next;
        // SAFETY: `cur` was reached from the list's head by Acquire loads
        // under the guard (`Iter::new`): the element was initialised before
        // it was published (invariant 3), and it is retired only after a
        // grace period that started after it was unlinked, so after our
        // guard's critical section began; it stays alive for `'g`.
        let link = unsafe { &*cur };
        self.next = link.next();
        // SAFETY: as above; `cur` (not `link`, a reference to the link
        // field only) has the element's provenance (invariant 1), and no one
        // asserts unique access to a published element (`OwningPointer`
        // contract 3).
        Some(unsafe { &*value_of::<A>(cur) })
    }
}

impl<A: Adapter> std::iter::FusedIterator for Iter<'_, A> {}

impl<A: Adapter> Clone for Iter<'_, A> {
    fn clone(&self) -> Self {
        Iter {
            next: self.next,
            _guarded: PhantomData,
        }
    }
}

// SAFETY: an `Iter<'g, A>` is a position in the list plus the right to read
// `&'g A::Value`s: it may cross threads when `&A::Value` may.
unsafe impl<A: Adapter> Send for Iter<'_, A> where A::Value: Sync {}
// SAFETY: as above; `&Iter` reads nothing.
unsafe impl<A: Adapter> Sync for Iter<'_, A> where A::Value: Sync {}

impl<A: Adapter> std::fmt::Debug for Iter<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}
