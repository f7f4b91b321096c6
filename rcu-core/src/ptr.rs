//! RCU-protected pointers: [`RcuPtr`] and [`RcuCell`], bound to the
//! process-wide domain or to an [`RcuDomain`].

use crate::{DomainId, Guard, RcuDomain};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// An atomic, owning, nullable pointer whose readers need no lock.
///
/// Readers [`load`](Self::load) under a [`Guard`] of the pointer's domain
/// and get a plain `&T` that lives as long as the guard. Writers [`store`](Self::store) (the old
/// value is dropped after a grace period, where `call_rcu` runs it) or
/// [`swap`](Self::swap) (the old value comes back as an [`Unlinked`], for the
/// caller to retire).
///
/// ```
/// use rcu_core::{RcuPtr, read_lock};
///
/// let ptr = RcuPtr::new(String::from("v1"));
/// {
///     let guard = read_lock();
///     assert_eq!(ptr.load(&guard).map(String::as_str), Some("v1"));
/// }
/// ptr.store(Some(String::from("v2"))); // "v1" is dropped after a grace period
/// let old = ptr.swap(None).unwrap();
/// assert_eq!(*old, "v2");
/// assert_eq!(old.into_inner(), "v2"); // waits for a grace period
/// ```
pub struct RcuPtr<T: Send + Sync + 'static> {
    /// Null or a pointer from `Box::into_raw`, with the [`TAG`] bit set
    /// exactly when `TAGGED` holds and `domain` is *not* the process-wide
    /// domain, null included (`RcuPtr::with_tag`; `domain` never changes):
    /// `load_checked` relies on it.
    ptr: AtomicPtr<T>,
    domain: RcuDomain,
    _owns: PhantomData<Box<T>>,
}

/// Bit 0 of a published word: set on every word of an [`RcuPtr`] (or
/// [`RcuCell`]) bound to a domain other than the process-wide one, null
/// included, when `T`'s alignment leaves the bit free. A read under a guard
/// of the process-wide domain ([`ReadGuard`](crate::ReadGuard), whose domain
/// is known by type, or any other guard of it) then checks its guard against
/// the bit of the word it loads anyway, not against the domain's id, a
/// second load (arc-swap's `Cache` reads with two loads; the id made three).
/// The process-wide domain's words are the bare pointers, so its readers'
/// fast path dereferences the word as loaded, with no untagging.
const TAG: usize = 1;

impl<T: Send + Sync + 'static> RcuPtr<T> {
    /// A pointer to `value`, in the process-wide domain.
    pub fn new(value: T) -> Self {
        Self::new_in(value, &RcuDomain::global())
    }

    /// A pointer to `value`, bound to `domain`: it is read under that
    /// domain's guards and retires through it.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let p = rcu_core::RcuPtr::new_in(5, &domain);
    /// let reader = domain.register();
    /// assert_eq!(p.load(&reader.read_lock()), Some(&5));
    /// ```
    pub fn new_in(value: T, domain: &RcuDomain) -> Self {
        let p = Box::into_raw(Box::new(value));
        RcuPtr {
            ptr: AtomicPtr::new(Self::with_tag(p, domain)),
            domain: domain.clone(),
            _owns: PhantomData,
        }
    }

    /// Whether this type's published words carry [`TAG`] when bound to
    /// another domain than the process-wide one: a `Box<T>` of alignment 2
    /// or more has bit 0 clear.
    const TAGGED: bool = align_of::<T>() >= 2;

    /// `p` (null, or from `Box::into_raw`) as published in a pointer bound
    /// to `domain`: with [`TAG`] where the domain is not the process-wide
    /// one and the type has room for it (null too: such a word is never a
    /// bare null, so a process-wide guard's fast path rejects it).
    #[inline(always)]
    fn with_tag(p: *mut T, domain: &RcuDomain) -> *mut T {
        if Self::TAGGED && !domain.is_global() {
            p.map_addr(|a| a | TAG)
        } else {
            p
        }
    }

    /// A published pointer without its tag: null or from `Box::into_raw`.
    #[inline(always)]
    fn untag(p: *mut T) -> *mut T {
        if Self::TAGGED {
            p.map_addr(|a| a & !TAG)
        } else {
            p
        }
    }

    /// The published pointer, untagged, for a reader holding `guard`,
    /// after checking that `guard` protects this pointer's domain.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the pointer.
    #[inline(always)]
    #[track_caller]
    fn load_checked(&self, guard: &impl Guard, order: Ordering) -> *mut T {
        let p = self.ptr.load(order);
        // An untagged word (null or not) is bound to the process-wide
        // domain, which a process-wide guard protects (for a `ReadGuard` the
        // compare is with a constant), and is the pointer itself. Anything
        // else (another domain, another guard) takes the full check. Nothing
        // is dereferenced before it.
        if Self::TAGGED && guard.domain_id() == DomainId::GLOBAL && p.addr() & TAG == 0 {
            return p;
        }
        self.domain.assert_guard(guard);
        Self::untag(p)
    }

    /// A null pointer, in the process-wide domain.
    pub const fn null() -> Self {
        RcuPtr {
            ptr: AtomicPtr::new(ptr::null_mut()),
            domain: RcuDomain::global(),
            _owns: PhantomData,
        }
    }

    /// A null pointer bound to `domain`.
    pub fn null_in(domain: &RcuDomain) -> Self {
        RcuPtr {
            ptr: AtomicPtr::new(Self::with_tag(ptr::null_mut(), domain)),
            domain: domain.clone(),
            _owns: PhantomData,
        }
    }

    /// The domain the pointer is bound to.
    pub fn domain(&self) -> &RcuDomain {
        &self.domain
    }

    /// The current value, valid while `guard` lives.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the pointer.
    #[inline]
    #[track_caller]
    pub fn load<'g>(&'g self, guard: &'g impl Guard) -> Option<&'g T> {
        // Acquire: pairs with the Release (AcqRel) publication in
        // `swap`/`compare_exchange`: the pointee's initialisation is visible.
        let p = self.load_checked(guard, Ordering::Acquire);
        // SAFETY: a non-null pointer here (untagged) came from
        // `Box::into_raw` and is freed only after a grace period that starts
        // after it was unlinked (`Unlinked`'s drop or `into_inner`), or when
        // `self` is dropped, which the borrow `'g` of `self` rules out. The
        // grace period waits for `guard`'s critical section, which covers
        // this load: `guard` protects `self.domain`, the domain `Unlinked`
        // retires through (`load_checked` checked it, with `assert_guard`
        // or through the tag, which every word of a pointer of another
        // domain carries).
        unsafe { p.as_ref() }
    }

    /// Whether the pointer is null now.
    pub fn is_null(&self) -> bool {
        // Relaxed: a snapshot; nothing is dereferenced.
        Self::untag(self.ptr.load(Ordering::Relaxed)).is_null()
    }

    /// Publishes `value`; the old value is dropped after a grace period.
    pub fn store(&self, value: Option<T>) {
        drop(self.swap(value));
    }

    /// Publishes `value` and returns the old one, which readers may still
    /// see until a grace period has passed.
    pub fn swap(&self, value: Option<T>) -> Option<Unlinked<T>> {
        let new = Self::with_tag(into_raw(value.map(Box::new)), &self.domain);
        // AcqRel: Release publishes `new` to readers' Acquire loads; Acquire
        // pairs with the previous publisher so we own what we unlinked.
        let old = Self::untag(self.ptr.swap(new, Ordering::AcqRel));
        NonNull::new(old).map(|p| Unlinked::new(p, &self.domain))
    }

    /// Takes the value out, leaving null.
    pub fn take(&self) -> Option<Unlinked<T>> {
        self.swap(None)
    }

    /// Publishes `new` if the pointer still points to `current` (compared by
    /// address; `None` is null). On success returns the unlinked old value;
    /// on failure gives `new` back with the value found.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the pointer.
    #[track_caller]
    pub fn compare_exchange<'g>(
        &'g self,
        current: Option<&T>,
        new: Option<T>,
        guard: &'g impl Guard,
    ) -> Result<Option<Unlinked<T>>, CompareExchangeError<'g, T>> {
        self.domain.assert_guard(guard);
        let current = current.map_or(ptr::null_mut(), |r| ptr::from_ref(r).cast_mut());
        let current = Self::with_tag(current, &self.domain);
        let new_raw = into_raw(new.map(Box::new));
        let new_published = Self::with_tag(new_raw, &self.domain);
        // AcqRel on success: as in `swap`. Acquire on failure: we return a
        // reference to the value found, as `load` does.
        match self
            .ptr
            .compare_exchange(current, new_published, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(old) => Ok(NonNull::new(Self::untag(old)).map(|p| Unlinked::new(p, &self.domain))),
            Err(found) => {
                let found = Self::untag(found);
                // SAFETY: `new_raw` came from `into_raw` just above and was
                // never published.
                let new = unsafe { from_raw(new_raw) }.map(|b| *b);
                // SAFETY: as in `load`: `found` was published and cannot be
                // freed before `guard`'s critical section ends.
                let current = unsafe { found.as_ref() };
                Err(CompareExchangeError { current, new })
            }
        }
    }

    /// The value, through exclusive access: no reader can hold it.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        // SAFETY: `&mut self` excludes readers (they borrow `self`) and
        // writers; the pointer is null or owned by `self`.
        unsafe { Self::untag(*self.ptr.get_mut()).as_mut() }
    }

    /// The value, by value.
    pub fn into_inner(mut self) -> Option<T> {
        let p = Self::untag(std::mem::replace(self.ptr.get_mut(), ptr::null_mut()));
        // SAFETY: we own the pointee: `self` is consumed, so no reader or
        // writer can reach it.
        unsafe { from_raw(p) }.map(|b| *b)
    }
}

impl<T: Send + Sync + 'static> Drop for RcuPtr<T> {
    fn drop(&mut self) {
        // SAFETY: as in `into_inner`: `&mut self` in `drop` means no borrow
        // (hence no reader's reference) remains.
        drop(unsafe { from_raw(Self::untag(*self.ptr.get_mut())) });
    }
}

impl<T: Send + Sync + 'static> Default for RcuPtr<T> {
    fn default() -> Self {
        Self::null()
    }
}

impl<T: Send + Sync + fmt::Debug + 'static> fmt::Debug for RcuPtr<T> {
    /// Formats the current value under a guard tied to this thread, so a
    /// `T::fmt` that waits for a grace period of the pointer's domain panics
    /// rather than waiting for itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.domain.read_lock_local();
        f.debug_tuple("RcuPtr").field(&self.load(&guard)).finish()
    }
}

/// The error of [`RcuPtr::compare_exchange`].
pub struct CompareExchangeError<'g, T> {
    /// The value found instead of the expected one.
    pub current: Option<&'g T>,
    /// The value that was not published, given back.
    pub new: Option<T>,
}

impl<T: fmt::Debug> fmt::Debug for CompareExchangeError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompareExchangeError")
            .field("current", &self.current)
            .field("new", &self.new)
            .finish()
    }
}

fn into_raw<T>(b: Option<Box<T>>) -> *mut T {
    // (Also used by `swap`; a `None` is null.)
    b.map_or(ptr::null_mut(), Box::into_raw)
}

/// # Safety
/// `p` is null or came from `Box::into_raw`, and the caller owns it.
unsafe fn from_raw<T>(p: *mut T) -> Option<Box<T>> {
    // SAFETY: by the contract above.
    NonNull::new(p).map(|p| unsafe { Box::from_raw(p.as_ptr()) })
}

/// A value unlinked from an [`RcuPtr`] or [`RcuCell`] that readers may still
/// be reading.
///
/// It derefs to the value (shared access, as readers have). Dropping it
/// defers the value's drop until after a grace period (a
/// [`RcuDomain::call_rcu`]: the drop runs on the reclaim thread, or on the
/// dropping thread at a later retire, and over a memory limit the dropping
/// thread may help run other callbacks);
/// [`into_inner`](Self::into_inner) waits for a grace period here and returns
/// the value.
pub struct Unlinked<T: Send + Sync + 'static> {
    ptr: NonNull<T>,
    domain: RcuDomain,
    /// Bytes the value owns beyond its own `Box`, counted toward the
    /// domain's memory limit when it is retired.
    heap_bytes: usize,
    _owns: PhantomData<Box<T>>,
}

// SAFETY: `Unlinked<T>` owns a `Box<T>` that readers share; sending it
// needs `T: Send` (it may be dropped elsewhere) and sharing needs `T: Sync`,
// both required by the type's bounds.
unsafe impl<T: Send + Sync + 'static> Send for Unlinked<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync + 'static> Sync for Unlinked<T> {}

impl<T: Send + Sync + 'static> Unlinked<T> {
    fn new(ptr: NonNull<T>, domain: &RcuDomain) -> Self {
        Unlinked {
            ptr,
            domain: domain.clone(),
            heap_bytes: 0,
            _owns: PhantomData,
        }
    }

    /// Counts `bytes` more toward [`Config::memory_limit`](crate::Config::memory_limit)
    /// when the value is retired: what it owns on the heap (a `Vec`'s
    /// capacity, say), which its size does not show. Without it a retired
    /// value counts its own size (the `Box`) plus the retiring callback's
    /// few bytes. An [`RcuCell`] with a [`heap_size`](RcuCell::heap_size)
    /// function sets it for you.
    ///
    /// ```
    /// let cell = rcu_core::RcuCell::new(vec![0u8; 1 << 20]);
    /// let old = cell.replace(Vec::new());
    /// let bytes = old.capacity();
    /// drop(old.with_heap_bytes(bytes)); // counts 1 MiB until it is freed
    /// rcu_core::drain();
    /// ```
    #[must_use = "dropping the returned value retires it"]
    pub fn with_heap_bytes(mut self, bytes: usize) -> Self {
        self.heap_bytes = bytes;
        self
    }

    fn into_box_unsynchronized(self) -> Box<T> {
        let this = std::mem::ManuallyDrop::new(self);
        let p = this.ptr;
        // SAFETY: `this` is never used or dropped again; the domain handle is
        // moved out exactly once and dropped here.
        drop(unsafe { ptr::read(&this.domain) });
        // SAFETY: `p` came from `Box::into_raw` and `self`, its only owner, is
        // consumed (forgotten) above.
        unsafe { Box::from_raw(p.as_ptr()) }
    }

    /// Waits for a grace period, after which no reader can see the value,
    /// and returns it.
    ///
    /// # Panics
    /// Inside a read-side critical section, a reclaim callback or a scope
    /// that refuses waits (an `RcuCell::update` closure), as
    /// [`RcuDomain::synchronize`]. Never call it while this task holds an
    /// [`OwnedReadGuard`](crate::OwnedReadGuard) of the domain: that guard
    /// is not tied to the thread, so the call cannot tell, and the grace
    /// period would wait for it forever.
    pub fn into_inner(self) -> T {
        self.domain.synchronize();
        *self.into_box_unsynchronized()
    }

    /// Awaits a grace period, without blocking the executor thread, then
    /// returns the value: the async form of [`into_inner`](Self::into_inner).
    /// Do not hold a guard of the domain across the `.await`.
    ///
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::sync::Arc;
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl Wake for Unpark { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::park(); }
    /// # }
    /// let cell = rcu_core::RcuCell::new(1);
    /// let old = cell.replace(2);
    /// assert_eq!(block_on(old.into_inner_async()), 1);
    /// ```
    pub async fn into_inner_async(self) -> T {
        self.domain.synchronize_async().await;
        *self.into_box_unsynchronized()
    }
}

impl<T: Send + Sync + 'static> Deref for Unlinked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value is alive until `self` is dropped or consumed;
        // readers hold only shared references too.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Send + Sync + 'static> Drop for Unlinked<T> {
    fn drop(&mut self) {
        let owned = OwnedPtr(self.ptr);
        // The `Box` is made only inside the callback, after the grace period:
        // a `Box` asserts unique access, which readers' `&T` deny until then
        // (Miri reports the early `Box::from_raw` as a data race).
        let bytes = size_of::<T>().saturating_add(self.heap_bytes);
        self.domain.inner.call_rcu(
            &self.domain.inner,
            move || {
                let owned = owned;
                // SAFETY: `owned.0` came from `Box::into_raw` and was owned by
                // the `Unlinked` that handed it here; a grace period has
                // passed since it was unlinked, so no reader can reach it any
                // more.
                drop(unsafe { Box::from_raw(owned.0.as_ptr()) });
            },
            bytes,
        );
    }
}

/// An owned, unlinked pointer on its way to the reclaim thread.
struct OwnedPtr<T>(NonNull<T>);

// SAFETY: `OwnedPtr<T>` owns a `T` (it is a `Box<T>` in waiting), so it may
// move to another thread when `T` may.
unsafe impl<T: Send> Send for OwnedPtr<T> {}

impl<T: Send + Sync + fmt::Debug + 'static> fmt::Debug for Unlinked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Unlinked").field(&**self).finish()
    }
}

/// A value that readers read without locks and writers replace whole: the
/// read-mostly configuration table.
///
/// It always holds a value. Writers are serialised; [`update`](Self::update)
/// is a copy-update: it builds the new value from the current one.
///
/// ```
/// use rcu_core::{RcuCell, read_lock};
///
/// #[derive(Clone)]
/// struct Limits { max_conns: u32 }
///
/// let limits = RcuCell::new(Limits { max_conns: 100 });
/// limits.update(|old| Limits { max_conns: old.max_conns * 2 });
/// let guard = read_lock();
/// assert_eq!(limits.read(&guard).max_conns, 200);
/// ```
pub struct RcuCell<T: Send + Sync + 'static> {
    ptr: RcuPtr<T>,
    writer: WriterLock,
    /// What a value owns on the heap, for the memory limit.
    heap_size: Option<fn(&T) -> usize>,
}

impl<T: Send + Sync + 'static> RcuCell<T> {
    /// A cell holding `value`, in the process-wide domain.
    pub fn new(value: T) -> Self {
        Self::new_in(value, &RcuDomain::global())
    }

    /// A cell holding `value`, bound to `domain`: it is read under that
    /// domain's guards and retires through it.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let cell = rcu_core::RcuCell::new_in(String::from("a"), &domain);
    /// cell.update(|s| format!("{s}b"));
    /// assert_eq!(cell.read(&domain.read_lock_owned()), "ab");
    /// ```
    pub fn new_in(value: T, domain: &RcuDomain) -> Self {
        RcuCell {
            ptr: RcuPtr::new_in(value, domain),
            writer: WriterLock::new(),
            heap_size: None,
        }
    }

    /// Sets how to measure what a value owns on the heap: each value the
    /// cell retires ([`replace`](Self::replace), [`update`](Self::update))
    /// then counts `size_of::<T>()` plus `f(&value)` toward
    /// [`Config::memory_limit`](crate::Config::memory_limit), instead of
    /// `size_of::<T>()` alone. `f` runs on the writer's thread, once per
    /// retired value, after the value is unlinked.
    ///
    /// ```
    /// let cell = rcu_core::RcuCell::new(vec![0u8; 1 << 20]).heap_size(|v| v.capacity());
    /// drop(cell.replace(vec![1; 1 << 20])); // counts 1 MiB + 24 bytes
    /// rcu_core::drain();
    /// ```
    #[must_use]
    pub fn heap_size(mut self, f: fn(&T) -> usize) -> Self {
        self.heap_size = Some(f);
        self
    }

    /// Attaches the heap size of the value being retired.
    fn sized(&self, old: Unlinked<T>) -> Unlinked<T> {
        match self.heap_size {
            Some(f) => {
                let bytes = f(&old);
                old.with_heap_bytes(bytes)
            }
            None => old,
        }
    }

    /// The domain the cell is bound to.
    pub fn domain(&self) -> &RcuDomain {
        self.ptr.domain()
    }

    /// The current value, valid while `guard` lives.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the cell.
    #[inline]
    #[track_caller]
    pub fn read<'g>(&'g self, guard: &'g impl Guard) -> &'g T {
        // Acquire: as in `RcuPtr::load`.
        let p = self.ptr.load_checked(guard, Ordering::Acquire);
        // SAFETY: as in `RcuPtr::load` (`load_checked` checked the guard); an
        // `RcuCell` is never null: every writer publishes a value.
        unsafe { &*p }
    }

    /// A clone of the current value, made inside a read-side critical
    /// section of the cell's domain tied to this thread.
    ///
    /// # Panics
    /// If `T::clone` waits for a grace period of the cell's domain
    /// (`synchronize`, `drain`): inside the critical section that wait
    /// would never end.
    pub fn get(&self) -> T
    where
        T: Clone,
    {
        if self.domain().is_global() {
            self.read(&crate::read_lock()).clone()
        } else {
            // Thread-tied, as `read_lock`'s: a `T::clone` that waits for a
            // grace period of this domain panics rather than waiting for
            // itself (under an owned guard it could not tell).
            self.read(&self.domain().read_lock_local()).clone()
        }
    }

    /// Publishes `value`, returning the old one (dropped after a grace
    /// period when the `Unlinked` is dropped).
    pub fn replace(&self, value: T) -> Unlinked<T> {
        let old = {
            let _w = self.writer.lock("replace");
            self.ptr
                .swap(Some(value))
                .expect("an RcuCell always holds a value")
        };
        self.sized(old)
    }

    /// Copy-update: publishes `f(current)` and returns the old value. Writers
    /// are serialised, so no update is lost. If `f` panics, nothing changes.
    ///
    /// Cost: the cell's writer lock, `f`, one allocation for the new value,
    /// and (when the returned [`Unlinked`] is dropped) a `call_rcu` that
    /// frees the old value after a grace period, where `call_rcu` runs it. No
    /// grace period is waited for here.
    ///
    /// `f` runs where waits for the cell's domain's grace periods are refused
    /// ([`RcuDomain::no_grace_period_waits`]), so such a wait from `f`
    /// ([`RcuDomain::synchronize`], [`drain`](RcuDomain::drain),
    /// [`Unlinked::into_inner`]) panics: under the writer lock it could wait
    /// for a reader that holds a guard while it waits for the lock (a
    /// `replace` inside a critical section), which would wait forever. For
    /// the same reason `f` must not wait for another thread that waits for
    /// such a grace period.
    ///
    /// # Panics
    /// If `f` writes to this same cell (`update` or `replace` from inside
    /// `f` would wait for the lock its caller holds), or waits for a grace
    /// period of the cell's domain (above). `f` may read the cell and write
    /// to other cells. A write of this cell that `f` has another thread
    /// make waits for the lock until `update` returns, so `f` must not wait
    /// for it (join that thread): it would wait forever.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let cell = rcu_core::RcuCell::new_in(1, &domain);
    /// drop(cell.update(|v| v + 1));
    /// let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     drop(cell.update(|v| {
    ///         domain.synchronize(); // panics: refused under the writer lock
    ///         v + 1
    ///     }))
    /// }));
    /// assert!(waited.is_err());
    /// assert_eq!(cell.get(), 2); // unchanged by the failed update
    /// ```
    #[track_caller]
    pub fn update(&self, f: impl FnOnce(&T) -> T) -> Unlinked<T> {
        let _w = self.writer.lock("update");
        // Relaxed: we are the only writer (the lock above); the value was
        // published by a writer whose unlock we acquired.
        let current = RcuPtr::untag(self.ptr.ptr.load(Ordering::Relaxed));
        // SAFETY: only writers replace the pointer and they are serialised by
        // `writer`, which we hold; a value is freed only after it is
        // replaced, so `current` stays valid while we hold the lock.
        let new = self
            .domain()
            .no_grace_period_waits(|| f(unsafe { &*current }));
        let old = self
            .ptr
            .swap(Some(new))
            .expect("an RcuCell always holds a value");
        drop(_w);
        self.sized(old)
    }

    /// The value, through exclusive access.
    pub fn get_mut(&mut self) -> &mut T {
        self.ptr.get_mut().expect("an RcuCell always holds a value")
    }

    /// The value, by value.
    pub fn into_inner(self) -> T {
        self.ptr
            .into_inner()
            .expect("an RcuCell always holds a value")
    }
}

/// An `RcuCell`'s writer lock, which knows the thread holding it: a writer
/// re-entering from inside its own `update` closure gets a clear panic, not
/// a deadlock.
struct WriterLock {
    lock: Mutex<()>,
    /// [`thread_token`] of the holder, 0 when free.
    holder: AtomicUsize,
}

/// A number unique to the calling thread among live threads (the address of
/// a thread-local), never 0.
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| ptr::from_ref(t).addr())
}

struct WriterGuard<'a> {
    _lock: MutexGuard<'a, ()>,
    holder: &'a AtomicUsize,
}

impl WriterLock {
    const fn new() -> Self {
        WriterLock {
            lock: Mutex::new(()),
            holder: AtomicUsize::new(0),
        }
    }

    #[track_caller]
    fn lock(&self, what: &str) -> WriterGuard<'_> {
        let me = thread_token();
        // Relaxed: only this thread ever stores `me`, and it clears it before
        // unlocking; reading our own last store is all this check needs.
        if self.holder.load(Ordering::Relaxed) == me {
            panic!(
                "rcu: RcuCell::{what}() called from inside an update() closure of the same cell; \
                 it would wait for the writer lock its caller holds"
            );
        }
        // A panic in an update closure leaves the cell unchanged: ignore
        // poison.
        let guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Relaxed: see above (only the holder's own view matters).
        self.holder.store(me, Ordering::Relaxed);
        WriterGuard {
            _lock: guard,
            holder: &self.holder,
        }
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // Relaxed: see `WriterLock::lock`; the mutex unlock that follows
        // orders it for the next holder.
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl<T: Send + Sync + Default + 'static> Default for RcuCell<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Send + Sync + fmt::Debug + 'static> fmt::Debug for RcuCell<T> {
    /// As `RcuPtr`'s: under a guard tied to this thread.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.domain().read_lock_local();
        f.debug_tuple("RcuCell").field(self.read(&guard)).finish()
    }
}
