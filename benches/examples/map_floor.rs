//! How fast can a table that keeps `RcuHashMap::get`'s contract be, against
//! `std`'s? Single-thread `get` hits on 64 K `u64` keys (or the first
//! argument) with foldhash, fastest of 200 interleaved samples each, every
//! sample timed after an untimed pass over its keys (steady state: the
//! table as warm as its footprint allows). No toy has any synchronisation:
//!
//! - `chained`: buckets of one pointer each, chains of boxed nodes (hash,
//!   link, key, value), as many buckets as `RcuHashMap` has for that many
//!   keys, no filter: the floor of `RcuHashMap`'s design;
//! - `filtered`: the same with `RcuHashMap`'s one-byte Bloom filter per
//!   bucket, loaded first;
//! - `grouped`: QEMU `qht`'s layout, a 64-byte bucket of four (32-bit
//!   hash, pointer) pairs compared without branches, and an overflow
//!   bucket when a bucket is full; the node still holds key and value;
//! - `inline`: entries in the table with a spare cell per slot: open
//!   addressing with linear probing over 40-byte slots of a tag word (the
//!   hash, its low bit naming the current cell) and two (key, value)
//!   cells, as many slots as `RcuHashMap` has buckets;
//! - `split`: the same cells laid out as `std`'s table is, a control byte
//!   per slot (six bits of the hash and the current cell) and an array of
//!   32-byte two-cell entries, probed sixteen control bytes at a time with
//!   SSE2 on x86-64 (one at a time elsewhere);
//! - `flat`: `split` with one cell per slot (16-byte entries, `std`'s
//!   layout): the table that cannot keep the contract, or the layout of a
//!   table whose replacements go out of line, for its entries that were
//!   never replaced;
//! - `std`'s `HashMap` and `RcuHashMap` (one `pin` per sample).
//!
//! A table that hands out references valid after the key is replaced
//! (`RcuHashMap::get`'s contract, and papaya's) cannot overwrite an entry
//! in place: it keeps its entries out of line (`chained`, `filtered`,
//! `grouped`: this crate, papaya), so a hit reads a bucket and then a
//! node, or keeps a spare cell per slot in the table (`inline`, `split`;
//! `rcu-radix`'s bottom nodes do this): a replacement writes the free cell
//! and flips the slot's current-cell bit, and the old cell is reused a
//! grace period later. A third way keeps one cell per slot and sends only
//! replacements out of line (`flat` for the entries never replaced). The
//! `std/...` ratios say what each layout costs on the machine that runs
//! this, before any synchronisation.
//!
//! ```text
//! cargo run --release -p rcu-bench --example map_floor [KEYS]
//! ```

use rcu_bench::scramble as key;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::ptr;
use std::time::Instant;

const OPS: u64 = 1 << 16;

/// Nanoseconds per call of `f` on [`OPS`] pseudo-random present keys.
///
/// The keys run once untimed first: the samples of the tables interleave,
/// and each table would otherwise be timed as the one before it left the
/// caches (a table sharing the previous one's nodes, as `filtered` shares
/// `chained`'s, would look faster than it is).
fn sample(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut run = || {
        let mut x = 0x1234_5678u64;
        for _ in 0..OPS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f(key(x % n));
        }
    };
    run();
    let t = Instant::now();
    run();
    t.elapsed().as_nanos() as f64 / OPS as f64
}

struct Node {
    hash: u64,
    next: *mut Node,
    key: u64,
    value: u64,
}

/// Chains of boxed nodes, and a filter byte per bucket (read by
/// `get_filtered` only).
struct Chained {
    shift: u32,
    buckets: Vec<*mut Node>,
    filters: Vec<u8>,
}

impl Chained {
    fn new(buckets: usize) -> Self {
        Chained {
            shift: 64 - buckets.trailing_zeros(),
            buckets: vec![ptr::null_mut(); buckets],
            filters: vec![0; buckets],
        }
    }

    fn insert(&mut self, hash: u64, key: u64, value: u64) {
        let i = (hash >> self.shift) as usize;
        let next = self.buckets[i];
        self.buckets[i] = Box::into_raw(Box::new(Node {
            hash,
            next,
            key,
            value,
        }));
        self.filters[i] |= 1 << (hash & 7);
    }

    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> Option<&u64> {
        let i = (hash >> self.shift) as usize;
        // SAFETY: `shift` is 64 minus the log2 of `buckets.len()`, a power
        // of two, so `i` is in bounds (`RcuHashMap` indexes the same way).
        self.walk(unsafe { *self.buckets.get_unchecked(i) }, hash, key)
    }

    #[inline(never)]
    fn get_filtered(&self, hash: u64, key: u64) -> Option<&u64> {
        let i = (hash >> self.shift) as usize;
        // SAFETY: as in `get`; `filters` is as long as `buckets`.
        if unsafe { *self.filters.get_unchecked(i) } & (1 << (hash & 7)) == 0 {
            return None;
        }
        // SAFETY: as in `get`.
        self.walk(unsafe { *self.buckets.get_unchecked(i) }, hash, key)
    }

    #[inline]
    fn walk(&self, mut p: *mut Node, hash: u64, key: u64) -> Option<&u64> {
        while !p.is_null() {
            // SAFETY: every non-null link points to a node this table
            // allocated and frees only in `drop`.
            let n = unsafe { &*p };
            if n.hash == hash && n.key == key {
                return Some(&n.value);
            }
            p = n.next;
        }
        None
    }
}

impl Drop for Chained {
    fn drop(&mut self) {
        for &head in &self.buckets {
            let mut p = head;
            while !p.is_null() {
                // SAFETY: each node is in one chain and freed once, here.
                let n = unsafe { Box::from_raw(p) };
                p = n.next;
            }
        }
    }
}

/// One cache line: four (hash, node) pairs and an overflow bucket.
#[repr(C, align(64))]
struct Group {
    tags: [u32; 4],
    nodes: [*mut Node; 4],
    overflow: *mut Group,
}

impl Group {
    fn empty() -> Self {
        Group {
            tags: [0; 4],
            nodes: [ptr::null_mut(); 4],
            overflow: ptr::null_mut(),
        }
    }
}

struct Grouped {
    shift: u32,
    groups: Vec<Group>,
}

impl Grouped {
    fn new(groups: usize) -> Self {
        Grouped {
            shift: 64 - groups.trailing_zeros(),
            groups: (0..groups).map(|_| Group::empty()).collect(),
        }
    }

    fn insert(&mut self, hash: u64, key: u64, value: u64) {
        let mut g: &mut Group = &mut self.groups[(hash >> self.shift) as usize];
        loop {
            if let Some(j) = g.nodes.iter().position(|p| p.is_null()) {
                g.tags[j] = hash as u32;
                g.nodes[j] = Box::into_raw(Box::new(Node {
                    hash,
                    next: ptr::null_mut(),
                    key,
                    value,
                }));
                return;
            }
            if g.overflow.is_null() {
                g.overflow = Box::into_raw(Box::new(Group::empty()));
            }
            // SAFETY: overflow groups are allocated here and freed in `drop`.
            g = unsafe { &mut *g.overflow };
        }
    }

    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> Option<&u64> {
        let tag = hash as u32;
        // SAFETY: as in `Chained::get`.
        let mut g = unsafe { self.groups.get_unchecked((hash >> self.shift) as usize) };
        loop {
            let mut m = 0u32;
            for j in 0..4 {
                m |= u32::from(g.tags[j] == tag) << j;
            }
            while m != 0 {
                let p = g.nodes[m.trailing_zeros() as usize];
                // SAFETY: non-null nodes are allocated by this table and
                // freed only in `drop` (an empty slot's tag may match).
                if let Some(n) = unsafe { p.as_ref() }
                    && n.key == key
                {
                    return Some(&n.value);
                }
                m &= m - 1;
            }
            if g.overflow.is_null() {
                return None;
            }
            // SAFETY: as in `insert`.
            g = unsafe { &*g.overflow };
        }
    }
}

impl Drop for Grouped {
    fn drop(&mut self) {
        for g in &self.groups {
            let mut g: *const Group = g;
            let mut first = true;
            while !g.is_null() {
                // SAFETY: `g` is a bucket of `groups` or an overflow bucket
                // that `insert` allocated; each is visited once.
                let group = unsafe { &*g };
                for &p in &group.nodes {
                    if !p.is_null() {
                        // SAFETY: each node is in one bucket, freed here once.
                        drop(unsafe { Box::from_raw(p) });
                    }
                }
                let next = group.overflow;
                if !first {
                    // SAFETY: an overflow bucket, allocated by `Box` in
                    // `insert`, no longer used.
                    drop(unsafe { Box::from_raw(g.cast_mut()) });
                }
                first = false;
                g = next;
            }
        }
    }
}

/// A slot of [`Inline`]: `tag` is 0 when empty, else the hash with its
/// low bit replaced by the index of the current cell.
#[derive(Clone, Copy)]
struct Slot {
    tag: u64,
    cells: [(u64, u64); 2],
}

struct Inline {
    mask: usize,
    slots: Vec<Slot>,
}

impl Inline {
    fn new(slots: usize) -> Self {
        Inline {
            mask: slots - 1,
            slots: vec![
                Slot {
                    tag: 0,
                    cells: [(0, 0); 2]
                };
                slots
            ],
        }
    }

    /// The tag of `hash`: never 0, low bit clear.
    fn tag(hash: u64) -> u64 {
        (hash | 2) & !1
    }

    fn insert(&mut self, hash: u64, key: u64, value: u64) {
        let mut i = (hash >> 7) as usize & self.mask;
        while self.slots[i].tag != 0 {
            i = (i + 1) & self.mask;
        }
        // Alternate the cells, as replacements would.
        let cur = (key & 1) as usize;
        self.slots[i].tag = Self::tag(hash) | cur as u64;
        self.slots[i].cells[cur] = (key, value);
    }

    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> Option<&u64> {
        let tag = Self::tag(hash);
        let mut i = (hash >> 7) as usize & self.mask;
        loop {
            // SAFETY: `i` is masked by `slots.len() - 1`, a power of two.
            let s = unsafe { self.slots.get_unchecked(i) };
            if s.tag == 0 {
                return None;
            }
            if s.tag & !1 == tag {
                let (k, v) = &s.cells[(s.tag & 1) as usize];
                if *k == key {
                    return Some(v);
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// `Inline`'s cells laid out as `std`'s table is: a control byte per slot
/// (0 when empty, else 0x80, six bits of the hash and the current cell's
/// index) and an array of entries of `C` (key, value) cells: two for
/// `split`, one for `flat`.
struct Split<const C: usize> {
    mask: usize,
    ctrl: Vec<u8>,
    entries: Vec<[(u64, u64); C]>,
}

impl<const C: usize> Split<C> {
    fn new(slots: usize) -> Self {
        Split {
            mask: slots - 1,
            ctrl: vec![0; slots],
            entries: vec![[(0, 0); C]; slots],
        }
    }

    fn ctrl(hash: u64) -> u8 {
        0x80 | ((hash >> 57) as u8 & 0x7e)
    }

    /// Where the probe of `hash` starts: a 16-aligned group, as `get`
    /// reads it on x86-64.
    fn start(&self, hash: u64) -> usize {
        hash as usize & self.mask & !15
    }

    fn insert(&mut self, hash: u64, key: u64, value: u64) {
        let mut i = self.start(hash);
        while self.ctrl[i] != 0 {
            i = (i + 1) & self.mask;
        }
        let cur = (key & 1) as usize % C;
        self.ctrl[i] = Self::ctrl(hash) | cur as u8;
        self.entries[i][cur] = (key, value);
    }

    /// Probes one control byte at a time (off x86-64).
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> Option<&u64> {
        let want = Self::ctrl(hash);
        let mut i = self.start(hash);
        loop {
            // SAFETY: `i` is masked by `ctrl.len() - 1`, a power of two,
            // and `entries` is as long.
            let c = unsafe { *self.ctrl.get_unchecked(i) };
            if c == 0 {
                return None;
            }
            if c & !1 == want {
                // SAFETY: as above.
                let (k, v) = unsafe { &self.entries.get_unchecked(i)[(c & 1) as usize % C] };
                if *k == key {
                    return Some(v);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Probes sixteen control bytes at a time (SSE2), as `std`'s table
    /// does, from a 16-aligned group.
    #[cfg(target_arch = "x86_64")]
    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> Option<&u64> {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; the loads read 16 bytes from `g`,
        // a multiple of 16 below `ctrl.len()`, itself a multiple of 16.
        unsafe {
            let want = _mm_set1_epi8(Self::ctrl(hash) as i8);
            let strip = _mm_set1_epi8(!1);
            let zero = _mm_setzero_si128();
            let mut g = self.start(hash);
            loop {
                let group = _mm_loadu_si128(self.ctrl.as_ptr().add(g).cast());
                let mut m =
                    _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(group, strip), want)) as u32;
                while m != 0 {
                    let i = g + m.trailing_zeros() as usize;
                    let c = *self.ctrl.get_unchecked(i);
                    let (k, v) = &self.entries.get_unchecked(i)[(c & 1) as usize % C];
                    if *k == key {
                        return Some(v);
                    }
                    m &= m - 1;
                }
                if _mm_movemask_epi8(_mm_cmpeq_epi8(group, zero)) != 0 {
                    return None;
                }
                g = (g + 16) & self.mask;
            }
        }
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 16);
    let state = foldhash::fast::FixedState::with_seed(7);
    let hash = |k: u64| state.hash_one(k);
    let ours = rcu_hashmap::RcuHashMap::<u64, u64, _>::with_hasher(state.clone());
    let mut std_map = HashMap::with_hasher(state.clone());
    for i in 0..n {
        ours.insert(key(i), i);
        std_map.insert(key(i), i);
    }
    // As many buckets as `RcuHashMap` has now (its capacity is 3/4 of its
    // buckets), and a quarter as many four-entry groups (as many slots,
    // twice the bytes).
    let buckets = ours.capacity() / 3 * 4;
    let mut chained = Chained::new(buckets);
    let mut grouped = Grouped::new(buckets / 4);
    let mut inline = Inline::new(buckets);
    let mut split = Split::<2>::new(buckets);
    let mut flat = Split::<1>::new(buckets);
    for i in 0..n {
        chained.insert(hash(key(i)), key(i), i);
        grouped.insert(hash(key(i)), key(i), i);
        inline.insert(hash(key(i)), key(i), i);
        split.insert(hash(key(i)), key(i), i);
        flat.insert(hash(key(i)), key(i), i);
    }
    let mut best = [f64::MAX; 8];
    // Every toy finds every key, with its value: the samples time hits.
    for i in 0..n {
        let (h, k) = (hash(key(i)), key(i));
        for found in [
            chained.get(h, k),
            chained.get_filtered(h, k),
            grouped.get(h, k),
            inline.get(h, k),
            split.get(h, k),
            flat.get(h, k),
        ] {
            assert_eq!(found, Some(&i), "key {k}");
        }
    }
    let pin = ours.pin();
    for _ in 0..200 {
        let times = [
            sample(n, |k| {
                black_box(chained.get(hash(k), k));
            }),
            sample(n, |k| {
                black_box(chained.get_filtered(hash(k), k));
            }),
            sample(n, |k| {
                black_box(grouped.get(hash(k), k));
            }),
            sample(n, |k| {
                black_box(inline.get(hash(k), k));
            }),
            sample(n, |k| {
                black_box(split.get(hash(k), k));
            }),
            sample(n, |k| {
                black_box(flat.get(hash(k), k));
            }),
            sample(n, |k| {
                black_box(std_map.get(&k));
            }),
            sample(n, |k| {
                black_box(pin.get(&k));
            }),
        ];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
    }
    let [c, f, g, i, sp, fl, s, o] = best;
    println!(
        "{n} keys, {buckets} buckets, foldhash, ns per get hit (fastest of 200 samples of {OPS}):"
    );
    for (name, t) in [
        ("chained", c),
        ("filtered", f),
        ("grouped", g),
        ("inline", i),
        ("split", sp),
        ("flat", fl),
        ("std HashMap", s),
        ("RcuHashMap", o),
    ] {
        println!("  {name:12} {t:6.2} ns   std/{name}: {:.2}x", s / t);
    }
}
