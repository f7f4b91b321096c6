//! A one-bit event with a lock-free fast path, like QEMU's `QemuEvent`.
//!
//! `set` is a single load when the event is already set, and takes the lock
//! only when a thread is (or is about to be) blocked in `wait`. `reset` never
//! blocks. The grace-period thread uses one for readers' wake-ups in the
//! forced state, the reclaim thread one for "callbacks arrived", and the
//! normal state one for "stop sleeping and force now".

use crate::barrier::AtomicCounter;
use crate::sync::{AtomicU32, Condvar, Mutex, Ordering, fence, lock};
use std::time::Duration;

const FREE: u32 = 0;
const SET: u32 = 1;
/// Not set, and at least one waiter may be blocked: `set` must notify.
const BUSY: u32 = 2;

pub(crate) struct Event {
    state: AtomicU32,
    lock: Mutex<()>,
    cond: Condvar,
    /// `set`s that found a waiter and notified it (a statistic).
    wakeups: AtomicCounter,
}

impl Event {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                state: AtomicU32::new(FREE),
                lock: Mutex::new(()),
                cond: Condvar::new(),
                wakeups: AtomicCounter::new(),
            }
        }
    }

    /// Sets the event, waking every waiter.
    ///
    /// Callers update their condition first, then `set`; waiters `reset`,
    /// then check the condition, then `wait`. The fences in `set` and
    /// `reset` make that a proper Dekker pair: either the waiter's check sees
    /// the update, or this `set` sees the waiter's reset and stores SET. (The
    /// fast path below would otherwise see a stale SET, skip the swap, and
    /// lose the wake-up that the reset erased.)
    pub(crate) fn set(&self) {
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above (pairs with the fence in
        // `reset`); the swap is what publishes.
        if self.state.load(Ordering::Relaxed) != SET
            // AcqRel: Release publishes the caller's condition to a waiter
            // whose CAS or reset reads SET; Acquire sees BUSY from `wait`.
            && self.state.swap(SET, Ordering::AcqRel) == BUSY
        {
            // Take the lock so the notify cannot fall between a waiter's check
            // of `state` and its sleep (it checks with the lock held).
            let _g = lock(&self.lock);
            self.cond.notify_all();
            self.wakeups.bump();
        }
    }

    /// How many `set`s found a waiter (or one about to block) and notified:
    /// each a system call for the setter.
    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups.get()
    }

    /// Clears the event if it is set. A `set` after this call is seen by the
    /// next `wait`, and the condition the caller checks next is at least as
    /// new as any `set` that this reset erased (see `set`).
    pub(crate) fn reset(&self) {
        // AcqRel: Acquire pairs with the Release of the `set` we erase.
        let _ = self
            .state
            .compare_exchange(SET, FREE, Ordering::AcqRel, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Takes the event's internal lock, for the fork handlers (`fork.rs`):
    /// it is held only for a few instructions in `set` and `wait`, never
    /// across a sleep (the condition variable releases it).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    pub(crate) fn lock_for_fork(&self) -> crate::sync::MutexGuard<'_, ()> {
        lock(&self.lock)
    }

    #[cfg(all(test, not(rcu_loom)))]
    pub(crate) fn is_set(&self) -> bool {
        // Acquire: a test's look.
        self.state.load(Ordering::Acquire) == SET
    }

    /// Blocks until the event is set.
    pub(crate) fn wait(&self) {
        self.wait_inner(None);
    }

    /// Blocks until the event is set or `timeout` passes. Returns whether it
    /// was set.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> bool {
        // Acquire: pairs with the Release swap in `set`.
        if self.state.load(Ordering::Acquire) == SET {
            return true;
        }
        // Announce a waiter: FREE -> BUSY (already BUSY is fine too).
        // AcqRel: Release so `set`'s swap sees BUSY; Acquire as above.
        if let Err(SET) =
            self.state
                .compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Acquire)
        {
            return true;
        }
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut g = lock(&self.lock);
        loop {
            // Acquire: as above; checked under the lock `set` notifies under.
            if self.state.load(Ordering::Acquire) == SET {
                return true;
            }
            match deadline {
                None => {
                    g = match self.cond.wait(g) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    }
                }
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    #[cfg(not(rcu_loom))]
                    {
                        g = match self.cond.wait_timeout(g, deadline - now) {
                            Ok((g, _)) => g,
                            Err(p) => p.into_inner().0,
                        };
                    }
                    #[cfg(rcu_loom)]
                    {
                        // loom has no time: a timed sleep is a yield, and the
                        // caller's poll loop plays the role of the clock.
                        drop(g);
                        crate::sync::thread::yield_now();
                        // Acquire: as above.
                        return self.state.load(Ordering::Acquire) == SET;
                    }
                }
            }
        }
    }
}

#[cfg(all(test, not(rcu_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn set_wakes_a_blocked_waiter() {
        let e = Arc::new(Event::new());
        let e2 = Arc::clone(&e);
        let t = std::thread::spawn(move || e2.wait());
        std::thread::sleep(Duration::from_millis(20));
        e.set();
        t.join().unwrap();
        assert!(e.is_set());
    }

    #[test]
    fn reset_clears_and_timeout_expires() {
        let e = Event::new();
        e.set();
        assert!(e.wait_timeout(Duration::from_millis(1)));
        e.reset();
        assert!(!e.is_set());
        assert!(!e.wait_timeout(Duration::from_millis(5)));
    }
}
