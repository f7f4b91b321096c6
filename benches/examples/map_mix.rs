//! The map group's ReadHeavy mix on one thread (98% `get`, 1% `insert`, 1%
//! `remove` over 128 K keys, 75% prefilled, foldhash, one guard per
//! operation), and the same loop with every write turned into a `get`, for
//! `RcuHashMap` and papaya: what the writes cost each map inside the mix.
//! Fastest of 100 interleaved samples of 65 536 operations each.
//!
//! ```text
//! cargo run --release -p rcu-bench --example map_mix
//! ```
//!
//! With `count SUBJECT WRITES` (`SUBJECT`: `ours` or `papaya`; `WRITES`:
//! `mix` or `reads`) it runs 16 samples of that loop only, for callgrind
//! (`--toggle-collect='*map_mix*run*'`; add `--cache-sim=yes` for the
//! misses, e.g. `--LL=524288,8,64` for a 512 KiB second level).

use rcu_bench::scramble as key;
use std::hint::black_box;
use std::time::Instant;

/// The runner's key space for ReadHeavy.
const KEYS: u64 = 1 << 17;
const OPS: u32 = 1 << 16;

type S = foldhash::fast::FixedState;

/// An operation: `p` in `0..100` picks it as the runner does (below 98 a
/// `get`, 98 an `insert`, 99 a `remove`).
trait Mix {
    fn op(&self, p: u64, k: u64);
}

impl Mix for rcu_hashmap::RcuHashMap<u64, u64, S> {
    #[inline]
    fn op(&self, p: u64, k: u64) {
        if p < 98 {
            black_box(self.get(&k, &rcu_core::read_lock()).is_some());
        } else if p < 99 {
            drop(self.insert(k, p));
        } else {
            black_box(self.remove(&k).is_some());
        }
    }
}

impl Mix for papaya::HashMap<u64, u64, S> {
    #[inline]
    fn op(&self, p: u64, k: u64) {
        if p < 98 {
            black_box(self.pin().get(&k).is_some());
        } else if p < 99 {
            self.pin().insert(k, p);
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
    let ours = rcu_hashmap::RcuHashMap::<u64, u64, S>::with_hasher(S::with_seed(3));
    let papaya = papaya::HashMap::<u64, u64, S>::with_hasher(S::with_seed(3));
    for i in 0..KEYS * 3 / 4 {
        ours.insert(key(i), i);
        papaya.pin().insert(key(i), i);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rngs = [1u64; 4];
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        [
            "count",
            subject @ ("ours" | "papaya"),
            writes @ ("mix" | "reads"),
        ] => {
            for _ in 0..16 {
                if subject == "ours" {
                    run(&ours, &mut rngs[0], writes == "mix");
                } else {
                    run(&papaya, &mut rngs[0], writes == "mix");
                }
            }
            return;
        }
        _ => {
            eprintln!("usage: map_mix [count ours|papaya mix|reads]");
            std::process::exit(2);
        }
    }
    let mut best = [f64::MAX; 4];
    for _ in 0..100 {
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
    println!("ReadHeavy on one thread, ns per operation (fastest of 100 samples of {OPS}):");
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
