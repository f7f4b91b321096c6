//! Adversarial tests for `RcuRadixTree` (written by a reviewer to break
//! it): boundary keys, ranges, marks, panics and re-entrancy in user
//! closures, reclamation accounting, and scans under churn. Six of them
//! failed before their fixes: a panicking `Extend` iterator leaked the
//! values it had replaced, `stats` from a writer's closure deadlocked, and
//! so did a write from one (now a clear panic); a writer's closure that
//! waited for a grace period deadlocked with a writer under a guard (now a
//! clear panic: two tests), and `stats().node_bytes` was documented wrong.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain; the sizes and
// watchdogs here are for native runs, not Miri's.
#![cfg(not(any(rcu_loom, miri)))]

mod common;

use common::{Rng, panic_message};
use rcu_core::{Config, RcuDomain};
use rcu_radix::{Mark, RcuRadixTree};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

const CANARY: u64 = 0xC0FF_EED0_0DF0_0D42;

/// A value that counts its drops and detects double drops.
struct Counted {
    key: u64,
    canary: u64,
    drops: Arc<AtomicUsize>,
    double: Arc<AtomicUsize>,
}

#[derive(Clone, Default)]
struct Counter {
    drops: Arc<AtomicUsize>,
    double: Arc<AtomicUsize>,
    made: Arc<AtomicUsize>,
}

impl Counter {
    fn make(&self, key: u64) -> Counted {
        self.made.fetch_add(1, Ordering::SeqCst);
        Counted {
            key,
            canary: CANARY,
            drops: self.drops.clone(),
            double: self.double.clone(),
        }
    }
    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }
    fn doubles(&self) -> usize {
        self.double.load(Ordering::SeqCst)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.canary != CANARY {
            self.double.fetch_add(1, Ordering::SeqCst);
        }
        self.canary = 0xDEAD;
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs `f` on a fresh thread; `None` if it did not finish within `secs`
/// (a deadlock), otherwise whether it panicked.
fn within<T: Send + 'static>(
    secs: u64,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<std::thread::Result<T>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

fn keys_of<'g, V: 'g>(it: impl Iterator<Item = (u64, &'g V)>) -> Vec<u64> {
    it.map(|(k, _)| k).collect()
}

/// Whether `BTreeMap::range` panics for these bounds.
fn range_panics(b1: Bound<u64>, b2: Bound<u64>) -> bool {
    match (b1, b2) {
        (Excluded(s), Excluded(e)) if s == e => true,
        (Included(s) | Excluded(s), Included(e) | Excluded(e)) => s > e,
        _ => false,
    }
}

fn bounds_of(k: u64) -> [Bound<u64>; 3] {
    [Included(k), Excluded(k), Unbounded]
}

fn probes_for(keys: &[u64]) -> Vec<u64> {
    let mut p: BTreeSet<u64> = [0, 1, u64::MAX, u64::MAX - 1, 1 << 63].into();
    for &k in keys {
        p.insert(k);
        p.insert(k.wrapping_add(1));
        p.insert(k.wrapping_sub(1));
    }
    p.into_iter().collect()
}

/// Checks every read of `tree` against `model` at the `probes`, including
/// ranges between every pair of probes with every kind of bound.
fn check_reads(
    tree: &RcuRadixTree<u64>,
    model: &BTreeMap<u64, (u64, u8)>,
    probes: &[u64],
    ctx: &str,
) {
    let guard = tree.domain().read_lock_owned();
    let m = |e: Option<(&u64, &(u64, u8))>| e.map(|(k, e)| (*k, e.0));
    let t = |e: Option<(u64, &u64)>| e.map(|(k, v)| (k, *v));
    assert_eq!(tree.len(), model.len(), "{ctx}: len");
    assert_eq!(tree.is_empty(), model.is_empty(), "{ctx}: is_empty");
    assert_eq!(
        t(tree.first(&guard)),
        m(model.iter().next()),
        "{ctx}: first"
    );
    assert_eq!(
        t(tree.last(&guard)),
        m(model.iter().next_back()),
        "{ctx}: last"
    );
    let all: Vec<(u64, u64)> = tree.iter(&guard).map(|(k, v)| (k, *v)).collect();
    let want: Vec<(u64, u64)> = model.iter().map(|(k, e)| (*k, e.0)).collect();
    assert_eq!(all, want, "{ctx}: iter");
    for mark in [Mark::M0, Mark::M1, Mark::M2] {
        let bit = 1u8 << mark as u8;
        let marked: BTreeMap<u64, u64> = model
            .iter()
            .filter(|(_, e)| e.1 & bit != 0)
            .map(|(k, e)| (*k, e.0))
            .collect();
        assert_eq!(
            tree.any_marked(mark, &guard),
            !marked.is_empty(),
            "{ctx}: any_marked {mark:?}"
        );
        assert_eq!(
            t(tree.first_marked(mark, &guard)),
            marked.iter().next().map(|(k, v)| (*k, *v)),
            "{ctx}: first_marked {mark:?}"
        );
        for &p in probes {
            assert_eq!(
                tree.is_marked(p, mark, &guard),
                marked.contains_key(&p),
                "{ctx}: is_marked {p:#x} {mark:?}"
            );
            assert_eq!(
                t(tree.next_marked_after(p, mark, &guard)),
                marked
                    .range((Excluded(p), Unbounded))
                    .next()
                    .map(|(k, v)| (*k, *v)),
                "{ctx}: next_marked_after {p:#x} {mark:?}"
            );
            assert_eq!(
                t(tree.prev_marked_before(p, mark, &guard)),
                marked.range(..p).next_back().map(|(k, v)| (*k, *v)),
                "{ctx}: prev_marked_before {p:#x} {mark:?}"
            );
        }
    }
    for &p in probes {
        assert_eq!(
            tree.get(p, &guard).copied(),
            model.get(&p).map(|e| e.0),
            "{ctx}: get {p:#x}"
        );
        assert_eq!(
            tree.contains_key(p, &guard),
            model.contains_key(&p),
            "{ctx}: contains {p:#x}"
        );
        assert_eq!(
            t(tree.next_after(p, &guard)),
            m(model.range((Excluded(p), Unbounded)).next()),
            "{ctx}: next_after {p:#x}"
        );
        assert_eq!(
            t(tree.prev_before(p, &guard)),
            m(model.range(..p).next_back()),
            "{ctx}: prev_before {p:#x}"
        );
    }
    for &a in probes {
        for &b in probes {
            if a > b {
                continue; // BTreeMap panics or is empty: covered by `range_panics`
            }
            for b1 in bounds_of(a) {
                for b2 in bounds_of(b) {
                    if range_panics(b1, b2) {
                        continue;
                    }
                    let got: Vec<(u64, u64)> =
                        tree.range((b1, b2), &guard).map(|(k, v)| (k, *v)).collect();
                    let want: Vec<(u64, u64)> =
                        model.range((b1, b2)).map(|(k, e)| (*k, e.0)).collect();
                    assert_eq!(got, want, "{ctx}: range {b1:?}..{b2:?}");
                }
            }
        }
    }
}

// ------------------------------------------------------------------ tests

/// Boundary keys (0, u64::MAX, keys differing only in the top or lowest
/// bits), as a whole set, as singletons (a root leaf) and as pairs (one
/// node): every read agrees with BTreeMap.
#[test]
fn boundary_keys_every_read_matches_btreemap() {
    let domain = RcuDomain::new();
    let mut sets: Vec<Vec<u64>> = vec![common::EDGE_KEYS.to_vec(), vec![]];
    for &k in &common::EDGE_KEYS {
        sets.push(vec![k]);
    }
    for pair in [
        [0, u64::MAX],
        [1 << 63, (1 << 63) - 1],
        [1 << 63, (1 << 63) + 1],
        [u64::MAX - 1, u64::MAX],
        [0, 1],
        [0, 1 << 63],
        [63, 64],
        [u64::MAX - 64, u64::MAX - 63],
    ] {
        sets.push(pair.to_vec());
    }
    for (si, keys) in sets.iter().enumerate() {
        let tree = RcuRadixTree::new_in(&domain);
        let mut model = BTreeMap::new();
        for (i, &k) in keys.iter().enumerate() {
            tree.insert(k, k ^ 0xabc);
            let mut marks = 0u8;
            if i % 3 == 0 {
                tree.set_mark(k, Mark::M1);
                marks |= 2;
            }
            if k >= 1 << 63 {
                tree.set_mark(k, Mark::M2);
                marks |= 4;
            }
            model.insert(k, (k ^ 0xabc, marks));
        }
        let probes = probes_for(keys);
        check_reads(&tree, &model, &probes, &format!("set {si} {keys:x?}"));
        // Shrink it key by key from the top, checking after each.
        for &k in keys.iter().rev() {
            assert_eq!(tree.remove(k).map(|r| *r), Some(k ^ 0xabc));
            model.remove(&k);
            check_reads(&tree, &model, &probes, &format!("set {si} minus {k:#x}"));
        }
        let s = tree.stats();
        assert_eq!((s.entries, s.nodes, s.height), (0, 0, 0));
    }
}

/// Empty, inverted-by-exclusion and edge ranges, on empty, root-leaf and
/// larger trees; iterators stay exhausted (fused) even if keys are inserted
/// in their range afterwards.
#[test]
fn edge_ranges_and_fused_iterators() {
    let domain = RcuDomain::new();
    let trees: Vec<Vec<u64>> = vec![
        vec![],
        vec![5],
        vec![0],
        vec![u64::MAX],
        vec![0, u64::MAX],
        vec![4, 5, 6, u64::MAX - 1, u64::MAX],
        (0..300).chain([u64::MAX - 1, u64::MAX]).collect(),
    ];
    let ranges: Vec<(Bound<u64>, Bound<u64>)> = vec![
        (Excluded(u64::MAX), Unbounded),
        (Unbounded, Included(u64::MAX)),
        (Unbounded, Unbounded),
        (Included(0), Excluded(0)),
        (Included(u64::MAX), Excluded(u64::MAX)),
        (Included(u64::MAX), Included(u64::MAX)),
        (Included(u64::MAX), Unbounded),
        (Included(5), Excluded(5)),
        (Excluded(5), Included(5)),
        (Excluded(4), Excluded(5)),
        (Excluded(4), Excluded(6)),
        (Excluded(u64::MAX - 1), Excluded(u64::MAX)),
        (Excluded(u64::MAX - 1), Included(u64::MAX)),
        (Included(0), Included(0)),
        (Unbounded, Excluded(1)),
        (Unbounded, Excluded(0)),
        (Excluded(0), Unbounded),
        (Excluded(63), Excluded(65)),
        (Included(64), Excluded(64)),
    ];
    for keys in &trees {
        let tree = RcuRadixTree::new_in(&domain);
        let model: BTreeMap<u64, u64> = keys.iter().map(|&k| (k, k)).collect();
        for &k in keys {
            tree.insert(k, k);
        }
        let reader = domain.register();
        let guard = reader.read_lock();
        for &(b1, b2) in &ranges {
            let want: Vec<u64> = model.range((b1, b2)).map(|(k, _)| *k).collect();
            let mut it = tree.range((b1, b2), &guard);
            let got: Vec<u64> = it.by_ref().map(|(k, _)| k).collect();
            assert_eq!(got, want, "range {b1:?}..{b2:?} of {} keys", keys.len());
            for _ in 0..3 {
                assert!(it.next().is_none(), "not fused: {b1:?}..{b2:?}");
            }
        }
        // Fused even after a writer (this thread) adds keys in the range.
        let mut it = tree.range(1000..2000, &guard);
        assert!(it.next().is_none());
        tree.insert(1500, 1500);
        assert!(it.next().is_none(), "iterator revived after an insert");
        let mut full = tree.iter(&guard);
        while full.next().is_some() {}
        tree.insert(u64::MAX - 2, 7);
        tree.insert(3, 3);
        assert!(full.next().is_none(), "iter revived after inserts");
        assert_eq!(tree.next_after(u64::MAX, &guard), None);
        assert_eq!(tree.prev_before(0, &guard), None);
        assert_eq!(tree.next_marked_after(u64::MAX, Mark::M0, &guard), None);
        assert_eq!(tree.prev_marked_before(0, Mark::M0, &guard), None);
    }
}

/// Marks: across node boundaries, survive a replace (documented), vanish
/// with the entry on remove, are absent after re-insert, survive splits and
/// collapses (including at the root), and go with clear/retain.
#[test]
fn marks_across_nodes_replace_remove_split_collapse() {
    let domain = RcuDomain::new();
    let reader = domain.register();
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..200u64 {
        tree.insert(k, k);
    }
    for k in [5, 63, 64, 130, 199] {
        assert!(tree.set_mark(k, Mark::M0));
    }
    assert!(tree.set_mark(64, Mark::M2));
    assert!(!tree.set_mark(1000, Mark::M0), "absent key marked");
    assert!(!tree.clear_mark(1000, Mark::M0));
    {
        let g = reader.read_lock();
        let nx = |k| tree.next_marked_after(k, Mark::M0, &g).map(|e| e.0);
        let pv = |k| tree.prev_marked_before(k, Mark::M0, &g).map(|e| e.0);
        assert_eq!(tree.first_marked(Mark::M0, &g).map(|e| e.0), Some(5));
        assert_eq!(
            [nx(0), nx(5), nx(63), nx(64), nx(130), nx(199)],
            [Some(5), Some(63), Some(64), Some(130), Some(199), None]
        );
        assert_eq!(
            [pv(0), pv(5), pv(6), pv(64), pv(65), pv(u64::MAX)],
            [None, None, Some(5), Some(63), Some(64), Some(199)]
        );
        assert_eq!(
            keys_of(tree.iter_marked(Mark::M0, &g)),
            [5, 63, 64, 130, 199]
        );
        assert_eq!(
            keys_of(tree.range_marked(63..=130, Mark::M0, &g)),
            [63, 64, 130]
        );
        assert_eq!(
            keys_of(tree.range_marked((Excluded(63), Excluded(130)), Mark::M0, &g)),
            [64]
        );
        assert!(!tree.any_marked(Mark::M1, &g));
        assert_eq!(keys_of(tree.iter_marked(Mark::M2, &g)), [64]);
    }
    // Replace keeps the marks (documented on `insert`).
    assert_eq!(tree.insert(64, 6400).map(|r| *r), Some(64));
    {
        let g = reader.read_lock();
        assert!(tree.is_marked(64, Mark::M0, &g) && tree.is_marked(64, Mark::M2, &g));
        assert_eq!(tree.next_marked_after(63, Mark::M0, &g), Some((64, &6400)));
        assert_eq!(tree.first_marked(Mark::M2, &g), Some((64, &6400)));
    }
    // Remove: the mark goes; re-insert: unmarked.
    drop(tree.remove(64));
    {
        let g = reader.read_lock();
        assert_eq!(
            tree.next_marked_after(63, Mark::M0, &g).map(|e| e.0),
            Some(130)
        );
        assert!(!tree.any_marked(Mark::M2, &g));
    }
    tree.insert(64, 64);
    {
        let g = reader.read_lock();
        assert!(!tree.is_marked(64, Mark::M0, &g));
        assert_eq!(
            tree.next_marked_after(63, Mark::M0, &g).map(|e| e.0),
            Some(130)
        );
        assert_eq!(tree.first_marked(Mark::M2, &g), None);
    }
    // Collapse the node of 128..192 down to 130 alone (it moves up a level).
    for k in 128..192 {
        if k != 130 {
            drop(tree.remove(k));
        }
    }
    {
        let g = reader.read_lock();
        assert!(tree.is_marked(130, Mark::M0, &g));
        assert_eq!(
            tree.next_marked_after(64, Mark::M0, &g).map(|e| e.0),
            Some(130)
        );
        assert_eq!(
            tree.prev_marked_before(199, Mark::M0, &g).map(|e| e.0),
            Some(130)
        );
        assert_eq!(keys_of(tree.iter_marked(Mark::M0, &g)), [5, 63, 130, 199]);
    }
    // Split above the marked leaf that moved up: a new node holds it.
    tree.insert(131, 131);
    tree.insert(129, 129);
    {
        let g = reader.read_lock();
        assert_eq!(keys_of(tree.range_marked(100..=150, Mark::M0, &g)), [130]);
        assert_eq!(
            tree.prev_marked_before(131, Mark::M0, &g).map(|e| e.0),
            Some(130)
        );
    }
    drop(tree.remove(130));
    {
        let g = reader.read_lock();
        assert_eq!(
            tree.next_marked_after(63, Mark::M0, &g).map(|e| e.0),
            Some(199)
        );
    }
    // retain drops marked entries and their summaries.
    tree.retain(|k, _| k != 199 && k != 5);
    {
        let g = reader.read_lock();
        assert_eq!(keys_of(tree.iter_marked(Mark::M0, &g)), [63]);
    }
    assert!(tree.clear_mark(63, Mark::M0));
    assert!(!tree.any_marked(Mark::M0, &reader.read_lock()));
    tree.set_mark(0, Mark::M1);
    tree.clear();
    {
        let g = reader.read_lock();
        assert!(!tree.any_marked(Mark::M1, &g));
        assert_eq!(tree.first_marked(Mark::M1, &g), None);
    }

    // Root leaf: marks, then a split at the root (height grows), then a
    // collapse back (height shrinks).
    let tree = RcuRadixTree::new_in(&domain);
    tree.insert(u64::MAX, 1u64);
    assert!(tree.set_mark(u64::MAX, Mark::M1));
    {
        let g = reader.read_lock();
        assert!(tree.any_marked(Mark::M1, &g));
        assert_eq!(tree.first_marked(Mark::M1, &g).map(|e| e.0), Some(u64::MAX));
        assert_eq!(tree.prev_marked_before(u64::MAX, Mark::M1, &g), None);
        assert_eq!(
            tree.next_marked_after(u64::MAX - 1, Mark::M1, &g)
                .map(|e| e.0),
            Some(u64::MAX)
        );
    }
    tree.insert(0, 0);
    tree.insert(u64::MAX - 1, 2);
    {
        let g = reader.read_lock();
        assert!(tree.any_marked(Mark::M1, &g));
        assert_eq!(tree.first_marked(Mark::M1, &g).map(|e| e.0), Some(u64::MAX));
        assert_eq!(tree.prev_marked_before(u64::MAX, Mark::M1, &g), None);
        assert_eq!(tree.last(&g).map(|e| e.0), Some(u64::MAX));
    }
    drop(tree.remove(0));
    drop(tree.remove(u64::MAX - 1));
    {
        let g = reader.read_lock();
        assert!(tree.any_marked(Mark::M1, &g));
        assert_eq!(keys_of(tree.iter_marked(Mark::M1, &g)), [u64::MAX]);
    }
    assert!(tree.clear_mark(u64::MAX, Mark::M1));
    assert!(!tree.any_marked(Mark::M1, &reader.read_lock()));
}

/// Seeded random differential against BTreeMap over keys that differ only in
/// their top or lowest bits, with marks, retain, clear, extend,
/// get_or_insert_with and Debug; every read checked at boundary probes.
#[test]
fn differential_top_and_low_bit_keys() {
    let bases: [u64; 11] = [
        0,
        1,
        63,
        64,
        1 << 63,
        (1 << 63) - 1,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX - 63,
        1 << 32,
        0x5555_5555_5555_5555,
    ];
    let key = |rng: &mut Rng| {
        let base = bases[rng.below(bases.len() as u64) as usize];
        match rng.below(3) {
            0 => base ^ rng.below(8),
            1 => base ^ (rng.below(8) << 61),
            _ => base ^ (1 << rng.below(64)),
        }
    };
    let marks = [Mark::M0, Mark::M1, Mark::M2];
    for seed in [3u64, 17, 4242] {
        let domain = RcuDomain::new();
        let mut tree = RcuRadixTree::new_in(&domain);
        let mut model: BTreeMap<u64, (u64, u8)> = BTreeMap::new();
        let mut rng = Rng(seed);
        for step in 0..3000 {
            let k = key(&mut rng);
            let v = rng.next();
            match rng.below(20) {
                0..=6 => {
                    let old = tree.insert(k, v).map(|r| *r);
                    let mk = model.get(&k).map_or(0, |e| e.1);
                    assert_eq!(
                        old,
                        model.insert(k, (v, mk)).map(|e| e.0),
                        "insert at {step}"
                    );
                }
                7..=9 => {
                    let got = tree.remove(k).map(|r| (r.key(), *r));
                    assert_eq!(got, model.remove(&k).map(|e| (k, e.0)), "remove at {step}");
                }
                10..=12 => {
                    let m = marks[rng.below(3) as usize];
                    let on = rng.below(3) != 0;
                    let found = if on {
                        tree.set_mark(k, m)
                    } else {
                        tree.clear_mark(k, m)
                    };
                    assert_eq!(found, model.contains_key(&k));
                    if let Some(e) = model.get_mut(&k) {
                        if on {
                            e.1 |= 1 << m as u8;
                        } else {
                            e.1 &= !(1 << m as u8);
                        }
                    }
                }
                13 => {
                    let g = domain.read_lock_owned();
                    let got = *tree.get_or_insert_with(k, || v, &g);
                    assert_eq!(got, model.entry(k).or_insert((v, 0)).0);
                }
                14 => {
                    let m = rng.below(5) + 2;
                    tree.retain(|k, v| (k ^ v) % m != 0);
                    model.retain(|k, e| (k ^ e.0) % m != 0);
                }
                15 if rng.below(10) == 0 => {
                    tree.clear();
                    model.clear();
                }
                16 => {
                    let batch: Vec<(u64, u64)> = (0..rng.below(6))
                        .map(|_| (key(&mut rng), rng.next()))
                        .collect();
                    tree.extend(batch.iter().copied());
                    for (k, v) in batch {
                        let mk = model.get(&k).map_or(0, |e| e.1);
                        model.insert(k, (v, mk));
                    }
                }
                _ => {
                    let mut probes = vec![k, k.wrapping_add(1), k.wrapping_sub(1), 0, u64::MAX];
                    probes.extend(model.keys().take(1).copied());
                    probes.extend(model.keys().rev().take(1).copied());
                    check_reads(&tree, &model, &probes, &format!("seed {seed} step {step}"));
                }
            }
            if step % 250 == 0 {
                let want: BTreeMap<u64, u64> = model.iter().map(|(k, e)| (*k, e.0)).collect();
                assert_eq!(format!("{tree:?}"), format!("{want:?}"), "Debug at {step}");
                let s = tree.stats();
                assert_eq!(s.entries, model.len());
                assert!(
                    s.nodes < model.len().max(1),
                    "{s:?} for {} keys",
                    model.len()
                );
            }
        }
        let sample: Vec<u64> = model
            .keys()
            .copied()
            .step_by(model.len() / 16 + 1)
            .collect();
        check_reads(
            &tree,
            &model,
            &probes_for(&sample),
            &format!("seed {seed} end"),
        );
    }
}

/// Debug, FromIterator and Extend behave like BTreeMap's (last duplicate
/// wins, keys sorted), also while the thread holds a guard.
#[test]
fn debug_from_iter_extend_like_btreemap() {
    let items = [
        (5u64, "e"),
        (u64::MAX, "max"),
        (0, "zero"),
        (5, "E"),
        (1 << 63, "top"),
        (64, "x"),
        (0, "ZERO"),
    ];
    let tree: RcuRadixTree<&str> = items.iter().copied().collect();
    let model: BTreeMap<u64, &str> = items.iter().copied().collect();
    assert_eq!(format!("{tree:?}"), format!("{model:?}"));
    assert_eq!(format!("{tree:#?}"), format!("{model:#?}"));
    assert_eq!(tree.len(), model.len());
    let empty: RcuRadixTree<u8> = std::iter::empty().collect();
    assert_eq!(format!("{empty:?}"), "{}");
    // Debug under a guard of the same domain on this thread.
    {
        let g = rcu_core::read_lock();
        assert_eq!(format!("{tree:?}"), format!("{model:?}"));
        assert_eq!(tree.get(5, &g), Some(&"E"));
    }
    let mut tree = tree;
    let mut model = model;
    let more = [
        (5u64, "five"),
        (7, "seven"),
        (7, "SEVEN"),
        (u64::MAX - 1, "m1"),
    ];
    tree.extend(more);
    model.extend(more);
    assert_eq!(format!("{tree:?}"), format!("{model:?}"));
    let domain = RcuDomain::new();
    let mut t2 = RcuRadixTree::new_in(&domain);
    t2.extend(items.iter().copied());
    t2.extend(std::iter::empty());
    let m2: BTreeMap<u64, &str> = items.iter().copied().collect();
    assert_eq!(format!("{t2:?}"), format!("{m2:?}"));
}

/// An `Extend` whose iterator panics after replacing a value: the tree
/// keeps what was inserted before the panic, stays writable, and the
/// replaced value is dropped (once) after a grace period, not leaked.
#[test]
fn extend_with_panicking_iterator_does_not_leak() {
    let domain = RcuDomain::new();
    let c = Counter::default();
    let mut tree = RcuRadixTree::new_in(&domain);
    tree.insert(1, c.make(1));
    let c2 = c.clone();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut n = 0;
        tree.extend(std::iter::from_fn(|| {
            n += 1;
            match n {
                1 => Some((1, c2.make(10))), // replaces key 1
                2 => Some((2, c2.make(2))),
                3 => Some((2, c2.make(20))), // replaces key 2
                _ => panic!("iterator panics"),
            }
        }));
    }));
    assert!(r.is_err());
    // The tree is usable and holds what was inserted.
    tree.insert(3, c.make(3));
    {
        let g = domain.read_lock_owned();
        assert_eq!(tree.get(1, &g).map(|v| v.key), Some(10));
        assert_eq!(tree.get(2, &g).map(|v| v.key), Some(20));
        assert_eq!(tree.len(), 3);
    }
    domain.drain();
    assert_eq!(c.doubles(), 0);
    assert_eq!(
        c.drops(),
        2,
        "the two values replaced inside the panicking extend must be dropped"
    );
    drop(tree);
    domain.drain();
    assert_eq!(c.drops(), c.made(), "every value dropped once in the end");
}

/// A panic in `get_or_insert_with`'s closure: the tree is unchanged, the
/// writer lock is not poisoned for later writes, and nothing leaks.
#[test]
fn get_or_insert_with_panic_leaves_tree_consistent() {
    let domain = RcuDomain::new();
    let c = Counter::default();
    let tree = RcuRadixTree::new_in(&domain);
    for k in [1u64, 2, 1 << 40] {
        tree.insert(k, c.make(k));
    }
    for round in 0..3 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let g = domain.read_lock_owned();
            let _v = tree.get_or_insert_with(
                7,
                || {
                    let _half = c.make(999); // dropped by the unwind
                    panic!("boom {round}");
                },
                &g,
            );
        }));
        assert!(r.is_err());
        assert_eq!(tree.len(), 3);
        let g = domain.read_lock_owned();
        assert!(!tree.contains_key(7, &g));
        assert_eq!(keys_of(tree.iter(&g)), [1, 2, 1 << 40]);
    }
    // Writes still work, in every form.
    tree.insert(7, c.make(7));
    drop(tree.remove(2));
    tree.set_mark(7, Mark::M0);
    {
        let g = domain.read_lock_owned();
        assert_eq!(tree.get_or_insert_with(8, || c.make(8), &g).key, 8);
        assert_eq!(tree.get_or_insert_with(8, || c.make(88), &g).key, 8);
        assert_eq!(keys_of(tree.iter(&g)), [1, 7, 8, 1 << 40]);
        assert_eq!(tree.first_marked(Mark::M0, &g).map(|e| e.0), Some(7));
    }
    tree.retain(|k, _| k != 1);
    domain.drain();
    // 3 half-made values dropped by the unwind, key 2 and key 1 retired.
    assert_eq!(c.drops(), 3 + 2);
    assert_eq!(c.doubles(), 0);
    drop(tree);
    assert_eq!(c.drops(), c.made());
}

/// A panic in `retain`'s predicate part-way: the tree is consistent (either
/// unchanged or without exactly the refused keys), writes keep working, and
/// every value is dropped exactly once in the end.
#[test]
fn retain_panic_leaves_tree_consistent() {
    let domain = RcuDomain::new();
    let c = Counter::default();
    let tree = RcuRadixTree::new_in(&domain);
    let keys: Vec<u64> = (0..300u64)
        .map(|i| i * 7)
        .chain([u64::MAX, 1 << 50])
        .collect();
    for &k in &keys {
        tree.insert(k, c.make(k));
    }
    let mut refused = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        tree.retain(|k, v| {
            assert_eq!(v.key, k);
            if k > 1000 {
                panic!("predicate panics at {k}");
            }
            let keep = k % 2 == 0;
            if !keep {
                refused.push(k);
            }
            keep
        })
    }));
    assert!(r.is_err());
    let g = domain.read_lock_owned();
    let now = keys_of(tree.iter(&g));
    let unchanged: Vec<u64> = {
        let mut v = keys.clone();
        v.sort();
        v
    };
    let without: Vec<u64> = unchanged
        .iter()
        .copied()
        .filter(|k| !refused.contains(k))
        .collect();
    assert!(
        now == unchanged || now == without,
        "inconsistent after panic: {} keys",
        now.len()
    );
    assert_eq!(tree.len(), now.len());
    for &k in &now {
        assert_eq!(tree.get(k, &g).map(|v| v.key), Some(k));
    }
    drop(g);
    // Later writes work.
    tree.insert(1, c.make(1));
    tree.retain(|k, _| k % 3 == 0);
    let g = domain.read_lock_owned();
    let want: Vec<u64> = now.iter().copied().filter(|k| k % 3 == 0).collect();
    assert_eq!(keys_of(tree.iter(&g)), want);
    drop(g);
    tree.clear();
    domain.drain();
    assert_eq!(c.doubles(), 0);
    assert_eq!(c.drops(), c.made(), "leaked or double-dropped values");
}

/// User closures (get_or_insert_with's `f`, retain's predicate) may read
/// the tree: get, ranges, neighbours, len, Debug.
#[test]
fn closures_that_read_the_tree_work() {
    let domain = RcuDomain::new();
    let tree: &'static RcuRadixTree<u64> = Box::leak(Box::new(RcuRadixTree::new_in(&domain)));
    for k in [10u64, 20, 30, u64::MAX] {
        tree.insert(k, k);
    }
    let d = domain.clone();
    let r = within(5, move || {
        let domain = d;
        let g = domain.read_lock_owned();
        let v = *tree.get_or_insert_with(
            15,
            || {
                let g2 = domain.read_lock_owned();
                let below = tree.prev_before(15, &g2).unwrap().0;
                let above = tree.next_after(15, &g2).unwrap().0;
                let n = tree.range(..=30, &g2).count() as u64;
                let dbg = format!("{tree:?}");
                assert!(dbg.starts_with("{10: 10"), "{dbg}");
                below + above + n + tree.len() as u64 // 10 + 20 + 3 + 4
            },
            &g,
        );
        assert_eq!(v, 37);
        let mut seen = Vec::new();
        tree.retain(|k, _| {
            let g2 = domain.read_lock_owned();
            seen.push((k, tree.next_after(k, &g2).map(|e| e.0)));
            assert_eq!(tree.get(k, &g2), Some(&if k == 15 { 37 } else { k }));
            k != 20
        });
        assert_eq!(
            seen,
            [
                (10, Some(15)),
                (15, Some(20)),
                (20, Some(30)),
                (30, Some(u64::MAX)),
                (u64::MAX, None)
            ]
        );
        keys_of(tree.iter(&g))
    });
    let got = r
        .expect("deadlock: closure reading the tree")
        .expect("panicked");
    assert_eq!(got, [10, 15, 30, u64::MAX]);
}

/// `stats()` is a read (it changes nothing); calling it from a writer
/// closure must not deadlock.
#[test]
fn stats_inside_writer_closures_does_not_deadlock() {
    let domain = RcuDomain::new();
    let tree: &'static RcuRadixTree<u64> = Box::leak(Box::new(RcuRadixTree::new_in(&domain)));
    for k in 0..10u64 {
        tree.insert(k, k);
    }
    let r = within(3, move || {
        let mut entries = 0;
        tree.retain(|_, _| {
            entries = tree.stats().entries;
            true
        });
        entries
    });
    match r {
        None => panic!("retain predicate calling tree.stats() deadlocked"),
        Some(Ok(n)) => assert_eq!(n, 10),
        Some(Err(_)) => panic!("retain predicate calling tree.stats() panicked"),
    }
}

/// The panic message of a write from inside a write.
const NESTED_WRITE: &str = "from inside one of its own writes";

/// A `get_or_insert_with` closure that writes the same tree panics with a
/// clear message (it deadlocked before: the writer lock is not
/// re-entrant); the tree is unchanged by the failed call and stays usable.
#[test]
fn get_or_insert_with_closure_writing_tree_panics_clearly() {
    let domain = RcuDomain::new();
    let tree: &'static RcuRadixTree<u64> = Box::leak(Box::new(RcuRadixTree::new_in(&domain)));
    tree.insert(1, 1);
    let d = domain.clone();
    let r = within(3, move || {
        let g = d.read_lock_owned();
        *tree.get_or_insert_with(
            2,
            || {
                tree.insert(3, 3);
                2
            },
            &g,
        )
    });
    match r {
        None => panic!("get_or_insert_with closure writing the tree deadlocked"),
        Some(Ok(v)) => panic!("the nested write was accepted (returned {v})"),
        Some(Err(e)) => assert!(
            panic_message(&*e).contains(NESTED_WRITE),
            "{}",
            panic_message(&*e)
        ),
    }
    let g = domain.read_lock_owned();
    assert_eq!(
        keys_of(tree.iter(&g)),
        [1],
        "the failed call changed the tree"
    );
    tree.insert(4, 4);
    assert_eq!(keys_of(tree.iter(&g)), [1, 4]);
}

/// A `retain` predicate that writes the same tree (a remove, a mark, a
/// clear) panics clearly, removes nothing, and leaves the tree usable.
#[test]
fn retain_closure_writing_tree_panics_clearly() {
    let domain = RcuDomain::new();
    let tree: &'static RcuRadixTree<u64> = Box::leak(Box::new(RcuRadixTree::new_in(&domain)));
    for k in 0..4u64 {
        tree.insert(k, k);
    }
    for write in 0..3 {
        let r = within(3, move || {
            tree.retain(|k, _| {
                if k == 1 {
                    match write {
                        0 => drop(tree.remove(2)),
                        1 => drop(tree.set_mark(2, Mark::M0)),
                        _ => tree.clear(),
                    }
                }
                k != 0
            })
        });
        match r {
            None => panic!("retain predicate writing the tree deadlocked ({write})"),
            Some(Ok(())) => panic!("the nested write was accepted ({write})"),
            Some(Err(e)) => assert!(
                panic_message(&*e).contains(NESTED_WRITE),
                "{}",
                panic_message(&*e)
            ),
        }
        let g = domain.read_lock_owned();
        assert_eq!(
            keys_of(tree.iter(&g)),
            [0, 1, 2, 3],
            "retain removed something ({write})"
        );
        assert!(!tree.is_marked(2, Mark::M0, &g));
    }
    tree.insert(9, 9);
    assert!(tree.contains_key(9, &domain.read_lock_owned()));
}

/// A writer that holds a guard on its own thread: writes never wait for a
/// grace period (even with a tiny memory limit forcing pressure), and every
/// reference read before stays valid with its old value until the guard
/// ends; then everything retired is dropped exactly once.
#[test]
fn writer_holding_guard_keeps_old_references_valid() {
    let domain = RcuDomain::with_config(Config::DEFAULT.memory_limit(4096));
    let c = Counter::default();
    let tree = RcuRadixTree::new_in(&domain);
    let keys: Vec<u64> = (0..64u64)
        .map(|i| i << 58 | i)
        .chain((0..200).map(|i| i * 3))
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    for &k in &keys {
        tree.insert(k, c.make(k));
    }
    let r = within(8, {
        let tree: &'static RcuRadixTree<Counted> = Box::leak(Box::new(tree));
        let c = c.clone();
        let domain = domain.clone();
        let keys = keys.clone();
        move || {
            let reader = domain.register();
            let g = reader.read_lock();
            let refs: Vec<(u64, &Counted)> = keys
                .iter()
                .map(|&k| (k, tree.get(k, &g).unwrap()))
                .collect();
            let mut it = tree.iter(&g);
            let first = it.next().map(|e| e.0);
            // Churn while holding the guard: replace, remove, retain, clear.
            for round in 0..20u64 {
                for &k in &keys {
                    drop(tree.insert(k, c.make(k + round)));
                }
                for &k in keys.iter().step_by(2) {
                    drop(tree.remove(k));
                }
                tree.retain(|k, _| k % 5 != 0);
                if round % 5 == 4 {
                    tree.clear();
                }
            }
            // Nothing read under the guard was dropped or changed.
            for (k, v) in &refs {
                assert_eq!((v.key, v.canary), (*k, CANARY));
            }
            let dropped_under_guard = c.drops();
            // The iterator created before the churn continues in order.
            let mut prev = first;
            for (k, v) in it {
                assert!(
                    prev.is_none_or(|p| p < k),
                    "out of order: {prev:?} then {k}"
                );
                assert_eq!(v.canary, CANARY, "freed value reached by an old iterator");
                prev = Some(k);
            }
            drop(g);
            (dropped_under_guard, tree.len())
        }
    });
    let (dropped_under_guard, _len) = r
        .expect("writer holding a guard deadlocked")
        .expect("panicked");
    // Every value retired in the closure was retired after its guard began.
    assert_eq!(
        dropped_under_guard, 0,
        "values dropped while a reader held them"
    );
    domain.drain();
    assert_eq!(c.doubles(), 0);
}

/// Exact drop accounting through every path that retires values: replace,
/// remove, into_inner, get_or_insert_with, retain, extend duplicates, clear
/// and dropping the tree.
#[test]
fn drop_accounting_is_exact_on_every_path() {
    let domain = RcuDomain::new();
    let c = Counter::default();
    let mut tree = RcuRadixTree::new_in(&domain);
    let mut model: BTreeSet<u64> = BTreeSet::new();
    let mut expect = 0;
    for k in (0..100u64).chain([u64::MAX, 1 << 63]) {
        assert!(tree.insert(k, c.make(k)).is_none());
        model.insert(k);
    }
    for k in 0..50u64 {
        assert_eq!(tree.insert(k, c.make(k)).map(|r| r.key()), Some(k));
        expect += 1;
    }
    domain.drain();
    assert_eq!(c.drops(), expect, "after replaces");
    for k in [3u64, 60, u64::MAX, 1 << 63, 12345] {
        if let Some(r) = tree.remove(k) {
            assert_eq!((r.key(), r.key), (k, k));
            model.remove(&k);
            expect += 1;
        }
    }
    domain.drain();
    assert_eq!(c.drops(), expect, "after removes");
    let v = tree.remove(70).unwrap().into_inner();
    model.remove(&70);
    assert_eq!(v.key, 70);
    assert_eq!(c.drops(), expect, "into_inner must not drop the value");
    drop(v);
    expect += 1;
    assert_eq!(c.drops(), expect);
    {
        let g = domain.read_lock_owned();
        let mut called = 0;
        assert_eq!(
            tree.get_or_insert_with(
                5,
                || {
                    called += 1;
                    c.make(555)
                },
                &g
            )
            .key,
            5
        );
        assert_eq!(called, 0, "f called for a present key");
        assert_eq!(
            tree.get_or_insert_with(
                1000,
                || {
                    called += 1;
                    c.make(1000)
                },
                &g
            )
            .key,
            1000
        );
        assert_eq!(called, 1);
        model.insert(1000);
    }
    let before = tree.len();
    tree.retain(|k, _| k % 3 != 0);
    let removed = model.iter().filter(|k| *k % 3 == 0).count();
    model.retain(|k| k % 3 != 0);
    assert_eq!(before - tree.len(), removed);
    expect += removed;
    domain.drain();
    assert_eq!(c.drops(), expect, "after retain");
    // Extend with duplicates, of present and absent keys.
    let batch: Vec<Counted> = vec![c.make(1), c.make(1), c.make(2000), c.make(2000), c.make(2)];
    let mut replaced = 0;
    let mut seen = BTreeSet::new();
    for v in &batch {
        if model.contains(&v.key) || !seen.insert(v.key) {
            replaced += 1;
        }
        seen.insert(v.key);
    }
    for v in &batch {
        model.insert(v.key);
    }
    tree.extend(batch.into_iter().map(|v| (v.key, v)));
    expect += replaced;
    domain.drain();
    assert_eq!(c.drops(), expect, "after extend");
    assert_eq!(tree.len(), model.len());
    let n = tree.len();
    tree.clear();
    assert_eq!((tree.len(), tree.is_empty()), (0, true));
    expect += n;
    domain.drain();
    assert_eq!(c.drops(), expect, "after clear");
    for k in 0..10 {
        tree.insert(k << 60, c.make(k));
    }
    drop(tree);
    domain.drain();
    assert_eq!(c.drops(), expect + 10, "after dropping the tree");
    assert_eq!(c.drops(), c.made());
    assert_eq!(c.doubles(), 0);
}

/// Stable keys at every level (some right next to churned keys, some
/// alone under compressed paths, some at the top of the key space) are each
/// yielded exactly once, in strictly increasing order, by range scans and by
/// next_after / prev_before walks, while a writer splits and collapses the
/// nodes around them and grows and shrinks the height.
#[test]
fn scans_under_churn_yield_stable_keys_exactly_once() {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    // Stable keys are even; churned keys are odd.
    let mut stable: BTreeSet<u64> = (0..400u64).map(|i| i * 4).collect();
    for j in 1..11 {
        stable.insert(2u64 << (6 * j - 1));
        stable.insert((3u64 << (6 * j)) & !1);
    }
    for i in 0..40u64 {
        stable.insert(u64::MAX - 1 - 2 * i);
        stable.insert((1 << 63) + 2 * i);
    }
    for &k in &stable {
        tree.insert(k, k);
    }
    let stable_v: Vec<u64> = stable.iter().copied().collect();
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(4);
    std::thread::scope(|s| {
        let (tree, done, stable_v) = (&tree, &done, &stable_v);
        s.spawn(move || {
            let mut rng = Rng(77);
            let mut churned: Vec<u64> = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let base = stable_v[rng.below(stable_v.len() as u64) as usize];
                let k = match rng.below(5) {
                    0 => base | 1,
                    1 => (base | 1).wrapping_add(2 * rng.below(64)),
                    2 => rng.next() | 1,
                    3 => u64::MAX - 2 * rng.below(300),
                    _ => (base ^ (1 << (1 + rng.below(63)))) | 1,
                };
                if rng.below(3) == 0 {
                    drop(tree.remove(k));
                } else {
                    drop(tree.insert(k, k));
                    churned.push(k);
                }
                if i.is_multiple_of(7) {
                    // Replace a stable key's value (it stays present).
                    drop(tree.insert(base, base));
                }
                if i.is_multiple_of(400) {
                    for k in churned.drain(..) {
                        drop(tree.remove(k));
                    }
                }
            }
            done.store(true, Ordering::Release);
        });
        let domain = &domain;
        s.spawn(move || {
            let reader = domain.register();
            let mut rng = Rng(99);
            let mut rounds = 0;
            while !done.load(Ordering::Acquire) || rounds < 5 {
                rounds += 1;
                let g = reader.read_lock();
                let pick = |rng: &mut Rng| match rng.below(3) {
                    0 => stable_v[rng.below(stable_v.len() as u64) as usize],
                    1 => rng.next(),
                    _ => [0, u64::MAX, 1 << 63][rng.below(3) as usize],
                };
                let (a, b) = {
                    let (x, y) = (pick(&mut rng), pick(&mut rng));
                    (x.min(y), x.max(y))
                };
                let want: Vec<u64> = stable.range(a..=b).copied().collect();
                // Range scan.
                let mut prev = None;
                let mut got = Vec::new();
                for (k, v) in tree.range(a..=b, &g) {
                    assert_eq!(k, *v);
                    assert!((a..=b).contains(&k), "{k:#x} outside {a:#x}..={b:#x}");
                    assert!(
                        prev.is_none_or(|p| p < k),
                        "out of order: {prev:x?} then {k:#x}"
                    );
                    assert!(
                        k % 2 == 1 || stable.contains(&k),
                        "never-inserted key {k:#x}"
                    );
                    prev = Some(k);
                    if k % 2 == 0 {
                        got.push(k);
                    }
                }
                assert_eq!(got, want, "range {a:#x}..={b:#x}");
                // next_after walk from a.
                let mut got = Vec::new();
                if tree.contains_key(a, &g) && a % 2 == 0 {
                    got.push(a);
                }
                let mut at = a;
                while let Some((k, _)) = tree.next_after(at, &g) {
                    assert!(k > at);
                    if k > b {
                        break;
                    }
                    if k % 2 == 0 {
                        got.push(k);
                    }
                    at = k;
                }
                assert_eq!(got, want, "next_after walk {a:#x}..={b:#x}");
                // prev_before walk from b.
                let mut got = Vec::new();
                if tree.contains_key(b, &g) && b % 2 == 0 {
                    got.push(b);
                }
                let mut at = b;
                while let Some((k, _)) = tree.prev_before(at, &g) {
                    assert!(k < at);
                    if k < a {
                        break;
                    }
                    if k % 2 == 0 {
                        got.push(k);
                    }
                    at = k;
                }
                got.reverse();
                assert_eq!(got, want, "prev_before walk {a:#x}..={b:#x}");
            }
        });
    });
}

/// Entries marked for the whole scan are found by marked scans exactly
/// once, in order, while a writer replaces them (marks carry over), toggles
/// marks on other entries, and splits/collapses nodes around them.
#[test]
fn marked_scans_under_churn_find_stable_marked_keys() {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    let mut stable_marked = BTreeSet::new();
    let mut stable_plain = BTreeSet::new();
    for i in 0..600u64 {
        let k = if i % 3 == 0 {
            i * 8
        } else {
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & !1
        };
        tree.insert(k, k);
        if i % 2 == 0 {
            tree.set_mark(k, Mark::M1);
            stable_marked.insert(k);
        } else {
            stable_plain.insert(k);
        }
    }
    let marked_v: Vec<u64> = stable_marked.iter().copied().collect();
    let done = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|s| {
        let (tree, done, marked_v) = (&tree, &done, &marked_v);
        s.spawn(move || {
            let mut rng = Rng(5);
            let mut odd = Vec::new();
            while Instant::now() < deadline {
                let base = marked_v[rng.below(marked_v.len() as u64) as usize];
                match rng.below(6) {
                    0 => drop(tree.insert(base, base)), // replace: mark must carry
                    1 | 2 => {
                        let k = (base | 1).wrapping_add(2 * rng.below(100));
                        drop(tree.insert(k, k));
                        tree.set_mark(k, Mark::M1);
                        odd.push(k);
                    }
                    3 => {
                        if let Some(k) = odd.pop() {
                            tree.clear_mark(k, Mark::M1);
                        }
                    }
                    4 => {
                        if let Some(k) = odd.pop() {
                            drop(tree.remove(k));
                        }
                    }
                    _ => {
                        let k = rng.next() | 1;
                        drop(tree.insert(k, k));
                        tree.set_mark(k, Mark::M1);
                        drop(tree.remove(k));
                    }
                }
            }
            done.store(true, Ordering::Release);
        });
        let (domain, stable_marked, stable_plain) = (&domain, &stable_marked, &stable_plain);
        s.spawn(move || {
            let reader = domain.register();
            let mut rounds = 0;
            while !done.load(Ordering::Acquire) || rounds < 5 {
                rounds += 1;
                let g = reader.read_lock();
                let mut got = Vec::new();
                let mut prev = None;
                for (k, v) in tree.iter_marked(Mark::M1, &g) {
                    assert_eq!(k, *v);
                    assert!(
                        prev.is_none_or(|p| p < k),
                        "out of order {prev:x?} then {k:#x}"
                    );
                    assert!(!stable_plain.contains(&k), "unmarked key {k:#x} yielded");
                    prev = Some(k);
                    if k % 2 == 0 {
                        got.push(k);
                    }
                }
                assert_eq!(
                    got,
                    marked_v.clone(),
                    "iter_marked missed or repeated a marked key"
                );
                let mut got = Vec::new();
                let mut at = None;
                loop {
                    let next = match at {
                        None => tree.first_marked(Mark::M1, &g),
                        Some(a) => tree.next_marked_after(a, Mark::M1, &g),
                    };
                    let Some((k, _)) = next else { break };
                    if k % 2 == 0 {
                        got.push(k);
                    }
                    at = Some(k);
                }
                assert_eq!(got, marked_v.clone(), "next_marked_after walk");
                let mut got = Vec::new();
                let mut at = u64::MAX;
                if tree.is_marked(at, Mark::M1, &g) && at % 2 == 0 {
                    got.push(at);
                }
                while let Some((k, _)) = tree.prev_marked_before(at, Mark::M1, &g) {
                    if k % 2 == 0 {
                        got.push(k);
                    }
                    at = k;
                }
                got.reverse();
                assert_eq!(got, marked_v.clone(), "prev_marked_before walk");
                for &k in stable_marked.iter().step_by(37) {
                    assert!(tree.is_marked(k, Mark::M1, &g), "{k:#x} lost its mark");
                }
                assert!(tree.any_marked(Mark::M1, &g));
            }
        });
    });
}

/// Two threads racing `get_or_insert_with` on the same keys: `f` runs once
/// per key and both get the same value.
#[test]
fn concurrent_get_or_insert_with_runs_f_once() {
    let domain = RcuDomain::new();
    let c = Counter::default();
    let tree = RcuRadixTree::new_in(&domain);
    let calls = AtomicUsize::new(0);
    let n = 3000u64;
    let key = |i: u64| {
        if i.is_multiple_of(2) {
            i
        } else {
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        }
    };
    let addrs: Vec<Vec<usize>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (tree, calls, c, domain) = (&tree, &calls, &c, &domain);
                s.spawn(move || {
                    let reader = domain.register();
                    let order: Vec<u64> = if t == 0 {
                        (0..n).collect()
                    } else {
                        (0..n).rev().collect()
                    };
                    let mut addrs = vec![0usize; n as usize];
                    for i in order {
                        let g = reader.read_lock();
                        let v = tree.get_or_insert_with(
                            key(i),
                            || {
                                calls.fetch_add(1, Ordering::SeqCst);
                                c.make(key(i))
                            },
                            &g,
                        );
                        assert_eq!(v.key, key(i));
                        addrs[i as usize] = v as *const Counted as usize;
                    }
                    addrs
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        n as usize,
        "f ran more than once for a key"
    );
    assert_eq!(tree.len(), n as usize);
    assert_eq!(addrs[0], addrs[1], "threads got different values for a key");
    drop(tree);
    domain.drain();
    assert_eq!(c.drops(), c.made());
}

/// Path compression and the documented shapes: two keys make one node
/// whatever bits they differ in; dense keys fill full nodes; the height
/// follows the keys and returns when they go.
#[test]
fn shapes_follow_the_keys() {
    let domain = RcuDomain::new();
    for (a, b) in [
        (0u64, 1u64),
        (0, u64::MAX),
        (1 << 63, (1 << 63) | 1),
        (u64::MAX - 1, u64::MAX),
        (0, 1 << 63),
        (5 << 30, 6 << 30),
    ] {
        let tree = RcuRadixTree::new_in(&domain);
        tree.insert(a, 0u8);
        let one = tree.stats();
        assert_eq!((one.entries, one.nodes, one.height), (1, 0, 0));
        assert!(one.leaf_bytes > 0);
        tree.insert(b, 1);
        let s = tree.stats();
        assert_eq!((s.entries, s.nodes, s.height), (2, 1, 1), "{a:#x} {b:#x}");
        // Keys that differ only in their last six bits share a bottom node,
        // which holds small values inline (two cells per slot, after the
        // node's 576 bytes); `b`, inserted into it, is inline, `a` a leaf.
        let bottom = a ^ b < 64;
        if bottom {
            assert!(s.node_bytes > 576 + 64 * 2, "{}", s.node_bytes);
            assert_eq!(s.leaf_bytes, one.leaf_bytes, "one entry in a leaf");
        } else {
            assert_eq!(s.node_bytes, 576);
            assert_eq!(s.leaf_bytes, 2 * one.leaf_bytes);
        }
        let g = domain.read_lock_owned();
        assert_eq!(keys_of(tree.iter(&g)), [a, b]);
        assert_eq!((tree.get(a, &g), tree.get(b, &g)), (Some(&0), Some(&1)));
        drop(g);
        drop(tree.remove(a));
        let s = tree.stats();
        if bottom {
            // An inline entry never moves out of its node (readers may hold
            // it): the node stays with one entry until that one goes too.
            assert_eq!((s.entries, s.nodes, s.height), (1, 1, 1), "{a:#x} {b:#x}");
            drop(tree.remove(b));
            let s = tree.stats();
            assert_eq!((s.entries, s.nodes, s.height), (0, 0, 0), "emptied");
            assert!(tree.is_empty());
            // The other way round, the leaf is left: it collapses.
            tree.insert(a, 0);
            tree.insert(b, 1);
            drop(tree.remove(b));
            let s = tree.stats();
            assert_eq!((s.entries, s.nodes, s.height), (1, 0, 0), "collapse");
            let g = domain.read_lock_owned();
            assert_eq!(tree.get(a, &g), Some(&0));
        } else {
            assert_eq!(
                (s.entries, s.nodes, s.height),
                (1, 0, 0),
                "collapse to a root leaf"
            );
        }
    }
    // Dense 0..4096: 64 full leaf-level nodes under one root.
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..4096u64 {
        tree.insert(k, ());
    }
    let s = tree.stats();
    assert_eq!((s.entries, s.nodes, s.height), (4096, 65, 2));
    // A key differing in the top bit: one new root above.
    tree.insert(1 << 63, ());
    let s = tree.stats();
    assert_eq!((s.nodes, s.height), (66, 3));
    drop(tree.remove(1 << 63));
    let s = tree.stats();
    assert_eq!((s.nodes, s.height), (65, 2));
    // Remove all but two keys of one leaf node: nodes collapse.
    for k in 2..4096u64 {
        drop(tree.remove(k));
    }
    let s = tree.stats();
    assert_eq!((s.entries, s.nodes, s.height), (2, 1, 1));
    let g = domain.read_lock_owned();
    assert_eq!(keys_of(tree.iter(&g)), [0, 1]);
}

/// A reader's iterator started on a tall tree continues correctly, and the
/// values it read stay alive, while writers on another thread shrink the
/// tree to nothing (height collapses) and clear it; values are dropped only
/// after the reader's guard ends.
#[test]
fn reader_survives_shrink_and_clear_on_another_thread() {
    let domain = RcuDomain::new();
    let c = Counter::default();
    let tree = RcuRadixTree::new_in(&domain);
    // Keys at every level; odd ones stay for the whole scan.
    let set: BTreeSet<u64> = (0..11u64)
        .flat_map(|j| (0..6u64).map(move |i| ((i + 1) << (6 * j)) + (i % 2)))
        .chain([u64::MAX, u64::MAX - 1])
        .collect();
    let keys: Vec<u64> = set.iter().copied().collect();
    for &k in &keys {
        tree.insert(k, c.make(k));
    }
    let reader = domain.register();
    let g = reader.read_lock();
    let mut it = tree.iter(&g);
    let mut split = 0;
    for _ in 0..keys.len() / 3 {
        split = it.next().unwrap().0;
    }
    let held: Vec<&Counted> = keys.iter().map(|&k| tree.get(k, &g).unwrap()).collect();
    // Phase 1, on another thread: remove every even key from the top down
    // (nodes collapse at every level), and replace the odd ones.
    std::thread::scope(|s| {
        s.spawn(|| {
            for &k in keys.iter().rev() {
                if k % 2 == 0 {
                    assert!(tree.remove(k).is_some());
                }
            }
            for &k in &keys {
                if k % 2 == 1 {
                    assert!(tree.insert(k, c.make(k)).is_some());
                }
            }
        });
    });
    // The iterator keeps going; every odd key after the split point (present
    // for the whole scan) must still come, in order, with live values.
    let rest: Vec<u64> = it
        .map(|(k, v)| {
            assert_eq!((v.key, v.canary), (k, CANARY));
            k
        })
        .collect();
    assert!(
        rest.windows(2).all(|w| w[0] < w[1]),
        "out of order: {rest:x?}"
    );
    assert!(rest.iter().all(|&k| k > split));
    let odd_after: Vec<u64> = set
        .range(split + 1..)
        .copied()
        .filter(|k| k % 2 == 1)
        .collect();
    let rest_odd: Vec<u64> = rest.iter().copied().filter(|k| k % 2 == 1).collect();
    assert_eq!(
        rest_odd, odd_after,
        "keys present for the whole scan missed"
    );
    // Phase 2: clear on another thread, while this reader still holds refs.
    std::thread::scope(|s| {
        s.spawn(|| tree.clear());
    });
    let drained = {
        let d = domain.clone();
        std::thread::spawn(move || d.drain())
    };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.drops(), 0, "values dropped while a reader holds them");
    for (v, &k) in held.iter().zip(&keys) {
        assert_eq!((v.key, v.canary), (k, CANARY));
    }
    assert_eq!(tree.first(&g).map(|e| e.0), None);
    drop(g);
    drained.join().unwrap();
    domain.drain();
    assert_eq!(c.doubles(), 0);
    assert_eq!(c.drops(), c.made(), "all values retired must be dropped");
}

/// A value whose drop panics (two of them, as in the `rcu-list` review).
struct Bomb {
    armed: bool,
    drops: Arc<AtomicUsize>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.armed {
            panic!("a value's drop panics (test)");
        }
    }
}

/// Values whose drops panic, dropped in one go (a `retain` batch, a
/// `clear`, the tree's own drop): every other value is still dropped, and
/// the process does not abort. Before, the first panic leaked the rest of
/// the batch or subtree (and `Vec`-style dropping of the rest during the
/// unwind would have aborted at the second).
#[test]
fn panicking_value_drops_neither_leak_the_rest_nor_abort() {
    let n = 300u64;
    let fill = |tree: &RcuRadixTree<Bomb>, drops: &Arc<AtomicUsize>| {
        for k in 0..n {
            let armed = k == 8 || k == 200;
            tree.insert(
                k * 977,
                Bomb {
                    armed,
                    drops: drops.clone(),
                },
            );
        }
    };
    // `retain` and `clear`: the drops run in a reclaim callback, whose panic
    // the engine reports and survives.
    for clear in [false, true] {
        let domain = RcuDomain::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let tree = RcuRadixTree::new_in(&domain);
        fill(&tree, &drops);
        if clear {
            tree.clear();
        } else {
            tree.retain(|k, _| k % 2 == 1);
        }
        domain.drain();
        let gone = if clear { n } else { n.div_ceil(2) } as usize;
        assert_eq!(drops.load(Ordering::SeqCst), gone, "clear: {clear}");
        assert_eq!(
            domain.stats().callback_panics,
            1,
            "one panic reported per batch"
        );
    }
    // The tree's own drop: the first panic comes out of it, after every
    // value was dropped.
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let tree = RcuRadixTree::new_in(&domain);
    fill(&tree, &drops);
    let r = catch_unwind(AssertUnwindSafe(|| drop(tree)));
    assert!(r.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), n as usize);
}

/// A writer's closure (`retain`'s `keep`, `get_or_insert_with`'s `f`) that
/// waits for a grace period of the tree's domain, here through
/// `Removed::into_inner`, while another thread inside a critical section
/// waits for the writer lock (`get_or_insert_with`, which takes a guard):
/// the grace period waits for that reader, the reader for the lock, the lock
/// for the grace period. The closure runs inside a critical section, so its
/// wait panics at once; the other writer then goes on.
fn closure_waiting_for_a_grace_period_panics(in_retain: bool) {
    let r = within(20, move || {
        let tree = Arc::new(RcuRadixTree::new_in(&RcuDomain::new()));
        for k in 0..10u64 {
            drop(tree.insert(k, k));
        }
        let mut held = Some(tree.remove(9).unwrap());
        let (in_closure_tx, in_closure_rx) = mpsc::channel::<()>();
        let other = {
            let tree = Arc::clone(&tree);
            std::thread::spawn(move || {
                let reader = tree.domain().register();
                in_closure_rx.recv().unwrap();
                let g = reader.read_lock();
                *tree.get_or_insert_with(100, || 100, &g)
            })
        };
        let mut wait = move || {
            if let Some(h) = held.take() {
                in_closure_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(50)); // the other reaches the lock
                assert_eq!(h.into_inner(), 9);
            }
        };
        let waited = catch_unwind(AssertUnwindSafe(|| {
            if in_retain {
                tree.retain(|k, _| {
                    wait();
                    k != 3
                });
            } else {
                let g = tree.domain().read_lock_owned(); // not this thread's: no check of its own
                tree.get_or_insert_with(
                    50,
                    || {
                        wait();
                        50
                    },
                    &g,
                );
            }
        }));
        let other = other.join().unwrap();
        let guard = tree.domain().read_lock_local();
        (waited.is_err(), other, keys_of(tree.iter(&guard)))
    });
    let (panicked, other, keys) = r
        .expect("the closure and a writer under a guard deadlocked")
        .expect("no panic outside the closure");
    assert!(
        panicked,
        "the wait for a grace period inside the closure did not panic"
    );
    // Nothing changed by the failed write; the other writer's key is in.
    assert_eq!((other, keys), (100, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 100]));
}

#[test]
fn retain_waiting_for_a_grace_period_panics_rather_than_deadlocks() {
    closure_waiting_for_a_grace_period_panics(true);
}

#[test]
fn get_or_insert_with_waiting_for_a_grace_period_panics_rather_than_deadlocks() {
    closure_waiting_for_a_grace_period_panics(false);
}

/// `stats().node_bytes` of one bottom node of `u64`s, as documented (it
/// said 576 plus two cells per slot, 1 600 bytes, where the node is 1 728).
#[test]
fn node_bytes_of_a_bottom_node_are_as_documented() {
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&RcuDomain::new());
    for k in 0..64u64 {
        drop(tree.insert(k, k));
    }
    let s = tree.stats();
    assert_eq!((s.nodes, s.entries), (1, 64));
    assert_eq!(s.node_bytes, 1728);
}
