//! The read side at 1, 2, … N threads at once (N: the machine's CPUs, or
//! `--threads`), all idle: how the per-thread cost of a critical section
//! grows when readers share a cache line (a reader-writer lock's count) or
//! not (per-thread records). Drawn as one line per subject.

use super::{Chart, GroupDef, ScalingSubject, Settings, Task, ours_label, scaling_tasks};
use crate::harness::ns_per_op_threads;
use crate::{arc_swap_loads, epoch_pairs, rcu_pairs, rwlock_reads};
use std::sync::RwLock;

/// The read-side scaling group.
pub const GROUP: GroupDef = GroupDef {
    name: "read side scaling",
    unit: "ns per read-side critical section (enter + exit), per-thread mean, lower is better",
    chart: Chart::Lines,
    tasks,
};

fn tasks(settings: &Settings) -> Vec<Task> {
    let subjects = [
        ScalingSubject {
            subject: ours_label(),
            ours: true,
            run: |s, threads| ns_per_op_threads(threads, s.duration, || rcu_pairs),
        },
        ScalingSubject {
            subject: "crossbeam_epoch::pin".into(),
            ours: false,
            run: |s, threads| ns_per_op_threads(threads, s.duration, || epoch_pairs),
        },
        ScalingSubject {
            subject: "arc_swap ArcSwap::load".into(),
            ours: false,
            run: |s, threads| {
                let a = arc_swap::ArcSwap::from_pointee(1u64);
                ns_per_op_threads(threads, s.duration, || arc_swap_loads(&a))
            },
        },
        ScalingSubject {
            subject: "std RwLock::read".into(),
            ours: false,
            run: |s, threads| {
                let l = RwLock::new(1u64);
                ns_per_op_threads(threads, s.duration, || rwlock_reads(&l))
            },
        },
    ];
    scaling_tasks(
        GROUP.name,
        settings,
        |n| match n {
            1 => "1 thread, idle (per-thread mean)".to_string(),
            n => format!("{n} threads at once, idle (per-thread mean)"),
        },
        &subjects,
    )
}
