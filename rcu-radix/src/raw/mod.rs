//! The tree's core: every `unsafe` block of the crate lives here.
//!
//! # Protocol
//!
//! * **Readers** load slots with `Acquire` (pairing with the writer's
//!   `Release` publication of a node or leaf) and follow them. They never
//!   write. What a slot points to stays allocated until every critical
//!   section that may have read the slot has ended: the writer unlinks before
//!   it retires, and retires through the tree's `RcuDomain`.
//! * **One writer at a time**, under the tree's lock. It changes the tree in
//!   place, one atomic store at a time, in an order that keeps every state a
//!   reader can observe well formed:
//!   - a new entry is a new leaf stored into an empty slot, or a new node
//!     (fully built before its `Release` publication) holding the old
//!     occupant of the slot and the new leaf (a *split*, which also grows
//!     the tree's height when it happens at the root);
//!   - a replaced value is a new leaf (or inline entry, in a bottom node)
//!     stored over the old one;
//!   - a removed entry's slot is cleared; a node left with one child is
//!     replaced in its parent's slot by that child (the *collapse*, which also
//!     shrinks the height at the root), and the node is retired with its
//!     slots untouched, so a reader standing on it still reaches the child;
//!     a bottom node left with one inline entry stays, and is unlinked from
//!     its parent when it is left with none (its parent may then collapse).
//!     (A replacement never collapses: one into a leaf, both of the slot's
//!     cells being held, may leave a bottom node whose only child is that
//!     leaf, until its removal empties the node.)
//! * **Bottom nodes** (shift 0, small values) keep values inline, in two
//!   cells per slot; see [`bottom`]. An inline word carries its key's
//!   prefix, so a lookup checks the key without reading the node's header.
//! * Nothing reachable is ever freed, and a node's `shift` and `prefix` never
//!   change: a reader that started at an old root, or stands on a retired
//!   node, sees a well-formed (if stale) subtree whose keys lie in the range
//!   the slot it came through promised, so ordered scans stay in order.
//! * Bitmaps (`present`, `marks`) are hints for ordered searches: a reader
//!   always re-reads the slot (and, for marks, the entry's own mark) it is
//!   sent to, and only that decides. So that no read path goes back after
//!   another has seen a newer state, a bit is set before the slot (or the
//!   mark) it leads to and cleared after it: a reader that has seen an
//!   entry, or a mark, finds the bits that lead to it (`Release` stores,
//!   `Acquire` loads), and one that follows a stale bit finds the slot
//!   empty, or the mark clear, and skips it. (Marks: `Writer::mark`.)

mod bottom;
mod cursor;
mod node;
mod reclaim;
mod removed;

pub(crate) use cursor::Cursor;
pub(crate) use node::{Leaf, MARKS};

/// The bytes of one inner node.
pub(crate) const NODE_SIZE: usize = size_of::<Node>();
use reclaim::free_subtree;
pub(crate) use reclaim::{Batch, Garbage, Place};
pub use removed::Removed;

/// The bytes of one bottom node of a tree of `V`s (a node with two value
/// cells per slot).
pub(crate) const fn bottom_size<V>() -> usize {
    size_of::<Bottom<V>>()
}

use bottom::{Bottom, Summary, inline_values};
use node::{Kind, MAX_DEPTH, Node, Word, index};
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
    /// Nodes other than bottom nodes.
    pub(crate) nodes: usize,
    /// Bottom nodes (with value cells).
    pub(crate) bottoms: usize,
    /// Entries in leaves of their own.
    pub(crate) leaves: usize,
    /// Entries in the cells of bottom nodes.
    pub(crate) inline: usize,
    pub(crate) height: usize,
}

/// An entry a reader found: its leaf, or its cell in a bottom node.
pub(crate) enum Hit<'g, V> {
    Leaf(&'g Leaf<V>),
    Cell {
        /// The bottom node (a raw pointer: its provenance covers the whole
        /// `Bottom`, summary and cells included), alive for `'g`.
        node: *const Node,
        slot: usize,
        cell: usize,
        value: &'g V,
    },
}

impl<'g, V> Hit<'g, V> {
    #[inline(always)]
    pub(crate) fn value(&self) -> &'g V {
        match *self {
            Hit::Leaf(l) => &l.value,
            Hit::Cell { value, .. } => value,
        }
    }

    /// Whether the entry carries mark `m` (an `Acquire` load: pairs with the
    /// writer's `Release` store of the mark).
    pub(crate) fn marked(&self, m: usize) -> bool {
        match *self {
            Hit::Leaf(l) => l.head.marks.load(Ordering::Acquire) & (1 << m) != 0,
            Hit::Cell {
                node, slot, cell, ..
            } => {
                // SAFETY: the bottom node a reader found the entry in, read
                // from a word in the critical section the hit lives in, with
                // that word's provenance (kept as a raw pointer to the whole
                // `Bottom`, summary and cells included).
                let mark = unsafe { inline_marked::<V>(node, slot, m, cell) };
                match mark {
                    InlineMark::Clear => false,
                    // The hit's entry, or a later one of the key (whose bit
                    // is that entry's mark): the key's entry is marked; the
                    // hit keeps its value.
                    InlineMark::Set { .. } => true,
                    // The slot holds a leaf now: its mark decides (see
                    // `inline_marked`).
                    InlineMark::Gone(w) => match w.kind() {
                        Kind::Leaf(l) => {
                            // SAFETY: a leaf read in the critical section the hit
                            // lives in (the writer retires only unlinked leaves).
                            let marks = unsafe { (*l).marks.load(Ordering::Acquire) };
                            marks & (1 << m) != 0
                        }
                        // Removed (`inline_marked` passes on no inline word,
                        // and a bottom node's slot holds no node).
                        Kind::Empty | Kind::Inline { .. } | Kind::Node(_) => false,
                    },
                }
            }
        }
    }
}

/// What [`inline_marked`] found.
pub(crate) enum InlineMark {
    /// The slot's inline entry carries no mark `m`.
    Clear,
    /// The inline entry in `cell` carries it: the one the caller took, or a
    /// later one of the key, in the other cell.
    Set { cell: usize },
    /// The slot holds this word now, a leaf or `Empty` (read after the bit):
    /// it decides.
    Gone(Word),
}

/// Whether the inline entry that a reader took from slot `i` of the bottom
/// node `node`, in cell `cell` (by its summary, or by a word it loaded),
/// carries mark `m`, and where the value to return with that answer is.
///
/// An inline entry's marks are its node's bits for its slot, but only
/// while the slot holds that entry: once its key is removed and inserted
/// again, the bit is the new entry's mark, and once the slot holds a leaf,
/// the bit is the leaf's summary, which a mark's set stores before the
/// leaf's own mark. A reader whose summary or word was stale (the entry it
/// took has since been replaced) could see the bit set and call its entry
/// marked, an entry that never was (and, for a leaf, a later read ask the
/// leaf and be told no).
///
/// So after a set bit the slot is read again, as every reader reads it
/// (see "Which location a reader believes" in `bottom`): the summary, then,
/// unless it names a cell, the word. If that names the cell the caller
/// took, the bit is that entry's mark. The bit is stored only by the
/// writer, under its lock (`Release`), and the value loaded (`Acquire`,
/// perhaps a store for another slot of the node) shows every store of
/// the writer before it. The slot's bit is, in the writer's order:
/// cleared when a key's entry is removed, before its next entry is
/// published (or left as it is when the removal unlinks the node, which
/// then never takes another entry, and whose slot a re-read finds empty);
/// carried over unchanged when a key's entry is replaced (the
/// new entry takes the old one's marks); and set or cleared by `mark` for
/// the entry then in the slot. So a set bit the reader loaded belongs to
/// the entry it took (or to one it replaced, with the same marks), unless
/// a later entry or leaf was published before the store: then the re-read,
/// after the bit, names that later one instead. (A cell holds one entry
/// for the reader's whole critical section: it is reused only a grace
/// period after its entry leaves it, so a cell named twice is one entry.)
///
/// If the re-read names the other cell, a later entry of the key is there
/// (a replacement, with the same marks, or an insertion after a removal,
/// whose bit, cleared by the removal, is its own), and is asked in turn. A
/// reader sees at most two inline entries of a slot in one critical
/// section (a third would need a cell back, a grace period after its
/// entry left it), and its re-reads are never older than its reads
/// before them, so the second asking is the last. If it names a leaf or
/// nothing, the caller goes by that word ([`InlineMark::Gone`]).
///
/// Every reader of an inline entry's mark needs this check. `is_marked`
/// reaches the slot without reading the bit. An ordered search reads the
/// bit first, in its node's mark bitmap when it enters the node, but that
/// bit may belong to an earlier entry of the slot (one whose mark is being
/// cleared): by the time the search reads the slot's word, the slot may
/// hold another entry, or a leaf, whose mark is being set (`concurrent.rs`,
/// `marks_never_go_back_in_a_search_paused_in_its_node`).
///
/// # Safety
/// `n` is a bottom node of inline values (`Bottom<V>`), read in a critical
/// section that is still held (so it is alive), with the provenance of the
/// word it was loaded from.
pub(crate) unsafe fn inline_marked<V>(
    n: *const Node,
    i: usize,
    m: usize,
    mut cell: usize,
) -> InlineMark {
    // SAFETY: the caller's contract.
    let node = unsafe { &*n };
    let mut passes = 0;
    loop {
        passes += 1;
        debug_assert!(
            passes <= 2,
            "a third inline entry of one slot in one critical section"
        );
        // Acquire: pairs with the writer's Release stores of the bitmap.
        if node.marks[m].load(Ordering::Acquire) & (1 << i) == 0 {
            return InlineMark::Clear;
        }
        // SAFETY: the caller's contract.
        let summary = unsafe { Summary::of(n.cast::<Bottom<V>>()) };
        let now = match summary.cell(i) {
            Some(now) => now,
            None => {
                // Acquire: as in `RawTree::find`.
                let w = Word::load(&node.slots[i], Ordering::Acquire);
                match w.kind() {
                    Kind::Inline { cell, .. } => cell,
                    Kind::Empty | Kind::Leaf(_) | Kind::Node(_) => return InlineMark::Gone(w),
                }
            }
        };
        if now == cell {
            return InlineMark::Set { cell };
        }
        // A later entry of the key, in the other cell: ask about it.
        cell = now;
    }
}

/// What an ordered search takes from one slot of a node it entered.
pub(crate) enum SlotEntry {
    /// An inline entry without the mark searched for: go on to the next slot.
    Skip,
    /// The inline entry in this cell (of the node's bottom): the one to yield.
    Cell(usize),
    /// The slot's word, a child node, a leaf or `Empty`: the one to visit.
    Word(Word),
}

/// Reads slot `i` of node `n` as every reader does (see "Which location a
/// reader believes" in `bottom`): its cell if `summary`, taken when the
/// search entered `n`, names one, else its word (`Acquire`); and for a
/// search of mark `m`, whether an inline entry carries it (see
/// [`inline_marked`]), which may hand back a later entry of the key or the
/// leaf that now holds it.
///
/// Costs one load for an unmarked search (none for an inline entry the
/// summary names); a marked one adds a load of the bit, and after a set
/// bit, the summary and word again.
///
/// # Safety
/// `n` was read in a critical section that is still held, with the
/// provenance of the word it was loaded from; `summary` is its summary if
/// it is a bottom node (read in that same critical section), else the
/// empty one.
#[inline(always)]
pub(crate) unsafe fn slot_entry<V>(
    n: *const Node,
    summary: Summary,
    i: usize,
    mark: Option<usize>,
) -> SlotEntry {
    let cell = match summary.cell(i) {
        Some(cell) => cell,
        None => {
            // SAFETY: the caller's contract.
            let node = unsafe { &*n };
            // Acquire: pairs with the writer's Release publication of nodes,
            // leaves and inline entries.
            let w = Word::load(&node.slots[i], Ordering::Acquire);
            match w.kind() {
                Kind::Inline { cell, .. } => cell,
                Kind::Empty | Kind::Leaf(_) | Kind::Node(_) => return SlotEntry::Word(w),
            }
        }
    };
    let Some(m) = mark else {
        return SlotEntry::Cell(cell);
    };
    // SAFETY: `n` holds (or held, in this critical section) an inline
    // entry, so it is a bottom node of inline values; alive and with its
    // provenance by the contract.
    match unsafe { inline_marked::<V>(n, i, m, cell) } {
        InlineMark::Clear => SlotEntry::Skip,
        // The entry taken, or a later one of the key.
        InlineMark::Set { cell } => SlotEntry::Cell(cell),
        // A leaf now, or nothing: it decides.
        InlineMark::Gone(w) => SlotEntry::Word(w),
    }
}

/// Asks the cache for the line at `p`; reads nothing and never faults.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `_mm_prefetch` (SSE, which every x86-64 CPU has) is a hint: it
    // never faults and has no effect the program can see, whatever the
    // address (even one freed since it was read).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
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

    /// The entry of `key`.
    ///
    /// # Safety
    /// The caller is inside a read-side critical section of the domain the
    /// tree retires through, and it lasts as long as the result is used.
    #[inline(always)]
    pub(crate) unsafe fn find(&self, key: u64) -> Option<Hit<'_, V>> {
        // Acquire: pairs with the Release stores that publish nodes, leaves
        // and inline entries (`Writer::publish`), so their contents are
        // visible.
        let mut w = Word::load(&self.root, Ordering::Acquire);
        let mut node: *const Node = std::ptr::null();
        loop {
            match w.kind() {
                Kind::Empty => return None,
                Kind::Leaf(l) => {
                    // SAFETY: reachable while the critical section (which
                    // lasts as long as the result is used, by the caller's
                    // contract) lasts: the writer retires only unlinked
                    // leaves, through the domain.
                    let leaf = unsafe { &*l.cast::<Leaf<V>>() };
                    return (leaf.head.key == key).then_some(Hit::Leaf(leaf));
                }
                Kind::Node(n) => {
                    // The shift comes from the word, so only the slot's cache
                    // line of the node is touched.
                    let (shift, i) = (w.shift(), index(key, w.shift()));
                    node = n;
                    if let Some(b) = Bottom::<V>::of(n, shift) {
                        // A bottom node: its summary line instead of the
                        // slot's, while the value's line is on its way.
                        Bottom::prefetch(b, i);
                        // SAFETY: alive as `n` is.
                        let s = unsafe { Summary::of(b) };
                        if s.base != key & !63 {
                            // A compressed path led elsewhere.
                            return None;
                        }
                        if let Some(cell) = s.cell(i) {
                            // SAFETY: the summary, read in the critical
                            // section, names a cell that holds a value for
                            // all of it (see `Summary`).
                            let value = unsafe { Bottom::value(b, i, cell) };
                            return Some(Hit::Cell {
                                node: n,
                                slot: i,
                                cell,
                                value,
                            });
                        }
                        // Not inline when the summary was read: the slot's
                        // word says what is there now.
                    }
                    // SAFETY: as for the leaf; slots are atomic.
                    let slot = unsafe { &(*n).slots[i] };
                    // Acquire: as above. The node may not cover `key` (path
                    // compression is checked only at the entry, whose key is
                    // compared): then we reach an entry of another key, or an
                    // empty slot.
                    w = Word::load(slot, Ordering::Acquire);
                }
                Kind::Inline { prefix, cell } => {
                    if prefix != key & !63 {
                        return None;
                    }
                    // Inline words sit only in bottom nodes' slots, so `node`
                    // (the node whose slot held the word) is a bottom node.
                    let b = node.cast::<Bottom<V>>();
                    let slot = index(key, 0);
                    // SAFETY: the word, loaded with Acquire in the critical
                    // section, names the cell: its value was written before
                    // the word's Release store, and stays until a grace
                    // period after the word is replaced (see `bottom`).
                    let value = unsafe { Bottom::value(b, slot, cell) };
                    return Some(Hit::Cell {
                        node,
                        slot,
                        cell,
                        value,
                    });
                }
            }
        }
    }

    /// A cursor over the keys in `low..=high`, ascending, of the entries
    /// that carry `mark` (all entries for `None`).
    ///
    /// # Safety
    /// As [`find`](Self::find), for as long as the cursor is used.
    pub(crate) unsafe fn cursor(&self, low: u64, high: u64, mark: Option<usize>) -> Cursor<'_, V> {
        // SAFETY: forwarded to the caller.
        unsafe { Cursor::new(&self.root, low, high, mark) }
    }

    /// The entry with the greatest key `<= key` that carries `mark` (any,
    /// for `None`).
    ///
    /// # Safety
    /// As [`find`](Self::find).
    pub(crate) unsafe fn last_at_or_before(
        &self,
        key: u64,
        mark: Option<usize>,
    ) -> Option<(u64, &V)> {
        // Acquire: as in `find`.
        let w = Word::load(&self.root, Ordering::Acquire);
        // SAFETY: forwarded to the caller.
        unsafe { last_le(w, key, mark) }
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
        // Acquire: as in `RawTree::find`.
        let root = Word::load(&self.root, Ordering::Acquire);
        // SAFETY: the caller's critical section keeps every node read in it
        // alive (the writer retires only unlinked nodes, after a grace
        // period).
        unsafe { walk_shape::<V>(root, 0, &mut shape) };
        shape
    }
}

/// # Safety
/// The caller is inside a read-side critical section of the tree's domain
/// for the whole call, and `w` was read from the tree in it.
unsafe fn walk_shape<V>(w: Word, depth: usize, shape: &mut Shape) {
    match w.kind() {
        Kind::Empty => {}
        Kind::Leaf(_) => {
            shape.leaves += 1;
            shape.height = shape.height.max(depth);
        }
        Kind::Inline { .. } => {
            shape.inline += 1;
            shape.height = shape.height.max(depth);
        }
        Kind::Node(n) => {
            if Bottom::<V>::of(n, w.shift()).is_some() {
                shape.bottoms += 1;
            } else {
                shape.nodes += 1;
            }
            // SAFETY: by the contract.
            let n = unsafe { &*n };
            for slot in &n.slots {
                // Acquire: as in `RawTree::find`.
                let child = Word::load(slot, Ordering::Acquire);
                // SAFETY: by the contract (`child` was read in it).
                unsafe { walk_shape::<V>(child, depth + 1, shape) };
            }
        }
    }
}

/// The entry with the greatest key `<= key` below `w` that carries `mark`.
///
/// # Safety
/// The caller is inside a read-side critical section that lasts as long
/// as it uses the result, and `w` was read from the tree in it.
unsafe fn last_le<'g, V>(w: Word, key: u64, mark: Option<usize>) -> Option<(u64, &'g V)> {
    match w.kind() {
        // An inline word is handled by its node (below), which knows its
        // slot; the root never holds one.
        Kind::Empty | Kind::Inline { .. } => None,
        Kind::Leaf(l) => {
            // SAFETY: by the contract (the writer retires only unlinked
            // leaves); every leaf of the tree is a `Leaf<V>`.
            let leaf = unsafe { &*l.cast::<Leaf<V>>() };
            let marked = match mark {
                None => true,
                // Acquire: pairs with the writer's Release store of the marks.
                Some(m) => leaf.head.marks.load(Ordering::Acquire) & (1 << m) != 0,
            };
            (leaf.head.key <= key && marked).then_some((leaf.head.key, &leaf.value))
        }
        Kind::Node(n) => {
            // SAFETY: as for the leaf.
            let node = unsafe { &*n };
            if node.prefix > key {
                return None;
            }
            let top = if node.high() <= key {
                63
            } else {
                index(key, node.shift)
            };
            // Acquire: pairs with the Release stores of the bitmaps; the slot
            // is re-read anyway.
            let mut bits = node.bitmap(mark, Ordering::Acquire) & (u64::MAX >> (63 - top));
            // A bottom node's summary, before any of its words, as every
            // reader reads them (see "Which location a reader believes" in
            // `bottom`); none above the bottom.
            let summary = Bottom::<V>::of(n, node.shift)
                // SAFETY: alive as `node` is.
                .map(|b| unsafe { Summary::of(b) })
                .unwrap_or_default();
            while bits != 0 {
                let i = 63 - bits.leading_zeros() as usize;
                bits &= !(1 << i);
                // SAFETY: `n`, read in the critical section (the contract),
                // with `summary` its own if it is a bottom node.
                let child = match unsafe { slot_entry::<V>(n, summary, i, mark) } {
                    SlotEntry::Skip => continue,
                    SlotEntry::Cell(cell) => {
                        // SAFETY: the summary or the slot's word, read in the
                        // critical section, names a cell that holds a value
                        // for all of it (see `Summary`, and `bottom`).
                        let v = unsafe { Bottom::<V>::value(n.cast(), i, cell) };
                        // Slot `i <= top`, so its key is `<= key`.
                        return Some((summary.base | i as u64, v));
                    }
                    SlotEntry::Word(child) => child,
                };
                // SAFETY: forwarded.
                if let Some(hit) = unsafe { last_le(child, key, mark) } {
                    return Some(hit);
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

impl<V> RawTree<V> {
    /// Moves the value of every leaf that sits in a bottom node into a free
    /// cell of its slot (making it an inline entry) and frees the leaf.
    /// Where a shared tree must keep such leaves (a split keeps the entry
    /// it splits off as a leaf: its value cannot move while readers may see
    /// it), `&mut` proves that no reader can: every reference into the tree
    /// borrows it. Keys inserted in ascending order leave one such leaf at
    /// the front of every bottom node, which a scan would wait for. A leaf
    /// whose slot has both cells held (values replaced within a grace
    /// period, whose handles have not released them) stays.
    ///
    /// Visits every node: O(nodes), fewer than twice the entries.
    pub(crate) fn inline_leaves(&mut self) {
        if !inline_values::<V>() {
            return;
        }
        // SAFETY: `&mut self`: the tree's nodes and entries are ours alone.
        unsafe { inline_leaves_below::<V>(Word(*self.root.get_mut())) };
    }
}

/// [`RawTree::inline_leaves`] for the subtree `w` points to.
///
/// # Safety
/// The caller owns the subtree for the call: no reader or writer uses it
/// meanwhile, and no reference into it is held.
unsafe fn inline_leaves_below<V>(w: Word) {
    let Kind::Node(n) = w.kind() else { return };
    // SAFETY: owned by the caller, so alive.
    let node = unsafe { &*n };
    let Some(b) = Bottom::<V>::of(n, w.shift()) else {
        for slot in &node.slots {
            // Relaxed: owned (the caller's `&mut`), so every store to the
            // slot happened before this.
            // SAFETY: the children of an owned node are owned too.
            unsafe { inline_leaves_below::<V>(Word::load(slot, Ordering::Relaxed)) };
        }
        return;
    };
    // SAFETY: as the node.
    let b = unsafe { &*b };
    for (i, slot) in node.slots.iter().enumerate() {
        // Relaxed: as above.
        let Kind::Leaf(l) = Word::load(slot, Ordering::Relaxed).kind() else {
            continue;
        };
        // A retired value still in a cell (its handle not yet dropped)
        // keeps that cell; with both held the leaf stays.
        let Some(c) = b.free_cell(i) else { continue };
        // In a bottom node the node's bits for a slot are the marks of its
        // entry (the summary of a leaf, exactly), which is where an inline
        // entry keeps them.
        debug_assert_eq!(
            // SAFETY: a reachable leaf of an owned node: alive. Relaxed (here
            // and in `slot_marks`): owned, as the slot loads above.
            unsafe { (*l).marks.load(Ordering::Relaxed) },
            node.slot_marks(i, Ordering::Relaxed)
        );
        // SAFETY: every leaf of the tree is a `Leaf<V>` from
        // `Box::into_raw`, owned here with the node; no reference to its
        // value is held (the caller's contract), so the value may move.
        let leaf = unsafe { Box::from_raw(l.cast_mut().cast::<Leaf<V>>()) };
        let Leaf { head, value } = *leaf;
        // SAFETY: the cell is free, and we are the only writer.
        unsafe { b.fill(i, c, value) };
        // Relaxed: no other thread sees the tree until the caller's `&mut`
        // ends, and whatever hands the tree to another thread then (a
        // spawn, a channel, a lock) orders this store before that thread's
        // loads.
        slot.store(Word::inline(head.key & !63, c).0, Ordering::Relaxed);
        b.set_inline(i, c);
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

    /// The bottom node the walk ended in, if it did (the last node of the
    /// path, at shift 0, in a tree with inline values).
    /// (A pointer with the provenance of the node's allocation, from the
    /// word: a retired cell frees the node through it.) Alive while we hold
    /// the lock.
    fn bottom(path: &Path) -> Option<*const Bottom<V>> {
        let &(n, _) = path.steps[..path.len].last()?;
        // SAFETY: on the path, so alive while we hold the lock.
        Bottom::<V>::of(n, unsafe { (*n).shift })
    }

    /// The value of `key`, for the writer.
    pub(crate) fn get(&self, key: u64) -> Option<NonNull<V>> {
        let (path, w) = self.walk(key);
        match w.kind() {
            Kind::Leaf(l) => {
                let l = l.cast_mut().cast::<Leaf<V>>();
                // SAFETY: a reachable leaf, alive while we hold the lock.
                (unsafe { (*l).head.key } == key).then(|| {
                    // SAFETY: as above; a field of a non-null leaf.
                    unsafe { NonNull::new_unchecked(&raw mut (*l).value) }
                })
            }
            Kind::Inline { cell, .. } => {
                // The walk entered only nodes covering `key`, so the word is
                // `key`'s.
                let b = Self::bottom(&path).expect("an inline word in a bottom node");
                NonNull::new(Bottom::cell_ptr(b, index(key, 0), cell))
            }
            Kind::Empty | Kind::Node(_) => None,
        }
    }

    /// Publishes a new entry of `key` into `slot`, which is `bottom`'s slot
    /// for it if the walk ended in a bottom node: an inline entry in a free
    /// cell, or else a new leaf with `marks`. An inline entry's marks are
    /// its node's bits, which the caller keeps.
    fn publish_entry(
        slot: &AtomicPtr<()>,
        bottom: Option<*const Bottom<V>>,
        key: u64,
        marks: u8,
        value: V,
    ) {
        let i = index(key, 0);
        // SAFETY: a bottom node on the walk's path, alive under the lock.
        let bottom = bottom.map(|b| unsafe { &*b });
        // In a bottom node, the summary's store and the word's come in the
        // order that keeps every reader's reads monotonic: see "Which
        // location a reader believes" in `bottom`.
        match bottom.map(|b| (b, b.free_cell(i))) {
            Some((b, Some(c))) => {
                // SAFETY: the writer (we hold the lock) fills a free cell.
                unsafe { b.fill(i, c, value) };
                let word = Word::inline(key & !63, c);
                if b.is_inline(i) {
                    // A replaced inline entry: the summary decides.
                    b.move_cell(i, c);
                    Self::publish(slot, word);
                } else {
                    // A new inline entry: the word decides until the
                    // summary's bit is set.
                    Self::publish(slot, word);
                    b.set_inline(i, c);
                }
            }
            Some((b, None)) => {
                // Both cells held (two replacements within a grace period):
                // a leaf, as above the bottom. The word decides once the
                // summary's bit is clear.
                if b.is_inline(i) {
                    b.clear_inline(i);
                }
                Self::publish(slot, Word::leaf(Leaf::boxed(key, marks, value)));
            }
            None => Self::publish(slot, Word::leaf(Leaf::boxed(key, marks, value))),
        }
    }

    /// Inserts `value` at `key`; returns the entry it replaced, now unlinked
    /// (marks carry over to the new entry).
    pub(crate) fn insert(&mut self, key: u64, value: V) -> Option<Place<V>> {
        let (path, w) = self.walk(key);
        let slot = self.slot(&path, path.len);
        let bottom = Self::bottom(&path);
        match w.kind() {
            Kind::Empty => {
                if let Some(&(n, i)) = path.steps[..path.len].last() {
                    // SAFETY: on the path, so alive.
                    let n = unsafe { &*n };
                    let bits = n.present.load(Ordering::Relaxed) | 1 << i;
                    // Release: before the slot's store, so a reader that has
                    // seen the entry (`get`, through the slot's Acquire
                    // load) sees the bit, and a later search, which visits
                    // only the slots whose bits it sees, finds the entry
                    // too. A search that sees the bit first skips the slot
                    // while it is still empty.
                    n.present.store(bits, Ordering::Release);
                }
                // A new entry carries no mark (a bottom node's bits for an
                // empty slot are clear), so no summary changes.
                Self::publish_entry(slot, bottom, key, 0, value);
            }
            Kind::Inline { cell, .. } => {
                // The walk entered only nodes covering `key`: the entry is
                // `key`'s. The new value goes into the other cell if it is
                // free (this one is busy), else into a leaf.
                let b = bottom.expect("an inline word in a bottom node");
                let i = index(key, 0);
                // The node's bits for the slot are the entry's marks.
                // Relaxed: under the writer lock, which orders every store
                // of them.
                // SAFETY: on the path, alive under the lock.
                let marks = unsafe { (*b).node.slot_marks(i, Ordering::Relaxed) };
                Self::publish_entry(slot, bottom, key, marks, value);
                // SAFETY: we hold the lock; the cell's word was just
                // replaced; this is the only handle made for it.
                return Some(Place::Cell(unsafe { Bottom::retire(b, i, cell) }));
            }
            Kind::Leaf(l) => {
                // SAFETY: reachable, alive under the lock.
                let old = unsafe { &*l };
                if old.key == key {
                    // In a bottom node, the node's bits for the slot already
                    // are the leaf's marks (its summary).
                    let marks = old.marks.load(Ordering::Relaxed);
                    Self::publish_entry(slot, bottom, key, marks, value);
                    let old = l.cast_mut().cast::<Leaf<V>>();
                    // SAFETY: the word was a non-null leaf pointer.
                    return Some(Place::Leaf(unsafe { NonNull::new_unchecked(old) }));
                }
                Self::publish(slot, Node::pair(old.key, w, key, value));
            }
            Kind::Node(n) => {
                // The walk stopped at a node that does not cover `key`: a new
                // node above it splits the compressed path.
                // SAFETY: reachable, alive under the lock.
                let prefix = unsafe { (*n).prefix };
                Self::publish(slot, Node::pair(prefix, w, key, value));
            }
        }
        // Relaxed: a statistic, changed only under the lock.
        self.tree
            .len
            .store(self.tree.len.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        None
    }

    /// The value of `key`, inserting `f()` first if absent.
    pub(crate) fn get_or_insert_with(&mut self, key: u64, f: impl FnOnce() -> V) -> NonNull<V> {
        if let Some(v) = self.get(key) {
            return v;
        }
        let replaced = self.insert(key, f());
        debug_assert!(replaced.is_none());
        self.get(key).expect("just inserted")
    }

    /// Removes `key`: the unlinked entry, and the nodes the removal
    /// unlinked.
    pub(crate) fn remove(&mut self, key: u64) -> Option<(Place<V>, Garbage)> {
        let (path, w) = self.walk(key);
        let place = match w.kind() {
            Kind::Leaf(l) => {
                let l = l.cast_mut().cast::<Leaf<V>>();
                // SAFETY: reachable, alive under the lock.
                if unsafe { (*l).head.key } != key {
                    return None;
                }
                // SAFETY: a non-null leaf pointer.
                Place::Leaf(unsafe { NonNull::new_unchecked(l) })
            }
            Kind::Inline { cell, .. } => {
                let b = Self::bottom(&path).expect("an inline word in a bottom node");
                let i = index(key, 0);
                // The word is cleared below; the scans' summary first (a scan
                // that still sees the bit reads the retired cell, valid for
                // its critical section).
                // SAFETY: on the path, alive under the lock.
                unsafe { (*b).clear_inline(i) };
                // SAFETY: we hold the lock; the word is cleared below, before
                // anyone else can see the handle; the only handle made.
                Place::Cell(unsafe { Bottom::retire(b, i, cell) })
            }
            Kind::Empty | Kind::Node(_) => return None,
        };
        self.tree
            .len
            .store(self.tree.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        let mut garbage = Garbage { nodes: [None; 2] };
        // Empty the slot at depth `d` (the root slot at 0); a node it leaves
        // with one child collapses, one it leaves empty (a bottom node whose
        // last entry was inline) is unlinked in turn.
        let mut d = path.len;
        let fix_from = loop {
            if d == 0 {
                Self::publish(&self.tree.root, Word::EMPTY);
                break 0;
            }
            let (p, i) = path.steps[d - 1];
            // SAFETY: on the path, so alive.
            let parent = unsafe { &*p };
            Self::publish(&parent.slots[i], Word::EMPTY);
            let present = parent.present.load(Ordering::Relaxed) & !(1 << i);
            // Release: as in `insert`.
            parent.present.store(present, Ordering::Release);
            match present.count_ones() {
                0 => {
                    // Only a bottom node empties: a removal that leaves
                    // any other node one child collapses it, but a bottom
                    // node keeps a last inline entry, or a last leaf that
                    // a replacement left it (replacements never collapse),
                    // until that entry's removal brings us here.
                    garbage.push(p);
                    d -= 1;
                }
                1 => {
                    let only = Word::load(
                        &parent.slots[present.trailing_zeros() as usize],
                        Ordering::Relaxed,
                    );
                    if let Kind::Inline { .. } = only.kind() {
                        // An inline entry cannot leave its node.
                        break d;
                    }
                    // The collapse: the only child takes the node's place;
                    // the node keeps its slots, so readers standing on it
                    // still reach the child.
                    Self::publish(self.slot(&path, d - 1), only);
                    garbage.push(p);
                    break d - 1;
                }
                _ => break d,
            }
        };
        self.fix_marks(&path, fix_from);
        Some((place, garbage))
    }

    /// Sets (`on`) or clears mark `m` of `key`'s entry; `false` if absent.
    ///
    /// A mark lives in two kinds of place: the entry's own (a leaf's marks,
    /// or an inline entry's bit in its bottom node), which decides for every
    /// reader (`is_marked`, and the searches, which re-read it), and the
    /// summary bits of the nodes above it, which searches follow to it. So
    /// a set stores the summaries first and the entry's mark last, and a
    /// clear the entry's mark first and the summaries after: a reader that
    /// has seen the mark set finds the summaries that lead to it set, and
    /// one that has seen a summary cleared sees the mark cleared, so no
    /// read path goes back to an older state of the mark after another has
    /// seen a newer one.
    pub(crate) fn mark(&mut self, key: u64, m: usize, on: bool) -> bool {
        let (path, w) = self.walk(key);
        match w.kind() {
            Kind::Leaf(l) => {
                // SAFETY: reachable, alive under the lock.
                let head = unsafe { &*l };
                if head.key != key {
                    return false;
                }
                let old = head.marks.load(Ordering::Relaxed);
                if (old & 1 << m != 0) != on {
                    self.change_mark(&path, path.len, m, on, || {
                        // Release: see `change_mark`.
                        head.marks.store(old ^ 1 << m, Ordering::Release);
                    });
                }
            }
            Kind::Inline { .. } => {
                // The entry's marks are its node's bits for its slot: the
                // summaries above it are those of the steps before.
                let (n, i) = path.steps[path.len - 1];
                // SAFETY: on the path, so alive.
                let bitmap = unsafe { &(*n).marks[m] };
                let old = bitmap.load(Ordering::Relaxed);
                if (old & 1 << i != 0) != on {
                    self.change_mark(&path, path.len - 1, m, on, || {
                        // Release: see `change_mark`.
                        bitmap.store(old ^ 1 << i, Ordering::Release);
                    });
                }
            }
            Kind::Empty | Kind::Node(_) => return false,
        }
        true
    }

    /// Flips mark `m` of an entry below the first `above` steps of `path`
    /// to `on` by `store` (a `Release` store of the entry's mark), with the
    /// summaries in the order [`mark`](Self::mark) gives: set, the
    /// summaries before the mark (a reader that sees the mark, `Acquire`,
    /// sees the way to it); clear, after (a reader that sees a summary
    /// cleared sees the mark so).
    fn change_mark(&self, path: &Path, above: usize, m: usize, on: bool, store: impl FnOnce()) {
        if on {
            self.set_summaries(path, above, m);
        }
        store();
        if !on {
            self.fix_marks(path, above);
        }
    }

    /// Sets mark `m`'s summary bits on the first `depth` steps of `path`,
    /// bottom up, for an entry below them about to be marked: up to the
    /// first already set (a set bit's node has a set bit in its parent).
    fn set_summaries(&self, path: &Path, depth: usize, m: usize) {
        for &(n, i) in path.steps[..depth].iter().rev() {
            // SAFETY: on the path, so alive.
            let bitmap = unsafe { &(*n).marks[m] };
            let old = bitmap.load(Ordering::Relaxed);
            if old & 1 << i != 0 {
                break;
            }
            // Release: before the entry's mark, as in `mark`.
            bitmap.store(old | 1 << i, Ordering::Release);
        }
    }

    /// Recomputes the mark summaries of the first `depth` steps of `path`,
    /// bottom up, stopping at the first that does not change.
    fn fix_marks(&self, path: &Path, depth: usize) {
        for &(n, i) in path.steps[..depth].iter().rev() {
            // SAFETY: on the path, so alive.
            let n = unsafe { &*n };
            let child = Word::load(&n.slots[i], Ordering::Relaxed);
            // An inline entry's bits are its marks, kept by `mark` itself.
            debug_assert!(!matches!(child.kind(), Kind::Inline { .. }));
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
            each_entry::<V>(
                Word::load(&self.tree.root, Ordering::Relaxed),
                &mut |k, v| {
                    if !keep(k, v) {
                        doomed.push(k);
                    }
                },
            )
        };
        for key in doomed {
            if let Some((place, garbage)) = self.remove(key) {
                batch.places.push(place);
                batch.nodes.extend(garbage.nodes.into_iter().flatten());
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

/// Calls `f` on every entry below `w`, in key order.
///
/// # Safety
/// The subtree is alive and unchanging during the call.
unsafe fn each_entry<V>(w: Word, f: &mut impl FnMut(u64, &V)) {
    match w.kind() {
        // Inline entries are visited by their node (below).
        Kind::Empty | Kind::Inline { .. } => {}
        Kind::Leaf(l) => {
            // SAFETY: by the contract; every leaf of the tree is a `Leaf<V>`.
            let l = unsafe { &*l.cast::<Leaf<V>>() };
            f(l.head.key, &l.value);
        }
        Kind::Node(n) => {
            // SAFETY: by the contract.
            for (i, slot) in unsafe { &(*n).slots }.iter().enumerate() {
                let child = Word::load(slot, Ordering::Relaxed);
                // SAFETY: by the contract, the node's entries are alive and
                // unchanging for the call.
                if let Some((key, v)) = unsafe { Bottom::<V>::entry(n, i, child) } {
                    f(key, v);
                } else {
                    // SAFETY: by the contract.
                    unsafe { each_entry(child, f) };
                }
            }
        }
    }
}
