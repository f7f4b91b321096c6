//! Shared test helpers: a seeded generator, a value that counts its drops,
//! keys at the edges of the key space.
#![allow(dead_code)] // each test file uses a part

/// xorshift64*: tiny, seeded, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough below `n` (> 0) for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A value that carries a number (its key, or an id) and counts its drops.
pub struct Counted {
    pub key: u64,
    pub drops: Arc<AtomicUsize>,
}

impl Counted {
    pub fn new(key: u64, drops: &Arc<AtomicUsize>) -> Counted {
        Counted {
            key,
            drops: drops.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keys at the edges: 0, `u64::MAX`, either side of the six-bit digits'
/// boundaries (63/64, 4095/4096, 2^60), of 2^32 and of 2^63, and keys that
/// differ from their neighbours only in the top or lowest bits. Sorted.
pub const EDGE_KEYS: [u64; 28] = [
    0,
    1,
    2,
    62,
    63,
    64,
    65,
    127,
    128,
    4095,
    4096,
    4097,
    (1 << 32) - 1,
    1 << 32,
    (1 << 32) + 1,
    (1 << 60) - 1,
    1 << 60,
    (1 << 60) + 1,
    1 << 62,
    (1 << 63) - 1,
    1 << 63,
    (1 << 63) + 1,
    (1 << 63) | (1 << 62),
    u64::MAX - 64,
    u64::MAX - 63,
    u64::MAX - 2,
    u64::MAX - 1,
    u64::MAX,
];

/// The message of a caught panic's payload (a `&str` or a `String`; empty
/// otherwise).
pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
