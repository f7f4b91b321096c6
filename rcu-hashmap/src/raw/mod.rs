//! The raw core: chains of nodes under per-bucket locks, lock-free lookups,
//! and the incremental resize. Every `unsafe` block of the crate is here.
//!
//! # Memory
//! A [`Node`] is one allocation holding the full 64-bit hash, the `next`
//! link, the key and the value. Nodes are published with Release stores of
//! a bucket head or a `next` link and read with Acquire loads. A node leaves
//! the map only by being unlinked under its bucket's lock and then retired
//! through [`RcuDomain::defer_free`] after the lock is released, so a reader
//! holding a guard may keep walking it (its `next` link still leads on).
//! Tables are retired the same way, after the resize that empties them has
//! published their successor.
//!
//! # Resize (rhashtable's old/new pair, moved bucket by bucket)
//! A resize allocates the future table and publishes it in the current
//! table's `future` field. Migrating threads then claim chunks of old
//! buckets. Moving one old bucket, under its lock, takes its chain's nodes
//! from the *tail* to the head: each node is pushed on the head of its new
//! bucket (under that bucket's lock: link first, then head), and only then
//! cut off the old chain (its predecessor's link, or the old head, is set
//! to null). When the chain is empty the old bucket is marked [`MOVED`].
//! When every old bucket is done, the future table becomes the current one
//! and the old one is retired (a grace period later, through a callback:
//! no thread waits).
//!
//! Why a reader never misses an entry: a lookup walks its bucket in the
//! table it started from and, if it found nothing, walks the same hash's
//! bucket in that table's `future` table, and so on. If the walk of the old
//! chain missed node `x`, it read a link or head that a migrating thread had
//! cut after moving `x` (all nodes after a cut point were moved before it,
//! because moves go tail first), or it followed a moved node's link into a
//! new chain (again, everything after that node was moved before). Either
//! way its Acquire load synchronised with that Release store, so it sees
//! the `future` pointer (published before any move) and `x` at the head of
//! its new bucket (pushed before the cut). The bucket's filter byte (see
//! [`table`]) changes none of this: a lookup skips a chain only when its
//! filter lacks the hash's bit, and a node's bit is set in a filter before
//! the node is linked there and cleared only after it is unlinked for good
//! (a move to the future table leaves the old filter as it was, so a lookup
//! that could miss a moved node still walks the old chain and meets the
//! cut). A key inserted straight into the future table (its old bucket
//! already `MOVED`) has no bit in the old filter; a lookup that the
//! insertion happens before goes on to `future` after any miss, a skipped
//! chain included, and sees the future table's bit and chain.
//!
//! Writers need no such care: the home of a key is its old bucket until
//! that bucket is `MOVED`, and the new bucket afterwards, and both are
//! reached through locks.

mod table;

use crate::sync::{AtomicIsize, AtomicPtr, Backoff, Ordering};
use rcu_core::RcuDomain;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering as Hint; // `RawMap::check_owed`'s, outside loom's models
use table::{BucketLock, HeldMark, MOVED, Padded, Table, filter_bit, in_user_eq, untag};

pub(crate) use table::MIN_BUCKETS;

/// Buckets a migrating thread claims at a time.
const CHUNK: usize = if cfg!(miri) { 2 } else { 64 };
/// How many buckets ahead of the one it moves a resize asks the cache for
/// a chain's first node.
const MIGRATE_AHEAD: usize = 4;
/// Nodes per callback when `retain`/`clear` retire many at once
/// ([`Retired::retire_all`]): as many as the engine runs callbacks per
/// chunk, so that a helper's chunk stays a few milliseconds of drops.
const RETIRE_BATCH: usize = if cfg!(miri) { 4 } else { 256 };
/// Counter stripes (see [`RawMap::len`]).
const STRIPES: usize = 8;

/// One entry: the full hash (compared before the key), the chain link, the
/// key and the value, in one allocation.
pub(crate) struct Node<K, V> {
    pub(crate) hash: u64,
    next: AtomicPtr<Node<K, V>>,
    pub(crate) key: K,
    pub(crate) value: V,
}

impl<K, V> Node<K, V> {
    /// A node not yet in any chain.
    pub(crate) fn new(hash: u64, key: K, value: V) -> Box<Self> {
        Box::new(Node {
            hash,
            next: AtomicPtr::new(ptr::null_mut()),
            key,
            value,
        })
    }
}

/// The outcome of [`RawMap::insert`].
pub(crate) enum Insert<'g, K: Send + 'static, V: Send + 'static> {
    /// The key was absent; this is the new node.
    Inserted(&'g Node<K, V>),
    /// The key was present and its node was replaced; this is the old one.
    Replaced(Retired<K, V>),
    /// The key was present and `replace` was false: the node found, and the
    /// node that was not inserted.
    Present(&'g Node<K, V>, Box<Node<K, V>>),
}

/// The map's core: the current table, the entry count, the domain.
// `repr(C)`: `check_owed` shares `table`'s cache line.
#[repr(C)]
pub(crate) struct RawMap<K, V> {
    table: AtomicPtr<Table>,
    /// A write that should have checked the load factor could not (it ran
    /// inside a key's `Eq`, where no resize may start): the next write to
    /// this map from outside one checks instead. Beside `table`, which
    /// every write loads, so testing it costs no cache line of its own.
    /// `std`'s atomic, not the facade's: under loom `in_user_eq` is always
    /// false, so the flag is never set, and its loads need not be
    /// scheduling points of the models.
    check_owed: std::sync::atomic::AtomicBool,
    count: Box<[Padded<AtomicIsize>; STRIPES]>,
    /// Shrinking never goes below this many buckets: the capacity asked for
    /// at construction, raised by [`reserve`](Self::reserve), lowered back
    /// by [`shrink_to_fit`](Self::shrink_to_fit). `std`'s atomic, not the
    /// facade's: a bound that resizes read, not a link readers follow
    /// (the models need no scheduling point at its loads).
    min_buckets: std::sync::atomic::AtomicUsize,
    /// `min_buckets` as construction set it.
    keep_buckets: usize,
    domain: RcuDomain,
    _owns: PhantomData<Box<Node<K, V>>>,
}

// SAFETY: the map owns its `K`s and `V`s (moving it moves them: `Send`);
// through `&RawMap` other threads read `&K`/`&V` (`Sync`) and insert,
// remove and retire entries, which then drop on another thread (the
// reclaim thread, or one in `drain`: `Send`). The tables are plain atomics.
unsafe impl<K: Send, V: Send> Send for RawMap<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for RawMap<K, V> {}

/// The number of buckets for `capacity` entries below the growth threshold
/// (a load factor of 3/4).
///
/// # Panics
/// If that table's bucket array would not fit in the address space
/// ("capacity overflow"), as [`try_buckets_for`] returns `None`.
pub(crate) fn buckets_for(capacity: usize) -> usize {
    try_buckets_for(capacity).expect("rcu-hashmap: capacity overflow")
}

/// [`buckets_for`], or `None` where it panics: the power of two overflows
/// `usize`, or an array of that many bucket words overflows `isize` bytes
/// (no allocation could hold it).
pub(crate) fn try_buckets_for(capacity: usize) -> Option<usize> {
    let want = capacity.saturating_add(capacity / 3).max(MIN_BUCKETS);
    let n = want.checked_next_power_of_two()?;
    std::alloc::Layout::array::<usize>(n).ok().map(|_| n)
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// The map (its `RawMap`'s address) that a bulk insertion on this
    /// thread is filling, or null ([`BulkLoad`]).
    static BULK: std::cell::Cell<*const ()> = const { std::cell::Cell::new(ptr::null()) };
}

/// While alive, the load-factor checks of this thread's writes to one map
/// grow it but do not shrink it ([`RawMap::bulk_load`]). Restores the
/// previous bulk insertion's map (an `extend` whose iterator extends
/// another map) when dropped, also by unwinding.
pub(crate) struct BulkLoad {
    #[cfg(not(rcu_loom))]
    prev: *const (),
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        // The thread's locals may be gone during its teardown: nothing to
        // restore then.
        #[cfg(not(rcu_loom))]
        let _ = BULK.try_with(|b| b.set(self.prev));
    }
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// This thread's counter stripe, and a tick that paces resize checks.
    static LOCAL: std::cell::Cell<(usize, u32)> = const { std::cell::Cell::new((usize::MAX, 0)) };
}

/// This thread's stripe and whether this write should check the load
/// factor (one write in 16 per thread, plus every insertion that walked a
/// chain of two or more).
///
/// Under loom: stripe 0 and no tick, so that every execution of a model
/// makes the same choices (loom needs a deterministic model).
#[inline]
fn stripe_and_tick() -> (usize, bool) {
    #[cfg(rcu_loom)]
    return (0, false);
    #[cfg(not(rcu_loom))]
    LOCAL
        .try_with(|l| {
            let (mut stripe, tick) = l.get();
            if stripe == usize::MAX {
                static NEXT: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                // Relaxed: only spreads threads over stripes.
                stripe = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
            }
            l.set((stripe, tick.wrapping_add(1)));
            (stripe, tick % 16 == 15)
        })
        .unwrap_or((0, true))
}

impl<K, V> RawMap<K, V> {
    /// An empty map with room for `capacity` entries before it grows,
    /// that never shrinks below room for `keep` entries.
    pub(crate) fn new_in(capacity: usize, keep: usize, domain: &RcuDomain) -> Self {
        let n = buckets_for(capacity);
        RawMap {
            table: AtomicPtr::new(Box::into_raw(Table::try_new(n).unwrap_or_else(|| {
                panic!("rcu-hashmap: a table of {n} buckets for the capacity asked for cannot be allocated")
            }))),
            check_owed: std::sync::atomic::AtomicBool::new(false),
            count: Box::new(std::array::from_fn(|_| Padded(AtomicIsize::new(0)))),
            min_buckets: std::sync::atomic::AtomicUsize::new(buckets_for(keep)),
            keep_buckets: buckets_for(keep),
            domain: domain.clone(),
            _owns: PhantomData,
        }
    }

    /// Marks this thread as filling the map in bulk until the returned
    /// guard drops: its writes' load-factor checks do not shrink the table.
    /// `extend` grows the table for its size hint and then inserts; the
    /// checks of its first insertions would find the table nearly empty
    /// and shrink it back (its floor is the capacity asked for at
    /// construction, not the hint). Other threads' checks still may.
    pub(crate) fn bulk_load(&self) -> BulkLoad {
        #[cfg(not(rcu_loom))]
        return BulkLoad {
            prev: BULK
                .try_with(|b| b.replace(self.identity()))
                .unwrap_or(ptr::null()),
        };
        #[cfg(rcu_loom)]
        BulkLoad {}
    }

    /// Whether this thread is filling this map in bulk ([`bulk_load`](Self::bulk_load)).
    fn bulk_loading(&self) -> bool {
        #[cfg(not(rcu_loom))]
        return BULK
            .try_with(|b| ptr::eq(b.get(), self.identity()))
            .unwrap_or(false);
        #[cfg(rcu_loom)]
        false
    }

    /// The map's address, as [`BULK`] holds it.
    fn identity(&self) -> *const () {
        ptr::from_ref(self).cast()
    }

    /// The domain the map is bound to.
    #[inline]
    pub(crate) fn domain(&self) -> &RcuDomain {
        &self.domain
    }

    /// The number of entries: the sum of the stripes, never below zero.
    /// Exact once writers stop (each write counts once, after it is linked
    /// or unlinked); a moment's snapshot while they run.
    pub(crate) fn len(&self) -> usize {
        let sum: isize = self
            .count
            .iter()
            // Relaxed: a statistic; the threads that wrote it are joined
            // (or otherwise synchronised) before an exact count is expected.
            .map(|c| c.0.load(Ordering::Relaxed))
            .fold(0isize, |a, b| a.wrapping_add(b));
        sum.max(0) as usize
    }

    #[inline]
    fn add_count(&self, stripe: usize, delta: isize) {
        // Relaxed: see `len`.
        self.count[stripe].0.fetch_add(delta, Ordering::Relaxed);
    }

    /// The current table.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain` for `'g`.
    #[inline]
    unsafe fn current(&self) -> &Table {
        // Acquire: pairs with the Release store in `finish` (and the
        // construction): we see the table and every bucket moved into it.
        let t = self.table.load(Ordering::Acquire);
        // SAFETY: the table pointer is never null; a table is retired only
        // after it stopped being current, a grace period before it is freed,
        // and the caller's critical section holds that grace period up.
        unsafe { &*t }
    }

    /// The number of buckets of the current table.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    pub(crate) unsafe fn buckets(&self) -> usize {
        // SAFETY: the caller's promise is `current`'s.
        unsafe { self.current() }.len()
    }

    /// Finds a linked node with `hash` for which `pick` is true (usually:
    /// whose key equals the one looked up).
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain` for `'g`.
    #[inline]
    pub(crate) unsafe fn find(
        &self,
        hash: u64,
        mut pick: impl FnMut(&Node<K, V>) -> bool,
    ) -> Option<&Node<K, V>> {
        // SAFETY: the caller's promise is `current`'s.
        let mut t = unsafe { self.current() };
        loop {
            // Acquire: pairs with the Release stores that publish a chain
            // head (`BucketLock`): we see the node's contents. Not loaded
            // when the filter says no node with `hash` is linked.
            let mut p = if t.may_hold(hash) {
                untag(t.slot(hash).load(Ordering::Acquire)).cast::<Node<K, V>>()
            } else {
                ptr::null_mut()
            };
            while !p.is_null() {
                // SAFETY: `p` was reachable from the table under our
                // critical section: nodes are freed only a grace period
                // after being unlinked, so it is alive until `'g` ends.
                let n = unsafe { &*p };
                if n.hash == hash && pick(n) {
                    return Some(n);
                }
                // Acquire: pairs with the Release stores of links in
                // insert, remove and migrate.
                p = n.next.load(Ordering::Acquire);
            }
            // Acquire: pairs with the Release CAS in `maybe_resize`; see the
            // module docs for why a miss must look here.
            let f = t.future.load(Ordering::Acquire);
            if f.is_null() {
                return None;
            }
            // SAFETY: a future table is freed only after it was current and
            // then retired, a grace period after our critical section began
            // (it is still reachable from `t`, which is alive).
            t = unsafe { &*f };
        }
    }

    /// An iterator over the nodes, weakly consistent (see [`RawIter`]).
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain` for `'g`.
    pub(crate) unsafe fn iter<'g>(&'g self) -> RawIter<'g, K, V> {
        RawIter {
            map: self,
            next_lo: 0,
            finished: false,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Takes every entry out (for the owned iterator and `Drop`), leaving
    /// the map empty with its current table.
    pub(crate) fn take_all(&mut self) -> Vec<Box<Node<K, V>>> {
        let mut out = Vec::with_capacity(self.len());
        // Relaxed: `&mut self`: every other access happened before ours.
        let mut tp = self.table.load(Ordering::Relaxed);
        let mut first = true;
        while !tp.is_null() {
            // SAFETY: `&mut self`, so no other thread uses the map, and no
            // reader holds a reference into it (references are bounded by a
            // borrow of the map). No resize is half done: a resize step runs
            // within one call, under the bucket locks, and calls have ended.
            // `tp` is the current table or one of its future tables, alive.
            let t = unsafe { &*tp };
            for i in 0..t.len() {
                let slot = t.slot_at(i);
                let v = slot.load(Ordering::Relaxed);
                slot.store(ptr::null_mut(), Ordering::Relaxed);
                if v.addr() & MOVED != 0 {
                    continue;
                }
                let mut p = untag(v).cast::<Node<K, V>>();
                while !p.is_null() {
                    // SAFETY: every node is in exactly one non-moved chain
                    // (see above), reached once here, and owned by the map.
                    let node = unsafe { Box::from_raw(p) };
                    p = node.next.load(Ordering::Relaxed);
                    out.push(node);
                }
            }
            t.clear_filters();
            let next = t.future.load(Ordering::Relaxed);
            if !first {
                // SAFETY: a future table of the current one, owned by the
                // map (it never became current), from `Box::into_raw`.
                drop(unsafe { Box::from_raw(tp) });
            }
            first = false;
            tp = next;
        }
        // SAFETY: as above, the current table is alive and ours.
        let cur = unsafe { &*self.table.load(Ordering::Relaxed) };
        cur.future.store(ptr::null_mut(), Ordering::Relaxed);
        cur.resize.0.claimed.store(0, Ordering::Relaxed);
        cur.resize.0.done.store(0, Ordering::Relaxed);
        for c in self.count.iter() {
            c.0.store(0, Ordering::Relaxed);
        }
        out
    }
}

impl<K, V> Drop for RawMap<K, V> {
    fn drop(&mut self) {
        let nodes = self.take_all();
        // SAFETY: `&mut self`; the current table came from `Box::into_raw`
        // and is owned by the map (it is retired only when replaced).
        let table = unsafe { Box::from_raw(self.table.load(Ordering::Relaxed)) };
        drop_all(nodes);
        // The table last (also while a panic from an entry's drop, which is
        // user code, unwinds from `drop_all`): freeing a large block makes
        // glibc consolidate the small chunks just freed, here. Freed first,
        // it left them to the next large allocation of the arena, wherever
        // that was (a benchmark that built a map per round on a new thread
        // paid for the last round's entries in its first call_rcu).
        drop(table);
    }
}

/// Drops every item, even when some drops panic; then resumes the first
/// panic. (A `Vec`'s drop would go on dropping the rest while unwinding, and
/// abort the process at a second panicking drop.)
pub(crate) fn drop_all<T>(items: impl IntoIterator<Item = T>) {
    let mut panicked = None;
    for item in items {
        // AssertUnwindSafe: the item is gone either way, and nothing of a
        // map is reachable from an entry.
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(item)))
        {
            panicked.get_or_insert(payload);
        }
    }
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
}

/// Whether no node of the chain from `head` has `hash` (debug builds
/// check the filter's promise with it before a write skips the walk).
///
/// # Safety
/// `head` is the first node of a chain whose bucket lock the caller holds
/// (its nodes are alive and their links are not written meanwhile), or
/// null.
unsafe fn chain_lacks<K, V>(head: *mut (), hash: u64) -> bool {
    let mut p = head.cast::<Node<K, V>>();
    while !p.is_null() {
        // SAFETY: the caller's promise: a node of the locked chain.
        let n = unsafe { &*p };
        if n.hash == hash {
            return false;
        }
        // Relaxed: links of a locked chain are written under its lock.
        p = n.next.load(Ordering::Relaxed);
    }
    true
}

impl<K: Eq + Send + 'static, V: Send + 'static> RawMap<K, V> {
    /// Locks the bucket that is the home of `hash`: in the first table,
    /// from the current one, whose bucket is not `MOVED`.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain` for `'g`.
    unsafe fn lock_home<'g>(&'g self, hash: u64) -> (&'g Table, BucketLock<'g>) {
        // SAFETY: the caller's promise is `current`'s.
        let mut t = unsafe { self.current() };
        loop {
            if let Some(lock) = t.lock(hash) {
                return (t, lock);
            }
            // Acquire: pairs with the Release CAS that published the future
            // table (the MOVED mark we saw was stored after it).
            let f = t.future.load(Ordering::Acquire);
            debug_assert!(!f.is_null());
            // SAFETY: a bucket is marked MOVED only after the future table
            // is published, and that table is alive as in `find`.
            t = unsafe { &*f };
        }
    }

    /// Inserts `node`: links it at the head of its bucket if no key there
    /// equals its key; otherwise replaces the node found with it (if
    /// `replace`) or hands it back.
    ///
    /// The user's `Eq` runs under the bucket lock: it must not write to
    /// this map.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain` for `'g`.
    pub(crate) unsafe fn insert<'g>(
        &'g self,
        node: Box<Node<K, V>>,
        replace: bool,
    ) -> Insert<'g, K, V> {
        let hash = node.hash;
        // SAFETY: the caller's promise is `lock_home`'s.
        let (_, mut lock) = unsafe { self.lock_home(hash) };
        // Put in force before the user's `Eq` first runs below: a write of
        // it to this bucket then panics.
        let mut mark = None;
        let mut prev: *const Node<K, V> = ptr::null();
        // No node with the key's filter bit: no walk (each node a likely
        // cache miss), the key is not there.
        let mut cur = if lock.may_hold(hash) {
            lock.head().cast::<Node<K, V>>()
        } else {
            // SAFETY: the chain is locked.
            debug_assert!(unsafe { chain_lacks::<K, V>(lock.head(), hash) });
            ptr::null_mut()
        };
        let mut chain = 0usize;
        while !cur.is_null() {
            // SAFETY: `cur` is in the locked chain; chain nodes are alive
            // while linked, and unlinking needs the lock we hold.
            let n = unsafe { &*cur };
            if n.hash == hash && HeldMark::ensure(&mut mark, &lock) && n.key == node.key {
                // The tick is drawn once the user's `Eq` is done: a write it
                // unwinds draws none, so none of the one-in-16 checks is lost
                // (`capacity`'s bound).
                let (_, tick) = stripe_and_tick();
                if !replace {
                    // Out of force before the lock goes: a later lock of this bucket
                    // (by a resize step this write helps with) is no re-entry.
                    drop(mark);
                    drop(lock);
                    // This write drew a tick: it checks like any other, or
                    // the one-in-16 pacing would skip a check.
                    // SAFETY: the caller's promise.
                    unsafe { self.after_write(tick) };
                    return Insert::Present(n, node);
                }
                // Relaxed: under the lock; the link is published below.
                node.next
                    .store(n.next.load(Ordering::Relaxed), Ordering::Relaxed);
                let new = Box::into_raw(node);
                if prev.is_null() {
                    lock.set_head(new.cast());
                } else {
                    // SAFETY: `prev` is in the locked chain, as `n`.
                    // Release: pairs with the Acquire link loads in `find`.
                    unsafe { &*prev }.next.store(new, Ordering::Release);
                }
                drop(mark);
                drop(lock);
                // SAFETY: `cur` came from `Box::into_raw`, was unlinked by
                // the store above (under the lock, now released), and only
                // this call, which unlinked it, retires it.
                let old = unsafe { Retired::new(cur, &self.domain) };
                // SAFETY: the caller's promise.
                unsafe { self.after_write(tick) };
                return Insert::Replaced(old);
            }
            prev = n;
            // Relaxed: links of a locked chain are written under its lock.
            cur = n.next.load(Ordering::Relaxed);
            chain += 1;
        }
        let (stripe, tick) = stripe_and_tick();
        // Relaxed: published by `set_head`'s Release store.
        node.next
            .store(lock.head().cast::<Node<K, V>>(), Ordering::Relaxed);
        let new = Box::into_raw(node);
        lock.add_to_filter(hash);
        lock.set_head(new.cast());
        drop(mark);
        drop(lock);
        self.add_count(stripe, 1);
        // SAFETY: the caller's promise.
        unsafe { self.after_write(tick || chain >= 2) };
        // SAFETY: just linked; freed only a grace period after an unlink,
        // which the caller's critical section holds up.
        Insert::Inserted(unsafe { &*new })
    }

    /// Unlinks and returns the node with `hash` for which `pick` is true.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    pub(crate) unsafe fn remove(
        &self,
        hash: u64,
        mut pick: impl FnMut(&Node<K, V>) -> bool,
    ) -> Option<Retired<K, V>> {
        // SAFETY: the caller's promise is `lock_home`'s.
        let (_, mut lock) = unsafe { self.lock_home(hash) };
        // As in `insert`: `pick` runs the user's `Eq`.
        let mut mark = None;
        let mut prev: *const Node<K, V> = ptr::null();
        // The filter bits of the nodes before `cur`.
        let mut before = 0u8;
        // As in `insert`: no node with the key's filter bit, no walk.
        let mut cur = if lock.may_hold(hash) {
            lock.head().cast::<Node<K, V>>()
        } else {
            // SAFETY: the chain is locked.
            debug_assert!(unsafe { chain_lacks::<K, V>(lock.head(), hash) });
            ptr::null_mut()
        };
        while !cur.is_null() {
            // SAFETY: as in `insert`.
            let n = unsafe { &*cur };
            if n.hash == hash && HeldMark::ensure(&mut mark, &lock) && pick(n) {
                // Drawn after the user's `Eq`, as in `insert`.
                let (stripe, tick) = stripe_and_tick();
                let next = n.next.load(Ordering::Relaxed);
                if prev.is_null() {
                    lock.set_head(next.cast());
                } else {
                    // SAFETY: as in `insert`.
                    // Release: pairs with the Acquire link loads in `find`.
                    unsafe { &*prev }.next.store(next, Ordering::Release);
                }
                // The chain's last node: the nodes left are those before
                // it, whose bits we have. Otherwise `n`'s bit stays, maybe
                // stale (a lookup then walks the chain for nothing), rather
                // than read the rest of the chain from memory here (each
                // node a cache miss: Exchange's removals paid it); a tail
                // removal or a resize clears it.
                if next.is_null() {
                    lock.set_filter(before);
                }
                drop(mark);
                drop(lock);
                self.add_count(stripe, -1);
                // SAFETY: unlinked above, under the lock now released, by
                // this call only; from `Box::into_raw`.
                let old = unsafe { Retired::new(cur, &self.domain) };
                // SAFETY: the caller's promise.
                unsafe { self.after_write(tick) };
                return Some(old);
            }
            prev = n;
            before |= filter_bit(n.hash);
            // Relaxed: as in `insert`.
            cur = n.next.load(Ordering::Relaxed);
        }
        drop(mark);
        drop(lock);
        let (_, tick) = stripe_and_tick();
        // A miss checks too, as in `insert`.
        // SAFETY: the caller's promise.
        unsafe { self.after_write(tick) };
        None
    }

    /// Replaces node `old` (found under the caller's guard) with `new`, if
    /// `old` is still linked; otherwise hands `new` back.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`, `old` is a node
    /// of this map, and `new.hash == old.hash`.
    pub(crate) unsafe fn replace_node(
        &self,
        old: &Node<K, V>,
        new: Box<Node<K, V>>,
    ) -> Result<Retired<K, V>, Box<Node<K, V>>> {
        debug_assert_eq!(old.hash, new.hash);
        // SAFETY: the caller's promise is `lock_home`'s.
        let (_, mut lock) = unsafe { self.lock_home(old.hash) };
        // Drawn once the lock is ours: `lock_home` panics when this thread
        // holds the bucket already (a write from a key's `Eq`), and a write
        // that unwinds must draw no tick, as in `insert`.
        let (_, tick) = stripe_and_tick();
        let mut prev: *const Node<K, V> = ptr::null();
        let mut cur = lock.head().cast::<Node<K, V>>();
        while !cur.is_null() {
            if ptr::eq(cur, old) {
                // Relaxed: under the lock; published below.
                new.next
                    .store(old.next.load(Ordering::Relaxed), Ordering::Relaxed);
                let new = Box::into_raw(new);
                if prev.is_null() {
                    lock.set_head(new.cast());
                } else {
                    // SAFETY: as in `insert`.
                    // Release: pairs with the Acquire link loads in `find`.
                    unsafe { &*prev }.next.store(new, Ordering::Release);
                }
                drop(lock);
                // SAFETY: unlinked above by this call only, lock released.
                let old = unsafe { Retired::new(cur, &self.domain) };
                // SAFETY: the caller's promise.
                unsafe { self.after_write(tick) };
                return Ok(old);
            }
            prev = cur;
            // SAFETY: as in `insert`. Relaxed: as in `insert`.
            cur = unsafe { &*cur }.next.load(Ordering::Relaxed);
        }
        drop(lock);
        // A miss checks too, as in `insert`.
        // SAFETY: the caller's promise.
        unsafe { self.after_write(tick) };
        Err(new)
    }

    /// After a write (no lock held): checks the load factor if `check`, and
    /// helps a resize in flight with one chunk.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    #[inline]
    unsafe fn after_write(&self, check: bool) {
        // SAFETY: the caller's promise.
        let t = unsafe { self.current() };
        // Acquire: as in `find`.
        let f = t.future.load(Ordering::Acquire);
        // Neither from inside a key's `Eq` (a write it makes to this map, or
        // to another): the step could need the bucket that `Eq` runs under,
        // panic halfway and leave its chunk claimed but never done. The
        // writes outside it check and help as usual. (Tested on these rare
        // branches only.)
        if !f.is_null() {
            if !in_user_eq() {
                // SAFETY: the caller's promise; `f` is alive as in `find`.
                unsafe { self.help(t, &*f, false) };
            }
        } else if check || self.check_owed.load(Hint::Relaxed) {
            // The flag's Relaxed loads only test it: what is ordered by it
            // (a setter's writes before the checker's `len`) goes through the
            // Release store and the Acquire swap below.
            if in_user_eq() {
                // Not here (see above): at the map's next write from
                // outside an `Eq`, or the one-in-16 pacing would leave the
                // next check 16 writes later (or, where every check falls
                // on such a write, never).
                self.owe_check();
            } else {
                // A swap, not a load and a store: a debt set meanwhile by
                // another thread is not wiped out unpaid. Acquire: see above.
                if self.check_owed.load(Hint::Relaxed) {
                    self.check_owed.swap(false, Hint::Acquire);
                }
                // SAFETY: the caller's promise.
                unsafe { self.maybe_resize(t) };
            }
        }
    }

    /// Asks the cache for the lines that inserting `hash` locks and reads
    /// first (its bucket word and filter byte in the current table).
    /// Each insertion's lock is an atomic read-modify-write, which waits
    /// for every load before it: insertions one after another each wait
    /// for their own miss, one at a time. `extend` prefetches a batch of
    /// keys before inserting them, so their misses overlap.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    #[inline]
    pub(crate) unsafe fn prefetch(&self, hash: u64) {
        // SAFETY: the caller's promise.
        unsafe { self.current() }.prefetch(hash);
    }

    /// Passes a load-factor check that cannot run here (inside a key's
    /// `Eq`) to the map's next write from outside one.
    fn owe_check(&self) {
        // Stored only if clear: the line is `table`'s, which every lookup
        // reads. Release: pairs with the Acquire swap in `after_write`, so
        // the checker's `len` (and `min_buckets`) counts this thread's
        // writes so far.
        if !self.check_owed.load(Hint::Relaxed) {
            self.check_owed.store(true, Hint::Release);
        }
    }

    /// Makes room for `additional` entries more than [`len`](Self::len),
    /// and keeps it: shrinking stops there until
    /// [`shrink_to_fit`](Self::shrink_to_fit). Grows the table now, if it is
    /// smaller (helping a resize in flight first); from inside a key's
    /// `Eq` (where no resize may start) at the map's next write instead.
    ///
    /// # Panics
    /// If the table would not fit in the address space ([`buckets_for`]);
    /// then nothing changed (the floor is raised only to a size that
    /// passed that check).
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    pub(crate) unsafe fn reserve(&self, additional: usize) {
        let n = buckets_for(self.len().saturating_add(additional));
        // Relaxed: a bound, not data. The checks of writes that happen
        // after this call read it (a check owed from inside `Eq` through
        // `owe_check`'s Release store); a check racing with it may read the
        // old floor and shrink once, and a later check, seeing the table
        // below the floor, grows it back (`maybe_resize`).
        self.min_buckets.fetch_max(n, Hint::Relaxed);
        // SAFETY: the caller's promise.
        unsafe { self.grow_to(n, false) }
    }

    /// Grows the table now to room for `additional` entries more than
    /// [`len`](Self::len), without keeping that room (`extend`'s hint: the
    /// table may shrink again as usual). A hint no table could hold (see
    /// [`try_buckets_for`]), or one whose table cannot be allocated, is
    /// ignored: the insertions that follow grow the table as they need.
    /// (`std`'s `extend` panics or aborts on such a hint.)
    ///
    /// # Safety
    /// As [`reserve`](Self::reserve).
    pub(crate) unsafe fn grow_for(&self, additional: usize) {
        let Some(n) = try_buckets_for(self.len().saturating_add(additional)) else {
            return;
        };
        // SAFETY: the caller's promise.
        unsafe { self.grow_to(n, true) }
    }

    /// Grows the table to `n` buckets if it has fewer (see
    /// [`resize_while`](Self::resize_while) for `fallible`).
    ///
    /// # Safety
    /// As [`reserve`](Self::reserve).
    unsafe fn grow_to(&self, n: usize, fallible: bool) {
        // SAFETY: the caller's promise.
        unsafe { self.resize_while(fallible, |t| (t.len() < n).then_some(n)) }
    }

    /// Forgets the room [`reserve`](Self::reserve) kept, and shrinks the
    /// table to the smallest that holds [`len`](Self::len) entries below
    /// its growth threshold, but not below the capacity asked for at
    /// construction. From inside a key's `Eq`, at the map's next write
    /// instead (and only as far as its usual check shrinks).
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    pub(crate) unsafe fn shrink_to_fit(&self) {
        // Relaxed: as in `reserve`.
        self.min_buckets.store(self.keep_buckets, Hint::Relaxed);
        // SAFETY: the caller's promise.
        unsafe {
            self.resize_while(false, |t| {
                let n = buckets_for(self.len()).max(self.keep_buckets);
                (n < t.len()).then_some(n)
            })
        }
    }

    /// Resizes the current table to `target(current)` buckets until that is
    /// `None`, finishing (helping) any resize in flight first. Waits (spins,
    /// then yields) only for threads that migrate a chunk they claimed, a
    /// few microseconds of moves, never for a grace period. Inside a key's
    /// `Eq` it starts and helps nothing and leaves a check owed instead.
    /// With `fallible`, a table that cannot be allocated ends it instead of
    /// aborting the process.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`.
    unsafe fn resize_while(&self, fallible: bool, target: impl Fn(&Table) -> Option<usize>) {
        if in_user_eq() {
            self.owe_check();
            return;
        }
        let mut backoff = Backoff::new();
        loop {
            // SAFETY: the caller's promise.
            let t = unsafe { self.current() };
            // Acquire: as in `find`.
            let f = t.future.load(Ordering::Acquire);
            if !f.is_null() {
                // SAFETY: the caller's promise; `f` is alive as in `find`.
                unsafe { self.help(t, &*f, true) };
                if ptr::eq(self.table.load(Ordering::Acquire), t) {
                    // Every chunk is claimed; others are still moving theirs.
                    backoff.snooze();
                }
                continue;
            }
            match target(t) {
                Some(n) => {
                    // SAFETY: the caller's promise; `t` is current.
                    if !unsafe { self.start_resize(t, n, fallible) } {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// Starts a resize of `t` (the current table) if its load factor is
    /// out of bounds, and runs it to the end (other writers help).
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`; `t` was
    /// current within it.
    #[cold]
    unsafe fn maybe_resize(&self, t: &Table) {
        let n = t.len();
        let len = self.len();
        // After a resize the load factor is at most 1/2 (and above 1/4
        // after a grow): grow above 3/4, shrink below 1/8.
        let half_full = len
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(n)
            .max(MIN_BUCKETS);
        // Relaxed: see `min_buckets`.
        let floor = self.min_buckets.load(Hint::Relaxed);
        let target = if len > n - n / 4 {
            half_full.max(floor)
        } else if n < floor {
            // A `reserve` from inside a key's `Eq` raised the floor.
            floor
        } else if len < n / 8 && n > floor && !self.bulk_loading() {
            half_full.max(floor)
        } else {
            return;
        };
        if target == n {
            return;
        }
        // SAFETY: the caller's promise.
        unsafe { self.start_resize(t, target, false) };
    }

    /// Publishes a future table of `n` buckets for `t` and migrates. A
    /// table that cannot be allocated aborts the process, as `std`'s
    /// collections do, unless `fallible`: then this returns false, having
    /// changed nothing.
    ///
    /// # Safety
    /// As [`maybe_resize`](Self::maybe_resize).
    unsafe fn start_resize(&self, t: &Table, n: usize, fallible: bool) -> bool {
        if !ptr::eq(self.table.load(Ordering::Relaxed), t) {
            return true; // `t` has been resized meanwhile
        }
        let table = if fallible {
            match Table::try_new(n) {
                Some(table) => table,
                None => return false,
            }
        } else {
            Table::new(n)
        };
        let new = Box::into_raw(table);
        // Release: pairs with the Acquire loads of `future` in `find`,
        // `lock_home` and `after_write`: they see the new table's empty
        // buckets. Acquire on failure: we then use the winner's table.
        match t
            .future
            .compare_exchange(ptr::null_mut(), new, Ordering::Release, Ordering::Acquire)
        {
            Ok(_) => {
                // SAFETY: the caller's promise; `new` is published and alive
                // (freed only after it is current and retired).
                unsafe { self.help(t, &*new, true) }
            }
            Err(_) => {
                // SAFETY: `new` was never shared; from `Box::into_raw`.
                drop(unsafe { Box::from_raw(new) });
            }
        }
        true
    }

    /// Migrates chunks of `t` into its future table `f`: one chunk, or
    /// (`all`) until no chunk is left. Whoever finishes the last bucket
    /// makes `f` current and retires `t`.
    ///
    /// # Safety
    /// The caller holds a critical section of `self.domain`; `f` is `t`'s
    /// future table and `t` was current within the critical section.
    unsafe fn help(&self, t: &Table, f: &Table, all: bool) {
        let n = t.len();
        let rs = &t.resize.0;
        loop {
            // Relaxed: a claim only; the bucket locks order the moves.
            if rs.claimed.load(Ordering::Relaxed) >= n {
                return;
            }
            let start = rs.claimed.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= n {
                return;
            }
            let end = (start + CHUNK).min(n);
            for b in start..end {
                // Each move locks buckets with atomic read-modify-writes,
                // which wait for the loads before them: without this, the
                // first node of every chain is a miss of its own.
                if b + MIGRATE_AHEAD < end {
                    t.prefetch_chain(b + MIGRATE_AHEAD);
                }
                // SAFETY: the caller's promises; bucket `b` is ours alone.
                unsafe { self.migrate_bucket(t, b, f) };
            }
            // AcqRel: the thread that completes the count sees every other
            // thread's moves (Acquire), and ours reach it (Release).
            let done = rs.done.fetch_add(end - start, Ordering::AcqRel) + (end - start);
            if done == n {
                // The pointers as stored (with their allocations' provenance,
                // which `Box::from_raw` needs later), not from `t` and `f`.
                // Relaxed: we loaded it before, with Acquire.
                let fp = t.future.load(Ordering::Relaxed);
                debug_assert!(ptr::eq(fp, f));
                // Release: pairs with the Acquire load in `current`: a reader
                // that starts at `f` sees every bucket moved into it. (Only
                // the thread that completes `done` writes `table` now.)
                let tp = self.table.swap(fp, Ordering::Release);
                debug_assert!(ptr::eq(tp, t));
                // SAFETY: (1) `t` came from `Box::into_raw` (construction or
                // `start_resize`); (2) new readers start at `f` now, and the
                // tables that point to `t` were retired before `t` became
                // current; (3) only the thread completing `done` retires it;
                // (4) readers read it under guards of `self.domain`. No
                // lock of ours is held.
                unsafe { self.domain.defer_free(tp) };
                return;
            }
            if !all {
                return;
            }
        }
    }

    /// Moves every node of bucket `b` of `t` into `f`, tail first, then
    /// marks the bucket `MOVED`. See the module docs.
    ///
    /// # Safety
    /// As [`help`](Self::help), and this thread claimed bucket `b`.
    unsafe fn migrate_bucket(&self, t: &Table, b: usize, f: &Table) {
        let Some(mut lock) = t.lock_at(b) else {
            unreachable!("rcu-hashmap: a bucket migrated twice");
        };
        let mut small = [ptr::null_mut::<Node<K, V>>(); 16];
        let mut big = Vec::new();
        let mut len = 0;
        let mut p = lock.head().cast::<Node<K, V>>();
        while !p.is_null() {
            if len < small.len() {
                small[len] = p;
            } else {
                if len == small.len() {
                    big.extend_from_slice(&small);
                }
                big.push(p);
            }
            len += 1;
            // SAFETY: `p` is in the chain we locked (alive while linked).
            // Relaxed: written under the lock we hold.
            p = unsafe { &*p }.next.load(Ordering::Relaxed);
        }
        let chain = if len <= small.len() {
            &small[..len]
        } else {
            &big[..]
        };
        for i in (0..len).rev() {
            // SAFETY: in the locked chain, as above.
            let x = unsafe { &*chain[i] };
            // `f` is not being resized: its own resize can start only once
            // it is current, after this one has finished.
            let Some(mut to) = f.lock(x.hash) else {
                unreachable!("rcu-hashmap: the future table is moving");
            };
            to.add_to_filter(x.hash);
            // Release: pairs with the Acquire link loads in `find`: a reader
            // that follows `x` into `f` sees `t.future` (which we loaded
            // with Acquire before) and `f`'s chain.
            x.next.store(to.head().cast(), Ordering::Release);
            to.set_head(chain[i].cast());
            drop(to);
            // Cut `x` off the old chain. Release: pairs with the Acquire
            // loads in `find`: a reader that sees the cut sees `x` in `f`.
            if i == 0 {
                lock.set_head(ptr::null_mut());
            } else {
                // SAFETY: in the locked chain, as above.
                unsafe { &*chain[i - 1] }
                    .next
                    .store(ptr::null_mut(), Ordering::Release);
            }
        }
        lock.mark_moved();
    }
}

/// A node unlinked from the map that readers may still see. Dropping it
/// retires the node through the map's domain (dropped after a grace
/// period, where `call_rcu` runs it).
pub(crate) struct Retired<K: Send + 'static, V: Send + 'static> {
    node: NonNull<Node<K, V>>,
    /// `None` for the process-wide domain (cloning its handle would touch
    /// a shared counter on every removal).
    domain: Option<RcuDomain>,
}

// SAFETY: the handle gives `&K`/`&V` (needs `Sync` to move it, since readers
// may share the node) and drops the node wherever it is dropped, through the
// reclaim thread (needs `Send`).
unsafe impl<K: Send + Sync + 'static, V: Send + Sync + 'static> Send for Retired<K, V> {}
// SAFETY: shares only `&K`/`&V`.
unsafe impl<K: Send + Sync + 'static, V: Send + Sync + 'static> Sync for Retired<K, V> {}

impl<K: Send + 'static, V: Send + 'static> Retired<K, V> {
    /// # Safety
    /// `node` came from `Box::into_raw`, is unlinked from every chain (for
    /// new readers), and this handle is its only retirer.
    unsafe fn new(node: *mut Node<K, V>, domain: &RcuDomain) -> Self {
        #[cfg(not(rcu_loom))]
        let domain = if domain.is_global() {
            None
        } else {
            Some(domain.clone())
        };
        #[cfg(rcu_loom)]
        let domain = Some(domain.clone());
        Retired {
            // SAFETY: from `Box::into_raw`, never null.
            node: unsafe { NonNull::new_unchecked(node) },
            domain,
        }
    }

    /// Gives up the handle without retiring the node (loom models free it
    /// by hand, having no reclaim thread).
    #[cfg(all(test, rcu_loom))]
    pub(crate) fn into_raw(self) -> *mut Node<K, V> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; the domain handle
        // is moved out once and dropped here.
        drop(unsafe { ptr::read(&this.domain) });
        this.node.as_ptr()
    }

    /// Retires the nodes of `batch` through `domain` (the map's) in
    /// callbacks of [`RETIRE_BATCH`] nodes each, counting their sizes toward
    /// its memory limit: a domain over its limit has the caller help once
    /// per callback, not once per node (each help may wait up to a
    /// millisecond for a grace period that a reader elsewhere holds up: a
    /// `clear` of 20 000 entries took 4 s), and a helper that runs one of
    /// them runs a bounded batch (one callback of a whole `clear` of 1M
    /// entries held another writer's help for 275 ms). A panicking `K` or `V`
    /// drop does not stop the others; the first panic goes on to the
    /// reclaim thread's report.
    #[cfg(not(rcu_loom))]
    pub(crate) fn retire_all(batch: Vec<Self>, domain: &RcuDomain) {
        /// Unlinked nodes, freed together when dropped.
        struct Nodes<K, V>(Vec<NonNull<Node<K, V>>>);
        // SAFETY: the batch owns its nodes (unlinked, retired once: by it),
        // so it may go to the reclaim thread when `K` and `V` may.
        unsafe impl<K: Send, V: Send> Send for Nodes<K, V> {}
        impl<K, V> Drop for Nodes<K, V> {
            fn drop(&mut self) {
                drop_all(self.0.drain(..).map(|n| {
                    // SAFETY: from `Box::into_raw`, unlinked before the batch
                    // was made, owned only by it, and dropped after a grace
                    // period of the readers' domain (the callback's).
                    unsafe { Box::from_raw(n.as_ptr()) }
                }));
            }
        }
        // Plain pointers first (no drop of their own): should the reclaim
        // thread fail to start, the engine leaks the callback it could not
        // queue, and the rest of the batch leaks with it, rather than be
        // dropped (or retire itself) while unwinding.
        let nodes: Vec<_> = batch
            .into_iter()
            .map(|r| {
                let r = std::mem::ManuallyDrop::new(r);
                // SAFETY: `r` is never used or dropped again; its domain
                // handle is moved out once and dropped here.
                drop(unsafe { ptr::read(&r.domain) });
                r.node
            })
            .collect();
        for chunk in nodes.chunks(RETIRE_BATCH) {
            let bytes = chunk.len().saturating_mul(size_of::<Node<K, V>>());
            domain.defer_drop_sized(Nodes(chunk.to_vec()), bytes);
        }
    }

    /// The unlinked node.
    #[inline]
    pub(crate) fn node(&self) -> &Node<K, V> {
        // SAFETY: the node is freed only a grace period after this handle
        // is dropped.
        unsafe { self.node.as_ref() }
    }
}

impl<K: Send + 'static, V: Send + 'static> Drop for Retired<K, V> {
    fn drop(&mut self) {
        let p = self.node.as_ptr();
        // SAFETY: (1) from `Box::into_raw`; (2) unlinked before this handle
        // was made; (3) this handle is its only retirer and is dropped once;
        // (4) its readers use guards of the map's domain, which this is.
        match &self.domain {
            // SAFETY: as above.
            Some(d) => unsafe { d.defer_free(p) },
            #[cfg(not(rcu_loom))]
            // SAFETY: as above, the map's domain is the process-wide one.
            None => unsafe { rcu_core::defer_free(p) },
            #[cfg(rcu_loom)]
            None => unreachable!(),
        }
    }
}

/// A weakly consistent iterator over a map's nodes.
///
/// It walks the hash space in bucket-sized ranges, in increasing order.
/// For each range it collects the nodes of the current table's bucket, then
/// (if a resize is in flight) those of the future tables' buckets that cover
/// the range, keeping one node per key. So an entry present from the start
/// to the moment its range is collected is yielded exactly once (resizes
/// move entries between tables, never out of their hash range), an entry
/// inserted meanwhile at most once, and nothing twice.
pub(crate) struct RawIter<'g, K, V> {
    map: &'g RawMap<K, V>,
    next_lo: u64,
    finished: bool,
    /// The current range's nodes. References, not raw pointers: the
    /// iterator is `Send` and `Sync` exactly when `&Node` is (an iterator
    /// on an owned guard may cross an `.await` in a spawned task).
    buf: Vec<&'g Node<K, V>>,
    pos: usize,
}

impl<'g, K: Eq, V> RawIter<'g, K, V> {
    /// The next node.
    pub(crate) fn next_node(&mut self) -> Option<&'g Node<K, V>> {
        loop {
            if let Some(&n) = self.buf.get(self.pos) {
                self.pos += 1;
                return Some(n);
            }
            if self.finished {
                return None;
            }
            self.buf.clear();
            self.pos = 0;
            // SAFETY: `RawMap::iter`'s caller holds the critical section.
            unsafe { self.fill() };
        }
    }

    /// Collects the next range's nodes.
    ///
    /// # Safety
    /// The critical section `RawMap::iter` asked for is held.
    unsafe fn fill(&mut self) {
        // Filled out of place: should a key's `Eq` panic below (caught by
        // the caller, who may go on iterating), the iterator holds an empty
        // buffer and the same range still to collect, not a half-deduplicated
        // buffer that the next call would yield and then collect again.
        let mut buf = std::mem::take(&mut self.buf);
        // SAFETY: the caller's promise.
        let first = unsafe { self.map.current() };
        let lo = self.next_lo;
        let hi = first.range_end(first.index(lo));
        let mut t = first;
        let mut crossed = false;
        loop {
            for b in t.index(lo)..=t.index(hi) {
                // Acquire: as in `find`.
                let mut p = untag(t.slot_at(b).load(Ordering::Acquire)).cast::<Node<K, V>>();
                while !p.is_null() {
                    // SAFETY: as in `find`; and the caller holds the
                    // critical section for `'g` (`RawMap::iter`), so the
                    // node stays alive that long.
                    let n: &'g Node<K, V> = unsafe { &*p };
                    if (lo..=hi).contains(&n.hash) {
                        buf.push(n);
                    }
                    // Acquire: as in `find`.
                    p = n.next.load(Ordering::Acquire);
                }
            }
            // Acquire: as in `find`.
            let f = t.future.load(Ordering::Acquire);
            if f.is_null() {
                break;
            }
            crossed = true;
            // SAFETY: as in `find`.
            t = unsafe { &*f };
        }
        if crossed {
            // A resize was in flight: a key may have been seen in two
            // chains (before and after its move). Keep its first node.
            let mut keep = 0;
            for i in 0..buf.len() {
                let n = buf[i];
                let dup = buf[..keep]
                    .iter()
                    .any(|m| m.hash == n.hash && m.key == n.key);
                if !dup {
                    buf[keep] = buf[i];
                    keep += 1;
                }
            }
            buf.truncate(keep);
        }
        self.buf = buf;
        if hi == u64::MAX {
            self.finished = true;
        } else {
            self.next_lo = hi + 1;
        }
    }
}

#[cfg(all(test, rcu_loom))]
mod loom_tests;
