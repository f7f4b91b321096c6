//! How a list finds the link inside an element, and how it owns elements.
//!
//! After intrusive-collections' `Adapter` = link ops + pointer ops split:
//! an [`Adapter`] names the element type, the link field and the owning
//! pointer kind ([`OwningPointer`]: `Box<T>`, `Arc<T>`, `&'static T`).
//! [`intrusive_adapter!`](crate::intrusive_adapter) writes the `unsafe`
//! implementation from a field name, with `core::mem::offset_of!`.

use std::sync::Arc;

/// An owning pointer kind a list can hold its elements by: `Box<T>` (the
/// list owns the element), `Arc<T>` (shared with the caller) or `&'static T`
/// (statics, leaked elements).
///
/// A list turns the pointer into a raw pointer when an element is inserted
/// and back into the pointer after a grace period that followed its removal
/// (or when the list is dropped). Implement it for another pointer only if
/// it meets the contract below (loom and the tests use this for pointers
/// that mark reclamation instead of freeing).
///
/// # Safety
/// 1. [`into_raw`](Self::into_raw) returns a non-null, aligned pointer to
///    the target, valid for shared access (`&Target`) from any thread on
///    which `Target` may be shared, until it is passed to
///    [`from_raw`](Self::from_raw); the target does not move in that time.
/// 2. `from_raw(into_raw(p))` is `p` again.
/// 3. Between the two, nothing creates a `&mut Target` or otherwise asserts
///    unique access to the target.
pub unsafe trait OwningPointer: Sized {
    /// The element type the pointer owns.
    type Target;

    /// Gives up the pointer for a raw one (see the trait's contract).
    fn into_raw(this: Self) -> *const Self::Target;

    /// Takes back a pointer given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of this pointer kind, and is taken back
    /// once.
    unsafe fn from_raw(ptr: *const Self::Target) -> Self;
}

// SAFETY: (1) `Box::into_raw` gives a non-null, aligned pointer to a heap
// value that never moves and that nothing else uses until `Box::from_raw`;
// (2) `Box::from_raw` restores the box; (3) only the box could assert unique
// access, and it does not exist in between.
unsafe impl<T> OwningPointer for Box<T> {
    type Target = T;

    #[inline]
    fn into_raw(this: Self) -> *const T {
        Box::into_raw(this).cast_const()
    }

    #[inline]
    unsafe fn from_raw(ptr: *const T) -> Self {
        // SAFETY: the caller passes back a pointer from `Box::into_raw`, once.
        unsafe { Box::from_raw(ptr.cast_mut()) }
    }
}

// SAFETY: (1) `Arc::into_raw` keeps the strong count, so the value stays put
// and alive; (2) `Arc::from_raw` takes that count back; (3) an `Arc` gives
// only shared access (`get_mut` needs a unique count, which this one denies).
unsafe impl<T> OwningPointer for Arc<T> {
    type Target = T;

    #[inline]
    fn into_raw(this: Self) -> *const T {
        Arc::into_raw(this)
    }

    #[inline]
    unsafe fn from_raw(ptr: *const T) -> Self {
        // SAFETY: the caller passes back a pointer from `Arc::into_raw`, once.
        unsafe { Arc::from_raw(ptr) }
    }
}

// SAFETY: (1) a `'static` shared reference is valid, aligned and immovable
// forever; (2) the round trip is the identity; (3) a shared reference
// forbids unique access for its whole lifetime.
unsafe impl<T> OwningPointer for &'static T {
    type Target = T;

    #[inline]
    fn into_raw(this: Self) -> *const T {
        std::ptr::from_ref(this)
    }

    #[inline]
    unsafe fn from_raw(ptr: *const T) -> Self {
        // SAFETY: `ptr` came from a `&'static T` (`into_raw`).
        unsafe { &*ptr }
    }
}

/// Maps an element to its embedded link and names the pointer kind that
/// owns linked elements. Write one with
/// [`intrusive_adapter!`](crate::intrusive_adapter) rather than by hand.
///
/// # Safety
/// `LINK_OFFSET` is the offset in bytes, from the start of a `Value`, of a
/// field of type `Link` (what `core::mem::offset_of!(Value, field)` gives).
pub unsafe trait Adapter {
    /// The link kind: [`ListLink`](crate::ListLink) for
    /// [`RcuList`](crate::RcuList), [`SListLink`](crate::SListLink) for
    /// [`RcuSList`](crate::RcuSList).
    type Link: crate::Link;
    /// The element type.
    type Value;
    /// The pointer kind a list holds elements by (`Box<Value>`,
    /// `Arc<Value>`, `&'static Value`).
    type Pointer: OwningPointer<Target = Self::Value>;
    /// Where the link lies inside a `Value`, in bytes.
    const LINK_OFFSET: usize;
}

/// Declares an [`Adapter`]: a unit struct that maps an element type to one
/// of its link fields, with the pointer kind that owns linked elements.
///
/// ```text
/// intrusive_adapter!(VISIBILITY NAME = POINTER: VALUE { FIELD => LINK });
/// ```
///
/// `FIELD` may be a path through nested structs (`a.b.link`). The macro
/// checks at compile time that the field has type `LINK` and computes its
/// offset with `core::mem::offset_of!`; nothing else is `unsafe`. An element
/// with two links can be in two lists at once, with one adapter per link.
///
/// ```
/// use rcu_list::{ListLink, SListLink, intrusive_adapter};
/// use std::sync::Arc;
///
/// pub struct Session { id: u64, all: ListLink, bucket: SListLink }
///
/// intrusive_adapter!(pub AllSessions = Arc<Session>: Session { all => ListLink });
/// intrusive_adapter!(BucketEntry = Arc<Session>: Session { bucket => SListLink });
/// # let _ = |s: &Session| s.id;
/// ```
///
/// A mismatched link type does not compile:
///
/// ```compile_fail
/// use rcu_list::{ListLink, SListLink, intrusive_adapter};
/// struct Node { link: SListLink }
/// intrusive_adapter!(Wrong = Box<Node>: Node { link => ListLink });
/// ```
#[macro_export]
macro_rules! intrusive_adapter {
    ($(#[$attr:meta])* $vis:vis $name:ident = $pointer:ty : $value:ty { $($field:ident).+ => $link:ty } $(;)?) => {
        $(#[$attr])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name;

        // SAFETY: `LINK_OFFSET` is `offset_of!` of the named field, and
        // `_check` below only compiles if that field has type `$link`.
        unsafe impl $crate::Adapter for $name {
            type Link = $link;
            type Value = $value;
            type Pointer = $pointer;
            const LINK_OFFSET: usize = {
                #[allow(dead_code)]
                fn _check(value: &$value) -> &$link {
                    &value.$($field).+
                }
                ::core::mem::offset_of!($value, $($field).+)
            };
        }
    };
}
