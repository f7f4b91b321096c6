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
//! A thread that exits before it acknowledges (or is a zombie) runs no
//! more user code; a thread created during the barrier starts after its
//! creator was listed, through the scheduler's full barriers, as with
//! `membarrier`. The listing is repeated until it shows no thread not yet
//! signalled: `/proc` can skip a thread when the one before it exits during
//! the read. A thread whose signal is neither acknowledged nor pending
//! after 10 ms (a reused tid) is signalled again.
//!
//! # What it costs and asks of the program
//! A signal to every thread per grace period (tens of microseconds per
//! thread), and one real-time signal, [`signal`] (`SIGRTMAX - 3`), taken
//! for the process: it must not be in use, and no thread may keep it
//! blocked for long (a thread that does would hold the barrier up forever:
//! after half a second the barrier stops the process with a message, as it
//! does if another handler replaces its own). Unlike `membarrier`, it wakes
//! every sleeping thread on each barrier, and waits until each has run;
//! an interrupted system call restarts (`SA_RESTART`) where the kernel
//! allows, and the calls signal(7) lists (`epoll_wait`, `poll`, `nanosleep`,
//! ...) fail with `EINTR`. It needs `/proc/self/task` to list the threads.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
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

/// The threads of the process, by tid. Stops the process if they cannot
/// be listed.
fn list_threads() -> Vec<i32> {
    let fail = |e: std::io::Error| -> ! {
        super::revoked_fallback_fatal(format_args!(
            "the signal-based fallback barrier cannot list the process's threads in \
             /proc/self/task ({e})"
        ))
    };
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap_or_else(|e| fail(e)) {
        let entry = entry.unwrap_or_else(|e| fail(e));
        if let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            tids.push(tid);
        }
    }
    tids
}

/// What `/proc` says of a thread we wait for.
enum Seen {
    /// Gone, or a zombie (it runs no more user code).
    Gone,
    /// Alive: whether it blocks the signal, and whether one is pending.
    Alive { blocked: bool, pending: bool },
}

fn look(tid: i32) -> Seen {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return Seen::Gone;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    if field("State:").is_some_and(|st| st.starts_with('Z') || st.starts_with('X')) {
        return Seen::Gone;
    }
    let bit = 1u64 << (signal() - 1);
    let has = |name: &str| {
        field(name)
            .and_then(|mask| u64::from_str_radix(mask, 16).ok())
            .is_some_and(|mask| mask & bit != 0)
    };
    Seen::Alive {
        blocked: has("SigBlk:"),
        pending: has("SigPnd:"),
    }
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
    match e.raw_os_error() {
        Some(libc::ESRCH) => false,
        // The queue of pending real-time signals is full: one of ours is
        // among them or will be sent again.
        Some(libc::EAGAIN) => true,
        _ => super::revoked_fallback_fatal(format_args!(
            "the signal-based fallback barrier cannot signal thread {tid} ({e})"
        )),
    }
}

/// Checks that the handler is still ours (the program may have installed
/// another, or ignored the signal, since).
fn check_disposition() {
    // SAFETY: reads the disposition into a zeroed `sigaction`.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::sigaction(signal(), std::ptr::null(), &raw mut now) };
    if r != 0 || now.sa_sigaction != handler as extern "C" fn(libc::c_int) as usize {
        super::revoked_fallback_fatal(format_args!(
            "signal {} (SIGRTMAX-3), which the signal-based fallback barrier uses, was given \
             another handler",
            signal()
        ));
    }
}

/// How long the barrier yields, rather than sleeps, while it waits for
/// acknowledgements.
const SPIN: Duration = Duration::from_micros(200);

/// How long a thread may keep the signal blocked before the process stops.
const BLOCKED_LIMIT: Duration = Duration::from_millis(500);

/// The barrier: every other thread of the process runs a full fence before
/// this returns. The caller holds the fallback's lock (one at a time).
pub(super) fn barrier() {
    install();
    fence(Ordering::SeqCst);
    // Not cached: a child of `fork()` has another pid.
    // SAFETY: `getpid` and `gettid` cannot fail.
    let pid = unsafe { libc::getpid() };
    // SAFETY: as above.
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    // Relaxed: a new generation; the Release store below publishes it.
    let generation = ((GENERATION.load(Ordering::Relaxed) + 1) & 0x7fff_ffff).max(1);
    // Relaxed: the old slots carry the old generation, which no handler of
    // this barrier matches; this only spares a late handler the scan.
    USED.store(0, Ordering::Relaxed);
    // Release: pairs with the handlers' Acquire load (module docs). Stored
    // before any slot of this barrier exists, so a handler that reads it
    // finds either its slot (below) or nothing yet, and then is signalled
    // again.
    GENERATION.store(generation, Ordering::Release);
    // Threads signalled so far: (slot, tid).
    let mut sent: Vec<(usize, i32)> = Vec::new();
    // List until a listing shows no thread not yet signalled: a thread that
    // exits during a listing can make `/proc` skip the one after it.
    loop {
        let new: Vec<i32> = list_threads()
            .into_iter()
            .filter(|&t| t != me && !sent.iter().any(|&(_, s)| s == t))
            .collect();
        if new.is_empty() {
            break;
        }
        for tid in new {
            let i = sent.len();
            if i == MAX_THREADS {
                super::revoked_fallback_fatal(format_args!(
                    "the process has more threads than the signal-based fallback barrier's \
                     {MAX_THREADS}"
                ));
            }
            // Relaxed: published by the Release store of `USED` below,
            // which the handler Acquire-loads before it reads the slots.
            SLOTS[i].store(slot(generation, tid), Ordering::Relaxed);
            // Release: publishes the slot; a handler reads `USED` (Acquire)
            // after the generation.
            USED.store(i + 1, Ordering::Release);
            fence(Ordering::SeqCst);
            sent.push((i, tid));
            if !send(pid, tid) {
                sent.last_mut().expect("just pushed").1 = -1; // gone
            }
        }
    }
    let mut waiting: Vec<(usize, i32)> = sent.into_iter().filter(|&(_, t)| t >= 0).collect();
    let start = Instant::now();
    let mut next_check = start + Duration::from_millis(1);
    // Per waited-for tid: since when it has been seen blocking the signal.
    let mut blocked_since: Vec<(i32, Instant)> = Vec::new();
    loop {
        // Acquire: pairs with the handler's Release acknowledgement.
        waiting.retain(|&(i, _)| SLOTS[i].load(Ordering::Acquire) & ACKED == 0);
        if waiting.is_empty() {
            break;
        }
        let now = Instant::now();
        if now < next_check {
            // Most acknowledgements come within tens of microseconds:
            // yield the CPU to them first; sleep only after that (a sleep
            // lasts at least the kernel's timer slack, 50 µs by default).
            if now.duration_since(start) < SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
            continue;
        }
        // Slow: a thread not yet scheduled, gone or a zombie, reusing the
        // tid of one that exited (then it never got the signal), or
        // blocking the signal.
        next_check = now + Duration::from_millis(10);
        check_disposition();
        waiting.retain(|&(_, tid)| match look(tid) {
            Seen::Gone => false,
            Seen::Alive { blocked, pending } => {
                if blocked {
                    let since = match blocked_since.iter().find(|&&(t, _)| t == tid) {
                        Some(&(_, since)) => since,
                        None => {
                            blocked_since.push((tid, now));
                            now
                        }
                    };
                    if now.duration_since(since) >= BLOCKED_LIMIT {
                        super::revoked_fallback_fatal(format_args!(
                            "thread {tid} has kept signal {} (SIGRTMAX-3) blocked for {:?}; the \
                             signal-based fallback barrier sends it to every thread and waits \
                             for each",
                            signal(),
                            BLOCKED_LIMIT
                        ));
                    }
                } else {
                    blocked_since.retain(|&(t, _)| t != tid);
                }
                // Not pending and not acknowledged: a reused tid, or a
                // signal lost with a thread that exited: send again.
                pending || blocked || send(pid, tid)
            }
        });
    }
    fence(Ordering::SeqCst);
}
