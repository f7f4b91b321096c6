//! The std-like surface: traits, guards of other domains, handles, the
//! guard-free forms, `Debug`, and what `Removed` keeps alive.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

use rcu_core::RcuDomain;
use rcu_hashmap::{MapRef, RcuHashMap, Removed};
use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

assert_impl_all!(RcuHashMap<u64, String>: Send, Sync, Default);
assert_impl_all!(Removed<u64, String>: Send, Sync);
assert_not_impl_any!(RcuHashMap<u64, Rc<u8>>: Send, Sync);
assert_not_impl_any!(RcuHashMap<u64, Cell<u8>>: Sync);
assert_impl_all!(MapRef<'static, u64, u64, std::hash::RandomState, rcu_core::OwnedReadGuard>: Send);
assert_not_impl_any!(MapRef<'static, u64, u64, std::hash::RandomState, rcu_hashmap::LocalGuard>: Send, Sync);
// Iterators hold `&'g` nodes: they may cross an `.await` of a spawned task
// (on an owned guard) when `K` and `V` are `Send + Sync`. They were not
// `Send` at all (raw node pointers in their buffer).
assert_impl_all!(rcu_hashmap::Iter<'static, u64, String>: Send, Sync);
assert_impl_all!(rcu_hashmap::Keys<'static, u64, String>: Send, Sync);
assert_impl_all!(rcu_hashmap::Values<'static, u64, String>: Send, Sync);
assert_not_impl_any!(rcu_hashmap::Iter<'static, u64, Cell<u8>>: Send, Sync);
assert_not_impl_any!(rcu_hashmap::Iter<'static, u64, Rc<u8>>: Send, Sync);

/// An iteration started on one thread goes on on another, with the owned
/// guard it runs under (a task moved by its executor after an `.await`),
/// while a writer removes keys: every key never removed is yielded once.
#[test]
fn an_iterator_moves_to_another_thread_with_its_owned_guard() {
    let n: u32 = if cfg!(miri) { 200 } else { 3_000 };
    let map: RcuHashMap<u32, String> = (0..n).map(|i| (i, i.to_string())).collect();
    let guard = map.domain().read_lock_owned();
    let mut it = map.iter(&guard);
    let mut seen: Vec<u32> = it.by_ref().take(n as usize / 30).map(|(k, _)| *k).collect();
    for k in (0..n).filter(|k| k % 3 == 0) {
        drop(map.remove(&k));
    }
    let rest: Vec<(u32, String)> = std::thread::scope(|s| {
        s.spawn(move || it.map(|(k, v)| (*k, v.clone())).collect())
            .join()
            .unwrap()
    });
    drop(guard);
    assert!(rest.iter().all(|(k, v)| *v == k.to_string()));
    seen.extend(rest.iter().map(|&(k, _)| k));
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a key yielded twice");
    let kept: Vec<u32> = sorted.into_iter().filter(|k| k % 3 != 0).collect();
    assert_eq!(kept, (0..n).filter(|k| k % 3 != 0).collect::<Vec<_>>());
}

#[test]
#[should_panic(expected = "guard of another")]
fn a_guard_of_another_domain_is_refused() {
    let domain = RcuDomain::new();
    let map: RcuHashMap<u32, u32> = RcuHashMap::new_in(&domain);
    map.insert(1, 1);
    let guard = rcu_core::read_lock(); // the process-wide domain's
    let _ = map.get(&1, &guard);
}

#[test]
fn owned_pin_moves_to_another_thread() {
    let map: RcuHashMap<u32, String> = (0..10).map(|i| (i, i.to_string())).collect();
    let m = map.pin_owned();
    std::thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(m.get(&3).map(String::as_str), Some("3"));
            assert_eq!(m.len(), 10);
        });
    });
}

#[test]
fn pin_and_domain_pin_read_and_write() {
    let domain = RcuDomain::new();
    let map: RcuHashMap<u32, u32> = RcuHashMap::new_in(&domain);
    let m = map.pin();
    assert!(m.insert(1, 10).is_none());
    assert_eq!(*m.get_or_insert_with(2, || 20), 20);
    assert_eq!(m.get(&1), Some(&10));
    assert_eq!(m.get_key_value(&2), Some((&2, &20)));
    assert!(m.contains_key(&2));
    assert_eq!(*m.update(&1, |v| v + 1).unwrap(), 10);
    assert_eq!(m.get(&1), Some(&11));
    let mut keys: Vec<u32> = m.keys().copied().collect();
    keys.sort();
    assert_eq!(keys, [1, 2]);
    assert_eq!(m.values().sum::<u32>(), 31);
    assert_eq!(*m.remove(&1).unwrap(), 11);
    assert_eq!(format!("{m:?}"), "{2: 20}");
}

#[test]
fn guard_free_forms() {
    let map: RcuHashMap<String, Vec<u8>> = RcuHashMap::new();
    map.insert("a".into(), vec![1, 2]);
    assert_eq!(map.get_cloned("a"), Some(vec![1, 2]));
    assert_eq!(map.get_cloned("b"), None);
    assert_eq!(map.with("a", |v| v.map(|v| v.len())), Some(2));
    // `with`'s closure may write to the map.
    map.with("a", |_| map.insert("c".into(), vec![]));
    assert_eq!(map.len(), 2);
}

#[test]
fn removed_handle_keeps_the_value_until_dropped() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    struct D(Arc<AtomicUsize>, u32);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let map: RcuHashMap<u32, D> = RcuHashMap::new_in(&domain);
    map.insert(1, D(drops.clone(), 7));
    let old = map.remove_entry(&1).unwrap();
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        0,
        "dropped while a handle holds it"
    );
    assert_eq!((*old.key(), old.1), (1, 7));
    drop(old);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 1);
}

#[test]
fn std_traits() {
    let mut map: RcuHashMap<u32, u32> = RcuHashMap::default();
    map.extend([(1, 1), (2, 2)]);
    (&map).extend([(3, 3)]);
    assert_eq!(map.len(), 3);
    let s = format!("{map:?}");
    assert!(s.starts_with('{') && s.contains("2: 2"), "{s}");
    let mut all: Vec<_> = map.into_iter().collect();
    all.sort();
    assert_eq!(all, [(1, 1), (2, 2), (3, 3)]);
    let map: RcuHashMap<u32, u32> = RcuHashMap::with_capacity(100);
    assert!(map.capacity() >= 100);
    assert!(map.is_empty());
    let empty: RcuHashMap<u32, u32> = RcuHashMap::new();
    assert_eq!(format!("{empty:?}"), "{}");
}

#[test]
fn iterators_are_fused() {
    let map: RcuHashMap<u32, u32> = (0..3).map(|i| (i, i)).collect();
    let guard = rcu_core::read_lock();
    let mut it = map.iter(&guard);
    assert_eq!(it.by_ref().count(), 3);
    map.insert(100, 100);
    assert!(it.next().is_none());
    assert!(it.next().is_none());
}
