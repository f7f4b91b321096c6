//! The read-mostly configuration value: many reader threads read one field
//! of a shared value while a writer replaces the whole value every
//! millisecond. `RcuCell::read` (a `read_lock` per read, and one per 64 or
//! 1024 reads, as RCU readers usually hold a critical section) against the
//! ways Rust programs usually share such a value: `ArcSwap::load`,
//! arc-swap's thread-local `Cache` (each reader thread owns one), and
//! crossbeam-epoch's `Atomic::load` (a `pin` per read, and one per 1024).
//! Drawn as one line per subject over 1, 2 and 4 reader threads.

use super::{Chart, GroupDef, Settings, Task};
use crate::harness::ns_per_op_threads;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The configuration group.
pub const GROUP: GroupDef = GroupDef {
    name: "config",
    unit: "ns per read of one field of the current value, per reader thread, with a writer \
           replacing the value every 1 ms; lower is better",
    chart: Chart::Lines,
    tasks,
};

const G: &str = GROUP.name;

/// Reader threads of the rows.
const READERS: [usize; 3] = [1, 2, 4];

/// How often the writer replaces the value.
const WRITE_EVERY: Duration = Duration::from_millis(1);

/// The shared value: a small configuration record. Readers read `limit`.
pub struct Limits {
    /// The field the readers read.
    pub limit: u64,
    /// The rest of a typical record (never read in the loop).
    pub name: String,
    /// More of the record.
    pub timeouts_ms: [u32; 4],
}

impl Limits {
    /// The `i`th version of the value.
    pub fn version(i: u64) -> Self {
        Limits {
            limit: i,
            name: format!("v{i}"),
            timeouts_ms: [100, 200, 400, 800],
        }
    }
}

fn tasks(_: &Settings) -> Vec<Task> {
    let mut t = Vec::new();
    for readers in READERS {
        let op = match readers {
            1 => "1 reader thread, writer every 1 ms (per-thread mean)".to_string(),
            n => format!("{n} reader threads, writer every 1 ms (per-thread mean)"),
        };
        t.push(
            Task::ours(
                G,
                op.clone(),
                "rcu-rs RcuCell::read (read_lock per read)",
                move |s: &Settings| rcu_cell::<1>(s.duration, readers),
            )
            .at_threads(readers),
        );
        t.push(
            // Our own variant, shown as a peer of the per-read row (as the
            // map group shows its guard-per-4096-gets `get`).
            Task::peer(
                G,
                op.clone(),
                "rcu-rs RcuCell::read (read_lock per 64 reads)",
                move |s: &Settings| rcu_cell::<READS_PER_GUARD>(s.duration, readers),
            )
            .at_threads(readers),
        );
        t.push(
            Task::peer(
                G,
                op.clone(),
                "rcu-rs RcuCell::read (read_lock per 1024 reads)",
                move |s: &Settings| rcu_cell::<READS_PER_LONG_GUARD>(s.duration, readers),
            )
            .at_threads(readers),
        );
        t.push(
            Task::peer(
                G,
                op.clone(),
                "arc_swap Cache::load (per thread)",
                move |s| arc_swap_cache(s.duration, readers),
            )
            .at_threads(readers),
        );
        t.push(
            Task::peer(G, op.clone(), "arc_swap ArcSwap::load", move |s| {
                arc_swap_load(s.duration, readers)
            })
            .at_threads(readers),
        );
        t.push(
            Task::peer(
                G,
                op.clone(),
                "crossbeam_epoch Atomic::load (pin per read)",
                move |s| epoch_load::<1>(s.duration, readers),
            )
            .at_threads(readers),
        );
        t.push(
            // The same batch as our 1024-read row, for a like comparison.
            Task::peer(
                G,
                op,
                "crossbeam_epoch Atomic::load (pin per 1024 loads)",
                move |s| epoch_load::<READS_PER_LONG_GUARD>(s.duration, readers),
            )
            .at_threads(readers),
        );
    }
    t
}

/// Runs `readers` reader threads for `duration` (see
/// [`ns_per_op_threads`]) while a writer thread calls `write(i)` every
/// [`WRITE_EVERY`], `i` counting up; returns the readers' mean ns per read.
fn with_writer<F: FnMut(u64)>(
    duration: Duration,
    readers: usize,
    make_reader: impl Fn() -> F + Sync,
    mut write: impl FnMut(u64) + Send,
) -> f64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let mut i = 1;
            // Relaxed: a stop flag; the scope's join orders the rest.
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(WRITE_EVERY);
                write(i);
                i += 1;
            }
        });
        let ns = ns_per_op_threads(readers, duration, make_reader);
        stop.store(true, Ordering::Relaxed);
        ns
    })
}

/// Reads per critical section in the batched row.
pub const READS_PER_GUARD: u64 = 64;

/// Reads per critical section in the long-batch rows: about 0.3 µs of
/// reading, so the batch's end (15-20 ns on the 2-CPU VM, likely a
/// mispredicted loop exit: `benches/examples/config_batches.rs`) is paid
/// once per 1024 reads instead of once per 64.
pub const READS_PER_LONG_GUARD: u64 = 1024;

/// `RcuCell::read` with one `read_lock` per `PER_GUARD` reads: 1, a
/// critical section per read; [`READS_PER_GUARD`] or
/// [`READS_PER_LONG_GUARD`], as RCU code usually reads (a critical section
/// around a request or a loop's iteration: QEMU holds `rcu_read_lock`
/// across a whole request, liburcu's QSBR flavour across whole loops), so
/// the lock and unlock are paid once per batch and the writer's grace
/// periods wait for at most one batch. The writer `replace`s (the old
/// value is freed after a grace period by the reclaim thread).
pub fn rcu_cell<const PER_GUARD: u64>(duration: Duration, readers: usize) -> f64 {
    let cell = rcu_core::RcuCell::new(Limits::version(0));
    let ns = with_writer(
        duration,
        readers,
        || rcu_cell_reads::<PER_GUARD>(&cell),
        |i| drop(cell.replace(Limits::version(i))),
    );
    rcu_core::drain();
    ns
}

/// `n` reads of `cell`'s field, a critical section per `PER_GUARD` of them.
pub fn rcu_cell_reads<const PER_GUARD: u64>(
    cell: &rcu_core::RcuCell<Limits>,
) -> impl FnMut(u64) + '_ {
    move |mut n| {
        while n > 0 {
            let batch = n.min(PER_GUARD);
            n -= batch;
            let g = rcu_core::read_lock();
            for _ in 0..batch {
                black_box(cell.read(&g).limit);
            }
        }
    }
}

/// arc-swap's `Cache`: each reader thread keeps the last `Arc` it loaded
/// and only compares pointers while the value does not change.
pub fn arc_swap_cache(duration: Duration, readers: usize) -> f64 {
    let swap = arc_swap::ArcSwap::from_pointee(Limits::version(0));
    with_writer(
        duration,
        readers,
        || {
            let mut cache = arc_swap::Cache::new(&swap);
            move |n| {
                for _ in 0..n {
                    black_box(cache.load().limit);
                }
            }
        },
        |i| swap.store(std::sync::Arc::new(Limits::version(i))),
    )
}

/// `ArcSwap::load` (a debt-list guard per read).
pub fn arc_swap_load(duration: Duration, readers: usize) -> f64 {
    let swap = arc_swap::ArcSwap::from_pointee(Limits::version(0));
    with_writer(
        duration,
        readers,
        || {
            let swap = &swap;
            move |n| {
                for _ in 0..n {
                    black_box(swap.load().limit);
                }
            }
        },
        |i| swap.store(std::sync::Arc::new(Limits::version(i))),
    )
}

/// crossbeam-epoch's `Atomic::load` under a `pin` per `PER_PIN` reads (in
/// the same loop shape as [`rcu_cell_reads`]); the writer swaps and defers
/// the old value's destruction.
pub fn epoch_load<const PER_PIN: u64>(duration: Duration, readers: usize) -> f64 {
    use crossbeam_epoch::{Atomic, Owned};
    let atomic = Atomic::new(Limits::version(0));
    let ns = with_writer(
        duration,
        readers,
        || {
            let atomic = &atomic;
            move |mut n| {
                while n > 0 {
                    let batch = n.min(PER_PIN);
                    n -= batch;
                    let g = crossbeam_epoch::pin();
                    for _ in 0..batch {
                        let p = atomic.load(Ordering::Acquire, &g);
                        // SAFETY: the value is never null and is destroyed
                        // only through `defer_destroy` after it was swapped
                        // out, so it outlives this pin.
                        black_box(unsafe { p.deref() }.limit);
                    }
                }
            }
        },
        |i| {
            let g = crossbeam_epoch::pin();
            let old = atomic.swap(Owned::new(Limits::version(i)), Ordering::AcqRel, &g);
            // SAFETY: `old` is unlinked by the swap above and retired once.
            unsafe { g.defer_destroy(old) };
        },
    );
    // SAFETY: every thread that could read it has been joined.
    drop(unsafe { atomic.into_owned() });
    ns
}
