//! `synchronize_async`: a grace period as a `Future`, with no runtime
//! dependency. The reclaim thread drives it: the first poll queues a
//! callback, which marks the future done and wakes its task.
//!
//! The callback and the future share no lock: a flag and an
//! [`AtomicWaker`], whose `wake` never blocks. A lock there could be held,
//! at the instant of a `fork()`, by a thread polling the future, and the
//! child's reclaim thread would then block on it for ever.

use crate::domain::Handle;
use atomic_waker::AtomicWaker;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// What the callback and the future share: done, and who to wake.
#[derive(Default)]
struct Shared {
    done: AtomicBool,
    waker: AtomicWaker,
}

impl Shared {
    fn is_done(&self) -> bool {
        // Acquire: pairs with the callback's Release store: what the grace
        // period ordered before it is visible to the task.
        self.done.load(Ordering::Acquire)
    }
}

/// A future that resolves after a full grace period that starts after its
/// first poll. From [`synchronize_async`](crate::synchronize_async) or
/// [`RcuDomain::synchronize_async`](crate::RcuDomain::synchronize_async).
///
/// Unlike [`synchronize`](crate::synchronize) it never blocks a thread, so
/// an async task can wait for a grace period without holding up its
/// executor. Do not hold a read guard across its `.await`: the grace period
/// would wait for the guard, and the guard for the grace period. Dropping it
/// early is fine (the queued callback still runs, to no one's notice).
#[must_use = "futures do nothing unless polled"]
pub struct SynchronizeFuture {
    domain: Option<Handle>,
    shared: Option<Arc<Shared>>,
}

impl SynchronizeFuture {
    pub(crate) fn new(domain: Handle) -> Self {
        SynchronizeFuture {
            domain: Some(domain),
            shared: None,
        }
    }
}

impl Future for SynchronizeFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some(shared) = &this.shared {
            if shared.is_done() {
                return Poll::Ready(());
            }
            // Register, then look again: a callback that ran in between
            // either sees the new waker or set `done` before our second look
            // (`AtomicWaker`'s protocol).
            shared.waker.register(cx.waker());
            return if shared.is_done() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        // First poll: register the waker, then queue the callback. The
        // future counts as started only once the callback is queued: if
        // queueing panics (the reclaim thread cannot be spawned), the next
        // poll tries again and panics again, never resolving without a grace
        // period.
        let Some(domain) = &this.domain else {
            return Poll::Ready(()); // polled after completion
        };
        let shared = Arc::new(Shared::default());
        shared.waker.register(cx.waker());
        let signal = Arc::clone(&shared);
        domain.call_rcu(
            domain,
            move || {
                // Release: see `Shared::is_done`.
                signal.done.store(true, Ordering::Release);
                signal.waker.wake();
            },
            0,
        );
        // A task waits for this one: not paced.
        domain.hurry_callbacks();
        this.shared = Some(shared);
        this.domain = None;
        Poll::Pending
    }
}

impl fmt::Debug for SynchronizeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.shared {
            None => "not polled",
            Some(s) if s.is_done() => "done",
            Some(_) => "waiting",
        };
        f.debug_struct("SynchronizeFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::RcuDomain;
    use crate::domain::FAIL_SPAWN;
    use std::future::Future;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::task::{Context, Poll, Waker};

    /// A future whose callback cannot be queued (the reclaim thread cannot
    /// be spawned) panics on every poll with the spawn error, and resolves
    /// only after a real grace period once the spawn works.
    #[test]
    fn a_failed_spawn_never_resolves_the_future() {
        let domain = RcuDomain::new();
        let mut fut = std::pin::pin!(domain.synchronize_async());
        let mut cx = Context::from_waker(Waker::noop());
        FAIL_SPAWN.set(true);
        for _ in 0..2 {
            let r = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            let msg = r.expect_err("polled Ready or Pending without a reclaim thread");
            let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("cannot start the reclaim thread"), "{msg}");
        }
        FAIL_SPAWN.set(false);
        assert_eq!(domain.stats().grace_periods, 0);
        let mut polls = 0;
        while fut.as_mut().poll(&mut cx) == Poll::Pending {
            polls += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
            assert!(polls < 60_000, "never resolved");
        }
        assert!(domain.stats().grace_periods >= 1);
    }
}
