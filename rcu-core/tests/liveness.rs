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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// Queues a callback that holds the reclaim thread (running it) until the
/// returned flag is set; returns once it runs.
fn hold_the_reclaim_thread(domain: &RcuDomain) -> Arc<AtomicBool> {
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
    release
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
    let domain = Arc::new(RcuDomain::new());
    // A callback holds the reclaim thread, so the drain's marker and the
    // later callback are ready together, the marker first.
    let release = hold_the_reclaim_thread(&domain);
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

/// A drain runs the callbacks before its marker on its own thread, never
/// one queued after it began: such a callback may wait for the drain to
/// return. Found by a reviewer: a drain whose marker another runner had run
/// took one more chunk, ran a callback queued after it that waited for it,
/// and hung (20 rounds of 20). Timeline per round: blocker B holds the
/// reclaim thread; D1 drains and collects its marker itself; p queues a
/// long X, q queues C (which waits for D1 to return); D2 drains, so `ready`
/// holds [M1, X, C, M2]; B ends, the reclaim thread runs M1 and takes X.
#[test]
fn a_drain_never_runs_a_callback_queued_after_it() {
    use std::sync::Mutex;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;
    // A thread that queues what it is sent, from its own batch.
    fn producer(domain: &Arc<RcuDomain>) -> mpsc::Sender<Box<dyn FnOnce() + Send>> {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let domain = Arc::clone(domain);
        thread::spawn(move || {
            domain.call_rcu(|| {});
            for f in rx {
                domain.call_rcu(f);
            }
        });
        tx
    }
    // About 60% of rounds hit the interleaving against the faulty drain.
    for _ in 0..scaled(6, 1) {
        let domain = Arc::new(RcuDomain::new());
        // p's batch is listed (and harvested) before q's.
        let p = producer(&domain);
        thread::sleep(Duration::from_millis(5));
        let q = producer(&domain);
        thread::sleep(Duration::from_millis(5));
        domain.drain();
        let release = hold_the_reclaim_thread(&domain);
        let queued = domain.stats().callbacks_queued;
        let d1_returned = Arc::new(AtomicBool::new(false));
        let d1_id = Arc::new(Mutex::new(None));
        let d1 = {
            let (domain, returned, id) = (
                Arc::clone(&domain),
                Arc::clone(&d1_returned),
                Arc::clone(&d1_id),
            );
            thread::spawn(move || {
                *id.lock().unwrap() = Some(thread::current().id());
                domain.drain();
                returned.store(true, Ordering::SeqCst);
            })
        };
        // D1's marker is queued and collected.
        assert!(eventually(|| {
            let s = domain.stats();
            s.callbacks_queued > queued && s.callbacks_pending == 0
        }));
        p.send(Box::new(|| thread::sleep(Duration::from_millis(300))))
            .unwrap();
        let c_ran_on = Arc::new(Mutex::new(None));
        {
            let (ran_on, returned) = (Arc::clone(&c_ran_on), Arc::clone(&d1_returned));
            q.send(Box::new(move || {
                *ran_on.lock().unwrap() = Some(thread::current().id());
                // Waits for D1 (bounded: a deadlock shows as a wrong thread
                // below, not as a hang).
                let deadline = std::time::Instant::now() + Duration::from_secs(2);
                while !returned.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(1));
                }
            }))
            .unwrap();
        }
        assert!(eventually(|| domain.stats().callbacks_queued >= queued + 3));
        let d2 = {
            let domain = Arc::clone(&domain);
            thread::spawn(move || domain.drain())
        };
        // D2 has collected X, C and its marker into `ready`, behind M1.
        assert!(eventually(|| {
            let s = domain.stats();
            s.callbacks_queued >= queued + 4 && s.callbacks_pending == 0
        }));
        thread::sleep(Duration::from_millis(5));
        release.store(true, Ordering::SeqCst);
        d1.join().unwrap();
        d2.join().unwrap();
        domain.drain();
        let c_thread = c_ran_on.lock().unwrap().expect("C ran");
        assert_ne!(
            Some(c_thread),
            *d1_id.lock().unwrap(),
            "D1 ran a callback queued after its marker"
        );
    }
}

/// A drain inside another domain's scope that refuses grace-period waits
/// (a structure's writer lock, an `RcuCell::update` closure) runs no
/// callback itself: it waits for the reclaim thread, where a callback may
/// wait for that domain's grace periods (on the drain's thread, the wait
/// was refused and the callback panicked: found by a reviewer). The same
/// holds inside another domain's critical section, where a callback that
/// waits for that domain would wait for the drain's thread.
#[test]
fn a_drain_in_another_domains_no_wait_scope_leaves_callbacks_to_the_reclaim_thread() {
    use std::time::Duration;
    let a = Arc::new(RcuDomain::new());
    let b = Arc::new(RcuDomain::new());
    {
        // Another thread's callback keeps the reclaim thread running
        // callbacks (the queue's token is free).
        let started = Arc::new(AtomicBool::new(false));
        {
            let (a, started) = (Arc::clone(&a), Arc::clone(&started));
            std::thread::spawn(move || {
                a.call_rcu(move || {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                });
            })
            .join()
            .unwrap();
        }
        assert!(eventually(|| started.load(Ordering::SeqCst)));
        let done = Arc::new(AtomicBool::new(false));
        {
            let (b, done) = (Arc::clone(&b), Arc::clone(&done));
            a.call_rcu(move || {
                b.synchronize();
                done.store(true, Ordering::SeqCst);
            });
        }
        b.no_grace_period_waits(|| a.drain());
        assert!(
            done.load(Ordering::SeqCst),
            "the callback did not finish (callback panics: {})",
            a.stats().callback_panics
        );
    }
}

/// The same inside a local guard of another domain (the guard `RcuHashMap`
/// takes on its caller's domain): neither a drain nor a producer helping
/// over the memory limit runs callbacks there. Local guards' records are
/// pooled, not the thread's, and were not seen: the drain ran the callback
/// in every round (an attack round's test), and so did a helping producer.
#[test]
fn no_callback_runs_inside_another_domains_local_guard() {
    use rcu_core::Config;
    let me = std::thread::current().id();
    let a = RcuDomain::with_config(Config::default().memory_limit(4096));
    let b = RcuDomain::new();
    let ran_here = Arc::new(AtomicUsize::new(0));
    // Slow callbacks of 256 bytes and more: the reclaim thread falls
    // behind, so the flood below goes and stays over the limit, and its
    // producer would help.
    let record = |ran_here: &Arc<AtomicUsize>| {
        let ran_here = Arc::clone(ran_here);
        let bulk = [0u8; 256];
        move || {
            std::hint::black_box(&bulk);
            if std::thread::current().id() == me {
                ran_here.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
    };
    for _ in 0..scaled(20, 2) {
        a.call_rcu(record(&ran_here));
        let _guard = b.read_lock_local();
        a.drain();
    }
    assert_eq!(
        ran_here.load(Ordering::SeqCst),
        0,
        "a drain ran a callback inside b's guard"
    );
    // Over the memory limit a producer helps, unless it is reading.
    let helped = {
        let _guard = b.read_lock_local();
        for _ in 0..scaled(2000, 200) {
            a.call_rcu(record(&ran_here));
        }
        ran_here.load(Ordering::SeqCst)
    };
    assert!(
        a.stats().max_pending_bytes > 4096,
        "the flood never went over the limit"
    );
    assert_eq!(helped, 0, "a producer helped inside b's guard");
    a.drain();
}
