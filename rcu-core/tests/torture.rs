//! rcutorture (see `support/torture.rs`): a short oversubscribed stress run,
//! and, under `--cfg rcu_broken_synchronize`, the self-check that a broken
//! engine makes it fail.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

#[path = "support/torture.rs"]
mod torture;

use std::time::Duration;
use torture::{Options, run};

fn oversubscribed() -> Options {
    let mut opts = Options::stress(Duration::from_secs(if cfg!(miri) { 60 } else { 3 }));
    // More threads than the two cores CI has: 6 readers, a long reader, two
    // synchronize/drain threads, the writer, the reclaim thread.
    opts.readers = if cfg!(miri) { 2 } else { 6 };
    opts.sync_threads = if cfg!(miri) { 1 } else { 2 };
    opts.churn = !cfg!(miri);
    if cfg!(miri) {
        opts.max_publications = 12;
        opts.stall_timeout = Duration::from_secs(600);
    }
    opts
}

#[cfg(not(rcu_broken_synchronize))]
#[test]
fn oversubscribed_stress_finds_no_error() {
    let report = run(&oversubscribed());
    eprintln!("{report:#?}");
    assert_eq!(report.errors(), 0, "{report:#?}");
    assert!(report.max_age_seen <= 1, "{report:#?}");
    assert!(
        !report.stalled,
        "grace periods stopped completing: {report:#?}"
    );
    assert!(report.publications >= 6, "{report:#?}");
    assert!(report.reads > 0, "{report:#?}");
    assert_eq!(report.callbacks_run, report.callbacks_queued, "{report:#?}");
}

/// The torture can fail: with grace periods that wait for no one, readers
/// see reclaimed slots.
#[cfg(rcu_broken_synchronize)]
#[test]
fn broken_engine_is_caught() {
    let mut opts = oversubscribed();
    opts.duration = Duration::from_secs(3);
    let report = run(&opts);
    eprintln!("{report:#?}");
    assert!(
        report.errors() > 0,
        "a broken engine went unnoticed: {report:#?}"
    );
}
