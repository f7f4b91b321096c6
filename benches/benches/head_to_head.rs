//! The runner's comparisons as criterion benchmarks, for careful runs with
//! criterion's statistics and HTML plots (`target/criterion/report/`).
//!
//! Each criterion group is one operation of the runner (`read side/1
//! thread, idle`, …) with one function per subject, so criterion's violin
//! plots compare ours and the peers side by side. Every sample is one
//! fixed-duration measurement from `rcu_bench::harness` (readers and writers
//! on their own threads for the same wall-clock time), reported to criterion
//! as time per operation: a slow peer thread cannot stretch the timing of
//! the measured one, as it could with criterion's `iter`.

use criterion::{Criterion, criterion_group, criterion_main};
use rcu_bench::suites::{Settings, all_tasks};
use std::time::Duration;

fn head_to_head(c: &mut Criterion) {
    let settings = Settings {
        duration: Duration::from_millis(40),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let all = all_tasks(&settings);
    let mut operations: Vec<(&str, &str)> = Vec::new();
    for t in &all {
        if !operations.contains(&(t.group, t.operation.as_str())) {
            operations.push((t.group, t.operation.as_str()));
        }
    }
    for (group, operation) in operations {
        let mut g = c.benchmark_group(format!("{group}/{operation}"));
        g.sample_size(20).warm_up_time(Duration::from_millis(200));
        for t in all
            .iter()
            .filter(|t| t.group == group && t.operation == operation)
        {
            g.bench_function(t.subject.as_str(), |b| {
                b.iter_custom(|iters| {
                    let ns = (t.run)(&settings);
                    Duration::from_secs_f64(ns * iters as f64 / 1e9)
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, head_to_head);
criterion_main!(benches);
