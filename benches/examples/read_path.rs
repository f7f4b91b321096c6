//! Instruction-count probe for the read side, for callgrind:
//!
//! ```text
//! cargo build --release -p rcu-bench --example read_path
//! valgrind --tool=callgrind --toggle-collect='*rcu_pairs*' target/release/examples/read_path rcu
//! valgrind --tool=callgrind --toggle-collect='*epoch_pairs*' target/release/examples/read_path epoch
//! ```
//!
//! Each run does `N` pairs inside the toggled function; instructions / N is
//! the cost of one pair (the loop's own two or three instructions included;
//! `empty` measures those).

const N: u64 = 1_000_000;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "rcu".into());
    // Warm up: registration and the first pin happen outside the toggle.
    rcu_core::register_thread();
    drop(crossbeam_epoch::pin());
    match which.as_str() {
        "rcu" => rcu_bench::rcu_pairs(N),
        "epoch" => rcu_bench::epoch_pairs(N),
        "empty" => rcu_bench::empty_pairs(N),
        other => panic!("unknown workload {other}: rcu, epoch or empty"),
    }
    println!("{which}: {N} pairs");
}
