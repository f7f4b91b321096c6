//! The map group's ReadHeavy mix on one thread (98% `get`, 1% `insert`, 1%
//! `remove` over 128 K keys, 75% prefilled, foldhash, one guard per
//! operation), and the same loop with every write turned into a `get`, for
//! `RcuHashMap` and papaya: what the writes cost each map inside the mix.
//! Fastest of 25 interleaved samples of 262 144 operations each. (Samples
//! of 65 536, a hundred of each, made the reads-only loop's fastest sample
//! 1-3 ns faster than with these, and the mix's not at all: the writes'
//! share came out too big.)
//!
//! ```text
//! cargo run --release -p rcu-bench --example map_mix
//! cargo run --release -p rcu-bench --example map_mix -- unit
//! ```
//!
//! With `unit` the values are `()`: our nodes are then 24 bytes (hash,
//! link, key), in glibc's 32-byte chunks instead of 48, the size of
//! papaya's entries with either value, which tests whether the nodes'
//! size is what the lookups pay for.
//!
//! With `count SUBJECT WRITES` (`SUBJECT`: `ours` or `papaya`; `WRITES`:
//! `mix` or `reads`) it runs 4 samples of that loop only, for callgrind
//! (`--toggle-collect='*map_mix*run*'`; add `--cache-sim=yes` for the
//! misses, e.g. `--LL=524288,8,64` for a 512 KiB second level).

use rcu_bench::scramble as key;
use std::hint::black_box;
use std::time::Instant;

/// The runner's key space for ReadHeavy.
const KEYS: u64 = 1 << 17;
const OPS: u32 = 1 << 18;
const SAMPLES: usize = 25;

type S = foldhash::fast::FixedState;

/// The values stored: `u64` (the runner's) or `()` (`unit`).
trait Value: Copy + Send + Sync + 'static {
    fn new(x: u64) -> Self;
}

impl Value for u64 {
    fn new(x: u64) -> Self {
        x
    }
}

impl Value for () {
    fn new(_: u64) -> Self {}
}

/// An operation: `p` in `0..100` picks it as the runner does (below 98 a
/// `get`, 98 an `insert`, 99 a `remove`).
trait Mix {
    fn op(&self, p: u64, k: u64);
}

impl<V: Value> Mix for rcu_hashmap::RcuHashMap<u64, V, S> {
    #[inline]
    fn op(&self, p: u64, k: u64) {
        if p < 98 {
            black_box(self.get(&k, &rcu_core::read_lock()).is_some());
        } else if p < 99 {
            drop(self.insert(k, V::new(p)));
        } else {
            black_box(self.remove(&k).is_some());
        }
    }
}

impl<V: Value> Mix for papaya::HashMap<u64, V, S> {
    #[inline]
    fn op(&self, p: u64, k: u64) {
        if p < 98 {
            black_box(self.pin().get(&k).is_some());
        } else if p < 99 {
            self.pin().insert(k, V::new(p));
        } else {
            black_box(self.pin().remove(&k).is_some());
        }
    }
}

/// Mean ns per operation of [`OPS`] operations, continuing `rng`; with
/// `writes` false every operation is a `get`.
#[inline(never)]
fn run(map: &impl Mix, rng: &mut u64, writes: bool) -> f64 {
    let t = Instant::now();
    for _ in 0..OPS {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let r = *rng;
        let k = key((r >> 8) % KEYS);
        let p = if writes { (r & 0x7f) * 100 / 128 } else { 0 };
        map.op(p, k);
    }
    t.elapsed().as_nanos() as f64 / f64::from(OPS)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => measure::<u64>(None),
        ["unit"] => measure::<()>(None),
        [
            "count",
            subject @ ("ours" | "papaya"),
            writes @ ("mix" | "reads"),
        ] => measure::<u64>(Some((subject == "ours", writes == "mix"))),
        _ => {
            eprintln!("usage: map_mix [unit | count ours|papaya mix|reads]");
            std::process::exit(2);
        }
    }
}

/// Fills both maps, then times them (or, with `count` = `(ours, mix)`,
/// runs that loop alone for callgrind).
fn measure<V: Value>(count: Option<(bool, bool)>) {
    let ours = rcu_hashmap::RcuHashMap::<u64, V, S>::with_hasher(S::with_seed(3));
    let papaya = papaya::HashMap::<u64, V, S>::with_hasher(S::with_seed(3));
    for i in 0..KEYS * 3 / 4 {
        ours.insert(key(i), V::new(i));
        papaya.pin().insert(key(i), V::new(i));
    }
    let mut rngs = [1u64; 4];
    if let Some((subject_is_ours, mix)) = count {
        for _ in 0..4 {
            if subject_is_ours {
                run(&ours, &mut rngs[0], mix);
            } else {
                run(&papaya, &mut rngs[0], mix);
            }
        }
        return;
    }
    let mut best = [f64::MAX; 4];
    for _ in 0..SAMPLES {
        let [a, b, c, d] = &mut rngs;
        let times = [
            run(&ours, a, true),
            run(&ours, b, false),
            run(&papaya, c, true),
            run(&papaya, d, false),
        ];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
    }
    let [om, or, pm, pr] = best;
    println!(
        "ReadHeavy on one thread, {} values, ns per operation (fastest of {SAMPLES} samples of {OPS}):",
        std::any::type_name::<V>()
    );
    println!(
        "  mix:        rcu-hashmap {om:6.2}  papaya {pm:6.2}  papaya/ours {:.2}x",
        pm / om
    );
    println!(
        "  reads only: rcu-hashmap {or:6.2}  papaya {pr:6.2}  papaya/ours {:.2}x",
        pr / or
    );
    println!(
        "  the writes' share (mix minus reads only): rcu-hashmap {:.2}  papaya {:.2}",
        om - or,
        pm - pr
    );
}
