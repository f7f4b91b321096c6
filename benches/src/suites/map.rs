//! `rcu-hashmap` against papaya, dashmap, scc (`HashIndex`, `HashMap`) and
//! `RwLock<HashMap>`: conc-map-bench's workloads (bustle's mixes), one
//! guard per operation, every map with the same hasher (std's `RandomState`
//! and foldhash), at 1 and 2 threads; and single-thread `get` on 64 K `u64`
//! keys against an unsynchronised `std::collections::HashMap`.
//!
//! - ReadHeavy: 98% get, 1% insert, 1% remove; 75% of the key space
//!   prefilled (keys drawn from 2^17).
//! - Exchange: 10% get, 40% insert, 40% remove, 10% update; prefilled as
//!   ReadHeavy.
//! - RapidGrow: 5% get, 80% insert (fresh keys), 5% remove, 10% update,
//!   from an empty map; rounds of 2^17 operations per thread on a fresh
//!   map, timed without the map's construction and drop.
//!
//! Numbers are ns per operation per thread (mean over threads).

use super::{Chart, GroupDef, Sampler, Settings, Task};
use crate::harness::ns_per_op_threads;
use crate::scramble as key;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The map group.
pub const GROUP: GroupDef = GroupDef {
    name: "map",
    unit: "ns per operation per thread, lower is better",
    chart: Chart::Bars,
    tasks,
};

const G: &str = GROUP.name;

/// The key space of ReadHeavy and Exchange (small in debug builds, which
/// only the runner's own tests use).
const KEYS: u64 = if cfg!(debug_assertions) {
    1 << 10
} else {
    1 << 17
};
/// Operations per thread in one RapidGrow round.
const GROW_OPS: u64 = if cfg!(debug_assertions) {
    1 << 10
} else {
    1 << 17
};

/// The operations every subject provides. One guard (pin, lock) per call.
trait Subject: Send + Sync + 'static {
    fn get(&self, k: u64) -> bool;
    fn insert(&self, k: u64, v: u64);
    fn remove(&self, k: u64) -> bool;
    fn update(&self, k: u64) -> bool;
}

impl<S: BuildHasher + Send + Sync + 'static> Subject for rcu_hashmap::RcuHashMap<u64, u64, S> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.get(&k, &rcu_core::read_lock()).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        drop(self.insert(k, v));
    }
    fn remove(&self, k: u64) -> bool {
        self.remove(&k).is_some()
    }
    fn update(&self, k: u64) -> bool {
        self.update(&k, |v| v + 1).is_some()
    }
}

impl<S: BuildHasher + Send + Sync + 'static> Subject for papaya::HashMap<u64, u64, S> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.pin().get(&k).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.pin().insert(k, v);
    }
    fn remove(&self, k: u64) -> bool {
        self.pin().remove(&k).is_some()
    }
    fn update(&self, k: u64) -> bool {
        self.pin().update(k, |v| v + 1).is_some()
    }
}

impl<S: BuildHasher + Clone + Send + Sync + 'static> Subject for dashmap::DashMap<u64, u64, S> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.get(&k).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.insert(k, v);
    }
    fn remove(&self, k: u64) -> bool {
        self.remove(&k).is_some()
    }
    fn update(&self, k: u64) -> bool {
        self.get_mut(&k).map(|mut v| *v += 1).is_some()
    }
}

impl<S: BuildHasher + Send + Sync + 'static> Subject for scc::HashMap<u64, u64, S> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.read_sync(&k, |_, v| *v).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.upsert_sync(k, v);
    }
    fn remove(&self, k: u64) -> bool {
        self.remove_sync(&k).is_some()
    }
    fn update(&self, k: u64) -> bool {
        self.update_sync(&k, |_, v| *v += 1).is_some()
    }
}

impl<S: BuildHasher + Send + Sync + 'static> Subject for scc::HashIndex<u64, u64, S> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.peek_with(&k, |_, v| *v).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        match self.entry_sync(k) {
            scc::hash_index::Entry::Occupied(mut o) => o.update(v),
            scc::hash_index::Entry::Vacant(e) => drop(e.insert_entry(v)),
        }
    }
    fn remove(&self, k: u64) -> bool {
        self.remove_sync(&k)
    }
    fn update(&self, k: u64) -> bool {
        match self.get_sync(&k) {
            Some(mut o) => {
                let v = *o.get() + 1;
                o.update(v);
                true
            }
            None => false,
        }
    }
}

impl<S: BuildHasher + Send + Sync + 'static> Subject for RwLock<HashMap<u64, u64, S>> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.read().unwrap().get(&k).is_some()
    }
    fn insert(&self, k: u64, v: u64) {
        self.write().unwrap().insert(k, v);
    }
    fn remove(&self, k: u64) -> bool {
        self.write().unwrap().remove(&k).is_some()
    }
    fn update(&self, k: u64) -> bool {
        self.write().unwrap().get_mut(&k).map(|v| *v += 1).is_some()
    }
}

/// A per-thread xorshift.
struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A mix, in percent: get, insert, remove, (the rest) update.
#[derive(Clone, Copy)]
struct Mix {
    get: u64,
    insert: u64,
    remove: u64,
}

const READ_HEAVY: Mix = Mix {
    get: 98,
    insert: 1,
    remove: 1,
};
const EXCHANGE: Mix = Mix {
    get: 10,
    insert: 40,
    remove: 40,
};
const RAPID_GROW: Mix = Mix {
    get: 5,
    insert: 80,
    remove: 5,
};

/// A map of `make`, 75% of the fixed key space filled.
fn prefilled<M: Subject>(make: fn() -> M) -> M {
    let map = make();
    for i in 0..KEYS * 3 / 4 {
        map.insert(key(i), i);
    }
    map
}

/// One operation of `mix` on a random key of the fixed key space.
#[inline]
fn mix_op<M: Subject>(map: &M, rng: &mut Rng, mix: Mix) {
    let r = rng.next();
    let k = key((r >> 8) % KEYS);
    let p = r & 0x7f; // 0..128, scaled below
    let p = p * 100 / 128;
    if p < mix.get {
        black_box(map.get(k));
    } else if p < mix.get + mix.insert {
        map.insert(k, r);
    } else if p < mix.get + mix.insert + mix.remove {
        black_box(map.remove(k));
    } else {
        black_box(map.update(k));
    }
}

/// Runs `mix` over the fixed key space, 75% prefilled, on `threads` threads.
fn steady<M: Subject>(make: fn() -> M, mix: Mix, threads: usize, duration: Duration) -> f64 {
    let map = prefilled(make);
    let seed = std::sync::atomic::AtomicU64::new(1);
    ns_per_op_threads(threads, duration, || {
        let map = &map;
        let mut rng = Rng(seed.fetch_add(0x1234_5678_9abc, std::sync::atomic::Ordering::Relaxed));
        move |n| (0..n).for_each(|_| mix_op(map, &mut rng, mix))
    })
}

/// [`steady`] on the calling thread, as a sampler (for interleaving).
fn steady_sampler<M: Subject + 'static>(make: fn() -> M, mix: Mix) -> Sampler {
    let map = prefilled(make);
    let mut rng = Rng(1);
    Box::new(crate::harness::sampler(move |n| {
        (0..n).for_each(|_| mix_op(&map, &mut rng, mix))
    }))
}

/// RapidGrow: rounds on a fresh map, each thread inserting fresh keys.
fn rapid_grow<M: Subject>(make: fn() -> M, threads: usize, duration: Duration) -> f64 {
    let start = Instant::now();
    let (mut ns, mut ops) = (0f64, 0u64);
    let mut round = 0u64;
    while ops == 0 || start.elapsed() < duration {
        let map = make();
        round += 1;
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads as u64 {
                let map = &map;
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9 ^ (round << 20) ^ (t + 1));
                    let base = t << 40;
                    let mut inserted = 0u64;
                    for _ in 0..GROW_OPS {
                        let r = rng.next();
                        let p = (r & 0x7f) * 100 / 128;
                        let old = key(base + (r >> 8) % inserted.max(1));
                        if p < RAPID_GROW.get {
                            black_box(map.get(old));
                        } else if p < RAPID_GROW.get + RAPID_GROW.insert {
                            map.insert(key(base + inserted), r);
                            inserted += 1;
                        } else if p < RAPID_GROW.get + RAPID_GROW.insert + RAPID_GROW.remove {
                            black_box(map.remove(old));
                        } else {
                            black_box(map.update(old));
                        }
                    }
                });
            }
        });
        ns += t0.elapsed().as_nanos() as f64;
        ops += GROW_OPS;
        drop(map);
    }
    ns / ops as f64
}

/// Adds one row per (workload, threads) for the subjects built with
/// hasher `S`.
fn rows<S>(t: &mut Vec<Task>, hasher: &'static str)
where
    S: BuildHasher + Default + Clone + Send + Sync + 'static,
{
    type Ours<S> = rcu_hashmap::RcuHashMap<u64, u64, S>;
    for threads in [1usize, 2] {
        for (name, mix) in [
            ("ReadHeavy", Some(READ_HEAVY)),
            ("Exchange", Some(EXCHANGE)),
            ("RapidGrow", None),
        ] {
            let op = format!(
                "{name}, {threads} thread{}, {hasher}",
                if threads > 1 { "s" } else { "" }
            );
            macro_rules! subject {
                ($ctor:expr, $label:expr, $ours:expr) => {{
                    let make: fn() -> _ = $ctor;
                    let run = move |s: &Settings| match mix {
                        Some(mix) => steady(make, mix, threads, s.duration),
                        None => rapid_grow(make, threads, s.duration),
                    };
                    t.push(match mix {
                        // One thread: interleaved with the row's other
                        // subjects, on the runner's thread.
                        Some(mix) if threads == 1 => {
                            Task::sampled($ours, G, op.clone(), $label, move |_| {
                                steady_sampler(make, mix)
                            })
                        }
                        _ if $ours => Task::ours(G, op.clone(), $label, run),
                        _ => Task::peer(G, op.clone(), $label, run),
                    });
                }};
            }
            subject!(|| Ours::<S>::with_hasher(S::default()), "rcu-hashmap", true);
            subject!(
                || papaya::HashMap::<u64, u64, S>::with_hasher(S::default()),
                "papaya",
                false
            );
            subject!(
                || dashmap::DashMap::<u64, u64, S>::with_hasher(S::default()),
                "dashmap",
                false
            );
            subject!(
                || scc::HashIndex::<u64, u64, S>::with_hasher(S::default()),
                "scc HashIndex",
                false
            );
            subject!(
                || scc::HashMap::<u64, u64, S>::with_hasher(S::default()),
                "scc HashMap",
                false
            );
            subject!(
                || RwLock::new(HashMap::<u64, u64, S>::with_hasher(S::default())),
                "RwLock<HashMap>",
                false
            );
        }
    }
}

/// Single-thread `get` of present keys on a 64 K-entry table. The subjects
/// are measured interleaved (see [`Task::sampled`]).
fn get_row<S>(t: &mut Vec<Task>, hasher: &'static str)
where
    S: BuildHasher + Default + Clone + Send + Sync + 'static,
{
    const N: u64 = if cfg!(debug_assertions) {
        1 << 10
    } else {
        1 << 16
    };
    let op = format!("get hit, 1 thread, 64 K u64 keys, {hasher}");
    fn probe(rng: &mut Rng) -> u64 {
        key(rng.next() % N)
    }
    /// A task measuring `get` on a structure `fill` builds: `get(&map,
    /// key)` looks one present key up (a closure, so that the loop inlines
    /// it as the other subjects' loops inline theirs).
    fn row_task<M: 'static>(
        ours: bool,
        op: &str,
        subject: &'static str,
        fill: fn() -> M,
        get: impl Fn(&M, u64) + Copy + 'static,
    ) -> Task {
        Task::sampled(ours, G, op, subject, move |_| {
            let map = fill();
            let mut rng = Rng(7);
            Box::new(crate::harness::sampler(move |n| {
                for _ in 0..n {
                    get(&map, probe(&mut rng));
                }
            }))
        })
    }
    fn filled<M>(mut map: M, insert: impl Fn(&mut M, u64, u64)) -> M {
        for i in 0..N {
            insert(&mut map, key(i), i);
        }
        map
    }
    type Ours<S> = rcu_hashmap::RcuHashMap<u64, u64, S>;
    t.push(row_task(
        true,
        &op,
        "rcu-hashmap get (read_lock per get)",
        || {
            filled(Ours::<S>::with_hasher(S::default()), |m, k, v| {
                drop(m.insert(k, v))
            })
        },
        |m, k| {
            black_box(m.get(&k, &rcu_core::read_lock()));
        },
    ));
    t.push(row_task(
        false,
        &op,
        "std HashMap get (unsynchronised)",
        || {
            filled(
                HashMap::<u64, u64, S>::with_hasher(S::default()),
                |m, k, v| {
                    m.insert(k, v);
                },
            )
        },
        |m, k| {
            black_box(m.get(&k));
        },
    ));
    // The same map and loop with one guard for each batch of 4096 gets:
    // how much of the reference is the critical section per get.
    t.push(Task::sampled(
        false,
        G,
        &op,
        "rcu-hashmap get (one guard per 4096 gets)",
        |_| {
            let map = filled(Ours::<S>::with_hasher(S::default()), |m, k, v| {
                drop(m.insert(k, v))
            });
            let mut rng = Rng(7);
            Box::new(crate::harness::sampler(move |n| {
                let pinned = map.pin();
                for _ in 0..n {
                    black_box(pinned.get(&probe(&mut rng)));
                }
            }))
        },
    ));
    t.push(row_task(
        false,
        &op,
        "papaya get (pin per get)",
        || {
            filled(
                papaya::HashMap::<u64, u64, S>::with_hasher(S::default()),
                |m, k, v| {
                    m.pin().insert(k, v);
                },
            )
        },
        |m, k| {
            black_box(m.pin().get(&k).copied());
        },
    ));
    t.push(row_task(
        false,
        &op,
        "dashmap get",
        || {
            filled(
                dashmap::DashMap::<u64, u64, S>::with_hasher(S::default()),
                |m, k, v| {
                    m.insert(k, v);
                },
            )
        },
        |m, k| {
            black_box(m.get(&k).map(|v| *v));
        },
    ));
}

fn tasks(_: &Settings) -> Vec<Task> {
    let mut t = Vec::new();
    get_row::<std::hash::RandomState>(&mut t, "std RandomState");
    get_row::<foldhash::fast::RandomState>(&mut t, "foldhash");
    rows::<std::hash::RandomState>(&mut t, "std RandomState");
    rows::<foldhash::fast::RandomState>(&mut t, "foldhash");
    t
}
