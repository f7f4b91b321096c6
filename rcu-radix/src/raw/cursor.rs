//! The ordered-search cursor behind `first`, `next_after`, `range` and the
//! marked searches.
//!
//! A stack of `(node, slots still to visit)` pairs, one per level, walked in
//! key order. Entering a node reads its bitmap of present (or marked)
//! children once; each step takes the next slot of the top node with
//! `trailing_zeros`, re-reads the slot, and descends or yields. Nothing is
//! ever written. (A slot filled after the cursor entered its node may be
//! missed, which a scan may do for entries inserted during it; an entry
//! present for the whole scan had its bit set before.)
//!
//! Leaves are separate allocations, one cache miss each, and a walk from
//! one to the next cannot overlap them as a walk of a sorted array does. So
//! the cursor asks the cache for the leaf (or, in a bottom node, the cells)
//! [`AHEAD`] present slots ahead of the one it yields (and for the first ones
//! when it enters a node): a prefetch only, which never faults and never
//! dereferences anything.
//!
//! Under concurrent changes the cursor yields strictly ascending keys: it
//! keeps the lowest key it may still yield (`low`), skips leaves and subtrees
//! below it, and raises it past each key it yields. A key present for the
//! whole scan is found: every node the cursor stands on (live or retired)
//! still leads, through its slot for that key's digit, to the key's leaf
//! (see the protocol in the parent module).

use super::bottom::{Bottom, Summary};
use super::node::{Kind, Leaf, MAX_DEPTH, Node, Word, index};
use super::{SlotEntry, slot_entry};
use std::marker::PhantomData;
use std::mem::offset_of;
use std::sync::atomic::{AtomicPtr, Ordering};

/// How many present slots ahead of the one yielded the cursor prefetches
/// (about the misses a core keeps in flight).
const AHEAD: usize = 8;

/// How many bottom nodes the cursor asks for when it enters their parent.
const NEXT_BOTTOMS: usize = 3;

/// Asks the cache for what slot `i` of `node` leads to: the leaf its word
/// points to, or the first lines a scan of slots `first..=last` (from
/// `low` on) reads in the node it points to: its header, and a bottom
/// node's summary and the cells of those slots, or in another node the
/// line of the slot the scan starts from (`low`'s digit in the child whose
/// slot covers `low`, else slot 0), which it reads right after the header.
/// Reads nothing but the slot.
#[inline(always)]
fn prefetch_slot<V>(node: &Node, i: usize, first: usize, last: usize, low: u64) {
    // Relaxed: only an address to prefetch; nothing is read through it.
    let w = Word::load(&node.slots[i], Ordering::Relaxed);
    match w.kind() {
        Kind::Leaf(l) => super::prefetch(l),
        Kind::Node(n) => {
            super::prefetch(n);
            match Bottom::<V>::of(n, w.shift()) {
                Some(b) => Bottom::prefetch_scan(b, first, last),
                None => {
                    let entry = if node.covers(low) && index(low, node.shift) == i {
                        index(low, w.shift())
                    } else {
                        0
                    };
                    // Slots 0 and 1 share the header's line, asked for above.
                    if entry >= 2 {
                        // Address arithmetic only (no place is formed, so
                        // nothing is assumed of `n`'s liveness); a guess
                        // for a path-compressed child, whose scan may start
                        // elsewhere.
                        let slot = n.cast::<u8>().wrapping_add(
                            offset_of!(Node, slots) + entry * size_of::<AtomicPtr<()>>(),
                        );
                        super::prefetch(slot);
                    }
                }
            }
        }
        Kind::Empty | Kind::Inline { .. } => {}
    }
}

/// The first and last slots a scan of `low..=high` reads in the child at
/// slot `i` of `node`, if that is a bottom node right below (shift 6: no
/// level skipped, so the child's keys are the slot's); elsewhere all of
/// them.
#[inline(always)]
fn child_span(node: &Node, i: usize, low: u64, high: u64) -> (usize, usize) {
    if node.shift != 6 {
        return (0, 63);
    }
    let base = node.prefix | (i as u64) << 6;
    let first = low.saturating_sub(base).min(63);
    let last = high.saturating_sub(base).min(63);
    (first as usize, last as usize)
}

/// The slots of `node` whose keys are not past `high`, as a mask.
#[inline(always)]
fn up_to(node: &Node, high: u64) -> u64 {
    if node.high() <= high {
        u64::MAX
    } else if node.prefix > high {
        0
    } else {
        u64::MAX >> (63 - index(high, node.shift))
    }
}

/// Prefetches what the first `AHEAD` slots of `bits` in `node` lead to (the
/// first `NEXT_BOTTOMS` above bottom nodes), for a scan of `low..=high`.
#[inline]
fn prefetch_first<V>(node: &Node, mut bits: u64, low: u64, high: u64) {
    let span = |i: usize| child_span(node, i, low, high);
    // Above bottom nodes each child costs up to a dozen prefetches (its
    // header, summary and cells): ask for the next few only (a scan of 100
    // keys spans at most three), so that a search for one key does not fetch
    // eight nodes; a longer scan asks for more as it goes (`next`).
    let children = if node.shift == 6 { NEXT_BOTTOMS } else { AHEAD };
    for _ in 0..children {
        if bits == 0 {
            return;
        }
        let i = bits.trailing_zeros() as usize;
        let (first, last) = span(i);
        prefetch_slot::<V>(node, i, first, last, low);
        bits &= bits - 1;
    }
}

pub(crate) struct Cursor<'g, V> {
    stack: [(*const Node, u64); MAX_DEPTH],
    depth: usize,
    /// The lowest key the cursor may still yield.
    low: u64,
    /// The highest key it may yield.
    high: u64,
    mark: Option<usize>,
    /// When the top of the stack is a bottom node (only the top can be: a
    /// bottom node has no child nodes), its summary, read on entry: the
    /// inline slots are read from their cells without their words.
    /// `inline` is 0 otherwise.
    summary: Summary,
    /// The root slot, until the first step reads it.
    root: Option<&'g AtomicPtr<()>>,
    _values: PhantomData<&'g Leaf<V>>,
}

// SAFETY: the cursor is a set of shared references that live for `'g`,
// stored as raw pointers: to nodes (their fields are atomics or never
// change after publication, so `Node` is `Sync`), to bottom nodes and
// leaves, whose values it hands out as `&'g V`, and to the root slot (an
// atomic). Moving it to another thread, or sharing it (its methods take
// `&mut self`), gives that thread no more than `&'g V` and atomic loads, which
// is sound when `V: Sync`. The guard that keeps them alive is borrowed for
// `'g` by whoever made the cursor; the borrow checker ties every use to it,
// on whichever thread.
unsafe impl<V: Sync> Send for Cursor<'_, V> {}
// SAFETY: as for `Send`.
unsafe impl<V: Sync> Sync for Cursor<'_, V> {}

/// A step's result: an entry to yield, or nothing (keep walking).
type Step<'g, V> = Option<(u64, &'g V)>;

impl<'g, V> Cursor<'g, V> {
    /// # Safety
    /// The caller is inside a read-side critical section of the tree's
    /// domain that lasts as long as the cursor and what it yields are used
    /// (`'g`), and `root` is the tree's root slot.
    pub(crate) unsafe fn new(
        root: &'g AtomicPtr<()>,
        low: u64,
        high: u64,
        mark: Option<usize>,
    ) -> Self {
        Cursor {
            stack: [(std::ptr::null(), 0); MAX_DEPTH],
            depth: 0,
            low,
            high,
            mark,
            summary: Summary::default(),
            root: (low <= high).then_some(root),
            _values: PhantomData,
        }
    }

    /// Stops the cursor for good (it is fused).
    fn finish(&mut self) {
        self.depth = 0;
        self.root = None;
        self.high = 0;
        self.low = 1;
    }

    /// Yields `key` if it lies ahead and within the range, raising `low`
    /// past it; finishes past the range.
    #[inline(always)]
    fn take(&mut self, key: u64) -> bool {
        if key < self.low {
            return false;
        }
        if key > self.high {
            self.finish();
            return false;
        }
        match key.checked_add(1) {
            Some(next) => self.low = next,
            None => self.finish(),
        }
        true
    }

    /// Handles the word read from a slot: yields a leaf, pushes a node, or
    /// skips. (Inline words are handled by `next`, which knows their slot.)
    #[inline(always)]
    fn visit(&mut self, w: Word) -> Step<'g, V> {
        match w.kind() {
            Kind::Empty | Kind::Inline { .. } => None,
            Kind::Leaf(l) => {
                // SAFETY: read in the critical section that lasts 'g (the
                // contract of `new`); the writer retires only unlinked leaves,
                // after a grace period. Every leaf of the tree is a `Leaf<V>`.
                let leaf = unsafe { &*l.cast::<Leaf<V>>() };
                if let Some(m) = self.mark {
                    // Acquire: pairs with the writer's Release store of the
                    // leaf's marks.
                    if leaf.head.marks.load(Ordering::Acquire) & (1 << m) == 0 {
                        return None;
                    }
                }
                let key = leaf.head.key;
                self.take(key).then_some((key, &leaf.value))
            }
            Kind::Node(n) => {
                // SAFETY: as for the leaf.
                let node = unsafe { &*n };
                if node.high() < self.low {
                    return None;
                }
                if node.prefix > self.high {
                    self.finish();
                    return None;
                }
                let start = if node.prefix >= self.low {
                    0
                } else {
                    index(self.low, node.shift) as u8
                };
                // Acquire: pairs with the writer's Release stores of bitmaps
                // (after the slots they describe); each slot is re-read.
                let bits = node.bitmap(self.mark, Ordering::Acquire) & (u64::MAX << start);
                // The slots up to the scan's end.
                let end = if node.high() <= self.high {
                    63
                } else {
                    index(self.high, node.shift)
                };
                let ahead = bits & (u64::MAX >> (63 - end));
                self.summary = match Bottom::<V>::of(n, node.shift) {
                    Some(b) => {
                        // Its cells in range were asked for by the parent
                        // (`prefetch_first` on entry, then `far` a few slots
                        // ahead), or it is the root, which stays in cache:
                        // asking again here cost 76 instructions a 100-key
                        // scan (82 churned) and saved no time.
                        // After the bitmap (see `Summary`).
                        // SAFETY: read in the critical section, as the node.
                        let summary = unsafe { Summary::of(b) };
                        // The values in range that sit in cell 1 (their key
                        // was written again within a grace period): their
                        // lines are not cell 0's.
                        Bottom::prefetch_cells1(b, summary.inline & summary.cell1 & ahead);
                        summary
                    }
                    None => {
                        prefetch_first::<V>(node, ahead, self.low, self.high);
                        Summary::default()
                    }
                };
                // A path has at most MAX_DEPTH nodes (each child's shift is
                // below its parent's), and retired nodes keep that shape.
                self.stack[self.depth] = (n, bits);
                self.depth += 1;
                None
            }
        }
    }
}

impl<'g, V> Iterator for Cursor<'g, V> {
    type Item = (u64, &'g V);

    #[inline]
    fn next(&mut self) -> Option<(u64, &'g V)> {
        if let Some(root) = self.root.take() {
            // Acquire: pairs with the writer's Release publication of nodes
            // and leaves.
            if let Some(l) = self.visit(Word::load(root, Ordering::Acquire)) {
                self.finish();
                return Some(l);
            }
        }
        while self.depth > 0 {
            let top = &mut self.stack[self.depth - 1];
            let (n, bits) = *top;
            if bits == 0 {
                self.depth -= 1;
                // The new top (if any) is not a bottom node.
                self.summary = Summary::default();
                continue;
            }
            let i = bits.trailing_zeros() as usize;
            top.1 = bits & (bits - 1);
            // SAFETY: pushed by `visit` from a word read in the critical
            // section, which lasts 'g.
            let node: &'g Node = unsafe { &*n };
            // An inline entry when the cursor entered this bottom node: read
            // its cell, not its word (see `Summary`, and "Which location a
            // reader believes" in `bottom`); else the slot's word, an inline
            // entry's (its value is in the node, next to its neighbours',
            // which the hardware's stream prefetch covers) or the child to
            // visit.
            // SAFETY: `n`, pushed by `visit` from a word read in the critical
            // section that lasts 'g, with `self.summary` its own if it is a
            // bottom node (`visit` and the pop above keep them together).
            let w = match unsafe { slot_entry::<V>(n, self.summary, i, self.mark) } {
                SlotEntry::Skip => continue,
                SlotEntry::Cell(cell) => {
                    let key = self.summary.base | i as u64;
                    if self.take(key) {
                        // SAFETY: the summary or the slot's word, read in the
                        // critical section that lasts 'g, names a cell that
                        // holds a value for all of it (see `Summary`, and
                        // `bottom`).
                        let v = unsafe { Bottom::<V>::value(n.cast(), i, cell) };
                        return Some((key, v));
                    }
                    continue;
                }
                SlotEntry::Word(w) => w,
            };
            // The first present slot `AHEAD` slots on (in a dense node, the
            // leaf `AHEAD` steps ahead; the ones before it were asked for at
            // earlier steps, or when the cursor entered the node), or
            // `NEXT_BOTTOMS` on above bottom nodes (see `prefetch_first`).
            // Above bottom nodes, only slots the scan reaches, and in them
            // only the cells it reads: a bottom node costs up to a dozen
            // prefetches, which past the scan's end take line-fill buffers
            // from the misses it waits for (100-key scans ran 15-20% faster
            // with this and the first-slot prefetch above: the README's
            // radix notes).
            let ahead = if node.shift == 6 { NEXT_BOTTOMS } else { AHEAD };
            let far = match u32::try_from(i + ahead) {
                Ok(shift) if shift < 64 => {
                    bits & (u64::MAX << shift)
                        & if node.shift == 6 {
                            up_to(node, self.high)
                        } else {
                            u64::MAX
                        }
                }
                _ => 0,
            };
            if far != 0 {
                let j = far.trailing_zeros() as usize;
                let (first, last) = child_span(node, j, self.low, self.high);
                prefetch_slot::<V>(node, j, first, last, self.low);
            }
            if let Some(hit) = self.visit(w) {
                return Some(hit);
            }
        }
        None
    }

    /// The same sequence as repeated `next`, with runs of a bottom node's
    /// inline entries read in a tight loop (the cursor's state stays in
    /// registers): what `sum`, `for_each` and the other internal iterations
    /// use.
    #[inline]
    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        let mut acc = init;
        loop {
            if self.depth > 0 && self.mark.is_none() {
                let top = self.depth - 1;
                let (n, bits) = self.stack[top];
                let Summary {
                    inline,
                    cell1,
                    base,
                } = self.summary;
                // The slots up to the end of the range (for a bottom node
                // the cursor entered, whose keys are `base | slot`).
                let limit = match self.high.checked_sub(base) {
                    Some(d) if d < 63 => u64::MAX >> (63 - d),
                    Some(_) => u64::MAX,
                    None => 0,
                };
                let run = bits & limit;
                // The run of slots, at the front of `bits` and in range, that
                // held inline entries when the cursor entered the node (none
                // unless the top is a bottom node): as in `next`. Every slot
                // left in `bits` lies past `low` (the node's entry masked the
                // slots before it, and each yield raised it past its own
                // slot).
                let stop = run & !inline;
                let taken = if stop == 0 {
                    run
                } else {
                    run & ((stop & stop.wrapping_neg()) - 1)
                };
                let mut last = None;
                if taken != 0 {
                    let end = base | u64::from(63 - taken.leading_zeros());
                    debug_assert!(self.low <= base | u64::from(taken.trailing_zeros()));
                    debug_assert!(end <= self.high);
                    last = Some(end);
                    // A run of adjacent slots at a time (one, unless keys
                    // are missing).
                    let mut rest = taken;
                    while rest != 0 {
                        let i = rest.trailing_zeros();
                        let side = (!(rest >> i)).trailing_zeros();
                        let slots = u64::MAX >> (64 - side) << i;
                        rest &= !slots;
                        let first = i as usize;
                        if cell1 & slots == 0 {
                            // Every value in cell 0 (all of a node filled
                            // once): a slice.
                            let end = (i + side - 1) as usize;
                            // SAFETY: as in `next`: the summary names cell 0
                            // of each of these slots as holding a value for
                            // the whole critical section.
                            let values = unsafe { Bottom::<V>::values0(n.cast(), first, end) };
                            for (j, v) in values.iter().enumerate() {
                                acc = f(acc, (base | (first + j) as u64, v));
                            }
                        } else {
                            // Values in both cells (keys written again within
                            // a grace period): each from the row of the cell
                            // its `cell1` bit names, a select the compiler
                            // makes arithmetic, not a branch, which would
                            // miss about as often as the cells alternate.
                            // (Slot by slot, with a `trailing_zeros` per slot,
                            // a 100-key scan of a churned tree cost 3132
                            // instructions; by runs 2910.)
                            let row0 = Bottom::<V>::cell_ptr(n.cast(), first, 0).cast_const();
                            let row1 = Bottom::<V>::cell_ptr(n.cast(), first, 1).cast_const();
                            let mut m = cell1 >> i;
                            for j in 0..side as usize {
                                let row = if m & 1 != 0 { row1 } else { row0 };
                                m >>= 1;
                                // SAFETY: as for the slice, for the cell the
                                // summary names (slot `first + j` of that
                                // cell's row).
                                let v = unsafe { &*row.add(j) };
                                acc = f(acc, (base | (first + j) as u64, v));
                            }
                        }
                    }
                }
                // The slots past the inline run, and past the range, stay for
                // `next`, which finishes on the latter.
                self.stack[top].1 = (run & !taken) | (bits & !limit);
                if let Some(key) = last {
                    match key.checked_add(1) {
                        Some(next) => self.low = next,
                        None => {
                            self.finish();
                            return acc;
                        }
                    }
                }
            }
            match self.next() {
                Some(item) => acc = f(acc, item),
                None => return acc,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_to_masks_the_slots_at_or_below_high() {
        // A node at shift 6 covering keys 0x1000..=0x1fff (slot i: keys
        // 0x1000 + 64 * i ..).
        let n = Node::empty(6, 0x1000);
        assert_eq!(up_to(&n, u64::MAX), u64::MAX);
        assert_eq!(up_to(&n, 0x1fff), u64::MAX);
        assert_eq!(up_to(&n, 0x0fff), 0, "the whole node lies past high");
        assert_eq!(up_to(&n, 0x1000), 1, "only slot 0's first key");
        assert_eq!(up_to(&n, 0x1000 + 64 * 5 + 3), 0b11_1111);
        // The root's shift: the top digit has 4 bits, and the node covers
        // every key.
        let root = Node::empty(60, 0);
        assert_eq!(up_to(&root, u64::MAX), u64::MAX);
        assert_eq!(up_to(&root, (3 << 60) | 5), 0b1111);
        assert_eq!(up_to(&root, 0), 1);
    }

    #[test]
    fn child_span_is_the_scanned_part_of_a_bottom_child() {
        let n = Node::empty(6, 0x1000);
        // Slot 2's bottom node holds keys 0x1080..=0x10bf.
        assert_eq!(child_span(&n, 2, 0x1085, 0x1090), (5, 16));
        assert_eq!(child_span(&n, 2, 0, u64::MAX), (0, 63));
        assert_eq!(child_span(&n, 2, 0x1085, u64::MAX), (5, 63));
        // A range wholly past or before the child: one slot at its edge, a
        // single line's hint.
        assert_eq!(child_span(&n, 2, 0x2000, 0x2010), (63, 63));
        assert_eq!(child_span(&n, 2, 0, 0x10), (0, 0));
        // Above shift 6 the child is not a bottom node: all of it.
        assert_eq!(child_span(&Node::empty(12, 0), 1, 70, 80), (0, 63));
    }
}
