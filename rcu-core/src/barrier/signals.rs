//! A process-wide heavy barrier made of signals, after liburcu's signal
//! flavour: every other thread of the process is sent a signal whose
//! handler executes a full fence, and the barrier returns once each has
//! acknowledged (or exited). Used once membarrier has been revoked where
//! the `mprotect` trick interrupts no one (arm64, whose TLB invalidation is
//! broadcast in hardware; x86 CPUs with INVLPGB).
//!
//! # Why it is a barrier
//! A thread acknowledges from its handler, which runs on that thread, in
//! program order after whatever it had executed when it was interrupted.
//! The handler first reads the barrier's generation (Acquire, pairing with
//! the writer's Release store made after its own `fence(SeqCst)`), then
//! fences, then stores its acknowledgement (Release, read with Acquire by
//! the writer). So the thread's accesses before the interruption are
//! visible to the writer after the barrier, and its accesses after the
//! handler see the writer's accesses before the barrier: the pair orders as
//! two full fences would, which is what `membarrier` guarantees. An
//! acknowledgement counts only if it carries this barrier's generation, so
//! a late handler from an earlier barrier cannot stand in for this one.
//! A thread that exits before it acknowledges runs no more code; a thread
//! created during the barrier starts after the listing of threads, through
//! the scheduler's full barriers, as with `membarrier`.
//!
//! # What it costs and asks of the program
//! A signal to every thread per grace period (tens of microseconds per
//! thread), and one real-time signal, [`signal`] (`SIGRTMAX - 3`), taken
//! for the process: it must not be in use, and no thread may keep it
//! blocked (a thread that does would hold the barrier up forever; the
//! barrier checks, and stops the process with a message instead). An
//! interrupted system call restarts (`SA_RESTART`) where the kernel allows.
//! It needs `/proc/self/task` to list the threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// Threads one barrier can reach (a fixed table: the handler may not
/// allocate, and must never read freed memory).
const MAX_THREADS: usize = 16_384;

/// Per thread of the current barrier: `generation << 32 | tid`, with
/// [`ACKED`] once its handler has run. A `static` table, never freed, so a
/// late handler reads stale entries at worst.
static SLOTS: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(0) }; MAX_THREADS];
/// Slots in use by the current barrier.
static USED: AtomicUsize = AtomicUsize::new(0);
/// The current barrier's generation (never 0 once one has run).
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The top bit of a slot: acknowledged.
const ACKED: u64 = 1 << 63;

fn slot(generation: u64, tid: i32) -> u64 {
    ((generation & 0x7fff_ffff) << 32) | u64::from(tid.cast_unsigned())
}

/// The signal the barrier sends.
pub(super) fn signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// The handler: fence, and acknowledge this barrier's slot. Only
/// async-signal-safe operations: atomics and `gettid`.
extern "C" fn handler(_: libc::c_int) {
    // Acquire: pairs with the Release store of the generation (see the
    // module docs); the slots and `USED` were written before it.
    let generation = GENERATION.load(Ordering::Acquire);
    fence(Ordering::SeqCst);
    // SAFETY: `gettid` has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    let want = slot(generation, tid);
    // Acquire: as above.
    let used = USED.load(Ordering::Acquire).min(MAX_THREADS);
    for s in &SLOTS[..used] {
        // Relaxed: the generation's Acquire load ordered the writes.
        if s.load(Ordering::Relaxed) == want {
            // Release: pairs with the writer's Acquire load; publishes
            // everything this thread did before the interruption.
            let _ = s.compare_exchange(want, want | ACKED, Ordering::Release, Ordering::Relaxed);
            break;
        }
    }
    fence(Ordering::SeqCst);
}

/// Installs the handler once; stops the process if the signal is taken.
fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let sig = signal();
        // SAFETY: a zeroed `sigaction` is a valid "no handler" value to
        // read the current disposition into; `sigaction` with a null new
        // action only reads.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &raw mut old) } != 0
            || old.sa_sigaction != libc::SIG_DFL
        {
            super::revoked_fallback_fatal(format_args!(
                "signal {sig} (SIGRTMAX-3), which the signal-based fallback barrier needs, is \
                 already in use"
            ));
        }
        // SAFETY: as above; the handler only uses async-signal-safe calls.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
        new.sa_flags = libc::SA_RESTART;
        // SAFETY: `new.sa_mask` is ours to fill; `sigaction` installs a
        // handler that is sound to run on any thread at any time.
        let r = unsafe {
            libc::sigemptyset(&raw mut new.sa_mask);
            libc::sigaction(sig, &raw const new, std::ptr::null_mut())
        };
        if r != 0 {
            super::revoked_fallback_fatal(format_args!(
                "the signal-based fallback barrier cannot install its handler ({})",
                std::io::Error::last_os_error()
            ));
        }
    });
}

/// The threads of the process, by tid.
fn threads() -> Vec<i32> {
    let dir = std::fs::read_dir("/proc/self/task").unwrap_or_else(|e| {
        super::revoked_fallback_fatal(format_args!(
            "the signal-based fallback barrier cannot list the process's threads in \
             /proc/self/task ({e})"
        ))
    });
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether thread `tid` blocks the barrier's signal (from its `SigBlk`).
fn blocks_signal(tid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return false; // gone
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal() - 1)) != 0)
}

/// Sends the signal to `tid`; `false` if the thread is gone. Stops the
/// process if the signal cannot be sent (a sandbox refusing `tgkill`).
fn send(pid: libc::pid_t, tid: i32) -> bool {
    // SAFETY: `tgkill` with our own pid only signals a thread of this
    // process (or fails); the handler is installed.
    if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) } == 0 {
        return true;
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    super::revoked_fallback_fatal(format_args!(
        "the signal-based fallback barrier cannot signal thread {tid} ({e})"
    ))
}

/// The barrier: every other thread of the process runs a full fence before
/// this returns. The caller holds the fallback's lock (one at a time).
pub(super) fn barrier() {
    static PID: OnceLock<libc::pid_t> = OnceLock::new();
    install();
    fence(Ordering::SeqCst);
    // SAFETY: `getpid` and `gettid` cannot fail.
    let pid = *PID.get_or_init(|| unsafe { libc::getpid() });
    // SAFETY: as above.
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    let tids: Vec<i32> = threads().into_iter().filter(|&t| t != me).collect();
    if tids.len() > MAX_THREADS {
        super::revoked_fallback_fatal(format_args!(
            "the process has {} threads, more than the signal-based fallback barrier's {MAX_THREADS}",
            tids.len()
        ));
    }
    // Relaxed (all three): a new generation; the Release store below
    // publishes the slots and `USED` with it.
    let generation = (GENERATION.load(Ordering::Relaxed) + 1) & 0x7fff_ffff;
    let generation = generation.max(1);
    for (s, &tid) in SLOTS.iter().zip(&tids) {
        s.store(slot(generation, tid), Ordering::Relaxed);
    }
    USED.store(tids.len(), Ordering::Relaxed);
    // Release: pairs with the handlers' Acquire load (module docs).
    GENERATION.store(generation, Ordering::Release);
    fence(Ordering::SeqCst);
    let mut waiting: Vec<(usize, i32)> = Vec::with_capacity(tids.len());
    for (i, &tid) in tids.iter().enumerate() {
        if send(pid, tid) {
            waiting.push((i, tid));
        }
    }
    let start = Instant::now();
    let mut next_check = Duration::from_millis(10);
    // Consecutive checks that found a waited-for thread blocking the
    // signal (a thread inside the handler has it blocked for a moment, so
    // only a block that lasts counts).
    let mut blocked_checks = 0;
    while !waiting.is_empty() {
        // Acquire: pairs with the handler's Release acknowledgement.
        waiting.retain(|&(i, _)| SLOTS[i].load(Ordering::Acquire) & ACKED == 0);
        if waiting.is_empty() {
            break;
        }
        if start.elapsed() < next_check {
            std::thread::yield_now();
            continue;
        }
        // Slow: a thread not yet scheduled, gone, reusing a tid that
        // exited (then it never got the signal), or blocking the signal.
        next_check += Duration::from_millis(10);
        waiting.retain(|&(_, tid)| send(pid, tid));
        let blocking = waiting.iter().find(|&&(_, tid)| blocks_signal(tid));
        blocked_checks = if blocking.is_some() {
            blocked_checks + 1
        } else {
            0
        };
        if let Some(&(_, tid)) = blocking
            && blocked_checks >= 50
        {
            super::revoked_fallback_fatal(format_args!(
                "thread {tid} has blocked signal {} (SIGRTMAX-3) for half a second; the \
                 signal-based fallback barrier sends it to every thread and waits for each",
                signal()
            ));
        }
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    fence(Ordering::SeqCst);
}
