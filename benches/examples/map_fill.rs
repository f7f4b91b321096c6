//! What `RcuHashMap::reserve` and a bulk load save when a table is
//! loaded: 1 M `u64` keys (or the first argument) into an empty map, by
//! `insert`s that grow it by its own resizes, by `insert`s after a
//! `reserve`, and by one `extend` (sized by the iterator's hint, as
//! `collect` is, and inserting in prefetched batches), with `std`'s
//! `HashMap` for scale.
//! foldhash, fastest of 10 interleaved fills each. The time is the
//! `reserve` and the inserts; the map's drop (and for `RcuHashMap` a
//! `drain` of the domain's callbacks, which free the tables the resizes
//! retired) comes after it.
//!
//! ```text
//! cargo run --release -p rcu-bench --example map_fill [KEYS]
//! ```

use rcu_bench::scramble as key;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum How {
    Grow,
    Reserve,
    Extend,
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 20);
    let state = foldhash::fast::FixedState::with_seed(7);
    // Nanoseconds per key of a fill.
    let ours = |how: How| {
        let t = Instant::now();
        let map = match how {
            How::Extend => {
                let map = rcu_hashmap::RcuHashMap::with_hasher(state.clone());
                (&map).extend((0..n).map(|i| (key(i), i)));
                map
            }
            How::Grow | How::Reserve => {
                let map = rcu_hashmap::RcuHashMap::with_hasher(state.clone());
                if how == How::Reserve {
                    map.reserve(n as usize);
                }
                for i in 0..n {
                    map.insert(key(i), i);
                }
                map
            }
        };
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        assert_eq!(map.len(), n as usize);
        drop(map);
        rcu_core::drain();
        ns
    };
    let std = |reserve: bool| {
        let mut map = HashMap::with_hasher(state.clone());
        let t = Instant::now();
        if reserve {
            map.reserve(n as usize);
        }
        for i in 0..n {
            map.insert(key(i), i);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        assert_eq!(map.len(), n as usize);
        ns
    };
    let mut best = [f64::MAX; 5];
    for _ in 0..10 {
        let times = [
            ours(How::Grow),
            ours(How::Reserve),
            ours(How::Extend),
            std(false),
            std(true),
        ];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
    }
    let [grown, reserved, extended, std_grown, std_reserved] = best;
    println!("{n} keys, foldhash, ns per insert into an empty map (fastest of 10 fills):");
    println!("  RcuHashMap, grown     {grown:7.2} ns");
    println!(
        "  RcuHashMap, reserved  {reserved:7.2} ns   grown/reserved: {:.2}x",
        grown / reserved
    );
    println!(
        "  RcuHashMap, extended {extended:7.2} ns   grown/extended: {:.2}x",
        grown / extended
    );
    println!("  HashMap, grown        {std_grown:7.2} ns");
    println!(
        "  HashMap, reserved     {std_reserved:7.2} ns   grown/reserved: {:.2}x",
        std_grown / std_reserved
    );
}
