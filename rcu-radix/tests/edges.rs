//! The public API at its edges: every `RangeBounds` form at keys near 0,
//! `u64::MAX` and powers of two (against `BTreeMap`, panics included),
//! nearest-key searches, fused iterators, marks through pinned cells and
//! `extend`, zero-sized and over-aligned values, drop accounting, guards of
//! every kind and domain, and writes refused inside closures.
#![cfg(not(rcu_loom))]

mod common;

use common::{Rng, panic_message};
use rcu_core::RcuDomain;
use rcu_radix::{Mark, RcuRadixTree};
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const MARKS: [Mark; 3] = [Mark::M0, Mark::M1, Mark::M2];

fn edge_keys() -> Vec<u64> {
    let mut v = common::EDGE_KEYS.to_vec();
    for b in 0..64 {
        v.push(1u64 << b);
        v.push((1u64 << b).wrapping_sub(1));
        v.push(u64::MAX ^ (1 << b));
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn bounds_list(keys: &[u64]) -> Vec<(Bound<u64>, Bound<u64>)> {
    let mut pts: Vec<u64> = Vec::new();
    for &k in keys {
        pts.push(k);
        pts.push(k.wrapping_add(1));
        pts.push(k.wrapping_sub(1));
    }
    pts.sort_unstable();
    pts.dedup();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = Vec::new();
    let mk = |rng: &mut Rng, k: u64| match rng.below(3) {
        0 => Bound::Included(k),
        1 => Bound::Excluded(k),
        _ => Bound::Unbounded,
    };
    for _ in 0..4000 {
        let a = pts[rng.below(pts.len() as u64) as usize];
        let b = if rng.below(4) == 0 {
            a
        } else {
            pts[rng.below(pts.len() as u64) as usize]
        };
        out.push((mk(&mut rng, a), mk(&mut rng, b)));
    }
    for &e in &[0, 1, u64::MAX - 1, u64::MAX] {
        for s in [Bound::Included(e), Bound::Excluded(e), Bound::Unbounded] {
            for t in [Bound::Included(e), Bound::Excluded(e), Bound::Unbounded] {
                out.push((s, t));
            }
        }
    }
    out
}

/// The tree's range as a vector, or Err if it panicked.
fn tree_range<V: Clone + Send + Sync + 'static>(
    tree: &RcuRadixTree<V>,
    r: impl RangeBounds<u64>,
    by_fold: bool,
) -> Result<Vec<(u64, V)>, ()> {
    catch_unwind(AssertUnwindSafe(|| {
        let g = tree.domain().read_lock_owned();
        if by_fold {
            let mut v = Vec::new();
            tree.range(r, &g).for_each(|(k, x)| v.push((k, x.clone())));
            v
        } else {
            let mut it = tree.range(r, &g);
            let mut v = Vec::new();
            for (k, x) in it.by_ref() {
                v.push((k, x.clone()));
            }
            // fused
            assert!(it.next().is_none());
            assert!(it.next().is_none());
            v
        }
    }))
    .map_err(|_| ())
}

fn model_range<V: Clone>(
    m: &BTreeMap<u64, V>,
    r: impl RangeBounds<u64>,
) -> Result<Vec<(u64, V)>, ()> {
    // An empty BTreeMap never panics; judge the range's validity on a
    // non-empty one (the documented rule).
    let probe: BTreeMap<u64, ()> = [(0, ()), (u64::MAX, ())].into_iter().collect();
    let (s, e) = (r.start_bound().cloned(), r.end_bound().cloned());
    catch_unwind(AssertUnwindSafe(|| probe.range((s, e)).count())).map_err(|_| ())?;
    catch_unwind(AssertUnwindSafe(|| {
        m.range(r).map(|(&k, v)| (k, v.clone())).collect()
    }))
    .map_err(|_| ())
}

#[test]
fn every_range_form_matches_btreemap_at_edges() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let s = info.to_string();
        if !s.contains("range start") && !s.contains("range end") {
            eprintln!("{s}");
        }
    }));
    let keys = edge_keys();
    // Several subsets: all, evens, only the edges, single key, empty.
    let subsets: Vec<Vec<u64>> = vec![
        keys.clone(),
        keys.iter().copied().step_by(2).collect(),
        keys.iter().copied().skip(1).step_by(3).collect(),
        vec![0, u64::MAX],
        vec![u64::MAX],
        vec![0],
        vec![1 << 63],
        vec![],
    ];
    let bl = bounds_list(&keys);
    for set in &subsets {
        let tree: RcuRadixTree<u64> = set.iter().map(|&k| (k, k ^ 0xabcd)).collect();
        let model: BTreeMap<u64, u64> = set.iter().map(|&k| (k, k ^ 0xabcd)).collect();
        for (i, &(s, e)) in bl.iter().enumerate() {
            let want = model_range(&model, (s, e));
            let got = tree_range(&tree, (s, e), i % 2 == 0);
            assert_eq!(got, want, "range ({s:?}, {e:?}) over {} keys", set.len());
            // Same through std range types where expressible.
            match (s, e) {
                (Bound::Included(a), Bound::Included(b)) => {
                    assert_eq!(tree_range(&tree, a..=b, false), want, "{a}..={b}");
                    assert_eq!(tree_range(&tree, &a..=&b, true), want, "&{a}..=&{b}");
                }
                (Bound::Included(a), Bound::Excluded(b)) => {
                    assert_eq!(tree_range(&tree, a..b, false), want, "{a}..{b}");
                    assert_eq!(tree_range(&tree, &a..&b, true), want, "&{a}..&{b}");
                }
                (Bound::Included(a), Bound::Unbounded) => {
                    assert_eq!(tree_range(&tree, a.., false), want, "{a}..");
                }
                (Bound::Unbounded, Bound::Included(b)) => {
                    assert_eq!(tree_range(&tree, ..=b, false), want, "..={b}");
                }
                (Bound::Unbounded, Bound::Excluded(b)) => {
                    assert_eq!(tree_range(&tree, ..b, true), want, "..{b}");
                }
                (Bound::Unbounded, Bound::Unbounded) => {
                    assert_eq!(tree_range(&tree, .., false), want, "..");
                }
                _ => {}
            }
        }
        // An exhausted RangeInclusive is empty (its end bound becomes
        // Excluded); BTreeMap does not panic for it.
        for &(a, b) in &[
            (3u64, 5u64),
            (u64::MAX - 1, u64::MAX),
            (0, 0),
            (u64::MAX, u64::MAX),
        ] {
            let mut r = a..=b;
            r.by_ref().for_each(drop);
            assert_eq!(
                tree_range(&tree, r.clone(), false),
                model_range(&model, r.clone()),
                "exhausted {a}..={b}"
            );
        }
    }
    std::panic::set_hook(prev);
}

#[test]
fn nearest_searches_exact_at_edges() {
    let keys = edge_keys();
    let subsets: Vec<Vec<u64>> = vec![
        keys.clone(),
        keys.iter().copied().step_by(2).collect(),
        keys.iter().copied().skip(1).step_by(5).collect(),
        vec![0],
        vec![u64::MAX],
        vec![0, u64::MAX],
        vec![],
    ];
    let mut probes: Vec<u64> = Vec::new();
    for &k in &keys {
        probes.extend([k, k.wrapping_add(1), k.wrapping_sub(1)]);
    }
    for set in &subsets {
        let tree: RcuRadixTree<u64> = RcuRadixTree::new();
        for &k in set {
            tree.insert(k, !k);
        }
        let model: BTreeMap<u64, u64> = set.iter().map(|&k| (k, !k)).collect();
        let g = rcu_core::read_lock();
        assert_eq!(tree.len(), model.len());
        assert_eq!(tree.is_empty(), model.is_empty());
        assert_eq!(
            tree.first(&g).map(|(k, v)| (k, *v)),
            model.first_key_value().map(|(k, v)| (*k, *v))
        );
        assert_eq!(
            tree.last(&g).map(|(k, v)| (k, *v)),
            model.last_key_value().map(|(k, v)| (*k, *v))
        );
        assert_eq!(tree.next_after(u64::MAX, &g), None);
        assert_eq!(tree.prev_before(0, &g), None);
        for &p in &probes {
            assert_eq!(tree.get(p, &g).copied(), model.get(&p).copied(), "get {p}");
            assert_eq!(tree.contains_key(p, &g), model.contains_key(&p));
            let na = p
                .checked_add(1)
                .and_then(|q| model.range(q..).next())
                .map(|(k, v)| (*k, *v));
            assert_eq!(
                tree.next_after(p, &g).map(|(k, v)| (k, *v)),
                na,
                "next_after {p}"
            );
            let pb = model.range(..p).next_back().map(|(k, v)| (*k, *v));
            assert_eq!(
                tree.prev_before(p, &g).map(|(k, v)| (k, *v)),
                pb,
                "prev_before {p}"
            );
        }
        // Walk forwards and backwards with the nearest searches.
        let mut fw = Vec::new();
        let mut cur = tree.first(&g);
        while let Some((k, _)) = cur {
            fw.push(k);
            cur = tree.next_after(k, &g);
        }
        assert_eq!(fw, model.keys().copied().collect::<Vec<_>>());
        let mut bw = Vec::new();
        let mut cur = tree.last(&g);
        while let Some((k, _)) = cur {
            bw.push(k);
            cur = tree.prev_before(k, &g);
        }
        bw.reverse();
        assert_eq!(bw, fw);
    }
}

#[test]
fn iterators_are_fused_even_when_the_tree_grows_after_none() {
    let tree: RcuRadixTree<u64> = RcuRadixTree::new();
    for k in [10u64, 20, 30] {
        tree.insert(k, k);
    }
    let g = rcu_core::read_lock();
    for (lo, hi) in [(0u64, 25u64), (0, u64::MAX), (15, 15), (31, u64::MAX)] {
        let mut it = tree.range(lo..=hi, &g);
        while it.next().is_some() {}
        // Insert keys inside the range, ahead and behind, then ask again.
        for k in [lo, hi, lo.saturating_add(1), 11, 21, 29, u64::MAX] {
            tree.insert(k, k);
        }
        for _ in 0..3 {
            assert!(it.next().is_none(), "range {lo}..={hi} not fused");
        }
        let mut it = tree.iter_marked(Mark::M2, &g);
        assert!(it.next().is_none());
        tree.insert(5, 5);
        tree.set_mark(5, Mark::M2);
        tree.set_mark(30, Mark::M2);
        assert!(it.next().is_none(), "iter_marked not fused");
        tree.clear_mark(5, Mark::M2);
        tree.clear_mark(30, Mark::M2);
    }
    // Iterator adaptors built on next/fold.
    let tree: RcuRadixTree<u64> = (0..1000u64).map(|k| (k * 7, k)).collect();
    let model: BTreeMap<u64, u64> = (0..1000u64).map(|k| (k * 7, k)).collect();
    let g = rcu_core::read_lock();
    assert_eq!(tree.iter(&g).count(), 1000);
    assert_eq!(tree.iter(&g).last().map(|(k, _)| k), Some(999 * 7));
    assert_eq!(tree.iter(&g).nth(500).map(|(k, _)| k), Some(500 * 7));
    assert_eq!(
        tree.range(100.., &g).nth(3).map(|(k, _)| k),
        model.range(100..).nth(3).map(|(k, _)| *k)
    );
    let mut it = tree.range(13..=5000, &g);
    let head: Vec<u64> = it.by_ref().take(37).map(|(k, _)| k).collect();
    let tail: Vec<u64> = it.fold(Vec::new(), |mut v, (k, _)| {
        v.push(k);
        v
    });
    let want: Vec<u64> = model.range(13..=5000).map(|(k, _)| *k).collect();
    assert_eq!([head, tail].concat(), want);
    assert_eq!(
        tree.iter(&g).map(|(_, v)| *v).sum::<u64>(),
        model.values().sum::<u64>()
    );
    assert_eq!(
        tree.iter(&g).step_by(3).map(|(k, _)| k).collect::<Vec<_>>(),
        model.keys().step_by(3).copied().collect::<Vec<_>>()
    );
    assert_eq!(
        tree.iter(&g).skip(990).map(|(k, _)| k).collect::<Vec<_>>(),
        model.keys().skip(990).copied().collect::<Vec<_>>()
    );
}

/// A counter type; counts live instances per test through an `Arc`.
#[derive(Debug)]
struct Counted {
    key: u64,
    ver: u64,
    live: Arc<AtomicUsize>,
}
impl Counted {
    fn new(key: u64, ver: u64, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Counted {
            key,
            ver,
            live: live.clone(),
        }
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks survive replacements into a pinned slot (both cells held, so the
/// replacement becomes a leaf), a later `extend` that moves the leaf back
/// into a cell, and removal clears them.
#[test]
fn marks_survive_pinned_replacement_and_extend_reinlining() {
    let domain = RcuDomain::new();
    let live = Arc::new(AtomicUsize::new(0));
    let mut tree: RcuRadixTree<Counted> = RcuRadixTree::new_in(&domain);
    let keys: Vec<u64> = (0..256u64)
        .chain([u64::MAX - 3, u64::MAX, 1 << 63])
        .collect();
    for &k in &keys {
        tree.insert(k, Counted::new(k, 0, &live));
    }
    let mut model: BTreeMap<u64, (u64, u8)> = keys.iter().map(|&k| (k, (0, 0))).collect();
    let mut rng = Rng(99);
    for &k in &keys {
        for (b, &m) in MARKS.iter().enumerate() {
            if rng.below(2) == 0 {
                assert!(tree.set_mark(k, m));
                model.get_mut(&k).unwrap().1 |= 1 << b;
            }
        }
    }
    // Replace every key twice and hold the handles: cells pinned.
    let mut held = Vec::new();
    for ver in 1..=3 {
        for &k in &keys {
            let o = tree.insert(k, Counted::new(k, ver, &live)).unwrap();
            assert_eq!((o.key(), o.ver), (k, ver - 1));
            held.push(o);
            model.get_mut(&k).unwrap().0 = ver;
        }
    }
    let check = |tree: &RcuRadixTree<Counted>, model: &BTreeMap<u64, (u64, u8)>, what: &str| {
        let g = tree.domain().read_lock_owned();
        for (&k, &(ver, marks)) in model {
            assert_eq!(
                tree.get(k, &g).map(|c| (c.key, c.ver)),
                Some((k, ver)),
                "{what}: get {k}"
            );
            for (b, &m) in MARKS.iter().enumerate() {
                assert_eq!(
                    tree.is_marked(k, m, &g),
                    marks & (1 << b) != 0,
                    "{what}: is_marked {k} {m:?}"
                );
            }
        }
        for (b, &m) in MARKS.iter().enumerate() {
            let want: Vec<u64> = model
                .iter()
                .filter(|(_, e)| e.1 & (1 << b) != 0)
                .map(|(k, _)| *k)
                .collect();
            let got: Vec<u64> = tree
                .iter_marked(m, &g)
                .map(|(k, c)| {
                    assert_eq!(c.key, k);
                    k
                })
                .collect();
            assert_eq!(got, want, "{what}: iter_marked {m:?}");
            assert_eq!(
                tree.first_marked(m, &g).map(|(k, _)| k),
                want.first().copied(),
                "{what}"
            );
            assert_eq!(tree.any_marked(m, &g), !want.is_empty());
            let mut back = Vec::new();
            let mut cur = tree.prev_marked_before(u64::MAX, m, &g);
            if tree.is_marked(u64::MAX, m, &g) {
                back.push(u64::MAX);
            }
            while let Some((k, _)) = cur {
                back.push(k);
                cur = tree.prev_marked_before(k, m, &g);
            }
            back.reverse();
            assert_eq!(back, want, "{what}: prev_marked_before walk {m:?}");
            let mut fw = Vec::new();
            let mut cur = tree.first_marked(m, &g);
            while let Some((k, _)) = cur {
                fw.push(k);
                cur = tree.next_marked_after(k, m, &g);
            }
            assert_eq!(fw, want, "{what}: next_marked_after walk {m:?}");
            assert!(tree.next_marked_after(u64::MAX, m, &g).is_none());
            assert!(tree.prev_marked_before(0, m, &g).is_none());
        }
        assert_eq!(tree.len(), model.len());
        assert_eq!(tree.stats().entries, model.len());
    };
    check(&tree, &model, "pinned");
    // Flip some marks while pinned.
    for &k in keys.iter().step_by(3) {
        let m = MARKS[(k % 3) as usize];
        let b = k % 3;
        if model[&k].1 & (1 << b) != 0 {
            assert!(tree.clear_mark(k, m));
            model.get_mut(&k).unwrap().1 &= !(1 << b);
        } else {
            assert!(tree.set_mark(k, m));
            model.get_mut(&k).unwrap().1 |= 1 << b;
        }
    }
    check(&tree, &model, "pinned, flipped");
    drop(held);
    domain.drain();
    check(&tree, &model, "unpinned");
    // A big extend (>= half the entries) re-inlines leaves: marks must stay.
    let pairs: Vec<(u64, Counted)> = keys
        .iter()
        .map(|&k| (k, Counted::new(k, 10, &live)))
        .collect();
    tree.extend(pairs);
    for e in model.values_mut() {
        e.0 = 10;
    }
    check(&tree, &model, "after extend");
    // Remove and reinsert: marks cleared.
    for &k in keys.iter().step_by(2) {
        let r = tree.remove(k).unwrap();
        assert_eq!((r.key(), r.ver), (k, 10));
        tree.insert(k, Counted::new(k, 11, &live));
        *model.get_mut(&k).unwrap() = (11, 0);
    }
    check(&tree, &model, "after remove+reinsert");
    let n = model.len();
    domain.drain();
    assert_eq!(live.load(Ordering::SeqCst), n, "live values after drain");
    drop(tree);
    domain.drain();
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "values leaked after tree drop"
    );
}

static ZST_LIVE: AtomicUsize = AtomicUsize::new(0);
#[derive(Debug, PartialEq)]
struct Zst;
impl Zst {
    fn new() -> Zst {
        ZST_LIVE.fetch_add(1, Ordering::SeqCst);
        Zst
    }
}
impl Drop for Zst {
    fn drop(&mut self) {
        ZST_LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn zero_sized_values_with_drop_are_counted() {
    let domain = RcuDomain::new();
    let mut tree: RcuRadixTree<Zst> = RcuRadixTree::new_in(&domain);
    let mut model = BTreeMap::new();
    let mut rng = Rng(7);
    let mut held = Vec::new();
    for i in 0..20000u64 {
        let k = match rng.below(4) {
            0 => rng.below(300),
            1 => u64::MAX - rng.below(300),
            2 => rng.next(),
            _ => (rng.below(4) << 62) | rng.below(130),
        };
        match rng.below(10) {
            0..=4 => {
                let o = tree.insert(k, Zst::new());
                assert_eq!(o.is_some(), model.insert(k, ()).is_some());
                if let Some(o) = o
                    && i % 3 == 0
                {
                    held.push(o);
                }
            }
            5..=7 => {
                let o = tree.remove(k);
                assert_eq!(o.is_some(), model.remove(&k).is_some());
                if let Some(o) = o {
                    assert_eq!(o.key(), k);
                    if i % 5 == 0 {
                        held.push(o);
                    }
                }
            }
            8 => {
                if held.len() > 50 {
                    held.clear();
                }
            }
            _ => {
                if i % 1000 == 9 {
                    let n = model.len();
                    tree.extend((0..(n as u64 / 2 + 1)).map(|j| (j * 64 + 1, Zst::new())));
                    for j in 0..(n as u64 / 2 + 1) {
                        model.insert(j * 64 + 1, ());
                    }
                }
            }
        }
        if i % 997 == 0 {
            let g = domain.read_lock_owned();
            let got: Vec<u64> = tree.iter(&g).map(|(k, _)| k).collect();
            let want: Vec<u64> = model.keys().copied().collect();
            assert_eq!(got, want);
            let mut folded = Vec::new();
            tree.iter(&g).for_each(|(k, _)| folded.push(k));
            assert_eq!(folded, want);
        }
    }
    held.clear();
    domain.drain();
    assert_eq!(
        ZST_LIVE.load(Ordering::SeqCst),
        model.len(),
        "ZST live count after drain"
    );
    assert_eq!(tree.len(), model.len());
    drop(tree);
    domain.drain();
    assert_eq!(
        ZST_LIVE.load(Ordering::SeqCst),
        0,
        "ZST leaked or double-dropped"
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(align(32))]
struct A32(u64, u64);

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(align(16))]
struct A16(u128);

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(align(64))]
struct A64(u64);

fn aligned_refs<V: Send + Sync + Copy + PartialEq + std::fmt::Debug + 'static>(
    mk: impl Fn(u64) -> V,
) {
    let align = align_of::<V>();
    let tree: RcuRadixTree<V> = RcuRadixTree::new();
    let keys: Vec<u64> = (0..500u64).chain((0..200).map(|k| u64::MAX - k)).collect();
    let mut held = Vec::new();
    for &k in &keys {
        tree.insert(k, mk(k));
    }
    for &k in keys.iter().step_by(3) {
        held.push(tree.insert(k, mk(k)).unwrap());
        held.push(tree.insert(k, mk(k)).unwrap());
    }
    let g = rcu_core::read_lock();
    for &k in &keys {
        let v = tree.get(k, &g).unwrap();
        assert_eq!(*v, mk(k));
        assert_eq!(
            std::ptr::from_ref(v).addr() % align,
            0,
            "get({k}) misaligned for align {align}"
        );
    }
    for (k, v) in tree.iter(&g) {
        assert_eq!(*v, mk(k));
        assert_eq!(
            std::ptr::from_ref(v).addr() % align,
            0,
            "iter {k} misaligned"
        );
    }
    tree.iter(&g).for_each(|(k, v)| {
        assert_eq!(*v, mk(k));
        assert_eq!(
            std::ptr::from_ref(v).addr() % align,
            0,
            "fold {k} misaligned"
        );
    });
    for h in &held {
        assert_eq!(
            std::ptr::from_ref::<V>(h).addr() % align,
            0,
            "handle misaligned"
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(align(64))]
struct Z64;

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(align(4096))]
struct Z4096;

#[test]
fn over_aligned_values_are_aligned() {
    aligned_refs(|_| Z64);
    aligned_refs(|_| Z4096);
    aligned_refs(|k| (Z64, k));
    aligned_refs(|k| A32(k, !k));
    aligned_refs(|k| A16(u128::from(k) << 64 | u128::from(k)));
    aligned_refs(A64);
    aligned_refs(|k| (k as u8, k));
    aligned_refs(|k| [k as u32; 8]);
    aligned_refs(|k| [k; 4]);
    aligned_refs(|k| [k as u8; 33]);
}

#[test]
fn into_inner_under_a_guard_of_another_domain_does_not_panic() {
    let d = RcuDomain::new();
    let tree: RcuRadixTree<String> = RcuRadixTree::new_in(&d);
    tree.insert(5, "five".to_string());
    tree.insert(70, "seventy".to_string());
    let _g = rcu_core::read_lock(); // the global domain, not the tree's
    let r = tree.remove(5).unwrap();
    assert_eq!(r.into_inner(), "five");
    let r = tree.insert(70, "x".into()).unwrap();
    assert_eq!(r.into_inner(), "seventy");
    // And a global tree under a guard of `d`.
    let t2: RcuRadixTree<String> = RcuRadixTree::new();
    drop(_g);
    t2.insert(1, "one".into());
    let r = d.register();
    let _g2 = r.read_lock();
    assert_eq!(t2.remove(1).unwrap().into_inner(), "one");
}

#[test]
fn closures_may_wait_for_other_domains() {
    let d = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&d);
    let g = d.read_lock_owned();
    // Waiting for the global domain inside f of a tree of another domain is
    // not what the docs forbid.
    let v = tree.get_or_insert_with(
        3,
        || {
            rcu_core::synchronize();
            33
        },
        &g,
    );
    assert_eq!(*v, 33);
    tree.retain(|_, _| {
        rcu_core::synchronize();
        true
    });
    assert_eq!(tree.len(), 1);
}

#[test]
fn writes_inside_closures_panic_and_tree_stays_usable() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let tree: RcuRadixTree<u64> = (0..200u64).map(|k| (k, k)).collect();
    let g = rcu_core::read_lock_owned();
    type Op = fn(&RcuRadixTree<u64>);
    let writes: [(&str, Op); 7] = [
        ("insert", |t| drop(t.insert(1000, 1))),
        ("remove", |t| drop(t.remove(5))),
        ("set_mark", |t| {
            t.set_mark(5, Mark::M0);
        }),
        ("clear_mark", |t| {
            t.clear_mark(5, Mark::M0);
        }),
        ("clear", |t| t.clear()),
        ("retain", |t| t.retain(|_, _| true)),
        ("goiw", |t| {
            let g = rcu_core::read_lock_owned();
            t.get_or_insert_with(5000, || 1, &g);
        }),
    ];
    for (name, w) in writes {
        let r = catch_unwind(AssertUnwindSafe(|| {
            tree.get_or_insert_with(
                777,
                || {
                    w(&tree);
                    1
                },
                &g,
            );
        }));
        let msg = r.expect_err(name);
        let s = panic_message(&*msg);
        assert!(s.contains("inside one of its own writes"), "{name}: {s}");
        let r = catch_unwind(AssertUnwindSafe(|| {
            tree.retain(|k, _| {
                if k == 100 {
                    w(&tree);
                }
                k % 2 == 0
            });
        }));
        assert!(r.is_err(), "retain {name}");
        // Tree unchanged and usable.
        assert_eq!(tree.len(), 200, "{name}");
        assert!(!tree.contains_key(777, &g));
        let keys: Vec<u64> = tree.iter(&g).map(|(k, _)| k).collect();
        assert_eq!(keys, (0..200).collect::<Vec<_>>());
        assert!(!tree.is_marked(5, Mark::M0, &g));
        assert!(tree.insert(9999, 1).is_none());
        assert!(tree.remove(9999).is_some());
    }
    // get_or_insert_with for a present key inside a closure is only a read.
    tree.retain(|k, _| {
        let g2 = rcu_core::read_lock_owned();
        assert_eq!(*tree.get_or_insert_with(k, || unreachable!(), &g2), k);
        true
    });
    std::panic::set_hook(prev);
}

#[test]
fn get_or_insert_with_while_holding_references() {
    let tree: RcuRadixTree<String> = RcuRadixTree::new();
    let g = rcu_core::read_lock();
    let mut refs = Vec::new();
    for k in (0..300u64).chain([u64::MAX, 1 << 63]) {
        let v = tree.get_or_insert_with(k, || format!("v{k}"), &g);
        refs.push((k, v));
    }
    // Replace and remove everything while the references are held.
    for &(k, _) in &refs {
        if k % 2 == 0 {
            drop(tree.remove(k));
        } else {
            drop(tree.insert(k, "new".into()));
            drop(tree.insert(k, "newer".into()));
            drop(tree.insert(k, "newest".into()));
        }
    }
    tree.clear();
    for &(k, v) in &refs {
        assert_eq!(*v, format!("v{k}"));
    }
    assert!(tree.is_empty());
}

#[test]
fn from_iter_and_extend_duplicates_drop_exactly() {
    let d = RcuDomain::new();
    let live = Arc::new(AtomicUsize::new(0));
    let mut tree: RcuRadixTree<Counted> = RcuRadixTree::new_in(&d);
    let mut rng = Rng(3);
    let mut model = BTreeMap::new();
    for round in 0..20u64 {
        let n = rng.below(3000);
        let pairs: Vec<(u64, u64)> = (0..n)
            .map(|_| {
                let k = match rng.below(3) {
                    0 => rng.below(500),
                    1 => u64::MAX - rng.below(500),
                    _ => rng.next(),
                };
                (k, rng.next())
            })
            .collect();
        tree.extend(pairs.iter().map(|&(k, v)| (k, Counted::new(k, v, &live))));
        for &(k, v) in &pairs {
            model.insert(k, v);
        }
        let g = d.read_lock_owned();
        let got: Vec<(u64, u64)> = tree.iter(&g).map(|(k, c)| (k, c.ver)).collect();
        let want: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(got, want, "round {round}");
        drop(g);
        if round % 4 == 3 {
            tree.retain(|k, _| k % 3 != 0);
            model.retain(|k, _| k % 3 != 0);
        }
    }
    d.drain();
    assert_eq!(live.load(Ordering::SeqCst), model.len());
    tree.clear();
    d.drain();
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// Every guard type of the right domain reads; of another domain panics
/// (every read method).
#[test]
fn every_guard_kind_is_accepted_or_refused_by_domain() {
    let d = RcuDomain::new();
    let d2 = d.clone();
    let other = RcuDomain::new();
    let gt: RcuRadixTree<u64> = RcuRadixTree::new();
    let gt2: RcuRadixTree<u64> = RcuRadixTree::new_in(&RcuDomain::global());
    let dt: RcuRadixTree<u64> = RcuRadixTree::new_in(&d);
    for t in [&gt, &gt2, &dt] {
        t.insert(5, 50);
        t.insert(1 << 63, 7);
        t.set_mark(5, Mark::M0);
    }
    fn reads<G: rcu_core::Guard>(t: &RcuRadixTree<u64>, g: &G) {
        assert_eq!(t.get(5, g), Some(&50));
        assert!(t.contains_key(5, g));
        assert_eq!(t.first(g).map(|(k, _)| k), Some(5));
        assert_eq!(t.last(g).map(|(k, _)| k), Some(1 << 63));
        assert_eq!(t.next_after(5, g).map(|(k, _)| k), Some(1 << 63));
        assert_eq!(t.prev_before(1 << 63, g).map(|(k, _)| k), Some(5));
        assert_eq!(t.iter(g).count(), 2);
        assert_eq!(t.range(6.., g).count(), 1);
        assert!(t.is_marked(5, Mark::M0, g));
        assert!(t.any_marked(Mark::M0, g));
        assert_eq!(t.first_marked(Mark::M0, g).map(|(k, _)| k), Some(5));
        assert_eq!(t.iter_marked(Mark::M0, g).count(), 1);
        assert_eq!(t.range_marked(..5, Mark::M0, g).count(), 0);
        assert!(t.next_marked_after(5, Mark::M0, g).is_none());
        assert!(t.prev_marked_before(6, Mark::M0, g).is_some());
        assert_eq!(*t.get_or_insert_with(5, || 0, g), 50);
    }
    type Read = Box<dyn Fn(&RcuRadixTree<u64>)>;
    // Wrong-domain reads, each must panic, even the ones that could return
    // early (edges, empty ranges).
    fn wrong<G: rcu_core::Guard>(t: &RcuRadixTree<u64>, g: &G) -> Vec<(&'static str, bool)> {
        let run = |f: &dyn Fn()| catch_unwind(AssertUnwindSafe(f)).is_err();
        vec![
            (
                "get",
                run(&|| {
                    let _ = t.get(5, g);
                }),
            ),
            (
                "contains_key",
                run(&|| {
                    let _ = t.contains_key(5, g);
                }),
            ),
            (
                "first",
                run(&|| {
                    let _ = t.first(g);
                }),
            ),
            (
                "last",
                run(&|| {
                    let _ = t.last(g);
                }),
            ),
            (
                "next_after(MAX)",
                run(&|| {
                    let _ = t.next_after(u64::MAX, g);
                }),
            ),
            (
                "prev_before(0)",
                run(&|| {
                    let _ = t.prev_before(0, g);
                }),
            ),
            (
                "iter",
                run(&|| {
                    let _ = t.iter(g);
                }),
            ),
            (
                "range empty",
                run(&|| {
                    let _ = t.range(5..5, g);
                }),
            ),
            (
                "is_marked",
                run(&|| {
                    let _ = t.is_marked(5, Mark::M0, g);
                }),
            ),
            (
                "any_marked",
                run(&|| {
                    let _ = t.any_marked(Mark::M0, g);
                }),
            ),
            (
                "first_marked",
                run(&|| {
                    let _ = t.first_marked(Mark::M0, g);
                }),
            ),
            (
                "iter_marked",
                run(&|| {
                    let _ = t.iter_marked(Mark::M0, g);
                }),
            ),
            (
                "range_marked empty",
                run(&|| {
                    let _ = t.range_marked(3..3, Mark::M0, g);
                }),
            ),
            (
                "next_marked_after(MAX)",
                run(&|| {
                    let _ = t.next_marked_after(u64::MAX, Mark::M0, g);
                }),
            ),
            (
                "prev_marked_before(0)",
                run(&|| {
                    let _ = t.prev_marked_before(0, Mark::M0, g);
                }),
            ),
            (
                "get_or_insert_with present",
                run(&|| {
                    let _ = t.get_or_insert_with(5, || 0, g);
                }),
            ),
            (
                "get_or_insert_with absent",
                run(&|| {
                    let _ = t.get_or_insert_with(6, || 0, g);
                }),
            ),
        ]
    }
    let _ = std::marker::PhantomData::<Read>;
    for t in [&gt, &gt2] {
        reads(t, &rcu_core::read_lock());
        reads(t, &rcu_core::read_lock_owned());
        reads(t, &RcuDomain::global().register().read_lock());
        reads(t, &RcuDomain::global().read_lock_owned());
        reads(t, &RcuDomain::global().read_lock_local());
    }
    reads(&dt, &d.register().read_lock());
    reads(&dt, &d2.read_lock_local());
    reads(&dt, &d.read_lock_owned());
    reads(&dt, &d.read_lock_local());
    let r = d2.register();
    reads(&dt, &r.read_lock());
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut bad = Vec::new();
    for (what, res) in wrong(&dt, &rcu_core::read_lock())
        .into_iter()
        .chain(wrong(&dt, &other.read_lock_owned()))
        .chain(wrong(&gt, &other.register().read_lock()))
        .chain(wrong(&gt2, &d.read_lock_local()))
    {
        if !res {
            bad.push(what);
        }
    }
    std::panic::set_hook(prev);
    assert!(
        bad.is_empty(),
        "reads with a guard of another domain that did not panic: {bad:?}"
    );
    assert!(
        !dt.contains_key(6, &d.read_lock_local()),
        "a wrong-guard get_or_insert_with inserted"
    );
}

/// Runs `f` on a thread of its own; `Some(panicked?)`, or `None` if it is
/// still running after `secs` (a hang; the thread is left behind).
fn within(secs: u64, f: impl FnOnce() + Send + 'static) -> Option<bool> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r.is_err());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs)).ok()
}

/// `Removed::into_inner` "panics inside a read-side critical section of
/// the tree's domain on this thread": with every kind of guard this thread
/// can hold, it must panic, not wait for itself forever.
#[test]
fn into_inner_inside_own_thread_bound_critical_section_panics() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut hung = Vec::new();
    let mut silent = Vec::new();
    type Case = (&'static str, fn(RcuDomain, RcuRadixTree<u64>));
    // (The owned-guard cases hang: see zz_attack_owned_guard.rs, a binary of
    // its own, since a hung thread holding a global guard would stall every
    // other test here.)
    let cases: [Case; 3] = [
        ("domain read_lock_local", |d, t| {
            t.insert(1, 1);
            let _g = d.read_lock_local();
            let _ = t.remove(1).unwrap().into_inner();
        }),
        ("domain register().read_lock()", |d, t| {
            t.insert(1, 1);
            let r = d.register();
            let _g = r.read_lock();
            let _ = t.remove(1).unwrap().into_inner();
        }),
        ("global read_lock (global tree)", |_d, _t| {
            let t: RcuRadixTree<u64> = RcuRadixTree::new();
            t.insert(1, 1);
            let _g = rcu_core::read_lock();
            let _ = t.remove(1).unwrap().into_inner();
        }),
    ];
    for (name, f) in cases {
        let d = RcuDomain::new();
        let t = RcuRadixTree::new_in(&d);
        match within(10, move || f(d, t)) {
            None => hung.push(name),
            Some(false) => silent.push(name),
            Some(true) => {}
        }
    }
    std::panic::set_hook(prev);
    assert!(
        hung.is_empty() && silent.is_empty(),
        "into_inner under this thread's own guard: hung {hung:?}, returned without panicking {silent:?}"
    );
}

/// A handle whose `into_inner` was refused inside a closure (it panicked)
/// is still retired and dropped exactly once.
#[test]
fn refused_into_inner_inside_closure_still_drops_once() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let d = RcuDomain::new();
    let live = Arc::new(AtomicUsize::new(0));
    let tree: RcuRadixTree<Counted> = RcuRadixTree::new_in(&d);
    for k in 0..10u64 {
        tree.insert(k, Counted::new(k, 0, &live));
    }
    let h = std::sync::Mutex::new(Some(tree.remove(3).unwrap()));
    let g = d.read_lock_owned();
    let r = catch_unwind(AssertUnwindSafe(|| {
        tree.get_or_insert_with(
            100,
            || {
                let x = h.lock().unwrap().take().unwrap();
                let v = x.into_inner();
                Counted::new(100, v.ver, &live)
            },
            &g,
        );
    }));
    assert!(r.is_err());
    drop(g);
    let h2 = tree.remove(4).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut h2 = Some(h2);
        tree.retain(|_, _| {
            if let Some(x) = h2.take() {
                let _ = x.into_inner();
            }
            true
        });
    }));
    assert!(r.is_err());
    std::panic::set_hook(prev);
    assert_eq!(tree.len(), 8);
    d.drain();
    assert_eq!(live.load(Ordering::SeqCst), 8);
    drop(tree);
    d.drain();
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// A value whose `Debug` waits for a grace period of its tree's domain.
struct Waits(RcuDomain);

impl std::fmt::Debug for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.synchronize();
        f.write_str("Waits")
    }
}

/// `{:?}` of the tree reads it under a guard tied to the thread, so a
/// value's `Debug` that waits for a grace period of the tree's domain
/// panics, as inside any thread-tied guard (under an owned guard, which the
/// wait cannot see, it waited for itself forever).
#[test]
fn a_values_debug_that_waits_for_a_grace_period_panics() {
    let domain = RcuDomain::new();
    let tree = Arc::new(RcuRadixTree::new_in(&domain));
    tree.insert(1, Waits(domain.clone()));
    let (tx, rx) = std::sync::mpsc::channel();
    let t = Arc::clone(&tree);
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| drop(format!("{t:?}"))));
        let msg = r.err().map(|e| panic_message(&*e));
        let _ = tx.send(msg);
    });
    let msg = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the tree's Debug still waits: it waits for its own guard")
        .expect("the wait returned");
    assert!(msg.contains("critical section"), "{msg}");
    // Outside the tree's reads the same wait returns.
    assert_eq!(format!("{:?}", Waits(domain.clone())), "Waits");
}
