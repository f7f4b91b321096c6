//! The sync facade: `std` normally, `loom` under `--cfg rcu_loom`.
//!
//! Every atomic and lock the lists share between threads goes through here,
//! so a loom model sees each link load and store and can explore their
//! interleavings (the same switch rcu-core uses; the cfg is crate-prefixed so
//! a user's `--cfg loom` does not change this crate).

#[cfg(not(rcu_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Mutex, MutexGuard};

    /// A hint for a short busy wait.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }

    /// Gives the CPU away during a longer wait.
    #[inline]
    pub(crate) fn yield_now() {
        std::thread::yield_now();
    }
}

#[cfg(rcu_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Mutex, MutexGuard};

    /// Under loom a spin must be a yield, or the model never lets the thread
    /// we wait for run.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }

    /// A yield loom can see.
    #[inline]
    pub(crate) fn yield_now() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;

/// Locks `m`, ignoring poisoning: no code of ours panics with a list
/// half-changed, and the only user code that runs under a list's lock,
/// `retain`'s predicate, runs between whole steps (elements are dropped
/// only after the lock is released).
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Spin a little, then yield: for the singly linked list's bit lock, which
/// is normally held for a few instructions but may span a preemption.
pub(crate) struct Backoff(u32);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(0)
    }

    /// Waits a little longer each time.
    pub(crate) fn snooze(&mut self) {
        if self.0 < 6 {
            for _ in 0..1u32 << self.0 {
                spin_loop();
            }
            self.0 += 1;
        } else {
            yield_now();
        }
    }
}
