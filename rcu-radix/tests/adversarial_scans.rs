//! A second adversarial suite, written by a fresh reviewer (2026-12-05) to
//! break the scan paths after their rework (`fold` by runs of adjacent
//! slots, values in either cell; `slot_entry` for marked searches). It found
//! no fault; a fold that picked the wrong cell fails four of its tests.
//!
//! Differential (against `BTreeMap`) of every read path, for value types
//! inline and not (up to and just over the 32-byte inline limit), after
//! write sequences that put values in both cells of a slot and leaves in
//! bottom nodes, at node and tree edges; scans paused while the same thread
//! writes just ahead; concurrent scans under churn with value-integrity
//! checks (values encode their key and version); drop accounting after
//! `drain`, also with handles that outlive the tree.
#![cfg(not(rcu_loom))]

use rcu_core::{Guard, RcuDomain};
use rcu_radix::{Mark, RcuRadixTree, Removed};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// A value type built from (key, version), so that a foreign or stale value
/// is detected.
trait Val: Send + Sync + 'static + Debug + PartialEq {
    fn make(key: u64, ver: u64) -> Self;
}
impl Val for u64 {
    fn make(k: u64, v: u64) -> u64 {
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v
    }
}
impl Val for u32 {
    fn make(k: u64, v: u64) -> u32 {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 ^ v as u32
    }
}
impl Val for u8 {
    fn make(k: u64, v: u64) -> u8 {
        (k.wrapping_mul(31) ^ v) as u8
    }
}
impl Val for () {
    fn make(_: u64, _: u64) {}
}
impl Val for String {
    fn make(k: u64, v: u64) -> String {
        format!("{k}:{v}")
    }
}
impl Val for [u64; 8] {
    fn make(k: u64, v: u64) -> [u64; 8] {
        [k, v, !k, !v, k ^ v, k, v, 7]
    }
}
impl Val for [u64; 4] {
    fn make(k: u64, v: u64) -> [u64; 4] {
        [k, v, !k, !v]
    }
}
impl Val for [u8; 33] {
    fn make(k: u64, v: u64) -> [u8; 33] {
        let mut a = [0u8; 33];
        a[..8].copy_from_slice(&k.to_le_bytes());
        a[8..16].copy_from_slice(&v.to_le_bytes());
        a[32] = 0xAB;
        a
    }
}
impl Val for u128 {
    fn make(k: u64, v: u64) -> u128 {
        (u128::from(k) << 64) | u128::from(v)
    }
}
impl Val for (u8, u64) {
    fn make(k: u64, v: u64) -> (u8, u64) {
        (k as u8, k ^ (v << 1))
    }
}

const MARKS: [Mark; 3] = [Mark::M0, Mark::M1, Mark::M2];

/// Model: key -> (version, marks).
type Model = BTreeMap<u64, (u64, u8)>;

#[derive(Clone, Copy, Debug)]
enum Keys {
    Dense,
    Boundary,
    High,
    Mixed,
}

fn key(rng: &mut Rng, keys: Keys) -> u64 {
    match keys {
        Keys::Dense => rng.below(if cfg!(miri) { 150 } else { 400 }),
        Keys::Boundary => {
            let bases = [0u64, 64, 128, 4032, 4096, 8192, 262_144, 1 << 30, 1 << 36];
            let b = bases[rng.below(bases.len() as u64) as usize];
            let off = rng.below(8) as i64 - 4;
            b.wrapping_add(off as u64)
        }
        Keys::High => {
            let choices = [
                u64::MAX - rng.below(140),
                (1 << 63) - 70 + rng.below(140),
                rng.below(70),
            ];
            choices[rng.below(3) as usize]
        }
        Keys::Mixed => match rng.below(4) {
            0 => key(rng, Keys::Dense),
            1 => key(rng, Keys::Boundary),
            2 => key(rng, Keys::High),
            _ => rng.next(),
        },
    }
}

fn probe(rng: &mut Rng, keys: Keys, model: &Model) -> u64 {
    match rng.below(5) {
        0 if !model.is_empty() => {
            let i = rng.below(model.len() as u64) as usize;
            let k = *model.keys().nth(i).unwrap();
            k.wrapping_add(rng.below(3)).wrapping_sub(1)
        }
        1 => [0, 1, 63, 64, 4095, 4096, u64::MAX, u64::MAX - 1, 1 << 63][rng.below(9) as usize],
        _ => key(rng, keys),
    }
}

fn rand_bounds(rng: &mut Rng, keys: Keys, model: &Model) -> (Bound<u64>, Bound<u64>) {
    loop {
        let a = probe(rng, keys, model);
        let b = probe(rng, keys, model);
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        let s = match rng.below(3) {
            0 => Included(a),
            1 => Excluded(a),
            _ => Unbounded,
        };
        let e = match rng.below(3) {
            0 => Included(b),
            1 => Excluded(b),
            _ => Unbounded,
        };
        if let (Excluded(x), Excluded(y)) = (s, e)
            && x == y
        {
            continue;
        }
        return (s, e);
    }
}

fn by_next<'g, V: Val>(it: impl Iterator<Item = (u64, &'g V)>) -> Vec<(u64, &'g V)> {
    let mut v = Vec::new();
    // A `for` loop: one `next` per item, never `fold`.
    for x in it {
        v.push(x);
    }
    v
}

fn by_fold<'g, V: Val>(it: impl Iterator<Item = (u64, &'g V)>) -> Vec<(u64, &'g V)> {
    it.fold(Vec::new(), |mut v, x| {
        v.push(x);
        v
    })
}

fn expect<V: Val>(model: &Model, r: (Bound<u64>, Bound<u64>), mark: Option<Mark>) -> Vec<(u64, V)> {
    model
        .range(r)
        .filter(|(_, (_, m))| mark.is_none_or(|mk| m & (1 << mk as u8) != 0))
        .map(|(&k, &(ver, _))| (k, V::make(k, ver)))
        .collect()
}

fn same<V: Val>(got: &[(u64, &V)], want: &[(u64, V)], what: &str) {
    let got: Vec<(u64, &V)> = got.to_vec();
    let want: Vec<(u64, &V)> = want.iter().map(|(k, v)| (*k, v)).collect();
    assert!(
        got == want,
        "{what}: got {} entries, want {}; first diff: {:?}",
        got.len(),
        want.len(),
        got.iter()
            .zip(want.iter())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("got {a:?} want {b:?}"))
            .or_else(|| Some(format!(
                "tails got {:?} want {:?}",
                got.get(want.len()..)
                    .map(|s| s.iter().take(3).collect::<Vec<_>>()),
                want.get(got.len()..)
                    .map(|s| s.iter().take(3).collect::<Vec<_>>())
            )))
    );
}

fn check_range<V: Val>(
    tree: &RcuRadixTree<V>,
    model: &Model,
    r: (Bound<u64>, Bound<u64>),
    g: &impl Guard,
    rng: &mut Rng,
) {
    let want = expect::<V>(model, r, None);
    let tag = format!("range {r:?}");
    same(&by_next(tree.range(r, g)), &want, &format!("{tag} next"));
    same(&by_fold(tree.range(r, g)), &want, &format!("{tag} fold"));
    assert_eq!(tree.range(r, g).count(), want.len(), "{tag} count");
    assert_eq!(
        tree.range(r, g)
            .map(|(k, _)| k)
            .fold(0u64, u64::wrapping_add),
        want.iter().map(|(k, _)| *k).fold(0u64, u64::wrapping_add),
        "{tag} key sum"
    );
    let last = tree.range(r, g).last();
    assert_eq!(last, want.last().map(|(k, v)| (*k, v)), "{tag} last()");
    // Partly consumed, then fold; also skip (nth then fold).
    if !want.is_empty() {
        let n = rng.below(want.len() as u64 + 1) as usize;
        let mut it = tree.range(r, g);
        let head = by_next(it.by_ref().take(n));
        same(&head, &want[..n], &format!("{tag} head {n}"));
        same(&by_fold(it), &want[n..], &format!("{tag} fold after {n}"));
        let n2 = rng.below(want.len() as u64 + 1) as usize;
        same(
            &by_fold(tree.range(r, g).skip(n2)),
            &want[n2..],
            &format!("{tag} skip {n2} fold"),
        );
        // Alternate next and fold-based for_each on a take.
        let mut it = tree.range(r, g);
        let mut got = Vec::new();
        while let Some(x) = it.next() {
            got.push(x);
            let k = rng.below(5) as usize;
            it.by_ref().take(k).for_each(|x| got.push(x));
        }
        same(&got, &want, &format!("{tag} mixed next/for_each"));
    }
    // Marked.
    for m in MARKS {
        let want = expect::<V>(model, r, Some(m));
        same(
            &by_next(tree.range_marked(r, m, g)),
            &want,
            &format!("{tag} marked {m:?} next"),
        );
        same(
            &by_fold(tree.range_marked(r, m, g)),
            &want,
            &format!("{tag} marked {m:?} fold"),
        );
    }
}

fn check_all<V: Val>(
    tree: &RcuRadixTree<V>,
    model: &Model,
    keys: Keys,
    g: &impl Guard,
    rng: &mut Rng,
    ranges: usize,
) {
    assert_eq!(tree.len(), model.len(), "len");
    let all = expect::<V>(model, (Unbounded, Unbounded), None);
    same(&by_next(tree.iter(g)), &all, "iter next");
    same(&by_fold(tree.iter(g)), &all, "iter fold");
    assert_eq!(tree.first(g), all.first().map(|(k, v)| (*k, v)), "first");
    assert_eq!(tree.last(g), all.last().map(|(k, v)| (*k, v)), "last");
    for m in MARKS {
        let want = expect::<V>(model, (Unbounded, Unbounded), Some(m));
        same(&by_next(tree.iter_marked(m, g)), &want, "iter_marked next");
        same(&by_fold(tree.iter_marked(m, g)), &want, "iter_marked fold");
        assert_eq!(tree.first_marked(m, g), want.first().map(|(k, v)| (*k, v)));
        assert_eq!(tree.any_marked(m, g), !want.is_empty());
    }
    for _ in 0..ranges {
        let r = rand_bounds(rng, keys, model);
        check_range(tree, model, r, g, rng);
    }
    let n_probes = if cfg!(miri) { 6 } else { 40 };
    for _ in 0..n_probes {
        let p = probe(rng, keys, model);
        let want_get = model.get(&p).map(|&(ver, _)| V::make(p, ver));
        assert_eq!(tree.get(p, g), want_get.as_ref(), "get {p}");
        assert_eq!(tree.contains_key(p, g), want_get.is_some());
        let na = model
            .range((Excluded(p), Unbounded))
            .next()
            .map(|(&k, &(ver, _))| (k, V::make(k, ver)));
        assert_eq!(
            tree.next_after(p, g),
            na.as_ref().map(|(k, v)| (*k, v)),
            "next_after {p}"
        );
        let pb = model
            .range(..p)
            .next_back()
            .map(|(&k, &(ver, _))| (k, V::make(k, ver)));
        assert_eq!(
            tree.prev_before(p, g),
            pb.as_ref().map(|(k, v)| (*k, v)),
            "prev_before {p}"
        );
        for m in MARKS {
            let bit = 1u8 << m as u8;
            assert_eq!(
                tree.is_marked(p, m, g),
                model.get(&p).is_some_and(|&(_, mk)| mk & bit != 0),
                "is_marked {p} {m:?}"
            );
            let na = model
                .range((Excluded(p), Unbounded))
                .find(|(_, (_, mk))| mk & bit != 0)
                .map(|(&k, &(ver, _))| (k, V::make(k, ver)));
            assert_eq!(
                tree.next_marked_after(p, m, g),
                na.as_ref().map(|(k, v)| (*k, v)),
                "next_marked_after {p} {m:?}"
            );
            let pb = model
                .range(..p)
                .rev()
                .find(|(_, (_, mk))| mk & bit != 0)
                .map(|(&k, &(ver, _))| (k, V::make(k, ver)));
            assert_eq!(
                tree.prev_marked_before(p, m, g),
                pb.as_ref().map(|(k, v)| (*k, v)),
                "prev_marked_before {p} {m:?}"
            );
        }
    }
}

/// Random writes; handles held (so both cells stay busy and replacements go
/// to leaves), a guard held sometimes (so dropped handles do not free their
/// cells), drains at times; every read path checked against the model.
fn differential<V: Val>(seed: u64, keys: Keys, ops: usize) {
    let domain = RcuDomain::new();
    let mut tree: RcuRadixTree<V> = RcuRadixTree::new_in(&domain);
    let mut model = Model::new();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut ver = 0u64;
    let mut held: Vec<Removed<V>> = Vec::new();
    let mut guard: Option<rcu_core::OwnedReadGuard> = None;
    let check_every = if cfg!(miri) {
        25
    } else if cfg!(debug_assertions) {
        12
    } else {
        7
    };
    let ranges = if cfg!(miri) { 2 } else { 8 };
    for op in 0..ops {
        let k = key(&mut rng, keys);
        match rng.below(100) {
            0..=39 => {
                ver += 1;
                let old = tree.insert(k, V::make(k, ver));
                let prev = model.insert(k, (ver, 0));
                match (&old, prev) {
                    (Some(o), Some((pv, pm))) => {
                        assert_eq!(o.key(), k);
                        assert_eq!(**o, V::make(k, pv), "replaced value of {k}");
                        model.get_mut(&k).unwrap().1 = pm; // marks carry over
                    }
                    (None, None) => {}
                    _ => panic!("insert {k}: old {:?} vs model {prev:?}", old.is_some()),
                }
                if let Some(o) = old
                    && rng.chance(70)
                {
                    held.push(o);
                }
            }
            40..=51 => {
                // Replace an existing key in place, several times.
                if let Some((&k, _)) = model.range(k..).next().or_else(|| model.iter().next()) {
                    for _ in 0..=rng.below(3) {
                        ver += 1;
                        let o = tree.insert(k, V::make(k, ver)).expect("present");
                        let e = model.get_mut(&k).unwrap();
                        assert_eq!(*o, V::make(k, e.0));
                        e.0 = ver;
                        if rng.chance(60) {
                            held.push(o);
                        }
                    }
                }
            }
            52..=74 => {
                let k = if rng.chance(60) {
                    model.range(k..).next().map_or(k, |(&k, _)| k)
                } else {
                    k
                };
                let old = tree.remove(k);
                let prev = model.remove(&k);
                match (&old, prev) {
                    (Some(o), Some((pv, _))) => {
                        assert_eq!(o.key(), k);
                        assert_eq!(**o, V::make(k, pv), "removed value of {k}");
                    }
                    (None, None) => {}
                    _ => panic!("remove {k}: {:?} vs model {prev:?}", old.is_some()),
                }
                if let Some(o) = old {
                    if rng.chance(70) {
                        held.push(o);
                    }
                    // Remove and reinsert at once, sometimes.
                    if rng.chance(40) {
                        ver += 1;
                        assert!(tree.insert(k, V::make(k, ver)).is_none());
                        model.insert(k, (ver, 0));
                    }
                }
            }
            75..=86 => {
                let k = if rng.chance(80) {
                    model.range(k..).next().map_or(k, |(&k, _)| k)
                } else {
                    k
                };
                let m = MARKS[rng.below(3) as usize];
                let on = rng.chance(60);
                let r = if on {
                    tree.set_mark(k, m)
                } else {
                    tree.clear_mark(k, m)
                };
                assert_eq!(r, model.contains_key(&k), "mark {k}");
                if let Some(e) = model.get_mut(&k) {
                    if on {
                        e.1 |= 1 << m as u8;
                    } else {
                        e.1 &= !(1 << m as u8);
                    }
                }
            }
            87..=90 => {
                // Drop some handles.
                let n = rng.below(held.len() as u64 + 1) as usize;
                for _ in 0..n {
                    let i = rng.below(held.len() as u64) as usize;
                    drop(held.swap_remove(i));
                }
            }
            91..=93 => {
                guard = match guard {
                    Some(_) => None,
                    None => Some(domain.read_lock_owned()),
                };
            }
            94 if guard.is_none() => {
                domain.drain();
            }
            95 => {
                // get_or_insert_with
                let g = domain.read_lock_owned();
                let present = model.get(&k).map(|&(v, _)| v);
                ver += 1;
                let nv = ver;
                let v = tree.get_or_insert_with(k, || V::make(k, nv), &g);
                match present {
                    Some(pv) => assert_eq!(*v, V::make(k, pv)),
                    None => {
                        assert_eq!(*v, V::make(k, nv));
                        model.insert(k, (nv, 0));
                    }
                }
            }
            97 if op % 3 == 0 => {
                // extend with at least half the tree's entries: moves leaves
                // inside bottom nodes into free cells.
                let n = model.len() / 2 + 1 + rng.below(4) as usize;
                let mut pairs = Vec::new();
                for _ in 0..n {
                    let k = if rng.chance(50) {
                        model
                            .range(key(&mut rng, keys)..)
                            .next()
                            .map_or(0, |(&k, _)| k)
                    } else {
                        key(&mut rng, keys)
                    };
                    ver += 1;
                    pairs.push((k, ver));
                }
                tree.extend(pairs.iter().map(|&(k, v)| (k, V::make(k, v))));
                for (k, v) in pairs {
                    let mk = model.get(&k).map_or(0, |e| e.1);
                    model.insert(k, (v, mk));
                }
            }
            98 if op % 7 == 0 && rng.chance(20) => {
                tree.clear();
                model.clear();
            }
            96 if op % 5 == 0 => {
                // retain: drop keys whose low bits match.
                let bit = rng.below(4);
                tree.retain(|k, _| (k >> bit) & 3 != 1);
                model.retain(|k, _| (k >> bit) & 3 != 1);
            }
            _ => {}
        }
        if op % check_every == 0 || op + 1 == ops {
            let own;
            let g = match &guard {
                Some(g) => g,
                None => {
                    own = domain.read_lock_owned();
                    &own
                }
            };
            check_all(&tree, &model, keys, g, &mut rng, ranges);
        }
    }
    drop(guard);
    drop(held);
    domain.drain();
    let g = domain.read_lock_owned();
    check_all(&tree, &model, keys, &g, &mut rng, ranges);
}

fn ops() -> usize {
    if cfg!(miri) { 120 } else { 2500 }
}
fn seeds() -> u64 {
    // Fewer in debug builds (CI runs them twice, natively): the release
    // run (`cargo test --release`) takes all six.
    if cfg!(miri) {
        1
    } else if cfg!(debug_assertions) {
        2
    } else {
        6
    }
}

macro_rules! diff_tests {
    ($($name:ident: $ty:ty;)*) => {$(
        #[test]
        fn $name() {
            for seed in 0..seeds() {
                for keys in [Keys::Dense, Keys::Boundary, Keys::High, Keys::Mixed] {
                    differential::<$ty>(seed * 4 + keys as u64, keys, ops());
                }
            }
        }
    )*};
}

diff_tests! {
    diff_u64: u64;
    diff_u32: u32;
    diff_u8: u8;
    diff_unit: ();
    diff_string: String;
    diff_arr8: [u64; 8];
    diff_arr4_32bytes: [u64; 4];
    diff_arr33: [u8; 33];
    diff_u128: u128;
    diff_u8_u64: (u8, u64);
}

/// Deterministic shapes: one bottom node with every pattern of cells, read by
/// every range whose ends lie at node edges.
#[test]
fn every_cell_pattern_at_node_edges() {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    let mut model = Model::new();
    let mut held = Vec::new();
    let bases: &[u64] = if cfg!(miri) {
        &[0, 4096, u64::MAX - 63]
    } else {
        &[0, 64, 4032, 4096, 1 << 20, (1 << 63) - 64, u64::MAX - 63]
    };
    let mut rng = Rng(12345);
    let mut ver = 0;
    for &b in bases {
        for s in 0..64u64 {
            let k = b + s;
            // Pattern by slot: absent, cell 0, cell 1, leaf (both busy), or
            // cell 0 after two replacements and a drain.
            match s % 5 {
                0 => continue,
                1 => {}
                _ => {}
            }
            ver += 1;
            tree.insert(k, u64::make(k, ver));
            model.insert(k, (ver, 0));
            let times = match s % 5 {
                2 => 1,
                3 => 2,
                4 => 3,
                _ => 0,
            };
            for _ in 0..times {
                ver += 1;
                held.push(tree.insert(k, u64::make(k, ver)).unwrap());
                model.insert(k, (ver, 0));
            }
            if s % 7 == 0 {
                tree.set_mark(k, Mark::M1);
                model.get_mut(&k).unwrap().1 |= 2;
            }
        }
    }
    let g = domain.read_lock_owned();
    let mut edges = vec![0u64, u64::MAX];
    for &b in bases {
        for d in [0u64, 1, 2, 31, 32, 62, 63, 64, 65] {
            edges.push(b.wrapping_add(d));
            edges.push(b.wrapping_sub(d));
        }
    }
    edges.sort_unstable();
    edges.dedup();
    let step = if cfg!(miri) { 7 } else { 1 };
    for (i, &a) in edges.iter().enumerate().step_by(step) {
        for &b in edges[i..].iter().step_by(step) {
            for r in [
                (Included(a), Included(b)),
                (Included(a), Excluded(b)),
                (Excluded(a), Included(b)),
            ] {
                check_range(&tree, &model, r, &g, &mut rng);
            }
        }
        check_range(&tree, &model, (Included(a), Unbounded), &g, &mut rng);
        check_range(&tree, &model, (Unbounded, Included(a)), &g, &mut rng);
        check_range(&tree, &model, (Unbounded, Excluded(a)), &g, &mut rng);
    }
    check_all(&tree, &model, Keys::Boundary, &g, &mut rng, 10);
    drop(g);
    drop(held);
    domain.drain();
    let g = domain.read_lock_owned();
    check_all(&tree, &model, Keys::Boundary, &g, &mut rng, 10);
}

/// Fill a node twice over with alternating cells: replace every key of a
/// block, drain, replace again, so cell1 holds a checkerboard; sum by fold
/// must match.
#[test]
fn alternating_cells_sum() {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    let n: u64 = if cfg!(miri) { 130 } else { 4096 + 200 };
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    for k in 0..n {
        tree.insert(k, k);
        model.insert(k, k);
    }
    for round in 1..6u64 {
        for k in (0..n).filter(|k| (k + round) % (round + 1) == 0) {
            drop(tree.insert(k, k * 1000 + round));
            model.insert(k, k * 1000 + round);
        }
        domain.drain();
        let g = domain.read_lock_owned();
        for (lo, hi) in [(0, n - 1), (1, 62), (63, 65), (64, 127), (5, n / 2)] {
            let s: u64 = tree.range(lo..=hi, &g).map(|(_, v)| *v).sum();
            let e: u64 = model.range(lo..=hi).map(|(_, v)| *v).sum();
            assert_eq!(s, e, "round {round} sum {lo}..={hi}");
            let c = tree.range(lo..=hi, &g).count();
            assert_eq!(c, model.range(lo..=hi).count());
        }
    }
}

// ---------------------------------------------------------------------
// Concurrency.

const K: u64 = 1 << 24;

fn vkey(v: u64) -> u64 {
    v / K
}

/// One writer churns; readers scan stable keys under one guard and check
/// each appears exactly once, in order, with a value of its own key whose
/// version is not older than one seen before.
fn churn_scan<V, F, G>(make: F, unmake: G, big: bool)
where
    V: Send + Sync + 'static,
    F: Fn(u64, u64) -> V + Sync,
    G: Fn(u64, &V) -> u64 + Sync, // returns version, panics on foreign/torn
{
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<V> = RcuRadixTree::new_in(&domain);
    let n: u64 = if cfg!(miri) {
        200
    } else if big {
        6000
    } else {
        3000
    };
    let stable = |k: u64| k.is_multiple_of(3);
    for k in 0..n {
        if stable(k) || k % 2 == 0 {
            tree.insert(k, make(k, 0));
        }
        if stable(k) && k % 9 == 0 {
            tree.set_mark(k, Mark::M0);
        }
    }
    let stop = AtomicBool::new(false);
    let versions: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let scans = AtomicUsize::new(0);
    let iters = if cfg!(miri) { 300 } else { 200_000 };
    std::thread::scope(|s| {
        // Writer.
        s.spawn(|| {
            let mut rng = Rng(99);
            let mut held = Vec::new();
            let start = std::time::Instant::now();
            for it in 0.. {
                if it >= iters
                    && (cfg!(miri) || start.elapsed() > std::time::Duration::from_millis(1500))
                {
                    break;
                }
                let k = rng.below(n);
                if stable(k) {
                    let v = versions[k as usize].load(Ordering::Relaxed) + 1;
                    // Publish the version before the value can be seen.
                    versions[k as usize].store(v, Ordering::Release);
                    let old = tree.insert(k, make(k, v));
                    assert!(old.is_some());
                    if rng.chance(50) {
                        held.push(old);
                    }
                } else {
                    match rng.below(4) {
                        0 | 1 => {
                            let v = versions[k as usize].load(Ordering::Relaxed) + 1;
                            versions[k as usize].store(v, Ordering::Release);
                            held.push(tree.insert(k, make(k, v)));
                        }
                        2 => held.push(tree.remove(k)),
                        _ => {
                            let m = MARKS[rng.below(3) as usize];
                            if rng.chance(50) {
                                tree.set_mark(k, m);
                            } else {
                                tree.clear_mark(k, m);
                            }
                        }
                    }
                }
                if held.len() > 64 || it % 97 == 0 {
                    held.clear();
                }
                if it % 50_000 == 0 {
                    domain.drain();
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
        for r in 0..2u64 {
            let tree = &tree;
            let stop = &stop;
            let versions = &versions;
            let scans = &scans;
            let unmake = &unmake;
            let domain = &domain;
            s.spawn(move || {
                let mut rng = Rng(7 + r);
                let reader = domain.register();
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) || round < 3 {
                    round += 1;
                    let g = reader.read_lock();
                    let lo = rng.below(n);
                    let hi = (lo + rng.below(n)).min(n + 5);
                    let want: Vec<u64> = (lo..=hi).filter(|&k| k < n && stable(k)).collect();
                    let mut seen_ver = BTreeMap::new();
                    let mut check = |items: Vec<(u64, &V)>, what: &str| {
                        let mut st = Vec::new();
                        let mut prev = None;
                        for (k, v) in items {
                            assert!(prev.is_none_or(|p| p < k), "{what}: not ascending {prev:?} {k}");
                            prev = Some(k);
                            assert!(k >= lo && k <= hi, "{what}: {k} out of {lo}..={hi}");
                            let ver = unmake(k, v);
                            // Not from the future.
                            let max = versions[k as usize].load(Ordering::Acquire);
                            assert!(ver <= max, "{what}: key {k} version {ver} > max {max}");
                            if stable(k) {
                                st.push(k);
                                let e = seen_ver.entry(k).or_insert(0);
                                assert!(ver >= *e, "{what}: key {k} went back {e} -> {ver}");
                                *e = ver;
                            }
                        }
                        assert!(st == want, "{what}: stable keys in {lo}..={hi}: got {} want {}; missing {:?} extra {:?}",
                            st.len(), want.len(),
                            want.iter().filter(|k| !st.contains(k)).take(5).collect::<Vec<_>>(),
                            st.iter().filter(|k| !want.contains(k)).take(5).collect::<Vec<_>>());
                    };
                    // fold path
                    let items = tree.range(lo..=hi, &g).fold(Vec::new(), |mut a, x| {
                        a.push(x);
                        a
                    });
                    check(items, "fold");
                    // next path
                    let it = tree.range(lo..=hi, &g);
                    let mut items = Vec::new();
                    for x in it {
                        items.push(x);
                    }
                    check(items, "next");
                    // mixed: next some then fold
                    let mut it = tree.range(lo..=hi, &g);
                    let mut items: Vec<_> = it.by_ref().take(rng.below(50) as usize).collect();
                    it.for_each(|x| items.push(x));
                    check(items, "mixed");
                    // Sum of versions via fold doesn't panic and keys are valid.
                    let _: u64 = tree.range(lo..=hi, &g).map(|(k, v)| unmake(k, v)).sum();
                    // get after scan never older.
                    for (&k, &ver) in seen_ver.iter().take(20) {
                        let v = tree.get(k, &g).expect("stable key present");
                        let gv = unmake(k, v);
                        assert!(gv >= ver, "get {k} went back {ver} -> {gv}");
                    }
                    // Marked scan: stable keys with k % 9 == 0 carry M0 forever.
                    let mk: Vec<u64> = tree
                        .range_marked(lo..=hi, Mark::M0, &g)
                        .map(|(k, v)| {
                            unmake(k, v);
                            k
                        })
                        .filter(|&k| stable(k))
                        .collect();
                    let wm: Vec<u64> = want.iter().copied().filter(|k| k % 9 == 0).collect();
                    assert_eq!(mk, wm, "marked stable keys in {lo}..={hi}");
                    // nearest searches from stable keys
                    if let Some(&k0) = want.first() {
                        let mut k = k0;
                        let mut count = 0;
                        while let Some((nk, v)) = tree.next_after(k, &g) {
                            unmake(nk, v);
                            if nk > hi {
                                break;
                            }
                            assert!(nk > k);
                            if stable(nk) {
                                count += 1;
                            }
                            k = nk;
                            if count > 40 {
                                break;
                            }
                        }
                        let (pk, v) = tree.prev_before(k0 + 3, &g).expect("k0 below");
                        unmake(pk, v);
                        assert!(pk >= k0 && pk < k0 + 3);
                        let (lk, v) = tree.prev_marked_before(u64::MAX, Mark::M0, &g).expect("some marked");
                        unmake(lk, v);
                    }
                    drop(g);
                    scans.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert!(scans.load(Ordering::Relaxed) > 0);
}

#[test]
fn churn_scan_u64() {
    churn_scan::<u64, _, _>(
        |k, v| k * K + v,
        |k, v| {
            assert_eq!(vkey(*v), k, "foreign value {v:#x} for key {k}");
            v % K
        },
        false,
    );
}

#[test]
fn churn_scan_arr4_torn() {
    churn_scan::<[u64; 4], _, _>(
        |k, v| {
            let x = k * K + v;
            [x, !x, x.rotate_left(17), x ^ 0x5555_5555_5555_5555]
        },
        |k, a| {
            let x = a[0];
            assert_eq!(
                *a,
                [x, !x, x.rotate_left(17), x ^ 0x5555_5555_5555_5555],
                "torn value for key {k}"
            );
            assert_eq!(vkey(x), k, "foreign value for key {k}");
            x % K
        },
        false,
    );
}

#[test]
fn churn_scan_u32() {
    // key fits in 16 bits here; version in low 16 bits (wraps ok as only
    // key checked for foreignness).
    churn_scan::<u32, _, _>(
        |k, v| ((k as u32) << 16) | (v as u32 & 0xFFFF),
        |k, v| {
            assert_eq!(u64::from(*v >> 16), k, "foreign value {v:#x} for key {k}");
            0
        },
        false,
    );
}

#[test]
fn churn_scan_string() {
    churn_scan::<String, _, _>(
        |k, v| format!("{k}/{v}"),
        |k, s| {
            let (a, b) = s.split_once('/').expect("well formed");
            assert_eq!(
                a.parse::<u64>().unwrap(),
                k,
                "foreign value {s} for key {k}"
            );
            b.parse().unwrap()
        },
        false,
    );
}

#[test]
fn churn_scan_arr8() {
    churn_scan::<[u64; 8], _, _>(
        |k, v| [k * K + v; 8],
        |k, a| {
            assert!(a.iter().all(|&x| x == a[0]), "torn {a:?}");
            assert_eq!(vkey(a[0]), k);
            a[0] % K
        },
        false,
    );
}

// ---------------------------------------------------------------------
// Drop accounting.

struct Counted {
    key: u64,
    ver: u64,
    drops: Arc<AtomicUsize>,
}
impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Big counted (goes to leaves).
struct BigCounted {
    c: Counted,
    _pad: [u64; 6],
}

fn drop_accounting_with<V: Send + Sync + 'static>(
    make: impl Fn(u64, u64, &Arc<AtomicUsize>) -> V,
    get: impl Fn(&V) -> (u64, u64),
    seed: u64,
) {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut created = 0usize;
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<V> = RcuRadixTree::new_in(&domain);
    let mut rng = Rng(seed | 1);
    let mut gone = 0usize; // removed or replaced
    let mut into_inner = Vec::new();
    let mut held = Vec::new();
    let mut present: BTreeMap<u64, u64> = BTreeMap::new();
    let ops = if cfg!(miri) { 200 } else { 20_000 };
    let span = if cfg!(miri) { 100 } else { 700 };
    let mut guard = None;
    for op in 0..ops {
        let k = match rng.below(3) {
            0 => rng.below(span),
            1 => 4096 * rng.below(4) + rng.below(70),
            _ => u64::MAX - rng.below(span),
        };
        match rng.below(20) {
            0..=8 => {
                created += 1;
                let old = tree.insert(k, make(k, op, &drops));
                if let Some(o) = old {
                    assert_eq!(get(&o), (k, present[&k]));
                    gone += 1;
                    if rng.chance(30) {
                        held.push(o);
                    } else if rng.chance(5) && guard.is_none() {
                        into_inner.push(o.into_inner());
                    }
                }
                present.insert(k, op);
            }
            9..=14 => {
                if let Some(o) = tree.remove(k) {
                    assert_eq!(get(&o), (k, present[&k]));
                    present.remove(&k);
                    gone += 1;
                    if rng.chance(30) {
                        held.push(o);
                    }
                }
            }
            15 => {
                held.clear();
            }
            16 => {
                guard = match guard {
                    Some(_) => None,
                    None => Some(domain.read_lock_owned()),
                };
            }
            17 if op % 10 == 0 => {
                let before = tree.len();
                let m = rng.below(3);
                tree.retain(|k, _| k % 3 != m);
                present.retain(|k, _| k % 3 != m);
                gone += before - tree.len();
            }
            18 if op % 50 == 0 => {
                gone += tree.len();
                tree.clear();
                present.clear();
            }
            19 if guard.is_none() => {
                domain.drain();
                let held_n = held.len() + into_inner.len();
                assert_eq!(
                    drops.load(Ordering::Relaxed),
                    gone - held_n,
                    "after drain at op {op}: dropped vs removed-or-replaced minus held"
                );
            }
            _ => {}
        }
        assert_eq!(tree.len(), present.len());
    }
    drop(guard);
    let g = domain.read_lock_owned();
    let got: Vec<(u64, (u64, u64))> = tree.iter(&g).map(|(k, v)| (k, get(v))).collect();
    let want: Vec<(u64, (u64, u64))> = present.iter().map(|(&k, &v)| (k, (k, v))).collect();
    assert_eq!(got, want);
    drop(g);
    drop(held);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), gone - into_inner.len());
    drop(into_inner);
    assert_eq!(drops.load(Ordering::Relaxed), gone);
    drop(tree);
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        created,
        "every value dropped once"
    );
}

#[test]
fn drop_accounting_inline() {
    for seed in 0..if cfg!(miri) { 1 } else { 4 } {
        drop_accounting_with(
            |k, v, d| Counted {
                key: k,
                ver: v,
                drops: d.clone(),
            },
            |c| (c.key, c.ver),
            seed,
        );
    }
}

#[test]
fn drop_accounting_leaves() {
    for seed in 0..if cfg!(miri) { 1 } else { 3 } {
        drop_accounting_with(
            |k, v, d| BigCounted {
                c: Counted {
                    key: k,
                    ver: v,
                    drops: d.clone(),
                },
                _pad: [0; 6],
            },
            |c| (c.c.key, c.c.ver),
            seed,
        );
    }
}

/// Handles that outlive the tree and the node: replaced values in both
/// cells, then the tree is dropped, then the handles.
#[test]
fn handles_outlive_tree_drop_counts() {
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<Counted> = RcuRadixTree::new_in(&domain);
    let mk = |k, v| Counted {
        key: k,
        ver: v,
        drops: drops.clone(),
    };
    let mut held = Vec::new();
    for k in 0..130u64 {
        tree.insert(k, mk(k, 0));
        held.extend(tree.insert(k, mk(k, 1)));
        held.extend(tree.insert(k, mk(k, 2)));
        held.extend(tree.insert(k, mk(k, 3)));
    }
    for k in (0..130u64).step_by(2) {
        held.extend(tree.remove(k));
    }
    assert_eq!(held.len(), 130 * 3 + 65);
    drop(tree);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 65);
    for h in &held {
        assert!(h.ver <= 3 && h.key < 130);
    }
    drop(held);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 130 * 4);
}

/// A sanity test that a concurrently churned tree's drops equal what went
/// out after drain.
#[test]
fn concurrent_drop_accounting() {
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<Counted> = RcuRadixTree::new_in(&domain);
    let created = AtomicUsize::new(0);
    let n = if cfg!(miri) { 200 } else { 50_000 };
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let tree = &tree;
            let drops = &drops;
            let created = &created;
            s.spawn(move || {
                let mut rng = Rng(t + 5);
                for i in 0..n {
                    let k = rng.below(300) + t * 150;
                    if rng.chance(60) {
                        created.fetch_add(1, Ordering::Relaxed);
                        drop(tree.insert(
                            k,
                            Counted {
                                key: k,
                                ver: i,
                                drops: drops.clone(),
                            },
                        ));
                    } else {
                        drop(tree.remove(k));
                    }
                }
            });
        }
        s.spawn(|| {
            let r = domain.register();
            for _ in 0..if cfg!(miri) { 5 } else { 2000 } {
                let g = r.read_lock();
                let mut prev = None;
                tree.iter(&g).for_each(|(k, v)| {
                    assert_eq!(v.key, k);
                    assert!(prev.is_none_or(|p| p < k));
                    prev = Some(k);
                });
            }
        });
    });
    domain.drain();
    let len = tree.len();
    assert_eq!(
        drops.load(Ordering::Relaxed) + len,
        created.load(Ordering::Relaxed)
    );
    drop(tree);
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        created.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------
// Paused scans: a scan (plain or marked) is advanced a few steps at a time
// while the same thread writes between its steps. Every yield must be a
// state of its key at some time during the scan, keys ascend, and every key
// unchanged for the whole scan is yielded.

/// State of every key over time: key -> [(from_time, Some((ver, marks)))].
type History = BTreeMap<u64, Vec<(u64, Option<(u64, u8)>)>>;

fn record(h: &mut History, t: u64, k: u64, s: Option<(u64, u8)>) {
    h.entry(k).or_default().push((t, s));
}

/// States of `k` live at some time in `[t0, t1]`.
fn states_in(h: &History, k: u64, t0: u64, t1: u64) -> Vec<Option<(u64, u8)>> {
    let Some(v) = h.get(&k) else {
        return vec![None];
    };
    let mut out = Vec::new();
    let mut before = None;
    for &(t, s) in v {
        if t <= t0 {
            before = Some(s);
        } else if t <= t1 {
            out.push(s);
        }
    }
    out.insert(0, before.unwrap_or(None));
    out
}

fn paused_scans<V: Val>(seed: u64, keys: Keys) {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<V> = RcuRadixTree::new_in(&domain);
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let mut model = Model::new();
    let mut hist = History::new();
    let mut t = 0u64;
    let mut ver = 0u64;
    let mut held = Vec::new();
    // Populate.
    let pop = if cfg!(miri) { 60 } else { 400 };
    for _ in 0..pop {
        let k = key(&mut rng, keys);
        ver += 1;
        t += 1;
        held.extend(tree.insert(k, V::make(k, ver)));
        let marks = if rng.chance(40) {
            let m = MARKS[rng.below(3) as usize];
            tree.set_mark(k, m);
            1 << m as u8
        } else {
            model.get(&k).map_or(0, |e| e.1)
        };
        let marks = if tree.is_marked(k, Mark::M0, &domain.read_lock_owned()) {
            marks | 1
        } else {
            marks & !1
        };
        let e = model.entry(k).or_insert((0, 0));
        e.0 = ver;
        e.1 = marks;
        // Recompute marks exactly from the tree (marks carry over on replace).
        let g = domain.read_lock_owned();
        let mut mk = 0u8;
        for m in MARKS {
            if tree.is_marked(k, m, &g) {
                mk |= 1 << m as u8;
            }
        }
        drop(g);
        model.get_mut(&k).unwrap().1 = mk;
        record(&mut hist, t, k, Some((ver, mk)));
    }
    drop(held);
    domain.drain();
    let scans = if cfg!(miri) { 4 } else { 300 };
    for _ in 0..scans {
        let g = domain.read_lock_owned();
        let mut held = Vec::new();
        let r = rand_bounds(&mut rng, keys, &model);
        let mark = if rng.chance(50) {
            Some(MARKS[rng.below(3) as usize])
        } else {
            None
        };
        let t0 = t;
        let mut it = match mark {
            Some(m) => tree.range_marked(r, m, &g),
            None => tree.range(r, &g),
        };
        let mut yielded: Vec<(u64, &V)> = Vec::new();
        let mut yield_t: Vec<u64> = Vec::new();
        let mut pos = match r.0 {
            Included(a) => a,
            Excluded(a) => a.saturating_add(1),
            Unbounded => 0,
        };
        loop {
            // A few writes, mostly just ahead of the scan's position.
            for _ in 0..rng.below(4) {
                let k = if rng.chance(70) {
                    pos.wrapping_add(rng.below(70))
                } else {
                    key(&mut rng, keys)
                };
                t += 1;
                match rng.below(6) {
                    0 | 1 => {
                        ver += 1;
                        held.extend(tree.insert(k, V::make(k, ver)));
                        let mk = model.get(&k).map_or(0, |e| e.1);
                        model.insert(k, (ver, mk));
                        record(&mut hist, t, k, Some((ver, mk)));
                    }
                    2 => {
                        if let Some(o) = tree.remove(k) {
                            held.push(o);
                            model.remove(&k);
                            record(&mut hist, t, k, None);
                        }
                        if rng.chance(50) {
                            // Reinsert at once (the other cell).
                            t += 1;
                            ver += 1;
                            held.extend(tree.insert(k, V::make(k, ver)));
                            model.insert(k, (ver, 0));
                            record(&mut hist, t, k, Some((ver, 0)));
                        }
                    }
                    _ => {
                        let m = MARKS[rng.below(3) as usize];
                        let on = rng.chance(50);
                        let ok = if on {
                            tree.set_mark(k, m)
                        } else {
                            tree.clear_mark(k, m)
                        };
                        if let Some(e) = model.get_mut(&k) {
                            assert!(ok);
                            if on {
                                e.1 |= 1 << m as u8;
                            } else {
                                e.1 &= !(1 << m as u8);
                            }
                            let s = *e;
                            record(&mut hist, t, k, Some(s));
                        }
                    }
                }
            }
            // Advance: one step by next, or the rest by fold.
            if rng.chance(8) {
                let rest = it.fold(Vec::new(), |mut v, x| {
                    v.push(x);
                    v
                });
                for x in rest {
                    yielded.push(x);
                    yield_t.push(t);
                }
                break;
            }
            match it.next() {
                Some(x) => {
                    pos = x.0;
                    yielded.push(x);
                    yield_t.push(t);
                }
                None => break,
            }
        }
        let t1 = t;
        // Order and range.
        for w in yielded.windows(2) {
            assert!(w[0].0 < w[1].0, "not ascending: {} then {}", w[0].0, w[1].0);
        }
        for &(k, v) in &yielded {
            assert!(r.contains(&k), "{k} outside {r:?}");
            let st = states_in(&hist, k, t0, t1);
            let val_ok = st.iter().flatten().any(|&(vv, _)| V::make(k, vv) == *v);
            assert!(
                val_ok,
                "scan {r:?} mark {mark:?}: key {k} value {v:?} not a state of the key during the scan: {st:?}"
            );
            if let Some(m) = mark {
                let bit = 1u8 << m as u8;
                assert!(
                    st.iter().flatten().any(|&(_, mk)| mk & bit != 0),
                    "scan {r:?}: key {k} yielded as marked {m:?} but never marked during the scan: {st:?}"
                );
                // Stronger: the value yielded belongs to a state whose
                // entry was marked (the value of an entry never marked is
                // what 7c74628 fixed).
                let strong = st
                    .iter()
                    .flatten()
                    .any(|&(vv, mk)| mk & bit != 0 && V::make(k, vv) == *v);
                if !strong {
                    // Allowed only when the value's entry was replaced
                    // (same entry lineage) by a marked one; check that the
                    // marked state has a later version of the same lineage:
                    // i.e., no removal between them.
                    let hv = &hist[&k];
                    let idx = hv
                        .iter()
                        .position(|&(_, s)| s.is_some_and(|(vv, _)| V::make(k, vv) == *v))
                        .unwrap();
                    let later_marked_same_lineage = hv[idx..]
                        .iter()
                        .take_while(|(tt, s)| s.is_some() && *tt <= t1)
                        .any(|&(_, s)| s.unwrap().1 & bit != 0);
                    assert!(
                        later_marked_same_lineage,
                        "scan {r:?}: key {k} yielded value {v:?} of an entry never marked {m:?} (history {hv:?}, t0 {t0} t1 {t1})"
                    );
                }
            }
        }
        // Completeness: keys in range with one unchanged state for the whole
        // scan (present, and marked for a marked scan).
        for &k in hist.range(r).map(|(k, _)| k) {
            let st = states_in(&hist, k, t0, t1);
            if st.len() == 1
                && let Some((vv, mk)) = st[0]
                && mark.is_none_or(|m| mk & (1 << m as u8) != 0)
            {
                let got = yielded.iter().find(|x| x.0 == k);
                assert!(
                    got.is_some_and(|x| *x.1 == V::make(k, vv)),
                    "scan {r:?} mark {mark:?}: unchanged key {k} ({vv}, {mk:#b}) missing or wrong: {:?}",
                    got
                );
            }
        }

        drop(g);
        drop(held);
        if rng.chance(30) {
            domain.drain();
        }
    }
    let g = domain.read_lock_owned();
    check_all(&tree, &model, keys, &g, &mut rng, 4);
}

macro_rules! paused_tests {
    ($($name:ident: $ty:ty;)*) => {$(
        #[test]
        fn $name() {
            for seed in 0..if cfg!(miri) { 1 } else { 8 } {
                for keys in [Keys::Dense, Keys::Boundary, Keys::High] {
                    paused_scans::<$ty>(seed * 3 + keys as u64 + 100, keys);
                }
            }
        }
    )*};
}

paused_tests! {
    paused_u64: u64;
    paused_arr4: [u64; 4];
    paused_string: String;
}

/// Marked searches never yield the value of an entry that was never
/// marked. The writer cycles each key through: insert (odd version),
/// set M1, clear M1, remove, insert (even version, never marked), remove.
/// No replacement ever happens (marks would carry over), so an even value
/// yielded by a search for M1 is an entry that never carried it. Handles
/// are held in bursts so both cells stay busy and entries become leaves.
#[test]
fn marked_search_never_yields_unmarked_entry() {
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    let n: u64 = if cfg!(miri) { 64 } else { 512 };
    let iters = if cfg!(miri) { 400 } else { 400_000 };
    // Stable marked keys every 8th, so scans have something to return.
    for k in (0..n).step_by(8) {
        tree.insert(k, k * K + 1);
        tree.set_mark(k, Mark::M1);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng(1234);
            let mut phase = vec![0u8; n as usize];
            let mut ver = vec![0u64; n as usize];
            let mut held = Vec::new();
            let start = std::time::Instant::now();
            for it in 0.. {
                if it >= iters
                    && (cfg!(miri) || start.elapsed() > std::time::Duration::from_millis(1500))
                {
                    break;
                }
                let k = rng.below(n);
                if k.is_multiple_of(8) {
                    continue;
                }
                let i = k as usize;
                match phase[i] {
                    0 => {
                        ver[i] = (ver[i] + 2) | 1; // odd
                        assert!(tree.insert(k, k * K + ver[i]).is_none());
                    }
                    1 => assert!(tree.set_mark(k, Mark::M1)),
                    2 => assert!(tree.clear_mark(k, Mark::M1)),
                    3 | 5 => held.extend(tree.remove(k)),
                    4 => {
                        ver[i] = (ver[i] + 1) & !1; // even
                        if ver[i] == 0 {
                            ver[i] = 2;
                        }
                        assert!(tree.insert(k, k * K + ver[i]).is_none());
                    }
                    _ => unreachable!(),
                }
                phase[i] = (phase[i] + 1) % 6;
                if it % 200 == 0 {
                    held.clear();
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
        for r in 0..2u64 {
            let tree = &tree;
            let stop = &stop;
            let domain = &domain;
            s.spawn(move || {
                let reader = domain.register();
                let mut rng = Rng(77 + r);
                let check = |k: u64, v: &u64, what: &str| {
                    assert_eq!(*v / K, k, "{what}: foreign value {v:#x} for key {k}");
                    assert!(
                        (*v % K) % 2 == 1,
                        "{what}: key {k} yielded an entry never marked M1 (version {})",
                        *v % K
                    );
                };
                let mut rounds = 0;
                while !stop.load(Ordering::SeqCst) || rounds < 2 {
                    rounds += 1;
                    let g = reader.read_lock();
                    let lo = rng.below(n);
                    let it = tree.range_marked(lo.., Mark::M1, &g);
                    // Pause inside the node between steps.
                    for (k, v) in it {
                        check(k, v, "range_marked next");
                        for _ in 0..rng.below(50) {
                            std::hint::spin_loop();
                        }
                    }
                    tree.iter_marked(Mark::M1, &g)
                        .for_each(|(k, v)| check(k, v, "iter_marked fold"));
                    let p = rng.below(n);
                    if let Some((k, v)) = tree.next_marked_after(p, Mark::M1, &g) {
                        check(k, v, "next_marked_after");
                    }
                    if let Some((k, v)) = tree.prev_marked_before(p, Mark::M1, &g) {
                        check(k, v, "prev_marked_before");
                    }
                    if let Some((k, v)) = tree.first_marked(Mark::M1, &g) {
                        check(k, v, "first_marked");
                    }
                }
            });
        }
    });
}
