//! The links elements embed: [`ListLink`] (doubly linked) and [`SListLink`]
//! (singly linked).
//!
//! A link is mutated through `&`, while readers on other threads follow it,
//! so every field is an atomic (no `UnsafeCell`, no `unsafe impl Sync`):
//!
//! * `next` is what RCU readers follow: stores that readers may see are
//!   `Release`, reader loads `Acquire`. A removed element keeps it until a
//!   grace period has passed, so a reader standing on the element moves on.
//! * `prev` (doubly linked only) is touched only by the writer that holds the
//!   owning list's lock; its accesses are `Relaxed` (the lock orders them),
//!   which compiles to plain moves.
//! * `owner` says who may touch the link: [`FREE`], [`RETIRING`] (removed,
//!   waiting for a grace period), a list's id with the [`PENDING`] bit
//!   (claimed by an insertion into that list that has not linked it yet),
//!   or the id of the one list it is linked in. Inserting claims it with a
//!   compare-and-swap from `FREE`, so an element is in at most one list,
//!   and a double insertion panics instead of corrupting both lists. The
//!   claim is taken before the list's lock, so the lock holder tells a
//!   linked element (the id alone) from one whose insertion is still
//!   waiting for the lock: an element counts as a position in the list only
//!   once it is linked. The claim is given back only after the grace
//!   period that follows the removal, so no writer re-links an element while
//!   a reader may still stand on it (which could send that reader into
//!   another list, of another domain).
//!
//! No `PhantomPinned` is needed (tokio's `linked_list` needs one because its
//! callers keep ownership of pinned nodes): a linked element is owned by the
//! list through a pointer whose target never moves (`Box`, `Arc`,
//! `&'static`), and callers get it back only once it is unlinked and free.

use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use std::fmt;
use std::ptr;

/// The owner word of a link that no list holds.
pub(crate) const FREE: usize = 0;
/// The owner word of a link that was removed from its list and is waiting
/// for a grace period before it may be linked again (odd: no list's id).
pub(crate) const RETIRING: usize = 1;

/// The bit an owner word carries while an insertion has claimed the link
/// for a list but not linked it yet (list ids are even).
pub(crate) const PENDING: usize = 1;

/// A fresh list id: even, never [`FREE`], never reused.
pub(crate) fn new_list_id() -> usize {
    // Plain `std` atomic even under loom: ids only need to be unique, they
    // take no part in any protocol a model explores.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(2);
    // Relaxed: uniqueness needs only the atomicity of the RMW. Checked,
    // so that exhaustion stays final (a wrapped counter would hand out
    // live lists' ids again).
    NEXT.fetch_update(
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
        |n| n.checked_add(2),
    )
    .expect("rcu-list: list ids exhausted")
}

/// Declares a constructor that is `const` with `std` atomics and plain under
/// loom, whose atomics have no `const` constructor.
macro_rules! maybe_const_new {
    ($(#[$m:meta])* $body:block) => {
        $(#[$m])*
        #[cfg(not(rcu_loom))]
        #[must_use]
        pub const fn new() -> Self $body
        $(#[$m])*
        #[cfg(rcu_loom)]
        #[must_use]
        pub fn new() -> Self $body
    };
}

/// Who holds a link: see the module docs. (`pub` in a private module, for
/// [`LinkOps`].)
pub struct Owner(AtomicUsize);

impl Owner {
    maybe_const_new!({ Owner(AtomicUsize::new(FREE)) });

    /// Claims a free link for an insertion into list `id`, not linked yet
    /// (see [`PENDING`]); `false` if it is not free.
    #[inline]
    pub(crate) fn claim(&self, id: usize) -> bool {
        // Acquire on success: pairs with the Release store in `release`, so
        // the grace period that preceded it (and every reader access of the
        // old list that it waited for) happens before our writes to the
        // link. Relaxed on failure: we touch nothing then.
        self.0
            .compare_exchange(FREE, id | PENDING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Marks a claimed link as linked in list `id`: by the holder of that
    /// list's lock, as it links it.
    #[inline]
    pub(crate) fn linked(&self, id: usize) {
        // Relaxed: read as a position only by holders of the same lock,
        // which orders this store before them; anyone else takes a snapshot.
        self.0.store(id, Ordering::Relaxed);
    }

    /// Whether the link is linked in list `id` now (not merely claimed for
    /// it).
    #[inline]
    pub(crate) fn is(&self, id: usize) -> bool {
        // Relaxed: `id` is stored and replaced only by writers of list `id`,
        // under its lock; a caller holding that lock is ordered after all of
        // them by the lock, and any other caller only takes a snapshot.
        self.0.load(Ordering::Relaxed) == id
    }

    /// Whether some list holds the link (linked, or removed and waiting for
    /// a grace period).
    #[inline]
    pub(crate) fn is_claimed(&self) -> bool {
        // Relaxed: a snapshot.
        self.0.load(Ordering::Relaxed) != FREE
    }

    /// Marks a link just unlinked by the lock holder of its list.
    #[inline]
    pub(crate) fn retire(&self) {
        // Relaxed: read only by writers of the same list (ordered by its
        // lock) or by claims, which fail on anything but FREE.
        self.0.store(RETIRING, Ordering::Relaxed);
    }

    /// Gives the link back: after the grace period that followed its
    /// removal, or for a claim taken and abandoned before publication.
    #[inline]
    pub(crate) fn release(&self) {
        // Release: pairs with the Acquire of the next `claim`.
        self.0.store(FREE, Ordering::Release);
    }
}

/// The link of a doubly linked [`RcuList`](crate::RcuList): embed one in
/// each element (three words) and name it in an
/// [`intrusive_adapter!`](crate::intrusive_adapter).
///
/// A link is in at most one list at a time; it is *claimed* from insertion
/// until a grace period after its removal.
///
/// ```
/// use rcu_list::ListLink;
///
/// struct Task { id: u32, link: ListLink }
/// static IDLE: Task = Task { id: 0, link: ListLink::new() }; // `const`
/// assert!(!IDLE.link.is_linked());
/// # let _ = IDLE.id;
/// ```
pub struct ListLink {
    /// The next element's link, or null at the end. Read by RCU readers.
    next: AtomicPtr<ListLink>,
    /// The previous element's link, or null for the first. Writer-only.
    prev: AtomicPtr<ListLink>,
    owner: Owner,
}

impl ListLink {
    maybe_const_new!(
        /// A link that is in no list.
        {
            ListLink {
                next: AtomicPtr::new(ptr::null_mut()),
                prev: AtomicPtr::new(ptr::null_mut()),
                owner: Owner::new(),
            }
        }
    );

    /// Whether a list holds the link: it is linked, or it was removed less
    /// than a grace period ago (its element cannot be inserted yet). A
    /// snapshot: other threads may change it at once.
    pub fn is_linked(&self) -> bool {
        self.owner.is_claimed()
    }

    /// The next link, as a reader sees it.
    #[inline]
    pub(crate) fn next(&self) -> *mut ListLink {
        // Acquire: pairs with the Release stores in `publish_next` (and the
        // list head's), so the element it points to is fully initialised for
        // us.
        self.next.load(Ordering::Acquire)
    }

    /// Sets `next` where readers may see it.
    #[inline]
    pub(crate) fn publish_next(&self, next: *mut ListLink) {
        // Release: pairs with the Acquire load in `next`: the element `next`
        // points to (its value and its own links) is visible to a reader
        // that follows this pointer.
        self.next.store(next, Ordering::Release);
    }

    /// Sets `next` of a link no reader can reach yet.
    #[inline]
    pub(crate) fn init_next(&self, next: *mut ListLink) {
        // Relaxed: the link is not published; the Release store that
        // publishes it orders this store before any reader's load.
        self.next.store(next, Ordering::Relaxed);
    }

    /// `next` for the writer, which holds the lock.
    #[inline]
    pub(crate) fn next_locked(&self) -> *mut ListLink {
        // Relaxed: every store to a linked element's `next` is made under
        // the lock the caller holds.
        self.next.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn prev(&self) -> *mut ListLink {
        // Relaxed: writer-only, ordered by the list's lock.
        self.prev.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn set_prev(&self, prev: *mut ListLink) {
        // Relaxed: writer-only, ordered by the list's lock.
        self.prev.store(prev, Ordering::Relaxed);
    }
}

/// The link of a singly linked [`RcuSList`](crate::RcuSList): embed one in
/// each element (two words) and name it in an
/// [`intrusive_adapter!`](crate::intrusive_adapter).
///
/// ```
/// use rcu_list::SListLink;
///
/// struct Entry { key: u64, link: SListLink }
/// let e = Entry { key: 1, link: SListLink::new() };
/// assert!(!e.link.is_linked());
/// # let _ = e.key;
/// ```
pub struct SListLink {
    /// The next element's link, or null at the end. Read by RCU readers.
    next: AtomicPtr<SListLink>,
    owner: Owner,
}

impl SListLink {
    maybe_const_new!(
        /// A link that is in no list.
        {
            SListLink {
                next: AtomicPtr::new(ptr::null_mut()),
                owner: Owner::new(),
            }
        }
    );

    /// Whether a list holds the link: see [`ListLink::is_linked`].
    pub fn is_linked(&self) -> bool {
        self.owner.is_claimed()
    }

    /// The next link, as a reader sees it.
    #[inline]
    pub(crate) fn next(&self) -> *mut SListLink {
        // Acquire: pairs with the Release store in `publish_next` (and the
        // head's), as in `ListLink::next`.
        self.next.load(Ordering::Acquire)
    }

    /// Sets `next` where readers may see it.
    #[inline]
    pub(crate) fn publish_next(&self, next: *mut SListLink) {
        // Release: pairs with the Acquire load in `next`.
        self.next.store(next, Ordering::Release);
    }

    /// Sets `next` of a link no reader can reach yet.
    #[inline]
    pub(crate) fn init_next(&self, next: *mut SListLink) {
        // Relaxed: published later by a Release store, as in `ListLink`.
        self.next.store(next, Ordering::Relaxed);
    }

    /// `next` for the writer, which holds the lock.
    #[inline]
    pub(crate) fn next_locked(&self) -> *mut SListLink {
        // Relaxed: stores to a linked element's `next` are made under the
        // lock the caller holds.
        self.next.load(Ordering::Relaxed)
    }
}

macro_rules! link_common_impls {
    ($t:ident) => {
        impl Default for $t {
            fn default() -> Self {
                Self::new()
            }
        }

        /// A clone is a fresh, unlinked link (so elements can derive
        /// `Clone`); the clone is in no list.
        impl Clone for $t {
            fn clone(&self) -> Self {
                Self::new()
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("linked", &self.is_linked())
                    .finish_non_exhaustive()
            }
        }
    };
}

link_common_impls!(ListLink);
link_common_impls!(SListLink);

/// A link kind an element can embed: [`ListLink`] or [`SListLink`]. Sealed:
/// the lists' safety rests on these two types' protocol.
pub trait Link: LinkOps {}

impl Link for ListLink {}
impl Link for SListLink {}

/// What the shared raw code needs of a link kind: the supertrait that seals
/// [`Link`] (`pub` in this private module, so no one outside the crate can
/// name or implement it).
pub trait LinkOps {
    /// Who holds the link.
    fn owner(&self) -> &Owner;
    /// The next link, as a reader sees it (`Acquire`).
    fn next(&self) -> *mut Self;
    /// The next link, for code ordered after every store to it by a lock or
    /// a grace period (`Relaxed`).
    fn next_relaxed(&self) -> *mut Self;
}

impl LinkOps for ListLink {
    #[inline]
    fn owner(&self) -> &Owner {
        &self.owner
    }
    #[inline]
    fn next(&self) -> *mut Self {
        ListLink::next(self)
    }
    #[inline]
    fn next_relaxed(&self) -> *mut Self {
        self.next_locked()
    }
}

impl LinkOps for SListLink {
    #[inline]
    fn owner(&self) -> &Owner {
        &self.owner
    }
    #[inline]
    fn next(&self) -> *mut Self {
        SListLink::next(self)
    }
    #[inline]
    fn next_relaxed(&self) -> *mut Self {
        self.next_locked()
    }
}
