//! loom models of the resize step (`--cfg rcu_loom`):
//!
//! ```text
//! RUSTFLAGS="--cfg rcu_loom" cargo test --release -p rcu-hashmap --lib --target-dir target/loom
//! ```
//!
//! A migrating thread moves a bucket of two nodes (bound for two different
//! new buckets) into the future table, tail first, while
//! another thread looks keys up, or writes to the same bucket. The lookups
//! must find every key present throughout; writes must land exactly once.
//! A third model writes a bucket's filter (a tail removal, an insertion)
//! while another thread looks up keys its chain still holds; a fourth
//! removes, during a move, a key that may have gone straight into the
//! future table (whose bit the old filter lacks).
//! Unbounded (no preemption bound) unless a model says otherwise.

use super::{Node, RawMap, Table};
use crate::sync::Ordering;
use loom::sync::Arc;
use loom::thread;
use rcu_core::RcuDomain;

/// Hashes in old bucket 0 (top two bits 00) of a 4-bucket table; in the
/// 8-bucket future table the first goes to bucket 0, the second to 1.
/// Inserted in this order, key 0 is the old chain's tail (moved first)
/// and key 1 its head (moved last).
const HASHES: [u64; 2] = [0, 1 << 61];

fn model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    builder.check(move || {
        r2.fetch_add(1, Relaxed);
        f()
    });
    // The model explored more than one interleaving (a model that runs
    // once checks nothing).
    assert!(runs.load(Relaxed) > 1, "loom explored one execution");
    eprintln!("loom: {} executions", runs.load(Relaxed));
}

/// A map whose current table has 4 buckets and a published 8-bucket
/// future table, with `HASHES` inserted (key `i` has hash `HASHES[i]`).
fn setup(domain: &RcuDomain) -> Arc<RawMap<u64, u64>> {
    let map = RawMap::new_in(0, 0, domain);
    for (i, &h) in HASHES.iter().enumerate() {
        // SAFETY: (test) loom models reclamation only through the map's
        // drop; no node is retired here (all keys are distinct).
        let r = unsafe { map.insert(Node::new(h, i as u64, i as u64), true) };
        assert!(matches!(r, super::Insert::Inserted(_)));
    }
    // SAFETY: (test) single-threaded here; the table is alive.
    let t = unsafe { map.current() };
    assert_eq!(t.len(), 4);
    let f = Box::into_raw(Table::new(8));
    // Every bucket is claimed (by the model's mover, for bucket 0): writers
    // that see the resize in flight have nothing to help with.
    t.resize.0.claimed.store(4, Ordering::Relaxed);
    t.future.store(f, Ordering::Release);
    Arc::new(map)
}

/// Moves old bucket 0 (all three nodes) into the future table.
fn migrate(map: &RawMap<u64, u64>) {
    // SAFETY: (test) the model's threads keep every table and node alive
    // (nothing is retired until the map drops); this thread is the only
    // migrator of bucket 0.
    unsafe {
        let t = map.current();
        let f = &*t.future.load(Ordering::Acquire);
        map.migrate_bucket(t, 0, f);
    }
}

fn find(map: &RawMap<u64, u64>, key: u64) -> Option<u64> {
    // SAFETY: (test) as in `migrate`.
    unsafe { map.find(HASHES[key as usize], |n| n.key == key) }.map(|n| n.value)
}

#[test]
fn lookups_never_miss_during_a_bucket_move() {
    model(None, || {
        let domain = RcuDomain::new();
        let map = setup(&domain);
        let m2 = map.clone();
        let m3 = map.clone();
        let mover = thread::spawn(move || migrate(&m2));
        // (The lookups run on a spawned thread: loom did not explore the
        // model when they ran on the model's main thread.)
        let reader = thread::spawn(move || {
            for key in [0u64, 1] {
                assert_eq!(find(&m3, key), Some(key), "key {key} missed");
            }
        });
        mover.join().unwrap();
        reader.join().unwrap();
        for key in 0..2 {
            assert_eq!(find(&map, key), Some(key));
        }
    });
}

#[test]
fn writes_during_a_bucket_move_land_once() {
    model(None, || {
        let domain = RcuDomain::new();
        let map = setup(&domain);
        let m2 = map.clone();
        let mover = thread::spawn(move || migrate(&m2));
        // Replace key 1 (its node moves) and look up key 0 and key 1.
        // SAFETY: (test) the replaced node comes back as a `Retired`; the
        // model frees it by hand once the other thread is joined.
        let old = unsafe { map.insert(Node::new(HASHES[1], 1, 10), true) };
        let super::Insert::Replaced(old) = old else {
            panic!("key 1 was present");
        };
        assert_eq!(old.node().value, 1);
        let old = old.into_raw(); // no reclaim thread inside the model
        assert_eq!(find(&map, 1), Some(10));
        assert_eq!(find(&map, 0), Some(0));
        mover.join().unwrap();
        // SAFETY: (test) unlinked, and no other thread runs any more.
        drop(unsafe { Box::from_raw(old) });
        assert_eq!(find(&map, 1), Some(10));
        assert_eq!(map.len(), 2);
    });
}

/// A bucket's filter under writes: keys 0 and 1 share old bucket 0 with
/// different filter bits (hashes 0 and 1), key 0 the chain's tail. One
/// thread removes the tail (which rewrites the filter from the nodes
/// before it) and then inserts key 2 (hash 2, a third bit), while another
/// looks key 1 up, then key 2: key 1 is found throughout, and key 2 once
/// its insertion is joined.
#[test]
fn filters_never_hide_a_linked_key() {
    const H: [u64; 3] = [0, 1, 2];
    model(None, || {
        let domain = RcuDomain::new();
        let map = Arc::new(RawMap::<u64, u64>::new_in(0, 0, &domain));
        for key in 0..2u64 {
            // SAFETY: (test) distinct keys: nothing is retired.
            let r = unsafe { map.insert(Node::new(H[key as usize], key, key), true) };
            assert!(matches!(r, super::Insert::Inserted(_)));
        }
        let find = |map: &RawMap<u64, u64>, key: u64| {
            // SAFETY: (test) nothing is freed while the model runs.
            unsafe { map.find(H[key as usize], |n| n.key == key) }.map(|n| n.value)
        };
        let m2 = map.clone();
        let writer = thread::spawn(move || {
            // SAFETY: (test) the removed node is freed by hand below, once
            // the reader is joined.
            let old = unsafe { m2.remove(H[0], |n| n.key == 0) }.expect("key 0 was present");
            // SAFETY: (test) key 2 is new: nothing is retired.
            let r = unsafe { m2.insert(Node::new(H[2], 2, 2), true) };
            assert!(matches!(r, super::Insert::Inserted(_)));
            old.into_raw() as usize
        });
        let m3 = map.clone();
        let reader = thread::spawn(move || {
            assert_eq!(find(&m3, 1), Some(1), "key 1 hidden by its filter");
            find(&m3, 2)
        });
        let old = writer.join().unwrap();
        let seen = reader.join().unwrap();
        assert!(matches!(seen, None | Some(2)));
        // SAFETY: (test) unlinked, and no other thread runs any more.
        drop(unsafe { Box::from_raw(old as *mut Node<u64, u64>) });
        assert_eq!(find(&map, 0), None);
        assert_eq!(find(&map, 1), Some(1));
        assert_eq!(find(&map, 2), Some(2));
    });
}

/// A key inserted straight into the future table, once its old bucket has
/// moved, has no bit in the old filter: whatever trusts that filter alone
/// misses it (a removal that skipped its lock on a clear bit, tried once,
/// did while a resize was in flight). One thread moves old bucket 0 while
/// another inserts key 2 (hash 2: old bucket 0, a filter bit of its own)
/// and removes it again: the removal must find it, wherever the insertion
/// put it.
#[test]
fn a_removal_during_a_move_finds_a_key_of_the_future_table() {
    model(None, || {
        let domain = RcuDomain::new();
        let map = setup(&domain);
        let m2 = map.clone();
        let mover = thread::spawn(move || migrate(&m2));
        // SAFETY: (test) key 2 is new: nothing is retired.
        let r = unsafe { map.insert(Node::new(2, 2, 2), true) };
        assert!(matches!(r, super::Insert::Inserted(_)));
        // SAFETY: (test) the removed node is freed by hand below, once the
        // mover is joined.
        let old = unsafe { map.remove(2, |n| n.key == 2) }.expect("key 2 missed by its removal");
        let old = old.into_raw();
        mover.join().unwrap();
        // SAFETY: (test) unlinked, and no other thread runs any more.
        drop(unsafe { Box::from_raw(old) });
        assert_eq!(find(&map, 0), Some(0));
        assert_eq!(find(&map, 1), Some(1));
        assert_eq!(map.len(), 2);
    });
}
