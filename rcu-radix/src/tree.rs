//! [`RcuRadixTree`]: the safe API over the raw core.

use crate::raw::{self, Batch, Cursor, Leaf, Place, RawTree, Removed};
use rcu_core::{Guard, RcuDomain};
use std::fmt;
use std::iter::FusedIterator;
use std::ops::{Bound, RangeBounds};

/// An ordered map from `u64` keys to `V`s whose reads take no lock: a radix
/// tree of 64-way nodes with compressed paths, protected by RCU.
///
/// Every read takes a [`Guard`] of the tree's domain and returns references
/// that live as long as the guard. Writes take `&self` from any thread and
/// are serialised by a lock inside the tree; they never wait for a grace
/// period (so a thread may write while it holds a guard), and what they
/// unlink is dropped on the reclaim thread after one (retired after the
/// lock is released; over a memory limit a writer may help run ready
/// callbacks, see [`RcuDomain::call_rcu`](rcu_core::RcuDomain::call_rcu)). See the
/// [crate docs](crate) for the design and costs.
///
/// ```
/// use rcu_radix::RcuRadixTree;
///
/// let tree: RcuRadixTree<&str> = [(10, "ten"), (3, "three"), (u64::MAX, "max")]
///     .into_iter()
///     .collect();
/// let guard = rcu_core::read_lock();
/// assert_eq!(tree.get(3, &guard), Some(&"three"));
/// assert_eq!(tree.next_after(3, &guard), Some((10, &"ten")));
/// assert_eq!(tree.next_after(u64::MAX, &guard), None);
/// let keys: Vec<u64> = tree.range(4.., &guard).map(|(k, _)| k).collect();
/// assert_eq!(keys, [10, u64::MAX]);
/// ```
pub struct RcuRadixTree<V: Send + Sync + 'static> {
    raw: RawTree<V>,
    domain: RcuDomain,
}

// SAFETY: the tree owns its `V`s. Moving it to another thread moves (and
// eventually drops) them there: `V: Send`. Sharing it lets any thread insert
// or remove values (moving them across threads, and to the reclaim thread)
// and read `&V`s that others inserted: `V: Send + Sync`. The struct's bounds
// require both; the raw pointers inside are only followed under the
// protocol of the `raw` module.
unsafe impl<V: Send + Sync + 'static> Send for RcuRadixTree<V> {}
// SAFETY: as above.
unsafe impl<V: Send + Sync + 'static> Sync for RcuRadixTree<V> {}

/// One of the three marks an entry may carry (the Linux XArray's
/// `XA_MARK_0..2`): a bit per entry, with summary bitmaps in every node so
/// that [`first_marked`](RcuRadixTree::first_marked) and
/// [`iter_marked`](RcuRadixTree::iter_marked) skip unmarked subtrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mark {
    /// Mark 0.
    M0 = 0,
    /// Mark 1.
    M1 = 1,
    /// Mark 2.
    M2 = 2,
}

impl Mark {
    fn bit(self) -> usize {
        let m = self as usize;
        debug_assert!(m < raw::MARKS);
        m
    }
}

/// The shape of a tree and the memory it holds, from
/// [`RcuRadixTree::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeStats {
    /// Entries.
    pub entries: usize,
    /// Nodes (64 slots each), bottom nodes included.
    pub nodes: usize,
    /// Nodes on the longest path from the root to an entry.
    pub height: usize,
    /// Bytes of the nodes: 576 for an inner node; a bottom node (at shift 0,
    /// in a tree of values of at most 32 bytes) adds a line of bitmaps, its
    /// two value cells per slot, which hold its inline values, and three
    /// words of bookkeeping, padded to whole cache lines (1 728 bytes for
    /// `u64` values).
    pub node_bytes: usize,
    /// Bytes of the entries that are allocations of their own (key, marks,
    /// value): those not inline in a bottom node.
    pub leaf_bytes: usize,
}

#[cfg(not(rcu_loom))]
impl<V: Send + Sync + 'static> RcuRadixTree<V> {
    /// An empty tree in the process-wide domain (read it under
    /// [`rcu_core::read_lock`]). Allocates nothing.
    pub const fn new() -> Self {
        RcuRadixTree {
            raw: RawTree::new(),
            domain: RcuDomain::global(),
        }
    }
}

impl<V: Send + Sync + 'static> RcuRadixTree<V> {
    /// An empty tree bound to `domain`: read it under that domain's guards;
    /// what it unlinks is reclaimed through that domain.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let tree = rcu_radix::RcuRadixTree::new_in(&domain);
    /// tree.insert(1, 'a');
    /// let reader = domain.register();
    /// assert_eq!(tree.get(1, &reader.read_lock()), Some(&'a'));
    /// ```
    pub fn new_in(domain: &RcuDomain) -> Self {
        RcuRadixTree {
            raw: RawTree::new(),
            domain: domain.clone(),
        }
    }

    /// The domain the tree is read and reclaimed in.
    pub fn domain(&self) -> &RcuDomain {
        &self.domain
    }

    /// The number of entries (a snapshot: writers may change it at once).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the tree has no entries (a snapshot, as [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    #[track_caller]
    fn check<G: Guard>(&self, guard: &G) {
        self.domain.assert_guard(guard);
    }

    /// The value at `key`. Lock-free: one load per node on the path (at most
    /// 11; about log64 of the number of entries), then one for the entry (in
    /// a bottom node: its node's summary line and the value's cell, asked
    /// for together).
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the tree (as every read).
    #[inline]
    #[track_caller]
    pub fn get<'g>(&'g self, key: u64, guard: &'g impl Guard) -> Option<&'g V> {
        self.check(guard);
        // SAFETY: `guard` holds a critical section of the tree's domain
        // (checked above) for `'g`.
        unsafe { self.raw.find(key) }.map(|hit| hit.value())
    }

    /// Whether `key` is present.
    #[track_caller]
    pub fn contains_key(&self, key: u64, guard: &impl Guard) -> bool {
        self.get(key, guard).is_some()
    }

    fn cursor<'g>(
        &'g self,
        low: u64,
        high: u64,
        mark: Option<Mark>,
        guard: &'g impl Guard,
    ) -> Cursor<'g, V> {
        self.check(guard);
        // SAFETY: as in `get`; the cursor lives at most `'g`.
        unsafe { self.raw.cursor(low, high, mark.map(Mark::bit)) }
    }

    fn last_le<'g>(
        &'g self,
        key: u64,
        mark: Option<Mark>,
        guard: &'g impl Guard,
    ) -> Option<(u64, &'g V)> {
        self.check(guard);
        // SAFETY: as in `get`.
        unsafe { self.raw.last_at_or_before(key, mark.map(Mark::bit)) }
    }

    /// The entry with the smallest key.
    #[track_caller]
    pub fn first<'g>(&'g self, guard: &'g impl Guard) -> Option<(u64, &'g V)> {
        self.cursor(0, u64::MAX, None, guard).next()
    }

    /// The entry with the largest key.
    #[track_caller]
    pub fn last<'g>(&'g self, guard: &'g impl Guard) -> Option<(u64, &'g V)> {
        self.last_le(u64::MAX, None, guard)
    }

    /// The entry with the smallest key strictly greater than `key`;
    /// `None` for `u64::MAX` (no wrap).
    #[track_caller]
    pub fn next_after<'g>(&'g self, key: u64, guard: &'g impl Guard) -> Option<(u64, &'g V)> {
        self.check(guard);
        let low = key.checked_add(1)?;
        self.cursor(low, u64::MAX, None, guard).next()
    }

    /// The entry with the largest key strictly less than `key`; `None` for
    /// `0`.
    #[track_caller]
    pub fn prev_before<'g>(&'g self, key: u64, guard: &'g impl Guard) -> Option<(u64, &'g V)> {
        self.check(guard);
        self.last_le(key.checked_sub(1)?, None, guard)
    }

    /// The entries in key order.
    #[track_caller]
    pub fn iter<'g>(&'g self, guard: &'g impl Guard) -> Iter<'g, V> {
        Iter {
            cursor: self.cursor(0, u64::MAX, None, guard),
        }
    }

    /// The entries whose keys lie in `range`, in key order. Under concurrent
    /// writes the keys are still strictly ascending, and every key present
    /// for the whole scan is yielded once; keys inserted or removed during
    /// the scan may or may not appear, and a key's value is the one it held
    /// at some moment between the scan's entry into its block of 64 keys
    /// and its step to the key (see the crate docs: reads never go back).
    ///
    /// Each step costs a `trailing_zeros` over the current node's bitmap of
    /// present slots and one load, plus one per level entered or left.
    ///
    /// # Panics
    /// As [`BTreeMap::range`](std::collections::BTreeMap::range): if the
    /// start is greater than the end, or both are equal and excluded; and if
    /// `guard` belongs to another domain.
    ///
    /// ```
    /// let tree: rcu_radix::RcuRadixTree<u64> = (0..100).map(|k| (k * 10, k)).collect();
    /// let guard = rcu_core::read_lock();
    /// let keys: Vec<u64> = tree.range(15..=40, &guard).map(|(k, _)| k).collect();
    /// assert_eq!(keys, [20, 30, 40]);
    /// ```
    #[track_caller]
    pub fn range<'g>(&'g self, range: impl RangeBounds<u64>, guard: &'g impl Guard) -> Iter<'g, V> {
        self.range_inner(range, None, guard)
    }

    #[track_caller]
    fn range_inner<'g>(
        &'g self,
        range: impl RangeBounds<u64>,
        mark: Option<Mark>,
        guard: &'g impl Guard,
    ) -> Iter<'g, V> {
        let (low, high) = bounds(&range).unwrap_or((1, 0));
        Iter {
            cursor: self.cursor(low, high, mark, guard),
        }
    }

    /// Whether the entry at `key` carries `mark` (`false` if absent).
    #[track_caller]
    pub fn is_marked(&self, key: u64, mark: Mark, guard: &impl Guard) -> bool {
        self.check(guard);
        // SAFETY: as in `get`; the leaf is not used past this call.
        unsafe { self.raw.find(key) }.is_some_and(|hit| hit.marked(mark.bit()))
    }

    /// Whether any entry carries `mark`: a load of the root's summary when
    /// none does, else a search down to the first that does (as
    /// [`first_marked`](Self::first_marked), whose answer it always agrees
    /// with: a summary bit alone could still be set for a mark just
    /// cleared).
    #[track_caller]
    pub fn any_marked(&self, mark: Mark, guard: &impl Guard) -> bool {
        self.first_marked(mark, guard).is_some()
    }

    /// The entry with the smallest key that carries `mark`. Subtrees with no
    /// entry carrying it are skipped by their summary bits, as the XArray's
    /// `xa_find` does.
    #[track_caller]
    pub fn first_marked<'g>(&'g self, mark: Mark, guard: &'g impl Guard) -> Option<(u64, &'g V)> {
        self.cursor(0, u64::MAX, Some(mark), guard).next()
    }

    /// The entry with the smallest key strictly greater than `key` that
    /// carries `mark`.
    #[track_caller]
    pub fn next_marked_after<'g>(
        &'g self,
        key: u64,
        mark: Mark,
        guard: &'g impl Guard,
    ) -> Option<(u64, &'g V)> {
        self.check(guard);
        let low = key.checked_add(1)?;
        self.cursor(low, u64::MAX, Some(mark), guard).next()
    }

    /// The entry with the largest key strictly less than `key` that carries
    /// `mark`.
    #[track_caller]
    pub fn prev_marked_before<'g>(
        &'g self,
        key: u64,
        mark: Mark,
        guard: &'g impl Guard,
    ) -> Option<(u64, &'g V)> {
        self.check(guard);
        self.last_le(key.checked_sub(1)?, Some(mark), guard)
    }

    /// The entries that carry `mark`, in key order.
    #[track_caller]
    pub fn iter_marked<'g>(&'g self, mark: Mark, guard: &'g impl Guard) -> Iter<'g, V> {
        self.range_inner(.., Some(mark), guard)
    }

    /// The entries in `range` that carry `mark`, in key order.
    ///
    /// # Panics
    /// As [`range`](Self::range).
    #[track_caller]
    pub fn range_marked<'g>(
        &'g self,
        range: impl RangeBounds<u64>,
        mark: Mark,
        guard: &'g impl Guard,
    ) -> Iter<'g, V> {
        self.range_inner(range, Some(mark), guard)
    }

    /// Inserts `value` at `key`. Returns the value it replaced, which
    /// readers may still be reading: dropping the [`Removed`] drops the
    /// value after a grace period. The entry keeps its marks when its value
    /// is replaced (as the XArray's `xa_store`).
    ///
    /// Never waits for a grace period. Costs no allocation for a small value
    /// that goes inline into a bottom node (see the [crate docs](crate));
    /// otherwise one for the entry, and one more for a node when the key
    /// splits a compressed path.
    pub fn insert(&self, key: u64, value: V) -> Option<Removed<V>> {
        let old = self.raw.write().insert(key, value);
        // The writer lock is released: retire.
        // SAFETY: the entry was unlinked by `insert` and is now owned by the
        // handle alone; readers use this domain.
        old.map(|p| unsafe { Removed::new(p, &self.domain) })
    }

    /// Removes the entry at `key` and returns its value, which readers may
    /// still be reading (see [`Removed`]). Never waits for a grace period.
    pub fn remove(&self, key: u64) -> Option<Removed<V>> {
        let (place, garbage) = self.raw.write().remove(key)?;
        // The writer lock is released (the temporary above): retire.
        // SAFETY: `garbage` holds what `remove` unlinked; readers read under
        // this domain's guards; `V` is the tree's.
        unsafe { garbage.retire::<V>(&self.domain) };
        // SAFETY: as in `insert`.
        Some(unsafe { Removed::new(place, &self.domain) })
    }

    /// The value at `key`, inserting `f()` first if the key is absent.
    ///
    /// `f` runs with the tree's writer lock held, at most once, and only when
    /// the key is absent, where waits for the tree's domain's grace periods
    /// are refused ([`RcuDomain::no_grace_period_waits`]). It may read the
    /// tree (and call
    /// [`stats`](Self::stats)); if it panics the tree is unchanged.
    ///
    /// # Panics
    /// If `f` writes to this tree (a write from inside a write; it would
    /// otherwise deadlock), or waits for a grace period of the tree's domain
    /// (`synchronize`, `drain`, [`Removed::into_inner`]: under the lock it
    /// could wait for a reader that waits for the lock, a write made under
    /// a guard). The tree is then unchanged, and stays usable. A write to
    /// this tree that `f` has another thread make waits for the lock until
    /// this call returns, so `f` must not wait for it (join that thread):
    /// it would wait forever; nor for a thread that waits for a grace
    /// period of the tree's domain.
    ///
    /// ```
    /// let tree = rcu_radix::RcuRadixTree::new();
    /// let guard = rcu_core::read_lock();
    /// assert_eq!(tree.get_or_insert_with(5, || "five", &guard), &"five");
    /// assert_eq!(tree.get_or_insert_with(5, || "FIVE", &guard), &"five");
    /// ```
    #[track_caller]
    pub fn get_or_insert_with<'g>(
        &'g self,
        key: u64,
        f: impl FnOnce() -> V,
        guard: &'g impl Guard,
    ) -> &'g V {
        if let Some(v) = self.get(key, guard) {
            return v;
        }
        // User code under the writer lock: waits for the domain's grace
        // periods are refused (they could wait for a reader that waits for
        // the lock).
        let value = self
            .domain
            .no_grace_period_waits(|| self.raw.write().get_or_insert_with(key, f));
        // SAFETY: `guard` holds a critical section of the tree's domain
        // (checked by `get` above) that began before the entry was found or
        // published under the lock: a writer that unlinks it later retires it
        // after a grace period that waits for this critical section.
        unsafe { value.as_ref() }
    }

    /// Keeps only the entries for which `keep(key, &value)` returns `true`,
    /// visiting them in key order. `keep` runs with the writer lock held,
    /// where waits for the tree's domain's grace periods are refused; it may
    /// read the tree. The removed values are dropped after one grace period, in
    /// one reclaim callback. If `keep` panics, nothing is removed.
    ///
    /// # Panics
    /// If `keep` writes to this tree or waits for a grace period of its
    /// domain (as for [`get_or_insert_with`](Self::get_or_insert_with));
    /// nothing is removed then.
    pub fn retain(&self, keep: impl FnMut(u64, &V) -> bool) {
        let mut batch = Batch::new();
        // As in `get_or_insert_with`.
        self.domain
            .no_grace_period_waits(|| self.raw.write().retain(&mut batch, keep));
        // SAFETY: the batch holds what `retain` unlinked; the writer lock is
        // released; readers read under this domain's guards.
        unsafe { batch.retire(&self.domain) };
    }

    /// Removes every entry. Readers that are inside the tree keep seeing the
    /// old entries until their critical sections end; the whole old tree is
    /// dropped in one reclaim callback after a grace period.
    pub fn clear(&self) {
        let mut batch = Batch::new();
        self.raw.write().clear(&mut batch);
        // SAFETY: as in `retain`.
        unsafe { batch.retire(&self.domain) };
    }

    /// Sets `mark` on the entry at `key`; `false` (and nothing changes) if
    /// the key is absent. Updates the summaries on the path (at most 11
    /// nodes, stopping early where nothing changes).
    pub fn set_mark(&self, key: u64, mark: Mark) -> bool {
        self.raw.write().mark(key, mark.bit(), true)
    }

    /// Clears `mark` on the entry at `key`; `false` if the key is absent.
    pub fn clear_mark(&self, key: u64, mark: Mark) -> bool {
        self.raw.write().mark(key, mark.bit(), false)
    }

    /// The tree's shape and memory: entries, inner nodes, height, bytes.
    /// Walks the whole tree as a reader (under a guard of its own): writers
    /// do not wait, and closures run by writes may call it. Exact when no
    /// write runs meanwhile; otherwise a mix of the states the walk passes
    /// through.
    pub fn stats(&self) -> TreeStats {
        let guard = self.domain.read_lock_owned();
        // SAFETY: `guard` is a critical section of the tree's domain for the
        // whole call.
        let s = unsafe { self.raw.shape() };
        drop(guard);
        TreeStats {
            entries: s.leaves + s.inline,
            nodes: s.nodes + s.bottoms,
            height: s.height,
            node_bytes: s.nodes * raw::NODE_SIZE + s.bottoms * raw::bottom_size::<V>(),
            leaf_bytes: s.leaves * size_of::<Leaf<V>>(),
        }
    }
}

/// `range` as inclusive `(low, high)`; `None` when it is empty.
#[track_caller]
fn bounds(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    use Bound::{Excluded, Included, Unbounded};
    match (range.start_bound(), range.end_bound()) {
        (Excluded(s), Excluded(e)) if s == e => {
            panic!("range start and end are equal and excluded in RcuRadixTree")
        }
        (Included(s) | Excluded(s), Included(e) | Excluded(e)) if s > e => {
            panic!("range start is greater than range end in RcuRadixTree")
        }
        _ => {}
    }
    let low = match range.start_bound() {
        Included(&s) => s,
        Excluded(&s) => s.checked_add(1)?,
        Unbounded => 0,
    };
    let high = match range.end_bound() {
        Included(&e) => e,
        Excluded(&e) => e.checked_sub(1)?,
        Unbounded => u64::MAX,
    };
    (low <= high).then_some((low, high))
}

/// An iterator over entries in key order, from [`RcuRadixTree::iter`],
/// [`range`](RcuRadixTree::range) and the marked forms. Fused. Holds no lock;
/// the references it yields live as long as the guard.
pub struct Iter<'g, V> {
    cursor: Cursor<'g, V>,
}

impl<'g, V> Iterator for Iter<'g, V> {
    type Item = (u64, &'g V);

    #[inline]
    fn next(&mut self) -> Option<(u64, &'g V)> {
        self.cursor.next()
    }

    #[inline]
    fn fold<B, F>(self, init: B, f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        self.cursor.fold(init, f)
    }
}

impl<V> FusedIterator for Iter<'_, V> {}

impl<V> fmt::Debug for Iter<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

#[cfg(not(rcu_loom))]
impl<V: Send + Sync + 'static> Default for RcuRadixTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Send + Sync + fmt::Debug + 'static> fmt::Debug for RcuRadixTree<V> {
    /// The entries in key order, read under a guard of the tree's domain
    /// tied to this thread, so a `V::fmt` that waits for a grace period of
    /// that domain panics rather than waiting for itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.domain.read_lock_local();
        f.debug_map().entries(self.iter(&guard)).finish()
    }
}

#[cfg(not(rcu_loom))]
impl<V: Send + Sync + 'static> FromIterator<(u64, V)> for RcuRadixTree<V> {
    /// Inserts every pair in turn (a later pair of the same key replaces
    /// the earlier), then, as [`extend`](Extend::extend), moves small values
    /// that splits left in entries of their own into their bottom nodes.
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(iter: I) -> Self {
        let mut tree = Self::new();
        tree.extend(iter);
        tree
    }
}

impl<V: Send + Sync + 'static> Extend<(u64, V)> for RcuRadixTree<V> {
    /// Inserts every pair under one hold of the writer lock. If the
    /// iterator panics, what it yielded before stays inserted, and the
    /// values it replaced are retired as usual.
    ///
    /// When the pairs were at least half of the tree's entries (a tree
    /// built by `collect`, say), it then moves small values (up to 32
    /// bytes) that insertion left in entries of their own into their
    /// bottom nodes, which `&mut self` allows (no reader can hold a
    /// reference): keys inserted in ascending order leave one at the front
    /// of every block of 64 keys, and a range scan would wait for each. (A
    /// key replaced twice within a grace period, whose slot's two cells
    /// still hold the replaced values, keeps its entry.) That pass visits
    /// every node (fewer than twice the entries), so it is skipped after
    /// smaller batches: its cost stays within a constant factor of the
    /// pairs'.
    fn extend<I: IntoIterator<Item = (u64, V)>>(&mut self, iter: I) {
        let mut ext = Extending {
            writer: Some(self.raw.write()),
            replaced: Vec::new(),
            domain: &self.domain,
        };
        let mut pairs = 0usize;
        for (k, v) in iter {
            if let Some(w) = &mut ext.writer {
                ext.replaced.extend(w.insert(k, v));
                pairs += 1;
            }
        }
        // Dropping `ext` unlocks, then retires (also when `iter` panics).
        drop(ext);
        if pairs.saturating_mul(2) >= self.len() {
            self.raw.inline_leaves();
        }
    }
}

/// An `extend` in progress: the writer lock, and the entries its inserts
/// replaced, which are retired after the lock is released when it ends,
/// however it ends (a panicking iterator must not leak them).
struct Extending<'t, V: Send + Sync + 'static> {
    writer: Option<raw::Writer<'t, V>>,
    replaced: Vec<Place<V>>,
    domain: &'t RcuDomain,
}

impl<V: Send + Sync + 'static> Drop for Extending<'_, V> {
    fn drop(&mut self) {
        drop(self.writer.take());
        for p in self.replaced.drain(..) {
            // SAFETY: as in `insert`: `p` was unlinked by this extend's
            // writer, which has released the lock, and is retired once.
            drop(unsafe { Removed::new(p, self.domain) });
        }
    }
}
