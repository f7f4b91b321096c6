//! The optional features: `serde` round trip, rayon's parallel extend and
//! iteration. (`cargo test -p rcu-hashmap --all-features`.)

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip() {
    use rcu_hashmap::RcuHashMap;
    let map: RcuHashMap<String, u32> = (0..50).map(|i| (i.to_string(), i)).collect();
    let json = serde_json::to_string(&map).unwrap();
    let back: RcuHashMap<String, u32> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.len(), 50);
    for i in 0..50u32 {
        assert_eq!(back.get_cloned(&i.to_string()), Some(i));
    }
    let std_map: std::collections::HashMap<String, u32> = serde_json::from_str(&json).unwrap();
    assert_eq!(std_map.len(), 50);
}

/// A format's entry count grows the table before the entries arrive, but
/// capped (as serde caps `std`'s preallocation): a count in untrusted
/// input that claims 2^40 entries must not size the table (it would abort
/// on the allocation).
#[cfg(feature = "serde")]
#[test]
fn serde_caps_the_entry_count_it_trusts() {
    use rcu_hashmap::RcuHashMap;
    use serde::Deserialize;
    use serde::de::value::{Error, MapDeserializer};
    /// Two pairs that claim to be 2^40.
    struct Lying(std::vec::IntoIter<(u64, u64)>);
    impl Iterator for Lying {
        type Item = (u64, u64);
        fn next(&mut self) -> Option<(u64, u64)> {
            self.0.next()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (1 << 40, Some(1 << 40))
        }
    }
    let input = MapDeserializer::<_, Error>::new(Lying(vec![(1, 10), (2, 20)].into_iter()));
    let map = RcuHashMap::<u64, u64>::deserialize(input).unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(map.get_cloned(&2), Some(20));
    assert!(map.capacity() <= 1 << 17, "capacity {}", map.capacity());
    // An honest count (below the cap, also Miri's): the table ends as
    // `with_capacity` sizes it (the checks of the first insertions, finding
    // it nearly empty, do not shrink it; 50 keys grown one by one end in
    // half the buckets).
    let n = 50;
    let pairs: Vec<(u64, u64)> = (0..n).map(|i| (i, i)).collect();
    let input = MapDeserializer::<_, Error>::new(pairs.into_iter());
    let map = RcuHashMap::<u64, u64>::deserialize(input).unwrap();
    assert_eq!(map.len(), n as usize);
    assert_eq!(
        map.capacity(),
        RcuHashMap::<u64, u64>::with_capacity(n as usize).capacity()
    );
}

#[cfg(feature = "rayon")]
#[test]
#[cfg_attr(
    miri,
    ignore = "rayon's crossbeam-epoch 0.9.21 fails Stacked Borrows (internal.rs:567)"
)]
fn rayon_extend_and_iterate() {
    use rayon::prelude::*;
    use rcu_hashmap::RcuHashMap;
    let n = if cfg!(miri) { 100 } else { 20_000 };
    let map: RcuHashMap<u64, u64> = (0..n).into_par_iter().map(|i| (i, i * 2)).collect();
    assert_eq!(map.len(), n as usize);
    (&map).par_extend((n..2 * n).into_par_iter().map(|i| (i, i * 2)));
    assert_eq!(map.len(), 2 * n as usize);
    let guard = rcu_core::read_lock();
    let sum: u64 = map.par_iter(&guard).map(|(_, v)| *v).sum();
    assert_eq!(sum, (0..2 * n).map(|i| i * 2).sum::<u64>());
}

/// `par_extend` grows the table for an indexed iterator's length first,
/// and no worker's checks shrink it back while the load runs.
#[cfg(feature = "rayon")]
#[test]
#[cfg_attr(
    miri,
    ignore = "rayon's crossbeam-epoch 0.9.21 fails Stacked Borrows (internal.rs:567)"
)]
fn par_extend_sizes_the_table_and_keeps_it_while_loading() {
    use rayon::prelude::*;
    use rcu_hashmap::RcuHashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = 20_000usize;
    let map: RcuHashMap<u64, u64> = RcuHashMap::new();
    let least = AtomicUsize::new(usize::MAX);
    let mut target = &map;
    target.par_extend((0..n as u64).into_par_iter().map(|i| {
        least.fetch_min(map.capacity(), Ordering::Relaxed);
        (i, i)
    }));
    assert_eq!(map.len(), n);
    assert!(
        least.load(Ordering::Relaxed) >= n,
        "capacity down to {} while loading {n}",
        least.load(Ordering::Relaxed)
    );
}
