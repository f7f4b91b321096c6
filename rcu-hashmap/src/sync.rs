//! The sync facade: `std` normally, `loom` under `--cfg rcu_loom`.
//!
//! Everything the raw core shares between threads (bucket heads, their
//! filter bytes, chain links, the table pointer, the resize counters) goes through this module,
//! so a loom build sees every access and can explore their interleavings.

#[cfg(not(rcu_loom))]
pub(crate) use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

#[cfg(rcu_loom)]
pub(crate) use loom::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// Waits a little longer each call: spins, then yields (a bucket lock is
/// held for a few instructions, but its holder may be preempted).
pub(crate) struct Backoff(u32);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(0)
    }

    pub(crate) fn snooze(&mut self) {
        #[cfg(rcu_loom)]
        {
            let _ = self.0;
            loom::thread::yield_now();
        }
        #[cfg(not(rcu_loom))]
        {
            if self.0 < 6 {
                for _ in 0..1u32 << self.0 {
                    std::hint::spin_loop();
                }
                self.0 += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}
