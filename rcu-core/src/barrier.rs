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
//! * **fence mode** (anything else: non-Linux, seccomp filters at start,
//!   gVisor, Miri, loom, or `RCU_NO_MEMBARRIER`): both barriers are
//!   `fence(SeqCst)`.
//!
//! The mode is chosen once per process, the first time a domain starts, and
//! every domain reports it in [`Stats::membarrier`](crate::Stats::membarrier).
//!
//! # When membarrier is revoked after start
//!
//! A sandbox may make `membarrier` fail (seccomp, EPERM) after the process
//! registered and its readers took the compiler-fence fast path. Those
//! readers cannot be switched back safely (one may be inside a critical
//! section entered with only a compiler fence), so the heavy barrier must
//! stay one that reaches every running thread of the process:
//!
//! * **x86-64**: make a private page writable, dirty it, make it read-only.
//!   The kernel must then invalidate the page's TLB entries on every CPU that
//!   may cache them, which on x86 is an inter-processor interrupt to every
//!   CPU in the process's CPU mask; the interrupt is serialising, and the
//!   `mprotect` call waits for every CPU to acknowledge it (folly's
//!   `asymmetricHeavyBarrier`, .NET's `FlushProcessWriteBuffers`). CPUs not in
//!   the mask run no thread of ours, and a thread scheduled there later goes
//!   through the full barrier of a context switch. CPUs that invalidate TLBs
//!   by broadcast (AMD's `INVLPGB`) may do it without interrupts, so on them
//!   the trick proves nothing and the signal barrier below replaces it.
//! * **elsewhere** (arm64 broadcasts TLB invalidation in hardware, so the
//!   same trick interrupts no one; and x86 CPUs with INVLPGB): a signal to
//!   every other thread of the process, whose handler fences and
//!   acknowledges (liburcu's signal flavour; `barrier/signals.rs` argues
//!   it). It takes one real-time signal (`SIGRTMAX - 3`) for the process
//!   and needs every thread to leave it unblocked and `/proc/self/task`
//!   readable; where it cannot have them, the process stops with a message
//!   naming the cause, rather than end grace periods that readers may still
//!   be inside.
//!
//! The switch is made once for the process; each domain reports it once
//! ([`RcuEvent::MembarrierRevoked`](crate::RcuEvent::MembarrierRevoked)), and
//! [`Stats::membarrier_revoked`](crate::Stats::membarrier_revoked) shows it.

use crate::sync::{Ordering, fence};

#[cfg(all(
    target_os = "linux",
    target_has_atomic = "64",
    not(miri),
    not(rcu_loom)
))]
mod signals;
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

    #[inline]
    pub(crate) const fn from_u8(v: u8) -> Self {
        if v == Mode::Membarrier.as_u8() {
            Mode::Membarrier
        } else {
            Mode::Fence
        }
    }
}

/// Why the process cannot use membarrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unavailable {
    /// In words.
    pub(crate) reason: &'static str,
    /// Turned off on purpose (`RCU_NO_MEMBARRIER`), not missing.
    pub(crate) requested: bool,
}

/// Reads a boolean switch the usual ways: `1/true/yes/on` and
/// `0/false/no/off` (and empty), any case, surrounding blanks ignored.
// Loom models have no environment to read.
#[cfg_attr(rcu_loom, allow(dead_code))]
pub(crate) fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// `RCU_NO_MEMBARRIER`: whether it turns membarrier off. A value that is
/// not a switch is reported on stderr and taken as "off" (fence mode is
/// correct everywhere, only slower; whoever set the variable most likely
/// meant to turn membarrier off).
#[cfg(not(rcu_loom))]
fn env_turns_membarrier_off() -> bool {
    match std::env::var_os("RCU_NO_MEMBARRIER") {
        None => false,
        Some(v) => match v.to_str().and_then(parse_switch) {
            Some(off) => off,
            None => {
                crate::sync::report(format_args!(
                    "rcu: RCU_NO_MEMBARRIER={v:?} is not understood (use 1/true/yes/on or \
                     0/false/no/off); membarrier is turned off"
                ));
                true
            }
        },
    }
}

/// The process-wide answer to "may readers use a compiler fence?".
///
/// Registration with the kernel is process-wide and permanent, so it is done
/// at most once, here.
pub(crate) fn process_mode() -> Result<(), Unavailable> {
    #[cfg(not(rcu_loom))]
    {
        static MODE: OnceLock<Result<(), Unavailable>> = OnceLock::new();
        *MODE.get_or_init(|| {
            if env_turns_membarrier_off() {
                return Err(Unavailable {
                    reason: "RCU_NO_MEMBARRIER is set",
                    requested: true,
                });
            }
            register_membarrier().map_err(|reason| Unavailable {
                reason,
                requested: false,
            })
        })
    }
    #[cfg(rcu_loom)]
    {
        Err(Unavailable {
            reason: "loom models",
            requested: true,
        })
    }
}

#[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
fn register_membarrier() -> Result<(), &'static str> {
    use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
    let supported = membarrier_query();
    if !supported.contains_command(MembarrierCommand::PrivateExpedited)
        || !supported.contains_command(MembarrierCommand::RegisterPrivateExpedited)
    {
        return Err(
            "membarrier's query does not list PRIVATE_EXPEDITED (an old kernel, or a seccomp \
             filter or sandbox refuses membarrier)",
        );
    }
    if membarrier(MembarrierCommand::RegisterPrivateExpedited).is_err() {
        return Err("membarrier registration was refused (a seccomp filter or sandbox?)");
    }
    // A registered process can still be refused by a seccomp filter on the
    // command itself: try it once before trusting it.
    if membarrier(MembarrierCommand::PrivateExpedited).is_err() {
        return Err("membarrier(PRIVATE_EXPEDITED) was refused (a seccomp filter or sandbox?)");
    }
    // The revocation fallback's page, made now: a sandbox that later
    // forbids membarrier may forbid new mappings too.
    revoked_fallback::prepare();
    Ok(())
}

#[cfg(all(not(rcu_loom), miri))]
fn register_membarrier() -> Result<(), &'static str> {
    Err("Miri does not model membarrier")
}

#[cfg(all(not(rcu_loom), not(miri), not(target_os = "linux")))]
fn register_membarrier() -> Result<(), &'static str> {
    Err("membarrier(2) is Linux-only")
}

/// The grace-period side's barrier. Never fails and never panics: if
/// membarrier stops working, it switches to the revocation fallback (module
/// docs), or stops the process where there is none.
pub(crate) fn heavy(mode: Mode, count: &AtomicCounter) {
    count.bump();
    fence(Ordering::SeqCst);
    #[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
    if mode == Mode::Membarrier {
        revoked_fallback::heavy();
        fence(Ordering::SeqCst);
    }
    #[cfg(not(all(target_os = "linux", not(miri), not(rcu_loom))))]
    let _ = mode;
}

/// The revocation fallback's lock, for the fork handlers: held across a
/// `fork()` so the child does not inherit it held by a thread it does not
/// have. `None` where the fallback has no lock.
#[cfg(all(unix, not(rcu_loom), not(miri)))]
pub(crate) fn lock_for_fork() -> Option<std::sync::MutexGuard<'static, ()>> {
    #[cfg(target_os = "linux")]
    {
        Some(
            revoked_fallback::ONE_AT_A_TIME
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// membarrier's revocation, as the hook reports it.
pub(crate) struct Revoked {
    pub(crate) error: String,
    pub(crate) fallback: &'static str,
}

/// Whether membarrier failed after registration (then heavy barriers use
/// the fallback), and how.
pub(crate) fn revoked() -> Option<Revoked> {
    #[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
    {
        revoked_fallback::revoked()
    }
    #[cfg(not(all(target_os = "linux", not(miri), not(rcu_loom))))]
    {
        None
    }
}

/// membarrier, and what replaces it once it fails.
#[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
mod revoked_fallback {
    use super::Revoked;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Mutex, OnceLock, PoisonError};

    /// The errno membarrier failed with after registration; 0 while it
    /// works. Once set, never cleared: the process stays on the fallback.
    static REVOKED: AtomicI32 = AtomicI32::new(0);

    pub(super) fn revoked() -> Option<Revoked> {
        // Relaxed: a report; the fallback's own ordering is its barrier.
        match REVOKED.load(Ordering::Relaxed) {
            0 => None,
            errno => Some(Revoked {
                error: std::io::Error::from_raw_os_error(errno).to_string(),
                fallback: fallback_name(),
            }),
        }
    }

    /// membarrier, or the fallback once it has failed.
    pub(super) fn heavy() {
        use rustix::thread::{MembarrierCommand, membarrier};
        // Relaxed: a stale 0 only tries membarrier once more.
        if REVOKED.load(Ordering::Relaxed) == 0 {
            match membarrier(MembarrierCommand::PrivateExpedited) {
                Ok(()) => return,
                Err(e) => {
                    // Relaxed: the first failure's errno is kept.
                    let _ = REVOKED.compare_exchange(
                        0,
                        e.raw_os_error().max(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        // Two callers at once could each find the mprotect page already
        // read-only and skip the shootdown, or share the signal barrier's
        // table: one at a time.
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        if ipi_usable() {
            ipi::barrier();
        } else {
            #[cfg(target_has_atomic = "64")]
            super::signals::barrier();
            #[cfg(not(target_has_atomic = "64"))]
            super::revoked_fallback_fatal(format_args!(
                "this target has no process-wide barrier to replace it (no 64-bit atomics \
                 for the signal barrier's table)"
            ));
        }
    }

    /// Serialises the fallbacks; also taken by the fork handlers (a leaf:
    /// nothing is locked under it).
    pub(super) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    pub(super) fn prepare() {
        ipi::prepare();
    }

    /// Whether the `mprotect` IPI is a barrier here: x86-64 without
    /// broadcast TLB invalidation (and not a build that tests the signal
    /// barrier with `--cfg rcu_signal_barrier`).
    fn ipi_usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| cfg!(not(rcu_signal_barrier)) && ipi::usable())
    }

    fn fallback_name() -> &'static str {
        if ipi_usable() {
            "an mprotect TLB-shootdown IPI (folly's asymmetric heavy barrier)"
        } else {
            "a signal to every thread, whose handler fences (liburcu's signal flavour)"
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod ipi {
        use std::sync::OnceLock;

        /// x86-64's base page size. (A constant rather than `getpagesize`
        /// through rustix's auxv reader, which faults under valgrind; the
        /// kernel rounds the mapping up to a whole page anyway.)
        const PAGE_SIZE: usize = 4096;

        /// The private page whose protection changes send the IPIs, as an
        /// address (or why it could not be mapped).
        static PAGE: OnceLock<Result<usize, rustix::io::Errno>> = OnceLock::new();

        fn page() -> Result<usize, rustix::io::Errno> {
            *PAGE.get_or_init(|| {
                use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
                // SAFETY: a fresh anonymous private mapping at an address
                // the kernel picks: it aliases nothing of ours. It is never
                // unmapped, and only `barrier` touches it.
                unsafe {
                    mmap_anonymous(
                        std::ptr::null_mut(),
                        PAGE_SIZE,
                        ProtFlags::READ | ProtFlags::WRITE,
                        MapFlags::PRIVATE,
                    )
                }
                .map(|p| p.addr())
            })
        }

        pub(super) fn prepare() {
            let _ = page();
        }

        /// Whether the CPU can invalidate TLBs by broadcast (AMD INVLPGB:
        /// CPUID 0x8000_0008, EBX bit 3), which needs no IPI.
        fn broadcast_tlb_invalidation() -> bool {
            use std::arch::x86_64::__cpuid;
            // SAFETY: CPUID exists on every x86-64 CPU and only reads
            // identification registers. (Safe to call in recent Rust;
            // `unsafe` for older compilers.)
            #[allow(unused_unsafe)]
            let (max_extended, ebx) =
                unsafe { (__cpuid(0x8000_0000).eax, __cpuid(0x8000_0008).ebx) };
            max_extended >= 0x8000_0008 && ebx & (1 << 3) != 0
        }

        /// Every CPU that runs a thread of this process executes a
        /// serialising interrupt before this returns (module docs).
        /// Whether [`barrier`] is one on this CPU: not if it can invalidate
        /// TLBs by broadcast (INVLPGB), which sends no IPI.
        pub(super) fn usable() -> bool {
            !broadcast_tlb_invalidation()
        }

        /// The caller holds `ONE_AT_A_TIME`.
        pub(super) fn barrier() {
            use rustix::mm::{MprotectFlags, mprotect};
            let addr = page().unwrap_or_else(|e| {
                super::super::revoked_fallback_fatal(format_args!(
                    "the fallback's page cannot be mapped ({e})"
                ))
            });
            let len = PAGE_SIZE;
            let ptr = std::ptr::with_exposed_provenance_mut::<u8>(addr);
            // SAFETY: `ptr..ptr + len` is our private page (see `page`),
            // which nothing else uses; changing its protection affects no
            // other memory.
            let writable =
                unsafe { mprotect(ptr.cast(), len, MprotectFlags::READ | MprotectFlags::WRITE) };
            if let Err(e) = writable {
                super::super::revoked_fallback_fatal(format_args!(
                    "mprotect of the fallback's page failed ({e})"
                ));
            }
            // SAFETY: the page is mapped and writable now (above), and only
            // this function, under `ONE_AT_A_TIME` (the caller's), touches it. Dirtying it
            // makes its TLB entry writable, so taking write access away
            // below must shoot it down on every CPU that may hold it.
            unsafe { ptr.write_volatile(0) };
            // SAFETY: as for the first `mprotect`.
            if let Err(e) = unsafe { mprotect(ptr.cast(), len, MprotectFlags::READ) } {
                super::super::revoked_fallback_fatal(format_args!(
                    "mprotect of the fallback's page failed ({e})"
                ));
            }
        }
    }

    /// Elsewhere TLB invalidation is broadcast in hardware (arm64), so
    /// `mprotect` interrupts no one: never usable.
    #[cfg(not(target_arch = "x86_64"))]
    mod ipi {
        pub(super) fn prepare() {}

        pub(super) fn usable() -> bool {
            false
        }

        pub(super) fn barrier() {
            unreachable!("the mprotect barrier is never chosen on this target")
        }
    }
}

/// Stops the process: membarrier was revoked and no sound heavy barrier is
/// left.
#[cfg(all(target_os = "linux", not(miri), not(rcu_loom)))]
#[cold]
fn revoked_fallback_fatal(why: std::fmt::Arguments<'_>) -> ! {
    crate::sync::report(format_args!(
        "rcu: fatal: membarrier failed after start and {why}; readers on the \
         compiler-fence fast path would be left unordered, so the process stops rather \
         than free memory they may still read"
    ));
    std::process::abort();
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
    /// Sets the counter (a recount, by a thread that is the only one: a
    /// `fork()` child's repair).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    pub(crate) fn set(&self, v: u64) {
        // Relaxed: a statistic.
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(all(test, not(rcu_loom)))]
mod tests {
    use super::parse_switch;

    #[test]
    fn rcu_no_membarrier_spellings() {
        for on in ["1", "true", "TRUE", "Yes", "on", " ON "] {
            assert_eq!(parse_switch(on), Some(true), "{on:?}");
        }
        for off in ["0", "false", "False", "no", "OFF", ""] {
            assert_eq!(parse_switch(off), Some(false), "{off:?}");
        }
        for junk in ["2", "y", "disable", "nope"] {
            assert_eq!(parse_switch(junk), None, "{junk:?}");
        }
    }
}
