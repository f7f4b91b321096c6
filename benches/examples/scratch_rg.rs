use std::hint::black_box;
type S = std::collections::hash_map::RandomState;
fn key(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
fn main() {
    let which = std::env::args().nth(1).unwrap_or("ours".into());
    let t = std::time::Instant::now();
    let mut ops = 0u64;
    for round in 0..60u64 {
        let mut rng = 0x9e37_79b9u64 ^ (round << 20) ^ 1;
        let mut inserted = 0u64;
        if which == "ours" {
            let map = rcu_hashmap::RcuHashMap::<u64, u64, S>::with_hasher(S::default());
            for _ in 0..(1u64 << 17) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let r = rng;
                let p = (r & 0x7f) * 100 / 128;
                let old = key((r >> 8) % inserted.max(1));
                if p < 5 {
                    black_box(map.get(&old, &rcu_core::read_lock()).is_some());
                } else if p < 85 {
                    drop(map.insert(key(inserted), r));
                    inserted += 1;
                } else if p < 90 {
                    black_box(map.remove(&old).is_some());
                } else {
                    black_box(map.update(&old, |v| v + 1).is_some());
                }
            }
        } else {
            let map = papaya::HashMap::<u64, u64, S>::with_hasher(S::default());
            for _ in 0..(1u64 << 17) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let r = rng;
                let p = (r & 0x7f) * 100 / 128;
                let old = key((r >> 8) % inserted.max(1));
                let m = map.pin();
                if p < 5 {
                    black_box(m.get(&old).is_some());
                } else if p < 85 {
                    m.insert(key(inserted), r);
                    inserted += 1;
                } else if p < 90 {
                    black_box(m.remove(&old).is_some());
                } else {
                    black_box(m.update(old, |v| v + 1).is_some());
                }
            }
        }
        ops += 1 << 17;
    }
    println!(
        "{which}: {:.1} ns/op",
        t.elapsed().as_nanos() as f64 / ops as f64
    );
}
