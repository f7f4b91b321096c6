//! Concurrency: stable keys are always found and absent keys never while
//! writers churn and the table grows and shrinks; racing inserts of one key
//! leave one entry; copy-updates are atomic per key; iteration yields each
//! stable key exactly once across resizes; closures may write the map;
//! drop-count accounting after `drain`.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

use rcu_core::RcuDomain;
use rcu_hashmap::RcuHashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

/// Scales a test's work down under Miri.
fn scale(n: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { n }
}

/// A value that counts its drops.
struct Tracked(u64, Arc<AtomicUsize>);
impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

const ABSENT: u64 = 1 << 40;

#[test]
fn stable_keys_found_during_churn_and_resizes() {
    let domain = RcuDomain::new();
    // The churn range must be large against the stable one, so that
    // emptying it shrinks the table (below 1/8 full).
    let stable = scale(2000, 8) as u64;
    let churn = scale(30_000, 200) as u64;
    let rounds = scale(6, 1);
    let drops = Arc::new(AtomicUsize::new(0));
    let map: RcuHashMap<u64, Tracked> = RcuHashMap::new_in(&domain);
    for k in 0..stable {
        map.insert(k, Tracked(k, drops.clone()));
    }
    let stop = AtomicBool::new(false);
    let removed = AtomicUsize::new(0);
    let inserted = AtomicUsize::new(stable as usize);
    // The largest capacity a writer saw after filling its half: with the
    // final capacity, whether the table grew and then shrank (a writer's
    // own before/after snapshots depend on where the other writer is).
    let initial = map.capacity();
    let largest = AtomicUsize::new(0);
    thread::scope(|s| {
        // Two writers churn disjoint halves of the churn range: filling it
        // grows the table many times over; emptying it shrinks it back.
        for w in 0..2u64 {
            let (map, drops, stop, removed, inserted, largest) =
                (&map, &drops, &stop, &removed, &inserted, &largest);
            s.spawn(move || {
                let lo = stable + w * churn / 2;
                let hi = lo + churn / 2;
                for _ in 0..rounds {
                    for k in lo..hi {
                        if let Some(old) = map.insert(k, Tracked(k, drops.clone())) {
                            assert_eq!(old.0, k);
                            removed.fetch_add(1, Ordering::Relaxed);
                        }
                        inserted.fetch_add(1, Ordering::Relaxed);
                    }
                    largest.fetch_max(map.capacity(), Ordering::Relaxed);
                    for k in lo..hi {
                        if map.remove(&k).is_some() {
                            removed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
        // Readers: every stable key, never an absent one.
        for r in 0..2u64 {
            let (map, domain, stop) = (&map, &domain, &stop);
            s.spawn(move || {
                let reader = domain.register();
                let mut passes = 0;
                while !stop.load(Ordering::Relaxed) || passes < 2 {
                    let guard = reader.read_lock();
                    for k in (0..stable).rev() {
                        let v = map.get(&k, &guard);
                        assert_eq!(
                            v.map(|t| t.0),
                            Some(k),
                            "reader {r}: stable key {k} missing"
                        );
                        assert!(map.get(&(ABSENT + k), &guard).is_none());
                    }
                    passes += 1;
                }
            });
        }
        // An iterating reader: each stable key exactly once per pass.
        {
            let (map, domain, stop) = (&map, &domain, &stop);
            s.spawn(move || {
                let reader = domain.register();
                let mut passes = 0;
                while !stop.load(Ordering::Relaxed) || passes < 2 {
                    let guard = reader.read_lock();
                    let mut seen = HashSet::new();
                    let mut stable_seen = 0;
                    for (k, v) in map.iter(&guard) {
                        assert_eq!(*k, v.0);
                        assert!(seen.insert(*k), "key {k} yielded twice");
                        assert!(*k < ABSENT);
                        stable_seen += (*k < stable) as u64;
                    }
                    assert_eq!(stable_seen, stable, "iteration missed stable keys");
                    passes += 1;
                }
            });
        }
    });
    let largest = largest.load(Ordering::Relaxed);
    assert!(
        largest > initial && map.capacity() < largest,
        "the table never grew and shrank: capacity {initial}, then at most {largest}, now {}",
        map.capacity()
    );
    assert_eq!(map.len(), stable as usize);
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        removed.load(Ordering::Relaxed)
    );
    drop(map);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        inserted.load(Ordering::Relaxed)
    );
}

#[test]
fn racing_inserts_of_one_key_leave_one_entry() {
    let domain = RcuDomain::new();
    let keys = scale(5000, 60) as u64;
    let threads = 4;
    let drops = Arc::new(AtomicUsize::new(0));
    let map: RcuHashMap<u64, Tracked> = RcuHashMap::new_in(&domain);
    let replaced = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..threads {
            let (map, drops, replaced) = (&map, &drops, &replaced);
            s.spawn(move || {
                for k in 0..keys {
                    if map.insert(k, Tracked(t, drops.clone())).is_some() {
                        replaced.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(map.len(), keys as usize);
    assert_eq!(
        replaced.load(Ordering::Relaxed),
        (threads as usize - 1) * keys as usize
    );
    let reader = domain.register();
    let guard = reader.read_lock();
    let mut seen = HashSet::new();
    for (k, _) in map.iter(&guard) {
        assert!(seen.insert(*k), "two entries for {k}");
    }
    assert_eq!(seen.len(), keys as usize);
    drop(guard);
    drop(reader);
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        replaced.load(Ordering::Relaxed)
    );
}

#[test]
fn get_or_insert_with_agrees_across_threads() {
    let keys = scale(3000, 40) as u64;
    let map: RcuHashMap<u64, u64> = RcuHashMap::new();
    let results: Vec<Vec<u64>> = thread::scope(|s| {
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let map = &map;
                s.spawn(move || {
                    let guard = rcu_core::read_lock();
                    (0..keys)
                        .map(|k| *map.get_or_insert_with(k, || k * 10 + t, &guard))
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results[0], results[1]);
    assert_eq!(results[1], results[2]);
    assert_eq!(map.len(), keys as usize);
}

#[test]
fn copy_updates_are_atomic_per_key() {
    let keys = scale(64, 4) as u64;
    let per_thread = scale(2000, 20) as u64;
    let threads = 4;
    let domain = RcuDomain::new();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&domain);
    for k in 0..keys {
        map.insert(k, 0);
    }
    thread::scope(|s| {
        for t in 0..threads {
            let map = &map;
            s.spawn(move || {
                for i in 0..per_thread {
                    let k = (i + t) % keys;
                    assert!(map.update(&k, |v| v + 1).is_some());
                }
            });
        }
    });
    let total: u64 = (0..keys).map(|k| map.get_cloned(&k).unwrap()).sum();
    assert_eq!(total, threads * per_thread, "an update was lost");
}

#[test]
fn iterate_and_remove_each_key_while_shrinking() {
    let n = scale(20_000, 200) as u64;
    let map: RcuHashMap<u64, u64> = (0..n).map(|k| (k, k)).collect();
    let big = map.capacity();
    let guard = rcu_core::read_lock();
    let mut seen = HashSet::new();
    for (k, _) in map.iter(&guard) {
        assert!(seen.insert(*k), "{k} twice");
        assert!(map.remove(k).is_some());
    }
    assert_eq!(seen.len(), n as usize);
    assert!(map.is_empty());
    assert!(map.capacity() < big, "the table shrank under the iterator");
}

#[test]
fn closures_may_write_the_map() {
    let map: RcuHashMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    // retain's predicate reads and writes the same map.
    map.retain(|k, _| {
        let guard = rcu_core::read_lock();
        assert!(map.get(k, &guard).is_some() || *k >= 100);
        if *k < 10 {
            map.insert(1000 + k, 0);
        }
        k % 2 == 0
    });
    let guard = rcu_core::read_lock();
    assert!(map.get(&3, &guard).is_none());
    assert!(map.get(&4, &guard).is_some());
    // update's closure writes another key; get_or_insert_with's inserts.
    map.update(&4, |v| {
        map.insert(5000, 1);
        v + 1
    });
    assert_eq!(map.get(&4, &guard), Some(&5));
    let v = map.get_or_insert_with(
        7000,
        || {
            map.remove(&5000);
            70
        },
        &guard,
    );
    assert_eq!(*v, 70);
    assert!(map.get(&5000, &guard).is_none());
    // A reference held across writes stays valid.
    let r = map.get(&4, &guard).unwrap();
    map.remove(&4);
    map.clear();
    assert_eq!(*r, 5);
}
