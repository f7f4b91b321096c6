//! The tree's two kinds of heap object, and the tagged word that points at
//! either.
//!
//! * [`Node`]: 64 slots indexed by six bits of the key at the node's `shift`,
//!   plus the bitmaps of present children and of marked subtrees. A node's
//!   `shift` and `prefix` never change after it is published; its slots and
//!   bitmaps change in place, by atomic stores of the single writer.
//! * [`Leaf`]: one entry, `key`, `marks`, `value`. A leaf is never changed
//!   except for its marks: replacing a value publishes a new leaf (or an
//!   inline entry).
//!
//! (A bottom node, [`super::bottom::Bottom`], is a `Node` with value cells
//! after it.)
//!
//! A slot holds a [`Word`]: null (empty), a node pointer, a leaf pointer
//! with bit 0 set, or (in a bottom node only, see [`super::bottom`]) an
//! *inline* word: no pointer, but the entry's key without its last six bits,
//! the cell that holds its value, and bit 5 set. Leaves are 8-aligned and
//! nodes 64-aligned, so bit 0, and bit 5 of a node word, are free.

use super::bottom::{Bottom, inline_values};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

/// Slots per node: six bits of key per level.
pub(crate) const FANOUT: usize = 64;
/// Bits of key a node's index takes.
pub(crate) const BITS: u32 = 6;
/// Mark bits per entry (as the Linux XArray's three).
pub(crate) const MARKS: usize = 3;
/// The most nodes on a path from the root to a leaf: shifts 60, 54, ..., 0.
pub(crate) const MAX_DEPTH: usize = 11;

/// Bit 0 of a word: the word points to a leaf.
const LEAF_TAG: usize = 1;
/// Bit 5 of a word without bit 0: an inline entry of a bottom node.
const INLINE_TAG: usize = 1 << 5;
/// Bit 1 of an inline word: which of the slot's two cells holds the value.
const CELL_BIT: usize = 1 << 1;
/// Bits 1..=4 of a node word: the node's shift / 6, so a lookup indexes the
/// node without loading its header (one cache line per level, not two).
const SHIFT_TAG: usize = 0b1_1110;
/// The bits of a node word that are not the pointer (nodes are 64-aligned).
const NODE_TAGS: usize = 63;

/// The index of `key` in a node at `shift`.
#[inline(always)]
pub(crate) fn index(key: u64, shift: u8) -> usize {
    ((key >> shift) as usize) & (FANOUT - 1)
}

/// The key bits below a node at `shift` and its index: the span of keys one
/// node covers, minus one.
#[inline]
pub(crate) fn span_mask(shift: u8) -> u64 {
    let bits = u32::from(shift) + BITS;
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The shift of the node that separates two different keys: the six-bit
/// digit holding their highest differing bit.
#[inline]
pub(crate) fn split_shift(a: u64, b: u64) -> u8 {
    debug_assert_ne!(a, b);
    let high = 63 - (a ^ b).leading_zeros();
    (high / BITS * BITS) as u8
}

/// The immutable head of a leaf, at offset 0 of every `Leaf<V>`, so the
/// tree's navigation need not be generic over `V`.
#[repr(C)]
pub(crate) struct LeafHead {
    pub(crate) key: u64,
    /// Bit `m` set: the entry carries mark `m`.
    pub(crate) marks: AtomicU8,
}

/// One entry.
#[repr(C)]
pub(crate) struct Leaf<V> {
    pub(crate) head: LeafHead,
    pub(crate) value: V,
}

impl<V> Leaf<V> {
    pub(crate) fn boxed(key: u64, marks: u8, value: V) -> *mut Leaf<V> {
        Box::into_raw(Box::new(Leaf {
            head: LeafHead {
                key,
                marks: AtomicU8::new(marks),
            },
            value,
        }))
    }
}

/// An inner node: 64 slots at one `shift`, all of whose keys share `prefix`
/// above the node's span.
#[repr(C, align(64))]
pub(crate) struct Node {
    /// The lowest bit of the key this node indexes with (a multiple of 6).
    pub(crate) shift: u8,
    /// The key bits above this node's span, shared by every key below it;
    /// the bits of the span are zero. `prefix..=prefix | span_mask(shift)`
    /// is the range of keys the node covers.
    pub(crate) prefix: u64,
    /// Bit `i` set: slot `i` is not empty.
    pub(crate) present: AtomicU64,
    /// `marks[m]` bit `i` set: slot `i` holds an entry, or a subtree with an
    /// entry, that carries mark `m` (the XArray's summary bitmaps).
    pub(crate) marks: [AtomicU64; MARKS],
    pub(crate) slots: [AtomicPtr<()>; FANOUT],
}

impl Node {
    /// An empty node at `shift` covering the keys of `prefix`.
    pub(crate) fn empty(shift: u8, prefix: u64) -> Node {
        debug_assert_eq!(prefix & span_mask(shift), 0);
        Node {
            shift,
            prefix,
            present: AtomicU64::new(0),
            marks: [const { AtomicU64::new(0) }; MARKS],
            slots: [const { AtomicPtr::new(ptr::null_mut()) }; FANOUT],
        }
    }

    /// A new node holding two children: `a`, the old occupant of a slot (a
    /// leaf, or a node, whose keys include `key_a`), and a new entry of
    /// `key_b` holding `value`; the keys differ at the node's digit. At
    /// shift 0, where values go inline, the node is a bottom node and the
    /// value goes into a cell of it; elsewhere into a leaf of its own.
    /// Nothing is published: the caller stores the word.
    pub(crate) fn pair<V>(key_a: u64, a: Word, key_b: u64, value: V) -> Word {
        let shift = split_shift(key_a, key_b);
        let (ia, ib) = (index(key_a, shift), index(key_b, shift));
        debug_assert_ne!(ia, ib);
        let prefix = key_a & !span_mask(shift);
        let (node, b) = if shift == 0 && inline_values::<V>() {
            let bottom = Bottom::<V>::alloc(prefix);
            // SAFETY: just allocated, not shared yet; the writer fills cell
            // 0 of slot `ib`, which is free in a new node.
            unsafe {
                (*bottom).fill(ib, 0, value);
                (*bottom).set_inline(ib, 0);
            }
            (bottom.cast::<Node>(), Word::inline(prefix, 0))
        } else {
            let node = Box::into_raw(Box::new(Node::empty(shift, prefix)));
            (node, Word::leaf(Leaf::boxed(key_b, 0, value)))
        };
        // SAFETY: just allocated, not shared yet.
        let n = unsafe { &*node };
        n.present.store(1 << ia | 1 << ib, Ordering::Relaxed);
        for (m, bitmap) in n.marks.iter().enumerate() {
            // The new entry carries no mark; `a` keeps its summary.
            bitmap.store(
                u64::from(a.summary(m, Ordering::Relaxed)) << ia,
                Ordering::Relaxed,
            );
        }
        // Relaxed: the node is published later by a Release store of its
        // word, which orders these.
        n.slots[ia].store(a.0, Ordering::Relaxed);
        n.slots[ib].store(b.0, Ordering::Relaxed);
        Word::node(node, shift)
    }

    /// The highest key this node covers.
    #[inline]
    pub(crate) fn high(&self) -> u64 {
        self.prefix | span_mask(self.shift)
    }

    /// Whether `key` lies in this node's range.
    #[inline]
    pub(crate) fn covers(&self, key: u64) -> bool {
        (key & !span_mask(self.shift)) == self.prefix
    }

    /// The bitmap of slots an ordered search may visit: the present slots,
    /// or the slots whose subtrees carry mark `m`.
    #[inline]
    pub(crate) fn bitmap(&self, mark: Option<usize>, order: Ordering) -> u64 {
        match mark {
            None => self.present.load(order),
            Some(m) => self.marks[m].load(order),
        }
    }

    /// Slot `i`'s bit of each mark bitmap, as a leaf's `marks` byte (bit
    /// `m` for mark `m`): an inline entry's marks. `order` is the ordering
    /// of the loads.
    pub(crate) fn slot_marks(&self, i: usize, order: Ordering) -> u8 {
        self.marks.iter().enumerate().fold(0u8, |acc, (m, bits)| {
            acc | (((bits.load(order) >> i) & 1) as u8) << m
        })
    }
}

/// What a slot holds.
pub(crate) enum Kind {
    Empty,
    Leaf(*const LeafHead),
    Node(*const Node),
    /// An entry whose value sits in cell `cell` of the bottom node holding
    /// the slot; its key is `prefix` plus the slot's index.
    Inline {
        prefix: u64,
        cell: usize,
    },
}

/// A slot's content: null, a `*mut Node` with its shift / 6 in bits 1..=4,
/// a `*mut Leaf<V>` tagged with bit 0, or an inline word (bit 5, the cell in
/// bit 1, the key's bits above the lowest six).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Word(pub(crate) *mut ());

impl Word {
    pub(crate) const EMPTY: Word = Word(ptr::null_mut());

    pub(crate) fn leaf<V>(p: *mut Leaf<V>) -> Word {
        Word(p.cast::<()>().map_addr(|a| a | LEAF_TAG))
    }

    /// The word of an inline entry of key `prefix | i` (the low six bits of
    /// `prefix` are zero) whose value is in cell `cell` of its slot. Only
    /// made where [`super::bottom::inline_values`] holds, so
    /// a `usize` holds the prefix.
    pub(crate) fn inline(prefix: u64, cell: usize) -> Word {
        debug_assert_eq!(prefix & 63, 0);
        debug_assert!(cell < 2);
        let bits = prefix as usize | INLINE_TAG | (cell * CELL_BIT);
        Word(ptr::without_provenance_mut(bits))
    }

    pub(crate) fn node(p: *mut Node, shift: u8) -> Word {
        let digit = usize::from(shift) / BITS as usize;
        Word(p.cast::<()>().map_addr(|a| a | digit << 1))
    }

    /// The shift of the node this word points to (meaningless for other
    /// words), read from the word itself.
    #[inline(always)]
    pub(crate) fn shift(self) -> u8 {
        (((self.0.addr() & SHIFT_TAG) >> 1) * BITS as usize) as u8
    }

    #[inline(always)]
    pub(crate) fn load(slot: &AtomicPtr<()>, order: Ordering) -> Word {
        Word(slot.load(order))
    }

    #[inline(always)]
    pub(crate) fn kind(self) -> Kind {
        let a = self.0.addr();
        if a & LEAF_TAG != 0 {
            Kind::Leaf(self.0.map_addr(|a| a & !LEAF_TAG).cast_const().cast())
        } else if a & INLINE_TAG != 0 {
            Kind::Inline {
                prefix: (a & !NODE_TAGS) as u64,
                cell: (a & CELL_BIT) / CELL_BIT,
            }
        } else if self.0.is_null() {
            Kind::Empty
        } else {
            Kind::Node(self.0.map_addr(|a| a & !NODE_TAGS).cast_const().cast())
        }
    }

    /// Whether the entry or subtree this word points to carries mark `m`.
    /// `order` is the ordering of the loads of marks and bitmaps.
    #[inline]
    pub(crate) fn summary(self, m: usize, order: Ordering) -> bool {
        match self.kind() {
            Kind::Empty => false,
            // SAFETY: a word is only summarised while what it points to is
            // alive: by the writer (under the tree's lock, of words in the
            // tree it owns) or by a reader inside a critical section.
            Kind::Leaf(l) => (unsafe { (*l).marks.load(order) } & (1 << m)) != 0,
            // SAFETY: as above.
            Kind::Node(n) => (unsafe { (*n).marks[m].load(order) }) != 0,
            // An inline entry's marks are its bottom node's bits for its
            // slot; the writer keeps them itself and never asks the word.
            Kind::Inline { .. } => unreachable!("the summary of an inline entry"),
        }
    }
}
