//! The bucket array and its per-bucket locks.
//!
//! A bucket is one word: the address of the first node of its chain, with
//! two tag bits in the low bits (nodes are at least 8-aligned):
//!
//! - [`LOCKED`]: a writer holds the bucket (Linux's `bit_spin_lock` in the
//!   `rhashtable` bucket head). Readers ignore it.
//! - [`MOVED`]: a resize has moved every entry of the bucket to the table's
//!   [`future`](Table::future) table. Final: the bucket is never written
//!   again. Its chain is empty.
//!
//! Each bucket also has a filter byte, a one-byte Bloom filter of its
//! chain: bit `hash & 7` of every node in the chain is set. A lookup loads it
//! first and stops there when its own bit is clear, so most misses cost
//! one load from a small array (a byte per bucket, which stays in cache)
//! and never touch a node. Filters are written only under the bucket's lock
//! (or with the map to oneself: [`Table::clear_filters`]):
//! a bit is set before a node joins the chain, and when the chain's last
//! node leaves it the filter becomes the bits of the nodes before it (which
//! the removal has just walked); other removals leave their bit, stale but
//! harmless (a lookup walks the chain for nothing) until a tail removal or
//! a resize, which builds the new table's filters afresh. So a bit is never
//! clear while a node that needs it is linked.
//!
//! Without the filter a ReadHeavy mix (a quarter of its lookups miss) ran
//! 1.15-1.25x slower than its hits and misses measured apart: the branch
//! on a miss was mispredicted and resolved only when a node arrived from
//! memory. With it, misses on 98 K keys went from 21 to 7 ns and the mix
//! from 30 to 26 ns; lookups that all hit pay 3-4 ns, about 12%.
//!
//! The table is not generic over the entry type, so its code (allocation,
//! locking) is not duplicated for every `K, V` (hashbrown's `RawTableInner`
//! idea).

use crate::sync::{AtomicPtr, AtomicU8, AtomicUsize, Backoff, Ordering};
use std::ptr;

/// Tag bit: a writer holds the bucket.
pub(super) const LOCKED: usize = 1;
/// Tag bit: the bucket's entries now live in the future table.
pub(super) const MOVED: usize = 2;
/// Both tag bits.
pub(super) const TAGS: usize = LOCKED | MOVED;

/// `p` without its tag bits.
#[inline]
pub(super) fn untag<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a & !TAGS)
}

/// The smallest table: four buckets (a shift of 62).
pub(crate) const MIN_BUCKETS: usize = 4;

/// A bucket array of `2^k` buckets. Bucket `i` holds the entries whose hash
/// has `i` in its top `k` bits, so bucket `i` covers the hash range
/// `[i << shift, (i + 1) << shift)`: every table, whatever its size, splits
/// the hash space into ranges in the same order (the iterator relies on it).
pub(super) struct Table {
    /// `64 - k`: the bucket of `hash` is `hash >> shift`.
    shift: u32,
    buckets: Box<[AtomicPtr<()>]>,
    /// One filter byte per bucket (see the module docs).
    filters: Box<[AtomicU8]>,
    /// The table a resize is moving this one's entries to, or null. Set
    /// once (null to non-null), never cleared.
    pub(super) future: AtomicPtr<Table>,
    /// Resize bookkeeping, on its own cache line so that migrating threads
    /// do not bounce the line readers use.
    pub(super) resize: Padded<ResizeState>,
}

/// Which buckets of a table a resize has claimed and finished.
pub(super) struct ResizeState {
    /// Buckets handed out to migrating threads (may run past the table's
    /// length).
    pub(super) claimed: AtomicUsize,
    /// Buckets whose entries are all in the future table.
    pub(super) done: AtomicUsize,
}

/// Aligns its content to 128 bytes (two cache lines, against the adjacent
/// line prefetcher), as crossbeam's `CachePadded` does on x86-64.
#[repr(align(128))]
pub(super) struct Padded<T>(pub(super) T);

impl Table {
    /// A table of `n` empty buckets; on allocation failure, the process
    /// aborts (as `std`'s collections do when they grow).
    ///
    /// # Panics
    /// If `n` is not a power of two of at least [`MIN_BUCKETS`].
    pub(super) fn new(n: usize) -> Box<Table> {
        Self::try_new(n).unwrap_or_else(|| match std::alloc::Layout::array::<AtomicPtr<()>>(n) {
            Ok(layout) => std::alloc::handle_alloc_error(layout),
            Err(_) => panic!("rcu-hashmap: capacity overflow ({n} buckets)"),
        })
    }

    /// A table of `n` empty buckets, or `None` if its bucket array cannot be
    /// allocated.
    ///
    /// # Panics
    /// If `n` is not a power of two of at least [`MIN_BUCKETS`].
    pub(super) fn try_new(n: usize) -> Option<Box<Table>> {
        assert!(
            n.is_power_of_two() && n >= MIN_BUCKETS,
            "bad table size {n}"
        );
        let mut buckets = Vec::new();
        buckets.try_reserve_exact(n).ok()?;
        buckets.extend((0..n).map(|_| AtomicPtr::new(ptr::null_mut())));
        let mut filters = Vec::new();
        filters.try_reserve_exact(n).ok()?;
        filters.extend((0..n).map(|_| AtomicU8::new(0)));
        Some(Box::new(Table {
            shift: 64 - n.trailing_zeros(),
            buckets: buckets.into_boxed_slice(),
            filters: filters.into_boxed_slice(),
            future: AtomicPtr::new(std::ptr::null_mut()),
            resize: Padded(ResizeState {
                claimed: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
            }),
        }))
    }

    /// The number of buckets.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// The bucket that `hash` belongs to.
    #[inline]
    pub(super) fn index(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// The bucket word of `hash`.
    #[inline]
    pub(super) fn slot(&self, hash: u64) -> &AtomicPtr<()> {
        let i = self.index(hash);
        debug_assert!(i < self.buckets.len());
        // SAFETY: `shift = 64 - k` with `2^k = len`, so `hash >> shift` is
        // below `2^k` and fits in `usize` (a `Box<[_]>` of `2^k` elements
        // exists, so `2^k <= usize::MAX`).
        unsafe { self.buckets.get_unchecked(i) }
    }

    /// The bucket word at `index`.
    #[inline]
    pub(super) fn slot_at(&self, index: usize) -> &AtomicPtr<()> {
        &self.buckets[index]
    }

    /// Asks the cache for the bucket word and the filter byte of `hash`.
    /// A hint: it reads nothing the program sees and never faults. A bulk
    /// insertion issues it some keys ahead (`RawMap::prefetch`).
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        let i = self.index(hash);
        // `i` is in bounds, as in `slot`, so the pointers are too.
        prefetch(self.buckets[i..].as_ptr());
        prefetch(self.filters[i..].as_ptr());
    }

    /// Asks the cache for the first node of bucket `index`'s chain (a
    /// resize, some buckets ahead of the one it moves).
    #[inline]
    pub(super) fn prefetch_chain(&self, index: usize) {
        // Relaxed: the address only feeds a hint, which never faults.
        prefetch(untag(self.buckets[index].load(Ordering::Relaxed)));
    }

    /// Whether the chain of `hash`'s bucket may hold a node with `hash`:
    /// false only if no node with `hash`'s filter bit, linked there by a
    /// write that happens before this load, is still linked there (see the
    /// module docs).
    #[inline]
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        let i = self.index(hash);
        debug_assert!(i < self.filters.len());
        // SAFETY: as in `slot`: `filters` has as many entries as `buckets`.
        let filter = unsafe { self.filters.get_unchecked(i) };
        // Relaxed: no data is read through the filter. A node's bit is
        // stored before the Release store that links the node (in program
        // order), so whoever could have seen the node linked (synchronised
        // with that store or a later one) reads the bit or a later value of
        // the filter; and a later value lacks it only after the node was
        // unlinked.
        filter.load(Ordering::Relaxed) & filter_bit(hash) != 0
    }

    /// Locks the bucket of `hash` (see [`BucketLock::lock`]).
    #[inline]
    #[track_caller]
    pub(super) fn lock(&self, hash: u64) -> Option<BucketLock<'_>> {
        self.lock_at(self.index(hash))
    }

    /// Locks bucket `index` (see [`BucketLock::lock`]).
    #[inline]
    #[track_caller]
    pub(super) fn lock_at(&self, index: usize) -> Option<BucketLock<'_>> {
        BucketLock::lock(&self.buckets[index], &self.filters[index])
    }

    /// Clears every filter (the caller has emptied every chain and has the
    /// map to itself).
    pub(super) fn clear_filters(&self) {
        for f in self.filters.iter() {
            // Relaxed: no other thread uses the map.
            f.store(0, Ordering::Relaxed);
        }
    }

    /// The last hash of bucket `index`'s range (inclusive).
    #[inline]
    pub(super) fn range_end(&self, index: usize) -> u64 {
        ((index as u64) << self.shift) | ((1u64 << self.shift) - 1)
    }
}

/// Asks the cache for the line at `p`; reads nothing and never faults.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(rcu_loom)))]
    // SAFETY: `_mm_prefetch` (SSE, which every x86-64 CPU has) is a hint: it
    // never faults and has no effect the program can see, whatever the
    // address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(rcu_loom))))]
    let _ = p;
}

/// The filter bit of `hash` (the bucket index uses the top bits).
#[inline]
pub(super) fn filter_bit(hash: u64) -> u8 {
    1 << (hash & 7)
}

/// Marks a bucket lock this thread holds while user code (a key's `Eq`)
/// runs under it, until dropped (also when `Eq` unwinds). A write from that
/// code to a bucket it holds (a write to the map from inside `Eq`) would
/// wait for the lock forever, so it panics instead ([`check_not_held`]);
/// and such code neither starts nor helps a resize ([`in_user_eq`]), whose
/// step could need that bucket. Marks nest (an `Eq` may write to another
/// map, whose `Eq` runs in turn) up to [`HELD_DEPTH`] deep (deeper ones
/// are not marked, so not checked), and are kept by value: marks that end
/// out of order (a stackful coroutine switching stacks inside `Eq`) leave
/// at worst a stale entry, never a dangling one.
pub(super) struct HeldMark {
    #[cfg(not(rcu_loom))]
    slot: usize,
}

/// How deep marks nest (see [`HeldMark`]).
#[cfg(not(rcu_loom))]
const HELD_DEPTH: usize = 4;

#[cfg(not(rcu_loom))]
thread_local! {
    /// The addresses of the bucket words this thread holds while user code
    /// runs under them; 0 for a free entry. Plain cells with a constant
    /// initialiser: no destructor, and an access is an offset from the
    /// thread pointer.
    static HELD: [std::cell::Cell<usize>; HELD_DEPTH] =
        const { [const { std::cell::Cell::new(0) }; HELD_DEPTH] };
}

impl HeldMark {
    /// Marks the lock `lock` holds, once: `mark` is `None` until the first
    /// call (the first key whose hash matches, so the first `Eq`: most
    /// writes run none and mark nothing). Always true, to sit in a
    /// condition before the `Eq` it guards. (Loom models run no user `Eq`
    /// that writes, and loom threads share the OS thread's thread-locals:
    /// nothing is marked there.)
    #[inline]
    #[cfg_attr(rcu_loom, allow(unused_variables))]
    pub(super) fn ensure(mark: &mut Option<HeldMark>, lock: &BucketLock<'_>) -> bool {
        if mark.is_none() {
            #[cfg(not(rcu_loom))]
            {
                let slot = ptr::from_ref(lock.slot).addr();
                let _ = HELD.try_with(|h| {
                    if let Some(free) = h.iter().find(|e| e.get() == 0) {
                        free.set(slot);
                    }
                });
                *mark = Some(HeldMark { slot });
            }
            #[cfg(rcu_loom)]
            {
                *mark = Some(HeldMark {});
            }
        }
        true
    }
}

impl Drop for HeldMark {
    #[inline]
    fn drop(&mut self) {
        #[cfg(not(rcu_loom))]
        let _ = HELD.try_with(|h| {
            if let Some(e) = h.iter().rev().find(|e| e.get() == self.slot) {
                e.set(0);
            }
        });
    }
}

/// Whether this thread runs user code (a key's `Eq`) under a bucket lock
/// of any map: a resize step must not start or be helped from there (it
/// could need that bucket, panic halfway and leave its chunk claimed but
/// never done, so that the resize would never finish).
#[inline]
pub(super) fn in_user_eq() -> bool {
    #[cfg(not(rcu_loom))]
    return HELD
        .try_with(|h| h.iter().any(|e| e.get() != 0))
        .unwrap_or(false);
    #[cfg(rcu_loom)]
    false
}

/// Panics if this thread holds `slot`'s lock while running user code
/// (see [`HeldMark`]): waiting for it would never end.
#[cold]
#[track_caller]
fn check_not_held(slot: &AtomicPtr<()>) {
    #[cfg(not(rcu_loom))]
    {
        let addr = ptr::from_ref(slot).addr();
        let held = HELD
            .try_with(|h| h.iter().any(|e| e.get() == addr))
            .unwrap_or(false);
        assert!(
            !held,
            "rcu-hashmap: a write to the map from inside a key's `Eq`, which runs under \
             the lock of the bucket that write needs (it would wait for it forever)"
        );
    }
    #[cfg(rcu_loom)]
    let _ = slot;
}

/// A held bucket lock. Writes to a chain (its head and the `next` links of
/// its nodes) happen only under it. Dropping it unlocks, publishing the
/// head it holds (also when unwinding from a panic in a user's `Eq`).
pub(super) struct BucketLock<'a> {
    slot: &'a AtomicPtr<()>,
    filter: &'a AtomicU8,
    /// The untagged chain head, or a null pointer tagged `MOVED` once the
    /// bucket is emptied by a resize.
    head: *mut (),
}

impl<'a> BucketLock<'a> {
    /// Locks the bucket; `None` if its entries have moved to the future
    /// table (then there is nothing to lock: look there).
    #[inline]
    #[track_caller]
    fn lock(slot: &'a AtomicPtr<()>, filter: &'a AtomicU8) -> Option<Self> {
        let mut backoff = Backoff::new();
        let mut checked = false;
        loop {
            // Acquire: pairs with the Release store that unlocked or marked
            // the bucket: we see the chain it published, and after `MOVED`
            // the future table (published before any bucket is marked).
            let v = slot.load(Ordering::Acquire);
            if v.addr() & MOVED != 0 {
                return None;
            }
            if v.addr() & LOCKED != 0 {
                if !checked {
                    // Once per lock: held by this very thread, it never
                    // frees.
                    check_not_held(slot);
                    checked = true;
                }
                backoff.snooze();
                continue;
            }
            // Acquire: as above, for the unlock we take over from.
            if slot
                .compare_exchange_weak(
                    v,
                    v.map_addr(|a| a | LOCKED),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Some(BucketLock {
                    slot,
                    filter,
                    head: v,
                });
            }
        }
    }

    /// The chain's first node (untagged), or null.
    #[inline]
    pub(super) fn head(&self) -> *mut () {
        self.head
    }

    /// Makes `p` the chain's first node, visible to readers at once.
    #[inline]
    pub(super) fn set_head(&mut self, p: *mut ()) {
        debug_assert_eq!(p.addr() & TAGS, 0);
        self.head = p;
        // Release: pairs with the Acquire loads of the bucket in readers and
        // lockers: whoever sees `p` sees the node's contents and link.
        self.slot
            .store(p.map_addr(|a| a | LOCKED), Ordering::Release);
    }

    /// Whether the chain may hold a node with `hash`: false only if none of
    /// its nodes has `hash`'s filter bit (under the lock the filter has
    /// every linked node's bit), so a write can skip the walk.
    #[inline]
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        // Relaxed: written only under the lock we hold (see
        // `add_to_filter`).
        self.filter.load(Ordering::Relaxed) & filter_bit(hash) != 0
    }

    /// Sets the filter bit of `hash`: call it before linking a node with
    /// `hash` into the chain.
    #[inline]
    pub(super) fn add_to_filter(&mut self, hash: u64) {
        // Relaxed, both: the filter is written only under the lock we hold
        // (whose Acquire showed us its last value); readers: see
        // `Table::may_hold`. The link that follows is a Release store.
        let f = self.filter.load(Ordering::Relaxed);
        let bit = filter_bit(hash);
        if f & bit == 0 {
            self.filter.store(f | bit, Ordering::Relaxed);
        }
    }

    /// Sets the filter to `bits` (those of every node left in the chain)
    /// after a node left it.
    #[inline]
    pub(super) fn set_filter(&mut self, bits: u8) {
        // Relaxed: as in `add_to_filter`. The unlink came first: a reader
        // that reads the new filter and so skips the chain reports a key
        // that has been removed as absent.
        self.filter.store(bits, Ordering::Relaxed);
    }

    /// Marks the (emptied) bucket as moved and releases it. Its filter keeps
    /// its bits: a lookup that could miss a moved node then still walks the
    /// old chain and meets the cut, whose Acquire loads order what moved
    /// (see the `raw` module docs).
    pub(super) fn mark_moved(mut self) {
        debug_assert!(self.head.is_null());
        self.head = ptr::null_mut::<()>().map_addr(|_| MOVED);
    }
}

impl Drop for BucketLock<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads in `lock` and in readers:
        // the next holder (and any reader) sees every write made under the
        // lock.
        self.slot.store(self.head, Ordering::Release);
    }
}
