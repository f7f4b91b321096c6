//! Per-thread callback batches: Linux's per-CPU callback lists, per thread.
//!
//! `call_rcu` appends to its thread's batch for the domain, under a lock that
//! only the owner and a harvester ever take (uncontended: one
//! compare-exchange and one store), with no allocation for a closure of up to
//! three words. A batch moves to the domain's queue as one node:
//!
//! - when it fills (`callback_threshold` callbacks, or a sixteenth of the
//!   memory limit), by its owner;
//! - before every grace period the reclaim thread starts for callbacks, by
//!   the reclaim thread (a *harvest*; [`Batches::take_dirty`] says whether
//!   any batch gained a callback since the last one);
//! - when a `drain` starts, by the drainer, before it queues its marker.
//!
//! Whoever moves a batch does it under the batch's lock, counting it in the
//! domain's pending counts and pushing the node *before* unlocking. So a
//! callback queued before a `drain` (in happens-before order) reaches the
//! queue ahead of the drain's marker: the drainer takes the owner's lock after
//! that callback was appended, and either finds it there or finds it moved,
//! its node pushed before the lock was released.
//!
//! The forcing threshold and the memory limit count batched callbacks too:
//! [`Batches::pending`] sums the batches' published counts.
//!
//! A thread's batch outlives the thread: the domain's list keeps it until a
//! harvest finds it empty and unowned.

use crate::queue::Callback;
use crate::sync::{AtomicBool, AtomicUsize, Backoff, Mutex, Ordering, fence, lock};
use std::cell::UnsafeCell;
use std::sync::Arc;

/// One thread's batch for one domain.
pub(crate) struct Batch {
    /// Held by the owner while it appends, and by whoever moves the batch.
    locked: AtomicBool,
    /// Guarded by `locked`.
    items: UnsafeCell<Vec<Callback>>,
    /// Guarded by `locked`: the bytes `items` hold.
    bytes: UnsafeCell<usize>,
    /// `items.len()` and `bytes`, published for [`Batches::pending`].
    published_len: AtomicUsize,
    published_bytes: AtomicUsize,
}

// SAFETY: `items` and `bytes` are accessed only under `locked` (an
// Acquire/Release lock); callbacks are `Send`.
unsafe impl Sync for Batch {}
// SAFETY: as above.
unsafe impl Send for Batch {}

/// A held [`Batch`] lock.
pub(crate) struct Locked<'a>(&'a Batch);

impl Batch {
    #[cfg(not(rcu_loom))]
    fn new() -> Self {
        Batch {
            locked: AtomicBool::new(false),
            items: UnsafeCell::new(Vec::new()),
            bytes: UnsafeCell::new(0),
            published_len: AtomicUsize::new(0),
            published_bytes: AtomicUsize::new(0),
        }
    }

    /// Takes the batch's lock: at once for the owner unless a harvester
    /// holds it (for a few instructions).
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_> {
        // Acquire (both): pairs with the Release store in `Locked::drop`:
        // we see the items and counts the last holder left.
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            let mut backoff = Backoff::new();
            while self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                backoff.snooze();
            }
        }
        Locked(self)
    }
}

impl Locked<'_> {
    /// Appends `cb`; returns the batch's length and bytes after it.
    #[cfg(not(rcu_loom))]
    #[inline]
    pub(crate) fn push(&mut self, cb: Callback) -> (usize, usize) {
        // SAFETY: we hold the lock, which guards `items` and `bytes`.
        let (items, bytes) = unsafe { (&mut *self.0.items.get(), &mut *self.0.bytes.get()) };
        *bytes = bytes.saturating_add(cb.bytes());
        items.push(cb);
        self.publish(items.len(), *bytes);
        (items.len(), *bytes)
    }

    /// Takes every callback out, with their bytes; `None` if empty.
    pub(crate) fn take(&mut self) -> Option<(Vec<Callback>, usize)> {
        // SAFETY: as in `push`.
        let (items, bytes) = unsafe { (&mut *self.0.items.get(), &mut *self.0.bytes.get()) };
        if items.is_empty() {
            return None;
        }
        // The next batch will likely grow as large: allocate it once.
        let next = Vec::with_capacity(items.len());
        let taken = (std::mem::replace(items, next), std::mem::take(bytes));
        self.publish(0, 0);
        Some(taken)
    }

    /// The batch's length and bytes (exact: read under its lock).
    fn counts(&self) -> (usize, usize) {
        // SAFETY: as in `push`; shared reads only.
        unsafe { ((*self.0.items.get()).len(), *self.0.bytes.get()) }
    }

    #[inline]
    fn publish(&self, len: usize, bytes: usize) {
        // Relaxed: a count for the forcing checks, which only decide how
        // soon to force; the lock orders the items themselves.
        self.0.published_len.store(len, Ordering::Relaxed);
        self.0.published_bytes.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for Locked<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: pairs with the Acquire compare-exchange in `Batch::lock`.
        self.0.locked.store(false, Ordering::Release);
    }
}

/// A domain's per-thread batches.
///
/// Under loom `call_rcu` queues each callback directly (models have few
/// callbacks, and a batch would only add states): the batches are always
/// empty and their flag is never set, and the methods touch no atomics.
pub(crate) struct Batches {
    /// Every thread's batch (registered at its first `call_rcu`).
    pub(crate) list: Mutex<Vec<Arc<Batch>>>,
    /// Set when a callback goes into an empty batch; cleared by a harvest.
    dirty: AtomicBool,
}

impl Batches {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            Batches { list: Mutex::new(Vec::new()), dirty: AtomicBool::new(false) }
        }
    }

    /// Runs `f` on this thread's batch for domain `id`, registering one at
    /// the first call. `None` while the thread's locals are being destroyed
    /// (the caller then queues directly).
    #[cfg(not(rcu_loom))]
    #[inline]
    pub(crate) fn with_mine<R>(&self, id: u64, f: impl FnOnce(&Batch) -> R) -> Option<R> {
        MINE.try_with(|mine| {
            // `f` never re-enters: it appends and may push to the queue,
            // nothing that calls back into `call_rcu`.
            let mut mine = mine.borrow_mut();
            if let Some(b) = mine.iter().find(|(d, _)| *d == id).map(|(_, b)| b) {
                return f(b);
            }
            // Forget batches of domains that are gone (only this thread's
            // `Arc` is left), so a thread that outlives many domains does
            // not keep one batch for each.
            mine.retain(|(_, b)| Arc::strong_count(b) > 1);
            let b = Arc::new(Batch::new());
            lock(&self.list).push(Arc::clone(&b));
            mine.push((id, b));
            f(&mine.last().expect("just pushed").1)
        })
        .ok()
    }

    /// Notes that a batch went from empty to not empty (once per harvest,
    /// per thread). Returns whether the flag was clear (the caller then
    /// wakes the reclaim thread).
    ///
    /// Always a swap, never a load first: every write of the flag is a
    /// read-modify-write, so the harvester's `take_dirty` swap reads from a
    /// release sequence that includes ours and synchronises with it. That
    /// is what makes our callback (appended before, under the batch's lock)
    /// visible to the harvest that follows even when another thread had
    /// set the flag already.
    #[cfg(not(rcu_loom))]
    #[inline]
    pub(crate) fn mark_dirty(&self) -> bool {
        // SeqCst: as above (AcqRel would do for that); SeqCst also makes it
        // one side of the Dekker pairs with the reclaim thread's `running`
        // store and its wait (callbacks.rs).
        !self.dirty.swap(true, Ordering::SeqCst)
    }

    /// Clears the dirty flag; returns whether it was set (then a harvest
    /// must follow).
    pub(crate) fn take_dirty(&self) -> bool {
        // SeqCst: see `mark_dirty`.
        !cfg!(rcu_loom) && self.dirty.swap(false, Ordering::SeqCst)
    }

    /// Whether a batch may hold callbacks not yet harvested.
    pub(crate) fn is_dirty(&self) -> bool {
        // SeqCst: see `mark_dirty`.
        !cfg!(rcu_loom) && self.dirty.load(Ordering::SeqCst)
    }

    /// Moves every batch's callbacks with `flush`, called under that batch's
    /// lock. Forgets the batches of threads that have exited, once empty.
    pub(crate) fn harvest(&self, mut flush: impl FnMut(Vec<Callback>, usize)) {
        if cfg!(rcu_loom) {
            return;
        }
        let mut list = lock(&self.list);
        list.retain(|b| {
            // Looked at *before* the take: once only the list holds the
            // batch, its thread has exited (its thread-local `Arc` is gone)
            // and can append no more, so the take below empties it for good.
            let owned = Arc::strong_count(b) > 1;
            if !owned {
                // Acquire: pairs with the Release decrement of the owner's
                // `Arc` drop, which follows its last append: the take below
                // sees that append.
                fence(Ordering::Acquire);
            }
            let mut held = b.lock();
            if let Some((items, bytes)) = held.take() {
                // Under the lock: see the module docs.
                flush(items, bytes);
            }
            drop(held);
            owned
        });
    }

    /// Runs `read` with every batch locked, passing the callbacks and bytes
    /// they hold. A batch moves to the queue entirely under its lock (taken
    /// out, counted in the domain's pending counts, pushed), so counts that
    /// `read` takes of the queue are consistent with these: no callback is
    /// counted twice or missed (`Stats` relies on it).
    pub(crate) fn with_all_locked<R>(&self, read: impl FnOnce(usize, usize) -> R) -> R {
        if cfg!(rcu_loom) {
            return read(0, 0);
        }
        let list = lock(&self.list);
        let held: Vec<Locked<'_>> = list.iter().map(|b| b.lock()).collect();
        let (n, bytes) = held.iter().fold((0, 0), |(n, bytes), l| {
            let (len, b) = l.counts();
            (n + len, bytes + b)
        });
        let r = read(n, bytes);
        drop(held);
        r
    }

    /// Callbacks and bytes in batches now (a snapshot of their published
    /// counts, which a move may make count a callback twice or not at all;
    /// enough for the forcing checks).
    pub(crate) fn pending(&self) -> (usize, usize) {
        if cfg!(rcu_loom) {
            return (0, 0);
        }
        lock(&self.list).iter().fold((0, 0), |(n, bytes), b| {
            // Relaxed: see `Locked::publish`.
            (
                n + b.published_len.load(Ordering::Relaxed),
                bytes + b.published_bytes.load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(not(rcu_loom))]
thread_local! {
    /// This thread's batches, by domain id.
    static MINE: std::cell::RefCell<Vec<(u64, Arc<Batch>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}
