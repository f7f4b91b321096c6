//! loom models of the grace-period protocol (`--cfg rcu_loom`).
//!
//! ```text
//! RUSTFLAGS="--cfg rcu_loom" cargo test --release -p rcu-core --lib --target-dir target/loom
//! ```
//!
//! Every model runs with no preemption bound unless it says otherwise: a
//! bound of 3 has been seen to miss the lost wake-up that the unbounded run
//! of the two-thread forced-state model finds at once.
//!
//! Two kinds of model:
//! * `protocol_*`: the forced state's handshake alone, written out access by
//!   access as the fence fallback runs it (the reader's counter and flags
//!   byte, `fence(SeqCst)` for both barriers), to show what the once-only
//!   arming of the seed patch gets wrong.
//! * `engine_*`: the project's own code (an [`RcuDomain`] with its registry,
//!   events, leader election and reclaim thread, all through the sync
//!   facade). Reclamation is modelled by a loom `UnsafeCell` that the writer
//!   overwrites (the "free"): loom reports any read of it that is not ordered
//!   before that write.

use crate::config::Config;
use crate::domain::RcuDomain;
use crate::registry::IDLE_SLOW;
use crate::sync::{
    Arc, AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering, fence, thread,
};
use loom::cell::UnsafeCell;

/// Runs `f` under loom with no preemption bound.
fn model(f: impl Fn() + Sync + Send + 'static) {
    bounded_model(None, f);
}

/// Runs `f` under loom with the given preemption bound.
fn bounded_model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    builder.check(f);
}

/// Runs a model that must fail, and checks that it fails for one of the
/// `reasons` (so a self-check cannot pass by failing some other way).
fn expect_failure(reasons: &[&str], f: impl Fn() + Sync + Send + 'static) {
    expect_failure_bounded(None, reasons, f)
}

/// [`expect_failure`] for a model searched with a preemption bound.
fn expect_failure_bounded(
    bound: Option<usize>,
    reasons: &[&str],
    f: impl Fn() + Sync + Send + 'static,
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bounded_model(bound, f)));
    let payload = result.expect_err("the model was expected to fail");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        reasons.iter().any(|r| msg.contains(r)),
        "failed for another reason: {msg}"
    );
}

/// Which deliberate defect a model's domain carries.
#[derive(Clone, Copy)]
enum Defect {
    None,
    ArmWaitingOnce,
    NeverArmWaiting,
    SkipWaitForReaders,
    ExitWithoutRecheck,
}

fn domain(defect: Defect) -> Arc<RcuDomain> {
    use std::sync::atomic::Ordering::Relaxed;
    let domain = Arc::new(RcuDomain::with_config(config()));
    let d = &domain.inner.gp.defects;
    match defect {
        Defect::None => {}
        Defect::ArmWaitingOnce => d.arm_waiting_once.store(true, Relaxed),
        Defect::NeverArmWaiting => d.never_arm_waiting.store(true, Relaxed),
        Defect::SkipWaitForReaders => d.skip_wait_for_readers.store(true, Relaxed),
        Defect::ExitWithoutRecheck => d.exit_without_recheck.store(true, Relaxed),
    }
    domain
}

// ---------------------------------------------------------------------------
// The forced-state handshake alone.

/// A minimal event: a flag under a mutex.
struct ModelEvent {
    set: Mutex<bool>,
    cond: Condvar,
}

impl ModelEvent {
    fn new() -> Self {
        ModelEvent {
            set: Mutex::new(false),
            cond: Condvar::new(),
        }
    }
    fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.cond.notify_all();
    }
    fn reset(&self) {
        *self.set.lock().unwrap() = false;
    }
    fn wait(&self) {
        let mut g = self.set.lock().unwrap();
        while !*g {
            g = self.cond.wait(g).unwrap();
        }
    }
}

/// The fence-mode record as the code keeps it: `ctr` (idle at
/// [`IDLE_SLOW`]) and the flags byte.
struct Protocol {
    gp_ctr: AtomicU64,
    ctr: AtomicU64,
    flags: AtomicU8,
    event: ModelEvent,
}

/// The record's flags bit, as in `registry`.
const WAITING: u8 = 1;

/// One reader doing two critical sections; the writer in the forced state,
/// arming `WAITING` on every iteration (`rearm`) or once, as the seed patch.
///
/// Each access is the code's, with the code's ordering: the reader's
/// `Record::try_lock` (which finds `IDLE_SLOW`) and `lock_slow`, then
/// `leave` (whose nesting word, owner-only, says fence mode) with
/// `unlock_fence` and `unlock_slow` (the store of `IDLE_SLOW`, the fence,
/// one test of the flags byte); the
/// writer's `gp_ctr` store, `arm_waiting`, heavy barrier (a fence here),
/// `holding_up` scan and `disarm_waiting`.
fn forced_state_protocol(rearm: bool) {
    model(move || {
        let p = Arc::new(Protocol {
            gp_ctr: AtomicU64::new(1),
            ctr: AtomicU64::new(IDLE_SLOW),
            flags: AtomicU8::new(0),
            event: ModelEvent::new(),
        });
        let reader = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                for _ in 0..2 {
                    // try_lock: neither 0 nor a snapshot, so lock_slow.
                    let c = p.ctr.load(Ordering::Relaxed);
                    assert_eq!(c, IDLE_SLOW);
                    let snapshot = p.gp_ctr.load(Ordering::Acquire);
                    p.ctr.store(snapshot, Ordering::Release);
                    fence(Ordering::SeqCst);
                    // ... critical section ...
                    // leave, unlock_fence: the store, the fence, one test of
                    // the flags byte.
                    p.ctr.store(IDLE_SLOW, Ordering::Release);
                    fence(Ordering::SeqCst);
                    let f = p.flags.load(Ordering::Relaxed);
                    if f != 0 {
                        // unlock_slow.
                        if f & WAITING != 0 {
                            let before = p.flags.fetch_and(!WAITING, Ordering::Relaxed);
                            if before & WAITING != 0 {
                                p.event.set();
                            }
                        }
                    }
                }
            })
        };
        // Writer: start the grace period, then the forced state at once.
        p.gp_ctr.store(3, Ordering::Release);
        fence(Ordering::SeqCst);
        if !rearm {
            p.flags.fetch_or(WAITING, Ordering::Relaxed);
            // A fence here does not save the once-only scheme.
            fence(Ordering::SeqCst);
        }
        loop {
            p.event.reset();
            if rearm {
                p.flags.fetch_or(WAITING, Ordering::Relaxed);
            }
            fence(Ordering::SeqCst);
            let c = p.ctr.load(Ordering::Acquire);
            // holding_up: a snapshot other than the new counter.
            if c & 1 == 0 || c == 3 {
                p.flags.fetch_and(!WAITING, Ordering::Relaxed);
                break;
            }
            p.event.wait();
        }
        reader.join().unwrap();
    });
}

#[test]
fn protocol_rearming_waiting_every_iteration_never_deadlocks() {
    forced_state_protocol(true);
}

#[test]
#[should_panic(expected = "deadlock")]
fn protocol_arming_waiting_once_loses_a_wake_up() {
    forced_state_protocol(false);
}

// ---------------------------------------------------------------------------
// The engine itself.

/// Forced at the first poll, so models reach the forced state quickly
/// (a "poll" under loom is a yield). The longest poll interval: the event's
/// timed wait still compares real time with its deadline before it yields,
/// and a model thread descheduled for 10 ms (the default) on a loaded
/// machine took the other branch, which loom reports as a model that is not
/// deterministic ("Reached unexpected exploration state").
fn config() -> Config {
    Config::default()
        .max_polls(1)
        .callback_threshold(1 << 20)
        .poll_interval(Config::MAX_POLL_INTERVAL)
}

/// Two slots of data behind an index; the writer publishes slot 1, waits for
/// a grace period, then "frees" slot 0 by overwriting it. A reader that reads
/// slot 0 after the free, or concurrently with it, fails the model.
struct Slots {
    current: AtomicUsize,
    data: [UnsafeCell<u64>; 2],
}

impl Slots {
    fn new() -> Self {
        Slots {
            current: AtomicUsize::new(0),
            data: [UnsafeCell::new(10), UnsafeCell::new(11)],
        }
    }

    /// A reader's look, inside a critical section.
    fn read(&self) {
        // Acquire: pairs with the Release publication in `publish`.
        let i = self.current.load(Ordering::Acquire);
        let v = self.data[i].with(|p| {
            // SAFETY: loom checks this access against the writer's free.
            unsafe { *p }
        });
        assert_eq!(v, 10 + i as u64, "read a reclaimed slot");
    }

    fn publish(&self) {
        // Release: pairs with the Acquire load in `read`.
        self.current.store(1, Ordering::Release);
    }

    /// The free of slot 0.
    fn reclaim(&self) {
        self.data[0].with_mut(|p| {
            // SAFETY: loom checks this access against readers' reads.
            unsafe { *p = u64::MAX }
        });
    }
}

/// A reader thread: one critical section that reads the published slot.
fn spawn_slot_reader(domain: &Arc<RcuDomain>, slots: &Arc<Slots>) -> thread::JoinHandle<()> {
    let (domain, slots) = (Arc::clone(domain), Arc::clone(slots));
    thread::spawn(move || {
        let reader = domain.register();
        let guard = reader.read_lock();
        slots.read();
        drop(guard);
    })
}

/// Model 1: a reader that loaded the old slot never sees it reclaimed.
fn publish_read_reclaim(defect: Defect) {
    model(move || {
        let domain = domain(defect);
        let slots = Arc::new(Slots::new());
        let reader = spawn_slot_reader(&domain, &slots);
        slots.publish();
        domain.synchronize();
        slots.reclaim();
        reader.join().unwrap();
    });
}

#[test]
fn engine_publish_read_reclaim() {
    publish_read_reclaim(Defect::None);
}

/// Model 1, self-check: a grace period that does not wait for readers lets
/// the free race with the read, and loom says so.
#[test]
fn engine_publish_read_reclaim_catches_a_skipped_wait() {
    expect_failure(&["Causality violation", "read a reclaimed slot"], || {
        publish_read_reclaim(Defect::SkipWaitForReaders)
    });
}

/// Model 2: the forced state with the engine's code: a registered reader
/// doing two critical sections against an expedited (forced at once) grace
/// period.
fn engine_forced_state(defect: Defect) {
    model(move || {
        let domain = domain(defect);
        let registered = Arc::new(AtomicBool::new(false));
        let reader = {
            let (domain, registered) = (Arc::clone(&domain), Arc::clone(&registered));
            thread::spawn(move || {
                let reader = domain.register();
                // Release: pairs with the Acquire below.
                registered.store(true, Ordering::Release);
                for _ in 0..2 {
                    drop(reader.read_lock());
                }
            })
        };
        // Only a registered reader can hold the grace period up; starting
        // before that would only add executions where it cannot.
        while !registered.load(Ordering::Acquire) {
            thread::yield_now();
        }
        domain.synchronize_expedited();
        reader.join().unwrap();
    });
}

/// Model 2: re-arming `waiting` on every forced iteration never leaves the
/// writer blocked, however the reader's sections interleave.
#[test]
fn engine_forced_state_never_blocks_the_writer() {
    engine_forced_state(Defect::None);
}

/// Model 2 with the seed's once-only arming, through the engine's code: live
/// here, unlike in `protocol_arming_waiting_once_loses_a_wake_up`. Two
/// orderings of the engine close the window that model exploits:
///
/// 1. Each forced iteration resets the event *before* it arms `waiting`, so
///    a reader cannot consume the flag and signal before the reset that
///    would erase its signal (the protocol model resets after arming).
/// 2. Every reader the forced state waits for was seen holding the grace
///    period up by a scan that follows the heavy barrier issued after
///    `gp_ctr` was advanced. When such a reader leaves, its unlock barrier
///    is ordered after that heavy barrier, so its next `read_lock` reads the
///    new `gp_ctr`: it cannot re-enter with the stale counter that the
///    lost wake-up needs.
///
/// The engine still re-arms on every iteration: it costs one store per
/// waiting reader per iteration and does not depend on (2), which a future
/// change (a scan before the barrier, say) could silently break.
#[test]
fn engine_forced_state_arming_once_is_live_with_these_orderings() {
    engine_forced_state(Defect::ArmWaitingOnce);
}

/// Model 2, self-check: with `waiting` never armed the reader never signals,
/// and loom finds the writer blocked forever. The model can fail.
#[test]
fn engine_forced_state_catches_a_missing_wake_up() {
    expect_failure(&["deadlock"], || {
        engine_forced_state(Defect::NeverArmWaiting)
    });
}
/// Model 3: with two producers (the model's main thread and one more) and
/// the reclaim thread consuming, every callback runs exactly once, in enqueue
/// order per producer, and never before the grace period that follows its
/// enqueue. The main thread queues two callbacks and the other thread one,
/// so the other producer's append races with each of the main thread's and
/// with their order check.
///
/// Bounded to 2 preemptions. Three threads that each take several locks
/// (every callback goes through a batch, a grace period with its registry
/// scan, leader election and events, then the domain's shutdown) did not
/// finish unbounded in 15 minutes; a bound of 3 took about 200 s on CI's two
/// cores and ruled the loom stage's time, a bound of 2 takes about 5 s. The
/// bug this model once found (the reclaim thread leaving at shutdown with a
/// callback still queued) needs one preemption, and the self-check below
/// shows the bound-2 search finds it in under a second. The per-thread
/// batch's wake-up handshake, the part with a weak-memory argument, has its
/// own unbounded model (`batch::loom_model`).
#[test]
fn engine_callback_queue() {
    callback_queue_model(Defect::None);
}

/// Model 3, self-check: a reclaim thread that leaves at shutdown without
/// looking at the queue again loses a callback, and the search finds it.
#[test]
fn engine_callback_queue_catches_an_early_exit() {
    expect_failure_bounded(Some(2), &["assertion"], || {
        callback_queue_model(Defect::ExitWithoutRecheck)
    });
}

/// Callbacks that ran, as (producer, index), in the order they ran.
type Ran = Arc<Mutex<Vec<(usize, usize)>>>;

/// Queues callback `i` of producer `p`, which checks that a grace period
/// that started after the call has ended, then records itself in `ran`.
fn queue_checked(ran: &Ran, p: usize, i: usize, domain: &RcuDomain) {
    let ran = Arc::clone(ran);
    let inner = domain.inner.clone();
    let cookie = inner.cookie();
    domain.call_rcu(move || {
        assert!(inner.poll(cookie), "callback ran before its grace period");
        ran.lock().unwrap().push((p, i));
    });
}

fn callback_queue_model(defect: Defect) {
    // Callbacks per producer: the main thread queues two (its order is
    // checked), the other thread one (it races with both).
    const COUNT: [usize; 2] = [2, 1];
    bounded_model(Some(2), move || {
        let domain = domain(defect);
        let ran: Ran = Arc::new(Mutex::new(Vec::new()));
        let produce = |p: usize, domain: &RcuDomain, ran: &Ran| {
            for i in 0..COUNT[p] {
                queue_checked(ran, p, i, domain);
            }
        };
        let other = {
            let (domain, ran) = (Arc::clone(&domain), Arc::clone(&ran));
            thread::spawn(move || produce(1, &domain, &ran))
        };
        produce(0, &domain, &ran);
        other.join().unwrap();
        // Dropping the domain runs what is queued, then stops the thread.
        let Ok(domain) = Arc::try_unwrap(domain) else {
            panic!("producers are done")
        };
        drop(domain);
        let ran = ran.lock().unwrap();
        assert_eq!(ran.len(), COUNT[0] + COUNT[1], "{ran:?}");
        for (p, &count) in COUNT.iter().enumerate() {
            let order: Vec<usize> = ran
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|&(_, i)| i)
                .collect();
            assert_eq!(order, (0..count).collect::<Vec<_>>(), "{ran:?}");
        }
    });
}

/// Model 3b: a drain racing the reclaim thread for the queue (the consumer
/// token of `callbacks.rs`'s `InFlight`): whichever collects, the drain
/// returns only after every callback queued before it has run, each after
/// its grace period, each thread's in order; nothing runs twice, and the
/// domain's drop runs the rest. A drain that collected and left callbacks
/// after its marker, or a reclaim thread that missed the token's return,
/// would lose one (the final count) or hang (a deadlock the model reports).
///
/// Bounded to 2 preemptions, as the queue model above.
#[test]
fn engine_drain_races_the_reclaim_thread_for_the_queue() {
    bounded_model(Some(2), || {
        let domain = Arc::new(RcuDomain::with_config(config()));
        let ran: Ran = Arc::new(Mutex::new(Vec::new()));
        let drainer = {
            let (domain, ran) = (Arc::clone(&domain), Arc::clone(&ran));
            thread::spawn(move || {
                queue_checked(&ran, 1, 0, &domain);
                queue_checked(&ran, 1, 1, &domain);
                domain.drain();
                let ran = ran.lock().unwrap();
                assert!(
                    ran.contains(&(1, 0)) && ran.contains(&(1, 1)),
                    "drain returned before a callback queued before it ran: {ran:?}"
                );
            })
        };
        queue_checked(&ran, 0, 0, &domain);
        drainer.join().unwrap();
        let Ok(domain) = Arc::try_unwrap(domain) else {
            panic!("the drainer is done")
        };
        drop(domain);
        let ran = ran.lock().unwrap();
        assert_eq!(ran.len(), 3, "{ran:?}");
        let mine: Vec<usize> = ran
            .iter()
            .filter(|(p, _)| *p == 1)
            .map(|&(_, i)| i)
            .collect();
        assert_eq!(mine, [0, 1], "{ran:?}");
    });
}

/// Model 4: grace-period sharing: with a second caller running grace
/// periods concurrently, the writer never returns before a full grace
/// period that started after it was called.
///
/// Bounded to 3 preemptions: with three threads (reader, writer, second
/// caller), each going through the registry, the leader election and the
/// grace period's events, the unbounded search did not finish in 10 minutes.
/// The property is one of the snapshot-and-leader logic (which caller's
/// grace period covers whom), whose interleavings a small bound reaches;
/// the weak-memory side of the same reclaim is checked unbounded by model 1.
#[test]
fn engine_shared_grace_periods_are_full() {
    bounded_model(Some(3), || {
        let domain = domain(Defect::None);
        let slots = Arc::new(Slots::new());
        let reader = spawn_slot_reader(&domain, &slots);
        let other = {
            let domain = Arc::clone(&domain);
            thread::spawn(move || domain.synchronize())
        };
        slots.publish();
        domain.synchronize();
        slots.reclaim();
        reader.join().unwrap();
        other.join().unwrap();
    });
}

/// Model 5: the updater that unpublishes is not the thread that runs the
/// grace period (a follower served by another caller's grace period), and
/// the reader's snapshot of `gp_ctr` is as weak as in the real code. The
/// reader must never take the new counter as its snapshot and still read
/// the old pointer (the scan would skip it and the old slot would be freed
/// under it).
///
/// Bounded to 3 preemptions: four threads (reader, updater, a second
/// caller, main), each through the registry and the leader election.
///
/// loom cannot produce the reordering this guards against with the order
/// before the fix either (a Relaxed snapshot, a Relaxed `gp_ctr` store and a
/// cookie that was a fence plus a plain load): run against that order, this
/// model passed too (108 s). loom models the fence fallback only, where
/// every `fence(SeqCst)` joins one global clock, which already orders the
/// updater's fence before the reader's; the gap is in membarrier mode (a
/// compiler fence on the reader's side) and in the C++ model, which loom
/// is stronger than here. So the model checks that the fixed protocol is
/// live and sound with a distinct leader, and the argument for the fix is
/// written where it happens: `GracePeriods::cookie`, `run_grace_period`'s
/// `gp_ctr` store, and `Record::lock`.
#[test]
fn engine_updater_distinct_from_the_leader() {
    bounded_model(Some(3), || {
        let domain = domain(Defect::None);
        let slots = Arc::new(Slots::new());
        let reader = spawn_slot_reader(&domain, &slots);
        let leader = {
            let domain = Arc::clone(&domain);
            thread::spawn(move || domain.synchronize())
        };
        // The updater: unpublish, take a cookie, wait for it (leading a grace
        // period itself only if no other caller's serves it), then free.
        slots.publish();
        let cookie = domain.cookie();
        domain.synchronize_since(cookie);
        slots.reclaim();
        reader.join().unwrap();
        leader.join().unwrap();
    });
}

/// Model 6: model 1 with an owned guard taken on one thread and dropped on
/// another: the grace period waits for the guard wherever it is.
#[test]
fn engine_owned_guard_moved_between_threads() {
    model(|| {
        let domain = domain(Defect::None);
        let slots = Arc::new(Slots::new());
        let reader = {
            let (domain, slots) = (Arc::clone(&domain), Arc::clone(&slots));
            thread::spawn(move || {
                let guard = domain.read_lock_owned();
                slots.read();
                // Moved to another thread, which reads again and drops it.
                let slots = Arc::clone(&slots);
                thread::spawn(move || {
                    slots.read();
                    drop(guard);
                })
                .join()
                .unwrap();
            })
        };
        slots.publish();
        domain.synchronize();
        slots.reclaim();
        reader.join().unwrap();
    });
}

/// Model 7: the reclaim thread's exit after its domain's shutdown races a
/// producer that holds only a keep-alive handle (a `synchronize_async`
/// future polled after the domain's last handle was dropped). The
/// producer's callback always runs, on the exiting thread or on a new one,
/// and `drain` through that handle returns; a lost restart is a deadlock
/// the model reports, and two consumers at once would break the queue.
///
/// Bounded to 2 preemptions: four threads (main, producer, and up to two
/// reclaim threads) each going through the queue, the registry and the
/// grace period's events.
#[test]
fn engine_reclaim_thread_restarts_after_shutdown() {
    bounded_model(Some(2), || {
        let domain = RcuDomain::with_config(config());
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        domain.call_rcu(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let handle = domain.inner.clone();
        let r = Arc::clone(&ran);
        let producer = thread::spawn(move || {
            handle.call_rcu(
                &handle,
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                },
                0,
            );
            handle.drain(&handle);
        });
        drop(domain); // shutdown: the thread runs what is queued, then exits
        producer.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    });
}
