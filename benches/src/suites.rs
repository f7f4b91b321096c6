//! The comparisons: each [`Task`] measures one subject for one operation;
//! the runner groups them into rows (ours against each peer).

use crate::harness::{median_latency, ns_per_op, ns_per_op_threads, ns_per_op_with};
use crate::{empty_pairs, epoch_pairs, rcu_pairs};
use rcu_core::{Config, RcuDomain};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::time::{Duration, Instant};

/// How long each measurement runs, and with how many reader threads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Wall-clock time of each measurement.
    pub duration: Duration,
    /// Reader threads for the multi-threaded rows.
    pub threads: usize,
}

/// One measurement: `subject` doing `operation`, in nanoseconds.
pub struct Task {
    /// The group's name.
    pub group: &'static str,
    /// The row: what is measured.
    pub operation: String,
    /// Who is measured.
    pub subject: String,
    /// Whether `subject` is this project's (the row's reference).
    pub ours: bool,
    /// Runs the measurement; returns nanoseconds (per operation, or median
    /// latency).
    pub run: Box<dyn Fn(&Settings) -> f64>,
}

impl Task {
    fn new(
        group: &'static str,
        operation: impl Into<String>,
        subject: impl Into<String>,
        ours: bool,
        run: impl Fn(&Settings) -> f64 + 'static,
    ) -> Task {
        Task {
            group,
            operation: operation.into(),
            subject: subject.into(),
            ours,
            run: Box::new(run),
        }
    }

    /// `group/operation/subject`, what `--filter` matches.
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.group, self.operation, self.subject)
    }
}

/// Group names and what their numbers mean.
pub const GROUPS: [(&str, &str); 2] = [
    (
        READ_SIDE,
        "ns per read-side critical section (enter + exit), lower is better",
    ),
    (
        GRACE,
        "ns (median latency, or per callback), lower is better",
    ),
];

/// The read-side group.
pub const READ_SIDE: &str = "read side";
/// The grace-period group.
pub const GRACE: &str = "grace periods";

fn ours_label() -> String {
    rcu_core::register_thread();
    if rcu_core::stats().membarrier {
        "rcu-rs read_lock (membarrier)".into()
    } else {
        "rcu-rs read_lock (fence: no membarrier here)".into()
    }
}

fn fence_domain() -> Arc<RcuDomain> {
    Arc::new(RcuDomain::with_config(Config::default().membarrier(false)))
}

fn fence_pairs(domain: &RcuDomain) -> impl FnMut(u64) + '_ {
    let reader = domain.register();
    move |n| {
        for _ in 0..n {
            let g = reader.read_lock();
            black_box(&g);
        }
    }
}

fn seize_pairs(collector: &seize::Collector) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = collector.enter();
            black_box(&g);
        }
    }
}

fn arc_swap_loads(swap: &arc_swap::ArcSwap<u64>) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = swap.load();
            black_box(**g);
        }
    }
}

fn rwlock_reads(lock: &RwLock<u64>) -> impl FnMut(u64) + '_ {
    move |n| {
        for _ in 0..n {
            let g = lock.read().unwrap();
            black_box(*g);
        }
    }
}

/// Every task of the suite, in run order.
pub fn tasks(threads: usize) -> Vec<Task> {
    let mut t = Vec::new();
    let ours = ours_label();

    // Read side, one thread, idle.
    let op = "1 thread, idle";
    t.push(Task::new(READ_SIDE, op, ours.clone(), true, |s| {
        ns_per_op(s.duration, rcu_pairs)
    }));
    t.push(Task::new(
        READ_SIDE,
        op,
        "rcu-rs read_lock (fence fallback)",
        false,
        |s| {
            let d = fence_domain();
            ns_per_op(s.duration, fence_pairs(&d))
        },
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "crossbeam_epoch::pin",
        false,
        |s| ns_per_op(s.duration, epoch_pairs),
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "seize Collector::enter",
        false,
        |s| {
            let c = seize::Collector::new();
            ns_per_op(s.duration, seize_pairs(&c))
        },
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "arc_swap ArcSwap::load",
        false,
        |s| {
            let a = arc_swap::ArcSwap::from_pointee(1u64);
            ns_per_op(s.duration, arc_swap_loads(&a))
        },
    ));
    t.push(Task::new(READ_SIDE, op, "std RwLock::read", false, |s| {
        let l = RwLock::new(1u64);
        ns_per_op(s.duration, rwlock_reads(&l))
    }));
    t.push(Task::new(READ_SIDE, op, "empty loop (floor)", false, |s| {
        ns_per_op(s.duration, empty_pairs)
    }));

    // Read side against a writer looping on the other core. Ours: the normal
    // state must not slow readers down (QEMU before the seed made every
    // reader exit signal an event during a grace period).
    let op = "1 thread, writer in a loop";
    t.push(Task::new(
        READ_SIDE,
        op,
        format!("{ours} + synchronize() loop"),
        true,
        |s| ns_per_op_with(s.duration, rcu_pairs, rcu_core::synchronize),
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "rcu-rs fence fallback + synchronize() loop",
        false,
        |s| {
            let d = fence_domain();
            let writer = Arc::clone(&d);
            ns_per_op_with(s.duration, fence_pairs(&d), move || writer.synchronize())
        },
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "crossbeam_epoch::pin + flush() loop",
        false,
        |s| ns_per_op_with(s.duration, epoch_pairs, || crossbeam_epoch::pin().flush()),
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "arc_swap load + store() loop",
        false,
        |s| {
            let a = arc_swap::ArcSwap::from_pointee(1u64);
            ns_per_op_with(s.duration, arc_swap_loads(&a), || a.store(Arc::new(2)))
        },
    ));
    t.push(Task::new(
        READ_SIDE,
        op,
        "std RwLock::read + write() loop",
        false,
        |s| {
            let l = RwLock::new(1u64);
            ns_per_op_with(s.duration, rwlock_reads(&l), || *l.write().unwrap() += 1)
        },
    ));

    // Read side, several threads at once (per-thread cost).
    let op = format!("{threads} threads, idle");
    t.push(Task::new(
        READ_SIDE,
        op.clone(),
        ours.clone(),
        true,
        move |s| ns_per_op_threads(s.threads, s.duration, || rcu_pairs),
    ));
    t.push(Task::new(
        READ_SIDE,
        op.clone(),
        "crossbeam_epoch::pin",
        false,
        |s| ns_per_op_threads(s.threads, s.duration, || epoch_pairs),
    ));
    t.push(Task::new(
        READ_SIDE,
        op.clone(),
        "arc_swap ArcSwap::load",
        false,
        |s| {
            let a = arc_swap::ArcSwap::from_pointee(1u64);
            ns_per_op_threads(s.threads, s.duration, || arc_swap_loads(&a))
        },
    ));
    t.push(Task::new(READ_SIDE, op, "std RwLock::read", false, |s| {
        let l = RwLock::new(1u64);
        ns_per_op_threads(s.threads, s.duration, || rwlock_reads(&l))
    }));

    // Grace periods: waiting out readers. The classic alternative to
    // synchronize() is taking a reader-writer lock for writing.
    let op = "wait for readers: idle readers";
    t.push(Task::new(GRACE, op, "rcu-rs synchronize()", true, |s| {
        median_latency(s.duration, || timed(rcu_core::synchronize))
    }));
    t.push(Task::new(GRACE, op, "std RwLock::write", false, |s| {
        let l = RwLock::new(0u64);
        median_latency(s.duration, || timed(|| *l.write().unwrap() += 1))
    }));
    let op = "wait for readers: one reader in short sections";
    t.push(Task::new(GRACE, op, "rcu-rs synchronize()", true, |s| {
        with_background(
            || rcu_pairs(64),
            || median_latency(s.duration, || timed(rcu_core::synchronize)),
        )
    }));
    t.push(Task::new(GRACE, op, "std RwLock::write", false, |s| {
        let l = RwLock::new(0u64);
        let mut reads = rwlock_reads(&l);
        with_background(
            move || reads(64),
            || median_latency(s.duration, || timed(|| *l.write().unwrap() += 1)),
        )
    }));
    let op = "wait for readers: 4 concurrent callers";
    t.push(Task::new(GRACE, op, "rcu-rs synchronize()", true, |s| {
        concurrent(3, rcu_core::synchronize, || {
            median_latency(s.duration, || timed(rcu_core::synchronize))
        })
    }));
    t.push(Task::new(GRACE, op, "std RwLock::write", false, |s| {
        let l = RwLock::new(0u64);
        let write = || *l.write().unwrap() += 1;
        concurrent(3, write, || median_latency(s.duration, || timed(write)))
    }));

    // Deferred reclamation: from queueing a callback to its run.
    let op = "callback latency, idle readers";
    t.push(Task::new(GRACE, op, "rcu-rs call_rcu", true, |s| {
        median_latency(s.duration, || {
            let (tx, rx) = mpsc::sync_channel(1);
            let start = Instant::now();
            rcu_core::call_rcu(move || tx.send(Instant::now()).unwrap());
            rx.recv().unwrap() - start
        })
    }));
    t.push(Task::new(
        GRACE,
        op,
        "crossbeam Guard::defer (caller flushes)",
        false,
        |s| {
            median_latency(s.duration, || {
                let (tx, rx) = mpsc::sync_channel(1);
                let start = Instant::now();
                let guard = crossbeam_epoch::pin();
                guard.defer(move || tx.send(Instant::now()).unwrap());
                guard.flush();
                drop(guard);
                loop {
                    if let Ok(t) = rx.try_recv() {
                        break t - start;
                    }
                    crossbeam_epoch::pin().flush();
                }
            })
        },
    ));
    let op = "reclaim throughput (per callback)";
    t.push(Task::new(GRACE, op, "rcu-rs call_rcu + drain", true, |s| {
        let ran = Arc::new(AtomicU64::new(0));
        ns_per_op(s.duration, |n| {
            for _ in 0..n {
                let ran = Arc::clone(&ran);
                rcu_core::call_rcu(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                });
            }
            rcu_core::drain();
        })
    }));
    t.push(Task::new(
        GRACE,
        op,
        "crossbeam Guard::defer + flush",
        false,
        |s| {
            let ran = Arc::new(AtomicU64::new(0));
            let mut expected = 0;
            ns_per_op(s.duration, |n| {
                let guard = crossbeam_epoch::pin();
                for _ in 0..n {
                    let ran = Arc::clone(&ran);
                    guard.defer(move || {
                        ran.fetch_add(1, Ordering::Relaxed);
                    });
                }
                drop(guard);
                expected += n;
                while ran.load(Ordering::Relaxed) < expected {
                    crossbeam_epoch::pin().flush();
                }
            })
        },
    ));
    t
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Runs `background` in a loop on another thread while `f` runs.
fn with_background<R>(background: impl FnMut() + Send, f: impl FnOnce() -> R) -> R {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        let mut background = background;
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                background();
            }
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// Runs `other` in a loop on `n` more threads while `f` runs.
fn concurrent<R>(n: usize, other: impl Fn() + Sync, f: impl FnOnce() -> R) -> R {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..n {
            let (stop, other) = (&stop, &other);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    other();
                }
            });
        }
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}
