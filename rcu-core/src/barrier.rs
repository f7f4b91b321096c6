//! Asymmetric memory barriers.
//!
//! The read side pays for a *light* barrier, the grace-period side for a
//! *heavy* one, and together they order as two full fences would:
//!
//! * **membarrier mode** (Linux with `MEMBARRIER_CMD_PRIVATE_EXPEDITED`): the
//!   light barrier is a compiler fence, free at run time. The heavy barrier is
//!   the `membarrier(2)` system call, which makes every running thread of the
//!   process execute a full memory barrier (by IPI) before it returns. A reader
//!   that was between its counter store and its first protected load at that
//!   moment behaves as if it had run `fence(SeqCst)` there.
//! * **fence mode** (anything else: non-Linux, seccomp filters, gVisor, Miri,
//!   loom, or `RCU_NO_MEMBARRIER=1`): both barriers are `fence(SeqCst)`.
//!
//! The mode is chosen once per process, the first time a domain starts, and
//! every domain reports it in [`Stats::membarrier`](crate::Stats::membarrier).

use crate::sync::{Ordering, fence};
#[cfg(not(rcu_loom))]
use std::sync::OnceLock;

/// Which barrier pair a domain uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Light = compiler fence, heavy = `membarrier(PRIVATE_EXPEDITED)`.
    Membarrier,
    /// Light = heavy = `fence(SeqCst)`.
    Fence,
}

impl Mode {
    pub(crate) const fn as_u8(self) -> u8 {
        match self {
            Mode::Membarrier => 1,
            Mode::Fence => 0,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Self {
        if v == Mode::Membarrier.as_u8() {
            Mode::Membarrier
        } else {
            Mode::Fence
        }
    }
}

/// The process-wide answer to "may readers use a compiler fence?".
///
/// Registration with the kernel is process-wide and permanent, so it is done
/// at most once, here.
pub(crate) fn process_mode() -> Mode {
    #[cfg(not(rcu_loom))]
    {
        static MODE: OnceLock<Mode> = OnceLock::new();
        *MODE.get_or_init(|| {
            if std::env::var_os("RCU_NO_MEMBARRIER").is_some_and(|v| v == "1") {
                return Mode::Fence;
            }
            if register_membarrier() {
                Mode::Membarrier
            } else {
                Mode::Fence
            }
        })
    }
    #[cfg(rcu_loom)]
    {
        Mode::Fence
    }
}

#[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
fn register_membarrier() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
    let supported = membarrier_query();
    if !supported.contains_command(MembarrierCommand::PrivateExpedited)
        || !supported.contains_command(MembarrierCommand::RegisterPrivateExpedited)
    {
        return false;
    }
    membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
        // A registered process can still be refused by a seccomp filter on the
        // command itself: try it once before trusting it.
        && membarrier(MembarrierCommand::PrivateExpedited).is_ok()
}

#[cfg(all(not(rcu_loom), not(all(target_os = "linux", not(miri)))))]
fn register_membarrier() -> bool {
    false
}

/// The read side's barrier. `mode` is the domain's [`Mode::as_u8`], cached in
/// the reader record so the hot path reads it from a line it touches anyway.
#[inline(always)]
pub(crate) fn light(mode: u8) {
    if mode == Mode::Membarrier.as_u8() {
        // The heavy barrier (a membarrier IPI) supplies the hardware fence
        // for us; only the compiler must not move accesses across here.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The grace-period side's barrier.
pub(crate) fn heavy(mode: Mode, count: &AtomicCounter) {
    count.bump();
    fence(Ordering::SeqCst);
    #[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
    if mode == Mode::Membarrier {
        use rustix::thread::{MembarrierCommand, membarrier};
        // Registration succeeded and was tried once. Should it fail now (a
        // sandbox revoking it), readers on their compiler-fence fast path
        // would be unordered: stop rather than end a grace period that is
        // not one. Never a panic: this runs inside a grace period.
        if let Err(e) = membarrier(MembarrierCommand::PrivateExpedited) {
            crate::sync::report(format_args!(
                "rcu: fatal: membarrier(PRIVATE_EXPEDITED) failed after a successful \
                 registration ({e}); readers would be left unordered"
            ));
            std::process::abort();
        }
        fence(Ordering::SeqCst);
    }
    #[cfg(not(all(target_os = "linux", not(miri), not(rcu_loom))))]
    let _ = mode;
}

/// A relaxed event counter (statistics only: no ordering is derived from it,
/// so it is a plain `std` atomic even under loom, which need not explore it).
#[derive(Default)]
pub(crate) struct AtomicCounter(std::sync::atomic::AtomicU64);

impl AtomicCounter {
    pub(crate) const fn new() -> Self {
        Self(std::sync::atomic::AtomicU64::new(0))
    }
    #[inline]
    pub(crate) fn bump(&self) {
        self.add(1);
    }
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // Relaxed: a statistic; nothing is ordered by it.
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    /// Raises the counter to `v` if it is lower (a high-water mark). Takes
    /// the line for an RMW only when it grows.
    #[inline]
    pub(crate) fn max(&self, v: u64) {
        if v > self.get() {
            // Relaxed: a statistic.
            self.0.fetch_max(v, std::sync::atomic::Ordering::Relaxed);
        }
    }
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        // Relaxed: a statistic; nothing is ordered by it.
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
