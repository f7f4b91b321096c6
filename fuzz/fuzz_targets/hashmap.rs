//! Fuzzes `rcu-hashmap` against `std::collections::HashMap`.
//!
//! # Input
//! An initial capacity (0 to 8, so resizes happen often), a hasher (a
//! deterministic SipHash, or one that puts every key in one of four hashes, so
//! chains are long), 0 to 15 *stable* keys and up to [`MAX_OPS`] operations on
//! 64 *churn* keys: `insert`, `remove`, `remove_entry`, `update`,
//! `get_or_insert_with`, `retain`, `clear`, `extend`, a write from inside
//! `with`'s closure, reads through a guard, through `with`/`get_cloned` and
//! through `pin`/`pin_owned`, full iterations (entries, keys, values), and
//! holding, dropping or `into_entry` of the [`Removed`] handles; the map is
//! then dropped or consumed by `into_iter`. Each input has its own
//! [`RcuDomain`].
//!
//! # Checks
//! * After every step: the returned values (old values in `Removed`
//!   handles, `get_or_insert_with`'s value) match the model, `len` and a get
//!   of the step's key match, and every few steps a full iteration yields the
//!   model's entries exactly once (and `keys`/`values` agree); `capacity`
//!   is at least the initial capacity, and `len` within its documented
//!   bound for one writer (`capacity + 15`).
//! * `into_iter` yields the model's entries, its `len` counting down.
//! * A `Removed` handle stays readable, with the value it was removed with,
//!   until it is dropped.
//! * A reader thread (when the input asks for one) checks during the whole
//!   run that every stable key is found with its value and that an iteration
//!   yields each stable key exactly once (the map's documented weak
//!   consistency), and that every value it sees belongs to its key.
//! * Leak accounting: after the map is dropped (or consumed) and the domain
//!   drained, every value made (or cloned) was dropped exactly once.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rcu_core::RcuDomain;
use rcu_hashmap::{RcuHashMap, Removed};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MAX_OPS: usize = 96;
/// Churn keys are `0..CHURN`; stable keys `STABLE_BASE..`.
const CHURN: u32 = 64;
const STABLE_BASE: u32 = 1000;
/// `Removed` handles held at once.
const MAX_HELD: usize = 4;

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    colliding: bool,
    stable: u8,
    reader_thread: bool,
    /// Consume the map with `into_iter` at the end instead of dropping it.
    into_iter: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Insert(u8, u16),
    Remove(u8),
    RemoveEntry(u8),
    /// Adds to the value.
    Update(u8, u16),
    GetOrInsert(u8, u16),
    Get(u8),
    /// `get_key_value`, `contains_key`, `get_cloned`, `with` and the
    /// `pin`/`pin_owned` handles.
    Reads(u8),
    /// Keeps the entries whose value is not divisible by `2 + n % 5` (and
    /// the stable keys).
    Retain(u8),
    /// `clear` without stable keys; else a `retain` of only them.
    Clear,
    Iter,
    /// Drops the held `Removed` handle at this index.
    DropHeld(u8),
    /// `into_entry` of the held `Removed` handle at this index.
    IntoEntry(u8),
    /// `extend` with `n % 4` entries from key `k` on, values from `x` on.
    Extend(u8, u8, u16),
    /// `with(k, f)` where `f` inserts `(k2, x)` into the map.
    WithInsert(u8, u8, u16),
}

/// How many values were made (or cloned) and dropped.
#[derive(Debug, Default)]
struct Counts {
    made: AtomicUsize,
    drops: AtomicUsize,
}

/// A value that names its key and counts its making and dropping.
#[derive(Debug)]
struct Val {
    key: u32,
    x: u16,
    counts: Arc<Counts>,
}

impl Val {
    fn new(key: u32, x: u16, counts: &Arc<Counts>) -> Val {
        counts.made.fetch_add(1, Ordering::SeqCst);
        Val {
            key,
            x,
            counts: Arc::clone(counts),
        }
    }
}

impl Clone for Val {
    fn clone(&self) -> Val {
        Val::new(self.key, self.x, &self.counts)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.counts.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Four hashes for all keys: long chains in every table size.
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

/// Either hasher, picked per input.
#[derive(Clone)]
enum Hash {
    Sip,
    Colliding,
}

enum AnyHasher {
    Sip(DefaultHasher),
    Colliding(Colliding),
}

impl Hasher for AnyHasher {
    fn finish(&self) -> u64 {
        match self {
            AnyHasher::Sip(h) => h.finish(),
            AnyHasher::Colliding(h) => h.finish(),
        }
    }
    fn write(&mut self, bytes: &[u8]) {
        match self {
            AnyHasher::Sip(h) => h.write(bytes),
            AnyHasher::Colliding(h) => h.write(bytes),
        }
    }
}

impl BuildHasher for Hash {
    type Hasher = AnyHasher;
    fn build_hasher(&self) -> AnyHasher {
        match self {
            Hash::Sip => {
                AnyHasher::Sip(BuildHasherDefault::<DefaultHasher>::default().build_hasher())
            }
            Hash::Colliding => AnyHasher::Colliding(Colliding::default()),
        }
    }
}

type Map = RcuHashMap<u32, Val, Hash>;

struct Run<'a> {
    map: &'a Map,
    model: HashMap<u32, u16>,
    counts: Arc<Counts>,
    held: Vec<(Removed<u32, Val>, u32, u16)>,
}

impl Run<'_> {
    fn val(&self, key: u32, x: u16) -> Val {
        Val::new(key, x, &self.counts)
    }

    fn took(&mut self, removed: Option<Removed<u32, Val>>, key: u32, want: Option<u16>) {
        assert_eq!(removed.as_ref().map(|r| r.x), want, "old value of {key}");
        if let Some(r) = removed {
            assert_eq!(*r.key(), key);
            assert_eq!(r.value().key, key);
            if self.held.len() < MAX_HELD {
                let x = r.x;
                self.held.push((r, key, x));
            }
        }
    }

    fn check_held(&self) {
        for (r, key, x) in &self.held {
            assert_eq!(
                (*r.key(), r.key, r.x),
                (*key, *key, *x),
                "a held Removed changed"
            );
        }
    }

    fn check_all(&self, guard: &impl rcu_core::Guard) {
        let mut seen = HashMap::new();
        for (k, v) in self.map.iter(guard) {
            assert_eq!(v.key, *k, "value of another key");
            assert!(seen.insert(*k, v.x).is_none(), "key {k} yielded twice");
        }
        assert_eq!(seen, self.model);
        let mut keys: Vec<u32> = self.map.keys(guard).copied().collect();
        keys.sort_unstable();
        let mut want: Vec<u32> = self.model.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(keys, want, "keys");
        let mut values: Vec<(u32, u16)> = self.map.values(guard).map(|v| (v.key, v.x)).collect();
        values.sort_unstable();
        let mut want: Vec<(u32, u16)> = self.model.iter().map(|(k, x)| (*k, *x)).collect();
        want.sort_unstable();
        assert_eq!(values, want, "values");
    }
}

fn run(input: &Input) {
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    let domain = RcuDomain::new();
    let hash = if input.colliding {
        Hash::Colliding
    } else {
        Hash::Sip
    };
    let capacity = usize::from(input.capacity % 9);
    let map: Map = RcuHashMap::with_capacity_and_hasher_in(capacity, hash, &domain);
    assert!(map.capacity() >= capacity, "with_capacity({capacity})");
    let counts = Arc::new(Counts::default());
    let mut r = Run {
        map: &map,
        model: HashMap::new(),
        counts: Arc::clone(&counts),
        held: Vec::new(),
    };
    let stable: Vec<u32> = (0..u32::from(input.stable % 16))
        .map(|i| STABLE_BASE + i)
        .collect();
    for &k in &stable {
        let v = r.val(k, k as u16);
        assert!(map.insert(k, v).is_none());
        r.model.insert(k, k as u16);
    }
    let done = AtomicBool::new(false);

    std::thread::scope(|s| {
        let reader_thread = input.reader_thread.then(|| {
            let (map, stable, done, domain) = (&map, &stable, &done, &domain);
            s.spawn(move || {
                let reader = domain.register();
                let mut rounds = 0u32;
                // At least a few rounds, even if the writer is already done.
                while rounds < 4 || !done.load(Ordering::SeqCst) {
                    rounds += 1;
                    let guard = reader.read_lock();
                    for &k in stable {
                        let v = map
                            .get(&k, &guard)
                            .unwrap_or_else(|| panic!("stable key {k} missing"));
                        assert_eq!((v.key, v.x), (k, k as u16), "stable key {k}");
                    }
                    if rounds.is_multiple_of(4) {
                        let mut count = vec![0u32; stable.len()];
                        for (k, v) in map.iter(&guard) {
                            assert_eq!(v.key, *k, "value of another key");
                            if *k >= STABLE_BASE {
                                count[(*k - STABLE_BASE) as usize] += 1;
                            }
                        }
                        for (i, c) in count.iter().enumerate() {
                            assert_eq!(
                                *c,
                                1,
                                "stable key {} yielded {c} times",
                                STABLE_BASE + i as u32
                            );
                        }
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
            let key = |k: u8| u32::from(k) % CHURN;
            match op {
                Op::Insert(k, x) => {
                    let k = key(k);
                    let v = r.val(k, x);
                    let old = map.insert(k, v);
                    let want = r.model.insert(k, x);
                    r.took(old, k, want);
                }
                Op::Remove(k) | Op::RemoveEntry(k) => {
                    let k = key(k);
                    let old = if matches!(op, Op::Remove(_)) {
                        map.remove(&k)
                    } else {
                        map.remove_entry(&k)
                    };
                    let want = r.model.remove(&k);
                    r.took(old, k, want);
                }
                Op::Update(k, d) => {
                    let k = key(k);
                    let mut calls = 0;
                    let old = map.update(&k, |v| {
                        calls += 1;
                        Val::new(v.key, v.x.wrapping_add(d), &counts)
                    });
                    // Single-threaded writes: no retry.
                    assert_eq!(calls, usize::from(old.is_some()), "update's closure calls");
                    let want = r.model.get_mut(&k).map(|x| {
                        let old = *x;
                        *x = x.wrapping_add(d);
                        old
                    });
                    r.took(old, k, want);
                }
                Op::GetOrInsert(k, x) => {
                    let k = key(k);
                    let absent = !r.model.contains_key(&k);
                    let guard = reader.read_lock();
                    let mut called = false;
                    let got = map.get_or_insert_with(
                        k,
                        || {
                            called = true;
                            Val::new(k, x, &counts)
                        },
                        &guard,
                    );
                    let want = *r.model.entry(k).or_insert(x);
                    assert_eq!((got.key, got.x), (k, want), "get_or_insert_with {k}");
                    assert_eq!(called, absent, "get_or_insert_with {k} called f");
                }
                Op::Get(k) => {
                    let k = key(k);
                    let guard = reader.read_lock();
                    assert_eq!(
                        map.get(&k, &guard).map(|v| v.x),
                        r.model.get(&k).copied(),
                        "get {k}"
                    );
                }
                Op::Reads(k) => {
                    let k = key(k);
                    let want = r.model.get(&k).copied();
                    let guard = reader.read_lock();
                    assert_eq!(
                        map.get_key_value(&k, &guard).map(|(kk, v)| (*kk, v.x)),
                        want.map(|x| (k, x))
                    );
                    assert_eq!(map.contains_key(&k, &guard), want.is_some());
                    drop(guard);
                    assert_eq!(map.with(&k, |v| v.map(|v| v.x)), want);
                    let cloned = map.get_cloned(&k);
                    assert_eq!(cloned.as_ref().map(|v| (v.key, v.x)), want.map(|x| (k, x)));
                    drop(cloned);
                    let pinned = map.pin();
                    assert_eq!(pinned.get(&k).map(|v| v.x), want);
                    assert_eq!(pinned.len(), r.model.len());
                    drop(pinned);
                    let owned = map.pin_owned();
                    assert_eq!(owned.contains_key(&k), want.is_some());
                    assert_eq!(owned.iter().count(), r.model.len());
                }
                Op::Retain(n) => {
                    let m = 2 + u16::from(n % 5);
                    // Stable keys stay.
                    map.retain(|k, v| {
                        assert_eq!(v.key, *k);
                        *k >= STABLE_BASE || v.x % m != 0
                    });
                    r.model.retain(|k, x| *k >= STABLE_BASE || *x % m != 0);
                }
                Op::Clear => {
                    if stable.is_empty() {
                        map.clear();
                    } else {
                        map.retain(|k, _| *k >= STABLE_BASE);
                    }
                    r.model.retain(|k, _| *k >= STABLE_BASE);
                }
                Op::Iter => r.check_all(&reader.read_lock()),
                Op::DropHeld(i) => {
                    if !r.held.is_empty() {
                        let i = usize::from(i) % r.held.len();
                        drop(r.held.remove(i));
                    }
                }
                Op::IntoEntry(i) => {
                    if !r.held.is_empty() {
                        let i = usize::from(i) % r.held.len();
                        let (h, k, x) = r.held.remove(i);
                        let (kk, v) = h.into_entry();
                        assert_eq!((kk, v.key, v.x), (k, k, x), "into_entry");
                    }
                }
                Op::Extend(k, n, x) => {
                    let entries: Vec<(u32, u16)> = (0..u32::from(n % 4))
                        .map(|i| ((u32::from(k) + i) % CHURN, x.wrapping_add(i as u16)))
                        .collect();
                    (&map).extend(entries.iter().map(|&(k, x)| (k, r.val(k, x))));
                    r.model.extend(entries);
                }
                Op::WithInsert(k, k2, x) => {
                    let (k, k2) = (key(k), key(k2));
                    let want = r.model.get(&k).copied();
                    let v2 = r.val(k2, x);
                    let (got, old) =
                        map.with(&k, |v| (v.map(|v| (v.key, v.x)), map.insert(k2, v2)));
                    assert_eq!(got, want.map(|x| (k, x)), "with({k})");
                    let want_old = r.model.insert(k2, x);
                    r.took(old, k2, want_old);
                }
            }
            // The documented bound for one thread writing only to the map.
            assert!(
                map.len() <= map.capacity() + 15,
                "len {} with capacity {}",
                map.len(),
                map.capacity()
            );
            r.check_held();
            assert_eq!(map.len(), r.model.len(), "len after step {step} ({op:?})");
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

    let model = std::mem::take(&mut r.model);
    drop(r);
    if input.into_iter {
        let mut it = map.into_iter();
        assert_eq!(it.len(), model.len(), "into_iter's len");
        let mut seen = HashMap::new();
        while let Some((k, v)) = it.next() {
            assert_eq!(v.key, k, "value of another key");
            assert!(seen.insert(k, v.x).is_none(), "into_iter yielded {k} twice");
            assert_eq!(it.len(), model.len() - seen.len(), "into_iter's len");
        }
        assert_eq!(seen, model, "into_iter");
    } else {
        drop(map);
    }
    domain.drain();
    drop(domain);
    assert_eq!(
        counts.drops.load(Ordering::SeqCst),
        counts.made.load(Ordering::SeqCst),
        "values made != values dropped"
    );
}

fuzz_target!(|input: Input| run(&input));
