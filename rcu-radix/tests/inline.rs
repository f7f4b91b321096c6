//! Values stored inline in bottom nodes (two cells per slot): replacement
//! into the other cell and, when both are held, into a leaf; handles that
//! outlive their node and the tree; marks of inline entries; the scans'
//! fast path against the step-by-step one; values too large to go inline.

// Under `--cfg rcu_loom` rcu-core has no process-wide domain.
#![cfg(not(rcu_loom))]

mod common;

use common::Counted;
use rcu_core::RcuDomain;
use rcu_radix::{Mark, RcuRadixTree};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A small value (inline: 16 bytes) that counts its drops.
fn counted(key: u64, drops: &Arc<AtomicUsize>) -> Counted {
    Counted::new(key, drops)
}

/// A dense block of keys fills a bottom node: its values are inline (the
/// first key of a node pair stays a leaf).
#[test]
fn dense_keys_go_inline() {
    let domain = RcuDomain::new();
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..64u64 {
        tree.insert(k, k * 10);
    }
    let s = tree.stats();
    assert_eq!((s.entries, s.nodes, s.height), (64, 1, 1));
    // One leaf (key 0, there before the node); 63 values in cells.
    let one_leaf = {
        let t = RcuRadixTree::new_in(&domain);
        t.insert(0, 0u64);
        t.stats().leaf_bytes
    };
    assert_eq!(s.leaf_bytes, one_leaf);
    let g = domain.read_lock_owned();
    for k in 0..64 {
        assert_eq!(tree.get(k, &g), Some(&(k * 10)));
    }
    assert_eq!(tree.get(64, &g), None);
}

/// `collect`, and an `extend` of at least half the tree's entries, move
/// the values that splits left in leaves (the first key of each block of
/// 64, inserted in ascending order) into their bottom nodes, keeping their
/// marks; a leaf whose slot has both cells held by unreleased values stays
/// a leaf until a later pass. Every value is dropped once.
#[test]
fn bulk_inserts_move_leaves_inline() {
    // Fewer keys under Miri (it interprets every step).
    let n: u64 = if cfg!(miri) { 300 } else { 5000 };
    let collected: RcuRadixTree<u64> = (0..n).map(|k| (k, k * 3)).collect();
    let s = collected.stats();
    assert_eq!((s.entries, s.leaf_bytes), (n as usize, 0));
    let g = rcu_core::read_lock();
    assert!(
        collected
            .iter(&g)
            .map(|(k, v)| (k, *v))
            .eq((0..n).map(|k| (k, k * 3)))
    );
    drop(g);

    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut tree = RcuRadixTree::new_in(&domain);
    for k in 0..200 {
        tree.insert(k, counted(k, &drops));
    }
    let leaf = {
        let t = RcuRadixTree::new_in(&domain);
        t.insert(0, counted(0, &drops));
        t.stats().leaf_bytes
    };
    // Keys 0, 64, 128 and 192 lead their blocks: leaves.
    assert_eq!(tree.stats().leaf_bytes, 4 * leaf);
    tree.set_mark(0, Mark::M1);
    tree.set_mark(64, Mark::M0);
    // Key 128 replaced three times, the old values held: the first went into
    // cell 0, the second into cell 1, the third (both held) into a leaf.
    let held: Vec<_> = (1..=3)
        .map(|i| tree.insert(128, counted(1000 + i, &drops)))
        .collect();
    // A small extend (fewer than half the entries) leaves the leaves.
    tree.extend((300..310).map(|k| (k, counted(k, &drops))));
    assert_eq!(tree.stats().leaf_bytes, 5 * leaf, "0, 64, 128, 192, 300");
    tree.extend((400..700).map(|k| (k, counted(k, &drops))));
    // All moved but key 128's, whose cells are both held.
    assert_eq!(tree.stats().leaf_bytes, leaf);
    let check = |tree: &RcuRadixTree<Counted>| {
        let g = domain.read_lock_owned();
        let keys: Vec<u64> = tree
            .iter(&g)
            .map(|(k, v)| {
                assert_eq!(v.key, if k == 128 { 1003 } else { k });
                k
            })
            .collect();
        let want: Vec<u64> = (0..200).chain(300..310).chain(400..700).collect();
        assert_eq!(keys, want);
        assert!(tree.is_marked(0, Mark::M1, &g));
        let m0: Vec<u64> = tree.iter_marked(Mark::M0, &g).map(|(k, _)| k).collect();
        assert_eq!(m0, [64]);
        assert!(!tree.is_marked(128, Mark::M0, &g));
    };
    check(&tree);
    // Once the held values are gone, the next large extend moves 128 too.
    drop(held);
    domain.drain();
    tree.extend((1000..1600).map(|k| (k, counted(k, &drops))));
    assert_eq!(tree.stats().leaf_bytes, 0);
    {
        let g = domain.read_lock_owned();
        assert_eq!(tree.get(128, &g).map(|v| v.key), Some(1003));
        assert_eq!(tree.len(), 200 + 10 + 300 + 600);
    }
    drop(tree);
    domain.drain();
    // 1 + 1110 entries and the three replaced values of key 128.
    assert_eq!(drops.load(Ordering::SeqCst), 1 + 1110 + 3);
}

/// Replacing a value twice while a reader holds both old ones: the first
/// goes into the other cell, the second (both cells held) into a leaf; the
/// reader's references keep their values, and every value is dropped once.
#[test]
fn replacements_within_a_grace_period() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..8 {
        tree.insert(k, counted(k, &drops));
    }
    let reader = domain.register();
    let g = reader.read_lock();
    let v0 = tree.get(5, &g).unwrap();
    let h1 = tree.insert(5, counted(105, &drops)).unwrap();
    let v1 = tree.get(5, &g).unwrap();
    let h2 = tree.insert(5, counted(205, &drops)).unwrap();
    let v2 = tree.get(5, &g).unwrap();
    let h3 = tree.insert(5, counted(305, &drops)).unwrap();
    assert_eq!((v0.key, v1.key, v2.key), (5, 105, 205));
    assert_eq!((h1.key, h2.key, h3.key), (5, 105, 205));
    assert_eq!(tree.get(5, &g).unwrap().key, 305);
    // The third went to a leaf (both cells held): two leaves, 0 and 5.
    let leaf = |t: &RcuRadixTree<Counted>| t.stats().leaf_bytes;
    let one = RcuRadixTree::new_in(&domain);
    one.insert(0, counted(0, &Arc::new(AtomicUsize::new(0))));
    assert_eq!(leaf(&tree), 2 * leaf(&one));
    drop((h1, h2, h3));
    // Not dropped while the reader may still see them.
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    assert_eq!((v0.key, v1.key, v2.key), (5, 105, 205));
    drop(g);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 3);
    // The cells are free again: more replacements, then the tree's drop.
    for round in 0..10 {
        drop(tree.insert(5, counted(1000 + round, &drops)));
        domain.drain();
    }
    assert_eq!(drops.load(Ordering::Relaxed), 13);
    let g = reader.read_lock();
    let ids: Vec<u64> = tree.iter(&g).map(|(_, v)| v.key).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 1009, 6, 7]);
    drop(g);
    drop(tree);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 21);
}

/// A handle to an inline value keeps its bottom node alive after the node
/// is unlinked, and after the tree is dropped; the value is dropped once.
#[test]
fn handles_outlive_their_node_and_tree() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let tree = RcuRadixTree::new_in(&domain);
    tree.insert(64, counted(64, &drops));
    tree.insert(65, counted(65, &drops)); // inline
    tree.insert(66, counted(66, &drops)); // inline
    let a = tree.remove(65).unwrap();
    let b = tree.remove(66).unwrap();
    let c = tree.remove(64).unwrap(); // the node empties: unlinked, retired
    assert!(tree.is_empty());
    assert_eq!(tree.stats().nodes, 0);
    domain.drain(); // the node's retire has run; the handles pin it
    assert_eq!((a.key(), b.key(), c.key()), (65, 66, 64));
    assert_eq!((a.key, b.key, c.key), (65, 66, 64));
    drop(tree);
    assert_eq!(a.key, 65);
    let b = b.into_inner(); // moved out, not dropped
    assert_eq!(b.key, 66);
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    drop((a, c));
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    drop(b);
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

/// An inline value with interior mutability is never copied: the handle of
/// a replaced value and a reader's reference are the same object.
#[test]
fn replaced_values_are_not_copied() {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<Mutex<Vec<u64>>> = RcuRadixTree::new_in(&domain);
    tree.insert(0, Mutex::new(vec![]));
    tree.insert(1, Mutex::new(vec![1])); // inline
    let reader = domain.register();
    let g = reader.read_lock();
    let seen = tree.get(1, &g).unwrap();
    let old = tree.insert(1, Mutex::new(vec![2])).unwrap();
    seen.lock().unwrap().extend(0..100);
    assert_eq!(old.lock().unwrap().len(), 101);
    assert!(std::ptr::eq(seen, &*old));
    drop(g);
    assert_eq!(old.into_inner().into_inner().unwrap().len(), 101);
}

/// Marks of inline entries live in their node's bitmaps: set, clear,
/// search, and carry over through replacements, also into a leaf.
#[test]
fn marks_of_inline_entries() {
    let domain = RcuDomain::new();
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..200u64 {
        tree.insert(k, k);
    }
    for k in (0..200).step_by(7) {
        assert!(tree.set_mark(k, Mark::M1));
    }
    assert!(tree.clear_mark(14, Mark::M1));
    assert!(!tree.set_mark(500, Mark::M1));
    let reader = domain.register();
    let expect: Vec<u64> = (0..200).step_by(7).filter(|&k| k != 14).collect();
    {
        let g = reader.read_lock();
        let marked: Vec<u64> = tree.iter_marked(Mark::M1, &g).map(|(k, _)| k).collect();
        assert_eq!(marked, expect);
        assert!(tree.is_marked(70, Mark::M1, &g));
        assert!(!tree.is_marked(70, Mark::M0, &g));
        assert!(!tree.is_marked(14, Mark::M1, &g));
        assert_eq!(tree.first_marked(Mark::M1, &g), Some((0, &0)));
        assert_eq!(tree.next_marked_after(0, Mark::M1, &g), Some((7, &7)));
        assert_eq!(tree.next_marked_after(7, Mark::M1, &g), Some((21, &21)));
        assert_eq!(tree.prev_marked_before(21, Mark::M1, &g), Some((7, &7)));
        assert_eq!(
            tree.prev_marked_before(200, Mark::M1, &g),
            Some((196, &196))
        );
        assert!(tree.any_marked(Mark::M1, &g));
        assert!(!tree.any_marked(Mark::M2, &g));
    }
    // Replace 70 three times under a guard (the last goes to a leaf): the
    // mark carries over each time.
    let g = reader.read_lock();
    let hs: Vec<_> = (0..3).map(|i| tree.insert(70, 7000 + i)).collect();
    assert!(tree.is_marked(70, Mark::M1, &g));
    assert_eq!(tree.get(70, &g), Some(&7002));
    drop(g);
    drop(hs);
    domain.drain();
    // Back inline once the cells are free, still marked.
    drop(tree.insert(70, 70));
    let g = reader.read_lock();
    assert!(tree.is_marked(70, Mark::M1, &g));
    drop(g);
    // A removed entry's mark goes with it.
    drop(tree.remove(77));
    drop(tree.insert(77, 77));
    let g = reader.read_lock();
    assert!(!tree.is_marked(77, Mark::M1, &g));
    let marked: Vec<u64> = tree.iter_marked(Mark::M1, &g).map(|(k, _)| k).collect();
    let expect: Vec<u64> = expect.into_iter().filter(|&k| k != 77).collect();
    assert_eq!(marked, expect);
    drop(g);
    for k in expect {
        assert!(tree.clear_mark(k, Mark::M1));
    }
    assert!(!tree.any_marked(Mark::M1, &reader.read_lock()));
}

/// `fold` (the fast path of `sum`, `for_each`...) and `next` yield the
/// same entries, with their latest values, over ranges that start and end
/// inside nodes, with values in both cells of a slot and leaves mixed into
/// bottom nodes.
#[test]
fn fold_agrees_with_next() {
    let domain = RcuDomain::new();
    let tree = RcuRadixTree::new_in(&domain);
    // Fewer keys under Miri (it interprets every step).
    let n: u64 = if cfg!(miri) { 700 } else { 3000 };
    let mut model = std::collections::BTreeMap::new();
    for k in (0..n).filter(|k| k % 5 != 3) {
        tree.insert(k, 10 * k);
        model.insert(k, 10 * k);
    }
    // Under a guard, so that no replaced cell is free again: values in cell
    // 1 (keys replaced once, every third; runs of both cells side by side)
    // and leaves inside bottom nodes (keys replaced twice, every eleventh).
    let reader = domain.register();
    let g = reader.read_lock();
    let mut held = Vec::new();
    for k in (0..n).filter(|k| k % 5 != 3) {
        let times = if k % 11 == 0 {
            2
        } else {
            u64::from(k % 3 == 0)
        };
        for t in 1..=times {
            held.push(tree.insert(k, 10 * k + t));
            model.insert(k, 10 * k + t);
        }
    }
    drop(g);
    let g = reader.read_lock();
    for (lo, hi) in [
        (0, n - 1),
        (1, 64),
        (63, 64),
        (60, 300),
        (129, 129),
        (n - 10, u64::MAX),
    ] {
        // A `for` loop calls `next`; `fold` takes the fast path.
        let by_next: Vec<(u64, u64)> = {
            let mut v = Vec::new();
            for (k, x) in tree.range(lo..=hi, &g) {
                v.push((k, *x));
            }
            v
        };
        let by_fold: Vec<(u64, u64)> = tree.range(lo..=hi, &g).fold(Vec::new(), |mut v, (k, x)| {
            v.push((k, *x));
            v
        });
        let expect: Vec<(u64, u64)> = model.range(lo..=hi).map(|(&k, &v)| (k, v)).collect();
        assert!(by_next == expect, "next over {lo}..={hi}");
        assert!(by_fold == expect, "fold over {lo}..={hi}");
        // A partly consumed iterator folds the rest.
        let mut it = tree.range(lo..=hi, &g);
        let first = it.next();
        let rest: Vec<(u64, u64)> = it.fold(Vec::new(), |mut v, (k, x)| {
            v.push((k, *x));
            v
        });
        assert_eq!(first.map(|(k, x)| (k, *x)), expect.first().copied());
        assert_eq!(rest, expect.get(1..).unwrap_or_default());
    }
    let sum: u64 = tree.iter(&g).map(|(_, v)| *v).sum();
    assert_eq!(sum, model.values().sum());
}

/// Values larger than 32 bytes never go inline: bottom nodes are plain
/// nodes, every entry a leaf.
#[test]
fn large_values_stay_in_leaves() {
    let domain = RcuDomain::new();
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..64u64 {
        tree.insert(k, [k; 5]);
    }
    let s = tree.stats();
    assert_eq!((s.entries, s.nodes), (64, 1));
    assert_eq!(s.node_bytes, 576);
    let g = domain.read_lock_owned();
    assert_eq!(tree.get(9, &g), Some(&[9; 5]));
    drop(tree.remove(9));
    assert_eq!(tree.get(9, &g), None);
}

/// A bottom node whose only child is a leaf: its last inline entry
/// replaced twice while both cells are held (the second replacement goes
/// into a leaf of its own). Every read still finds the key, a neighbour
/// inserted and removed again leaves it so, and removing the leaf empties
/// the node, which is unlinked (its parent collapses); drop counts exact.
#[test]
fn bottom_node_with_a_single_leaf() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut made = 0usize;
    let tree = RcuRadixTree::new_in(&domain);
    let far = 1u64 << 20;
    tree.insert(far, counted(far, &drops));
    tree.insert(64, counted(64, &drops));
    tree.insert(65, counted(65, &drops)); // bottom node: leaf 64, inline 65
    made += 3;
    drop(tree.remove(64)); // only inline 65 left
    tree.set_mark(65, Mark::M1);
    // Two replacements while both handles are held: 65 becomes a leaf, the
    // node's only child.
    let h1 = tree.insert(65, counted(65, &drops)).unwrap();
    let h2 = tree.insert(65, counted(65, &drops)).unwrap();
    made += 2;
    // The root node and the bottom node, which stays for its one leaf.
    assert_eq!((tree.stats().entries, tree.stats().nodes), (2, 2));
    {
        let r = domain.register();
        let g = r.read_lock();
        assert_eq!(tree.get(65, &g).unwrap().key, 65);
        assert!(tree.is_marked(65, Mark::M1, &g));
        let keys: Vec<u64> = tree.iter(&g).map(|(k, _)| k).collect();
        assert_eq!(keys, [65, far]);
        let s: u64 = tree.iter(&g).map(|(k, _)| k).sum();
        assert_eq!(s, 65 + far);
        assert_eq!(tree.first_marked(Mark::M1, &g).map(|(k, _)| k), Some(65));
        assert_eq!(tree.prev_before(far, &g).map(|(k, _)| k), Some(65));
        assert_eq!(
            tree.prev_marked_before(u64::MAX, Mark::M1, &g)
                .map(|(k, _)| k),
            Some(65)
        );
    }
    assert!(tree.clear_mark(65, Mark::M1));
    // Insert a neighbour inline, then remove it: the node collapses around
    // the leaf.
    tree.insert(66, counted(66, &drops));
    made += 1;
    drop(tree.remove(66));
    assert_eq!((tree.stats().entries, tree.stats().nodes), (2, 1));
    {
        let r = domain.register();
        let g = r.read_lock();
        let keys: Vec<u64> = tree.iter(&g).map(|(k, _)| k).collect();
        assert_eq!(keys, [65, far]);
    }
    // Back into a bottom node, single leaf again, then remove it (node
    // empties; parent collapses).
    tree.insert(67, counted(67, &drops));
    made += 1;
    let h3 = tree.insert(67, counted(67, &drops)).unwrap();
    let h4 = tree.insert(67, counted(67, &drops)).unwrap();
    made += 2;
    drop(tree.remove(65));
    drop(tree.remove(67));
    {
        let r = domain.register();
        let g = r.read_lock();
        let keys: Vec<u64> = tree.iter(&g).map(|(k, _)| k).collect();
        assert_eq!(keys, [far]);
        assert!(tree.first_marked(Mark::M1, &g).is_none());
    }
    drop((h1, h2, h3, h4));
    domain.drain();
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), made - 1);
    drop(tree);
    assert_eq!(drops.load(Ordering::Relaxed), made);
}
