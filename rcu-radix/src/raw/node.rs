//! The tree's two kinds of heap object, and the tagged word that points at
//! either.
//!
//! * [`Node`]: 64 slots indexed by six bits of the key at the node's `shift`,
//!   plus the bitmaps of present children and of marked subtrees. A node's
//!   `shift` and `prefix` never change after it is published; its slots and
//!   bitmaps change in place, by atomic stores of the single writer.
//! * [`Leaf`]: one entry, `key`, `marks`, `value`. A leaf is never changed
//!   except for its marks: replacing a value publishes a new leaf.
//!
//! A slot holds a [`Word`]: null (empty), a node pointer, or a leaf pointer
//! with bit 0 set. Both kinds are at least 8-aligned, so bit 0 is free.

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
    /// A node holding two children, `a` (whose keys include `key_a`) and `b`
    /// (`key_b`), which must differ at the node's digit.
    pub(crate) fn pair(key_a: u64, a: Word, key_b: u64, b: Word) -> Word {
        let shift = split_shift(key_a, key_b);
        let (ia, ib) = (index(key_a, shift), index(key_b, shift));
        debug_assert_ne!(ia, ib);
        let node = Node {
            shift,
            prefix: key_a & !span_mask(shift),
            present: AtomicU64::new(1 << ia | 1 << ib),
            marks: std::array::from_fn(|m| {
                let bit = |w: Word, i: usize| u64::from(w.summary(m, Ordering::Relaxed)) << i;
                AtomicU64::new(bit(a, ia) | bit(b, ib))
            }),
            slots: [const { AtomicPtr::new(ptr::null_mut()) }; FANOUT],
        };
        node.slots[ia].store(a.0, Ordering::Relaxed);
        node.slots[ib].store(b.0, Ordering::Relaxed);
        Word::node(Box::into_raw(Box::new(node)), shift)
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
}

/// What a slot holds.
pub(crate) enum Kind {
    Empty,
    Leaf(*const LeafHead),
    Node(*const Node),
}

/// A slot's content: null, a `*mut Node` with its shift / 6 in bits 1..=4,
/// or a `*mut Leaf<V>` tagged with bit 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Word(pub(crate) *mut ());

impl Word {
    pub(crate) const EMPTY: Word = Word(ptr::null_mut());

    pub(crate) fn leaf<V>(p: *mut Leaf<V>) -> Word {
        Word(p.cast::<()>().map_addr(|a| a | LEAF_TAG))
    }

    fn node(p: *mut Node, shift: u8) -> Word {
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
        if self.0.addr() & LEAF_TAG != 0 {
            Kind::Leaf(self.0.map_addr(|a| a & !LEAF_TAG).cast_const().cast())
        } else if self.0.is_null() {
            Kind::Empty
        } else {
            Kind::Node(self.0.map_addr(|a| a & !NODE_TAGS).cast_const().cast())
        }
    }

    /// The leaf pointer, as the `Leaf<V>` it was made from.
    pub(crate) fn as_leaf<V>(self) -> Option<*mut Leaf<V>> {
        match self.kind() {
            Kind::Leaf(l) => Some(l.cast_mut().cast()),
            _ => None,
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
        }
    }
}
