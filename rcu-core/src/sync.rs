//! The sync facade: `std` normally, `loom` under `--cfg rcu_loom`.
//!
//! Everything the grace-period protocol shares between threads goes through
//! this module, so a loom build sees every atomic access, lock, condition
//! variable, thread spawn and yield, and can explore their interleavings.

/// Declares a function that is `const` with `std` and plain under loom, whose
/// types have no `const` constructors. The process-wide domain is a `static`
/// built by these; loom models build their own domains at run time.
macro_rules! loom_const_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $t:ty),* $(,)?) -> $ret:ty $body:block) => {
        #[cfg(not(rcu_loom))]
        $(#[$m])* $vis const fn $name($($arg: $t),*) -> $ret $body
        #[cfg(rcu_loom)]
        $(#[$m])* $vis fn $name($($arg: $t),*) -> $ret $body
    };
}

#[cfg(not(rcu_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use std::thread;
    pub(crate) use std::thread_local;

    /// A spin-wait hint.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(rcu_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use loom::thread;
    pub(crate) use loom::thread_local;

    /// Under loom a spin must be a yield, or the model never lets the
    /// thread we wait for run.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves
/// its data consistent before anything that can panic runs (user callbacks and
/// notifiers are always called with no lock of ours held).
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Writes one line to stderr, ignoring errors: `eprintln!` panics when
/// stderr is closed, and the engine's diagnostics must never unwind.
pub(crate) fn report(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Spin a little, then yield: for waits that are normally a few instructions
/// long (a producer between its swap and its link) but may span a preemption.
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
            thread::yield_now();
        }
    }
}
