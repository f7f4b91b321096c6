//! Fuzzes `rcu-radix` against `std::collections::BTreeMap`.
//!
//! # Input
//! 0 to 15 *stable* keys (with a fixed mark pattern) for an optional reader
//! thread, and up to [`MAX_OPS`] operations on keys drawn from four regions:
//! small (`0..64`), near `u64::MAX`, around `2^32`, and any `u64` (so compressed
//! paths split and merge): `insert`, `remove`, `get_or_insert_with`, `retain`,
//! `clear`, the marks (`set_mark`, `clear_mark`, `is_marked`, `any_marked`,
//! `first_marked`, `next_marked_after`, `prev_marked_before`, `iter_marked`,
//! `range_marked`), `get`, `first`, `last`, `next_after`, `prev_before`,
//! `range` with every kind of bound (also folded: its internal iteration has
//! a fast path), `stats`, and holding, dropping or
//! `into_inner` of the [`Removed`] handles. Each input has its own
//! [`RcuDomain`].
//!
//! # Checks
//! * Every result matches a `BTreeMap<u64, (value, [mark; 3])>` model
//!   (replacing a value keeps its marks, as the tree documents); `len`,
//!   `stats().entries` and a full ordered iteration (and one per mark) are
//!   compared after steps.
//! * A held `Removed` keeps its key and value until dropped; `into_inner`
//!   returns it.
//! * A reader thread checks during the run that every stable key is found
//!   with its value and marks, and that a scan is strictly ascending and
//!   yields every stable key exactly once (the documented guarantee).
//! * Leak accounting: after the tree is dropped and the domain drained,
//!   every value made was dropped exactly once.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rcu_core::{Guard, RcuDomain};
use rcu_radix::{Mark, RcuRadixTree, Removed};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MAX_OPS: usize = 96;
const MAX_HELD: usize = 4;
const STABLE_BASE: u64 = 1 << 40;
const STABLE_STEP: u64 = 7;

#[derive(Arbitrary, Debug)]
struct Input {
    stable: u8,
    reader_thread: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Key {
    Small(u8),
    /// `u64::MAX - n % 64`.
    High(u8),
    /// `2^32 - 32 + n % 64`.
    Mid(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum B {
    Included(Key),
    Excluded(Key),
    Unbounded,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Insert(Key, u16),
    Remove(Key),
    GetOrInsert(Key, u16),
    Get(Key),
    FirstLast,
    NextAfter(Key),
    PrevBefore(Key),
    Range(B, B),
    RangeMarked(B, B, u8),
    /// Keeps entries whose value is not divisible by `2 + n % 5` (and the
    /// stable keys).
    Retain(u8),
    Clear,
    SetMark(Key, u8),
    ClearMark(Key, u8),
    /// `is_marked`, `any_marked`, `first_marked`, `next_marked_after`,
    /// `prev_marked_before`.
    MarkReads(Key, u8),
    Stats,
    DropHeld(u8),
    IntoInner(u8),
}

fn is_stable(k: u64) -> bool {
    (STABLE_BASE..STABLE_BASE + 16 * STABLE_STEP).contains(&k)
        && (k - STABLE_BASE).is_multiple_of(STABLE_STEP)
}

fn key(k: Key) -> u64 {
    let k = match k {
        Key::Small(n) => u64::from(n % 64),
        Key::High(n) => u64::MAX - u64::from(n % 64),
        Key::Mid(n) => (1u64 << 32) - 32 + u64::from(n % 64),
        Key::Any(k) => k,
    };
    // Operations never touch the stable keys.
    if is_stable(k) { k + 1 } else { k }
}

fn bound(b: B) -> Bound<u64> {
    match b {
        B::Included(k) => Bound::Included(key(k)),
        B::Excluded(k) => Bound::Excluded(key(k)),
        B::Unbounded => Bound::Unbounded,
    }
}

/// Whether `BTreeMap::range` accepts the bounds (the tree panics alike).
fn valid(lo: Bound<u64>, hi: Bound<u64>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Included(a) | Excluded(a), Included(b) | Excluded(b)) if a > b => false,
        (Excluded(a), Excluded(b)) if a == b => false,
        _ => true,
    }
}

fn mark(n: u8) -> Mark {
    match n % 3 {
        0 => Mark::M0,
        1 => Mark::M1,
        _ => Mark::M2,
    }
}

/// A value that names its key and counts its drops.
#[derive(Debug)]
struct Val {
    key: u64,
    x: u16,
    drops: Arc<AtomicUsize>,
}

impl Drop for Val {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

type Model = BTreeMap<u64, (u16, [bool; 3])>;

fn stable_key(i: u64) -> u64 {
    STABLE_BASE + i * STABLE_STEP
}

/// The fixed marks of stable key `i`.
fn stable_marks(i: u64) -> [bool; 3] {
    [
        i.is_multiple_of(2),
        i.is_multiple_of(3),
        i.is_multiple_of(5),
    ]
}

struct Run<'a> {
    tree: &'a RcuRadixTree<Val>,
    model: Model,
    drops: Arc<AtomicUsize>,
    made: usize,
    held: Vec<(Removed<Val>, u64, u16)>,
}

impl Run<'_> {
    fn val(&mut self, key: u64, x: u16) -> Val {
        self.made += 1;
        Val {
            key,
            x,
            drops: Arc::clone(&self.drops),
        }
    }

    fn took(&mut self, removed: Option<Removed<Val>>, key: u64, want: Option<u16>) {
        assert_eq!(removed.as_ref().map(|r| r.x), want, "old value of {key}");
        if let Some(r) = removed {
            assert_eq!((r.key(), r.key), (key, key));
            if self.held.len() < MAX_HELD {
                let x = r.x;
                self.held.push((r, key, x));
            }
        }
    }

    fn entries<'g>(it: impl Iterator<Item = (u64, &'g Val)>) -> Vec<(u64, u16)> {
        it.map(|(k, v)| {
            assert_eq!(v.key, k, "value of another key");
            (k, v.x)
        })
        .collect()
    }

    fn want(&self, lo: Bound<u64>, hi: Bound<u64>, m: Option<Mark>) -> Vec<(u64, u16)> {
        self.model
            .range((lo, hi))
            .filter(|(_, (_, marks))| m.is_none_or(|m| marks[m as usize]))
            .map(|(k, (x, _))| (*k, *x))
            .collect()
    }

    fn check_all(&self, guard: &impl Guard) {
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            Self::entries(self.tree.iter(guard)),
            self.want(all.0, all.1, None)
        );
        for m in [Mark::M0, Mark::M1, Mark::M2] {
            assert_eq!(
                Self::entries(self.tree.iter_marked(m, guard)),
                self.want(all.0, all.1, Some(m)),
                "iter_marked({m:?})"
            );
            let any = self.model.values().any(|(_, marks)| marks[m as usize]);
            assert_eq!(self.tree.any_marked(m, guard), any, "any_marked({m:?})");
        }
    }
}

fn pair(e: Option<(u64, &Val)>) -> Option<(u64, u16)> {
    e.map(|(k, v)| {
        assert_eq!(v.key, k, "value of another key");
        (k, v.x)
    })
}

fn mpair(e: Option<(&u64, &(u16, [bool; 3]))>) -> Option<(u64, u16)> {
    e.map(|(k, (x, _))| (*k, *x))
}

fn run(input: &Input) {
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<Val> = RcuRadixTree::new_in(&domain);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut r = Run {
        tree: &tree,
        model: Model::new(),
        drops: Arc::clone(&drops),
        made: 0,
        held: Vec::new(),
    };
    let n_stable = u64::from(input.stable % 16);
    for i in 0..n_stable {
        let k = stable_key(i);
        let v = r.val(k, i as u16);
        assert!(tree.insert(k, v).is_none());
        let marks = stable_marks(i);
        for (m, &on) in marks.iter().enumerate() {
            if on {
                assert!(tree.set_mark(k, mark(m as u8)));
            }
        }
        r.model.insert(k, (i as u16, marks));
    }
    let done = AtomicBool::new(false);

    std::thread::scope(|s| {
        let reader_thread = input.reader_thread.then(|| {
            let (tree, done, domain) = (&tree, &done, &domain);
            s.spawn(move || {
                let reader = domain.register();
                let mut rounds = 0u32;
                while rounds < 4 || !done.load(Ordering::SeqCst) {
                    rounds += 1;
                    let guard = reader.read_lock();
                    for i in 0..n_stable {
                        let k = stable_key(i);
                        let v = tree
                            .get(k, &guard)
                            .unwrap_or_else(|| panic!("stable key {k} missing"));
                        assert_eq!((v.key, v.x), (k, i as u16), "stable key {k}");
                        for (m, &on) in stable_marks(i).iter().enumerate() {
                            assert_eq!(tree.is_marked(k, mark(m as u8), &guard), on, "stable mark");
                        }
                    }
                    if rounds.is_multiple_of(4) {
                        let mut prev = None;
                        let mut seen = 0;
                        for (k, v) in tree.iter(&guard) {
                            assert_eq!(v.key, k, "value of another key");
                            assert!(
                                prev.is_none_or(|p| p < k),
                                "scan not ascending: {prev:?} then {k}"
                            );
                            prev = Some(k);
                            seen += u64::from(is_stable(k));
                        }
                        assert_eq!(seen, n_stable, "stable keys in a scan");
                        let lo = stable_key(0);
                        let keys: Vec<u64> = tree
                            .range(lo..=stable_key(15), &guard)
                            .map(|(k, _)| k)
                            .filter(|&k| is_stable(k))
                            .collect();
                        assert_eq!(keys, (0..n_stable).map(stable_key).collect::<Vec<_>>());
                    }
                    drop(guard);
                    if rounds > 100_000 {
                        break;
                    }
                }
            })
        });

        let reader = domain.register();
        for (step, &op) in ops.iter().enumerate() {
            let mut step_key = None;
            match op {
                Op::Insert(k, x) => {
                    let k = key(k);
                    step_key = Some(k);
                    let v = r.val(k, x);
                    let old = tree.insert(k, v);
                    let want = match r.model.get_mut(&k) {
                        Some(e) => Some(std::mem::replace(&mut e.0, x)),
                        None => {
                            r.model.insert(k, (x, [false; 3]));
                            None
                        }
                    };
                    r.took(old, k, want);
                }
                Op::Remove(k) => {
                    let k = key(k);
                    step_key = Some(k);
                    let old = tree.remove(k);
                    let want = r.model.remove(&k).map(|e| e.0);
                    r.took(old, k, want);
                }
                Op::GetOrInsert(k, x) => {
                    let k = key(k);
                    step_key = Some(k);
                    let absent = !r.model.contains_key(&k);
                    let guard = reader.read_lock();
                    let mut called = false;
                    let got = tree.get_or_insert_with(
                        k,
                        || {
                            called = true;
                            Val {
                                key: k,
                                x,
                                drops: Arc::clone(&drops),
                            }
                        },
                        &guard,
                    );
                    let want = r.model.entry(k).or_insert((x, [false; 3])).0;
                    assert_eq!((got.key, got.x), (k, want), "get_or_insert_with {k}");
                    assert_eq!(called, absent, "get_or_insert_with {k} called f");
                    r.made += usize::from(called);
                }
                Op::Get(k) => step_key = Some(key(k)),
                Op::FirstLast => {
                    let g = reader.read_lock();
                    assert_eq!(
                        pair(tree.first(&g)),
                        mpair(r.model.first_key_value()),
                        "first"
                    );
                    assert_eq!(pair(tree.last(&g)), mpair(r.model.last_key_value()), "last");
                }
                Op::NextAfter(k) => {
                    let k = key(k);
                    let g = reader.read_lock();
                    let want = mpair(r.model.range((Bound::Excluded(k), Bound::Unbounded)).next());
                    assert_eq!(pair(tree.next_after(k, &g)), want, "next_after({k})");
                }
                Op::PrevBefore(k) => {
                    let k = key(k);
                    let g = reader.read_lock();
                    let want = mpair(r.model.range(..k).next_back());
                    assert_eq!(pair(tree.prev_before(k, &g)), want, "prev_before({k})");
                }
                Op::Range(lo, hi) | Op::RangeMarked(lo, hi, _) => {
                    let (lo, hi) = (bound(lo), bound(hi));
                    if valid(lo, hi) {
                        let g = reader.read_lock();
                        let (got, m) = match op {
                            Op::RangeMarked(_, _, m) => {
                                let m = mark(m);
                                (Run::entries(tree.range_marked((lo, hi), m, &g)), Some(m))
                            }
                            _ => (Run::entries(tree.range((lo, hi), &g)), None),
                        };
                        assert_eq!(got, r.want(lo, hi, m), "range {lo:?}..{hi:?} mark {m:?}");
                        if m.is_none() {
                            // Internal iteration (`fold`) has a fast path
                            // through bottom nodes.
                            let folded =
                                tree.range((lo, hi), &g).fold(Vec::new(), |mut v, (k, x)| {
                                    assert_eq!(x.key, k, "value of another key");
                                    v.push((k, x.x));
                                    v
                                });
                            assert_eq!(folded, got, "folded range {lo:?}..{hi:?}");
                        }
                    }
                }
                Op::Retain(n) => {
                    let m = 2 + u16::from(n % 5);
                    let mut visited = Vec::new();
                    tree.retain(|k, v| {
                        assert_eq!(v.key, k);
                        visited.push(k);
                        is_stable(k) || v.x % m != 0
                    });
                    assert_eq!(
                        visited,
                        r.model.keys().copied().collect::<Vec<_>>(),
                        "retain's order"
                    );
                    r.model.retain(|k, (x, _)| is_stable(*k) || *x % m != 0);
                }
                Op::Clear => {
                    if n_stable == 0 {
                        tree.clear();
                    } else {
                        tree.retain(|k, _| is_stable(k));
                    }
                    r.model.retain(|k, _| is_stable(*k));
                }
                Op::SetMark(k, m) | Op::ClearMark(k, m) => {
                    let k = key(k);
                    step_key = Some(k);
                    let on = matches!(op, Op::SetMark(..));
                    let done = if on {
                        tree.set_mark(k, mark(m))
                    } else {
                        tree.clear_mark(k, mark(m))
                    };
                    let present = match r.model.get_mut(&k) {
                        Some(e) => {
                            e.1[mark(m) as usize] = on;
                            true
                        }
                        None => false,
                    };
                    assert_eq!(done, present, "set/clear_mark({k}) on an absent key");
                }
                Op::MarkReads(k, m) => {
                    let (k, m) = (key(k), mark(m));
                    let g = reader.read_lock();
                    let marked = |e: &(&u64, &(u16, [bool; 3]))| e.1.1[m as usize];
                    let want_is = r.model.get(&k).is_some_and(|e| e.1[m as usize]);
                    assert_eq!(tree.is_marked(k, m, &g), want_is, "is_marked({k}, {m:?})");
                    assert_eq!(
                        pair(tree.first_marked(m, &g)),
                        mpair(r.model.iter().find(marked)),
                        "first_marked({m:?})"
                    );
                    assert_eq!(
                        pair(tree.next_marked_after(k, m, &g)),
                        mpair(
                            r.model
                                .range((Bound::Excluded(k), Bound::Unbounded))
                                .find(marked)
                        ),
                        "next_marked_after({k}, {m:?})"
                    );
                    assert_eq!(
                        pair(tree.prev_marked_before(k, m, &g)),
                        mpair(r.model.range(..k).rev().find(marked)),
                        "prev_marked_before({k}, {m:?})"
                    );
                }
                Op::Stats => {
                    let st = tree.stats();
                    assert_eq!(st.entries, r.model.len(), "stats().entries");
                    assert!(st.height <= 11, "height {}", st.height);
                }
                Op::DropHeld(i) => {
                    if !r.held.is_empty() {
                        let i = usize::from(i) % r.held.len();
                        drop(r.held.remove(i));
                    }
                }
                Op::IntoInner(i) => {
                    if !r.held.is_empty() {
                        let i = usize::from(i) % r.held.len();
                        let (h, k, x) = r.held.remove(i);
                        // No guard of this domain is held here.
                        let v = h.into_inner();
                        assert_eq!((v.key, v.x), (k, x), "into_inner");
                    }
                }
            }
            for (h, k, x) in &r.held {
                assert_eq!(
                    (h.key(), h.key, h.x),
                    (*k, *k, *x),
                    "a held Removed changed"
                );
            }
            assert_eq!(tree.len(), r.model.len(), "len after step {step} ({op:?})");
            assert_eq!(tree.is_empty(), r.model.is_empty());
            if let Some(k) = step_key {
                let g = reader.read_lock();
                let want = r.model.get(&k).map(|e| e.0);
                assert_eq!(tree.get(k, &g).map(|v| v.x), want, "get({k}) after {op:?}");
                assert_eq!(tree.contains_key(k, &g), want.is_some());
            }
            if step % 8 == 7 {
                r.check_all(&reader.read_lock());
            }
        }
        r.check_all(&reader.read_lock());
        done.store(true, Ordering::SeqCst);
        // Joined, not left to the scope: the scope's wait ends before the
        // thread's TLS destructors run, and LeakSanitizer would report
        // glibc's destructor list of a thread that is still exiting.
        if let Some(h) = reader_thread {
            h.join().unwrap();
        }
    });

    let made = r.made;
    drop(r);
    drop(tree);
    domain.drain();
    drop(domain);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        made,
        "values made != values dropped"
    );
}

fuzz_target!(|input: Input| run(&input));
