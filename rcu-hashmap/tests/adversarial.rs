//! Adversarial tests for `RcuHashMap` (written by a reviewer to break it):
//! each asserts a documented guarantee with concrete values. Fifteen of them
//! failed before their fixes: `retain`/`clear` on a private domain over its
//! memory limit stalled 1 ms per removed entry (a30), and still did while a
//! reader elsewhere held grace periods up (a35); an `update` closure that
//! wrote its own key ran forever (a28); `with_capacity` of a table that
//! cannot be allocated aborted the process instead of panicking (a36); a
//! panicking `Eq` cost a load-factor check, so `len` passed `capacity + 15`
//! (a37); an `Eq` that wrote its own bucket spun forever (a38); an owned
//! iterator dropped over two panicking value drops aborted (a39); a write
//! from `Eq` that started a resize stranded it, half done (a40); a35's fix
//! first retired a whole `clear` in one callback, which a helper then ran
//! at once (a41); `retain` judged an entry its own predicate had replaced
//! by the old value and kept the new one (a42); writes from `Eq` lost their
//! load-factor checks and the table never grew (a43); an iterator went on
//! after a caught panic in `Eq` yielded a range twice (a44); a42's fix ran
//! `Eq` in `clear` (a45); a43's fix lost the check of a map written only
//! from another map's `Eq` (a46); `update` spent a check on a write that
//! panicked taking its lock (a47).

// Loom builds (`--cfg rcu_loom`) have no process-wide domain; the sizes and
// watchdogs here are for native runs, not Miri's.
#![cfg(not(any(rcu_loom, miri)))]

mod common;

use common::Rng;
use rcu_core::RcuDomain;
use rcu_hashmap::RcuHashMap;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------- helpers

/// Runs `f` on its own thread and fails (instead of hanging) if it does not
/// finish within `secs`: a deadlock or livelock shows as a test failure.
fn watchdog<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => {
            if let Err(e) = h.join().unwrap() {
                std::panic::resume_unwind(e);
            }
        }
        Err(_) => panic!("watchdog: the body did not finish in {secs} s (deadlock or livelock)"),
    }
}

/// Counters of creations and drops shared by tracked values / keys.
#[derive(Default)]
struct Counts {
    created: AtomicUsize,
    dropped: AtomicUsize,
}
impl Counts {
    fn new() -> Arc<Self> {
        Arc::new(Counts::default())
    }
    fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// A value that counts its creations and drops, with a checksum that a
/// torn or freed value would break.
struct Tv {
    k: u64,
    check: u64,
    c: Arc<Counts>,
}
impl Tv {
    fn new(k: u64, c: &Arc<Counts>) -> Self {
        c.created.fetch_add(1, Ordering::SeqCst);
        Tv {
            k,
            check: k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xABCD,
            c: c.clone(),
        }
    }
    fn ok(&self) -> bool {
        self.check == self.k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xABCD
    }
}
impl Drop for Tv {
    fn drop(&mut self) {
        assert!(self.ok(), "dropping a corrupted value");
        self.check = 0xDEAD;
        self.c.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A key that counts its creations (including clones) and drops.
struct Tk {
    k: u64,
    c: Arc<Counts>,
}
impl Tk {
    fn new(k: u64, c: &Arc<Counts>) -> Self {
        c.created.fetch_add(1, Ordering::SeqCst);
        Tk { k, c: c.clone() }
    }
}
impl Clone for Tk {
    fn clone(&self) -> Self {
        Tk::new(self.k, &self.c)
    }
}
impl Drop for Tk {
    fn drop(&mut self) {
        self.c.dropped.fetch_add(1, Ordering::SeqCst);
    }
}
impl PartialEq for Tk {
    fn eq(&self, o: &Self) -> bool {
        self.k == o.k
    }
}
impl Eq for Tk {}
impl Hash for Tk {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.k.hash(h)
    }
}
impl std::borrow::Borrow<u64> for Tk {
    fn borrow(&self) -> &u64 {
        &self.k
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

/// A hasher whose output depends only on `value % classes`: long chains in
/// every table size (classes = 1: every key collides).
#[derive(Clone, Copy)]
struct Few(u64);
struct FewH(u64, u64);
impl Hasher for FewH {
    fn finish(&self) -> u64 {
        if self.0 == 1 { 0 } else { mix(self.1 % self.0) }
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.1 = self.1.wrapping_mul(31).wrapping_add(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.1 = self.1.wrapping_mul(31).wrapping_add(v);
    }
}
impl BuildHasher for Few {
    type Hasher = FewH;
    fn build_hasher(&self) -> FewH {
        FewH(self.0, 0)
    }
}

/// A hasher whose hash of a `u64` key is the key: the test picks buckets
/// (the top bits) and ranges itself.
#[derive(Clone, Copy, Default)]
struct Ident;
#[derive(Default)]
struct IdentH(u64);
impl Hasher for IdentH {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("keys hash one u64")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}
impl BuildHasher for Ident {
    type Hasher = IdentH;
    fn build_hasher(&self) -> IdentH {
        IdentH(0)
    }
}

/// `Eq` (from the type's `PartialEq`) and a `Hash` that writes the key's
/// `u64`, for a key newtype `$t(u64)`.
macro_rules! hashed_as_u64 {
    ($t:ident) => {
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, h: &mut H) {
                h.write_u64(self.0);
            }
        }
    };
}

/// Runs `f` on a fresh thread (whose write tick, which paces load-factor
/// checks, starts at 0) and passes its panic on.
fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
    thread::spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// `capacity`'s bound with one thread writing: `worst` is the most `len`
/// passed `capacity` by after any of its writes.
fn assert_capacity_bound<K, V, S>(worst: isize, map: &RcuHashMap<K, V, S>) {
    assert!(
        worst <= 15,
        "len exceeded capacity by {worst} (len {}, capacity {}) with one thread writing",
        map.len(),
        map.capacity()
    );
}

// ------------------------------------------------------------------ tests

/// A reference from `get` keeps its value after the key is replaced or
/// removed and the table shrinks, all while the same thread holds the guard
/// and writes (writers never wait for a grace period). Nothing is dropped
/// while the guard is held; afterwards exactly the removed/replaced values.
#[test]
fn a01_refs_survive_replace_remove_shrink_under_one_guard() {
    watchdog(20, || {
        let domain = RcuDomain::new();
        let c = Counts::new();
        let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
        let n = 4000u64;
        for k in 0..n {
            assert!(map.insert(k, Tv::new(k, &c)).is_none());
        }
        let big = map.capacity();
        let reader = domain.register();
        let guard = reader.read_lock();
        let refs: Vec<&Tv> = (0..n).map(|k| map.get(&k, &guard).unwrap()).collect();
        for k in 0..n {
            if k % 2 == 0 {
                let old = map.insert(k, Tv::new(k + 1_000_000, &c)).unwrap();
                assert_eq!(old.k, k);
            } else {
                assert_eq!(map.remove(&k).map(|r| r.k), Some(k));
            }
        }
        for k in (0..n).step_by(2) {
            assert_eq!(map.get(&k, &guard).map(|v| v.k), Some(k + 1_000_000));
            assert_eq!(map.remove(&k).map(|r| r.k), Some(k + 1_000_000));
        }
        map.retain(|_, _| false);
        map.clear();
        assert!(map.is_empty());
        assert!(map.capacity() < big, "shrank: {} vs {big}", map.capacity());
        thread::sleep(Duration::from_millis(100));
        assert_eq!(c.dropped(), 0, "a value was dropped while a guard held it");
        for (k, r) in refs.iter().enumerate() {
            assert!(r.ok());
            assert_eq!(r.k, k as u64);
        }
        drop(guard);
        drop(reader);
        domain.drain();
        assert_eq!(c.dropped(), c.created());
    });
}

/// Writers on the process-wide domain, under `rcu_core::read_lock`, through
/// growth, shrink, retain and clear: none waits for a grace period.
#[test]
fn a02_global_writers_under_guard_never_wait() {
    watchdog(20, || {
        let map: RcuHashMap<u64, u64> = RcuHashMap::new();
        let g = rcu_core::read_lock();
        for k in 0..20_000u64 {
            map.insert(k, k);
        }
        let r = map.get(&5, &g).unwrap();
        map.retain(|k, _| k % 3 == 0);
        assert_eq!(map.len(), 6667);
        for k in 0..20_000u64 {
            assert_eq!(map.remove(&k).is_some(), k % 3 == 0);
        }
        for k in 0..100 {
            map.insert(k, k);
            map.update(&k, |v| v + 1);
        }
        map.clear();
        assert!(map.is_empty());
        assert_eq!(*r, 5);
        assert_eq!(map.iter(&g).count(), 0);
    });
}

/// Iteration under one guard while the caller inserts four new keys per
/// yielded original key (the table grows several times): every original key
/// exactly once, no key twice.
#[test]
fn a03_iter_exactly_once_while_caller_grows_table() {
    let n = 3000u64;
    let map: RcuHashMap<u64, u64> = (0..n).map(|k| (k, k)).collect();
    let cap0 = map.capacity();
    let g = rcu_core::read_lock();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for (k, v) in map.iter(&g) {
        assert!(*k >= n || *v == *k);
        *seen.entry(*k).or_default() += 1;
        if *k < n {
            for j in 0..4 {
                map.insert(n + *k * 4 + j, 0);
            }
        }
    }
    for k in 0..n {
        assert_eq!(seen.get(&k), Some(&1), "original key {k}");
    }
    for (k, c) in &seen {
        assert_eq!(*c, 1, "key {k} yielded {c} times");
    }
    assert!(
        map.capacity() >= 4 * cap0,
        "grew: {} from {cap0}",
        map.capacity()
    );
    assert_eq!(map.len(), 5 * n as usize);
}

/// Long chains (64 hash values) through growth and shrink with two churning
/// writers: readers always find the stable keys with intact values, and an
/// iterator yields each stable key exactly once and nothing twice.
#[test]
fn a04_long_chains_concurrent_churn_lookups_and_iteration() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<u64, Tv, Few> = RcuHashMap::with_hasher_in(Few(64), &domain);
    let stable = 600u64;
    for k in 0..stable {
        map.insert(k, Tv::new(k, &c));
    }
    let stop = AtomicBool::new(false);
    let done_writers = AtomicUsize::new(0);
    thread::scope(|s| {
        for w in 0..2u64 {
            let (map, c, stop, done_writers) = (&map, &c, &stop, &done_writers);
            s.spawn(move || {
                let lo = 10_000 + w * 100_000;
                for _ in 0..3 {
                    for k in lo..lo + 3000 {
                        map.insert(k, Tv::new(k, c));
                    }
                    for k in lo..lo + 3000 {
                        assert!(map.remove(&k).is_some());
                    }
                }
                if done_writers.fetch_add(1, Ordering::SeqCst) == 1 {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        let (map, domain, stop) = (&map, &domain, &stop);
        s.spawn(move || {
            let reader = domain.register();
            let mut passes = 0;
            while !stop.load(Ordering::SeqCst) || passes < 1 {
                let g = reader.read_lock();
                for k in 0..stable {
                    let v = map.get(&k, &g);
                    assert!(v.is_some(), "stable key {k} missing");
                    let v = v.unwrap();
                    assert!(v.ok() && v.k == k);
                    assert!(map.get(&(k + 5_000_000), &g).is_none());
                }
                let mut seen = HashSet::new();
                let mut st = 0;
                for (k, v) in map.iter(&g) {
                    assert!(v.ok() && v.k == *k);
                    assert!(seen.insert(*k), "key {k} yielded twice");
                    st += (*k < stable) as u64;
                }
                assert_eq!(st, stable, "iteration missed stable keys");
                passes += 1;
            }
        });
    });
    assert_eq!(map.len(), stable as usize);
    domain.drain();
    assert_eq!(c.dropped(), c.created() - stable as usize);
}

/// Racing inserts and removes of a small key set from several threads:
/// afterwards `len` equals the number of distinct keys iterated, no key has
/// two entries, and drop accounting balances. `len` never reads as wrapped
/// while they run.
#[test]
fn a05_racing_insert_remove_len_exact_no_duplicates() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
    let stop = AtomicBool::new(false);
    let max_len = AtomicUsize::new(0);
    thread::scope(|s| {
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let (map, c) = (&map, &c);
                s.spawn(move || {
                    let mut rng = Rng(0x1234 + t);
                    for _ in 0..30_000 {
                        let k = rng.below(16);
                        if rng.below(2) == 0 {
                            map.insert(k, Tv::new(k, c));
                        } else {
                            map.remove(&k);
                        }
                    }
                })
            })
            .collect();
        let (map, stop, max_len) = (&map, &stop, &max_len);
        s.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                max_len.fetch_max(map.len(), Ordering::SeqCst);
            }
        });
        for h in hs {
            h.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(
        max_len.load(Ordering::SeqCst) < 1000,
        "len wrapped: {}",
        max_len.load(Ordering::SeqCst)
    );
    let reader = domain.register();
    let g = reader.read_lock();
    let mut seen = HashSet::new();
    for (k, v) in map.iter(&g) {
        assert!(seen.insert(*k), "two entries for {k}");
        assert_eq!(v.k, *k);
    }
    assert_eq!(map.len(), seen.len());
    let found = (0..16).filter(|k| map.get(k, &g).is_some()).count();
    assert_eq!(found, seen.len());
    drop(g);
    drop(reader);
    domain.drain();
    assert_eq!(c.dropped(), c.created() - map.len());
}

/// Every operation, several threads, tracked keys and values: after
/// `drain`, values and keys dropped == created - live; after dropping the
/// map, all of them.
#[test]
fn a06_drop_accounting_all_operations_tracked_keys() {
    let domain = RcuDomain::new();
    let cv = Counts::new();
    let ck = Counts::new();
    let map: RcuHashMap<Tk, Tv> = RcuHashMap::new_in(&domain);
    thread::scope(|s| {
        for t in 0..2u64 {
            let (map, cv, ck, domain) = (&map, &cv, &ck, &domain);
            s.spawn(move || {
                let reader = domain.register();
                let mut rng = Rng(99 + t);
                let mut kept = Vec::new();
                for i in 0..8000 {
                    let k = rng.below(300);
                    match rng.below(6) {
                        0 | 1 => {
                            if let Some(old) = map.insert(Tk::new(k, ck), Tv::new(k, cv)) {
                                assert_eq!(old.k, k);
                                if i % 7 == 0 {
                                    kept.push(old);
                                }
                            }
                        }
                        2 => {
                            if let Some(old) = map.remove(&k) {
                                assert_eq!((old.key().k, old.k), (k, k));
                            }
                        }
                        3 => {
                            let _ = map.update(&k, |v| {
                                assert!(v.ok());
                                Tv::new(v.k, cv)
                            });
                        }
                        4 => {
                            let g = reader.read_lock();
                            let v = map.get_or_insert_with(Tk::new(k, ck), || Tv::new(k, cv), &g);
                            assert_eq!(v.k, k);
                        }
                        _ => {
                            if i % 50 == 0 {
                                let m = rng.below(5) + 2;
                                map.retain(|key, v| {
                                    assert_eq!(key.k, v.k);
                                    key.k % m != 0
                                });
                            }
                        }
                    }
                }
                drop(kept);
            });
        }
    });
    let live = map.len();
    {
        let reader = domain.register();
        let g = reader.read_lock();
        assert_eq!(map.iter(&g).count(), live);
    }
    domain.drain();
    assert_eq!(cv.dropped(), cv.created() - live, "values");
    assert_eq!(ck.dropped(), ck.created() - live, "keys");
    drop(map);
    domain.drain();
    assert_eq!(cv.dropped(), cv.created());
    assert_eq!(ck.dropped(), ck.created());
}

/// `get_or_insert_with` racing from four threads on a fresh key per round:
/// exactly one insertion wins and every caller sees its value; losers'
/// values are dropped.
#[test]
fn a07_get_or_insert_with_race_one_winner() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
    let rounds = 300u64;
    let threads = 4;
    let barrier = Barrier::new(threads);
    let calls = AtomicUsize::new(0);
    let seen: Vec<Vec<u64>> = thread::scope(|s| {
        let hs: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (map, c, domain, barrier, calls) = (&map, &c, &domain, &barrier, &calls);
                s.spawn(move || {
                    let reader = domain.register();
                    let mut out = Vec::new();
                    for r in 0..rounds {
                        barrier.wait();
                        let g = reader.read_lock();
                        let v = map.get_or_insert_with(
                            r,
                            || {
                                calls.fetch_add(1, Ordering::SeqCst);
                                Tv::new(r * 10 + t, c)
                            },
                            &g,
                        );
                        assert!(v.ok());
                        out.push(v.k);
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, &winner) in seen[0].iter().enumerate() {
        for other in &seen[1..] {
            assert_eq!(other[r], winner, "round {r}: callers disagree");
        }
        assert_eq!(winner / 10, r as u64);
        let reader = domain.register();
        let g = reader.read_lock();
        assert_eq!(map.get(&(r as u64), &g).map(|v| v.k), Some(winner));
    }
    assert_eq!(map.len(), rounds as usize);
    domain.drain();
    let calls = calls.load(Ordering::SeqCst);
    assert_eq!(c.created(), calls);
    assert_eq!(c.dropped(), calls - rounds as usize, "losers' values");
}

/// No lost update: 4 threads x 4000 `update` increments over 8 keys while a
/// churn thread grows and shrinks the table.
#[test]
fn a08_update_race_no_lost_update_across_resizes() {
    let map: RcuHashMap<u64, u64> = RcuHashMap::new();
    for k in 0..8 {
        map.insert(k, 0);
    }
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let (m, st) = (&map, &stop);
        s.spawn(move || {
            let mut round = 0u64;
            while !st.load(Ordering::SeqCst) {
                for k in 100..3000 {
                    m.insert(k + round, k);
                }
                for k in 100..3000 {
                    m.remove(&(k + round));
                }
                round += 1;
            }
        });
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let m = &map;
                s.spawn(move || {
                    for i in 0..4000u64 {
                        let k = (i + t) % 8;
                        let old = m.update(&k, |v| v + 1);
                        assert!(old.is_some());
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });
    let total: u64 = (0..8).map(|k| map.get_cloned(&k).unwrap()).sum();
    assert_eq!(total, 16_000, "lost updates");
    assert_eq!(map.len(), 8);
}

/// Closures that write the same key: `update` reruns on the newer value,
/// `get_or_insert_with` returns the value its closure inserted, `retain`
/// keeps an entry replaced by its predicate, `update` whose closure removes
/// the key returns `None`. No deadlock.
#[test]
fn a09_closures_writing_the_same_key() {
    watchdog(10, || {
        let map: Arc<RcuHashMap<u64, u64>> = Arc::new((0..50).map(|k| (k, k)).collect());
        let mut calls = 0;
        let old = map
            .update(&1, |v| {
                calls += 1;
                if calls == 1 {
                    map.insert(1, 100);
                }
                v + 1
            })
            .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(*old, 100);
        assert_eq!(map.get_cloned(&1), Some(101));

        let g = rcu_core::read_lock();
        let v = *map.get_or_insert_with(
            1000,
            || {
                map.insert(1000, 7);
                8
            },
            &g,
        );
        assert_eq!(v, 7);
        assert_eq!(map.get(&1000, &g), Some(&7));

        let r = map.update(&4, |v| {
            map.remove(&4);
            v + 1
        });
        assert!(r.is_none());
        assert_eq!(map.get(&4, &g), None);

        map.retain(|k, _| {
            if *k == 3 {
                map.insert(3, 99);
            }
            false
        });
        let rest: Vec<(u64, u64)> = map.iter(&g).map(|(k, v)| (*k, *v)).collect();
        assert_eq!(rest, vec![(3, 99)]);
        assert_eq!(map.len(), 1);
    });
}

/// Panics in `update`, `retain` and `get_or_insert_with` closures leave the
/// map consistent and usable (no lock leaked, nothing poisoned).
#[test]
fn a10_panicking_closures_leave_map_consistent() {
    watchdog(10, || {
        let domain = RcuDomain::new();
        let c = Counts::new();
        let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
        for k in 0..100 {
            map.insert(k, Tv::new(k, &c));
        }
        let r = catch_unwind(AssertUnwindSafe(|| map.update(&5, |_| panic!("boom"))));
        assert!(r.is_err());
        let mut n = 0;
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.retain(|_, _| {
                n += 1;
                if n == 51 {
                    panic!("boom");
                }
                false
            })
        }));
        assert!(r.is_err());
        assert_eq!(map.len(), 50);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let reader = domain.register();
            let g = reader.read_lock();
            let _ = map.get_or_insert_with(1000, || panic!("boom"), &g);
        }));
        assert!(r.is_err());
        let reader = domain.register();
        {
            let g = reader.read_lock();
            assert_eq!(map.iter(&g).count(), 50);
            assert!(map.get(&1000, &g).is_none());
            for (k, v) in map.iter(&g) {
                assert_eq!(v.k, *k);
            }
        }
        for k in 0..100 {
            map.insert(k, Tv::new(k, &c));
            assert!(map.update(&k, |v| Tv::new(v.k, &c)).is_some());
        }
        assert_eq!(map.len(), 100);
        map.clear();
        assert_eq!(map.len(), 0);
        drop(reader);
        domain.drain();
        assert_eq!(c.dropped(), c.created());
    });
}

thread_local! {
    static EQ_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static HASH_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A key whose `Eq`/`Hash` panic on demand (on the setting thread only).
#[derive(Clone, Debug)]
struct PKey(u64);
impl PartialEq for PKey {
    fn eq(&self, o: &Self) -> bool {
        if EQ_PANICS.with(|p| p.get()) {
            panic!("Eq panics");
        }
        self.0 == o.0
    }
}
impl Eq for PKey {}
impl Hash for PKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if HASH_PANICS.with(|p| p.get()) {
            panic!("Hash panics");
        }
        self.0.hash(h)
    }
}

/// `Eq` panicking under the bucket lock (insert, remove) and `Hash`
/// panicking: the lock is released, the map unchanged, the dropped node's
/// value dropped; other threads can then write the same bucket.
#[test]
fn a11_panicking_eq_and_hash_release_locks() {
    watchdog(10, || {
        let domain = RcuDomain::new();
        let c = Counts::new();
        // All keys collide: every insert compares with every key.
        let map: Arc<RcuHashMap<PKey, Tv, Few>> =
            Arc::new(RcuHashMap::with_hasher_in(Few(1), &domain));
        for k in 0..20 {
            map.insert(PKey(k), Tv::new(k, &c));
        }
        EQ_PANICS.with(|p| p.set(true));
        let r = catch_unwind(AssertUnwindSafe(|| map.insert(PKey(5), Tv::new(555, &c))));
        assert!(r.is_err());
        let r = catch_unwind(AssertUnwindSafe(|| map.remove(&PKey(6))));
        assert!(r.is_err());
        EQ_PANICS.with(|p| p.set(false));
        HASH_PANICS.with(|p| p.set(true));
        let r = catch_unwind(AssertUnwindSafe(|| map.insert(PKey(7), Tv::new(777, &c))));
        assert!(r.is_err());
        HASH_PANICS.with(|p| p.set(false));
        // The rejected values were dropped during unwinding.
        assert_eq!(c.dropped(), 2);
        // Another thread writes the same (only) bucket.
        let m2 = map.clone();
        let c2 = c.clone();
        thread::spawn(move || {
            for k in 0..40 {
                m2.insert(PKey(k), Tv::new(k, &c2));
            }
            assert!(m2.remove(&PKey(39)).is_some());
        })
        .join()
        .unwrap();
        assert_eq!(map.len(), 39);
        let reader = domain.register();
        let g = reader.read_lock();
        for k in 0..39 {
            assert_eq!(map.get(&PKey(k), &g).map(|v| v.k), Some(k));
        }
        drop(g);
        drop(reader);
        domain.drain();
        assert_eq!(c.dropped(), c.created() - 39);
    });
}

static FLAKY: AtomicU64 = AtomicU64::new(1);

/// A key whose hash changes on every call.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Flaky(u64);
impl Hash for Flaky {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(FLAKY.fetch_add(1, Ordering::Relaxed));
        self.0.hash(h)
    }
}

/// An inconsistent `Hash`: the map may hold odd duplicates (as `std` may),
/// but stays memory safe; `len` matches iteration; drops balance.
#[test]
fn a12_inconsistent_hash_is_safe_and_accounted() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<Flaky, Tv> = RcuHashMap::new_in(&domain);
    for i in 0..4000u64 {
        map.insert(Flaky(i % 100), Tv::new(i % 100, &c));
        if i % 3 == 0 {
            map.remove(&Flaky(i % 100));
            let _ = map.update(&Flaky(i % 50), |v| Tv::new(v.k, &c));
        }
    }
    let live = map.len();
    {
        let reader = domain.register();
        let g = reader.read_lock();
        let mut n = 0;
        for (k, v) in map.iter(&g) {
            assert_eq!(k.0, v.k);
            n += 1;
        }
        assert_eq!(n, live);
    }
    map.retain(|k, _| k.0 % 2 == 0);
    let live2 = map.len();
    {
        let reader = domain.register();
        let g = reader.read_lock();
        assert_eq!(map.iter(&g).count(), live2);
        assert!(map.iter(&g).all(|(k, _)| k.0 % 2 == 0));
    }
    domain.drain();
    assert_eq!(c.dropped(), c.created() - live2);
    drop(map);
    domain.drain();
    assert_eq!(c.dropped(), c.created());
}

/// Every key in one hash: one chain of 1500 nodes through growth, lookups,
/// removal of each key as iteration yields it (shrinking), and capacity
/// shrinking back.
#[test]
fn a13_all_collisions_across_resizes_and_iter_remove() {
    let map: RcuHashMap<u64, u64, Few> = RcuHashMap::with_hasher(Few(1));
    let small = map.capacity();
    let n = 1500u64;
    for k in 0..n {
        assert!(map.insert(k, k * 2).is_none());
    }
    let big = map.capacity();
    assert!(big > small && big >= n as usize, "grew: {big}");
    let g = rcu_core::read_lock();
    for k in 0..n {
        assert_eq!(map.get(&k, &g), Some(&(k * 2)));
    }
    assert!(map.get(&n, &g).is_none());
    let mut seen = HashSet::new();
    for (k, v) in map.iter(&g) {
        assert_eq!(*v, *k * 2);
        assert!(seen.insert(*k), "{k} twice");
        if *k >= 10 {
            assert!(map.remove(k).is_some());
        }
    }
    assert_eq!(seen.len(), n as usize);
    assert_eq!(map.len(), 10);
    // A few more writes so that a load-factor check is made.
    for _ in 0..32 {
        map.insert(0, 0);
    }
    assert!(
        map.capacity() < big,
        "shrank back: {} from {big}",
        map.capacity()
    );
    let mut rest: Vec<u64> = map.keys(&g).copied().collect();
    rest.sort();
    assert_eq!(rest, (0..10).collect::<Vec<_>>());
}

/// Zero-sized keys and values.
#[test]
fn a14_zero_sized_keys_and_values() {
    let a: RcuHashMap<u64, ()> = RcuHashMap::new();
    for k in 0..2000 {
        assert!(a.insert(k, ()).is_none());
    }
    assert!(a.insert(7, ()).is_some());
    let g = rcu_core::read_lock();
    assert_eq!(a.get(&1999, &g), Some(&()));
    assert_eq!(a.iter(&g).count(), 2000);
    for k in 0..2000 {
        assert!(a.remove(&k).is_some());
    }
    assert!(a.is_empty());
    let b: RcuHashMap<(), u64> = RcuHashMap::new();
    assert!(b.insert((), 1).is_none());
    assert_eq!(b.insert((), 2).map(|r| *r), Some(1));
    assert_eq!(b.update(&(), |v| v * 10).map(|r| *r), Some(2));
    assert_eq!(b.get(&(), &g), Some(&20));
    assert_eq!(b.len(), 1);
    let z: RcuHashMap<(), ()> = RcuHashMap::new();
    z.insert((), ());
    z.insert((), ());
    assert_eq!(z.len(), 1);
    assert_eq!(z.into_iter().count(), 1);
}

/// Large values (16 KiB) through resizes, with a reference held across
/// replacement.
#[test]
fn a15_large_values_survive_resizes() {
    let map: RcuHashMap<u64, Box<[u64; 2048]>> = RcuHashMap::new();
    let fill = |k: u64| {
        let mut a = Box::new([0u64; 2048]);
        for (i, x) in a.iter_mut().enumerate() {
            *x = k ^ (i as u64).wrapping_mul(0x9E37);
        }
        a
    };
    let plain: RcuHashMap<u64, [u64; 512]> = RcuHashMap::new();
    for k in 0..300 {
        map.insert(k, fill(k));
        plain.insert(k, [k; 512]);
    }
    let g = rcu_core::read_lock();
    let held = map.get(&3, &g).unwrap();
    let held_plain = plain.get(&3, &g).unwrap();
    for k in 0..300 {
        map.insert(k, fill(k + 1000));
        plain.insert(k, [k + 1000; 512]);
    }
    for (i, x) in held.iter().enumerate() {
        assert_eq!(*x, 3 ^ (i as u64).wrapping_mul(0x9E37));
    }
    assert!(held_plain.iter().all(|x| *x == 3));
    for k in 0..300 {
        let v = map.get(&k, &g).unwrap();
        assert_eq!(v[2047], (k + 1000) ^ 2047u64.wrapping_mul(0x9E37));
        assert!(plain.get(&k, &g).unwrap().iter().all(|x| *x == k + 1000));
    }
}

/// `clear` in a loop while readers look up and iterate: every value seen is
/// intact and belongs to its key, no key twice; drops balance.
#[test]
fn a16_clear_during_concurrent_readers() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
    let stop = AtomicBool::new(false);
    let hits = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..2 {
            let (map, domain, stop, hits) = (&map, &domain, &stop, &hits);
            s.spawn(move || {
                let reader = domain.register();
                while !stop.load(Ordering::SeqCst) {
                    let g = reader.read_lock();
                    for k in 0..500u64 {
                        if let Some(v) = map.get(&k, &g) {
                            assert!(v.ok(), "torn value");
                            assert_eq!(v.k, k);
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let mut seen = HashSet::new();
                    for (k, v) in map.iter(&g) {
                        assert!(v.ok() && v.k == *k);
                        assert!(seen.insert(*k), "{k} twice");
                    }
                }
            });
        }
        for _ in 0..40 {
            for k in 0..500u64 {
                map.insert(k, Tv::new(k, &c));
            }
            map.clear();
            assert!(map.is_empty(), "len {} after clear", map.len());
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(map.is_empty());
    domain.drain();
    assert_eq!(c.dropped(), c.created());
}

/// `retain` while another thread inserts new keys: initial keys follow the
/// predicate exactly; new keys the predicate keeps are never removed.
#[test]
fn a17_retain_during_concurrent_inserts() {
    let map: RcuHashMap<u64, u64> = (0..5000).map(|k| (k, k)).collect();
    thread::scope(|s| {
        let m = &map;
        let h = s.spawn(move || {
            for k in 100_000..110_000u64 {
                m.insert(k, k);
            }
        });
        map.retain(|k, v| {
            assert_eq!(k, v);
            k % 2 == 0
        });
        h.join().unwrap();
    });
    let g = rcu_core::read_lock();
    for k in 0..5000 {
        assert_eq!(map.get(&k, &g).is_some(), k % 2 == 0, "initial key {k}");
    }
    for k in (100_000..110_000u64).step_by(2) {
        assert_eq!(map.get(&k, &g), Some(&k), "new even key {k}");
    }
    let odd_new = (100_001..110_000u64)
        .step_by(2)
        .filter(|k| map.get(k, &g).is_some())
        .count();
    assert_eq!(map.len(), 2500 + 5000 + odd_new);
    assert_eq!(map.iter(&g).count(), map.len());
}

/// `with_capacity` never shrinks below its room; a grown map shrinks back
/// after mass removal from several threads.
#[test]
fn a18_with_capacity_floor_and_shrink_back() {
    let domain = RcuDomain::new();
    let map: RcuHashMap<u64, u64> =
        RcuHashMap::with_capacity_and_hasher_in(5000, std::hash::RandomState::new(), &domain);
    let room = map.capacity();
    assert!(room >= 5000);
    thread::scope(|s| {
        for t in 0..2u64 {
            let m = &map;
            s.spawn(move || {
                for k in (t * 20_000)..(t + 1) * 20_000 {
                    m.insert(k, k);
                }
            });
        }
    });
    let big = map.capacity();
    assert!(big >= 40_000, "grew: {big}");
    thread::scope(|s| {
        for t in 0..2u64 {
            let m = &map;
            s.spawn(move || {
                for k in (t * 20_000)..(t + 1) * 20_000 {
                    assert_eq!(m.remove(&k).map(|v| *v), Some(k));
                }
            });
        }
    });
    assert!(map.is_empty());
    assert!(
        map.capacity() >= 5000,
        "below the floor: {}",
        map.capacity()
    );
    assert!(map.capacity() < big, "never shrank: {}", map.capacity());
    map.clear();
    assert!(map.capacity() >= 5000);
    // Without a capacity: back to a small table.
    let m2: RcuHashMap<u64, u64> = RcuHashMap::new();
    let small = m2.capacity();
    for k in 0..20_000 {
        m2.insert(k, k);
    }
    for k in 0..20_000 {
        m2.remove(&k);
    }
    for _ in 0..32 {
        m2.remove(&0);
    }
    assert!(
        m2.capacity() <= small.max(12),
        "shrank back to {}",
        m2.capacity()
    );
}

/// `Removed` handles: deref to the old value; dropping one under a held
/// guard defers the drop; `drain` does not free a value a live handle holds;
/// `into_entry` clones.
#[test]
fn a19_removed_handles_defer_and_deref() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
    for k in 0..10 {
        map.insert(k, Tv::new(k, &c));
    }
    let h2 = map.remove(&2).unwrap();
    let h3 = map.insert(3, Tv::new(33, &c)).unwrap();
    let h4 = map.update(&4, |v| Tv::new(v.k + 40, &c)).unwrap();
    domain.drain();
    assert_eq!(c.dropped(), 0, "drain freed values held by handles");
    assert_eq!((*h2.key(), h2.k), (2, 2));
    assert_eq!((*h3.key(), h3.k), (3, 3));
    assert_eq!((*h4.key(), h4.value().k), (4, 4));
    {
        let reader = domain.register();
        let g = reader.read_lock();
        let r5 = map.get(&5, &g).unwrap();
        drop(map.remove(&5).unwrap());
        drop(h2);
        thread::sleep(Duration::from_millis(100));
        assert_eq!(c.dropped(), 0, "freed under a guard");
        assert_eq!(r5.k, 5);
    }
    domain.drain();
    assert_eq!(c.dropped(), 2);
    drop((h3, h4));
    domain.drain();
    assert_eq!(c.dropped(), 4);

    let m2: RcuHashMap<u64, String> = RcuHashMap::new();
    m2.insert(1, "one".into());
    let (k, v) = m2.remove(&1).unwrap().into_entry();
    assert_eq!((k, v.as_str()), (1, "one"));
}

/// `drain` on one thread accounts for retirements batched on another thread
/// that is still alive (and idle).
#[test]
fn a20_drain_covers_live_threads_batches() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: Arc<RcuHashMap<u64, Tv>> = Arc::new(RcuHashMap::new_in(&domain));
    for k in 0..300 {
        map.insert(k, Tv::new(k, &c));
    }
    let (done_tx, done_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let m = map.clone();
    let h = thread::spawn(move || {
        for k in 0..300 {
            assert!(m.remove(&k).is_some());
        }
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    domain.drain();
    assert_eq!(c.dropped(), 300, "callbacks of a live thread not drained");
    go_tx.send(()).unwrap();
    h.join().unwrap();
}

/// An exhausted iterator stays exhausted even after new keys are inserted.
#[test]
fn a21_fused_after_inserts() {
    let map: RcuHashMap<u64, u64> = (0..5).map(|k| (k, k)).collect();
    let g = rcu_core::read_lock();
    let mut it = map.iter(&g);
    assert_eq!(it.by_ref().count(), 5);
    for k in 5..2000 {
        map.insert(k, k);
    }
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    let mut keys = map.keys(&g);
    assert_eq!(keys.by_ref().count(), 2000);
    map.clear();
    assert!(keys.next().is_none());
}

#[cfg(all(feature = "serde", feature = "rayon"))]
#[test]
fn a22_serde_and_rayon_features() {
    use rayon::prelude::*;
    // serde: a private-domain map serialises; a repeated key's last value wins.
    let domain = RcuDomain::new();
    let m: RcuHashMap<u64, String> = RcuHashMap::new_in(&domain);
    for k in 0..100 {
        m.insert(k, format!("v{k}"));
    }
    let json = serde_json::to_string(&m).unwrap();
    let back: RcuHashMap<u64, String> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.len(), 100);
    assert_eq!(back.get_cloned(&42).as_deref(), Some("v42"));
    let dup: RcuHashMap<u64, u32> = serde_json::from_str(r#"{"1":1,"2":2,"1":3}"#).unwrap();
    assert_eq!(dup.len(), 2);
    assert_eq!(dup.get_cloned(&1), Some(3));
    // rayon: parallel extend with repeated keys leaves one entry per key.
    let map: RcuHashMap<u64, u64> = (0..20_000u64)
        .into_par_iter()
        .map(|i| (i % 1000, i))
        .collect();
    assert_eq!(map.len(), 1000);
    let g = rcu_core::read_lock();
    assert!(map.iter(&g).all(|(k, v)| v % 1000 == *k));
    (&map).par_extend((0..20_000u64).into_par_iter().map(|i| (i, i)));
    assert_eq!(map.len(), 20_000);
    assert_eq!(
        map.par_iter(&g).map(|(_, v)| *v).sum::<u64>(),
        (0..20_000u64).sum::<u64>()
    );
}

/// A reader pinned to a private domain (an owned guard) keeps its reference
/// valid while another thread removes the key and calls `drain`, which must
/// wait for the pinned reader.
#[test]
fn a23_pinned_private_ref_survives_remove_and_drain() {
    watchdog(20, || {
        let domain = RcuDomain::new();
        let c = Counts::new();
        let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
        for k in 0..100 {
            map.insert(k, Tv::new(k, &c));
        }
        let pinned = AtomicBool::new(false);
        let drained = AtomicBool::new(false);
        thread::scope(|s| {
            let (map, pinned, drained, c) = (&map, &pinned, &drained, &c);
            s.spawn(move || {
                let m = map.pin();
                let r = m.get(&7).unwrap();
                let all: Vec<&Tv> = m.values().collect();
                pinned.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(300));
                assert!(
                    !drained.load(Ordering::SeqCst),
                    "drain returned while a pinned reader held values"
                );
                assert_eq!(c.dropped(), 0, "values dropped under a pin");
                assert!(r.ok() && r.k == 7);
                assert!(all.iter().all(|v| v.ok()));
                assert_eq!(all.len(), 100);
            });
            while !pinned.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            map.clear();
            assert!(map.is_empty());
            domain.drain();
            drained.store(true, Ordering::SeqCst);
            assert_eq!(c.dropped(), 100);
        });
    });
}

/// A private domain with a tiny memory limit (producers help run callbacks)
/// under churn, with readers holding references: every value read is
/// intact, writers keep going, drops balance.
#[test]
fn a24_memory_limited_domain_churn() {
    watchdog(30, || {
        let domain = RcuDomain::with_config(rcu_core::Config::default().memory_limit(4096));
        let c = Counts::new();
        let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
        for k in 0..200 {
            map.insert(k, Tv::new(k, &c));
        }
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            for _ in 0..2 {
                let (map, domain, stop) = (&map, &domain, &stop);
                s.spawn(move || {
                    let reader = domain.register();
                    while !stop.load(Ordering::SeqCst) {
                        let g = reader.read_lock();
                        let held: Vec<&Tv> = (0..200).filter_map(|k| map.get(&k, &g)).collect();
                        thread::yield_now();
                        for v in &held {
                            assert!(v.ok(), "freed value read");
                        }
                        let m = map.pin();
                        for (k, v) in m.iter() {
                            assert!(v.ok() && v.k == *k);
                        }
                    }
                });
            }
            let (map, c) = (&map, &c);
            let w = s.spawn(move || {
                let mut rng = Rng(5);
                for i in 0..20_000 {
                    let k = rng.below(200);
                    match i % 4 {
                        0 => drop(map.insert(k, Tv::new(k, c))),
                        1 => drop(map.update(&k, |v| Tv::new(v.k, c))),
                        2 => drop(map.remove(&k)),
                        _ => map.retain(|k2, _| *k2 != k + 1),
                    }
                }
            });
            w.join().unwrap();
            stop.store(true, Ordering::SeqCst);
        });
        let live = map.len();
        domain.drain();
        assert_eq!(c.dropped(), c.created() - live);
    });
}

/// A value whose `Drop` (run on the reclaim thread) removes the next key of
/// the same map: the cascade runs to the end.
#[test]
fn a25_value_drop_writes_the_map_from_reclaim() {
    watchdog(20, || {
        struct Chain {
            next: u64,
            map: Arc<std::sync::OnceLock<Arc<RcuHashMap<u64, Chain>>>>,
            c: Arc<Counts>,
        }
        impl Drop for Chain {
            fn drop(&mut self) {
                self.c.dropped.fetch_add(1, Ordering::SeqCst);
                if let Some(m) = self.map.get() {
                    drop(m.remove(&self.next));
                }
            }
        }
        let domain = RcuDomain::new();
        let c = Counts::new();
        let cell = Arc::new(std::sync::OnceLock::new());
        let map: Arc<RcuHashMap<u64, Chain>> = Arc::new(RcuHashMap::new_in(&domain));
        let _ = cell.set(map.clone());
        let n = 200;
        for k in 0..n {
            map.insert(
                k,
                Chain {
                    next: k + 1,
                    map: cell.clone(),
                    c: c.clone(),
                },
            );
        }
        drop(map.remove(&0));
        let t0 = std::time::Instant::now();
        while c.dropped() < n as usize && t0.elapsed() < Duration::from_secs(10) {
            domain.drain();
        }
        assert_eq!(c.dropped(), n as usize);
        assert!(map.is_empty(), "len {}", map.len());
        // Break the cycle map -> value -> cell -> map.
        // (The map is empty, so nothing holds the cell any more but `cell`.)
    });
}

/// Per-thread differential: two threads each own a key set and check every
/// result against a `std` model of their keys, while a third thread's keys
/// grow and shrink the table and a fourth iterates.
#[test]
fn a26_concurrent_differential_per_thread_models() {
    let domain = RcuDomain::new();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&domain);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|t| {
                let (map, domain) = (&map, &domain);
                s.spawn(move || {
                    let reader = domain.register();
                    let mut model: HashMap<u64, u64> = HashMap::new();
                    let mut rng = Rng(77 + t);
                    let base = t << 32;
                    for i in 0..15_000u64 {
                        let k = base + rng.below(400);
                        match rng.below(7) {
                            0 | 1 => assert_eq!(
                                map.insert(k, i).map(|r| *r),
                                model.insert(k, i),
                                "insert {k}"
                            ),
                            2 => assert_eq!(
                                map.remove(&k).map(|r| *r),
                                model.remove(&k),
                                "remove {k}"
                            ),
                            3 => {
                                let got = map.update(&k, |v| v * 3 + 1).map(|r| *r);
                                let want = model.get(&k).copied();
                                if let Some(v) = want {
                                    model.insert(k, v * 3 + 1);
                                }
                                assert_eq!(got, want, "update {k}");
                            }
                            4 => {
                                let g = reader.read_lock();
                                let got = *map.get_or_insert_with(k, || i, &g);
                                assert_eq!(
                                    got,
                                    *model.entry(k).or_insert(i),
                                    "get_or_insert_with {k}"
                                );
                            }
                            _ => {
                                let g = reader.read_lock();
                                assert_eq!(map.get(&k, &g), model.get(&k), "get {k}");
                                assert_eq!(
                                    map.get_key_value(&k, &g).map(|(a, _)| *a),
                                    model.get_key_value(&k).map(|(a, _)| *a)
                                );
                            }
                        }
                    }
                    let g = reader.read_lock();
                    for (k, v) in &model {
                        assert_eq!(map.get(k, &g), Some(v));
                    }
                    let mine = map.iter(&g).filter(|(k, _)| *k >> 32 == t).count();
                    assert_eq!(mine, model.len());
                    model.len()
                })
            })
            .collect();
        let (m, st) = (&map, &stop);
        s.spawn(move || {
            let base = 9u64 << 32;
            while !st.load(Ordering::SeqCst) {
                for k in 0..4000 {
                    m.insert(base + k, k);
                }
                for k in 0..4000 {
                    assert_eq!(m.remove(&(base + k)).map(|r| *r), Some(k));
                }
            }
        });
        let (m, st, d) = (&map, &stop, &domain);
        s.spawn(move || {
            let reader = d.register();
            while !st.load(Ordering::SeqCst) {
                let g = reader.read_lock();
                let mut seen = HashSet::new();
                for (k, _) in m.iter(&g) {
                    assert!(seen.insert(*k), "{k} twice");
                }
            }
        });
        let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        stop.store(true, Ordering::SeqCst);
        let _ = total;
    });
}

/// `update` racing a thread that removes the key and reinserts the removed
/// value: the final value counts exactly the updates that reported success.
#[test]
fn a27_update_vs_remove_reinsert_no_lost_update() {
    let map: RcuHashMap<u64, u64> = RcuHashMap::new();
    map.insert(1, 0);
    let stop = AtomicBool::new(false);
    let ok = AtomicUsize::new(0);
    thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (map, ok) = (&map, &ok);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        if map.update(&1, |v| v + 1).is_some() {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        let (map, stop) = (&map, &stop);
        let b = s.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let v = *map.remove(&1).unwrap();
                assert!(map.insert(1, v).is_none());
            }
        });
        for h in hs {
            h.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        b.join().unwrap();
    });
    assert_eq!(map.get_cloned(&1), Some(ok.load(Ordering::SeqCst) as u64));
}

/// The message of a caught panic (empty if it was not a string).
fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// An `update` closure that inserts (or updates) the key it is updating in
/// every run: each run replaces the entry `update` is about to replace, so
/// `update` ran it forever (100 000 runs and counting, each leaving an
/// unreclaimable node behind). Its second such write panics clearly now;
/// what the first wrote stays. (A closure that writes its key once works:
/// `a09`.)
#[test]
fn a28_update_closure_writing_its_own_key_every_run_panics_clearly() {
    for nested_update in [false, true] {
        let map: RcuHashMap<u64, u64> = RcuHashMap::new();
        map.insert(1, 0);
        map.insert(2, 0);
        let mut calls = 0u64;
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.update(&1, |v| {
                calls += 1;
                assert!(calls < 1000, "livelock");
                // Other keys may be written in every run.
                map.insert(2, v + 5);
                if nested_update {
                    map.update(&1, |v| v + 10);
                } else {
                    map.insert(1, v + 10);
                }
                v + 1
            })
            .map(|r| *r)
        }));
        let msg = panic_message(r.expect_err("the update ran its closure forever"));
        assert!(msg.contains("in two runs in a row"), "{msg}");
        assert_eq!(calls, 2);
        assert_eq!(map.get_cloned(&1), Some(10), "the first run's write stays");
        assert_eq!(map.get_cloned(&2), Some(15));
        // The thread's tracking was reset: updates of key 1 work again.
        assert_eq!(map.update(&1, |v| v + 1).map(|r| *r), Some(10));
        assert_eq!(map.get_cloned(&1), Some(11));
    }
}

/// As `a28`, through `get_or_insert_with`: a closure that removes its key
/// and puts it back with `get_or_insert_with` (of the map, or of a pinned
/// `MapRef`) in every run. `get_or_insert_with` did not note its write, so
/// the `update` ran the closure forever (a helper's attack: 100 001 runs
/// before its own counter stopped it). The second run's write panics now.
#[test]
fn a28b_update_closure_reinserting_its_key_with_get_or_insert_with_panics_clearly() {
    for pinned in [false, true] {
        let map: RcuHashMap<u64, u64> = RcuHashMap::new();
        map.insert(1, 0);
        let mut calls = 0u64;
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.update(&1, |v| {
                calls += 1;
                assert!(calls < 1000, "livelock");
                drop(map.remove(&1));
                let put = if pinned {
                    *map.pin().get_or_insert_with(1, || v + 10)
                } else {
                    *map.get_or_insert_with(1, || v + 10, &rcu_core::read_lock())
                };
                assert_eq!(put, v + 10);
                v + 1
            })
            .map(|r| *r)
        }));
        let msg = panic_message(r.expect_err("the update ran its closure forever"));
        assert!(msg.contains("in two runs in a row"), "{msg}");
        assert_eq!(calls, 2);
        // The second run put back the first run's value plus 10, then
        // panicked (its write stays, as in `a28`).
        assert_eq!(map.get_cloned(&1), Some(20));
        // The thread's tracking was reset: the key can be written again.
        assert_eq!(map.update(&1, |v| v + 1).map(|r| *r), Some(20));
        assert_eq!(map.get_cloned(&1), Some(21));
    }
}

/// Writes and reads from a thread-local destructor (thread teardown), on
/// the process-wide domain and on a private one.
#[test]
fn a29_writes_from_thread_local_destructors() {
    use std::sync::LazyLock;
    static GLOBAL_MAP: LazyLock<RcuHashMap<u64, u64>> = LazyLock::new(RcuHashMap::new);
    static DOMAIN: LazyLock<RcuDomain> = LazyLock::new(RcuDomain::new);
    static PRIVATE_MAP: LazyLock<RcuHashMap<u64, u64>> =
        LazyLock::new(|| RcuHashMap::new_in(&DOMAIN));
    struct OnExit(u64);
    impl Drop for OnExit {
        fn drop(&mut self) {
            for k in 0..100 {
                GLOBAL_MAP.insert(self.0 * 1000 + k, k);
                PRIVATE_MAP.insert(self.0 * 1000 + k, k);
            }
            GLOBAL_MAP.remove(&(self.0 * 1000));
            PRIVATE_MAP.remove(&(self.0 * 1000));
            assert_eq!(GLOBAL_MAP.get_cloned(&(self.0 * 1000 + 5)), Some(5));
            assert_eq!(PRIVATE_MAP.get_cloned(&(self.0 * 1000 + 5)), Some(5));
        }
    }
    thread_local! {
        static EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }
    for t in 1..=3u64 {
        let r = thread::spawn(move || {
            // Touch the maps first so their thread state exists.
            GLOBAL_MAP.insert(t * 1000 + 999, 0);
            PRIVATE_MAP.insert(t * 1000 + 999, 0);
            EXIT.with(|e| *e.borrow_mut() = Some(OnExit(t)));
        })
        .join();
        assert!(r.is_ok(), "thread {t} panicked in teardown");
    }
    for t in 1..=3u64 {
        for k in 1..100 {
            assert_eq!(
                GLOBAL_MAP.get_cloned(&(t * 1000 + k)),
                Some(k),
                "global {t}/{k}"
            );
            assert_eq!(
                PRIVATE_MAP.get_cloned(&(t * 1000 + k)),
                Some(k),
                "private {t}/{k}"
            );
        }
        assert_eq!(GLOBAL_MAP.get_cloned(&(t * 1000)), None);
    }
}

/// `clear`/`retain` on a private domain that is over its memory limit:
/// writers never wait for a grace period, so clearing 3000 entries must not
/// take seconds. Control: the same on a domain with the default limit.
#[test]
fn a30_clear_on_memory_limited_private_domain_does_not_stall() {
    fn run(domain: RcuDomain) -> (Duration, Duration) {
        let map: RcuHashMap<u64, [u64; 16]> = RcuHashMap::new_in(&domain);
        for k in 0..6000u64 {
            map.insert(k, [k; 16]);
        }
        domain.drain();
        let t = std::time::Instant::now();
        map.retain(|k, _| k % 2 == 0);
        let retain_time = t.elapsed();
        assert_eq!(map.len(), 3000);
        let t = std::time::Instant::now();
        map.clear();
        let clear_time = t.elapsed();
        assert!(map.is_empty());
        (retain_time, clear_time)
    }
    watchdog(60, || {
        let control = run(RcuDomain::new());
        let limited = run(RcuDomain::with_config(
            rcu_core::Config::default().memory_limit(64 << 10),
        ));
        assert!(
            limited.0 < Duration::from_millis(1500) && limited.1 < Duration::from_millis(1500),
            "memory-limited domain: retain of 3000 took {:?}, clear of 3000 took {:?} \
             (default limit: {:?} and {:?})",
            limited.0,
            limited.1,
            control.0,
            control.1
        );
    });
}

/// Waiting for a grace period inside an `update` closure: the closure runs
/// inside the call's read-side critical section, so `synchronize` panics
/// clearly, on the process-wide domain and on a private one. On a private
/// domain it waited forever before: the map's guard there was an owned one,
/// which the engine cannot tell from a guard held elsewhere (it is a local
/// guard now, tied to the thread).
#[test]
fn a31_synchronize_inside_update_closure_panics() {
    let map: RcuHashMap<u64, u64> = RcuHashMap::new();
    map.insert(1, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        map.update(&1, |v| {
            rcu_core::synchronize();
            v + 1
        })
    }));
    assert!(
        r.is_err(),
        "global: synchronize inside update's closure did not panic"
    );
    assert_eq!(map.get_cloned(&1), Some(1));
    // A private domain, on a thread of its own (a hang shows as a timeout).
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let domain = RcuDomain::new();
        let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&domain);
        map.insert(1, 1);
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.update(&1, |v| {
                domain.synchronize();
                v + 1
            })
        }));
        let _ = tx.send((r.is_err(), map.get_cloned(&1)));
    });
    let (panicked, value) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("private domain: synchronize inside update's closure waited forever");
    assert!(
        panicked,
        "private domain: synchronize inside update's closure did not panic"
    );
    assert_eq!(value, Some(1));
}

/// Two threads clear and one inserts, concurrently: afterwards `len` equals
/// the entries iterated and drops balance (no entry removed twice).
#[test]
fn a32_concurrent_clears_and_inserts_len_exact() {
    let domain = RcuDomain::new();
    let c = Counts::new();
    let map: RcuHashMap<u64, Tv> = RcuHashMap::new_in(&domain);
    thread::scope(|s| {
        for _ in 0..2 {
            let m = &map;
            s.spawn(move || {
                for _ in 0..200 {
                    m.clear();
                }
            });
        }
        let (m, c) = (&map, &c);
        s.spawn(move || {
            for k in 0..30_000u64 {
                m.insert(k % 3000, Tv::new(k % 3000, c));
            }
        });
    });
    let reader = domain.register();
    let g = reader.read_lock();
    let n = map.iter(&g).count();
    assert_eq!(map.len(), n);
    drop(g);
    drop(reader);
    domain.drain();
    assert_eq!(c.dropped(), c.created() - n);
}

/// Hashes at the edges of the hash space (0, u64::MAX, bucket boundaries)
/// through growth and shrink: lookups and iteration see every key once.
#[test]
fn a33_extreme_hash_values() {
    #[derive(Clone, Copy, Default)]
    struct Edge;
    struct EdgeH(u64);
    impl Hasher for EdgeH {
        fn finish(&self) -> u64 {
            let k = self.0;
            match k % 6 {
                0 => 0,
                1 => u64::MAX,
                2 => u64::MAX - (k / 6),
                3 => k / 6,
                4 => (1u64 << 63) - 1 + (k / 6 % 3),
                _ => (k / 6).rotate_right(1) | 1,
            }
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!()
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = v;
        }
    }
    impl BuildHasher for Edge {
        type Hasher = EdgeH;
        fn build_hasher(&self) -> EdgeH {
            EdgeH(0)
        }
    }
    let map: RcuHashMap<u64, u64, Edge> = RcuHashMap::with_hasher(Edge);
    let n = 3000u64;
    for k in 0..n {
        assert!(map.insert(k, k).is_none());
    }
    let g = rcu_core::read_lock();
    for k in 0..n {
        assert_eq!(map.get(&k, &g), Some(&k), "key {k}");
    }
    let mut seen = HashSet::new();
    for (k, _) in map.iter(&g) {
        assert!(seen.insert(*k), "{k} twice");
        if k % 2 == 1 {
            map.remove(k);
        }
    }
    assert_eq!(seen.len(), n as usize);
    assert_eq!(map.len(), n as usize / 2);
    let mut rest: Vec<u64> = map.keys(&g).copied().collect();
    rest.sort();
    assert_eq!(rest, (0..n).step_by(2).collect::<Vec<_>>());
}

/// A value whose drop panics.
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

/// Dropping a map whose values' drops panic (two of them): every value is
/// still dropped, the process does not abort, and the first panic comes out
/// of the drop. Before, the map's entries were a `Vec` dropped in one go:
/// the second panic aborted the process (and the first leaked the table).
#[test]
fn a34_panicking_value_drops_neither_leak_nor_abort() {
    let n = 500u64;
    let drops = Arc::new(AtomicUsize::new(0));
    let map: RcuHashMap<u64, Bomb> = RcuHashMap::new();
    for k in 0..n {
        let armed = k == 3 || k == 400;
        map.insert(
            k,
            Bomb {
                armed,
                drops: drops.clone(),
            },
        );
    }
    let r = catch_unwind(AssertUnwindSafe(|| drop(map)));
    assert!(r.is_err(), "the first panic comes out of the drop");
    assert_eq!(drops.load(Ordering::SeqCst), n as usize);
}

/// `retain`/`clear` on a domain over its memory limit while a reader on
/// another thread holds grace periods up: the removed entries are retired
/// in one callback, so the call helps (and may wait up to a millisecond for
/// a grace period that cannot end) once, not once per entry. One
/// `defer_free` per entry took 1 ms each: 3 s for these 3000 (a35, from a
/// second review round; 4 s for 20 000 entries on the process-wide domain).
#[test]
fn a35_clear_while_a_reader_holds_grace_periods_up_does_not_stall_per_entry() {
    watchdog(60, || {
        let domain = RcuDomain::with_config(rcu_core::Config::default().memory_limit(64 << 10));
        let map: Arc<RcuHashMap<u64, [u64; 16]>> = Arc::new(RcuHashMap::new_in(&domain));
        for k in 0..6000u64 {
            map.insert(k, [k; 16]);
        }
        domain.drain();
        let (pinned_tx, pinned_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let reader = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                let pinned = map.pin();
                let v = pinned.get(&7).copied();
                pinned_tx.send(()).unwrap();
                done_rx.recv().unwrap();
                v.map(|v| v[0])
            })
        };
        pinned_rx.recv().unwrap();
        let t = std::time::Instant::now();
        map.retain(|k, _| k % 2 == 0);
        let retain_time = t.elapsed();
        let t = std::time::Instant::now();
        map.clear();
        let clear_time = t.elapsed();
        done_tx.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), Some(7));
        assert!(map.is_empty());
        assert!(
            retain_time < Duration::from_millis(1000) && clear_time < Duration::from_millis(1000),
            "over the limit with a reader pinned: retain of 3000 took {retain_time:?}, \
             clear of 3000 took {clear_time:?}"
        );
        domain.drain();
        assert_eq!(
            domain.stats().callbacks_queued,
            domain.stats().callbacks_run
        );
    });
}

/// `with_capacity` of a table that cannot be allocated panics, as
/// documented, instead of aborting the process: 2^56 entries need 2^60
/// bytes of buckets, more than any address space (a36: it aborted with
/// "memory allocation of 1152921504606846976 bytes failed").
#[test]
fn a36_with_capacity_beyond_memory_panics_not_aborts() {
    for capacity in [usize::MAX, 1 << 60, 1 << 56, 1 << 50] {
        let r = catch_unwind(|| RcuHashMap::<u64, u64>::with_capacity(capacity).capacity());
        assert!(r.is_err(), "with_capacity({capacity}) did not panic");
    }
    // And a map that fits still works after those attempts.
    let map = RcuHashMap::<u64, u64>::with_capacity(1000);
    map.insert(1, 2);
    assert_eq!(map.get_cloned(&1), Some(2));
}

/// `capacity` documents that with one thread writing only to this map,
/// `len <= capacity + 15` after every write. An insert whose key's `Eq`
/// panics (caught by the caller) drew the thread's write tick without
/// reaching the load-factor check, so when it was the 16th write the check
/// was lost and the next came 16 writes later: `len` reached `capacity + 30`
/// (a37, from a second review round).
#[test]
fn a37_capacity_bound_survives_a_panicking_eq() {
    /// Key `v` goes to bucket `v % 64` of a 64-bucket table.
    #[derive(Clone, Copy, Default)]
    struct Spread;
    #[derive(Default)]
    struct SpreadH(u64);
    impl Hasher for SpreadH {
        fn finish(&self) -> u64 {
            ((self.0 % 64) << 58) | (self.0 / 64)
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!("keys hash one u64")
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = v;
        }
    }
    impl BuildHasher for Spread {
        type Hasher = SpreadH;
        fn build_hasher(&self) -> SpreadH {
            SpreadH(0)
        }
    }
    struct PanicEq {
        id: u64,
        armed: bool,
    }
    impl PartialEq for PanicEq {
        fn eq(&self, o: &Self) -> bool {
            assert!(!self.armed && !o.armed, "armed key compared (test)");
            self.id == o.id
        }
    }
    impl Eq for PanicEq {}
    impl Hash for PanicEq {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.id);
        }
    }
    // A fresh thread: its write tick starts at 0 (checks on writes 16, 32..).
    on_fresh_thread(|| {
        let map: RcuHashMap<PanicEq, u64, Spread> =
            RcuHashMap::with_capacity_and_hasher(48, Spread);
        assert_eq!(map.capacity(), 48); // 64 buckets
        let mut worst = 0isize;
        // Keys 0..63 take one bucket each, then 64.. a second slot in
        // buckets 0.. (no insertion into a chain of two: no extra checks).
        let mut next = 0u64;
        let mut insert = |map: &RcuHashMap<PanicEq, u64, Spread>| {
            map.insert(
                PanicEq {
                    id: next,
                    armed: false,
                },
                next,
            );
            next += 1;
            worst = worst.max(map.len() as isize - map.capacity() as isize);
        };
        for _ in 0..63 {
            insert(&map);
        }
        // Write 64 (the 16th of its run: a checking write) panics in `Eq`,
        // under the lock of bucket 0.
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.insert(PanicEq { id: 0, armed: true }, 0);
        }));
        assert!(r.is_err());
        assert_eq!(map.len(), 63);
        for _ in 0..15 {
            insert(&map);
        }
        assert_eq!(map.len(), 78);
        assert_capacity_bound(worst, &map);
    });
}

/// A key's `Eq` that writes to the same map runs under the lock of the
/// bucket the write needs: the write spun forever on its own thread's lock,
/// holding a guard (so every later grace period of the domain hung too). It
/// panics clearly now, the outer write is not made, and the map stays
/// usable (a38, from a second review round).
#[test]
fn a38_eq_writing_its_own_bucket_panics_instead_of_spinning() {
    /// Every key in one bucket.
    #[derive(Clone, Copy, Default)]
    struct OneBucket;
    #[derive(Default)]
    struct ZeroH;
    impl Hasher for ZeroH {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }
    impl BuildHasher for OneBucket {
        type Hasher = ZeroH;
        fn build_hasher(&self) -> ZeroH {
            ZeroH
        }
    }
    /// Compared with an armed key, it inserts another key into `MAP`.
    struct Sneaky {
        id: u64,
        armed: bool,
    }
    impl PartialEq for Sneaky {
        fn eq(&self, o: &Self) -> bool {
            if self.armed || o.armed {
                let other = Sneaky {
                    id: 1000,
                    armed: false,
                };
                MAP.get().unwrap().insert(other, 0);
            }
            self.id == o.id
        }
    }
    impl Eq for Sneaky {}
    impl Hash for Sneaky {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.id);
        }
    }
    static MAP: std::sync::OnceLock<RcuHashMap<Sneaky, u64, OneBucket>> =
        std::sync::OnceLock::new();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // A private domain: a regression's spinning guard holds up no other test.
        let map = MAP.get_or_init(|| {
            RcuHashMap::with_capacity_and_hasher_in(0, OneBucket, &RcuDomain::new())
        });
        map.insert(
            Sneaky {
                id: 1,
                armed: false,
            },
            1,
        );
        let r = catch_unwind(AssertUnwindSafe(|| {
            map.insert(Sneaky { id: 2, armed: true }, 2);
        }));
        let message = r.err().and_then(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        });
        map.insert(
            Sneaky {
                id: 3,
                armed: false,
            },
            3,
        );
        let guard = map.domain().read_lock_local();
        let mut ids: Vec<u64> = map.keys(&guard).map(|k| k.id).collect();
        ids.sort_unstable();
        let _ = tx.send((message, ids));
    });
    let (message, ids) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a write from `Eq` to its own bucket still spins");
    let message = message.expect("the write from `Eq` did not panic");
    assert!(
        message.contains("inside a key's `Eq`"),
        "unexpected panic: {message}"
    );
    assert_eq!(ids, [1, 3]);
}

/// An owned iterator dropped halfway over values whose drops panic (two of
/// them): every value is still dropped, the process does not abort, and the
/// first panic comes out of the drop, as for the map itself (a34). It was a
/// plain `vec::IntoIter`, which aborted at the second panic (a39, from a
/// second review round).
#[test]
fn a39_into_iter_dropped_with_panicking_values_neither_leaks_nor_aborts() {
    let n = 500u64;
    let drops = Arc::new(AtomicUsize::new(0));
    let map: RcuHashMap<u64, Bomb> = RcuHashMap::new();
    for k in 0..n {
        // Ten armed values: at least eight stay in the iterator below.
        let armed = k % 50 == 3;
        map.insert(
            k,
            Bomb {
                armed,
                drops: drops.clone(),
            },
        );
    }
    let mut it = map.into_iter();
    for (_, mut v) in it.by_ref().take(2) {
        v.armed = false; // dropped here, harmlessly
        drop(v);
    }
    assert_eq!(
        (drops.load(Ordering::SeqCst), it.len()),
        (2, n as usize - 2)
    );
    let r = catch_unwind(AssertUnwindSafe(|| drop(it)));
    assert!(r.is_err(), "the first panic comes out of the drop");
    assert_eq!(drops.load(Ordering::SeqCst), n as usize);
}

/// A key's `Eq` that writes to another bucket of the same map, where that
/// write's load-factor check starts a grow whose first step needs the
/// bucket `Eq` runs under: the step panicked halfway (a38's check), leaving
/// its chunk claimed but never done, and the map never resized again (400
/// more inserts left it at capacity 12). Writes from inside `Eq` now leave
/// resizing to the writes outside it: the write from `Eq` succeeds, and the
/// map grows (a40, from a review of a38's fix).
#[test]
fn a40_a_write_from_eq_does_not_strand_a_resize() {
    /// The full hash depends only on `id % 16`, in the top bits: ids equal
    /// mod 16 collide fully (so `Eq` runs) and go to bucket `id % 16` of 16.
    #[derive(Clone, Copy, Default)]
    struct Top;
    #[derive(Default)]
    struct TopH(u64);
    impl Hasher for TopH {
        fn finish(&self) -> u64 {
            (self.0 % 16) << 60
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!("keys hash one u64")
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = v;
        }
    }
    impl BuildHasher for Top {
        type Hasher = TopH;
        fn build_hasher(&self) -> TopH {
            TopH(0)
        }
    }
    struct K {
        id: u64,
        armed: bool,
    }
    impl PartialEq for K {
        fn eq(&self, o: &Self) -> bool {
            if self.armed || o.armed {
                // Bucket 1, whose chain is two long: its check starts a grow.
                MAP.get().unwrap().insert(
                    K {
                        id: 33,
                        armed: false,
                    },
                    33,
                );
            }
            self.id == o.id
        }
    }
    impl Eq for K {}
    impl Hash for K {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.id);
        }
    }
    static MAP: std::sync::OnceLock<RcuHashMap<K, u64, Top>> = std::sync::OnceLock::new();
    on_fresh_thread(|| {
        let map =
            MAP.get_or_init(|| RcuHashMap::with_capacity_and_hasher_in(12, Top, &RcuDomain::new()));
        assert_eq!(map.capacity(), 12);
        for id in [0u64, 1, 17, 2, 3, 4, 5, 6, 7, 8, 9, 10] {
            map.insert(K { id, armed: false }, id);
        }
        // Bucket 0's `Eq` runs (16 collides with 0) and writes key 33.
        map.insert(
            K {
                id: 16,
                armed: true,
            },
            16,
        );
        let guard = map.domain().read_lock_local();
        let mut ids: Vec<u64> = map.keys(&guard).map(|k| k.id).collect();
        drop(guard);
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17, 33]);
        for id in 1000..1400u64 {
            map.insert(K { id, armed: false }, id);
        }
        assert_eq!(map.len(), 414);
        assert!(
            map.capacity() >= map.len(),
            "the map stopped resizing: len {} capacity {}",
            map.len(),
            map.capacity()
        );
    });
}

/// `clear` retires what it removed in callbacks of 256 entries: neither one
/// callback per entry (each may make the caller help, a35), nor one for all
/// (a helper that ran it held another writer's insert for 275 ms on a
/// `clear` of 1M entries, from a review of a35's fix). 3000 entries: 12
/// callbacks, and every entry dropped once they ran.
#[test]
fn a41_clear_retires_in_bounded_batches() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    // Room for all: the table never shrinks, so no table is retired.
    let map: RcuHashMap<u64, Bomb> = RcuHashMap::with_capacity_and_hasher_in(
        3000,
        std::collections::hash_map::RandomState::new(),
        &domain,
    );
    for k in 0..3000u64 {
        map.insert(
            k,
            Bomb {
                armed: false,
                drops: drops.clone(),
            },
        );
    }
    domain.drain();
    let before = domain.stats().callbacks_queued;
    map.clear();
    let queued = domain.stats().callbacks_queued - before;
    domain.drain();
    assert_eq!(queued, 12, "callbacks queued by a clear of 3000 entries");
    assert_eq!(drops.load(Ordering::SeqCst), 3000);
}

/// `retain` collects a range's entries before its predicate sees them. A
/// predicate that replaced a key of the same range not yet judged was then
/// called on that key's old value, and the new value, which it was never
/// called on, stayed: one thread, nothing else writing, and `retain` left
/// an entry its predicate rejects (a42, from a third review round).
#[test]
fn a42_retain_judges_an_entry_its_own_predicate_replaced() {
    // Keys 1-4 hash to themselves: all in bucket 0 of every table, so in
    // one range of the walk.
    let map: RcuHashMap<u64, u64, Ident> = RcuHashMap::with_hasher(Ident);
    for k in 1..=4 {
        map.insert(k, 1);
    }
    let mut calls = Vec::new();
    map.retain(|&k, &v| {
        calls.push((k, v));
        // The first call, on any key, changes the other three (in key
        // order): removes the first, removes the second and inserts it
        // back (a new entry), replaces the third. Both new values are
        // rejected.
        if calls.len() == 1 {
            let others: Vec<u64> = (1..=4).filter(|&o| o != k).collect();
            map.remove(&others[0]);
            map.remove(&others[1]);
            map.insert(others[1], 100);
            map.insert(others[2], 100);
        }
        v < 50
    });
    let (first, _) = calls[0];
    let others: Vec<u64> = (1..=4).filter(|&o| o != first).collect();
    // The order within a bucket is the chain's: sort the calls after the
    // first.
    calls[1..].sort_unstable();
    // Every call saw the entry's value of the moment, the removed key was
    // not judged, and what is left passes the predicate.
    let mut expected = vec![(first, 1), (others[1], 100), (others[2], 100)];
    expected[1..].sort_unstable();
    assert_eq!(calls, expected, "calls");
    let g = rcu_core::read_lock();
    let left: HashMap<u64, u64> = map.iter(&g).map(|(k, v)| (*k, *v)).collect();
    assert_eq!(left, HashMap::from([(first, 1)]));
}

/// A write from a key's `Eq` (to another bucket of the same map) may not
/// start a resize, so when its thread's one-in-16 check fell on it, the
/// check was lost. With writes from `Eq` and outside alternating, every
/// check fell there and the table never grew: `len` passed `capacity` by
/// 1998 (a43, from a third review round). The check now passes to the
/// thread's next write.
#[test]
fn a43_capacity_bound_survives_writes_from_eq() {
    #[derive(Clone)]
    struct WritingEq(u64);
    static MAP: std::sync::OnceLock<RcuHashMap<WritingEq, u64, Ident>> = std::sync::OnceLock::new();
    thread_local! {
        /// The key that key 0's `Eq` inserts next (0: none).
        static ARM: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    impl PartialEq for WritingEq {
        fn eq(&self, o: &Self) -> bool {
            if self.0 == 0 && o.0 == 0 {
                let fresh = ARM.with(|a| a.replace(0));
                if fresh != 0 {
                    // Bucket 3 of a 4-bucket table, not bucket 0.
                    MAP.get().unwrap().insert(WritingEq(3 << 62 | fresh), 0);
                }
            }
            self.0 == o.0
        }
    }
    hashed_as_u64!(WritingEq);
    // A fresh thread: its tick starts at 0.
    on_fresh_thread(|| {
        let map = MAP.get_or_init(|| RcuHashMap::with_hasher(Ident));
        map.insert(WritingEq(0), 0);
        let mut worst = 0isize;
        for i in 1..=2000u64 {
            ARM.with(|a| a.set(i));
            // Replaces key 0; its `Eq` inserts key `3 << 62 | i` first.
            map.insert(WritingEq(0), i);
            worst = worst.max(map.len() as isize - map.capacity() as isize);
        }
        assert_eq!(map.len(), 2001);
        assert_capacity_bound(worst, map);
    });
}

/// With a resize in flight an iterator drops a key's second node (seen
/// before and after its move) by comparing keys with `Eq`. When that `Eq`
/// panicked and the caller caught it and went on with the same iterator,
/// it yielded the half-deduplicated buffer and then collected the same
/// range again: every key of the range twice (a44, from a third review
/// round).
#[test]
fn a44_iterator_after_a_panicking_eq_yields_each_key_once() {
    /// A key with its hash given, whose `Eq` blocks (key 0 against key 0,
    /// until released: holds a resize in flight) or panics once (armed).
    #[derive(Clone)]
    struct Hk {
        id: u64,
        hash: u64,
    }
    static BLOCKED: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    static ARMED: AtomicBool = AtomicBool::new(false);
    impl PartialEq for Hk {
        fn eq(&self, o: &Self) -> bool {
            if self.id != o.id && ARMED.swap(false, Ordering::SeqCst) {
                panic!("armed Eq (test)");
            }
            if self.id == 0 && o.id == 0 && !RELEASE.load(Ordering::SeqCst) {
                BLOCKED.store(true, Ordering::SeqCst);
                while !RELEASE.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            self.id == o.id
        }
    }
    impl Eq for Hk {}
    impl Hash for Hk {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.hash);
        }
    }
    watchdog(60, || {
        let map: Arc<RcuHashMap<Hk, u64, Ident>> = Arc::new(RcuHashMap::with_hasher(Ident));
        map.insert(
            Hk {
                id: 0,
                hash: 3 << 62,
            },
            0,
        );
        // Holds bucket 3's lock, blocked in `Eq`.
        let m = map.clone();
        let blocker = thread::spawn(move || {
            m.insert(
                Hk {
                    id: 0,
                    hash: 3 << 62,
                },
                1,
            );
        });
        while !BLOCKED.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        // Grows the table: its resize moves buckets 0-2, then waits for 3.
        let m = map.clone();
        let grower = thread::spawn(move || {
            for i in 0..40u64 {
                m.insert(
                    Hk {
                        id: 100 + i,
                        hash: (i % 3) << 62 | (i + 1),
                    },
                    i,
                );
            }
        });
        // Two keys with one hash in bucket 1: the de-duplication compares
        // them with `Eq` (the armed one panics) once the walk crosses into
        // the future table.
        map.insert(
            Hk {
                id: 1,
                hash: 1 << 62 | 999,
            },
            1,
        );
        map.insert(
            Hk {
                id: 2,
                hash: 1 << 62 | 999,
            },
            2,
        );
        // Iterate until a walk crossed the resize and its `Eq` panicked;
        // then go on with that iterator to its end.
        let seen = loop {
            let g = rcu_core::read_lock();
            let mut it = map.iter(&g);
            let mut seen: HashMap<u64, u32> = HashMap::new();
            ARMED.store(true, Ordering::SeqCst);
            let mut panicked = false;
            loop {
                match catch_unwind(AssertUnwindSafe(|| it.next())) {
                    Ok(Some((k, _))) => *seen.entry(k.id).or_default() += 1,
                    Ok(None) => break,
                    Err(_) => panicked = true,
                }
            }
            if panicked {
                break seen;
            }
            ARMED.store(false, Ordering::SeqCst);
            drop(it);
            drop(g);
            thread::sleep(Duration::from_millis(5));
        };
        ARMED.store(false, Ordering::SeqCst);
        RELEASE.store(true, Ordering::SeqCst);
        blocker.join().unwrap();
        grower.join().unwrap();
        let twice: Vec<_> = seen.iter().filter(|&(_, &c)| c > 1).collect();
        assert!(
            twice.is_empty(),
            "yielded twice after the caught panic: {twice:?}"
        );
        // Everything present for the whole walk was yielded: keys 0, 1, 2
        // (the grower's keys may or may not have been in yet).
        for id in [0, 1, 2] {
            assert_eq!(seen.get(&id), Some(&1), "key {id} (seen {seen:?})");
        }
    });
}

/// a42's fix first looked every entry up by key before `retain`'s
/// predicate saw it: `clear` then ran the key's `Eq` once per entry (a
/// panicking `Eq` made it panic), left keys unequal to themselves in the
/// map, and a key whose `Eq` matched another's was judged twice and the
/// other never. An entry still linked is now found by its address (a45,
/// from a review of a42-a44).
#[test]
fn a45_retain_and_clear_find_linked_entries_without_eq() {
    static EQ_PANICS: AtomicBool = AtomicBool::new(false);
    static ALL_EQUAL: AtomicBool = AtomicBool::new(false);
    /// `id` is the hash; `Eq` compares `tag`, or panics, or says yes to all.
    #[derive(Clone, Debug)]
    struct Odd {
        id: u64,
        tag: u64,
    }
    impl PartialEq for Odd {
        fn eq(&self, o: &Self) -> bool {
            assert!(!EQ_PANICS.load(Ordering::SeqCst), "Eq called (test)");
            // A tag of 0 is unequal to everything, itself included.
            ALL_EQUAL.load(Ordering::SeqCst) || (self.tag == o.tag && self.tag != 0)
        }
    }
    impl Eq for Odd {}
    impl Hash for Odd {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.id);
        }
    }
    let map: RcuHashMap<Odd, u64, Ident> = RcuHashMap::with_hasher(Ident);
    // Two keys with one hash, and two unequal to themselves.
    map.insert(Odd { id: 5, tag: 1 }, 1);
    map.insert(Odd { id: 5, tag: 2 }, 2);
    map.insert(
        Odd {
            id: 1 << 62,
            tag: 0,
        },
        3,
    );
    map.insert(
        Odd {
            id: 2 << 62,
            tag: 0,
        },
        4,
    );
    assert_eq!(map.len(), 4);
    // With every key equal to every other, each entry is judged once.
    ALL_EQUAL.store(true, Ordering::SeqCst);
    let mut judged = Vec::new();
    map.retain(|_, &v| {
        judged.push(v);
        true
    });
    ALL_EQUAL.store(false, Ordering::SeqCst);
    judged.sort_unstable();
    assert_eq!(judged, [1, 2, 3, 4]);
    // With no resize in flight and no other writer, `clear` runs no `Eq`,
    // and removes every entry, the keys unequal to themselves too.
    EQ_PANICS.store(true, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| map.clear()));
    EQ_PANICS.store(false, Ordering::SeqCst);
    assert!(r.is_ok(), "clear ran a key's Eq");
    assert_eq!(map.len(), 0);
    let g = rcu_core::read_lock();
    assert_eq!(map.iter(&g).count(), 0);
}

/// Map A's `Eq` inserts into map B (say, an interning cache), so every
/// write to B runs inside an `Eq`, where no resize may start. a43's fix
/// first handed the skipped check to the thread's next write, which was
/// A's: B stayed at 4 buckets with 2000 entries (one chain) even after a
/// write from outside. The check is now owed by the map: B's first write
/// from outside an `Eq` grows it (a46, from a review of a42-a44).
#[test]
fn a46_a_map_written_from_another_maps_eq_grows_at_its_next_write() {
    #[derive(Clone)]
    struct WritingEq(u64);
    static B: std::sync::OnceLock<RcuHashMap<u64, u64>> = std::sync::OnceLock::new();
    thread_local! {
        /// The key that the next `Eq` inserts into B (0: none).
        static ARM: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    impl PartialEq for WritingEq {
        fn eq(&self, o: &Self) -> bool {
            let fresh = ARM.with(|a| a.replace(0));
            if fresh != 0 {
                B.get().unwrap().insert(fresh, 0);
            }
            self.0 == o.0
        }
    }
    hashed_as_u64!(WritingEq);
    on_fresh_thread(|| {
        let b = B.get_or_init(RcuHashMap::new);
        let a: RcuHashMap<WritingEq, u64, Ident> = RcuHashMap::with_hasher(Ident);
        a.insert(WritingEq(0), 0);
        for i in 1..=2000u64 {
            ARM.with(|c| c.set(i));
            // Replaces A's key 0; its `Eq` inserts key `i` into B first.
            a.insert(WritingEq(0), i);
        }
        assert_eq!(b.len(), 2000);
        // B's first write from outside an `Eq`: the removal of an absent
        // key (no insertion that walks a chain, which checks anyway).
        assert!(b.remove(&0).is_none());
        assert_eq!(b.len(), 2000);
        assert!(
            b.len() <= b.capacity(),
            "B did not grow at its first write from outside an Eq (len {}, capacity {})",
            b.len(),
            b.capacity()
        );
    });
}

/// `update` drew its write tick before locking its key's bucket, and the
/// lock panics when the thread holds that bucket already (an `update` from
/// a key's `Eq` of a key in the same bucket): the tick was spent and no
/// check made. With such writes alternating with plain inserts, every
/// check was lost: `len` passed `capacity` by 23 (a47, from a review of
/// a42-a44; the cause of a37, in `update`).
#[test]
fn a47_an_update_that_panics_in_its_lock_spends_no_check() {
    #[derive(Clone)]
    struct K(u64);
    static M: std::sync::OnceLock<RcuHashMap<K, u64, Ident>> = std::sync::OnceLock::new();
    static ARM: AtomicBool = AtomicBool::new(false);
    impl PartialEq for K {
        fn eq(&self, o: &Self) -> bool {
            if ARM.swap(false, Ordering::SeqCst) {
                // Key 1 is in bucket 0, which the write running this `Eq`
                // holds: the update panics.
                M.get().unwrap().update(&K(1), |v| v + 1);
            }
            self.0 == o.0
        }
    }
    hashed_as_u64!(K);
    // A fresh thread: its tick starts at 0.
    on_fresh_thread(|| {
        let m = M.get_or_init(|| RcuHashMap::with_hasher(Ident));
        // Bucket 0 of any table, filter bits 0 and 1.
        m.insert(K(0), 0);
        m.insert(K(1), 0);
        let mut worst = 0isize;
        for j in 0..24u64 {
            // Fresh keys in buckets 1-3 of a 4-bucket table, each with a
            // filter bit of its own there: no insertion walks a chain (no
            // extra checks).
            let bucket = 1 + j / 8;
            m.insert(K(bucket << 62 | (j << 3) | (j % 8)), j);
            // Replaces key 0; its `Eq` runs the panicking update.
            ARM.store(true, Ordering::SeqCst);
            let r = catch_unwind(AssertUnwindSafe(|| m.insert(K(0), 1)));
            assert!(r.is_err(), "the update from Eq did not panic");
            worst = worst.max(m.len() as isize - m.capacity() as isize);
        }
        assert_eq!(m.len(), 26);
        assert_capacity_bound(worst, m);
    });
}
