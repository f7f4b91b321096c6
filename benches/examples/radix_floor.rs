//! Where a random-key lookup's time goes, and what small nodes could gain
//! it: single-thread `get` hits of the radix group's 1M random keys
//! (splitmix64's finaliser of `0..1M`), fastest of 30 interleaved samples
//! of 2^18 lookups each, of the real tree (one `read_lock` per lookup) and
//! `BTreeMap` (unlocked, and under `RwLock::read` as in the runner),
//! against:
//!
//! - `one load`: a load from a random index of a `Vec<(u64, u64)>` of the
//!   1M entries (16 MiB), the index known beforehand: the memory any
//!   structure holding these entries must read, with no search. Lookups of
//!   independent keys overlap in the out-of-order core, so it costs a
//!   fraction of a memory latency; a lookup that is a chain of dependent
//!   loads (the tree's root, inner levels, fringe node and leaf; the
//!   B-tree's levels) overlaps far less;
//! - three toy trees with no synchronisation at all (built once, then only
//!   read):
//!   - `toy, 64-slot nodes`: the real tree's read path without its guard:
//!     path-compressed 64-slot nodes (512 bytes of slots and a 64-byte
//!     header line, 576 bytes as the real tree's), the node's shift in the
//!     word that points to it, one boxed leaf (key, value) per entry;
//!   - `toy, small nodes`: the same, but a node of at most 15 children is
//!     a small one (an ART's `Node16`): its digits packed in two words, which
//!     a lookup matches eight at a time (SWAR), then 15 slots and the header
//!     line, 256 bytes;
//!   - `toy, small, inline`: small nodes that hold their entries' keys and
//!     values in (key, value) cells of their own, 384 bytes, so a lookup
//!     that ends in a small node loads no leaf. (A tree that replaces values
//!     under readers would need a second cell per entry, as the real tree's
//!     bottom nodes have; the toy has one.)
//!
//! The toys bound what such nodes could buy before the real tree's
//! writer, marks, ordered searches and reclamation learn a second node
//! kind. Each toy's bytes are printed with its time.
//!
//! ```text
//! cargo run --release -p rcu-bench --example radix_floor
//! ```

use rcu_bench::{mean_ns_at_random, scramble};
use rcu_radix::RcuRadixTree;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::RwLock;

const N: u64 = 1 << 20;
const OPS: u32 = 1 << 18;
const SAMPLES: usize = 30;

/// Bit 0 of a word: a leaf.
const LEAF: usize = 1;
/// Bit 5 of a node word: a small node (nodes are 64-aligned).
const SMALL: usize = 1 << 5;
/// Bits 1..=4 of a node word: its shift / 6.
const SHIFT: usize = 0b1_1110;
/// The most children of a small node.
const SMALL_SLOTS: usize = 15;
/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;

struct Leaf {
    key: u64,
    value: u64,
}

/// A 64-slot node: 576 bytes as the real tree's (its header, unread by a
/// lookup, is the real one's shift, prefix, present and mark bitmaps).
#[repr(C, align(64))]
struct Full {
    slots: [usize; 64],
    _header: [u64; 8],
}

/// A node of at most 15 children, their slots (`Small<usize>`: 256 bytes)
/// or cells (`Small<[u64; 2]>`: 384 bytes).
#[repr(C, align(64))]
struct Small<T> {
    /// Byte `j` of the pair: the digit of child `j`; unused bytes `0xff`,
    /// which no digit equals.
    digits: [u64; 2],
    /// Bit `j`: cell `j` holds an entry's key and value (inline toy only).
    inline: u64,
    slots: [T; SMALL_SLOTS],
    _header: [u64; 8],
}

impl<T> Small<T> {
    /// The index of the child of digit `d`, if any.
    #[inline]
    fn find(&self, d: u64) -> Option<usize> {
        for (q, word) in self.digits.iter().enumerate() {
            // Bytes of `x` that are zero, flagged (SWAR): only the lowest
            // flag is exact, which is the one taken.
            let x = word ^ (d * ONES);
            let zero = x.wrapping_sub(ONES) & !x & (ONES << 7);
            if zero != 0 {
                return Some(q * 8 + (zero.trailing_zeros() / 8) as usize);
            }
        }
        None
    }

    fn new(children: &[(usize, usize)], mut slot: impl FnMut(usize) -> (T, bool)) -> Box<Self>
    where
        T: Copy + Default,
    {
        let mut n = Box::new(Small {
            digits: [u64::MAX; 2],
            inline: 0,
            slots: [T::default(); SMALL_SLOTS],
            _header: [0; 8],
        });
        for (j, &(d, w)) in children.iter().enumerate() {
            let (q, r) = (j / 8, 8 * (j % 8));
            n.digits[q] = n.digits[q] & !(0xff << r) | (d as u64) << r;
            let (s, inline) = slot(w);
            n.slots[j] = s;
            n.inline |= u64::from(inline) << j;
        }
        n
    }
}

/// Which toy.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Full,
    Small,
    SmallInline,
}

/// A toy tree: its root word, and the bytes it asked for.
struct Toy {
    shape: Shape,
    root: usize,
    bytes: usize,
    nodes: usize,
    /// Of those, small ones.
    small: usize,
    /// Entries in cells of small nodes (inline toy).
    inline: usize,
}

impl Toy {
    /// The tree of `items` (sorted, distinct keys).
    fn build(items: &[(u64, *mut Leaf)], shape: Shape) -> Toy {
        let mut toy = Toy {
            shape,
            root: 0,
            bytes: 0,
            nodes: 0,
            small: 0,
            inline: 0,
        };
        toy.root = toy.node(items);
        toy
    }

    fn node(&mut self, items: &[(u64, *mut Leaf)]) -> usize {
        if let [(_, leaf)] = items {
            return *leaf as usize | LEAF;
        }
        let (lo, hi) = (items[0].0, items[items.len() - 1].0);
        let shift = (63 - (lo ^ hi).leading_zeros()) / 6 * 6;
        let digit = |k: u64| ((k >> shift) & 63) as usize;
        let mut children = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let d = digit(items[start].0);
            let end = start + items[start..].partition_point(|&(k, _)| digit(k) == d);
            children.push((d, self.node(&items[start..end])));
            start = end;
        }
        self.nodes += 1;
        let tag = (shift as usize / 6) << 1;
        if self.shape == Shape::Small && children.len() <= SMALL_SLOTS {
            self.bytes += size_of::<Small<usize>>();
            self.small += 1;
            let n = Small::<usize>::new(&children, |w| (w, false));
            Box::into_raw(n) as usize | SMALL | tag
        } else if self.shape == Shape::SmallInline && children.len() <= SMALL_SLOTS {
            self.bytes += size_of::<Small<[u64; 2]>>();
            self.small += 1;
            let n = Small::<[u64; 2]>::new(&children, |w| {
                if w & LEAF == 0 {
                    return ([w as u64, 0], false);
                }
                // SAFETY: a leaf word points to a live boxed `Leaf`.
                let leaf = unsafe { &*((w & !LEAF) as *const Leaf) };
                self.inline += 1;
                ([leaf.key, leaf.value], true)
            });
            Box::into_raw(n) as usize | SMALL | tag
        } else {
            let mut n = Box::new(Full {
                slots: [0; 64],
                _header: [0; 8],
            });
            for &(d, w) in &children {
                n.slots[d] = w;
            }
            self.bytes += size_of::<Full>();
            Box::into_raw(n) as usize | tag
        }
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        let mut w = self.root;
        loop {
            if w & LEAF != 0 {
                // SAFETY: a leaf word points to a live boxed `Leaf`.
                let leaf = unsafe { &*((w & !LEAF) as *const Leaf) };
                return (leaf.key == key).then_some(leaf.value);
            }
            let d = (key >> (((w & SHIFT) >> 1) * 6)) & 63;
            let p = w & !63;
            w = if w & SMALL == 0 {
                // SAFETY: a node word without `SMALL` points to a live `Full`.
                unsafe { (*(p as *const Full)).slots[d as usize] }
            } else if self.shape == Shape::Small {
                // SAFETY: a small node word of this toy points to a live
                // `Small<usize>`.
                let n = unsafe { &*(p as *const Small<usize>) };
                n.slots[n.find(d)?]
            } else {
                // SAFETY: a small node word of this toy points to a live
                // `Small<[u64; 2]>`.
                let n = unsafe { &*(p as *const Small<[u64; 2]>) };
                let j = n.find(d)?;
                let [a, b] = n.slots[j];
                if n.inline >> j & 1 != 0 {
                    return (a == key).then_some(b);
                }
                a as usize
            };
            if w == 0 {
                return None;
            }
        }
    }
}

fn main() {
    let keys: Vec<u64> = (0..N).map(scramble).collect();
    let btree: BTreeMap<u64, u64> = keys.iter().map(|&k| (k, k ^ 1)).collect();
    let locked = RwLock::new(btree.clone());
    let tree: RcuRadixTree<u64> = keys.iter().map(|&k| (k, k ^ 1)).collect();
    // The toys' leaves, allocated in the keys' (random) order as inserts
    // would, shared by both toys.
    let mut items: Vec<(u64, *mut Leaf)> = keys
        .iter()
        .map(|&k| {
            (
                k,
                Box::into_raw(Box::new(Leaf {
                    key: k,
                    value: k ^ 1,
                })),
            )
        })
        .collect();
    items.sort_unstable_by_key(|&(k, _)| k);
    let toys = [Shape::Full, Shape::Small, Shape::SmallInline].map(|s| Toy::build(&items, s));
    for toy in &toys {
        for &(k, _) in &items {
            assert_eq!(toy.get(k), Some(k ^ 1));
            assert_eq!(toy.get(k ^ 1 << 40), None);
        }
    }
    let flat: Vec<(u64, u64)> = keys.iter().map(|&k| (k, k ^ 1)).collect();
    let mut best = [f64::MAX; 7];
    for _ in 0..SAMPLES {
        let times = [
            mean_ns_at_random(N, OPS, |i| black_box(&flat)[i as usize].1),
            mean_ns_at_random(N, OPS, |i| btree.get(&scramble(i)).copied().unwrap_or(0)),
            mean_ns_at_random(N, OPS, |i| {
                let map = locked.read().unwrap();
                map.get(&scramble(i)).copied().unwrap_or(0)
            }),
            mean_ns_at_random(N, OPS, |i| {
                let guard = rcu_core::read_lock();
                tree.get(scramble(i), &guard).copied().unwrap_or(0)
            }),
            mean_ns_at_random(N, OPS, |i| toys[0].get(scramble(i)).unwrap_or(0)),
            mean_ns_at_random(N, OPS, |i| toys[1].get(scramble(i)).unwrap_or(0)),
            mean_ns_at_random(N, OPS, |i| toys[2].get(scramble(i)).unwrap_or(0)),
        ];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
    }
    let [one, plain, rw, ours, full, small, inline] = best;
    let shape = |toy: &Toy| {
        let mib = |bytes: usize| bytes as f64 / 1048576.0;
        format!(
            "{} nodes ({} small), {:.1} MiB + {:.1} MiB of leaves",
            toy.nodes,
            toy.small,
            mib(toy.bytes),
            mib((items.len() - toy.inline) * size_of::<Leaf>())
        )
    };
    println!("1M random keys, ns per get hit (fastest of {SAMPLES} samples of {OPS}):");
    for (name, t, shape) in [
        ("one load", one, String::new()),
        ("BTreeMap", plain, String::new()),
        ("RwLock<BTreeMap>", rw, String::new()),
        ("RcuRadixTree", ours, String::new()),
        ("toy, 64-slot nodes", full, shape(&toys[0])),
        ("toy, small nodes", small, shape(&toys[1])),
        ("toy, small, inline", inline, shape(&toys[2])),
    ] {
        println!(
            "  {name:20} {t:7.2} ns   RwLock<BTreeMap>/this: {:.2}x   {shape}",
            rw / t
        );
    }
    // The toys never free their nodes; the process ends here.
    for (_, leaf) in items {
        // SAFETY: from `Box::into_raw` above; the toys are not used again.
        drop(unsafe { Box::from_raw(leaf) });
    }
}

const _: () = assert!(size_of::<Small<usize>>() == 256 && size_of::<Small<[u64; 2]>>() == 384);
