//! Shared test helpers: a seeded xorshift generator and an element type
//! that counts its drops.
#![allow(dead_code)] // each test file uses a part

use rcu_list::{ListLink, SListLink, intrusive_adapter};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// xorshift64*: tiny, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An element with a link of each kind that counts its drops.
pub struct Node {
    pub val: u64,
    pub link: ListLink,
    pub slink: SListLink,
    drops: Arc<AtomicUsize>,
}

impl Node {
    pub fn new(val: u64, drops: &Arc<AtomicUsize>) -> Self {
        Node {
            val,
            link: ListLink::new(),
            slink: SListLink::new(),
            drops: Arc::clone(drops),
        }
    }

    pub fn boxed(val: u64, drops: &Arc<AtomicUsize>) -> Box<Self> {
        Box::new(Self::new(val, drops))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        assert!(
            !self.link.is_linked() && !self.slink.is_linked(),
            "an element was dropped while a list still held its link"
        );
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.val)
    }
}

intrusive_adapter!(pub BoxList = Box<Node>: Node { link => ListLink });
intrusive_adapter!(pub BoxSList = Box<Node>: Node { slink => SListLink });
intrusive_adapter!(pub ArcList = Arc<Node>: Node { link => ListLink });
intrusive_adapter!(pub ArcSList = Arc<Node>: Node { slink => SListLink });

/// Scales a size down under Miri.
pub fn size(normal: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { normal }
}

/// The message of a caught panic's payload (a `&str` or a `String`; empty
/// otherwise).
pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
