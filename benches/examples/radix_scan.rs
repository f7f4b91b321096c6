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

use rcu_bench::{mean_ns_at_random, xorshift64star};
use rcu_radix::RcuRadixTree;
use std::collections::BTreeMap;

const N: u64 = 1 << 20;
const SCAN: u64 = 100;
const SCANS: u32 = 200_000;

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
        let k = xorshift64star(&mut x) % N;
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
            let ours = mean_ns_at_random(N - SCAN, SCANS, tree_scan(tree));
            let peer = mean_ns_at_random(N - SCAN, SCANS, btree_scan);
            println!(
                "{state:>9}: RcuRadixTree {ours:6.1} ns, BTreeMap {peer:6.1} ns, ratio {:.2}x",
                peer / ours
            );
        }
    }
}
