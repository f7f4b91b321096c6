//! Liveness in the deployments the engine meets: polled grace periods on an
//! idle process (`start_poll`), a reclaim thread that is started again
//! whenever work arrives after it stopped (a domain's shutdown), and
//! `drain`, which waits for what was queued before it and nothing after.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{block_on, eventually, finishes, scaled};
use rcu_core::RcuDomain;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Nothing else runs a grace period here: `start_poll` itself must see to
/// one. (With a plain `cookie()` in its place the poll stays `false`.)
#[test]
fn start_poll_completes_on_an_idle_domain() {
    let domain = RcuDomain::new();
    let c = domain.start_poll();
    assert!(eventually(|| domain.poll(c)), "no grace period started");
    assert!(domain.stats().grace_periods >= 1);
    // Cookies that share a target ask once; a later one asks again.
    let c2 = domain.start_poll();
    let c3 = domain.start_poll();
    assert!(eventually(|| domain.poll(c2) && domain.poll(c3)));
}

#[test]
fn start_poll_completes_in_the_process_wide_domain() {
    let c = rcu_core::start_poll();
    assert!(eventually(|| rcu_core::poll(c)), "no grace period started");
}

/// Inside a critical section `start_poll` does not wait; the grace period it
/// started waits for the caller, and ends once the guard is dropped.
#[test]
fn start_poll_inside_a_critical_section_never_waits() {
    let domain = RcuDomain::new();
    let reader = domain.register();
    let guard = reader.read_lock();
    let c = domain.start_poll();
    assert!(!domain.poll(c), "a grace period ended inside the section");
    drop(guard);
    assert!(eventually(|| domain.poll(c)));
}

/// A future first polled after its domain's last handle was dropped (the
/// domain's reclaim thread had run and stopped) still resolves: a reclaim
/// thread is started again for it.
#[test]
fn a_future_polled_after_its_domain_dropped_resolves() {
    let domain = RcuDomain::new();
    domain.call_rcu(|| {});
    domain.drain(); // the reclaim thread has started
    let fut = domain.synchronize_async();
    drop(domain); // shutdown: the thread runs what is queued, then stops
    assert!(finishes(move || block_on(fut)), "the future never resolved");
}

/// Many cycles of shutdown and restart, with futures polled from several
/// threads while the restarted thread may be exiting: every future resolves
/// and every callback runs exactly once (two consumers of the single-consumer
/// queue would lose or repeat callbacks).
#[test]
fn restarts_race_with_exits() {
    let ran = Arc::new(AtomicUsize::new(0));
    let rounds = scaled(50, 3);
    for _ in 0..rounds {
        let domain = RcuDomain::new();
        let r = Arc::clone(&ran);
        domain.call_rcu(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let futures: Vec<_> = (0..4).map(|_| domain.synchronize_async()).collect();
        drop(domain);
        let waiters: Vec<_> = futures
            .into_iter()
            .map(|f| std::thread::spawn(move || block_on(f)))
            .collect();
        for w in waiters {
            assert!(
                finishes(move || w.join().unwrap()),
                "a future never resolved"
            );
        }
    }
    assert_eq!(ran.load(Ordering::SeqCst), rounds);
}

/// Several drains at once, while callbacks keep coming: every drain
/// returns. (A drain that waited for chunks with a shared one-bit event
/// could have its wake-up erased by another drain's reset, and slept
/// forever; the torture test found it.)
#[test]
fn concurrent_drains_all_return() {
    let domain = Arc::new(RcuDomain::new());
    let rounds = scaled(300, 5);
    let drainers: Vec<_> = (0..4)
        .map(|_| {
            let domain = Arc::clone(&domain);
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    domain.call_rcu(|| {});
                    domain.drain();
                }
            })
        })
        .collect();
    for d in drainers {
        assert!(
            finishes(move || d.join().unwrap()),
            "a drain never returned"
        );
    }
}

/// `drain` waits for the callbacks queued before it, not for those queued
/// after it: one queued after the drain began that waits for the drain to
/// return must not hold it up. The drain used to wait for every chunk
/// taken by the time its marker ran, which took that callback too (its
/// runner takes it right after the marker's chunk): the two waited for
/// each other (a helper's attack: 13 of 15 runs; here the callback gives up
/// after `STALL_BOUND` and says so).
#[test]
fn drain_does_not_wait_for_callbacks_queued_after_it() {
    use std::sync::atomic::AtomicBool;
    let domain = Arc::new(RcuDomain::new());
    // A callback holds the reclaim thread, so the drain's marker and the
    // later callback are ready together, the marker first.
    let release = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    {
        let (release, started) = (Arc::clone(&release), Arc::clone(&started));
        domain.call_rcu(move || {
            started.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
    }
    assert!(eventually(|| started.load(Ordering::SeqCst)));
    let queued = domain.stats().callbacks_queued;
    let drained = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (domain, drained) = (Arc::clone(&domain), Arc::clone(&drained));
        std::thread::spawn(move || {
            domain.drain();
            drained.store(true, Ordering::SeqCst);
        })
    };
    // The drain's marker is queued (behind the blocker).
    assert!(eventually(|| domain.stats().callbacks_queued > queued));
    let saw_the_drain_return = Arc::new(AtomicBool::new(false));
    {
        let (drained, saw) = (Arc::clone(&drained), Arc::clone(&saw_the_drain_return));
        domain.call_rcu(move || {
            saw.store(
                eventually(|| drained.load(Ordering::SeqCst)),
                Ordering::SeqCst,
            )
        });
    }
    release.store(true, Ordering::SeqCst);
    drainer.join().unwrap();
    domain.drain();
    assert!(
        saw_the_drain_return.load(Ordering::SeqCst),
        "the drain waited for a callback queued after it, which waited for the drain"
    );
}
