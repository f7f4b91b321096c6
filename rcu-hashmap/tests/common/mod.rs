//! Shared test helpers: a seeded generator.
#![allow(dead_code)] // each test file uses a part

/// A tiny seeded xorshift, so every run is reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform enough below `n` (> 0) for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
