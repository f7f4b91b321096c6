//! Fixed-duration measurement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Operations per timing check: small enough to stop promptly, large enough
/// that `Instant::now` is noise.
const BATCH: u64 = 4096;

/// Slices a measurement is cut into; [`ns_per_op`] reports the fastest.
pub const SLICES: u32 = 10;

/// Runs `op(n)` (which performs `n` operations) in batches on the calling
/// thread until `duration` has passed; returns nanoseconds per operation of
/// the fastest of [`SLICES`] equal slices of that time.
///
/// The fastest slice, not the mean: on a shared machine a slice in which a
/// neighbour held the CPU or flushed the caches measures the neighbour
/// (on the 2-core development VM, slices of one loop on one map ranged
/// over 4x), and every subject of a row is measured the same way.
pub fn ns_per_op(duration: Duration, op: impl FnMut(u64)) -> f64 {
    let mut sampler = sampler(op);
    fastest_slice(duration, &mut sampler)
}

/// A sampler of `op(n)` (which performs `n` operations): each call runs
/// batches for the given time and returns nanoseconds per operation; the
/// first call warms up first (registration, first allocation, caches).
pub fn sampler(mut op: impl FnMut(u64)) -> impl FnMut(Duration) -> f64 {
    let mut warm = false;
    move |slice| {
        if !warm {
            op(BATCH);
            warm = true;
        }
        let start = Instant::now();
        let mut done = 0u64;
        while done == 0 || start.elapsed() < slice {
            op(BATCH);
            done += BATCH;
        }
        start.elapsed().as_nanos() as f64 / done as f64
    }
}

/// Runs one slice of each sampler in turn, [`SLICES`] rounds, each slice a
/// tenth of `duration`; returns each sampler's fastest slice. Subjects
/// measured this way meet the same drift of a shared machine's speed.
pub fn interleave(samplers: &mut [impl FnMut(Duration) -> f64], duration: Duration) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; samplers.len()];
    for _ in 0..SLICES {
        for (b, s) in best.iter_mut().zip(samplers.iter_mut()) {
            *b = b.min(s(duration / SLICES));
        }
    }
    best
}

/// The fastest of [`SLICES`] calls of `sampler`, each for a tenth of
/// `duration`: [`interleave`] with one subject.
pub fn fastest_slice(duration: Duration, sampler: &mut impl FnMut(Duration) -> f64) -> f64 {
    interleave(std::slice::from_mut(sampler), duration)[0]
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Samplers that log their calls and return a scripted time per call.
    #[test]
    fn interleave_alternates_slices_and_keeps_each_fastest() {
        let log = RefCell::new(Vec::new());
        let sampler = |id: usize, times: Vec<f64>| {
            let log = &log;
            let mut calls = 0;
            move |slice: Duration| {
                assert_eq!(slice, Duration::from_millis(100));
                log.borrow_mut().push(id);
                calls += 1;
                times[(calls - 1) % times.len()]
            }
        };
        let mut samplers = [
            sampler(0, vec![5.0, 3.0, 4.0]),
            sampler(1, vec![9.0, 9.5, 7.0, 8.0]),
        ];
        let best = interleave(&mut samplers, Duration::from_secs(1));
        assert_eq!(best, [3.0, 7.0]);
        let expected: Vec<usize> = (0..SLICES).flat_map(|_| [0, 1]).collect();
        assert_eq!(*log.borrow(), expected);
    }

    #[test]
    fn sampler_warms_up_once_and_reports_per_operation() {
        let mut ops = 0u64;
        let mut calls = 0u32;
        let mut s = sampler(|n| {
            ops += n;
            calls += 1;
        });
        let ns = s(Duration::ZERO);
        let ns2 = s(Duration::ZERO);
        drop(s);
        // Warm-up batch plus one batch per zero-length slice.
        assert_eq!((calls, ops), (3, 3 * BATCH));
        assert!(ns >= 0.0 && ns.is_finite() && ns2.is_finite());
    }
}
