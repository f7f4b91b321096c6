//! Fixed-duration measurement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Operations per timing check: small enough to stop promptly, large enough
/// that `Instant::now` is noise.
const BATCH: u64 = 4096;

/// Runs `op(n)` (which performs `n` operations) in batches on the calling
/// thread until `duration` has passed; returns nanoseconds per operation.
pub fn ns_per_op(duration: Duration, mut op: impl FnMut(u64)) -> f64 {
    // Warm up: registration, first allocation, caches.
    op(BATCH);
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        op(BATCH);
        done += BATCH;
    }
    start.elapsed().as_nanos() as f64 / done as f64
}

/// Like [`ns_per_op`], while `background` runs in a loop on another thread
/// (a writer against the measured readers). `background` is called until the
/// measurement ends; it must return promptly each time.
pub fn ns_per_op_with(
    duration: Duration,
    op: impl FnMut(u64),
    background: impl FnMut() + Send,
) -> f64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut background = background;
        let stop = &stop;
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                background();
            }
        });
        let r = ns_per_op(duration, op);
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// [`ns_per_op`] on `threads` threads at once; returns the mean per-thread
/// nanoseconds per operation. `make` builds each thread's operation on that
/// thread (thread-local registration happens there).
pub fn ns_per_op_threads<F: FnMut(u64)>(
    threads: usize,
    duration: Duration,
    make: impl Fn() -> F + Sync,
) -> f64 {
    let total: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(|| ns_per_op(duration, make())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total / threads.max(1) as f64
}

/// Collects latency samples from `sample` until `duration` has passed (at
/// least 5 samples); returns the median in nanoseconds.
pub fn median_latency(duration: Duration, mut sample: impl FnMut() -> Duration) -> f64 {
    sample();
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 5 || start.elapsed() < duration {
        samples.push(sample().as_nanos() as f64);
    }
    median(&mut samples)
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
