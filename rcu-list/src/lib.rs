//! RCU-protected intrusive lists: readers walk them lock-free while writers
//! insert and remove, and removed elements are reclaimed after a grace
//! period of [`rcu_core`].
//!
//! # Summary
//!
//! * [`RcuList`]: doubly linked (QEMU's `QLIST`/`QTAILQ`, Linux's
//!   `list_*_rcu`): push and pop at both ends, insert before or after an
//!   element, remove, replace, `retain`, `len`, `clear`.
//! * [`RcuSList`]: singly linked with a one-word head (QEMU's `QSLIST`,
//!   Linux's `hlist_*_rcu`): the shape of a hash bucket. Push at the front,
//!   insert after an element, remove, pop at the front, `retain`, `clear`.
//! * Intrusive, in the manner of intrusive-collections: an element embeds a
//!   [`ListLink`] or [`SListLink`]; an [`Adapter`], declared with
//!   [`intrusive_adapter!`] over `core::mem::offset_of!`, maps link to
//!   element and names the pointer kind that owns linked elements
//!   ([`OwningPointer`]: `Box<T>`, `Arc<T>`, `&'static T`). No allocation
//!   per insertion; an element can be in several lists through several
//!   links.
//! * Readers take any [`rcu_core::Guard`] of the list's domain
//!   ([`read_lock`](rcu_core::read_lock),
//!   [`DomainGuard`](rcu_core::DomainGuard),
//!   [`OwnedReadGuard`](rcu_core::OwnedReadGuard)); what they read lives as
//!   long as the guard.
//!
//! ```
//! use rcu_list::{ListLink, RcuList, intrusive_adapter};
//!
//! struct Timer { deadline: u64, link: ListLink }
//! intrusive_adapter!(TimerAdapter = Box<Timer>: Timer { link => ListLink });
//!
//! let timers = RcuList::<TimerAdapter>::new();
//! timers.push_back(Box::new(Timer { deadline: 10, link: ListLink::new() }));
//! timers.push_back(Box::new(Timer { deadline: 20, link: ListLink::new() }));
//!
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let guard = rcu_core::read_lock(); // no lock, no RMW, no fence
//!         let due = timers.iter(&guard).filter(|t| t.deadline <= 15).count();
//!         assert!(due <= 1);
//!     });
//!     // Concurrently: the removed timer is dropped after a grace period.
//!     drop(timers.pop_front());
//! });
//! assert_eq!(timers.len(), 1);
//! ```
//!
//! # Trade-offs
//!
//! * Readers cost one `Acquire` load per element (a plain load on x86) and
//!   never wait; writers are serialised (a mutex for [`RcuList`], a bit lock
//!   in the head for [`RcuSList`]). Use these lists where reads dominate;
//!   many concurrent writers contend on the one lock.
//! * Readers walk forward only: `prev` links are the writers' (as in Linux,
//!   there is no RCU-safe reverse walk). A walk that runs concurrently with
//!   updates sees every element that stays linked throughout, and may or
//!   may not see elements inserted or removed meanwhile.
//! * A removed element cannot be linked again until a grace period has
//!   passed ([`Removed::into_inner`] waits for one), because readers may
//!   still stand on it. Inserting it earlier panics.
//! * Memory comes back after a grace period, not at once; a reader that
//!   holds its guard for long holds back every removal meanwhile.
//!
//! # How it works
//!
//! * **Publication.** A new element's links are filled in first; one
//!   `Release` store of its predecessor's `next` (or the head) publishes it.
//!   Readers load each `next` with `Acquire`, so they see the element
//!   initialised. Stores of pointers to elements that are already published
//!   are `Release` too, so every reader has a happens-before edge to what it
//!   dereferences.
//! * **Removal.** The writer points the predecessor (or the head) past the
//!   element and leaves the element's own `next` alone, so a reader standing
//!   on it continues to its old successor, which is itself either linked or
//!   removed after the reader's critical section began, so alive. The
//!   element comes back as a [`Removed`] handle, made after the writer lock
//!   is released; dropping it queues a callback on the domain
//!   ([`RcuDomain::call_rcu`](rcu_core::RcuDomain::call_rcu)) that, after a
//!   grace period, frees the link and drops the owning pointer.
//! * **Ownership of links.** A link's owner word is free, the id of the one
//!   list it is in, or *retiring*. Insertion claims it with a
//!   compare-and-swap from free, which is how a double insertion (an `Arc`
//!   pushed twice, a `&'static` element in two lists) is caught; writers
//!   check positions (`insert_after(&pos, ..)`, `remove(&elem)`) against the
//!   list's id under its lock, which is how an element of another list is
//!   refused. The claim is released only after the grace period, with a
//!   `Release` store that the next claim's `Acquire` pairs with.
//! * **Pointer provenance.** The list stores only pointers derived from the
//!   one [`OwningPointer::into_raw`] returned; when a caller names an element
//!   by reference, the list uses the pointer that the element's predecessor
//!   holds, so turning it back into a `Box` is sound under Stacked and Tree
//!   Borrows (Miri checks the tests under both).
//! * **Why no `UnsafeCell` or `PhantomPinned`.** Links are written through
//!   `&` while readers read them, so every link field is an atomic: `next`
//!   with `Release`/`Acquire`, the writer-only `prev` and the owner word
//!   `Relaxed` under the lock (plain moves). tokio's `linked_list` needs
//!   `PhantomPinned` because its callers keep pinned nodes; here the list
//!   owns linked elements through pointers whose targets never move.
//!
//! The algorithms are Linux's RCU list primitives (`include/linux/rculist.h`,
//! `rculist_bl.h`; McKenney, "What is RCU, Fundamentally?", LWN 2007) and
//! QEMU's `include/qemu/rcu_queue.h`, tested after QEMU's
//! `tests/unit/test-rcu-list.c`.
//!
//! # How to use
//!
//! * Declare the element with a link per list it can be in, and an adapter
//!   per link: `intrusive_adapter!(A = Arc<T>: T { link => ListLink })`.
//! * `RcuList::<A>::new()` uses the process-wide domain;
//!   [`RcuList::new_in`] binds a list to another [`RcuDomain`](rcu_core::RcuDomain).
//! * Read with `list.iter(&guard)`; write through `&list` from any thread.
//! * Keep a [`Removed`] to read the element a while longer, call
//!   [`Removed::into_inner`] to get it back (after a grace period), or drop
//!   it to have it dropped in the background.

mod adapter;
mod link;
mod list;
mod raw;
mod removed;
mod slist;
mod sync;

#[cfg(all(test, rcu_loom))]
mod loom_tests;

pub use adapter::{Adapter, OwningPointer};
pub use link::{Link, ListLink, SListLink};
pub use list::RcuList;
pub use raw::Iter;
pub use removed::Removed;
pub use slist::RcuSList;
