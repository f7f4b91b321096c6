//! The ordered-search cursor behind `first`, `next_after`, `range` and the
//! marked searches.
//!
//! A stack of `(node, next index)` pairs, one per level, walked in key order.
//! Each step finds the next candidate slot of the top node with
//! `trailing_zeros` on its bitmap of present (or marked) children, re-reads
//! the slot, and descends or yields. Nothing is ever written.
//!
//! Leaves are separate allocations, one cache miss each, and a walk from
//! one to the next cannot overlap them as a walk of a sorted array does. So
//! the cursor asks the cache for the leaf [`AHEAD`] present slots ahead of
//! the one it yields (and for the first ones when it enters a node): a
//! prefetch only, which never faults and never dereferences anything.
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

/// How many present slots ahead of the one yielded the cursor prefetches
/// (about the misses a core keeps in flight).
const AHEAD: usize = 8;

/// Asks the cache for the leaf `w` points to, if it is one. Reads nothing.
#[inline(always)]
fn prefetch_leaf(w: Word) {
    if let Kind::Leaf(l) = w.kind() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        // SAFETY: `_mm_prefetch` (SSE, which every x86-64 CPU has) is a
        // hint: it never faults and has no effect the program can see,
        // whatever the address (here a leaf that may even have been freed
        // since the slot was read).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(l.cast())
        };
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        let _ = l;
    }
}

/// Prefetches the leaves of the first `AHEAD` slots of `bits` in `node`.
#[inline]
fn prefetch_first(node: &Node, mut bits: u64) {
    for _ in 0..AHEAD {
        if bits == 0 {
            return;
        }
        // Relaxed: only an address to prefetch; nothing is read through it.
        prefetch_leaf(Word::load(
            &node.slots[bits.trailing_zeros() as usize],
            Ordering::Relaxed,
        ));
        bits &= bits - 1;
    }
}

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
    #[inline(always)]
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
                // Relaxed: only which leaves to prefetch.
                prefetch_first(
                    node,
                    node.bitmap(self.mark, Ordering::Relaxed) & (u64::MAX << start),
                );
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

    #[inline]
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
            // The first present slot `AHEAD` slots on (in a dense node, the
            // leaf `AHEAD` steps ahead; the ones before it were asked for at
            // earlier steps, or when the cursor entered the node).
            let far = match u32::try_from(i + AHEAD) {
                Ok(shift) if shift < 64 => bits & (u64::MAX << shift),
                _ => 0,
            };
            if far != 0 {
                // Relaxed: only an address to prefetch.
                prefetch_leaf(Word::load(
                    &node.slots[far.trailing_zeros() as usize],
                    Ordering::Relaxed,
                ));
            }
            // Acquire: as above.
            let w = Word::load(&node.slots[i], Ordering::Acquire);
            if let Some(l) = self.visit(w) {
                return Some(l);
            }
        }
        None
    }
}
