//! The ordered-search cursor behind `first`, `next_after`, `range` and the
//! marked searches.
//!
//! A stack of `(node, next index)` pairs, one per level, walked in key order.
//! Each step finds the next candidate slot of the top node with
//! `trailing_zeros` on its bitmap of present (or marked) children, re-reads
//! the slot, and descends or yields. Nothing is ever written.
//!
//! Under concurrent changes the cursor yields strictly ascending keys: it
//! keeps the lowest key it may still yield (`low`), skips leaves and subtrees
//! below it, and raises it past each key it yields. A key present for the
//! whole scan is found: every node the cursor stands on (live or retired)
//! still leads, through its slot for that key's digit, to the key's leaf
//! (see the protocol in the parent module).

use super::node::{Kind, Leaf, MAX_DEPTH, Node, Word, index};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

pub(crate) struct Cursor<'g, V> {
    stack: [(*const Node, u8); MAX_DEPTH],
    depth: usize,
    /// The lowest key the cursor may still yield.
    low: u64,
    /// The highest key it may yield.
    high: u64,
    mark: Option<usize>,
    /// The root slot, until the first step reads it.
    root: Option<&'g AtomicPtr<()>>,
    _values: PhantomData<&'g Leaf<V>>,
}

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

    /// Handles the word read from a slot: yields a leaf, pushes a node, or
    /// skips.
    fn visit(&mut self, w: Word) -> Option<&'g Leaf<V>> {
        match w.kind() {
            Kind::Empty => None,
            Kind::Leaf(l) => {
                // SAFETY: read in the critical section that lasts 'g (the
                // contract of `new`); the writer retires only unlinked leaves,
                // after a grace period. Every leaf of the tree is a `Leaf<V>`.
                let leaf = unsafe { &*l.cast::<Leaf<V>>() };
                let key = leaf.head.key;
                if key < self.low {
                    return None;
                }
                if key > self.high {
                    self.finish();
                    return None;
                }
                if let Some(m) = self.mark {
                    // Acquire: pairs with the writer's Release store of the
                    // leaf's marks.
                    if leaf.head.marks.load(Ordering::Acquire) & (1 << m) == 0 {
                        return None;
                    }
                }
                match key.checked_add(1) {
                    Some(next) => self.low = next,
                    None => self.finish(),
                }
                Some(leaf)
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
                // A path has at most MAX_DEPTH nodes (each child's shift is
                // below its parent's), and retired nodes keep that shape.
                self.stack[self.depth] = (n, start);
                self.depth += 1;
                None
            }
        }
    }
}

impl<'g, V> Iterator for Cursor<'g, V> {
    type Item = &'g Leaf<V>;

    fn next(&mut self) -> Option<&'g Leaf<V>> {
        if let Some(root) = self.root.take() {
            // Acquire: pairs with the writer's Release publication of nodes
            // and leaves.
            if let Some(l) = self.visit(Word::load(root, Ordering::Acquire)) {
                self.finish();
                return Some(l);
            }
        }
        while self.depth > 0 {
            let (n, pos) = &mut self.stack[self.depth - 1];
            // SAFETY: pushed by `visit` from a word read in the critical
            // section, which lasts 'g.
            let node = unsafe { &**n };
            // Acquire: pairs with the writer's Release stores of bitmaps
            // (after the slots they describe); the slot is re-read below.
            let bits = match *pos {
                64 => 0,
                p => node.bitmap(self.mark, Ordering::Acquire) & (u64::MAX << p),
            };
            if bits == 0 {
                self.depth -= 1;
                continue;
            }
            let i = bits.trailing_zeros() as usize;
            *pos = i as u8 + 1;
            // Acquire: as above.
            let w = Word::load(&node.slots[i], Ordering::Acquire);
            if let Some(l) = self.visit(w) {
                return Some(l);
            }
        }
        None
    }
}
