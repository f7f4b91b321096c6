//! Reproducers of the `hashmap` fuzz target's findings (`fuzz/`), kept as
//! regression tests.

use rcu_core::RcuDomain;
use rcu_hashmap::RcuHashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};

/// Puts every key in one of four hashes, as the fuzz target's colliding
/// hasher does: long chains in every table size.
#[derive(Default)]
struct Colliding(u64);

impl Hasher for Colliding {
    fn finish(&self) -> u64 {
        (self.0 & 3).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.wrapping_add(u64::from(b));
        }
    }
}

/// Fuzz finding 1 (minimised input: capacity 0, three stable keys, then
/// `insert(0)`): after four insertions into a map made with capacity 0,
/// `len` (4) was above `capacity` (3), which the docs then called "how many
/// entries the current table holds before it grows". Writes check the load
/// factor only now and then (one write in 16 per thread, or an insertion
/// into a chain of two or more), by design; the docs now say `capacity` is
/// the growth threshold, not a bound, and give the bound that holds for one
/// writer: two entries per bucket, `len <= capacity / 3 * 8`.
fn capacity_is_the_threshold_not_a_bound<S: BuildHasher + Default>() {
    let domain = RcuDomain::new();
    let map: RcuHashMap<u32, u32, S> =
        RcuHashMap::with_capacity_and_hasher_in(0, S::default(), &domain);
    assert_eq!(map.capacity(), 3, "the smallest table: 4 buckets");
    for k in [1000, 1001, 1002, 0] {
        assert!(map.insert(k, k).is_none());
    }
    assert_eq!(map.len(), 4);
    assert!(map.len() <= map.capacity() / 3 * 8);
    let guard = domain.register();
    let guard = guard.read_lock();
    for k in [1000, 1001, 1002, 0] {
        assert_eq!(map.get(&k, &guard), Some(&k));
    }
    drop(guard);

    // The documented bound, insertion by insertion, from every initial
    // capacity the fuzz target uses; and `with_capacity`'s promise.
    let n = if cfg!(miri) { 40 } else { 600 };
    for capacity in 0..9 {
        let map: RcuHashMap<u32, u32, S> =
            RcuHashMap::with_capacity_and_hasher_in(capacity, S::default(), &domain);
        assert!(map.capacity() >= capacity, "with_capacity({capacity})");
        for k in 0..n {
            assert!(map.insert(k, k).is_none());
            assert_eq!(map.len(), k as usize + 1);
            assert!(
                map.len() <= map.capacity() / 3 * 8,
                "len {} with capacity {} (from {capacity})",
                map.len(),
                map.capacity()
            );
        }
        // The table never shrinks below the room the map was made with.
        for k in 0..n {
            assert_eq!(map.remove(&k).map(|r| *r), Some(k));
        }
        assert!(map.is_empty());
        assert!(map.capacity() >= capacity);
    }
    domain.drain();
}

#[test]
fn capacity_is_the_threshold_not_a_bound_sip() {
    capacity_is_the_threshold_not_a_bound::<BuildHasherDefault<DefaultHasher>>();
}

#[test]
fn capacity_is_the_threshold_not_a_bound_colliding() {
    capacity_is_the_threshold_not_a_bound::<BuildHasherDefault<Colliding>>();
}
