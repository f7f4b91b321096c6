//! Single-thread `get` on 64 K `u64` keys (or `MAP_GET_KEYS`): `rcu-hashmap` (one `read_lock`
//! per get, and one `pin` for a whole sample) against an unsynchronised
//! `std::collections::HashMap` and papaya (a `pin` per get) with the same
//! hasher, then replacing inserts (ours, ours without retiring the replaced
//! node, papaya). Interleaves short samples of each and reports the fastest
//! sample of each, which is what a loaded shared machine can still measure.
//! Its `ratio` is our time over `std`'s (above 1: slower than `std`), the
//! inverse of the runner's peer-over-ours ratios.
//!
//! ```text
//! cargo run --release -p rcu-bench --example map_get
//! ```
//!
//! With `count SUBJECT HASHER` (`SUBJECT`: `ours`, `std` or `empty`, the
//! key loop alone; `HASHER`: `std` or `foldhash`) it runs only
//! [`COUNT_OPS`] gets of that subject, for callgrind (instructions per
//! get: the subject's total minus `empty`'s, over [`COUNT_OPS`]; the
//! tables' filling costs the same in all three runs):
//!
//! ```text
//! cargo build --release -p rcu-bench --example map_get
//! valgrind --tool=callgrind target/release/examples/map_get count ours foldhash
//! ```

use rcu_bench::scramble as key;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::time::Instant;

const OPS: u64 = 1 << 16;

/// Keys in the table: 64 K, or `MAP_GET_KEYS`.
fn n() -> u64 {
    std::env::var("MAP_GET_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 16)
}

fn sample(mut f: impl FnMut(u64)) -> f64 {
    let n = n();
    let t = Instant::now();
    let mut x = 0x1234_5678u64;
    for _ in 0..OPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f(key(x % n));
    }
    t.elapsed().as_nanos() as f64 / OPS as f64
}

fn run<S: BuildHasher + Default + Clone + Send + Sync + 'static>(name: &str) {
    let ours = rcu_hashmap::RcuHashMap::<u64, u64, S>::with_hasher(S::default());
    let mut std_map = HashMap::<u64, u64, S>::with_hasher(S::default());
    let papaya = papaya::HashMap::<u64, u64, S>::with_hasher(S::default());
    for i in 0..n() {
        ours.insert(key(i), i);
        std_map.insert(key(i), i);
        papaya.pin().insert(key(i), i);
    }
    let (mut a, mut b, mut c, mut d) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..200 {
        a = a.min(sample(|k| {
            black_box(ours.get(&k, &rcu_core::read_lock()).copied());
        }));
        b = b.min(sample(|k| {
            black_box(std_map.get(&k).copied());
        }));
        c = c.min(sample(|k| {
            black_box(papaya.pin().get(&k).copied());
        }));
        let m = ours.pin();
        d = d.min(sample(|k| {
            black_box(m.get(&k).copied());
        }));
    }
    // Replacing inserts: the write path, and how much of it is the
    // retirement of the replaced node (call_rcu per node).
    let (mut w, mut wf, mut wp) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..20 {
        w = w.min(sample(|k| drop(ours.insert(k, k))));
        wf = wf.min(sample(|k| std::mem::forget(ours.insert(k, k))));
        wp = wp.min(sample(|k| {
            papaya.pin().insert(k, k);
        }));
    }
    println!(
        "{name:16} replacing insert: rcu-hashmap {w:6.2} ns (without retiring {wf:6.2} ns), papaya {wp:6.2} ns"
    );
    println!(
        "{name:16} rcu-hashmap {a:6.2} ns  std {b:6.2} ns  ratio {:.2}x  | papaya {c:6.2} ns | rcu-hashmap one pin {d:6.2} ns (min of 200 samples of {OPS} gets)",
        a / b
    );
}

/// Gets in a `count` run.
const COUNT_OPS: u64 = 100_000;

/// A `count` run: fills both tables, then runs [`COUNT_OPS`] gets of one
/// subject (or only the key loop).
fn count<S: BuildHasher + Default + Clone + Send + Sync + 'static>(subject: &str) {
    let ours = rcu_hashmap::RcuHashMap::<u64, u64, S>::with_hasher(S::default());
    let mut std_map = HashMap::<u64, u64, S>::with_hasher(S::default());
    for i in 0..n() {
        ours.insert(key(i), i);
        std_map.insert(key(i), i);
    }
    let mut x = 0x1234_5678u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        key(x % n())
    };
    for _ in 0..COUNT_OPS {
        let k = next();
        match subject {
            "ours" => black_box(ours.get(&k, &rcu_core::read_lock()).copied()),
            "std" => black_box(std_map.get(&k).copied()),
            _ => black_box(Some(k)),
        };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {
            run::<std::hash::RandomState>("std RandomState");
            run::<foldhash::fast::RandomState>("foldhash");
        }
        ["count", subject @ ("ours" | "std" | "empty"), "std"] => {
            count::<std::hash::RandomState>(subject)
        }
        ["count", subject @ ("ours" | "std" | "empty"), "foldhash"] => {
            count::<foldhash::fast::RandomState>(subject)
        }
        _ => {
            eprintln!("usage: map_get [count ours|std|empty std|foldhash]");
            std::process::exit(2);
        }
    }
}
