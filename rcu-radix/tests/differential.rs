//! Differential tests against `std::collections::BTreeMap`: seeded random
//! operation sequences over several key distributions (dense, clustered,
//! random over the whole `u64` range, next to `u64::MAX`), checking every
//! read and the tree's shape as it grows and shrinks.

// Under `--cfg rcu_loom` rcu-core has no process-wide domain.
#![cfg(not(rcu_loom))]

mod common;

use common::Rng;
use rcu_core::RcuDomain;
use rcu_radix::{Mark, RcuRadixTree};
use std::collections::BTreeMap;
use std::ops::Bound;

const MARKS: [Mark; 3] = [Mark::M0, Mark::M1, Mark::M2];

#[derive(Clone, Copy, Debug)]
enum Keys {
    /// 0..256: one or two full leaf levels.
    Dense,
    /// A few clusters spread over the key space: splits at every shift.
    Clustered,
    /// Anything in u64.
    Random,
    /// Near u64::MAX and near 0: the tallest tree, and its shrink.
    Edges,
}

fn key(rng: &mut Rng, keys: Keys) -> u64 {
    match keys {
        Keys::Dense => rng.below(256),
        Keys::Clustered => {
            let base =
                [0, 1 << 20, 1 << 40, 0xdead_0000_0000, u64::MAX - 4096][rng.below(5) as usize];
            base.wrapping_add(rng.below(4096) << (rng.below(3) * 6))
        }
        Keys::Random => rng.next(),
        Keys::Edges => match rng.below(3) {
            0 => rng.below(64),
            1 => u64::MAX - rng.below(64),
            _ => (1u64 << rng.below(64)).wrapping_sub(rng.below(2)),
        },
    }
}

/// A key for probing: one from the distribution, a neighbour of a present
/// key, or an extreme.
fn probe(rng: &mut Rng, keys: Keys, model: &BTreeMap<u64, (u64, u8)>) -> u64 {
    match rng.below(4) {
        0 | 1 => key(rng, keys),
        2 => {
            let k = model
                .keys()
                .nth(rng.below(model.len().max(1) as u64) as usize)
                .copied()
                .unwrap_or(0);
            k.wrapping_add(rng.below(3)).wrapping_sub(1)
        }
        _ => [0, 1, u64::MAX, u64::MAX - 1][rng.below(4) as usize],
    }
}

fn bound(rng: &mut Rng, k: u64) -> Bound<u64> {
    match rng.below(3) {
        0 => Bound::Included(k),
        1 => Bound::Excluded(k),
        _ => Bound::Unbounded,
    }
}

fn marked(model: &BTreeMap<u64, (u64, u8)>, m: Mark) -> impl Iterator<Item = (&u64, &(u64, u8))> {
    model
        .iter()
        .filter(move |(_, (_, marks))| marks & (1 << m as u8) != 0)
}

fn run(seed: u64, keys: Keys, ops: usize) {
    let domain = RcuDomain::new();
    let mut tree = RcuRadixTree::new_in(&domain);
    let reader = domain.register();
    let mut model: BTreeMap<u64, (u64, u8)> = BTreeMap::new();
    let mut rng = Rng(seed);
    for step in 0..ops {
        let op = rng.below(100);
        let k = probe(&mut rng, keys, &model);
        let guard = reader.read_lock();
        match op {
            0..=29 => {
                let k = key(&mut rng, keys);
                let v = rng.next();
                let old = tree.insert(k, v).map(|r| *r);
                let marks = model.get(&k).map_or(0, |e| e.1);
                assert_eq!(
                    old,
                    model.insert(k, (v, marks)).map(|e| e.0),
                    "insert {k} at {step}"
                );
            }
            30..=44 => {
                let removed = tree.remove(k).map(|r| (r.key(), *r));
                assert_eq!(
                    removed,
                    model.remove(&k).map(|e| (k, e.0)),
                    "remove {k} at {step}"
                );
            }
            45..=52 => {
                let m = MARKS[rng.below(3) as usize];
                let set = rng.below(2) == 0;
                let found = if set {
                    tree.set_mark(k, m)
                } else {
                    tree.clear_mark(k, m)
                };
                assert_eq!(found, model.contains_key(&k));
                if let Some(e) = model.get_mut(&k) {
                    if set {
                        e.1 |= 1 << m as u8;
                    } else {
                        e.1 &= !(1 << m as u8);
                    }
                }
            }
            53..=60 => {
                assert_eq!(tree.get(k, &guard), model.get(&k).map(|e| &e.0), "get {k}");
                assert_eq!(tree.contains_key(k, &guard), model.contains_key(&k));
            }
            61..=66 => {
                let want = model.range((Bound::Excluded(k), Bound::Unbounded)).next();
                assert_eq!(
                    tree.next_after(k, &guard),
                    want.map(|(k, e)| (*k, &e.0)),
                    "next_after {k}"
                );
                let want = model.range(..k).next_back();
                assert_eq!(
                    tree.prev_before(k, &guard),
                    want.map(|(k, e)| (*k, &e.0)),
                    "prev_before {k}"
                );
            }
            67..=74 => {
                let k2 = probe(&mut rng, keys, &model);
                let (lo, hi) = (k.min(k2), k.max(k2));
                let (b1, b2) = (bound(&mut rng, lo), bound(&mut rng, hi));
                if lo == hi && matches!((b1, b2), (Bound::Excluded(_), Bound::Excluded(_))) {
                    continue;
                }
                let got: Vec<(u64, u64)> =
                    tree.range((b1, b2), &guard).map(|(k, v)| (k, *v)).collect();
                let want: Vec<(u64, u64)> = model.range((b1, b2)).map(|(k, e)| (*k, e.0)).collect();
                assert_eq!(got, want, "range {b1:?}..{b2:?} at {step}");
                // Internal iteration (`fold`, behind `sum` and `for_each`)
                // takes a fast path through bottom nodes; after a first
                // `next`, too.
                let mut it = tree.range((b1, b2), &guard);
                let first = it.next().map(|(k, v)| (k, *v));
                let folded = it.fold(Vec::from_iter(first), |mut acc, (k, v)| {
                    acc.push((k, *v));
                    acc
                });
                assert_eq!(folded, want, "folded range {b1:?}..{b2:?} at {step}");
                let m = MARKS[rng.below(3) as usize];
                let got: Vec<u64> = tree
                    .range_marked((b1, b2), m, &guard)
                    .map(|(k, _)| k)
                    .collect();
                let want: Vec<u64> = model
                    .range((b1, b2))
                    .filter(|(_, e)| e.1 & (1 << m as u8) != 0)
                    .map(|(k, _)| *k)
                    .collect();
                assert_eq!(got, want, "range_marked {m:?} {b1:?}..{b2:?} at {step}");
            }
            75..=82 => {
                let m = MARKS[rng.below(3) as usize];
                assert_eq!(
                    tree.is_marked(k, m, &guard),
                    model.get(&k).is_some_and(|e| e.1 & (1 << m as u8) != 0)
                );
                assert_eq!(
                    tree.any_marked(m, &guard),
                    marked(&model, m).next().is_some()
                );
                let first = marked(&model, m).next().map(|(k, _)| *k);
                assert_eq!(tree.first_marked(m, &guard).map(|e| e.0), first);
                let next = marked(&model, m).find(|(mk, _)| **mk > k).map(|(k, _)| *k);
                assert_eq!(
                    tree.next_marked_after(k, m, &guard).map(|e| e.0),
                    next,
                    "next_marked_after {k}"
                );
                let prev = marked(&model, m)
                    .filter(|(mk, _)| **mk < k)
                    .last()
                    .map(|(k, _)| *k);
                assert_eq!(
                    tree.prev_marked_before(k, m, &guard).map(|e| e.0),
                    prev,
                    "prev_marked_before {k}"
                );
            }
            83..=88 => {
                assert_eq!(
                    tree.first(&guard),
                    model.iter().next().map(|(k, e)| (*k, &e.0))
                );
                assert_eq!(
                    tree.last(&guard),
                    model.iter().next_back().map(|(k, e)| (*k, &e.0))
                );
                assert_eq!(tree.len(), model.len());
            }
            89..=92 => {
                let v = rng.next();
                let got = *tree.get_or_insert_with(k, || v, &guard);
                let want = model.entry(k).or_insert((v, 0)).0;
                assert_eq!(got, want);
            }
            93 => {
                let m = rng.below(7) + 2;
                tree.retain(|k, v| (k ^ v) % m != 0);
                model.retain(|k, e| (k ^ e.0) % m != 0);
            }
            95 | 96 => {
                // `extend`: a few new pairs, and in one case out of two new
                // values for about three quarters of the present keys, so
                // that the pairs are at least half the entries: the tree
                // then moves values that splits left in leaves (among the
                // other quarter) into their bottom nodes, marks kept.
                let mut pairs: Vec<(u64, u64)> = (0..rng.below(4))
                    .map(|_| (key(&mut rng, keys), rng.next()))
                    .collect();
                if rng.below(2) == 0 {
                    let present: Vec<u64> = model.keys().copied().collect();
                    for k in present {
                        if rng.below(4) != 0 {
                            pairs.push((k, rng.next()));
                        }
                    }
                }
                tree.extend(pairs.iter().copied());
                for (k, v) in pairs {
                    let marks = model.get(&k).map_or(0, |e| e.1);
                    model.insert(k, (v, marks));
                }
                assert_eq!(tree.len(), model.len(), "extend at {step}");
            }
            94 if rng.below(20) == 0 => {
                tree.clear();
                model.clear();
            }
            _ => {
                let got: Vec<u64> = tree.iter(&guard).map(|(k, _)| k).collect();
                let want: Vec<u64> = model.keys().copied().collect();
                assert_eq!(got, want, "iter at {step}");
            }
        }
        drop(guard);
        if step % 64 == 0 {
            check_shape(&tree, &model);
        }
    }
    check_shape(&tree, &model);
    // Shrink: remove everything; the tree must end empty with no nodes.
    let keys: Vec<u64> = model.keys().copied().collect();
    for (i, k) in keys.iter().enumerate() {
        assert!(tree.remove(*k).is_some());
        if i % 16 == 0 {
            model.remove(k);
            for k in &keys[..i] {
                model.remove(k);
            }
            check_shape(&tree, &model);
        }
    }
    let s = tree.stats();
    assert_eq!((s.entries, s.nodes, s.height), (0, 0, 0));
    assert!(tree.is_empty());
}

/// The tree's shape agrees with the model: entry count, and a height no
/// greater than the keys need. Nodes have at least two children, except a
/// bottom node, which keeps a last inline entry until it goes: so a tree of
/// n keys has fewer than 2n nodes (fewer than n without such nodes), and
/// never a chain of one-child nodes.
fn check_shape(tree: &RcuRadixTree<u64>, model: &BTreeMap<u64, (u64, u8)>) {
    let s = tree.stats();
    assert_eq!(s.entries, model.len());
    assert_eq!(tree.len(), model.len());
    assert!(s.nodes < 2 * model.len().max(1), "{s:?}");
    assert!(s.height <= 11);
}

/// One seed under Miri, three otherwise.
fn seeds(first: u64) -> std::ops::Range<u64> {
    first..first + if cfg!(miri) { 1 } else { 3 }
}

fn ops() -> usize {
    if cfg!(miri) { 120 } else { 20_000 }
}

#[test]
fn dense() {
    for seed in seeds(1) {
        run(seed, Keys::Dense, ops());
    }
}

#[test]
fn clustered() {
    for seed in seeds(10) {
        run(seed, Keys::Clustered, ops());
    }
}

#[test]
fn random() {
    run(99, Keys::Random, ops());
}

#[test]
fn edges() {
    for seed in seeds(20) {
        run(seed, Keys::Edges, ops());
    }
}

/// The height grows by one level per six bits of key and shrinks back when
/// the high keys go.
#[test]
fn height_grows_and_shrinks() {
    let tree = RcuRadixTree::new();
    tree.insert(0, 0u64);
    assert_eq!(tree.stats().height, 0, "a lone entry sits in the root slot");
    tree.insert(1, 1);
    assert_eq!(tree.stats().height, 1);
    // Each key one digit higher adds a root above the old one.
    for bit in (6..64).step_by(6) {
        tree.insert(1 << bit, bit);
        let s = tree.stats();
        let levels = bit as usize / 6 + 1;
        assert_eq!((s.height, s.nodes), (levels, levels), "after 1 << {bit}");
    }
    tree.insert(u64::MAX, 7);
    assert_eq!(tree.stats().height, 11);
    let guard = rcu_core::read_lock();
    assert_eq!(tree.last(&guard), Some((u64::MAX, &7)));
    assert_eq!(tree.next_after(u64::MAX, &guard), None);
    assert_eq!(tree.prev_before(0, &guard), None);
    drop(guard);
    // Remove the high keys: the root collapses level by level.
    tree.remove(u64::MAX);
    for bit in (6..64).step_by(6).rev() {
        tree.remove(1 << bit);
        let s = tree.stats();
        let levels = bit as usize / 6;
        assert_eq!(
            (s.height, s.nodes),
            (levels, levels),
            "after removing 1 << {bit}"
        );
    }
    // Key 1 went inline into the bottom node of 0 and 1, where readers may
    // hold it: it never moves to a leaf, so the node stays until it goes.
    tree.remove(0);
    assert_eq!((tree.stats().height, tree.stats().nodes), (1, 1));
    assert_eq!(tree.first(&rcu_core::read_lock()), Some((1, &1)));
    tree.remove(1);
    assert_eq!(tree.stats().height, 0);
    assert!(tree.is_empty());
}

#[test]
#[should_panic(expected = "range start is greater than range end")]
fn range_start_after_end_panics() {
    let tree = RcuRadixTree::<u8>::new();
    let guard = rcu_core::read_lock();
    let (start, end) = (5, 4);
    let _ = tree.range(start..end, &guard);
}

#[test]
#[should_panic(expected = "range start and end are equal and excluded")]
fn range_excluded_equal_panics() {
    let tree = RcuRadixTree::<u8>::new();
    let guard = rcu_core::read_lock();
    let _ = tree.range((Bound::Excluded(5), Bound::Excluded(5)), &guard);
}

#[test]
#[should_panic(expected = "guard of another")]
fn guard_of_another_domain_panics() {
    let tree = RcuRadixTree::<u8>::new_in(&RcuDomain::new());
    let _ = tree.get(1, &rcu_core::read_lock());
}

#[test]
fn edge_ranges_are_exact() {
    let tree: RcuRadixTree<u64> = [0, 1, u64::MAX - 1, u64::MAX]
        .into_iter()
        .map(|k| (k, k))
        .collect();
    let guard = rcu_core::read_lock();
    let keys = |it: rcu_radix::Iter<'_, u64>| it.map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(tree.range(u64::MAX.., &guard)), [u64::MAX]);
    assert_eq!(
        keys(tree.range((Bound::Excluded(u64::MAX), Bound::Unbounded), &guard)),
        []
    );
    assert_eq!(keys(tree.range(..0, &guard)), []);
    assert_eq!(keys(tree.range(..=0, &guard)), [0]);
    assert_eq!(keys(tree.range(1..u64::MAX, &guard)), [1, u64::MAX - 1]);
    let mut it = tree.range(u64::MAX - 1.., &guard);
    assert_eq!(it.next().map(|e| e.0), Some(u64::MAX - 1));
    assert_eq!(it.next().map(|e| e.0), Some(u64::MAX));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None, "fused");
    assert_eq!(
        tree.next_after(u64::MAX - 1, &guard).map(|e| e.0),
        Some(u64::MAX)
    );
    assert_eq!(tree.prev_before(1, &guard).map(|e| e.0), Some(0));
    assert_eq!(
        format!("{tree:?}"),
        "{0: 0, 1: 1, 18446744073709551614: 18446744073709551614, 18446744073709551615: 18446744073709551615}"
    );
}
