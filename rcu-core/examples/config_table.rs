//! A read-mostly configuration table: reader threads look settings up through
//! an `RcuCell` with no locks while a writer swaps in new versions.
//!
//! ```text
//! cargo run --release -p rcu-core --example config_table -- [--readers N] [--seconds S] [--updates-per-sec U]
//! cargo run --release -p rcu-core --example config_table -- --help
//! ```
//!
//! Prints reads per second, the writer's updates, grace periods (normal and
//! forced) and callbacks run.

use clap::Parser;
use rcu_core::{RcuCell, read_lock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One version of the configuration.
struct Config {
    version: u64,
    settings: HashMap<String, u64>,
}

impl Config {
    fn new(version: u64) -> Self {
        let settings = (0..64)
            .map(|i| (format!("key{i}"), version * 1000 + i))
            .collect();
        Config { version, settings }
    }
}

/// Readers look settings up in an RcuCell with no locks while a writer swaps
/// in new versions; prints reads per second, grace periods and callbacks.
#[derive(Parser)]
#[command(name = "config_table")]
struct Cli {
    /// Reader threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    readers: usize,
    /// How long the writer runs.
    #[arg(long, value_name = "S", default_value_t = 3)]
    seconds: u64,
    /// Versions the writer publishes per second (at most 1 000 000).
    #[arg(long, value_name = "U", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    updates_per_sec: u32,
}

fn main() {
    let Cli {
        readers,
        seconds,
        updates_per_sec,
    } = Cli::parse();

    let table = RcuCell::new(Config::new(0));
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let updates = AtomicU64::new(0);
    let start = Instant::now();

    std::thread::scope(|s| {
        for r in 0..readers {
            let (table, stop, reads) = (&table, &stop, &reads);
            s.spawn(move || {
                let key = format!("key{}", r % 64);
                let mut n = 0u64;
                let mut last_version = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        let guard = read_lock();
                        let config = table.read(&guard);
                        // Each version is internally consistent, and versions
                        // never go backwards for one reader.
                        let v = config.settings[&key];
                        assert_eq!(v / 1000, config.version);
                        assert!(config.version >= last_version);
                        last_version = config.version;
                    }
                    n += 1024;
                }
                reads.fetch_add(n, Ordering::Relaxed);
            });
        }
        let period = Duration::from_secs(1) / updates_per_sec;
        let mut next = Instant::now();
        while start.elapsed() < Duration::from_secs(seconds) {
            let old = table.update(|old| Config::new(old.version + 1));
            drop(old); // freed by the reclaim thread after a grace period
            updates.fetch_add(1, Ordering::Relaxed);
            next += period;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    rcu_core::drain();

    let stats = rcu_core::stats();
    let reads = reads.load(Ordering::Relaxed);
    println!("config_table: {readers} reader threads, {seconds} s, one writer");
    println!(
        "  barrier mode      {}",
        if stats.membarrier {
            "membarrier"
        } else {
            "fence fallback"
        }
    );
    println!(
        "  reads             {reads} ({:.1} M reads/s)",
        reads as f64 / elapsed / 1e6
    );
    println!("  updates           {}", updates.load(Ordering::Relaxed));
    println!(
        "  grace periods     {} ({} normal, {} forced)",
        stats.grace_periods,
        stats.grace_periods - stats.forced_grace_periods,
        stats.forced_grace_periods
    );
    let f = &stats.forced_by;
    println!(
        "  forced by         callbacks {}, polls {}, drain {}, expedite {}, memory {}",
        f.callbacks, f.polls, f.drain, f.expedite, f.memory
    );
    println!("  longest grace period {:?}", stats.longest_grace_period);
    println!("  grace period times {}", stats.histogram);
    println!("  polls (10 ms sleeps) {}", stats.polls);
    println!("  reader wake-ups   {}", stats.reader_wakeups);
    println!("  stalls reported   {}", stats.stalls);
    println!("  most bytes pending {}", stats.max_pending_bytes);
    println!(
        "  callbacks run     {} of {} queued",
        stats.callbacks_run, stats.callbacks_queued
    );
    assert_eq!(stats.callbacks_run, stats.callbacks_queued);
}
