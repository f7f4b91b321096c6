//! Differential tests against `std::collections::HashMap`: seeded random
//! operation sequences, growth from empty to many keys and shrink back, and
//! drop-count leak accounting.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::Rng;
use rcu_core::RcuDomain;
use rcu_hashmap::RcuHashMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A value that counts its drops.
#[derive(Debug)]
struct Tracked {
    v: u64,
    drops: Arc<AtomicUsize>,
}
impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked {
            v: self.v,
            drops: self.drops.clone(),
        }
    }
}
impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

fn check_same(map: &RcuHashMap<u64, Tracked>, model: &HashMap<u64, u64>, domain: &RcuDomain) {
    assert_eq!(map.len(), model.len());
    let reader = domain.register();
    let guard = reader.read_lock();
    let mut seen = HashMap::new();
    for (k, v) in map.iter(&guard) {
        assert!(seen.insert(*k, v.v).is_none(), "key {k} yielded twice");
    }
    assert_eq!(&seen, model);
}

#[test]
fn random_ops_match_std() {
    let ops = if cfg!(miri) { 400 } else { 200_000 };
    let key_space = if cfg!(miri) { 64 } else { 4096 };
    let seeds: &[u64] = if cfg!(miri) {
        &[0x9e37_79b9_7f4a_7c15]
    } else {
        &[1, 0x9e37_79b9_7f4a_7c15, 42]
    };
    for &seed in seeds {
        let domain = RcuDomain::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut created = 0usize;
        let mk = |v: u64, created: &mut usize| {
            *created += 1;
            Tracked {
                v,
                drops: drops.clone(),
            }
        };
        let map: RcuHashMap<u64, Tracked> = RcuHashMap::new_in(&domain);
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut rng = Rng(seed);
        // Values taken out of the map: each must be dropped by the domain.
        let mut out = 0usize;
        for i in 0..ops {
            let k = rng.below(key_space);
            match rng.below(100) {
                0..=39 => {
                    let v = rng.next();
                    let old = map.insert(k, mk(v, &mut created));
                    assert_eq!(old.as_ref().map(|o| o.v), model.insert(k, v), "insert {k}");
                    out += old.is_some() as usize;
                }
                40..=69 => {
                    let old = map.remove(&k);
                    assert_eq!(old.as_ref().map(|o| o.v), model.remove(&k), "remove {k}");
                    if let Some(o) = &old {
                        assert_eq!(*o.key(), k);
                    }
                    out += old.is_some() as usize;
                }
                70..=79 => {
                    let old = map.update(&k, |t| Tracked {
                        v: t.v + 1,
                        drops: t.drops.clone(),
                    });
                    created += old.is_some() as usize;
                    out += old.is_some() as usize;
                    let m = model.get_mut(&k).map(|v| {
                        *v += 1;
                        *v - 1
                    });
                    assert_eq!(old.map(|o| o.v), m, "update {k}");
                }
                80..=84 => {
                    let reader = domain.register();
                    let guard = reader.read_lock();
                    let v = rng.next();
                    let mut called = false;
                    let got = map.get_or_insert_with(
                        k,
                        || {
                            called = true;
                            mk(v, &mut created)
                        },
                        &guard,
                    );
                    let want = *model.entry(k).or_insert(v);
                    assert_eq!(got.v, want);
                    assert_eq!(called, want == v && called);
                }
                86 if i % 16 == 0 => {
                    // Resizes at moments the load factor would not pick;
                    // the contents must not change.
                    if rng.below(2) == 0 {
                        map.reserve(rng.below(2 * key_space) as usize);
                    } else {
                        map.shrink_to_fit();
                    }
                    assert_eq!(map.len(), model.len());
                }
                85 if i % 64 == 0 => {
                    let m = rng.below(4) + 2;
                    let before = map.len();
                    map.retain(|k, _| k % m != 0);
                    model.retain(|k, _| k % m != 0);
                    out += before - map.len();
                }
                _ => {
                    let reader = domain.register();
                    let guard = reader.read_lock();
                    assert_eq!(map.get(&k, &guard).map(|t| t.v), model.get(&k).copied());
                    assert_eq!(map.contains_key(&k, &guard), model.contains_key(&k));
                }
            }
            if i % (ops / 8) == 0 {
                check_same(&map, &model, &domain);
            }
        }
        check_same(&map, &model, &domain);
        domain.drain();
        assert_eq!(
            drops.load(Ordering::Relaxed),
            out,
            "seed {seed}: reclaimed != removed"
        );
        let left = map.len();
        drop(map);
        assert_eq!(drops.load(Ordering::Relaxed), out + left);
        assert_eq!(
            created,
            out + left,
            "seed {seed}: values created vs accounted"
        );
    }
}

#[test]
fn grow_to_many_and_shrink_back() {
    let n: u64 = if cfg!(miri) { 200 } else { 1 << 20 };
    let domain = RcuDomain::new();
    let map: RcuHashMap<u64, u64> = RcuHashMap::new_in(&domain);
    let small = map.capacity();
    let mut model = HashMap::new();
    let mut rng = Rng(7);
    let mut keys = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = rng.next();
        keys.push(k);
        assert!(map.insert(k, i).is_none());
        model.insert(k, i);
    }
    assert_eq!(map.len(), n as usize);
    // `capacity` may trail `len` by the writes between two load-factor
    // checks (15 on one thread: see `capacity`). Asserting `capacity >= n`
    // here failed under Miri once a change elsewhere moved Miri's thread
    // interleaving, and with it `RandomState`'s keys, so that the last check
    // fell just short of the 200th insertion (capacity 192).
    assert!(
        map.capacity() > small && map.capacity() + 15 >= n as usize,
        "grew: capacity {} for {n} entries",
        map.capacity()
    );
    {
        let reader = domain.register();
        let guard = reader.read_lock();
        for (i, k) in keys
            .iter()
            .enumerate()
            .step_by(if cfg!(miri) { 1 } else { 7 })
        {
            assert_eq!(map.get(k, &guard), Some(&(i as u64)));
        }
        assert_eq!(map.iter(&guard).count(), n as usize);
    }
    // Remove all but a few, checking a sample as we go.
    for (i, k) in keys.iter().enumerate().skip(10) {
        assert_eq!(map.remove(k).map(|v| *v), Some(i as u64));
        model.remove(k);
    }
    assert_eq!(map.len(), 10);
    assert!(
        map.capacity() <= small.max(10 * 16),
        "shrank back: capacity {} for 10 entries",
        map.capacity()
    );
    let reader = domain.register();
    let guard = reader.read_lock();
    let got: HashMap<u64, u64> = map.iter(&guard).map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, model);
    drop(guard);
    drop(reader);
    map.clear();
    assert!(map.is_empty());
}

#[test]
fn with_capacity_does_not_shrink_below_it() {
    let (room, n) = if cfg!(miri) { (40, 200) } else { (1000, 2000) };
    let map: RcuHashMap<u32, u32> = RcuHashMap::with_capacity(room);
    let cap = map.capacity();
    assert!(cap >= room);
    for i in 0..n as u32 {
        map.insert(i, i);
    }
    assert!(map.capacity() > cap, "grew");
    for i in 0..n as u32 {
        map.remove(&i);
    }
    assert!(map.capacity() >= room);
    assert!(map.is_empty());
}

#[test]
fn into_iter_and_drop_free_everything() {
    let drops = Arc::new(AtomicUsize::new(0));
    let n = if cfg!(miri) { 50 } else { 5000 };
    let map: RcuHashMap<u64, Tracked> = (0..n)
        .map(|i| {
            (
                i,
                Tracked {
                    v: i,
                    drops: drops.clone(),
                },
            )
        })
        .collect();
    let mut got: Vec<u64> = map.into_iter().map(|(k, v)| k + v.v - k).collect();
    got.sort();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert_eq!(drops.load(Ordering::Relaxed), n as usize);

    let drops2 = Arc::new(AtomicUsize::new(0));
    let map: RcuHashMap<u64, Tracked> = RcuHashMap::new();
    for i in 0..n {
        map.insert(
            i,
            Tracked {
                v: i,
                drops: drops2.clone(),
            },
        );
    }
    drop(map);
    assert_eq!(drops2.load(Ordering::Relaxed), n as usize);
}
