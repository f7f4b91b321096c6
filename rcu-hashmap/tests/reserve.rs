//! Sizing by hand: `reserve` makes room that inserts do not outgrow and
//! removals do not shrink, `shrink_to_fit` gives it back, from one thread,
//! from inside a key's `Eq`, and while other threads write and read.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

use rcu_hashmap::RcuHashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// Asserts that the map holds exactly the keys `keys`, each mapped to
/// itself.
fn assert_holds(map: &RcuHashMap<u64, u64>, keys: impl Iterator<Item = u64> + Clone) {
    let guard = map.pin();
    assert_eq!(map.len(), keys.clone().count());
    for k in keys {
        assert_eq!(guard.get(&k), Some(&k), "key {k}");
    }
}

#[test]
fn inserts_within_the_reserved_room_start_no_resize() {
    let n = if cfg!(miri) { 100 } else { 5_000 };
    let map = RcuHashMap::new();
    map.reserve(n);
    let room = map.capacity();
    assert!(room >= n, "capacity {room} after reserve({n})");
    for i in 0..n as u64 {
        map.insert(i, i);
        assert_eq!(map.capacity(), room, "a resize at insert {i}");
    }
    assert_holds(&map, 0..n as u64);
}

#[test]
fn reserve_counts_the_entries_already_there() {
    let map = RcuHashMap::new();
    for i in 0..100u64 {
        map.insert(i, i);
    }
    map.reserve(1_000);
    assert!(map.capacity() >= 1_100, "capacity {}", map.capacity());
    // A smaller request keeps the bigger table.
    let room = map.capacity();
    map.reserve(10);
    assert_eq!(map.capacity(), room);
    assert_holds(&map, 0..100);
}

#[test]
fn the_reserved_room_survives_removals_until_shrink_to_fit() {
    let n = if cfg!(miri) { 200 } else { 4_096 };
    let map = RcuHashMap::new();
    map.reserve(n);
    let room = map.capacity();
    // Enough writes that the one-in-16 load-factor checks run many times
    // with the table nearly empty (which shrinks a table without a floor).
    for round in 0..4u64 {
        for i in 0..64u64 {
            map.insert(round * 64 + i, i);
        }
        for i in 0..64u64 {
            assert!(map.remove(&(round * 64 + i)).is_some());
        }
    }
    assert!(map.is_empty());
    assert_eq!(
        map.capacity(),
        room,
        "the table shrank below the reserved room"
    );
    map.shrink_to_fit();
    let smallest = RcuHashMap::<u64, u64>::new().capacity();
    assert_eq!(map.capacity(), smallest, "shrink_to_fit on an empty map");
    // The room is forgotten: the checks of later writes do not grow the
    // table back to it.
    for i in 0..100u64 {
        map.insert(i, i);
        map.remove(&i);
    }
    assert_eq!(
        map.capacity(),
        smallest,
        "the table grew back to the reserved room"
    );
}

#[test]
fn shrink_to_fit_leaves_the_smallest_table_that_holds_the_entries() {
    let n = if cfg!(miri) { 300 } else { 20_000 };
    let keep = n / 10;
    let map: RcuHashMap<u64, u64> = (0..n).map(|i| (i, i)).collect();
    map.retain(|k, _| *k < keep);
    let before = map.capacity();
    map.shrink_to_fit();
    let after = map.capacity();
    assert!(
        after >= keep as usize && after / 2 < keep as usize,
        "capacity {before} -> {after} for {keep} entries"
    );
    assert_holds(&map, 0..keep);
    // The table grows again as usual.
    for i in keep..n {
        map.insert(i, i);
    }
    assert!(map.capacity() + 15 >= map.len());
    assert_holds(&map, 0..n);
}

#[test]
fn shrink_to_fit_keeps_the_capacity_the_map_was_built_with() {
    let (built_for, reserved) = if cfg!(miri) {
        (100, 1_000)
    } else {
        (1_000, 10_000)
    };
    let map = RcuHashMap::with_capacity(built_for);
    let built = map.capacity();
    map.reserve(reserved);
    assert!(map.capacity() >= reserved);
    for i in 0..10u64 {
        map.insert(i, i);
    }
    map.shrink_to_fit();
    assert_eq!(map.capacity(), built);
    assert_holds(&map, 0..10);
}

#[test]
fn a_reserve_that_overflows_panics_and_changes_nothing() {
    let map = RcuHashMap::new();
    map.insert(1u64, 1u64);
    let room = map.capacity();
    // The power of two overflows `usize`; a table of 2^60 bucket words
    // overflows the address space (its floor was once raised before the
    // table was found too big: every later check panicked).
    for additional in [usize::MAX, 1 << 59] {
        let err =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map.reserve(additional)))
                .unwrap_err();
        let message = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("capacity overflow"), "panic: {message}");
        assert_eq!(map.capacity(), room);
    }
    // No floor was raised: the checks of later writes (one in 16) leave
    // the table as it is.
    for _ in 0..50 {
        map.insert(2, 2);
        map.remove(&2);
    }
    assert_eq!(map.capacity(), room);
    assert_holds(&map, 1..2);
}

/// A key whose `Eq` calls `reserve` (or `shrink_to_fit`) on the map it is
/// compared in, once armed: no resize may start there (the bucket that
/// `Eq` runs under is held), so the room is kept and the map grows at its
/// next write from outside an `Eq`.
#[derive(Clone, Copy)]
struct ReservingKey(u64);

static MAP: std::sync::OnceLock<RcuHashMap<ReservingKey, u64>> = std::sync::OnceLock::new();
static ARMED: AtomicBool = AtomicBool::new(false);

impl PartialEq for ReservingKey {
    fn eq(&self, o: &Self) -> bool {
        if ARMED.swap(false, Ordering::Relaxed) {
            MAP.get().unwrap().reserve(1_000);
        }
        self.0 == o.0
    }
}
impl Eq for ReservingKey {}
impl Hash for ReservingKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

#[test]
fn a_reserve_from_inside_eq_grows_the_map_at_its_next_write() {
    let map = MAP.get_or_init(RcuHashMap::new);
    map.insert(ReservingKey(7), 0);
    let room = map.capacity();
    ARMED.store(true, Ordering::Relaxed);
    // Replacing key 7 compares it with the stored key 7: `Eq` reserves.
    assert_eq!(*map.insert(ReservingKey(7), 1).unwrap(), 0);
    assert!(!ARMED.load(Ordering::Relaxed), "Eq did not run");
    // The table grows no later than the next write from outside an `Eq`
    // (the insert above may have been that write).
    map.insert(ReservingKey(8), 2);
    assert!(
        map.capacity() >= 1_001 && map.capacity() > room,
        "capacity {room} -> {}",
        map.capacity()
    );
    let guard = map.pin();
    assert_eq!(guard.get(&ReservingKey(7)), Some(&1));
    assert_eq!(guard.get(&ReservingKey(8)), Some(&2));
}

/// Writers insert and remove their own keys, a reader checks a stable
/// key set, and another thread reserves and shrinks in turn: no key of
/// the stable set goes missing, every writer's final keys are there once,
/// and the count is exact.
#[test]
fn reserve_and_shrink_race_with_writers_and_readers() {
    // (Under Miri a table of 64 K buckets takes minutes to move.)
    let (stable, per_writer, rounds, big) = if cfg!(miri) {
        (16u64, 16u64, 3, 500)
    } else {
        (1_000, 2_000, 40, 50_000)
    };
    let map: RcuHashMap<u64, u64> = (0..stable).map(|i| (i, i)).collect();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let writers: Vec<_> = (1..=2u64)
            .map(|w| {
                let map = &map;
                s.spawn(move || {
                    let base = w * 1_000_000;
                    for i in 0..per_writer {
                        map.insert(base + i, base + i);
                        if i % 2 == 1 {
                            assert_eq!(
                                map.remove(&(base + i - 1)).as_deref(),
                                Some(&(base + i - 1))
                            );
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let guard = map.pin();
                for k in 0..stable {
                    assert_eq!(guard.get(&k), Some(&k), "stable key {k} missed");
                }
            }
        });
        s.spawn(|| {
            for r in 0..rounds {
                map.reserve(if r % 2 == 0 { big } else { 10 });
                map.shrink_to_fit();
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let odd = |w: u64| {
        (0..per_writer)
            .filter(|i| i % 2 == 1)
            .map(move |i| w * 1_000_000 + i)
    };
    assert_holds(&map, (0..stable).chain(odd(1)).chain(odd(2)));
}

/// `extend` grows the table for the iterator's lower size hint before its
/// first insertion (all of it into an empty map, half into one with
/// entries, as `std`'s does), the checks of its own insertions do not
/// shrink it back meanwhile (the table is nearly empty when they start),
/// and it keeps no room: emptied, the table shrinks again at later writes.
#[test]
fn extend_grows_for_the_size_hint_and_keeps_no_room() {
    let n = if cfg!(miri) { 200 } else { 10_000 };
    let map = RcuHashMap::new();
    // The smallest capacity seen before each insertion of the last extend.
    let least = std::cell::Cell::new(usize::MAX);
    let (map_ref, least_ref) = (&map, &least);
    let pairs = |from: u64| {
        least_ref.set(usize::MAX);
        (from..from + n).map(move |i| {
            least_ref.set(least_ref.get().min(map_ref.capacity()));
            (i, i)
        })
    };
    (&map).extend(pairs(0));
    assert!(
        least.get() >= n as usize,
        "capacity down to {} while extending by {n}",
        least.get()
    );
    let room = map.capacity();
    // Into a map with entries: half the hint (keys may be present already).
    (&map).extend(pairs(n));
    assert!(
        least.get() >= (n + n / 2) as usize,
        "capacity down to {} while extending {n} entries by {n}",
        least.get()
    );
    assert_holds(&map, 0..2 * n);
    // `collect` sizes the map by the hint, too (100 keys inserted one by
    // one end in half the buckets).
    let collected: RcuHashMap<u64, u64> = (0..100).map(|i| (i, i)).collect();
    assert_eq!(
        collected.capacity(),
        RcuHashMap::<u64, u64>::with_capacity(100).capacity()
    );
    map.retain(|_, _| false);
    for _ in 0..50 {
        map.insert(1, 1);
        map.remove(&1);
    }
    assert!(
        map.capacity() < room,
        "capacity {} stayed at {room}",
        map.capacity()
    );
}

/// An iterator whose lower size hint is `hint`, whatever it yields.
struct Hinted<I> {
    inner: I,
    hint: usize,
}

impl<I: Iterator> Iterator for Hinted<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.inner.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.hint, None)
    }
}

/// A lower size hint no table can hold, or whose table cannot be
/// allocated, grows nothing: `extend` inserts what the iterator yields
/// (`std`'s `extend` panics on 2^58, aborts on 2^40).
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri stops at an allocation this large instead of failing it"
)]
fn extend_survives_a_size_hint_no_table_can_meet() {
    let map = RcuHashMap::new();
    for (round, hint) in [1usize << 40, 1 << 58, usize::MAX].into_iter().enumerate() {
        let base = round as u64 * 10;
        (&map).extend(Hinted {
            inner: (base..base + 3).map(|i| (i, i)),
            hint,
        });
    }
    assert_holds(&map, (0..3).chain(10..13).chain(20..23));
    assert!(map.capacity() < 1 << 20, "capacity {}", map.capacity());
}

/// `collect` sizes its table as `extend` does: a hint no table can meet
/// sizes nothing, and the pairs go in (it panicked with "capacity
/// overflow", or "cannot be allocated", as `std`'s `from_iter` does).
#[test]
#[cfg_attr(
    miri,
    ignore = "Miri stops at an allocation this large instead of failing it"
)]
fn collect_survives_a_size_hint_no_table_can_meet() {
    for hint in [1usize << 40, 1 << 58, usize::MAX] {
        let map: RcuHashMap<u64, u64> = Hinted {
            inner: (0..3).map(|i| (i, i)),
            hint,
        }
        .collect();
        assert_holds(&map, 0..3);
        assert!(map.capacity() < 1 << 20, "capacity {}", map.capacity());
    }
    // An honest hint still sizes the table at once.
    let map: RcuHashMap<u64, u64> = (0..1000u64).map(|i| (i, i)).collect();
    assert_eq!(
        map.capacity(),
        RcuHashMap::<u64, u64>::with_capacity(1000).capacity()
    );
}

/// An `extend` whose iterator extends another map: the inner one's end
/// restores the outer one's mark, so the outer map's checks still do not
/// shrink it while it loads.
#[test]
fn nested_extends_keep_the_outer_maps_mark() {
    let n = if cfg!(miri) { 200 } else { 4_000 };
    let (a, b) = (RcuHashMap::new(), RcuHashMap::new());
    let least = std::cell::Cell::new(usize::MAX);
    (&a).extend((0..n).map(|i| {
        if i == 0 {
            (&b).extend((0..10u64).map(|j| (j, j)));
        }
        least.set(least.get().min(a.capacity()));
        (i, i)
    }));
    assert!(
        least.get() >= n as usize,
        "capacity down to {} while extending by {n}",
        least.get()
    );
    assert_holds(&a, 0..n);
    assert_holds(&b, 0..10);
}
