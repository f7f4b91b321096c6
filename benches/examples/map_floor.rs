//! How fast can a table whose entries are boxed be, against `std`'s flat
//! one? Single-thread `get` hits on 64 K `u64` keys (or the first argument)
//! with foldhash, fastest of 200 interleaved samples each:
//!
//! - `chained`: buckets of one pointer each, chains of boxed nodes (hash,
//!   link, key, value), as many buckets as `RcuHashMap` has for that many
//!   keys; no synchronisation, no filter, no guard: the floor of
//!   `RcuHashMap`'s design;
//! - `filtered`: the same with `RcuHashMap`'s one-byte Bloom filter per
//!   bucket, loaded first;
//! - `grouped`: QEMU `qht`'s layout, a 64-byte bucket of four (32-bit
//!   hash, pointer) pairs compared without branches, and an overflow
//!   bucket when a bucket is full; the node still holds key and value;
//! - `std`'s `HashMap` and `RcuHashMap` (one `pin` per sample).
//!
//! A table that hands out references valid after the key is replaced
//! (`RcuHashMap::get`'s contract, and papaya's) cannot overwrite an entry
//! in place: it keeps its entries out of line (this crate, papaya), so a
//! hit reads a bucket and then a node, or keeps a spare cell per slot in
//! the table (as `rcu-radix`'s bottom nodes do). The `std/...` ratios of
//! `chained` and `grouped` are what the first costs on the machine that
//! runs this, with no synchronisation at all.
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
fn sample(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    let mut x = 0x1234_5678u64;
    for _ in 0..OPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f(key(x % n));
    }
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
    for i in 0..n {
        chained.insert(hash(key(i)), key(i), i);
        grouped.insert(hash(key(i)), key(i), i);
    }
    let mut best = [f64::MAX; 5];
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
    let [c, f, g, s, o] = best;
    println!(
        "{n} keys, {buckets} buckets, foldhash, ns per get hit (fastest of 200 samples of {OPS}):"
    );
    for (name, t) in [
        ("chained", c),
        ("filtered", f),
        ("grouped", g),
        ("std HashMap", s),
        ("RcuHashMap", o),
    ] {
        println!("  {name:12} {t:6.2} ns   std/{name}: {:.2}x", s / t);
    }
}
