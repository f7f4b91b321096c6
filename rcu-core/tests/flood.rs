//! `memory_limit` is a bound: producers that flood a domain with retired
//! memory help run callbacks whose grace period has ended, and what is
//! counted is what the retired values hold.

mod common;

use common::{finishes, scaled};
use rcu_core::{Config, RcuCell, RcuDomain};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ITEM: usize = 4096;

/// Two threads retire 4 KiB buffers as fast as they can, with no readers at
/// all: the single reclaim thread cannot keep up alone. Pending bytes stay
/// within twice the limit plus one item per producer (before the fix they
/// grew without bound, and no grace period was forced), and both producers
/// keep progressing.
#[test]
fn a_flood_stays_within_twice_the_limit() {
    // Large enough that a reclaim thread descheduled for a few hundred ms
    // on a loaded machine (producers then add one item per ms each) stays
    // within the bound.
    let limit = 4 << 20;
    let domain = Arc::new(RcuDomain::with_config(
        Config::default().memory_limit(limit),
    ));
    let run_for = Duration::from_millis(scaled(1000, 300) as u64);
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let domain = Arc::clone(&domain);
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    let buf = vec![n as u8; ITEM];
                    let bytes = buf.capacity();
                    domain.defer_drop_sized(buf, bytes);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let made: Vec<u64> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let s = domain.stats();
    eprintln!(
        "flood: limit {limit}, peak {}, items {made:?}, forced by memory {}",
        s.max_pending_bytes, s.forced_by.memory
    );
    // One item: its buffer plus the callback's closure (a `Vec`).
    let item = ITEM + 64;
    assert!(
        s.max_pending_bytes as usize <= 2 * limit + 2 * item,
        "pending bytes peaked at {} against a limit of {limit} ({s:?})",
        s.max_pending_bytes
    );
    for n in &made {
        assert!(*n >= scaled(100, 2) as u64, "a producer starved: {made:?}");
    }
    domain.drain();
    assert_eq!(domain.stats().callbacks_pending_bytes, 0);
}

/// Producers that may not wait never do: inside a critical section (the
/// grace period would wait for them), in a notifier or a callback, `call_rcu`
/// over the limit only forces, and returns.
#[test]
fn over_the_limit_call_rcu_never_waits_where_it_must_not() {
    let domain = Arc::new(RcuDomain::with_config(
        Config::default().memory_limit(Config::MIN_MEMORY_LIMIT),
    ));
    let d = Arc::clone(&domain);
    assert!(finishes(move || {
        let reader = d.register();
        let _guard = reader.read_lock();
        for _ in 0..scaled(2000, 20) {
            d.defer_drop_sized(vec![0u8; 64], ITEM);
        }
    }));
    let d = Arc::clone(&domain);
    let inner = Arc::clone(&domain);
    domain.call_rcu(move || {
        for _ in 0..scaled(2000, 20) {
            inner.defer_drop_sized(vec![0u8; 64], ITEM);
        }
    });
    assert!(finishes(move || d.drain()));
    domain.drain();
    assert_eq!(domain.stats().callbacks_pending_bytes, 0);
}

/// A retired value counts what it holds: a 1 MiB `Vec` replaced in an
/// `RcuCell` with a heap-size function counts at least 1 MiB while a reader
/// holds its grace period up (before: 80 bytes, the closure and the box).
#[test]
fn retired_values_count_what_they_hold() {
    let domain = Arc::new(RcuDomain::new());
    let cell = RcuCell::new_in(vec![0u8; 1 << 20], &domain).heap_size(|v| v.capacity());
    let plain = RcuCell::new_in(vec![0u8; 1 << 20], &domain);
    let hold = Arc::new(AtomicBool::new(true));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let (domain, hold) = (Arc::clone(&domain), Arc::clone(&hold));
        std::thread::spawn(move || {
            let reader = domain.register();
            let _guard = reader.read_lock();
            tx.send(()).unwrap();
            while hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    rx.recv().unwrap();
    drop(cell.replace(Vec::new()));
    let counted = domain.stats().callbacks_pending_bytes as usize;
    assert!(counted >= 1 << 20, "counted {counted}");
    drop(plain.replace(Vec::new()));
    let more = domain.stats().callbacks_pending_bytes as usize - counted;
    assert!(
        more < 1024,
        "without a size function: the value's size, {more}"
    );
    let old = plain.update(|_| vec![1]);
    let before = domain.stats().callbacks_pending_bytes as usize;
    drop(old.with_heap_bytes(12345));
    let added = domain.stats().callbacks_pending_bytes as usize - before;
    assert!((12345..12345 + 1024).contains(&added), "{added}");
    hold.store(false, Ordering::SeqCst);
    reader.join().unwrap();
    domain.drain();
    assert_eq!(domain.stats().callbacks_pending_bytes, 0);
}
