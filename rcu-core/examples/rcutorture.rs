//! rcutorture as a program, for long soaks and read/update cost.
//!
//! ```text
//! cargo run --release -p rcu-core --example rcutorture -- stress --seconds 600
//! cargo run --release -p rcu-core --example rcutorture -- rperf --readers 2
//! cargo run --release -p rcu-core --example rcutorture -- uperf
//! ```
//!
//! Options: `--seconds S`, `--readers N`, `--long-readers N`,
//! `--sync-threads N`, `--no-churn`, `--seed X`. Exits non-zero on any error
//! or writer stall.

#[path = "../tests/support/torture.rs"]
mod torture;

use std::time::Duration;
use torture::{Mode, Options};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some("stress") | None => Mode::Stress,
        Some("rperf") => Mode::Rperf,
        Some("uperf") => Mode::Uperf,
        Some(other) => {
            eprintln!("unknown mode {other}: stress, rperf or uperf");
            std::process::exit(2);
        }
    };
    let num = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number, got {v}"))
            })
            .unwrap_or(default)
    };
    let mut opts = Options::stress(Duration::from_secs(num("--seconds", 10)));
    opts.mode = mode;
    opts.readers = num("--readers", 4) as usize;
    opts.long_readers = num("--long-readers", 1) as usize;
    opts.sync_threads = num("--sync-threads", 2) as usize;
    opts.churn = !args.iter().any(|a| a == "--no-churn");
    opts.seed = num("--seed", 0x5eed);

    let r = torture::run(&opts);
    println!("rcutorture {mode:?}: {:.1} s", r.elapsed.as_secs_f64());
    println!(
        "  reads            {} ({} reader threads started)",
        r.reads, r.reader_threads_started
    );
    println!("  publications     {}", r.publications);
    println!(
        "  grace periods    {} ({} forced)",
        r.grace_periods, r.forced_grace_periods
    );
    println!("  notifier calls   {}", r.notifier_calls);
    println!(
        "  callbacks        {} run of {} queued",
        r.callbacks_run, r.callbacks_queued
    );
    println!("  max age seen     {}", r.max_age_seen);
    println!(
        "  errors           {} (dead {}, age {}, reuse {})",
        r.errors(),
        r.dead_seen,
        r.age_errors,
        r.reuse_errors
    );
    match mode {
        Mode::Rperf => println!("  ns per read      {:.1}", r.ns_per_read),
        Mode::Uperf => println!("  ns per update    {:.1}", r.ns_per_update),
        Mode::Stress => {}
    }
    let failed = r.errors() > 0 || r.stalled || r.callbacks_run != r.callbacks_queued;
    if r.stalled {
        println!("  WRITER STALL: the published slot stopped advancing");
    }
    println!("{}", if failed { "FAILED" } else { "PASSED" });
    std::process::exit(i32::from(failed));
}
