//! Memory of 1M `u64 -> u64` entries, dense (`0..1M`) and random (seeded),
//! in `rcu-radix`'s `RcuRadixTree` against `BTreeMap` and congee:
//!
//! ```text
//! cargo run --release -p rcu-bench --example radix_memory
//! ```
//!
//! A counting global allocator measures the heap each structure holds after
//! it is built: the bytes asked for, and the bytes glibc's malloc spends on
//! them (each chunk rounded up to 16 bytes with an 8-byte header, at least
//! 32 bytes), which is what small allocations really cost.

use rcu_radix::RcuRadixTree;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static ASKED: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ASKED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ASKED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 1 << 20;

/// Heap held by what `build` returns: (asked, malloc chunks), in bytes.
fn measure<T>(build: impl FnOnce() -> T) -> (isize, isize, T) {
    let (a0, c0) = (
        ASKED.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
    );
    let t = build();
    let (a1, c1) = (
        ASKED.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
    );
    (a1 - a0, c1 - c0, t)
}

fn report(name: &str, asked: isize, chunks: isize) {
    let per = |b: isize| b as f64 / N as f64;
    println!(
        "| {name} | {:.1} MiB | {:.1} | {:.1} MiB | {:.1} |",
        asked as f64 / (1 << 20) as f64,
        per(asked),
        chunks as f64 / (1 << 20) as f64,
        per(chunks)
    );
}

fn main() {
    let mut x = 0x5eed_u64;
    let random: Vec<u64> = (0..N)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        })
        .collect();
    let dense: Vec<u64> = (0..N).collect();
    for (set, keys) in [("dense", &dense), ("random", &random)] {
        println!("\n1M (2^20) {set} keys, u64 values");
        println!("| structure | heap asked | bytes/key | malloc chunks | bytes/key |");
        println!("|---|---:|---:|---:|---:|");
        let (a, c, tree) = measure(|| keys.iter().map(|&k| (k, k)).collect::<RcuRadixTree<u64>>());
        report("rcu-radix RcuRadixTree", a, c);
        let s = tree.stats();
        drop(tree);
        let (a, c, map) = measure(|| keys.iter().map(|&k| (k, k)).collect::<BTreeMap<u64, u64>>());
        report("std BTreeMap", a, c);
        drop(map);
        let (a, c, art) = measure(|| {
            let t = congee::Congee::<usize, usize>::default();
            let guard = t.pin();
            for &k in keys.iter() {
                t.insert(k as usize, k as usize, &guard).unwrap();
            }
            drop(guard);
            t
        });
        report("congee Congee", a, c);
        drop(art);
        println!(
            "(rcu-radix shape: {} nodes, {:.1} MiB with the value cells of bottom nodes, \
             height {}; {} entries, {:.1} MiB of them in leaves of their own)",
            s.nodes,
            s.node_bytes as f64 / f64::from(1 << 20),
            s.height,
            s.entries,
            s.leaf_bytes as f64 / f64::from(1 << 20),
        );
    }
}
