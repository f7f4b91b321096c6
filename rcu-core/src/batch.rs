//! Per-thread callback batches: Linux's per-CPU callback lists, per thread.
//!
//! Each thread that calls `call_rcu` owns one [`Batch`] per domain: a ring of
//! [`CAPACITY`] callbacks with a single producer, its owner, and consumers
//! that take everything in it under the batch's lock. The owner appends with
//! no read-modify-write and no lock: it writes the slot, publishes the new
//! `tail` with a Release store, and orders that store before its look at
//! `head` with the domain's *light* barrier (a compiler fence with
//! membarrier). A closure of up to three words needs no allocation.
//!
//! A batch moves to the domain's queue as one node:
//!
//! - when it is full or holds a sixteenth of the memory limit, by its owner
//!   (one that reaches the forcing threshold only kicks the forcing checks,
//!   which count batched callbacks);
//! - before every grace period the reclaim thread starts for callbacks, by
//!   the reclaim thread (a *harvest*);
//! - when a `drain` starts, by the drainer, before it queues its marker.
//!
//! Whoever moves a batch does it under the batch's lock, counting it in the
//! domain's pending counts and pushing the node *before* unlocking. So a
//! callback queued before a `drain` (in happens-before order) reaches the
//! queue ahead of the drain's marker: its `tail` store happens before the
//! drainer's Acquire load of `tail`, so the drainer either takes it or finds
//! it taken, its node pushed before the lock it now holds was released.
//!
//! # Waking the reclaim thread
//!
//! The reclaim thread sleeps when nothing is pending and no batch is
//! *dirty*. An owner whose append finds its ring otherwise empty (`head`,
//! loaded after its light barrier, equals the slot it wrote) sets the
//! domain's dirty flag ([`Batches::mark_dirty`]) and wakes the thread if the
//! flag was clear, unless the thread is gathering callbacks (its pacing,
//! which ends in a harvest of every batch: `Callbacks::wake_for_callbacks`
//! in `callbacks.rs`). An owner that finds older callbacks still in its ring
//! relies on whoever leaves them there to come back:
//!
//! - they were there when the ring's last taker stored `head`, or were
//!   appended after it, by appends that saw the ring empty and flagged it;
//! - or a taker was between its load of `tail` and its store of `head`
//!   (or that store was not yet visible to the owner): a common race while
//!   the reclaim thread harvests a busy producer. Every take is followed by
//!   a grace period of the queue's consumer (the reclaim thread's own
//!   batch; a drainer's marker, in the batch of whoever collects it; the
//!   owner's own takes are never stale to it), and a grace period runs a
//!   *heavy* barrier. The owner's load that missed the store came before
//!   its side of that barrier, so its earlier `tail` store is visible after
//!   it: the consumer's scan after each of its grace periods
//!   ([`Batches::any_waiting`]) finds the callback and flags it, and the
//!   reclaim thread harvests again (in a stream the next harvest was
//!   coming anyway).
//!
//! The forcing threshold and the memory limit count batched callbacks too:
//! [`Batches::pending`] sums `tail - head` and the bytes of every ring.
//!
//! A thread's batch outlives the thread: the domain's list keeps it until a
//! harvest finds it empty and unowned.

use crate::barrier::Mode;
use crate::queue::{Callback, Origin};
use crate::sync::{AtomicBool, AtomicUsize, Backoff, Mutex, Ordering, fence, lock};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::compiler_fence;

/// Callbacks a batch holds at most (its owner moves it to the queue when it
/// is full, whatever the threshold). A batch is also the unit the runners
/// take after its grace period (`CHUNK` in `callbacks.rs` is as large), so
/// queue nodes are run as they come, never merged or cut.
///
/// 256: a ring of 10 KiB (40-byte callbacks) per thread and domain, from
/// its first `call_rcu`. Each move to the queue costs an allocation, a copy
/// and the reclaim thread's free of the node; against 64 slots, the
/// runner's closure rows went from 0.36–0.81x crossbeam's `defer` + `flush`
/// to 0.43–0.99x, mostly 0.94–0.99x (1 producer), and from 0.50–0.67x to
/// 0.70–0.93x (2 producers), 128 slots in between (alternating runs on 2
/// CPUs). Under Miri, 64: the tests' few hundred callbacks still fill and
/// wrap rings. On 32-bit targets, 64 too: a callback's byte count is capped
/// at a quarter of `usize::MAX` over the capacity
/// ([`MAX_BYTES`](crate::queue::MAX_BYTES)), 16 MiB with 64 slots.
pub(crate) const CAPACITY: usize = if cfg!(miri) || cfg!(target_pointer_width = "32") {
    64
} else {
    256
};

// The ring's counters wrap; `i % CAPACITY` stays in step across the wrap
// only if `CAPACITY` divides 2^64.
const _: () = assert!(CAPACITY.is_power_of_two());

/// `newer - older` for two wrapping counters read with Relaxed loads, where
/// `older` may have been read after a later change than `newer`: 0 then
/// (the difference is at most `usize::MAX / 4` when exact: see
/// [`MAX_BYTES`](crate::queue::MAX_BYTES)).
#[inline]
fn ahead(newer: usize, older: usize) -> usize {
    let d = newer.wrapping_sub(older);
    if d > usize::MAX / 2 { 0 } else { d }
}

/// One thread's batch for one domain.
pub(crate) struct Batch {
    /// Callbacks ever appended; written only by the owner.
    tail: AtomicUsize,
    /// Bytes ever appended; written only by the owner.
    tail_bytes: AtomicUsize,
    /// Held by whoever takes the callbacks out (never by a plain append).
    locked: AtomicBool,
    /// Callbacks ever taken; written only under `locked`.
    head: AtomicUsize,
    /// Bytes ever taken; written only under `locked`.
    head_bytes: AtomicUsize,
    /// Slot `i % CAPACITY` holds callback `i` for `head <= i < tail`.
    /// A fixed-size array (boxed): indexing it needs no bounds check.
    slots: Box<[UnsafeCell<MaybeUninit<Callback>>; CAPACITY]>,
}

// SAFETY: a slot is written only by the owner, and only while it is outside
// `head..tail` (the owner checks `head`, Acquire, before it writes); it is
// read only by a taker under `locked`, and only inside `head..tail` (Acquire
// load of `tail`, which the owner stores with Release after the write).
// Callbacks are `Send`.
unsafe impl Sync for Batch {}
// SAFETY: as above.
unsafe impl Send for Batch {}

/// The owner's view of its batch: only it may append (not `Send`: it
/// stays on the owner's thread).
#[cfg_attr(rcu_loom, allow(dead_code))]
pub(crate) struct Owned<'a>(&'a Batch, PhantomData<*const ()>);

/// A held [`Batch`] lock: the right to take its callbacks out.
pub(crate) struct Locked<'a>(&'a Batch);

/// What [`Owned::push`] found.
#[cfg_attr(rcu_loom, allow(dead_code))]
pub(crate) struct Pushed {
    /// Callbacks in the batch after the append (as far as the owner can
    /// tell: a concurrent take may have emptied it meanwhile).
    pub(crate) len: usize,
    /// Bytes in the batch after the append (the same).
    pub(crate) bytes: usize,
    /// The ring held nothing else: the caller flags the batch dirty.
    pub(crate) first: bool,
}

impl Batch {
    #[cfg_attr(rcu_loom, allow(dead_code))] // loom builds use it in a model only
    fn new() -> Self {
        Batch {
            tail: AtomicUsize::new(0),
            tail_bytes: AtomicUsize::new(0),
            locked: AtomicBool::new(false),
            head: AtomicUsize::new(0),
            head_bytes: AtomicUsize::new(0),
            // Built in place on the heap, not on the stack and moved (10
            // KiB, on a thread's first `call_rcu`, which may be in a
            // thread-local destructor or on a small stack).
            // SAFETY: an array of `UnsafeCell<MaybeUninit<_>>` is valid
            // uninitialised: every bit pattern is a `MaybeUninit`.
            slots: unsafe { Box::new_uninit().assume_init() },
        }
    }

    /// Takes the batch's lock: at once unless another taker holds it.
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_> {
        // Acquire (both): pairs with the Release store in `Locked::drop`:
        // we see the `head` the last holder left.
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

    /// Callbacks and bytes in the ring now (a snapshot; a concurrent append
    /// or take may make it one off).
    #[inline]
    fn snapshot(&self) -> (usize, usize) {
        // Relaxed (all): counts for the forcing checks, which only decide
        // how soon to force. The loads are not ordered with each other, so
        // a head may be newer than a tail: `ahead` reads that as empty.
        let head = self.head.load(Ordering::Relaxed);
        let head_bytes = self.head_bytes.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let tail_bytes = self.tail_bytes.load(Ordering::Relaxed);
        (ahead(tail, head), ahead(tail_bytes, head_bytes))
    }
}

#[cfg_attr(rcu_loom, allow(dead_code))]
impl Owned<'_> {
    /// The origin of this batch's callbacks in the queue and in `ready`
    /// (see [`Origin`]).
    #[inline]
    pub(crate) fn origin(&self) -> Origin {
        Origin::of(self.0)
    }

    /// Whether the ring is full (the caller then takes it under its lock
    /// before appending).
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        // Relaxed: only we write `tail`. Acquire: as in `push`.
        let tail = self.0.tail.load(Ordering::Relaxed);
        tail.wrapping_sub(self.0.head.load(Ordering::Acquire)) >= CAPACITY
    }

    /// Appends `cb`.
    ///
    /// `mode` is the domain's barrier mode: the light barrier between the
    /// `tail` store and the `head` load (module docs).
    ///
    /// # Panics
    /// If the ring is full (see [`is_full`](Self::is_full)).
    #[inline]
    pub(crate) fn push(&self, cb: Callback, mode: Mode) -> Pushed {
        let b = self.0;
        // Relaxed: only we write `tail` and `tail_bytes`.
        let tail = b.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the Release store of `head` in `take`: the
        // taker has finished reading the slots below `head`, which we may
        // now overwrite.
        let head = b.head.load(Ordering::Acquire);
        assert!(
            tail.wrapping_sub(head) < CAPACITY,
            "rcu: callback batch full"
        );
        let bytes = cb.bytes();
        // SAFETY: slot `tail` is outside `head..tail` (checked above: at
        // most `CAPACITY - 1` callbacks are in the ring), so no taker reads
        // it (module docs, and the `Sync` impl); only we, the owner, write
        // slots.
        unsafe { (*b.slots[tail % CAPACITY].get()).write(cb) };
        // Release: pairs with the Acquire load of `tail` in `take`: a taker
        // that sees the new tail sees the slot written.
        b.tail.store(tail.wrapping_add(1), Ordering::Release);
        let tail_bytes = b.tail_bytes.load(Ordering::Relaxed).wrapping_add(bytes);
        // Relaxed: a count (see `Batch::snapshot`).
        b.tail_bytes.store(tail_bytes, Ordering::Relaxed);
        // The light barrier: orders the `tail` store before the `head` load
        // below (module docs: the Dekker pair with a grace period's heavy
        // barrier).
        match mode {
            Mode::Membarrier => compiler_fence(Ordering::SeqCst),
            Mode::Fence => fence(Ordering::SeqCst),
        }
        // Relaxed: ordered by the barrier above; what it tells is only
        // whether to flag the batch.
        let head = b.head.load(Ordering::Relaxed);
        // Relaxed: as in `snapshot`.
        let head_bytes = b.head_bytes.load(Ordering::Relaxed);
        Pushed {
            len: tail.wrapping_add(1).wrapping_sub(head),
            bytes: ahead(tail_bytes, head_bytes),
            first: head == tail,
        }
    }

    /// Takes the batch's lock (to move it to the queue).
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_> {
        self.0.lock()
    }
}

impl Locked<'_> {
    /// The origin of the callbacks taken from this batch (see [`Origin`]).
    pub(crate) fn origin(&self) -> Origin {
        Origin::of(self.0)
    }

    /// Takes every callback out, in order, with their bytes; `None` if
    /// empty.
    pub(crate) fn take(&mut self) -> Option<(Vec<Callback>, usize)> {
        let b = self.0;
        // Relaxed: written only under the lock we hold.
        let head = b.head.load(Ordering::Relaxed);
        // Acquire: pairs with the owner's Release store of `tail`: we see
        // the slots it wrote.
        let tail = b.tail.load(Ordering::Acquire);
        if tail == head {
            return None;
        }
        let n = tail.wrapping_sub(head);
        // A copy into a new buffer, even of a full ring by its owner. Handing
        // the ring itself over (its buffer becoming the node's, a spare ring
        // recycled from nodes that have run taking its place) saved 16% of
        // callgrind's instructions per callback (155-161 to 135) but cost
        // the runner's 1-producer closures row 14% (0.53x to 0.46x of
        // crossbeam, medians of six alternating runs): the copy writes
        // whole lines of the new buffer (`rep movsb` needs no read for
        // ownership), where appends into a recycled ring fetch each line
        // back from the reclaim thread's cache, one 40-byte slot at a time.
        let mut items: Vec<Callback> = Vec::with_capacity(n);
        // The range in at most two runs of slots (it may wrap).
        let start = head % CAPACITY;
        let first = n.min(CAPACITY - start);
        // SAFETY: slots `head..tail` (the two runs) were written by the
        // owner before its Release store of `tail` (seen above), and it
        // writes none of them again before our store of `head` below; we
        // hold the lock, so no other taker reads them. Each is moved out
        // once (bitwise, into `items`' fresh capacity of `n`), and `items`
        // owns them from then on. `UnsafeCell<MaybeUninit<T>>` has `T`'s
        // layout.
        unsafe {
            let slots = b.slots.as_ptr().cast::<Callback>();
            let dst = items.as_mut_ptr();
            std::ptr::copy_nonoverlapping(slots.add(start), dst, first);
            std::ptr::copy_nonoverlapping(slots, dst.add(first), n - first);
            items.set_len(n);
        }
        // Wrapping, as `tail_bytes` is summed (exact: see `MAX_BYTES`).
        let bytes = items
            .iter()
            .fold(0usize, |sum, cb| sum.wrapping_add(cb.bytes()));
        // Relaxed: written only under the lock.
        let head_bytes = b.head_bytes.load(Ordering::Relaxed).wrapping_add(bytes);
        b.head_bytes.store(head_bytes, Ordering::Relaxed);
        // Release: pairs with the owner's Acquire load of `head` in `push`:
        // it overwrites these slots only after our reads.
        b.head.store(tail, Ordering::Release);
        Some((items, bytes))
    }

    /// Callbacks and bytes in the ring (those appended before the call are
    /// all counted: only a concurrent append may be missed).
    fn counts(&self) -> (usize, usize) {
        self.0.snapshot()
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

    /// This thread's batch for domain `id`, registering one at the first
    /// call. `None` while the thread's locals are being destroyed (the
    /// caller then queues directly).
    #[cfg(not(rcu_loom))]
    #[inline]
    pub(crate) fn mine(&self, id: u64) -> Option<Owned<'_>> {
        let (last_id, last) = MINE.try_with(|mine| mine.last.get()).ok()?;
        let batch = if last_id == id && !last.is_null() {
            last
        } else {
            MINE.try_with(|mine| self.register_mine(mine, id)).ok()?
        };
        // SAFETY: `batch` is this thread's batch for this domain: this
        // domain's list holds an `Arc` of it, and drops that `Arc` only once
        // the batch is unowned (this thread's `Arc` in `MINE` gone, at its
        // exit), which cannot happen while this thread borrows the domain.
        // `Owned` is `!Send`, so it stays on this thread, its only appender.
        Some(Owned(unsafe { &*batch }, PhantomData))
    }

    /// [`mine`](Self::mine) for a domain that is not the last one this
    /// thread used: finds or registers its batch and makes it the last.
    #[cfg(not(rcu_loom))]
    #[cold]
    fn register_mine(&self, mine: &Mine, id: u64) -> *const Batch {
        // Nothing in here calls back into `call_rcu`, so the borrow is
        // never taken twice.
        let mut list = mine.list.borrow_mut();
        let b = match list.iter().find(|(d, _)| *d == id) {
            Some((_, b)) => Arc::as_ptr(b),
            None => {
                // Forget batches of domains that are gone (only this
                // thread's `Arc` is left), so a thread that outlives many
                // domains does not keep one batch for each. `last` may be
                // one of them: no longer valid from here.
                mine.last.set((0, std::ptr::null()));
                list.retain(|(_, b)| Arc::strong_count(b) > 1);
                let b = Arc::new(Batch::new());
                lock(&self.list).push(Arc::clone(&b));
                let p = Arc::as_ptr(&b);
                list.push((id, b));
                p
            }
        };
        mine.last.set((id, b));
        b
    }

    /// Flags the batches for a harvest: when an append finds its batch
    /// otherwise empty, when one reaches the forcing threshold, when the
    /// reclaim thread's scan finds callbacks left, and in a `fork()` child.
    /// Returns whether the flag was clear (the caller then wakes the
    /// reclaim thread).
    ///
    /// Always a swap, never a load first: every write of the flag is a
    /// read-modify-write, so the harvester's `take_dirty` swap reads from a
    /// release sequence that includes ours and synchronises with it. That
    /// is what makes our callback (appended before) visible to the harvest
    /// that follows even when another thread had set the flag already.
    #[inline]
    pub(crate) fn mark_dirty(&self) -> bool {
        // SeqCst: as above (AcqRel would do for that); SeqCst also makes it
        // one side of the Dekker pairs with the reclaim thread's `running`
        // store and its wait (callbacks.rs).
        !cfg!(rcu_loom) && !self.dirty.swap(true, Ordering::SeqCst)
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

    /// Whether any batch holds callbacks: the reclaim thread's look after
    /// each grace period, for appends that did not flag their batch (module
    /// docs).
    pub(crate) fn any_waiting(&self) -> bool {
        if cfg!(rcu_loom) {
            return false;
        }
        lock(&self.list).iter().any(|b| b.snapshot().0 > 0)
    }

    /// Moves every batch's callbacks with `flush`, called under that batch's
    /// lock. Forgets the batches of threads that have exited, once empty.
    pub(crate) fn harvest(&self, mut flush: impl FnMut(Origin, Vec<Callback>, usize)) {
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
                flush(held.origin(), items, bytes);
            }
            drop(held);
            owned
        });
        // Orders the `head` stores above before the grace period that
        // follows every harvest (module docs), whoever leads it.
        fence(Ordering::SeqCst);
    }

    /// Runs `read` with every batch locked, passing the callbacks and bytes
    /// they hold. A batch moves to the queue entirely under its lock (taken
    /// out, counted in the domain's pending counts, pushed), so counts that
    /// `read` takes of the queue are consistent with these: no callback is
    /// counted twice (`Stats` relies on it); one being appended meanwhile
    /// may not be counted yet.
    pub(crate) fn with_all_locked<R>(&self, read: impl FnOnce(usize, usize) -> R) -> R {
        if cfg!(rcu_loom) {
            return read(0, 0);
        }
        let list = lock(&self.list);
        let held: Vec<Locked<'_>> = list.iter().map(|b| b.lock()).collect();
        let (n, bytes) = held.iter().fold((0usize, 0usize), |(n, bytes), l| {
            let (len, b) = l.counts();
            (n.saturating_add(len), bytes.saturating_add(b))
        });
        let r = read(n, bytes);
        drop(held);
        r
    }

    /// Callbacks and bytes in batches now (a snapshot, which a move may make
    /// count a callback twice or not at all; enough for the forcing checks).
    pub(crate) fn pending(&self) -> (usize, usize) {
        if cfg!(rcu_loom) {
            return (0, 0);
        }
        lock(&self.list)
            .iter()
            .fold((0usize, 0usize), |(n, bytes), b| {
                let (len, b) = b.snapshot();
                (n.saturating_add(len), bytes.saturating_add(b))
            })
    }
}

/// This thread's batches.
#[cfg(not(rcu_loom))]
struct Mine {
    /// The domain id and batch of the last `call_rcu` (a null batch: none
    /// yet): the common case needs no search and no `RefCell` borrow. The
    /// batch is one of `list`'s (`register_mine` nulls this before it
    /// changes the list).
    last: std::cell::Cell<(u64, *const Batch)>,
    /// Every batch of this thread, by domain id.
    list: std::cell::RefCell<Vec<(u64, Arc<Batch>)>>,
}

#[cfg(not(rcu_loom))]
thread_local! {
    static MINE: Mine = const {
        Mine {
            last: std::cell::Cell::new((0, std::ptr::null())),
            list: std::cell::RefCell::new(Vec::new()),
        }
    };
}

#[cfg(all(test, not(rcu_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdUsize;

    /// A callback that records its number in `log` when it runs.
    fn numbered(log: &Arc<std::sync::Mutex<Vec<usize>>>, n: usize, bytes: usize) -> Callback {
        let log = Arc::clone(log);
        Callback::new(move || log.lock().unwrap().push(n), bytes)
    }

    #[test]
    fn takes_come_out_in_order_across_the_wrap_with_their_bytes() {
        let b = Batch::new();
        let owner = Owned(&b, PhantomData);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut next = 0;
        // Rounds append and take 24 (of `CAPACITY` slots): the ring wraps
        // every few rounds, at a different place each time (twice at least
        // over the rounds), and every take must hand back exactly the
        // round, in order.
        const R: usize = 24;
        const _: () = assert!(R < CAPACITY && !CAPACITY.is_multiple_of(R));
        for round in 0..2 * CAPACITY / R + 2 {
            for i in 0..R {
                let pushed = owner.push(numbered(&log, next, 10 + i), Mode::Fence);
                assert_eq!(pushed.len, i + 1);
                assert_eq!(pushed.first, i == 0, "round {round}, append {i}");
                next += 1;
            }
            assert_eq!(b.snapshot(), (R, (10..10 + R).sum()));
            let (items, bytes) = owner.lock().take().expect("not empty");
            assert_eq!((items.len(), bytes), (R, (10..10 + R).sum()));
            assert_eq!(b.snapshot(), (0, 0));
            items.into_iter().for_each(Callback::run);
            let expect: Vec<usize> = (round * R..round * R + R).collect();
            assert_eq!(*log.lock().unwrap(), expect);
            log.lock().unwrap().clear();
        }
        assert!(owner.lock().take().is_none());
    }

    #[test]
    fn a_full_ring_says_so_and_takes_whole() {
        let b = Batch::new();
        let owner = Owned(&b, PhantomData);
        let ran = Arc::new(StdUsize::new(0));
        for i in 0..CAPACITY {
            assert!(!owner.is_full(), "after {i}");
            let ran = Arc::clone(&ran);
            owner.push(
                Callback::new(
                    move || {
                        ran.fetch_add(1, Ordering::Relaxed);
                    },
                    0,
                ),
                Mode::Fence,
            );
        }
        assert!(owner.is_full());
        let (items, _) = owner.lock().take().expect("full");
        assert_eq!(items.len(), CAPACITY);
        assert!(!owner.is_full());
        items.into_iter().for_each(Callback::run);
        assert_eq!(ran.load(Ordering::Relaxed), CAPACITY);
    }

    #[test]
    fn huge_byte_counts_are_capped_and_leave_nothing_behind() {
        // `defer_drop_sized` lets a caller claim any size: each callback
        // counts for at most `MAX_BYTES`, so a batch's sum is exact.
        use crate::queue::MAX_BYTES;
        let b = Batch::new();
        let owner = Owned(&b, PhantomData);
        let first = owner.push(Callback::new(|| {}, usize::MAX), Mode::Fence);
        assert_eq!(first.bytes, MAX_BYTES);
        let second = owner.push(Callback::new(|| {}, usize::MAX / 32), Mode::Fence);
        assert_eq!(second.bytes, 2 * MAX_BYTES);
        assert_eq!(b.snapshot(), (2, 2 * MAX_BYTES));
        let (items, bytes) = owner.lock().take().expect("two");
        assert_eq!(bytes, 2 * MAX_BYTES);
        items.into_iter().for_each(Callback::run);
        assert_eq!(b.snapshot(), (0, 0));
        let third = owner.push(Callback::new(|| {}, 7), Mode::Fence);
        assert_eq!((third.len, third.bytes, third.first), (1, 7, true));
    }

    #[test]
    #[should_panic(expected = "callback batch full")]
    fn appending_to_a_full_ring_panics() {
        let b = Batch::new();
        let owner = Owned(&b, PhantomData);
        for _ in 0..=CAPACITY {
            // Leaked (never run): empty closures.
            owner.push(Callback::new(|| {}, 0), Mode::Fence);
        }
    }

    #[test]
    fn a_taker_on_another_thread_sees_every_append_once() {
        // The owner appends while another thread takes under the lock, as
        // the reclaim thread harvests: every callback is taken exactly once,
        // in order.
        const N: usize = if cfg!(miri) { 300 } else { 100_000 };
        let b = Arc::new(Batch::new());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let taker = {
            let (b, done) = (Arc::clone(&b), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                loop {
                    let finished = done.load(Ordering::Acquire);
                    if let Some((items, _)) = b.lock().take() {
                        taken.extend(items);
                    }
                    if finished {
                        return taken;
                    }
                }
            })
        };
        let owner = Owned(&b, PhantomData);
        for n in 0..N {
            while owner.is_full() {
                std::thread::yield_now();
            }
            owner.push(numbered(&log, n, 1), Mode::Membarrier);
        }
        done.store(true, Ordering::Release);
        let taken = taker.join().unwrap();
        assert_eq!(taken.len(), N);
        taken.into_iter().for_each(Callback::run);
        assert_eq!(*log.lock().unwrap(), (0..N).collect::<Vec<_>>());
    }
}

/// The wake-up protocol of the module docs, model-checked: an owner appends
/// while a harvest takes the ring, then runs its grace period's heavy
/// barrier and its scan. Whatever the interleaving, a callback left in the
/// ring is flagged or seen by the scan (so the reclaim thread comes back
/// for it). Fence mode: loom has no membarrier, and the light barrier is a
/// fence there; the membarrier case rests on the same pairing.
#[cfg(all(test, rcu_loom))]
mod loom_model {
    use super::*;
    use crate::sync::thread;

    /// One run: the owner appends `appends` callbacks; the other thread
    /// clears the flag and takes the ring (a harvest), then, if `scan`,
    /// runs the heavy barrier and looks at the ring again. Panics with
    /// "left unflagged" if a callback can stay in the ring unflagged and
    /// unseen.
    fn run(appends: usize, scan: bool) {
        loom::model(move || {
            let b = Arc::new(Batch::new());
            let dirty = Arc::new(AtomicBool::new(false));
            let harvester = {
                let (b, dirty) = (Arc::clone(&b), Arc::clone(&dirty));
                thread::spawn(move || {
                    // `take_dirty`, then the harvest's take.
                    dirty.swap(false, Ordering::SeqCst);
                    let taken = b.lock().take().map_or(0, |(items, _)| {
                        let n = items.len();
                        items.into_iter().for_each(Callback::run);
                        n
                    });
                    // The grace period's heavy barrier, then the scan.
                    let seen = scan && {
                        fence(Ordering::SeqCst);
                        b.snapshot().0 > 0
                    };
                    (taken, seen)
                })
            };
            let owner = Owned(&b, PhantomData);
            for _ in 0..appends {
                let pushed = owner.push(Callback::new(|| {}, 1), Mode::Fence);
                if pushed.first {
                    dirty.swap(true, Ordering::SeqCst);
                }
            }
            let (taken, seen) = harvester.join().unwrap();
            // Exact now: both threads are done.
            let left = b.snapshot().0;
            assert_eq!(taken + left, appends, "a callback lost or taken twice");
            if left > 0 {
                assert!(
                    dirty.load(Ordering::SeqCst) || seen,
                    "a callback left unflagged and unseen in the ring"
                );
            }
            // Leftovers run here, as a later harvest would run them.
            if let Some((items, _)) = b.lock().take() {
                items.into_iter().for_each(Callback::run);
            }
        });
    }

    #[test]
    fn an_append_racing_a_harvest_is_flagged_or_seen_by_the_scan() {
        run(2, true);
    }

    /// Self-check: without the scan after the grace period, the model must
    /// find the interleaving where an append reads `head` before the
    /// harvest's store and so does not flag the ring.
    #[test]
    #[should_panic(expected = "left unflagged")]
    fn without_the_scan_a_callback_can_be_left_unflagged() {
        run(2, false);
    }
}
