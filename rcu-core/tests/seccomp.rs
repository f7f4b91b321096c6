//! A sandbox that refuses `membarrier(2)`: a real seccomp filter (all
//! threads, `SECCOMP_FILTER_FLAG_TSYNC`), installed after start or before.
//!
//! Each scenario runs in a child process of this test binary (a filter
//! cannot be removed, and the barrier mode is chosen once per process):
//! the test re-runs itself with `RCU_SECCOMP_CHILD` set, and the child
//! runs the scenario and prints a marker.
// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(all(target_os = "linux", not(rcu_loom)))]

mod common;

use common::{eventually, finishes, scaled};
use rcu_core::{Config, ConfigError, RcuCell, RcuDomain, RcuEvent};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const CHILD: &str = "RCU_SECCOMP_CHILD";
const DONE: &str = "rcu-seccomp-scenario-done";
/// Printed by a child that found membarrier unavailable from the start.
const FENCE_MODE: &str = "rcu-seccomp-fence-mode";

/// Runs `scenario` in a child process (this binary, this test only) and
/// returns its output; in the child, runs it and exits.
fn in_child(test: &str, scenario: fn()) -> std::process::Output {
    if std::env::var_os(CHILD).is_some() {
        scenario();
        println!("{DONE}");
        std::process::exit(0);
    }
    let out = run_child(test);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(DONE),
        "child failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    out
}

/// Re-runs this binary as a child that runs only `test` (with [`CHILD`] set,
/// so the test takes its child branch); returns what it printed and how it
/// ended, for the caller to judge.
fn run_child(test: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap()
}

/// Makes `membarrier` fail with EPERM in every thread of the process, from
/// now on.
fn refuse_membarrier() {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // seccomp_data: { int nr; __u32 arch; ... }: the syscall number is at 0.
    let mut program = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jeq(libc::SYS_membarrier as u32, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: plain prctl/seccomp system calls; `prog` points to a valid
    // program that outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const sock_fprog,
        );
        assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a membarrier query-free command; it only fails now.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, 1 << 3, 0, 0) };
    assert_eq!(r, -1, "the filter did not take");
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
}

/// Whether this x86-64 CPU invalidates TLBs by broadcast (AMD INVLPGB), so
/// the engine uses the signal barrier instead of the mprotect IPI.
fn invlpgb() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID only reads identification registers. (Safe to call
        // in recent Rust; `unsafe` for older compilers.)
        #[allow(unused_unsafe)]
        let (max, ebx) = unsafe { (__cpuid(0x8000_0000).eax, __cpuid(0x8000_0008).ebx) };
        max >= 0x8000_0008 && ebx & (1 << 3) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The signal barrier (arm64, INVLPGB, or a `--cfg rcu_signal_barrier`
/// build) stops the process, with a message that names the thread, when a
/// thread keeps its signal blocked: it would otherwise wait for that thread
/// forever. Shows the signals are really sent and waited for.
#[test]
#[cfg_attr(miri, ignore = "seccomp and child processes")]
fn a_thread_blocking_the_barrier_signal_stops_the_process_loudly() {
    blocked_signal_scenario(
        "a_thread_blocking_the_barrier_signal_stops_the_process_loudly",
        false,
    );
}

/// The same in the child of a `fork()` made after the revocation: the
/// barrier signals the child's own threads (it once kept the parent's pid,
/// so every signal failed and the barrier returned having fenced no one).
#[test]
#[cfg_attr(miri, ignore = "seccomp and child processes")]
fn the_signal_barrier_reaches_the_threads_of_a_forked_child() {
    blocked_signal_scenario(
        "the_signal_barrier_reaches_the_threads_of_a_forked_child",
        true,
    );
}

/// Spawns a thread that keeps the barrier's signal blocked.
fn spawn_signal_blocker() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: a local, valid signal set; blocks one signal on this
        // thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGRTMAX() - 3);
            libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        }
        tx.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    });
    rx.recv().unwrap();
}

fn blocked_signal_scenario(test: &str, fork: bool) {
    let signal_barrier = cfg!(any(rcu_signal_barrier, not(target_arch = "x86_64"))) || invlpgb();
    if std::env::var_os(CHILD).is_some() {
        let domain = RcuDomain::new();
        domain.synchronize();
        if !domain.stats().membarrier {
            println!("{FENCE_MODE}"); // no barrier to revoke
            std::process::exit(0);
        }
        refuse_membarrier();
        domain.synchronize(); // revoked now
        if fork {
            // SAFETY: plain fork; the child only uses the engine (whose
            // fork handlers run) and std, then exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid > 0 {
                let mut status = 0;
                // SAFETY: waits for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
                // The child's outcome is this process's.
                if libc::WIFSIGNALED(status) {
                    std::process::exit(128 + libc::WTERMSIG(status));
                }
                println!("{DONE}");
                std::process::exit(libc::WEXITSTATUS(status));
            }
        }
        spawn_signal_blocker();
        domain.synchronize();
        if fork {
            // SAFETY: ends the forked child without running the parent's
            // exit handlers twice.
            unsafe { libc::_exit(0) };
        }
        println!("{DONE}");
        std::process::exit(0);
    }
    let out = run_child(test);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains(FENCE_MODE) {
        return; // membarrier unavailable from the start: nothing to test
    }
    if !signal_barrier {
        // The mprotect IPI needs no signal: the blocked thread is no
        // obstacle.
        assert!(
            out.status.success() && stdout.contains(DONE),
            "{stdout}\n{stderr}"
        );
        return;
    }
    assert!(
        !out.status.success(),
        "the barrier returned without the blocked thread:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("blocked for"),
        "no message naming the cause:\n{stderr}"
    );
}

/// Collects a domain's events.
fn collect(domain: &RcuDomain) -> Arc<Mutex<Vec<RcuEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    domain.set_event_hook(move |ev| e.lock().unwrap().push(ev.clone()));
    events
}

fn count(events: &Mutex<Vec<RcuEvent>>, f: impl Fn(&RcuEvent) -> bool) -> usize {
    events.lock().unwrap().iter().filter(|e| f(e)).count()
}

/// A value readers check is still alive; its retirement marks it dead
/// (after the grace period) before freeing it.
struct Checked {
    alive: AtomicBool,
}

/// Readers keep reading through the revocation; the writer replaces and
/// retires values. A reader never sees a value its grace period let go.
fn readers_survive(domain: &RcuDomain, rounds: usize) {
    let cell = Arc::new(RcuCell::new_in(
        Arc::new(Checked {
            alive: AtomicBool::new(true),
        }),
        domain,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (domain, cell, stop, reads) = (
                domain.clone(),
                Arc::clone(&cell),
                Arc::clone(&stop),
                Arc::clone(&reads),
            );
            std::thread::spawn(move || {
                let reader = domain.register();
                while !stop.load(Ordering::Relaxed) {
                    let guard = reader.read_lock();
                    let v = cell.read(&guard);
                    assert!(v.alive.load(Ordering::Relaxed), "read a retired value");
                    reads.fetch_add(1, Ordering::Relaxed);
                    drop(guard);
                }
            })
        })
        .collect();
    // Readers are reading before the writer starts (on a loaded machine
    // they may otherwise first run after the last round).
    let started = reads.load(Ordering::Relaxed);
    assert!(eventually(|| reads.load(Ordering::Relaxed) > started + 2));
    for _ in 0..rounds {
        let old = cell.replace(Arc::new(Checked {
            alive: AtomicBool::new(true),
        }));
        domain.synchronize();
        old.alive.store(false, Ordering::Relaxed);
        drop(old);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
}

/// Started with membarrier, then refused: synchronize, call_rcu and drain
/// keep working, readers stay protected, the switch is reported once per
/// domain and shown in the statistics. (Before the fix the first grace
/// period after the filter aborted the process.)
#[test]
#[cfg_attr(miri, ignore = "seccomp and child processes")]
fn membarrier_revoked_after_start() {
    in_child("membarrier_revoked_after_start", || {
        let domain = RcuDomain::new();
        let events = collect(&domain);
        domain.synchronize();
        domain.call_rcu(|| {});
        domain.drain(); // the reclaim thread runs: the filter covers it too
        let fast = domain.stats().membarrier;
        refuse_membarrier();
        readers_survive(&domain, scaled(200, 10));
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        domain.call_rcu(move || r.store(true, Ordering::SeqCst));
        let d = domain.clone();
        assert!(finishes(move || d.drain()), "drain hung");
        assert!(ran.load(Ordering::SeqCst));
        // The process-wide domain too.
        rcu_core::synchronize();
        let s = domain.stats();
        assert_eq!(s.membarrier, fast, "the readers' mode never changes");
        if fast {
            assert!(s.membarrier_revoked, "{s:?}");
            let revoked = |e: &RcuEvent| matches!(e, RcuEvent::MembarrierRevoked { .. });
            assert!(eventually(|| count(&events, revoked) == 1));
            let text = events
                .lock()
                .unwrap()
                .iter()
                .find(|e| revoked(e))
                .unwrap()
                .to_string();
            // x86-64 without INVLPGB: the mprotect IPI; elsewhere (and in
            // a `--cfg rcu_signal_barrier` build, which CI runs too): a
            // signal to every thread.
            let want = if cfg!(all(target_arch = "x86_64", not(rcu_signal_barrier))) && !invlpgb() {
                "mprotect"
            } else {
                "signal"
            };
            assert!(text.contains(want), "{text}");
            assert!(rcu_core::stats().membarrier_revoked);
        } else {
            // Fence mode (RCU_NO_MEMBARRIER): nothing to revoke.
            assert!(!s.membarrier_revoked, "{s:?}");
        }
    });
}

/// Refused before start: the domain starts in fence mode, reports why once
/// (unless membarrier was turned off on purpose), and a configuration that
/// requires membarrier is refused.
#[test]
#[cfg_attr(miri, ignore = "seccomp and child processes")]
fn membarrier_refused_before_start() {
    in_child("membarrier_refused_before_start", || {
        refuse_membarrier();
        let requested = std::env::var_os("RCU_NO_MEMBARRIER").is_some();
        let domain = RcuDomain::new();
        let events = collect(&domain);
        domain.synchronize();
        domain.synchronize();
        assert!(!domain.stats().membarrier);
        let unavailable = |e: &RcuEvent| matches!(e, RcuEvent::MembarrierUnavailable { .. });
        assert_eq!(count(&events, unavailable), usize::from(!requested));
        let e = RcuDomain::try_with_config(Config::default().require_membarrier(true)).unwrap_err();
        assert!(matches!(e, ConfigError::MembarrierUnavailable(_)), "{e}");
        let want = if requested {
            "RCU_NO_MEMBARRIER"
        } else {
            "refuse"
        };
        assert!(e.to_string().contains(want), "{e}");
        readers_survive(&domain, scaled(20, 2));
    });
}
