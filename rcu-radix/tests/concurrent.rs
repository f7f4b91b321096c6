//! Concurrency: readers against writers that churn keys and change the
//! tree's height; range scans under churn; leak accounting after `drain`.

// Under `--cfg rcu_loom` rcu-core has no process-wide domain.
#![cfg(not(rcu_loom))]

mod common;

use common::{Counted, Rng};
use rcu_core::RcuDomain;
use rcu_radix::{Mark, RcuRadixTree};
use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

// An iterator yields `&V` and reads nodes with atomics only: it may cross
// threads (an `.await` in a spawned task, on an owned guard) when `V` is
// `Sync`. It was not `Send` at all (raw node pointers in its cursor).
assert_impl_all!(rcu_radix::Iter<'static, String>: Send, Sync);
assert_not_impl_any!(rcu_radix::Iter<'static, Cell<u8>>: Send, Sync);

/// A scan started on one thread goes on on another (as a task's does after
/// an `.await` on a multi-threaded executor), under an owned guard that
/// moves with it, while a writer removes keys ahead of it: it yields the
/// untouched keys, in order, once each.
#[test]
fn a_scan_moves_to_another_thread_with_its_owned_guard() {
    let n: u64 = if cfg!(miri) { 300 } else { 2_000 };
    let tree: RcuRadixTree<String> = (0..n).map(|k| (k * 7, k.to_string())).collect();
    let guard = tree.domain().read_lock_owned();
    let mut it = tree.range(..n / 2 * 7, &guard);
    let first: Vec<u64> = it.by_ref().take(10).map(|(k, _)| k).collect();
    assert_eq!(first, (0..10u64).map(|k| k * 7).collect::<Vec<_>>());
    // Odd keys above the scan's position go while it is suspended.
    for k in (20..n).filter(|k| k % 2 == 1) {
        drop(tree.remove(k * 7));
    }
    let rest: Vec<(u64, String)> = std::thread::scope(|s| {
        s.spawn(move || it.map(|(k, v)| (k, v.clone())).collect())
            .join()
            .unwrap()
    });
    drop(guard);
    let even_rest: Vec<u64> = rest
        .iter()
        .map(|&(k, _)| k)
        .filter(|k| (k / 7) % 2 == 0)
        .collect();
    assert_eq!(
        even_rest,
        (10..n / 2)
            .map(|k| k * 7)
            .filter(|k| (k / 7) % 2 == 0)
            .collect::<Vec<_>>(),
        "every key present for the whole scan, in order, once"
    );
    assert!(
        rest.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly ascending"
    );
    assert!(rest.iter().all(|(k, v)| *v == (k / 7).to_string()));
}

/// Stable keys: multiples of 3 in `0..n*3`, plus two near `3 << 40`, all
/// below `1 << 42`, so that churned keys above them grow the root and their
/// removal shrinks it again.
fn stable_keys(n: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..n).map(|i| i * 3).collect();
    keys.extend([3 << 40, (3 << 40) + 3]);
    keys
}

/// Removes every churned key at or above `1 << 42`: the root collapses back
/// to the stable keys' height. Returns the height before and after.
fn shrink(tree: &RcuRadixTree<u64>) -> (usize, usize) {
    let before = tree.stats().height;
    let guard = tree.domain().read_lock_owned();
    let high: Vec<u64> = tree.range(1 << 42.., &guard).map(|(k, _)| k).collect();
    drop(guard);
    for k in high {
        drop(tree.remove(k));
    }
    (before, tree.stats().height)
}

/// Churned keys: never multiples of 3, spread from small to the top of the
/// key space so the root's height grows and shrinks while readers run.
fn churn_key(rng: &mut Rng, n: u64) -> u64 {
    let r = rng.next();
    let k = match r % 4 {
        0 => r % (n * 3),
        1 => u64::MAX - (r >> 8) % 1000,
        2 => (r >> 4) % (1 << 50),
        _ => r,
    };
    // k ^ 1 is k + 1 or k - 1: never a multiple of 3 when k is one.
    if k % 3 == 0 { k ^ 1 } else { k }
}

/// Writer operations between two shrinks of the root.
const SHRINK_EVERY: usize = if cfg!(miri) { 40 } else { 512 };

fn sizes() -> (u64, usize, usize) {
    // (stable keys, writer operations, reader rounds)
    if cfg!(miri) {
        (24, 200, 10)
    } else {
        (3_000, 30_000, 200)
    }
}

/// Readers always find every stable key, with its value, and never a key
/// that was never inserted, while two writers churn other keys (growing and
/// shrinking the height) and toggle marks.
#[test]
fn stable_keys_always_found_during_churn() {
    let (n, ops, rounds) = sizes();
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    let stable = stable_keys(n);
    for &k in &stable {
        tree.insert(k, k.wrapping_mul(7));
    }
    let done = AtomicBool::new(false);
    let writers_left = AtomicUsize::new(2);
    let heights = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (tree, done, writers_left, heights) = (&tree, &done, &writers_left, &heights);
            s.spawn(move || {
                let mut rng = Rng(0x9e37 + w);
                for i in 0..ops {
                    let k = churn_key(&mut rng, n);
                    match i % 4 {
                        0 | 1 => drop(tree.insert(k, k.wrapping_mul(7))),
                        2 => drop(tree.remove(k)),
                        _ => {
                            tree.set_mark(k, Mark::M1);
                        }
                    }
                    if i % SHRINK_EVERY == SHRINK_EVERY - 1 && w == 0 {
                        let (before, after) = shrink(tree);
                        heights.lock().unwrap().extend([before, after]);
                    }
                }
                if writers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                }
            });
        }
        for r in 0..2u64 {
            let (tree, done, stable, domain) = (&tree, &done, &stable, &domain);
            s.spawn(move || {
                let reader = domain.register();
                let mut rng = Rng(77 + r);
                let mut round = 0;
                while round < rounds || !done.load(Ordering::Acquire) {
                    let guard = reader.read_lock();
                    for &k in stable {
                        assert_eq!(
                            tree.get(k, &guard),
                            Some(&k.wrapping_mul(7)),
                            "stable key {k}"
                        );
                    }
                    for _ in 0..64 {
                        // Multiples of 3 outside the stable set: never inserted.
                        let absent = (n + rng.next() % (1 << 30)) * 3;
                        if !stable.contains(&absent) {
                            assert_eq!(tree.get(absent, &guard), None);
                        }
                    }
                    // Nearest-key searches land on stable keys or churned ones.
                    let k = (rng.next() % n) * 3;
                    let (next, _) = tree.next_after(k, &guard).expect("a stable key follows");
                    assert!(next > k && (next % 3 != 0 || next == k + 3 || next >= 3 * n));
                    drop(guard);
                    round += 1;
                }
            });
        }
    });
    let s = tree.stats();
    assert!(s.height <= 11);
    assert_eq!(s.entries, tree.len());
    let heights = heights.into_inner().unwrap();
    let (low, high) = (heights.iter().min().unwrap(), heights.iter().max().unwrap());
    assert!(
        high > low,
        "the height changed during the test: {low}..{high}"
    );
}

/// Where [`range_scans_in_order_under_churn`] puts the version of a replaced
/// stable value (stable keys are below `1 << 42`).
const VERSION_SHIFT: u32 = 44;

/// The key a value read at `k` was stored under: the value itself, or, for
/// a key below `1 << VERSION_SHIFT`, its bits below the version.
fn key_of(v: u64, k: u64) -> u64 {
    if k < 1 << VERSION_SHIFT {
        v & ((1 << VERSION_SHIFT) - 1)
    } else {
        v
    }
}

/// A range scan under one guard yields strictly ascending keys, no
/// duplicates, and every stable key in the range, with its own value, while
/// a writer churns other keys, changes the height, and replaces stable keys'
/// values (holding the old ones a while, so the replacements move between a
/// slot's two cells and into entries of their own). One reader scans with
/// `next`, the other with a few `next` calls and then `fold` (the internal
/// iteration behind `for_each`, `sum` and `count`), which walks the nodes by
/// a path of its own.
#[test]
fn range_scans_in_order_under_churn() {
    let (n, ops, rounds) = sizes();
    let domain = RcuDomain::new();
    let tree: RcuRadixTree<u64> = RcuRadixTree::new_in(&domain);
    let stable = stable_keys(n);
    for &k in &stable {
        tree.insert(k, k);
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tree_ref, done_ref) = (&tree, &done);
        s.spawn(move || {
            let mut rng = Rng(5);
            let mut held = Vec::new();
            for i in 0..ops {
                let k = churn_key(&mut rng, n);
                match i % 4 {
                    2 => drop(tree_ref.remove(k)),
                    3 => {
                        // A stable key's value replaced (a new version, in
                        // the bits above the key's): the key stays present
                        // throughout.
                        let k = rng.next() % n * 3;
                        held.extend(tree_ref.insert(k, k | (i as u64) << VERSION_SHIFT));
                        if held.len() > 16 {
                            held.clear();
                        }
                    }
                    _ => drop(tree_ref.insert(k, k)),
                }
                if i % SHRINK_EVERY == SHRINK_EVERY - 1 {
                    shrink(tree_ref);
                }
            }
            done_ref.store(true, Ordering::Release);
        });
        for r in 0..2u64 {
            let (tree, done, stable, domain) = (&tree, &done, &stable, &domain);
            s.spawn(move || {
                let reader = domain.register();
                let mut rng = Rng(1000 + r);
                let mut round = 0;
                // The newest version of each stable key this reader has
                // seen: the writer makes versions in increasing order, so a
                // later critical section never sees an older one.
                let mut newest = std::collections::HashMap::new();
                while round < rounds || !done.load(Ordering::Acquire) {
                    let guard = reader.read_lock();
                    let a = rng.next() % (n * 3);
                    let b = a + rng.next() % (n * 3);
                    let mut prev: Option<u64> = None;
                    let mut seen_stable = Vec::new();
                    let mut visit = |(k, v): (u64, &u64)| {
                        assert_eq!(key_of(*v, k), k, "the value of {k:#x}: {v:#x}");
                        if k % 3 == 0 && k < 1 << VERSION_SHIFT {
                            let seen = newest.entry(k).or_insert(0);
                            assert!(
                                *v >> VERSION_SHIFT >= *seen,
                                "{k:#x}: version {:#x} after {seen:#x}",
                                *v >> VERSION_SHIFT
                            );
                            *seen = *v >> VERSION_SHIFT;
                        }
                        assert!(
                            prev.is_none_or(|p| p < k),
                            "out of order: {prev:?} then {k}"
                        );
                        assert!((a..=b).contains(&k));
                        prev = Some(k);
                        if k % 3 == 0 {
                            seen_stable.push(k);
                        }
                    };
                    let mut scan = tree.range(a..=b, &guard);
                    // `next` alone, or a few `next` calls and then `fold`
                    // (`for_each` would be `fold` too).
                    let by_next = if r == 0 {
                        usize::MAX
                    } else {
                        rng.below(4) as usize
                    };
                    for _ in 0..by_next {
                        let Some(e) = scan.next() else { break };
                        visit(e);
                    }
                    scan.fold((), |(), e| visit(e));
                    let want: Vec<u64> = stable
                        .iter()
                        .copied()
                        .filter(|k| (a..=b).contains(k))
                        .collect();
                    assert_eq!(seen_stable, want);
                    // A full scan too, whose stable keys are all there.
                    let all: Vec<u64> = tree
                        .iter(&guard)
                        .map(|(k, _)| k)
                        .filter(|k| k % 3 == 0)
                        .collect();
                    if all.len() != stable.len() {
                        let missing: Vec<u64> = stable
                            .iter()
                            .copied()
                            .filter(|k| !all.contains(k))
                            .collect();
                        let extra: Vec<u64> = all
                            .iter()
                            .copied()
                            .filter(|k| !stable.contains(k))
                            .collect();
                        panic!("full scan: missing {missing:x?}, extra {extra:x?}");
                    }
                    drop(guard);
                    round += 1;
                }
            });
        }
    });
}

/// Every value removed or replaced is dropped exactly once after `drain`,
/// none before its removal, and the rest when the tree is dropped; also under
/// `retain` and `clear`, with writers on two threads.
#[test]
fn leak_accounting_after_drain() {
    let (n, ops, _) = sizes();
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let tree: RcuRadixTree<Counted> = RcuRadixTree::new_in(&domain);
    let retired = AtomicUsize::new(0);
    let created = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (tree, drops, retired, created) = (&tree, &drops, &retired, &created);
            s.spawn(move || {
                let mut rng = Rng(31 + w);
                for i in 0..ops / 4 {
                    let k = churn_key(&mut rng, n);
                    if i % 3 == 2 {
                        if let Some(old) = tree.remove(k) {
                            assert_eq!(old.key, k);
                            retired.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        created.fetch_add(1, Ordering::Relaxed);
                        let v = Counted {
                            key: k,
                            drops: drops.clone(),
                        };
                        if tree.insert(k, v).is_some() {
                            retired.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        retired.load(Ordering::Relaxed)
    );
    let before = tree.len();
    tree.retain(|k, _| k % 2 == 0);
    let removed = before - tree.len();
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        retired.load(Ordering::Relaxed) + removed
    );
    let rest = tree.len();
    tree.clear();
    assert!(tree.is_empty());
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        retired.load(Ordering::Relaxed) + removed + rest
    );
    assert_eq!(
        drops.load(Ordering::Relaxed),
        created.load(Ordering::Relaxed)
    );
    // Dropping a tree drops what it still holds, at once.
    let tree = RcuRadixTree::new_in(&domain);
    for k in 0..10 {
        tree.insert(
            k * 1000,
            Counted {
                key: k,
                drops: drops.clone(),
            },
        );
    }
    drop(tree);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        created.load(Ordering::Relaxed) + 10
    );
}

/// A reader keeps reading a removed value (through the reference it got
/// before the removal) until its guard ends: the value is not dropped
/// earlier, even across the writer's `drain` on another thread.
#[test]
fn removed_value_outlives_reader() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let tree = RcuRadixTree::new_in(&domain);
    tree.insert(
        5,
        Counted {
            key: 5,
            drops: drops.clone(),
        },
    );
    let reader = domain.register();
    let guard = reader.read_lock();
    let v = tree.get(5, &guard).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            drop(tree.remove(5));
            tree.insert(
                6,
                Counted {
                    key: 6,
                    drops: drops.clone(),
                },
            );
        });
    });
    let (domain2, drops2) = (domain.clone(), drops.clone());
    let drained = std::thread::spawn(move || {
        domain2.drain();
        drops2.load(Ordering::Relaxed)
    });
    // The drain cannot finish while we hold the guard.
    assert_eq!(v.key, 5);
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    drop(guard);
    assert_eq!(drained.join().unwrap(), 1);
}

/// Runs a writer and a reader in lock step, for the "never go back" tests:
/// for each block `b` in `1..=blocks` and step `s` in `0..steps`, the
/// reader announces `(b, s)`, the writer then runs `write(b, s)` (a change
/// of block `b`'s key), and the reader runs `read(b, s)`, which reads the
/// key and asserts, until it returns `true` (it has seen the change). So
/// the reader is reading the key while each change is made: the window in
/// which two read paths could disagree is a few instructions wide. A failed
/// assertion in `read` releases the writer.
fn lock_step(
    blocks: u64,
    steps: u64,
    write: impl Fn(u64, u64) + Send,
    mut read: impl FnMut(u64, u64) -> bool + Send,
) {
    // The step the reader is at, numbered from 1; `usize::MAX` once it is
    // gone.
    let at = AtomicUsize::new(0);
    let step_no = |b: u64, s: u64| ((b - 1) * steps + s + 1) as usize;
    let at = &at;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for b in 1..=blocks {
                for s in 0..steps {
                    while at.load(Ordering::Acquire) < step_no(b, s) {
                        std::thread::yield_now();
                    }
                    write(b, s);
                }
            }
        });
        scope
            .spawn(move || {
                struct Gone<'a>(&'a AtomicUsize);
                impl Drop for Gone<'_> {
                    fn drop(&mut self) {
                        self.0.store(usize::MAX, Ordering::Release);
                    }
                }
                let _gone = Gone(at);
                for b in 1..=blocks {
                    for s in 0..steps {
                        at.store(step_no(b, s), Ordering::Release);
                        while !read(b, s) {
                            // With a core to spare this returns at once (the
                            // reader spins while the writer, on another
                            // core, makes the change); without, it lets the
                            // writer run.
                            std::thread::yield_now();
                        }
                    }
                }
            })
            .join()
            .unwrap();
    });
}

/// Reads key `k`'s value by read path `way` (`0..WAYS`) under `guard`. A
/// bottom node says where a slot's entry is in two places, the slot's word
/// and the node's summary, and each read path has its own code to choose:
/// `get`, the nearest-key searches (`prev_before`, which read the word
/// alone before the fix, and its marked form), a scan's step (a summary
/// read on entry) and its tight loop (`fold`).
fn read_by(tree: &RcuRadixTree<u64>, way: usize, k: u64, guard: &impl rcu_core::Guard) -> u64 {
    let (key, v) = match way {
        0 => (k, tree.get(k, guard).expect("present")),
        1 => tree.prev_before(k + 1, guard).expect("present"),
        2 => tree.next_after(k - 1, guard).expect("present"),
        3 => tree.range(k..=k, guard).next().expect("present"),
        4 => tree
            .range(k..=k, guard)
            .fold(None, |_, e| Some(e))
            .expect("present"),
        5 => tree
            .prev_marked_before(k + 1, Mark::M0, guard)
            .expect("marked"),
        6 => tree
            .next_marked_after(k - 1, Mark::M0, guard)
            .expect("marked"),
        _ => unreachable!(),
    };
    assert_eq!(key, k, "read path {way}");
    *v
}

/// How many read paths `read_by` has.
const WAYS: usize = 7;

/// Read number `n` of a key reads it by every read path of `ways`, in turn
/// from path `n % ways`, in one critical section, then again in a later
/// one: the paths in order. Over `ways` reads every path comes before
/// every other in one critical section.
fn path_order(n: usize, ways: usize) -> impl Iterator<Item = usize> {
    (0..ways).map(move |j| (n + j) % ways)
}

/// "in the same critical section" or "in a later critical section", for a
/// read in `section` after one in `before`.
fn where_read(before: usize, section: usize) -> &'static str {
    if before == section {
        "in the same critical section"
    } else {
        "in a later critical section"
    }
}

/// Reads never go back: once any read path has returned a key's new value,
/// every later read of the key, by any path, in the same critical section
/// or a later one, returns that value or a newer one. A replacement
/// published the slot's word before the summary, so `prev_before` (the
/// word) could return the new value and a later `get` (the summary) the
/// old one. Each key goes through every change of where its value lives:
/// a leaf to cell 0, cell 0 to cell 1, and (both cells held by the
/// replaced values' handles) an inline entry to a leaf.
#[test]
fn reads_never_go_back_to_an_older_value() {
    let (blocks, rounds): (u64, usize) = if cfg!(miri) { (12, 1) } else { (2048, 8) };
    const LAST: u64 = 4;
    let mut reads = 0usize;
    for _ in 0..rounds {
        for leaf_first in [false, true] {
            let tree: RcuRadixTree<u64> = RcuRadixTree::new();
            // Key 64b + 1 starts at value 1: inline in cell 0 when it comes
            // second in its bottom node (its own insertion made the node),
            // a leaf when it comes first (the second key's insertion split
            // it off as it was).
            for b in 1..=blocks {
                let (k, other) = (b * 64 + 1, b * 64);
                for (key, v) in if leaf_first {
                    [(k, 1), (other, 0)]
                } else {
                    [(other, 0), (k, 1)]
                } {
                    tree.insert(key, v);
                }
                assert!(tree.set_mark(k, Mark::M0));
            }
            // The replaced values' handles, which hold their cells.
            let held = std::sync::Mutex::new(Vec::new());
            // Step s writes value s + 2.
            lock_step(
                blocks,
                LAST - 1,
                |b, s| {
                    let old = tree.insert(b * 64 + 1, s + 2).expect("present");
                    held.lock().unwrap().push(old);
                },
                |b, s| {
                    let k = b * 64 + 1;
                    // The newest value seen: (value, path, section).
                    let mut newest = (0, 0, 0);
                    for section in 0..2 {
                        let g = rcu_core::read_lock();
                        for way in path_order(reads, WAYS) {
                            let v = read_by(&tree, way, k, &g);
                            assert!(
                                v >= newest.0,
                                "key {k}: read path {} returned {}, then path {way} {v}, {}",
                                newest.1,
                                newest.0,
                                where_read(newest.2, section)
                            );
                            newest = (v, way, section);
                        }
                    }
                    reads += 1;
                    newest.0 == s + 2
                },
            );
            let g = rcu_core::read_lock();
            assert!((1..=blocks).all(|b| tree.get(b * 64 + 1, &g) == Some(&LAST)));
        }
    }
    assert!(reads >= WAYS, "every path read first ({reads} reads)");
}

/// A yes/no fact about key `k` that a writer turns on and off (a mark, the
/// key's presence), and the read paths that tell it.
struct Flag {
    name: &'static str,
    /// How many read paths `read` has.
    ways: usize,
    /// Whether the fact holds, by read path `way`, under a guard.
    read: fn(&RcuRadixTree<u64>, usize, u64, &rcu_core::ReadGuard) -> bool,
    /// Turns it on (`true`) or off.
    write: fn(&RcuRadixTree<u64>, u64, bool),
    /// Fills block `b` for `layout` (`0..layouts`) and returns its key; the
    /// fact is off for it.
    setup: fn(&RcuRadixTree<u64>, usize, u64) -> u64,
    layouts: usize,
}

/// A flag never goes back: once any read path has seen it turned on, every
/// later read, by any path, sees it on until it is turned off, and once
/// any has seen it off, none sees it on again. For each block, step 0 turns
/// it on and step 1 off, while the reader reads it by every path in turn
/// (see `lock_step` and `path_order`).
fn flag_never_goes_back(flag: Flag) {
    let (blocks, rounds): (u64, usize) = if cfg!(miri) { (6, 1) } else { (1024, 8) };
    let mut reads = 0usize;
    for _ in 0..rounds {
        for layout in 0..flag.layouts {
            let tree: RcuRadixTree<u64> = RcuRadixTree::new();
            let keys: Vec<u64> = (1..=blocks)
                .map(|b| (flag.setup)(&tree, layout, b))
                .collect();
            let key = |b: u64| keys[b as usize - 1];
            lock_step(
                blocks,
                2,
                |b, s| (flag.write)(&tree, key(b), s == 0),
                |b, s| {
                    let (k, on) = (key(b), s == 0);
                    let (name, what) = (flag.name, if on { "on" } else { "off" });
                    // The first read that saw the change: (path, section).
                    let mut seen: Option<(usize, usize)> = None;
                    for section in 0..2 {
                        let g = rcu_core::read_lock();
                        for way in path_order(reads, flag.ways) {
                            let new = (flag.read)(&tree, way, k, &g) == on;
                            if let Some((first, in_section)) = seen {
                                assert!(
                                    new,
                                    "key {k}: read path {first} saw {name} {what}, then path \
                                     {way} not, {}",
                                    where_read(in_section, section)
                                );
                            } else if new {
                                seen = Some((way, section));
                            }
                        }
                    }
                    reads += 1;
                    seen.is_some()
                },
            );
        }
    }
    assert!(reads >= flag.ways, "every path read first ({reads} reads)");
}

/// Marks never go back. A mark lives in the entry (a leaf's marks, or its
/// bottom node's bit) and in summary bits up to the root, which a search
/// follows and `any_marked` read alone: with the entry's mark set first,
/// `is_marked` could say yes and a later `next_marked_after` (a summary not
/// yet set) no. For a key inline in a bottom node, a leaf in one, a leaf
/// alone higher up, and a leaf in a slot that held an inline entry.
#[test]
fn marks_never_go_back() {
    flag_never_goes_back(Flag {
        name: "the mark",
        ways: 6,
        // No other key is marked.
        read: |tree, way, k, g| {
            let found = match way {
                0 => return tree.is_marked(k, Mark::M0, g),
                1 => tree.next_marked_after(k - 1, Mark::M0, g),
                2 => tree.prev_marked_before(k + 1, Mark::M0, g),
                3 => tree.range_marked(k..=k, Mark::M0, g).next(),
                4 => tree.first_marked(Mark::M0, g),
                5 => return tree.any_marked(Mark::M0, g),
                _ => unreachable!(),
            };
            if let Some((key, _)) = found {
                assert_eq!(key, k, "mark read path {way}: only {k} is marked");
            }
            found.is_some()
        },
        write: |tree, k, on| {
            if on && k % 64 == 2 {
                // Layout 3: the inline entry turns into a leaf right before
                // its mark is set, while the reader reads (see `setup`).
                std::mem::forget(tree.insert(k, 2));
                std::mem::forget(tree.insert(k, 3));
            }
            let found = if on {
                tree.set_mark(k, Mark::M0)
            } else {
                tree.clear_mark(k, Mark::M0)
            };
            assert!(found);
        },
        setup: |tree, layout, b| {
            let k = match layout {
                2 => b << 20 | 5,
                3 => b * 64 + 2,
                _ => b * 64 + 1,
            };
            let entries = match layout {
                // Inline in cell 0: its insertion made the bottom node.
                0 => vec![(k - 1, 0), (k, 1)],
                // A leaf in the bottom node the next insertion made.
                1 => vec![(k, 1), (k - 1, 0)],
                // A leaf alone in its block, in a node above the bottom.
                2 => vec![(k, 1)],
                // Inline, and turned into a leaf by the writer right before
                // its mark is set (`write`): two replacements, whose
                // handles hold both cells (leaked, so they stay held). A
                // reader with a stale summary still takes the slot for an
                // inline entry, whose mark would be the node's bit, which
                // is the leaf's summary now.
                _ => vec![(k - 2, 0), (k, 1)],
            };
            for (key, v) in entries {
                tree.insert(key, v);
            }
            k
        },
        layouts: 4,
    });
}

/// Marks never go back for a search that entered a bottom node before the
/// key's slot changed. A marked search reads its node's mark bitmap once,
/// on entry; for key `k`, a leaf `L0` whose mark is set in that bitmap, the
/// search then reads the slot's word, and once took the node's bit, re-read
/// after it, as the mark of the inline entry the word named. But the slot
/// can change in between: `L0`'s mark cleared, `k` inserted back inline
/// (`E`, never marked), then replaced by an inline entry in the other cell,
/// or by a leaf `L`, whose mark is being set (for a leaf, the node's bit is
/// its summary, set before its own mark). A search that read the word `E`
/// and then that bit yielded `k` with `E`'s value, an entry never marked
/// (and for a leaf, a later `is_marked`, asking `L`, could say no). (Two
/// reviewers' cases. Before the fixes this test failed under Miri: with
/// the leaf alone, at each of seeds 0-7 before 3df0078; with the inline
/// replacement too, at each of seeds 0-11 before the fix that followed it.
/// Miri's weak-memory emulation may serve the word's load a stale store
/// and the bit's the newest; native runs passed, the window being a few
/// instructions wide.)
///
/// Per block: the reader's search yields `k - 1` (so it has entered the
/// node, and `k`'s bit was set then) and pauses; the writer clears `k`'s
/// mark and inserts `k` back inline with value 2, and the reader learns of
/// it (`Acquire`); then the writer replaces that entry once (value 3, in
/// the other cell) or twice (4, a leaf) and sets the mark while the reader
/// resumes the search. A scan reads a key between its entry into the key's
/// block and its step to the key, so if the search yields `k`, the value
/// must be one that was marked in that time: 1 (as it entered) or the last
/// (as it steps, and then `is_marked`, later, must say yes: nothing clears
/// the mark).
#[test]
fn marks_never_go_back_in_a_search_paused_in_its_node() {
    let blocks: u64 = if cfg!(miri) { 48 } else { 2048 };
    let key = |b: u64| b * 64 + 1;
    // The value `k` is marked with at the end: 3 inline, 4 in a leaf.
    let last = |b: u64| if b % 4 < 2 { 3 } else { 4 };
    let tree: RcuRadixTree<u64> = RcuRadixTree::new();
    for b in 1..=blocks {
        let k = key(b);
        // `k` a leaf in the bottom node that `k - 1`'s insertion made.
        tree.insert(k, 1);
        tree.insert(k - 1, 0);
        assert!(tree.set_mark(k - 1, Mark::M0) && tree.set_mark(k, Mark::M0));
    }
    // 2b - 1: the reader's search has entered block b's node; 2b: the
    // writer has inserted `k` back inline; `usize::MAX`: the reader is gone.
    let phase = AtomicUsize::new(0);
    let wait = |at: usize| {
        while phase.load(Ordering::Acquire) < at {
            std::thread::yield_now();
        }
        phase.load(Ordering::Acquire) != usize::MAX
    };
    let (yielded, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for b in 1..=blocks {
                let k = key(b);
                if !wait(2 * b as usize - 1) {
                    return;
                }
                assert!(tree.clear_mark(k, Mark::M0));
                drop(tree.remove(k));
                assert!(tree.insert(k, 2).is_none(), "k inserted back, inline");
                phase.store(2 * b as usize, Ordering::Release);
                // Replacements whose handles hold the cells (leaked, so they
                // stay held): an inline entry in the other cell, or after a
                // second a leaf; then its mark.
                for v in 3..=last(b) {
                    std::mem::forget(tree.insert(k, v));
                }
                assert!(tree.set_mark(k, Mark::M0));
                // Relaxed: lets the reader resume after the writes without
                // ordering them before its loads (see the reader).
                done.store(b as usize, Ordering::Relaxed);
            }
        });
        scope
            .spawn(|| {
                struct Gone<'a>(&'a AtomicUsize);
                impl Drop for Gone<'_> {
                    fn drop(&mut self) {
                        self.0.store(usize::MAX, Ordering::Release);
                    }
                }
                let _gone = Gone(&phase);
                for b in 1..=blocks {
                    let k = key(b);
                    let g = rcu_core::read_lock();
                    let mut search = tree.range_marked(k - 1..=k, Mark::M0, &g);
                    assert_eq!(search.next().map(|(key, _)| key), Some(k - 1));
                    phase.store(2 * b as usize - 1, Ordering::Release);
                    assert!(wait(2 * b as usize));
                    // In odd blocks the search resumes while the writer
                    // works; in even ones once it is done, but without
                    // `Acquire`, so that the search's loads may still be
                    // served older stores (Miri: otherwise it resumes before
                    // the writer, and finds nothing).
                    while b % 2 == 0 && done.load(Ordering::Relaxed) < b as usize {
                        std::thread::yield_now();
                    }
                    let Some((found, &v)) = search.next() else {
                        continue;
                    };
                    assert_eq!(found, k);
                    assert!(
                        v == 1 || v == last(b),
                        "block {b}: the search yielded {k} with value {v}, an entry never marked"
                    );
                    yielded.fetch_add(1, Ordering::Relaxed);
                    if v == last(b) {
                        assert!(
                            tree.is_marked(k, Mark::M0, &g),
                            "block {b}: the search yielded {k} marked, then is_marked said \
                             no, in the same critical section"
                        );
                        drop(g);
                        let g = rcu_core::read_lock();
                        assert!(
                            tree.is_marked(k, Mark::M0, &g),
                            "block {b}: the search yielded {k} marked, then is_marked said \
                             no, in a later critical section"
                        );
                    }
                }
            })
            .join()
            .unwrap();
    });
    // Every block ends marked, and the reader saw the mark set at times.
    let g = rcu_core::read_lock();
    assert_eq!(tree.iter_marked(Mark::M0, &g).count() as u64, 2 * blocks);
    let yielded = yielded.into_inner() as u64;
    assert!(yielded > 0, "no search yielded k: the race was never run");
}

/// Presence never goes back: once any read path has found an inserted key,
/// every later read finds it until it is removed, and once any has missed
/// a removed key, none finds it again. The `present` bit a search follows
/// was set after the slot's store, so `get` could find a key and a later
/// `next_after` (the bit not yet set) step over it. For a key inserted
/// into an existing bottom node, into a block with one other key (a split
/// makes the bottom node), and alone in its block.
#[test]
fn presence_never_goes_back() {
    flag_never_goes_back(Flag {
        name: "the key",
        ways: 5,
        // Keys k - 1 and k + 1 are present, or in layout 2 nothing near.
        read: |tree, way, k, g| match way {
            0 => tree.contains_key(k, g),
            1 => tree.next_after(k - 1, g).is_some_and(|(key, _)| key == k),
            2 => tree.prev_before(k + 1, g).is_some_and(|(key, _)| key == k),
            3 => tree.range(k..=k, g).next().is_some(),
            4 => tree.range(k..=k, g).fold(false, |_, _| true),
            _ => unreachable!(),
        },
        write: |tree, k, on| {
            let changed = if on {
                tree.insert(k, k).is_none()
            } else {
                tree.remove(k).is_some()
            };
            assert!(changed);
        },
        setup: |tree, layout, b| {
            let k = if layout == 2 { b << 20 | 5 } else { b * 64 + 1 };
            match layout {
                // A bottom node with k's neighbours inline.
                0 => [k - 1, k + 1]
                    .into_iter()
                    .for_each(|j| drop(tree.insert(j, j))),
                // One neighbour, a leaf: k's insertion splits its slot.
                1 => drop(tree.insert(k - 1, k - 1)),
                _ => {}
            }
            k
        },
        layouts: 3,
    });
}
