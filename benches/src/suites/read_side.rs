//! The read side on one thread: the cost of entering and leaving a
//! read-side critical section, idle and against a writer looping on another
//! thread. (The same at 1, 2, … N threads: [`super::read_scaling`].)

use super::{Chart, GroupDef, Settings, Task, ours_label};
use crate::harness::{ns_per_op, ns_per_op_with};
use crate::{
    arc_swap_loads, empty_pairs, epoch_pairs, fence_domain, fence_pairs, rcu_pairs, rwlock_reads,
    seize_pairs,
};
use std::sync::{Arc, RwLock};

/// The read-side group.
pub const GROUP: GroupDef = GroupDef {
    name: "read side",
    unit: "ns per read-side critical section (enter + exit), lower is better",
    chart: Chart::Bars,
    tasks,
};

const G: &str = GROUP.name;

fn tasks(_: &Settings) -> Vec<Task> {
    let ours = ours_label();
    let mut t = Vec::new();

    let op = "1 thread, idle";
    t.push(Task::ours(G, op, ours.clone(), |s: &Settings| {
        ns_per_op(s.duration, rcu_pairs)
    }));
    t.push(Task::peer(
        G,
        op,
        "rcu-rs read_lock (fence fallback)",
        |s| {
            let d = fence_domain();
            ns_per_op(s.duration, fence_pairs(&d))
        },
    ));
    t.push(Task::peer(G, op, "crossbeam_epoch::pin", |s| {
        ns_per_op(s.duration, epoch_pairs)
    }));
    t.push(Task::peer(G, op, "seize Collector::enter", |s| {
        let c = seize::Collector::new();
        ns_per_op(s.duration, seize_pairs(&c))
    }));
    t.push(Task::peer(G, op, "arc_swap ArcSwap::load", |s| {
        let a = arc_swap::ArcSwap::from_pointee(1u64);
        ns_per_op(s.duration, arc_swap_loads(&a))
    }));
    t.push(Task::peer(G, op, "std RwLock::read", |s| {
        let l = RwLock::new(1u64);
        ns_per_op(s.duration, rwlock_reads(&l))
    }));
    t.push(Task::peer(G, op, "empty loop (floor)", |s| {
        ns_per_op(s.duration, empty_pairs)
    }));

    // Against a writer looping on another thread. Ours: the normal state must
    // not slow readers down (QEMU before the seed made every reader exit
    // signal an event during a grace period).
    let op = "1 reader thread, 1 writer thread in a loop (reader's cost)";
    t.push(Task::ours(
        G,
        op,
        format!("{ours} + synchronize() loop"),
        |s| ns_per_op_with(s.duration, rcu_pairs, rcu_core::synchronize),
    ));
    t.push(Task::peer(
        G,
        op,
        "rcu-rs fence fallback + synchronize() loop",
        |s| {
            let d = fence_domain();
            let writer = Arc::clone(&d);
            ns_per_op_with(s.duration, fence_pairs(&d), move || writer.synchronize())
        },
    ));
    t.push(Task::peer(
        G,
        op,
        "crossbeam_epoch::pin + flush() loop",
        |s| ns_per_op_with(s.duration, epoch_pairs, || crossbeam_epoch::pin().flush()),
    ));
    t.push(Task::peer(G, op, "arc_swap load + store() loop", |s| {
        let a = arc_swap::ArcSwap::from_pointee(1u64);
        ns_per_op_with(s.duration, arc_swap_loads(&a), || a.store(Arc::new(2)))
    }));
    t.push(Task::peer(G, op, "std RwLock::read + write() loop", |s| {
        let l = RwLock::new(1u64);
        ns_per_op_with(s.duration, rwlock_reads(&l), || *l.write().unwrap() += 1)
    }));
    t
}
