//! The radix group's "range scan of 100 keys, 1M dense keys" read, without
//! the runner's background writes, in the three states a tree of the
//! runner passes through, against `BTreeMap` (unlocked: the scan alone):
//!
//! * **collected**: built by `collect` (every value in its bottom node's
//!   first cell, side by side);
//! * **inserted**: built by `insert` in ascending order (the first key of
//!   each block of 64 stays in a leaf of its own: the entry a split found);
//! * **churned**: the collected tree after `CHURN` pairs of remove and
//!   insert back of a random key (default 300 000), each pair within one
//!   grace period, so the key's new value goes into its slot's second cell,
//!   off the lines a scan streams through. That is the state of the
//!   runner's scan rows, which follow rows with 1% writes on the same tree.
//!
//! Each state is measured three times, interleaved with the `BTreeMap`, in
//! one process: mean ns per 100-key scan from a random start, and the
//! ratio (`BTreeMap` time over the tree's).
//!
//! ```text
//! cargo run --release -p rcu-bench --example radix_scan
//! CHURN=1000000 cargo run --release -p rcu-bench --example radix_scan
//! ```

use rcu_radix::RcuRadixTree;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

const N: u64 = 1 << 20;
const SCAN: u64 = 100;
const SCANS: u32 = 200_000;

/// xorshift64*.
fn next(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Mean ns per call of `scan(start)` over `SCANS` random starts.
fn per_scan(mut scan: impl FnMut(u64) -> u64) -> f64 {
    let mut x = 0x5ca1_ab1e;
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..SCANS {
        acc = acc.wrapping_add(scan(next(&mut x) % (N - SCAN)));
    }
    black_box(acc);
    t.elapsed().as_nanos() as f64 / f64::from(SCANS)
}

fn tree_scan(tree: &RcuRadixTree<u64>) -> impl FnMut(u64) -> u64 + '_ {
    move |s| {
        let guard = rcu_core::read_lock();
        tree.range(s..s + SCAN, &guard).map(|(_, v)| *v).sum()
    }
}

fn main() {
    let churn: u64 = std::env::var("CHURN")
        .map(|c| c.parse().expect("CHURN is a number of remove/insert pairs"))
        .unwrap_or(300_000);
    // The inserted tree first: were it built after the collected one, its
    // leaves would take the chunks that `collect` freed, in the collected
    // tree's pages, far from its own nodes.
    let inserted = RcuRadixTree::new();
    for k in 0..N {
        inserted.insert(k, k);
    }
    let btree: BTreeMap<u64, u64> = (0..N).map(|k| (k, k)).collect();
    let collected: RcuRadixTree<u64> = (0..N).map(|k| (k, k)).collect();
    let churned: RcuRadixTree<u64> = (0..N).map(|k| (k, k)).collect();
    let mut x = 1u64;
    for _ in 0..churn {
        let k = next(&mut x) % N;
        drop(churned.remove(k));
        drop(churned.insert(k, k));
    }
    rcu_core::drain();
    let btree_scan = |s: u64| btree.range(s..s + SCAN).map(|(_, v)| *v).sum::<u64>();
    for (state, tree) in [
        ("collected", &collected),
        ("inserted", &inserted),
        ("churned", &churned),
    ] {
        for _ in 0..3 {
            let ours = per_scan(tree_scan(tree));
            let peer = per_scan(btree_scan);
            println!(
                "{state:>9}: RcuRadixTree {ours:6.1} ns, BTreeMap {peer:6.1} ns, ratio {:.2}x",
                peer / ours
            );
        }
    }
}
