//! Grace periods: waiting out readers (`synchronize` against the classic
//! alternative, taking a reader-writer lock for writing) and deferred
//! reclamation (`call_rcu` against crossbeam's `Guard::defer`).

use super::{Chart, GroupDef, Settings, Task};
use crate::harness::{median_latency, ns_per_op_threads};
use crate::{rcu_pairs, rwlock_reads};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, mpsc};
use std::time::{Duration, Instant};

/// The grace-period group.
pub const GROUP: GroupDef = GroupDef {
    name: "grace periods",
    unit: "ns (median latency, or mean per callback), lower is better",
    chart: Chart::Bars,
    tasks,
};

const G: &str = GROUP.name;

fn tasks(_: &Settings) -> Vec<Task> {
    let mut t = Vec::new();

    let op = "wait for readers, readers idle (median latency)";
    t.push(Task::ours(G, op, "rcu-rs synchronize()", |s: &Settings| {
        median_latency(s.duration, || timed(rcu_core::synchronize))
    }));
    t.push(Task::peer(G, op, "std RwLock::write", |s| {
        let l = RwLock::new(0u64);
        median_latency(s.duration, || timed(|| *l.write().unwrap() += 1))
    }));

    let op = "wait for readers, 1 reader thread in short sections (median latency)";
    t.push(Task::ours(G, op, "rcu-rs synchronize()", |s| {
        with_background(
            || rcu_pairs(64),
            || median_latency(s.duration, || timed(rcu_core::synchronize)),
        )
    }));
    t.push(Task::peer(G, op, "std RwLock::write", |s| {
        let l = RwLock::new(0u64);
        let mut reads = rwlock_reads(&l);
        with_background(
            move || reads(64),
            || median_latency(s.duration, || timed(|| *l.write().unwrap() += 1)),
        )
    }));

    let op = "wait for readers, 4 concurrent callers (median latency)";
    t.push(Task::ours(G, op, "rcu-rs synchronize()", |s| {
        concurrent(3, rcu_core::synchronize, || {
            median_latency(s.duration, || timed(rcu_core::synchronize))
        })
    }));
    t.push(Task::peer(G, op, "std RwLock::write", |s| {
        let l = RwLock::new(0u64);
        let write = || *l.write().unwrap() += 1;
        concurrent(3, write, || median_latency(s.duration, || timed(write)))
    }));

    // Deferred reclamation: from queueing a callback to its run.
    let op = "callback latency, readers idle (median, queue to run)";
    t.push(Task::ours(G, op, "rcu-rs call_rcu", |s| {
        median_latency(s.duration, || {
            let (tx, rx) = mpsc::sync_channel(1);
            let start = Instant::now();
            rcu_core::call_rcu(move || tx.send(Instant::now()).unwrap());
            rx.recv().unwrap() - start
        })
    }));
    t.push(Task::peer(
        G,
        op,
        "crossbeam Guard::defer (caller flushes)",
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

    // One callback, then wait until it has run: a drain (which collects and
    // runs it on this thread when the reclaim thread is not collecting)
    // against crossbeam's caller-side flush.
    let op = "one callback, then drain (median latency)";
    t.push(Task::ours(G, op, "rcu-rs call_rcu + drain", |s| {
        let ran = counter();
        median_latency(s.duration, || timed(|| call_rcu_round(ran, 1)))
    }));
    t.push(Task::peer(G, op, "crossbeam Guard::defer + flush", |s| {
        let ran = counter();
        let mut expected = 0;
        median_latency(s.duration, || timed(|| defer_round(ran, &mut expected, 1)))
    }));

    for threads in [1usize, 2] {
        let producers = if threads == 1 {
            "1 producer".to_string()
        } else {
            format!("{threads} producers")
        };
        // Closures: a counter bump each. The counters are leaked statics, so
        // that no subject pays for reference counting on top.
        let op = format!("reclaim throughput, {producers}, closures (mean per callback)");
        t.push(Task::ours(
            G,
            op.clone(),
            "rcu-rs call_rcu + drain",
            move |s| {
                ns_per_op_threads(threads, s.duration, || {
                    let ran = counter();
                    move |n| call_rcu_round(ran, n)
                })
            },
        ));
        t.push(Task::peer(
            G,
            op,
            "crossbeam Guard::defer + flush",
            move |s| {
                ns_per_op_threads(threads, s.duration, || {
                    let ran = counter();
                    let mut expected = 0;
                    move |n| defer_round(ran, &mut expected, n)
                })
            },
        ));
        // Boxed objects, timed until every one has been dropped (each drop
        // bumps its producer's counter).
        let op = format!("reclaim throughput, {producers}, boxed objects (mean per object)");
        t.push(Task::ours(
            G,
            op.clone(),
            "rcu-rs defer_drop(Box) + drain",
            move |s| {
                ns_per_op_threads(threads, s.duration, || {
                    let freed = counter();
                    move |n| {
                        for _ in 0..n {
                            rcu_core::defer_drop(Box::new(Counted(freed, [0; 3])));
                        }
                        rcu_core::drain();
                    }
                })
            },
        ));
        t.push(Task::peer(
            G,
            op,
            "crossbeam defer_destroy + flush",
            move |s| {
                ns_per_op_threads(threads, s.duration, || {
                    let freed = counter();
                    let mut expected = 0;
                    move |n| {
                        let guard = crossbeam_epoch::pin();
                        for _ in 0..n {
                            let p = crossbeam_epoch::Owned::new(Counted(freed, [0; 3]))
                                .into_shared(&guard);
                            // SAFETY: `p` was never shared with another thread
                            // and is destroyed once.
                            unsafe { guard.defer_destroy(p) };
                        }
                        drop(guard);
                        expected += n;
                        while freed.load(Ordering::Relaxed) < expected {
                            crossbeam_epoch::pin().flush();
                        }
                    }
                })
            },
        ));
    }
    t
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Runs `background` in a loop on another thread while `f` runs.
fn with_background<R>(background: impl FnMut() + Send, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
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
    let stop = AtomicBool::new(false);
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

/// A retired object of four words that counts its drop.
struct Counted(&'static AtomicU64, #[allow(dead_code)] [u64; 3]);

/// A counter for one producer thread of one measurement (leaked: a few
/// bytes per measurement).
fn counter() -> &'static AtomicU64 {
    Box::leak(Box::new(AtomicU64::new(0)))
}

/// One round of the closures rows, ours: `n` callbacks that bump `ran`
/// (`call_rcu`), then a `drain`, after which all of them have run.
pub fn call_rcu_round(ran: &'static AtomicU64, n: u64) {
    for _ in 0..n {
        rcu_core::call_rcu(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        });
    }
    rcu_core::drain();
}

/// One round of the closures rows, crossbeam-epoch's: `n` deferred bumps
/// of `ran` under one pin, then flushes until `ran` reaches `expected`
/// (which the round raises by `n`: the bumps of every earlier round).
pub fn defer_round(ran: &'static AtomicU64, expected: &mut u64, n: u64) {
    let guard = crossbeam_epoch::pin();
    for _ in 0..n {
        guard.defer(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        });
    }
    drop(guard);
    *expected += n;
    while ran.load(Ordering::Relaxed) < *expected {
        crossbeam_epoch::pin().flush();
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
