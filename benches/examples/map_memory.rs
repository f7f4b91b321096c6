//! Bytes per entry of 1 M `u64 -> u64` entries, inserted one by one (so each
//! map sized itself), counted by a global allocator: `rcu-hashmap` against
//! papaya, dashmap and `std::collections::HashMap` (foldhash everywhere).
//! Counts requested bytes (not the allocator's rounding).
//!
//! ```text
//! cargo run --release -p rcu-bench --example map_memory
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to `System`, counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: u64 = 1 << 20;

fn measure<M>(name: &str, make: impl FnOnce() -> M, insert: impl Fn(&M, u64)) {
    rcu_core::drain();
    let before = LIVE.load(Ordering::Relaxed);
    let m = make();
    for i in 0..N {
        insert(&m, i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    rcu_core::drain(); // old tables retired during growth
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "{name:28} {:6.1} bytes per entry",
        (after - before) as f64 / N as f64
    );
    drop(m);
}

type H = foldhash::fast::RandomState;

fn main() {
    measure(
        "rcu-hashmap",
        || rcu_hashmap::RcuHashMap::<u64, u64, H>::with_hasher(H::default()),
        |m, k| drop(m.insert(k, k)),
    );
    measure(
        "papaya",
        || papaya::HashMap::<u64, u64, H>::with_hasher(H::default()),
        |m, k| {
            m.pin().insert(k, k);
        },
    );
    measure(
        "dashmap",
        || dashmap::DashMap::<u64, u64, H>::with_hasher(H::default()),
        |m, k| {
            m.insert(k, k);
        },
    );
    measure(
        "std HashMap (in a RefCell)",
        || {
            std::cell::RefCell::new(std::collections::HashMap::<u64, u64, H>::with_hasher(
                H::default(),
            ))
        },
        |m, k| {
            m.borrow_mut().insert(k, k);
        },
    );
}
