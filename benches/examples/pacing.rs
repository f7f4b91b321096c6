//! What callback pacing saves a reader: `RcuHashMap`'s ReadHeavy loop (98%
//! get, 1% insert, 1% remove on 128 K `u64` keys, 75% prefilled, foldhash),
//! one thread, against its own get-only loop, for each `callback_pacing`
//! given (microseconds; default `0 1000`), each in a fresh process-wide
//! configuration (a child process per setting). Seven samples of a million
//! operations of each loop, interleaved; prints the fastest of each (ns per
//! operation) and the ReadHeavy loop's grace periods per second.
//!
//! Every retire (the insert's old value, the removed entry) is a callback;
//! each callback grace period sends a membarrier IPI to the reading thread.
//! Without pacing the reclaim thread runs grace periods back to back.
//!
//! ```text
//! cargo run --release -p rcu-bench --example pacing -- 0 100 1000
//! ```

use rcu_bench::scramble as key;
use std::hint::black_box;
use std::time::{Duration, Instant};

type S = foldhash::fast::RandomState;

const KEYS: u64 = 1 << 17;
const OPS: u64 = 1_000_000;
/// Samples of each loop, interleaved; the fastest of each is reported
/// (what a shared, noisy machine can still measure).
const SAMPLES: usize = 7;

type Map = rcu_hashmap::RcuHashMap<u64, u64, S>;

/// One sample: `(ns per op, grace periods, forced ones)`.
fn sample(map: &Map, seed: &mut u64, get_only: bool) -> (f64, u64, u64) {
    let before = rcu_core::stats();
    let t = Instant::now();
    for _ in 0..OPS {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let r = *seed;
        let k = key((r >> 8) % KEYS);
        let p = (r & 0x7f) * 100 / 128;
        if p < 98 || get_only {
            black_box(map.get(&k, &rcu_core::read_lock()).is_some());
        } else if p < 99 {
            drop(map.insert(k, r));
        } else {
            black_box(map.remove(&k).is_some());
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / OPS as f64;
    let after = rcu_core::stats();
    (
        ns,
        after.grace_periods - before.grace_periods,
        after.forced_grace_periods - before.forced_grace_periods,
    )
}

/// Both loops in this process: `(get-only ns/op, ReadHeavy ns/op, grace
/// periods per second of ReadHeavy, share of them forced)`.
fn run() -> (f64, f64, f64, f64) {
    let map = Map::with_hasher(S::default());
    for i in 0..KEYS * 3 / 4 {
        map.insert(key(i), i);
    }
    rcu_core::drain();
    let mut seed = 1u64;
    let (mut get, mut mix) = (f64::MAX, f64::MAX);
    let (mut gps, mut forced, mut mix_ns_total) = (0, 0, 0.0);
    for _ in 0..SAMPLES {
        get = get.min(sample(&map, &mut seed, true).0);
        let (ns, g, f) = sample(&map, &mut seed, false);
        mix = mix.min(ns);
        gps += g;
        forced += f;
        mix_ns_total += ns * OPS as f64;
    }
    (
        get,
        mix,
        gps as f64 / (mix_ns_total / 1e9),
        forced as f64 / gps.max(1) as f64,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(us) = args.iter().find_map(|a| a.strip_prefix("--child=")) {
        let us: u64 = us.parse().expect("pacing in microseconds");
        rcu_core::configure(rcu_core::Config::default().callback_pacing(Duration::from_micros(us)))
            .expect("configure before first use");
        let (get, mix, gps, forced) = run();
        println!(
            "pacing {us:>5} µs: get-only {get:6.1} ns/op, ReadHeavy {mix:6.1} ns/op \
             ({:.2}x get-only), {gps:8.0} grace periods/s ({:.0}% forced)",
            mix / get,
            forced * 100.0
        );
        return;
    }
    let settings = if args.is_empty() {
        vec!["0".to_string(), "1000".to_string()]
    } else {
        args
    };
    let exe = std::env::current_exe().expect("own path");
    for us in settings {
        let status = std::process::Command::new(&exe)
            .arg(format!("--child={us}"))
            .status()
            .expect("run a child");
        assert!(status.success(), "child for {us} µs failed");
    }
}
