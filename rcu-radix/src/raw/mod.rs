//! The tree's core: every `unsafe` block of the crate lives here.
//!
//! # Protocol
//!
//! * **Readers** load slots with `Acquire` (pairing with the writer's
//!   `Release` publication of a node or leaf) and follow them. They never
//!   write. What a slot points to stays allocated until every critical
//!   section that may have read the slot has ended: the writer unlinks before
//!   it retires, and retires through the tree's [`RcuDomain`].
//! * **One writer at a time**, under the tree's lock. It changes the tree in
//!   place, one atomic store at a time, in an order that keeps every state a
//!   reader can observe well formed:
//!   - a new entry is a new leaf stored into an empty slot, or a new node
//!     (fully built before its `Release` publication) holding the old
//!     occupant of the slot and the new leaf (a *split*, which also grows
//!     the tree's height when it happens at the root);
//!   - a replaced value is a new leaf stored over the old one;
//!   - a removed entry's slot is cleared; a node left with one child is
//!     replaced in its parent's slot by that child (the *collapse*, which also
//!     shrinks the height at the root), and the node is retired with its
//!     slots untouched, so a reader standing on it still reaches the child.
//! * Nothing reachable is ever freed, and a node's `shift` and `prefix` never
//!   change: a reader that started at an old root, or stands on a retired
//!   node, sees a well-formed (if stale) subtree whose keys lie in the range
//!   the slot it came through promised, so ordered scans stay in order.
//! * Bitmaps (`present`, `marks`) are hints for ordered searches: a reader
//!   always re-reads the slot (and, for marks, the leaf) it is sent to. The
//!   writer stores a slot before setting its bit and clears a leaf's mark
//!   before its summaries, both `Release`, so a reader that sees a bit
//!   (`Acquire`) sees what the bit was set for.

mod cursor;
mod node;
mod removed;

pub(crate) use cursor::Cursor;
pub(crate) use node::{Leaf, MARKS};

/// The bytes of one inner node.
pub(crate) const NODE_SIZE: usize = size_of::<Node>();
pub use removed::Removed;

use node::{Kind, LeafHead, MAX_DEPTH, Node, Word, index};
use rcu_core::RcuDomain;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The tree without its domain: root slot, entry count and writer lock.
pub(crate) struct RawTree<V> {
    root: AtomicPtr<()>,
    len: AtomicUsize,
    lock: Mutex<()>,
    /// The thread holding `lock` ([`thread_token`]), or 0: a write from
    /// inside a write (a user closure run under the lock) panics instead of
    /// deadlocking.
    owner: AtomicUsize,
    _owns: PhantomData<Box<Leaf<V>>>,
}

/// A number that tells this thread from every other live thread (the
/// address of a thread-local), never 0; 0 during thread-local teardown,
/// where a nested write is then not detected.
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN
        .try_with(|t| std::ptr::from_ref(t).addr())
        .unwrap_or(0)
}

/// The shape of a tree, from [`RawTree::shape`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) nodes: usize,
    pub(crate) leaves: usize,
    pub(crate) height: usize,
}

impl<V> RawTree<V> {
    pub(crate) const fn new() -> Self {
        RawTree {
            root: AtomicPtr::new(std::ptr::null_mut()),
            len: AtomicUsize::new(0),
            lock: Mutex::new(()),
            owner: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        // Relaxed: a statistic; it orders nothing.
        self.len.load(Ordering::Relaxed)
    }

    /// Takes the writer lock (ignoring poison: a writer panics only in user
    /// code, which runs before it changes the tree).
    ///
    /// # Panics
    /// If this thread holds it already: a closure that a write runs under
    /// the lock (`get_or_insert_with`'s, `retain`'s, an `Extend` iterator)
    /// wrote to the same tree, which would otherwise deadlock.
    #[track_caller]
    pub(crate) fn write(&self) -> Writer<'_, V> {
        let me = thread_token();
        // Relaxed: only this thread stores its own token, and it stores 0
        // before it unlocks, so the load sees `me` exactly when this thread
        // holds the lock (program order), whatever other threads do.
        if me != 0 && self.owner.load(Ordering::Relaxed) == me {
            panic!(
                "rcu-radix: a write to the tree from inside one of its own writes (a closure \
                 passed to `get_or_insert_with` or `retain`, or an `Extend` iterator, runs \
                 under the tree's writer lock and must not write to the same tree)"
            );
        }
        let lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Relaxed: read only by this thread for itself (above).
        self.owner.store(me, Ordering::Relaxed);
        Writer {
            tree: self,
            _lock: lock,
        }
    }

    /// The leaf of `key`.
    ///
    /// # Safety
    /// The caller is inside a read-side critical section of the domain the
    /// tree retires through, and it lasts at least `'g`.
    #[inline]
    pub(crate) unsafe fn get(&self, key: u64) -> Option<&Leaf<V>> {
        // Acquire: pairs with the Release stores that publish nodes and
        // leaves (`Writer::publish`), so their contents are visible.
        let mut w = Word::load(&self.root, Ordering::Acquire);
        loop {
            match w.kind() {
                Kind::Empty => return None,
                Kind::Leaf(l) => {
                    // SAFETY: reachable while the critical section (which
                    // lasts as long as the returned borrow, by the caller's contract) lasts: the writer
                    // retires only unlinked leaves, through the domain.
                    let leaf = unsafe { &*l.cast::<Leaf<V>>() };
                    return (leaf.head.key == key).then_some(leaf);
                }
                Kind::Node(n) => {
                    // The shift comes from the word, so only the slot's cache
                    // line of the node is touched.
                    // SAFETY: as for the leaf; slots are atomic.
                    let slot = unsafe { &(*n).slots[index(key, w.shift())] };
                    // Acquire: as above. The node may not cover `key` (path
                    // compression is checked only at the leaf, whose key is
                    // compared): then we reach a leaf of another key, or an
                    // empty slot.
                    w = Word::load(slot, Ordering::Acquire);
                }
            }
        }
    }

    /// Whether any entry carries mark `m`: the root's summary.
    ///
    /// # Safety
    /// As [`get`](Self::get).
    pub(crate) unsafe fn any_marked(&self, m: usize) -> bool {
        // Acquire: as in `get`.
        Word::load(&self.root, Ordering::Acquire).summary(m, Ordering::Acquire)
    }

    /// A cursor over the keys in `low..=high`, ascending, of the entries
    /// that carry `mark` (all entries for `None`).
    ///
    /// # Safety
    /// As [`get`](Self::get), for as long as the cursor is used.
    pub(crate) unsafe fn cursor(&self, low: u64, high: u64, mark: Option<usize>) -> Cursor<'_, V> {
        // SAFETY: forwarded to the caller.
        unsafe { Cursor::new(&self.root, low, high, mark) }
    }

    /// The entry with the greatest key `<= key` that carries `mark` (any,
    /// for `None`).
    ///
    /// # Safety
    /// As [`get`](Self::get).
    pub(crate) unsafe fn last_at_or_before(
        &self,
        key: u64,
        mark: Option<usize>,
    ) -> Option<&Leaf<V>> {
        // Acquire: as in `get`.
        let w = Word::load(&self.root, Ordering::Acquire);
        // SAFETY: forwarded to the caller.
        unsafe { last_le(w, key, mark) }.map(|l| {
            // SAFETY: every leaf of this tree is a `Leaf<V>` (the head is its
            // first field, `repr(C)`); alive as above.
            unsafe { &*l.cast::<Leaf<V>>() }
        })
    }

    /// Node count, leaf count and height, walked as a reader: exact when no
    /// writer runs meanwhile, a mix of the states it passes through
    /// otherwise. It takes no lock, so a closure run by a write may call it.
    ///
    /// # Safety
    /// The caller is inside a read-side critical section of the domain the
    /// tree retires through, for the whole call.
    pub(crate) unsafe fn shape(&self) -> Shape {
        let mut shape = Shape::default();
        // Acquire: as in `RawTree::get`.
        let root = Word::load(&self.root, Ordering::Acquire);
        // SAFETY: the caller's critical section keeps every node read in it
        // alive (the writer retires only unlinked nodes, after a grace
        // period).
        unsafe { walk_shape(root, 0, &mut shape) };
        shape
    }
}

/// # Safety
/// The caller is inside a read-side critical section of the tree's domain
/// for the whole call, and `w` was read from the tree in it.
unsafe fn walk_shape(w: Word, depth: usize, shape: &mut Shape) {
    match w.kind() {
        Kind::Empty => {}
        Kind::Leaf(_) => {
            shape.leaves += 1;
            shape.height = shape.height.max(depth);
        }
        Kind::Node(n) => {
            shape.nodes += 1;
            // SAFETY: by the contract.
            let n = unsafe { &*n };
            for slot in &n.slots {
                // Acquire: as in `RawTree::get`.
                let child = Word::load(slot, Ordering::Acquire);
                // SAFETY: by the contract (`child` was read in it).
                unsafe { walk_shape(child, depth + 1, shape) };
            }
        }
    }
}

/// The greatest key `<= key` below `w` that carries `mark`.
///
/// # Safety
/// The caller is inside a read-side critical section that lasts as long
/// as it uses the result, and `w` was read from the tree in it.
unsafe fn last_le(w: Word, key: u64, mark: Option<usize>) -> Option<*const LeafHead> {
    match w.kind() {
        Kind::Empty => None,
        Kind::Leaf(l) => {
            // SAFETY: by the contract (the writer retires only unlinked leaves).
            let head = unsafe { &*l };
            let marked = match mark {
                None => true,
                // Acquire: pairs with the writer's Release store of the marks.
                Some(m) => head.marks.load(Ordering::Acquire) & (1 << m) != 0,
            };
            (head.key <= key && marked).then_some(l)
        }
        Kind::Node(n) => {
            // SAFETY: as for the leaf.
            let n = unsafe { &*n };
            if n.prefix > key {
                return None;
            }
            let top = if n.high() <= key {
                63
            } else {
                index(key, n.shift)
            };
            // Acquire: pairs with the Release stores of the bitmaps; the slot
            // is re-read anyway.
            let mut bits = n.bitmap(mark, Ordering::Acquire) & (u64::MAX >> (63 - top));
            while bits != 0 {
                let i = 63 - bits.leading_zeros() as usize;
                bits &= !(1 << i);
                // Acquire: as in `RawTree::get`.
                let child = Word::load(&n.slots[i], Ordering::Acquire);
                // SAFETY: forwarded.
                if let Some(l) = unsafe { last_le(child, key, mark) } {
                    return Some(l);
                }
            }
            None
        }
    }
}

/// The tree's lock, held: every change goes through here.
pub(crate) struct Writer<'t, V> {
    tree: &'t RawTree<V>,
    _lock: MutexGuard<'t, ()>,
}

impl<V> Drop for Writer<'_, V> {
    fn drop(&mut self) {
        // Before `_lock` unlocks (fields drop after this): see `write`.
        // Relaxed: as there.
        self.tree.owner.store(0, Ordering::Relaxed);
    }
}

/// The nodes on the way to a key: `(node, index taken)` from the root down.
struct Path {
    steps: [(*const Node, usize); MAX_DEPTH],
    len: usize,
}

/// Nodes unlinked by a change, to retire after the writer lock is released.
#[must_use = "unlinked nodes leak unless retired"]
pub(crate) struct Garbage {
    node: Option<NonNull<Node>>,
}

impl Garbage {
    /// Retires the nodes through `domain`.
    ///
    /// # Safety
    /// `domain` is the domain the tree's readers hold guards of.
    pub(crate) unsafe fn retire(self, domain: &RcuDomain) {
        if let Some(n) = self.node {
            // SAFETY: the node came from `Box::into_raw` (`Node::pair`), was
            // unlinked from the tree by the writer before this call (the
            // collapse in `Writer::remove`), is retired once (a `Garbage` is
            // made once per unlink and consumed here), and the readers that
            // may hold it read under `domain`'s guards (caller's contract).
            unsafe { domain.defer_free(n.as_ptr()) };
        }
    }
}

/// Leaves and whole subtrees unlinked by `retain` and `clear`, dropped in
/// one callback after a grace period.
pub(crate) struct Batch<V> {
    leaves: Vec<NonNull<Leaf<V>>>,
    nodes: Vec<NonNull<Node>>,
    subtree: Word,
}

// SAFETY: a `Batch` owns what it points to (unlinked leaves and nodes, and a
// detached subtree), so it may go to the reclaim thread when the values may.
unsafe impl<V: Send> Send for Batch<V> {}

impl<V: Send + 'static> Batch<V> {
    pub(crate) fn new() -> Self {
        Batch {
            leaves: Vec::new(),
            nodes: Vec::new(),
            subtree: Word::EMPTY,
        }
    }

    fn is_empty(&self) -> bool {
        self.leaves.is_empty() && self.nodes.is_empty() && self.subtree == Word::EMPTY
    }

    /// Frees everything after a grace period of `domain`, in one callback.
    ///
    /// # Safety
    /// `domain` is the domain the tree's readers hold guards of.
    pub(crate) unsafe fn retire(self, domain: &RcuDomain) {
        if self.is_empty() {
            return;
        }
        domain.call_rcu(move || {
            let batch = self;
            // A value's panicking drop does not stop the others.
            let mut panicked = None;
            // SAFETY: everything in the batch came from `Box::into_raw`, was
            // unlinked (or, for the subtree, detached at the root) before the
            // batch was retired, is owned only by the batch, and a grace period
            // of the readers' domain has passed, so no reader can reach it.
            unsafe {
                for l in batch.leaves {
                    drop_leaf(Box::from_raw(l.as_ptr()), &mut panicked);
                }
                for n in batch.nodes {
                    drop(Box::from_raw(n.as_ptr()));
                }
                free_subtree_into::<V>(batch.subtree, &mut panicked);
            }
            resume(panicked);
        });
    }
}

/// Frees `w` and everything below it.
///
/// # Safety
/// The caller owns the subtree (it is unreachable for readers, or every
/// reader is gone), it is well formed (each node and leaf reachable once),
/// and it came from this crate's `Box::into_raw`s of `Node` and `Leaf<V>`.
///
/// A value whose drop panics does not stop the others: every value is
/// dropped and every node freed, then the first panic resumes.
pub(crate) unsafe fn free_subtree<V>(w: Word) {
    let mut panicked = None;
    // SAFETY: the caller's contract.
    unsafe { free_subtree_into::<V>(w, &mut panicked) };
    resume(panicked);
}

/// A panic caught while dropping values, to resume once all are dropped.
type Panicked = Option<Box<dyn std::any::Any + Send>>;

/// [`free_subtree`], keeping the first panic of a value's drop in
/// `panicked` and going on.
///
/// # Safety
/// As [`free_subtree`].
unsafe fn free_subtree_into<V>(w: Word, panicked: &mut Panicked) {
    match w.kind() {
        Kind::Empty => {}
        Kind::Leaf(l) => {
            // SAFETY: by the contract, a `Leaf<V>` from `Box::into_raw`.
            drop_leaf(
                unsafe { Box::from_raw(l.cast_mut().cast::<Leaf<V>>()) },
                panicked,
            );
        }
        Kind::Node(n) => {
            // SAFETY: by the contract, a `Node` from `Box::into_raw`, ours.
            let node = unsafe { Box::from_raw(n.cast_mut()) };
            for slot in &node.slots {
                // SAFETY: the children of an owned node are owned too.
                unsafe { free_subtree_into::<V>(Word::load(slot, Ordering::Relaxed), panicked) };
            }
        }
    }
}

/// Drops `leaf`; a panic of its value's drop goes into `panicked` (the
/// first one kept) instead of unwinding past the leaves still to drop.
fn drop_leaf<V>(leaf: Box<Leaf<V>>, panicked: &mut Panicked) {
    // AssertUnwindSafe: the leaf is gone either way; nothing of ours is
    // reachable from its value.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(leaf))) {
        panicked.get_or_insert(payload);
    }
}

/// Resumes the first panic caught while dropping values, if any.
fn resume(panicked: Panicked) {
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
}

impl<V> Drop for RawTree<V> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader can hold a reference into the tree
        // (every reference handed out borrows it), and retired nodes are not
        // reachable from the root.
        unsafe { free_subtree::<V>(Word(*self.root.get_mut())) };
    }
}

// Every load in `Writer` is Relaxed: the writer lock orders all of the
// tree's stores (each made under it) before this writer's loads.
impl<V> Writer<'_, V> {
    /// Walks towards `key`: the path of nodes that cover it and the word
    /// where the walk stopped (empty, a leaf, or a node not covering `key`).
    fn walk(&self, key: u64) -> (Path, Word) {
        let mut path = Path {
            steps: [(std::ptr::null(), 0); MAX_DEPTH],
            len: 0,
        };
        let mut w = Word::load(&self.tree.root, Ordering::Relaxed);
        while let Kind::Node(n) = w.kind() {
            // SAFETY: reachable nodes are alive while we hold the lock.
            let node = unsafe { &*n };
            if !node.covers(key) {
                break;
            }
            let i = index(key, node.shift);
            path.steps[path.len] = (n, i);
            path.len += 1;
            w = Word::load(&node.slots[i], Ordering::Relaxed);
        }
        (path, w)
    }

    /// The slot the walk reached after `depth` steps.
    fn slot(&self, path: &Path, depth: usize) -> &AtomicPtr<()> {
        if depth == 0 {
            &self.tree.root
        } else {
            let (n, i) = path.steps[depth - 1];
            // SAFETY: a node on the path is reachable, so alive while we hold
            // the lock; the reference lives no longer than `self`.
            unsafe { &(*n).slots[i] }
        }
    }

    /// Stores `w` into `slot`.
    fn publish(slot: &AtomicPtr<()>, w: Word) {
        // Release: pairs with the readers' Acquire loads of slots (`get`,
        // the cursor): a new node or leaf is fully built before it is seen.
        slot.store(w.0, Ordering::Release);
    }

    /// The leaf of `key`, for the writer.
    pub(crate) fn get(&self, key: u64) -> Option<&Leaf<V>> {
        let (_, w) = self.walk(key);
        let l = w.as_leaf::<V>()?;
        // SAFETY: a reachable leaf, alive while we hold the lock (only this
        // writer unlinks, and it does not while the borrow of `self` lasts).
        let l = unsafe { &*l };
        (l.head.key == key).then_some(l)
    }

    /// Inserts `value` at `key`; returns the leaf it replaced, now unlinked
    /// (marks carry over to the new leaf).
    pub(crate) fn insert(&mut self, key: u64, value: V) -> Option<NonNull<Leaf<V>>> {
        let (path, w) = self.walk(key);
        let slot = self.slot(&path, path.len);
        match w.kind() {
            Kind::Empty => {
                Self::publish(slot, Word::leaf(Leaf::boxed(key, 0, value)));
                if let Some(&(n, i)) = path.steps[..path.len].last() {
                    // SAFETY: on the path, so alive.
                    let n = unsafe { &*n };
                    let bits = n.present.load(Ordering::Relaxed) | 1 << i;
                    // Release: after the slot's store, so a reader that sees
                    // the bit (Acquire) sees the leaf.
                    n.present.store(bits, Ordering::Release);
                }
            }
            Kind::Leaf(l) => {
                // SAFETY: reachable, alive under the lock.
                let old = unsafe { &*l };
                if old.key == key {
                    let marks = old.marks.load(Ordering::Relaxed);
                    Self::publish(slot, Word::leaf(Leaf::boxed(key, marks, value)));
                    let old = l.cast_mut().cast::<Leaf<V>>();
                    // SAFETY: the word was a non-null leaf pointer.
                    return Some(unsafe { NonNull::new_unchecked(old) });
                }
                let new = Word::leaf(Leaf::boxed(key, 0, value));
                Self::publish(slot, Node::pair(old.key, w, key, new));
            }
            Kind::Node(n) => {
                // The walk stopped at a node that does not cover `key`: a new
                // node above it splits the compressed path.
                // SAFETY: reachable, alive under the lock.
                let prefix = unsafe { (*n).prefix };
                let new = Word::leaf(Leaf::boxed(key, 0, value));
                Self::publish(slot, Node::pair(prefix, w, key, new));
            }
        }
        // Relaxed: a statistic, changed only under the lock.
        self.tree
            .len
            .store(self.tree.len.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // A new entry carries no mark, so no summary changes.
        None
    }

    /// The leaf of `key`, inserting `f()` first if absent.
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: u64,
        f: impl FnOnce() -> V,
    ) -> NonNull<Leaf<V>> {
        if let Some(l) = self.get(key) {
            return NonNull::from(l);
        }
        let replaced = self.insert(key, f());
        debug_assert!(replaced.is_none());
        let l = self.get(key).expect("just inserted");
        NonNull::from(l)
    }

    /// Removes `key`: the unlinked leaf, and the node a collapse unlinked.
    pub(crate) fn remove(&mut self, key: u64) -> Option<(NonNull<Leaf<V>>, Garbage)> {
        let (path, w) = self.walk(key);
        let l = w.as_leaf::<V>()?;
        // SAFETY: reachable, alive under the lock.
        if unsafe { (*l).head.key } != key {
            return None;
        }
        // SAFETY: a non-null leaf pointer.
        let leaf = unsafe { NonNull::new_unchecked(l) };
        self.tree
            .len
            .store(self.tree.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        let mut garbage = Garbage { node: None };
        if path.len == 0 {
            Self::publish(&self.tree.root, Word::EMPTY);
            return Some((leaf, garbage));
        }
        let (p, i) = path.steps[path.len - 1];
        // SAFETY: on the path, so alive.
        let parent = unsafe { &*p };
        Self::publish(&parent.slots[i], Word::EMPTY);
        let present = parent.present.load(Ordering::Relaxed) & !(1 << i);
        // Release: as in `insert`.
        parent.present.store(present, Ordering::Release);
        let fix_from = if present.count_ones() == 1 {
            // The collapse: the only child takes the node's place; the node
            // keeps its slots, so readers standing on it still reach the
            // child.
            let only = Word::load(
                &parent.slots[present.trailing_zeros() as usize],
                Ordering::Relaxed,
            );
            Self::publish(self.slot(&path, path.len - 1), only);
            garbage.node = NonNull::new(p.cast_mut());
            path.len - 1
        } else {
            path.len
        };
        self.fix_marks(&path, fix_from);
        Some((leaf, garbage))
    }

    /// Sets (`on`) or clears mark `m` of `key`'s entry; `false` if absent.
    pub(crate) fn mark(&mut self, key: u64, m: usize, on: bool) -> bool {
        let (path, w) = self.walk(key);
        let Some(l) = w.as_leaf::<V>() else {
            return false;
        };
        // SAFETY: reachable, alive under the lock.
        let head = unsafe { &(*l).head };
        if head.key != key {
            return false;
        }
        let old = head.marks.load(Ordering::Relaxed);
        let new = if on { old | 1 << m } else { old & !(1 << m) };
        if new != old {
            // Release: before the summaries (`fix_marks`), so a reader that
            // sees a summary bit (Acquire) then sees the leaf's mark.
            head.marks.store(new, Ordering::Release);
            self.fix_marks(&path, path.len);
        }
        true
    }

    /// Recomputes the mark summaries of the first `depth` steps of `path`,
    /// bottom up, stopping at the first that does not change.
    fn fix_marks(&self, path: &Path, depth: usize) {
        for &(n, i) in path.steps[..depth].iter().rev() {
            // SAFETY: on the path, so alive.
            let n = unsafe { &*n };
            let child = Word::load(&n.slots[i], Ordering::Relaxed);
            let mut changed = false;
            for (m, bitmap) in n.marks.iter().enumerate() {
                let old = bitmap.load(Ordering::Relaxed);
                let new = if child.summary(m, Ordering::Relaxed) {
                    old | 1 << i
                } else {
                    old & !(1 << i)
                };
                if new != old {
                    // Release: after the marks below it, as in `mark`.
                    bitmap.store(new, Ordering::Release);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Removes every entry `keep` refuses; what it unlinked goes into
    /// `batch`.
    pub(crate) fn retain(&mut self, batch: &mut Batch<V>, mut keep: impl FnMut(u64, &V) -> bool) {
        let mut doomed = Vec::new();
        // SAFETY: under the lock, nothing changes while we walk.
        unsafe {
            each_leaf::<V>(Word::load(&self.tree.root, Ordering::Relaxed), &mut |l| {
                if !keep(l.head.key, &l.value) {
                    doomed.push(l.head.key);
                }
            })
        };
        for key in doomed {
            if let Some((leaf, garbage)) = self.remove(key) {
                batch.leaves.push(leaf);
                batch.nodes.extend(garbage.node);
            }
        }
    }

    /// Detaches the whole tree into `batch`.
    pub(crate) fn clear(&mut self, batch: &mut Batch<V>) {
        debug_assert_eq!(batch.subtree, Word::EMPTY);
        batch.subtree = Word(self.tree.root.swap(std::ptr::null_mut(), Ordering::Relaxed));
        // (Readers see the null root or the old tree; the swap needs no
        // Release: it publishes nothing new.)
        self.tree.len.store(0, Ordering::Relaxed);
    }
}

/// Calls `f` on every leaf below `w`, in key order.
///
/// # Safety
/// The subtree is alive and unchanging during the call.
unsafe fn each_leaf<V>(w: Word, f: &mut impl FnMut(&Leaf<V>)) {
    match w.kind() {
        Kind::Empty => {}
        // SAFETY: by the contract; every leaf of the tree is a `Leaf<V>`.
        Kind::Leaf(l) => f(unsafe { &*l.cast::<Leaf<V>>() }),
        Kind::Node(n) => {
            // SAFETY: by the contract.
            for slot in unsafe { &(*n).slots } {
                // SAFETY: by the contract.
                unsafe { each_leaf(Word::load(slot, Ordering::Relaxed), f) };
            }
        }
    }
}
