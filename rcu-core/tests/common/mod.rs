//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rcu_core::{Config, RcuDomain};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Calls its closure when dropped: a value whose drop does work (a
/// thread-local's destructor, a retired value's).
pub struct OnDrop<F: FnOnce()>(pub Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// `n`, or `miri` under Miri (which runs about a thousand times slower).
pub const fn scaled(n: usize, miri: usize) -> usize {
    if cfg!(miri) { miri } else { n }
}

/// The bound for "this stall ends": generous, because the behaviour under
/// test is that it ends at all (the unbounded alternatives are 60 s sleeps or
/// forever), and ThreadSanitizer runs these tests many times slower (a
/// panic's backtrace alone can take seconds there).
pub const STALL_BOUND: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 30 });

/// Polls `cond` until it holds or `STALL_BOUND` passes; returns whether it held.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + STALL_BOUND;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Runs `f` on a helper thread; returns whether it finished within
/// `STALL_BOUND` (the thread is left behind if not).
pub fn finishes(f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(STALL_BOUND).is_ok()
}

/// A config whose only forcing condition is the one a test turns on.
pub fn config(callback_threshold: usize, max_polls: u32, poll_interval: Duration) -> Config {
    Config::default()
        .callback_threshold(callback_threshold)
        .max_polls(max_polls)
        .poll_interval(poll_interval)
}

/// A reader thread that sits inside one critical section until its
/// force-quiescent notifier fires, then leaves and stays out.
pub struct Holder {
    pub notified: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Holder {
    /// Starts the reader and returns once it is inside its critical section.
    pub fn start(domain: &Arc<RcuDomain>) -> Holder {
        let notified = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (domain, notified, stop) =
                (Arc::clone(domain), Arc::clone(&notified), Arc::clone(&stop));
            std::thread::spawn(move || {
                let reader = domain.register();
                let n = Arc::clone(&notified);
                let _handle = reader.on_force_quiescent(move || {
                    n.fetch_add(1, Ordering::SeqCst);
                });
                let guard = reader.read_lock();
                tx.send(()).unwrap();
                while notified.load(Ordering::SeqCst) == 0 && !stop.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                    std::thread::yield_now();
                }
                drop(guard);
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        rx.recv().unwrap();
        Holder {
            notified,
            stop,
            thread: Some(thread),
        }
    }

    pub fn notifications(&self) -> usize {
        self.notified.load(Ordering::SeqCst)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A counter of drops, for leak accounting.
#[derive(Clone, Default)]
pub struct DropCount(pub Arc<AtomicUsize>);

impl DropCount {
    pub fn token(&self) -> Token {
        Token(Arc::clone(&self.0))
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The smallest executor: polls `f` on this thread until it resolves,
/// parking until woken between polls.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
