//! `rcu-radix`'s `RcuRadixTree` against the ordered concurrent maps: congee
//! (an ART with optimistic lock coupling), `RwLock<BTreeMap>`,
//! crossbeam-skiplist's `SkipMap` and scc's `TreeIndex`.
//!
//! Every subject holds 1M `u64 -> u64` entries, dense (`0..1M`) or random
//! (`scramble(0..1M)`, a bijection of the index, so distinct). Each thread runs a
//! mix of 99 reads and 1 write (the write alternately removes a random
//! present key and inserts it back); the time per operation covers both.
//! The key of index `i` is computed, never loaded from a table: a lookup in
//! an 8 MiB key table would add a cache miss of the harness's own to every
//! operation of every subject, and bring all the ratios towards 1. Reads are point lookups of present keys, or
//! scans of the 100 keys `s..s + 100` from a random dense start. Each
//! structure is built once per key set and shared by the rows that use it
//! (building is not measured). The subjects of a 1-thread row are measured
//! interleaved, a slice of each in turn (see [`Task::sampled`]).

use super::{Chart, GroupDef, Settings, Task};
use crate::harness::ns_per_op_threads;
use crate::scramble;
use rcu_radix::RcuRadixTree;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{OnceLock, RwLock};

/// The radix group.
pub const GROUP: GroupDef = GroupDef {
    name: "radix",
    unit: "ns per operation (99% reads, 1% writes), lower is better",
    chart: Chart::Bars,
    tasks,
};

const G: &str = GROUP.name;

/// Entries in every structure: 1M, or 4096 for the runner's own tests
/// (measurements shorter than 0.1 s), fixed by the first `tasks` call.
static ENTRIES: OnceLock<u64> = OnceLock::new();

fn entries() -> u64 {
    *ENTRIES.get().expect("tasks() fixes the size first")
}

fn size_label() -> String {
    match entries() {
        1_048_576 => "1M".into(),
        n => n.to_string(),
    }
}
/// Keys per range scan.
const SCAN: u64 = 100;

/// What a subject must do: look up, scan `SCAN` keys from `start`, remove,
/// insert.
trait Subject: Sync + 'static {
    fn build(keys: &[u64]) -> Self
    where
        Self: Sized;
    fn get(&self, k: u64) -> Option<u64>;
    fn scan(&self, start: u64) -> u64;
    fn remove(&self, k: u64);
    fn insert(&self, k: u64);
}

impl Subject for RcuRadixTree<u64> {
    fn build(keys: &[u64]) -> Self {
        keys.iter().map(|&k| (k, k)).collect()
    }
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        let guard = rcu_core::read_lock();
        RcuRadixTree::get(self, k, &guard).copied()
    }
    fn scan(&self, start: u64) -> u64 {
        let guard = rcu_core::read_lock();
        self.range(start..start + SCAN, &guard)
            .map(|(_, v)| *v)
            .sum()
    }
    fn remove(&self, k: u64) {
        drop(RcuRadixTree::remove(self, k));
    }
    fn insert(&self, k: u64) {
        drop(RcuRadixTree::insert(self, k, k));
    }
}

impl Subject for congee::Congee<usize, usize> {
    fn build(keys: &[u64]) -> Self {
        let t = congee::Congee::default();
        let guard = t.pin();
        for &k in keys {
            t.insert(k as usize, k as usize, &guard)
                .expect("congee insert");
        }
        drop(guard);
        t
    }
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        let guard = self.pin();
        congee::Congee::get(self, &(k as usize), &guard).map(|v| v as u64)
    }
    fn scan(&self, start: u64) -> u64 {
        let guard = self.pin();
        let mut buf = [(0usize, 0usize); SCAN as usize];
        let n = self.range(
            &(start as usize),
            &((start + SCAN) as usize),
            &mut buf,
            &guard,
        );
        buf[..n].iter().map(|e| e.1 as u64).sum()
    }
    fn remove(&self, k: u64) {
        congee::Congee::remove(self, &(k as usize), &self.pin());
    }
    fn insert(&self, k: u64) {
        let _ = congee::Congee::insert(self, k as usize, k as usize, &self.pin());
    }
}

impl Subject for RwLock<BTreeMap<u64, u64>> {
    fn build(keys: &[u64]) -> Self {
        RwLock::new(keys.iter().map(|&k| (k, k)).collect())
    }
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        self.read().unwrap().get(&k).copied()
    }
    fn scan(&self, start: u64) -> u64 {
        self.read()
            .unwrap()
            .range(start..start + SCAN)
            .map(|(_, v)| *v)
            .sum()
    }
    fn remove(&self, k: u64) {
        self.write().unwrap().remove(&k);
    }
    fn insert(&self, k: u64) {
        self.write().unwrap().insert(k, k);
    }
}

impl Subject for crossbeam_skiplist::SkipMap<u64, u64> {
    fn build(keys: &[u64]) -> Self {
        let m = crossbeam_skiplist::SkipMap::new();
        for &k in keys {
            m.insert(k, k);
        }
        m
    }
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        crossbeam_skiplist::SkipMap::get(self, &k).map(|e| *e.value())
    }
    fn scan(&self, start: u64) -> u64 {
        self.range(start..start + SCAN).map(|e| *e.value()).sum()
    }
    fn remove(&self, k: u64) {
        crossbeam_skiplist::SkipMap::remove(self, &k);
    }
    fn insert(&self, k: u64) {
        crossbeam_skiplist::SkipMap::insert(self, k, k);
    }
}

impl Subject for scc::TreeIndex<u64, u64> {
    fn build(keys: &[u64]) -> Self {
        let t = scc::TreeIndex::new();
        for &k in keys {
            let _ = t.insert_sync(k, k);
        }
        t
    }
    #[inline]
    fn get(&self, k: u64) -> Option<u64> {
        self.peek_with(&k, |_, v| *v)
    }
    fn scan(&self, start: u64) -> u64 {
        let guard = scc::Guard::new();
        self.range(start..start + SCAN, &guard)
            .map(|(_, v)| *v)
            .sum()
    }
    fn remove(&self, k: u64) {
        self.remove_sync(&k);
    }
    fn insert(&self, k: u64) {
        let _ = self.insert_sync(k, k);
    }
}

/// xorshift64*.
fn next(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The key of index `i` of a key set.
#[inline(always)]
fn key(dense: bool, i: u64) -> u64 {
    if dense { i } else { scramble(i) }
}

/// `S` built over one key set, once (shared by every row that uses it).
fn shared<S: Subject>(cell: &'static OnceLock<S>, dense: bool) -> &'static S {
    cell.get_or_init(|| {
        let keys: Vec<u64> = (0..entries()).map(|i| key(dense, i)).collect();
        S::build(&keys)
    })
}

/// One thread's 99:1 mix on `subject`, seeded by `seed`: each call runs
/// `ops` operations, the reads `get` (or `scan`), and every 100th a remove
/// or, the next time, an insert back of the same random key.
fn mix_loop<S: Subject>(
    subject: &'static S,
    dense: bool,
    scan: bool,
    seed: u64,
) -> impl FnMut(u64) + 'static {
    let mut x = 0x9e37_79b9 ^ seed;
    let mut i = 0u64;
    let mut removed: Option<u64> = None;
    move |ops| {
        let mut acc = 0u64;
        for _ in 0..ops {
            i += 1;
            let r = next(&mut x);
            if i.is_multiple_of(100) {
                match removed.take() {
                    Some(k) => subject.insert(k),
                    None => {
                        let k = key(dense, r % entries());
                        subject.remove(k);
                        removed = Some(k);
                    }
                }
            } else if scan {
                acc = acc.wrapping_add(subject.scan(r % (entries() - SCAN)));
            } else {
                acc = acc.wrapping_add(subject.get(key(dense, r % entries())).unwrap_or(0));
            }
        }
        black_box(acc);
    }
}

/// Runs the mix on `threads` threads (each with a seed of its own).
fn mix<S: Subject>(
    s: &Settings,
    threads: usize,
    subject: &'static S,
    dense: bool,
    scan: bool,
) -> f64 {
    let seed = std::sync::atomic::AtomicU64::new(1);
    ns_per_op_threads(threads, s.duration, || {
        mix_loop(
            subject,
            dense,
            scan,
            seed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )
    })
}

/// One subject's task of a row. Single-thread rows are sampled, so the
/// runner interleaves their subjects (see [`Task::sampled`]): on a shared
/// machine whose speed drifts, every subject then meets the same drift.
fn task<S: Subject>(
    ours: bool,
    op: &str,
    subject: &'static str,
    cell: &'static OnceLock<S>,
    threads: usize,
    dense: bool,
    scan: bool,
) -> Task {
    if threads == 1 {
        Task::sampled(ours, G, op, subject, move |_| {
            Box::new(crate::harness::sampler(mix_loop(
                shared(cell, dense),
                dense,
                scan,
                1,
            )))
        })
    } else {
        Task {
            ours,
            ..Task::ours(G, op, subject, move |s: &Settings| {
                mix(s, threads, shared(cell, dense), dense, scan)
            })
        }
    }
}

/// One row: the five subjects doing the mix at `threads` threads.
fn row(t: &mut Vec<Task>, threads: usize, dense: bool, scan: bool) {
    let set = if dense { "dense" } else { "random" };
    let what = if scan {
        "range scan of 100 keys"
    } else {
        "get"
    };
    let op = format!(
        "{what}, {} {set} keys, {threads} thread(s), 1% writes",
        size_label()
    );

    static OURS: [OnceLock<RcuRadixTree<u64>>; 2] = [OnceLock::new(), OnceLock::new()];
    static CONGEE: [OnceLock<congee::Congee<usize, usize>>; 2] = [OnceLock::new(), OnceLock::new()];
    static BTREE: [OnceLock<RwLock<BTreeMap<u64, u64>>>; 2] = [OnceLock::new(), OnceLock::new()];
    static SKIP: [OnceLock<crossbeam_skiplist::SkipMap<u64, u64>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    static SCC: [OnceLock<scc::TreeIndex<u64, u64>>; 2] = [OnceLock::new(), OnceLock::new()];
    let d = usize::from(dense);
    let (n, dn, sc) = (threads, dense, scan);

    t.push(task(
        true,
        &op,
        "rcu-radix RcuRadixTree",
        &OURS[d],
        n,
        dn,
        sc,
    ));
    t.push(task(
        false,
        &op,
        "congee (ART, optimistic locks)",
        &CONGEE[d],
        n,
        dn,
        sc,
    ));
    t.push(task(
        false,
        &op,
        "std RwLock<BTreeMap>",
        &BTREE[d],
        n,
        dn,
        sc,
    ));
    t.push(task(
        false,
        &op,
        "crossbeam-skiplist SkipMap",
        &SKIP[d],
        n,
        dn,
        sc,
    ));
    t.push(task(false, &op, "scc TreeIndex", &SCC[d], n, dn, sc));
}

fn tasks(s: &Settings) -> Vec<Task> {
    ENTRIES.get_or_init(|| {
        if s.duration < std::time::Duration::from_millis(100) {
            4096
        } else {
            1 << 20
        }
    });
    let mut t = Vec::new();
    for threads in [1, 2] {
        row(&mut t, threads, true, false);
        row(&mut t, threads, false, false);
        row(&mut t, threads, true, true);
    }
    t
}
