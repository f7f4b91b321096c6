//! Callbacks and the domain's callback queue (wait-free for producers,
//! one consumer at a time).
//!
//! A [`Callback`] keeps its closure inline when it fits in three words, as
//! crossbeam's `Deferred` does (a `defer_free` pointer, a `defer_drop` of a
//! `Box` or an `Arc`, a closure capturing one or two references), and boxes
//! it otherwise.
//!
//! The queue is an intrusive multi-producer single-consumer queue in the
//! style of Vyukov's and liburcu's `wfqueue`: a producer exchanges the tail
//! with its node, then links the old tail to it. Between those two steps the
//! queue is briefly "broken" at that point; the consumer, which knows from
//! the pending count that a node is coming, waits there for the link. A node
//! carries a whole batch of callbacks (a thread's per-thread batch, see
//! `batch.rs`), so one allocation and one swap move many callbacks.

use crate::sync::{AtomicPtr, Backoff, Ordering};
use std::cell::Cell;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr;

/// The most bytes one callback counts for: far above any useful memory
/// limit, and small enough that a batch's sum of them (at most
/// [`CAPACITY`](crate::batch::CAPACITY) callbacks) cannot overflow.
pub(crate) const MAX_BYTES: usize = usize::MAX / 4 / crate::batch::CAPACITY;

/// Inline storage of a callback: three words, word-aligned.
type Inline = MaybeUninit<[usize; 3]>;

/// One queued callback: a type-erased `FnOnce`, inline or boxed, and the
/// bytes it counts toward the domain's memory limit.
///
/// Dropping a `Callback` without running it leaks its closure (every queued
/// callback runs exactly once; nothing drops one otherwise).
pub(crate) struct Callback {
    /// Runs the closure stored in `data` (reading it out).
    call: unsafe fn(*mut Inline),
    data: Inline,
    bytes: usize,
}

/// Runs an `F` stored inline.
///
/// # Safety
/// `data` holds an initialised `F` (written by [`Callback::new`] for this
/// same `F`), which is read out and must not be used again.
unsafe fn call_inline<F: FnOnce()>(data: *mut Inline) {
    // SAFETY: by the contract above; `Callback::new` checked that `F` fits
    // and that `Inline`'s alignment is enough for it.
    let f = unsafe { data.cast::<F>().read() };
    f();
}

/// Runs an `F` stored as a `Box<F>`.
///
/// # Safety
/// As [`call_inline`], for a `Box<F>`.
unsafe fn call_boxed<F: FnOnce()>(data: *mut Inline) {
    // SAFETY: by the contract above (a `Box` is one word, word-aligned).
    let f = unsafe { data.cast::<Box<F>>().read() };
    f();
}

impl Callback {
    /// Wraps `f`, holding `bytes` (counted as at most [`MAX_BYTES`]).
    /// Allocates only if `f` is larger than three words or more than
    /// word-aligned.
    #[inline]
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F, bytes: usize) -> Self {
        let bytes = bytes.min(MAX_BYTES);
        let mut data = Inline::uninit();
        if size_of::<F>() <= size_of::<Inline>() && align_of::<F>() <= align_of::<Inline>() {
            // SAFETY: `F` fits in `data` (size and alignment checked above).
            unsafe { data.as_mut_ptr().cast::<F>().write(f) };
            Callback {
                call: call_inline::<F>,
                data,
                bytes,
            }
        } else {
            // SAFETY: a `Box` is one word, word-aligned.
            unsafe { data.as_mut_ptr().cast::<Box<F>>().write(Box::new(f)) };
            Callback {
                call: call_boxed::<F>,
                data,
                bytes,
            }
        }
    }

    /// The bytes it was queued with.
    #[inline]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Runs the callback (and frees it, if it was boxed).
    pub(crate) fn run(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `call` was set by `new` for the closure type stored in
        // `data`, which is initialised; `this` is never used again, so the
        // closure is read out exactly once.
        unsafe { (this.call)(&raw mut this.data) };
    }
}

// SAFETY: a `Callback` owns its closure, which is `Send` (enforced by
// `Callback::new`).
unsafe impl Send for Callback {}

/// Who queued a node's callbacks: the per-thread batch they came from (its
/// address), or [`Origin::UNKNOWN`]. Runners never run two chunks of one
/// origin at once, and run an unknown one alone (see `Ready` in
/// `callbacks.rs`), so each thread's callbacks run in the order it queued
/// them. (A batch freed after its thread exited may lend its address to a
/// new thread's: the two are then kept in order too, which costs nothing.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin(usize);

impl Origin {
    /// Callbacks whose producer is not known (a thread's last callbacks,
    /// queued after its batch is gone; `drain`'s marker; a `fork()`
    /// child's rebuilt queue): ordered with every other chunk.
    pub(crate) const UNKNOWN: Origin = Origin(0);

    /// The origin of callbacks from the batch at `batch`.
    pub(crate) fn of<T>(batch: &T) -> Origin {
        Origin(ptr::from_ref(batch).addr())
    }
}

/// Callbacks that travel together, in the order they were queued, with
/// their origin: a queue node's, then a chunk of `ready`.
pub(crate) struct Chunk {
    pub(crate) origin: Origin,
    pub(crate) callbacks: Vec<Callback>,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.callbacks.len()
    }
}

/// A queue node: a batch of callbacks.
struct Node {
    next: AtomicPtr<Node>,
    batch: Chunk,
}

pub(crate) struct Queue {
    /// The consumer's end. Touched only by the single consumer.
    head: Cell<*mut Node>,
    tail: AtomicPtr<Node>,
    /// Lives in the queue itself; the queue is pinned once `init` ran.
    stub: Node,
}

// SAFETY: `head` is accessed only by the consumer, one thread at a time:
// the holder of the domain's consumer token, under the lock the token is
// taken and given back under (`InFlight` in `callbacks.rs`), which orders
// one holder's accesses before the next's; or the child of a `fork()`,
// alone, with that lock held. The other fields are atomics. Queued
// closures are `Send`.
unsafe impl Sync for Queue {}
// SAFETY: as above.
unsafe impl Send for Queue {}

impl Queue {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            Queue {
                head: Cell::new(ptr::null_mut()),
                tail: AtomicPtr::new(ptr::null_mut()),
                stub: Node {
                    next: AtomicPtr::new(ptr::null_mut()),
                    batch: Chunk { origin: Origin::UNKNOWN, callbacks: Vec::new() },
                },
            }
        }
    }

    /// Points both ends at the stub. Must run once, after the queue has
    /// reached its final address and before any `push` or `pop`.
    pub(crate) fn init(&self) {
        let stub = ptr::from_ref(&self.stub).cast_mut();
        self.head.set(stub);
        // Release: pairs with the Acquire half of the producers' swap, so a
        // producer that reads the stub address sees it initialised. (Domain
        // start also publishes it with a Release store of its state.)
        self.tail.store(stub, Ordering::Release);
    }

    /// Enqueues `batch` (not empty). Wait-free: one allocation, one swap,
    /// one store. The caller counts the batch in the domain's pending counts
    /// *before* the push, so the consumer never takes more than is counted.
    pub(crate) fn push(&self, batch: Chunk) {
        debug_assert!(batch.len() > 0);
        let node = Box::into_raw(Box::new(Node {
            next: AtomicPtr::new(ptr::null_mut()),
            batch,
        }));
        self.push_head(node);
    }

    fn push_head(&self, node: *mut Node) {
        // AcqRel: Release publishes the node's contents to the consumer and
        // to the next producer; Acquire pairs with the previous producer's
        // Release so we may write into its node.
        let prev = self.tail.swap(node, Ordering::AcqRel);
        // SAFETY: `prev` is the stub or a node pushed earlier and not yet
        // popped: the consumer never frees a node before its `next` is set,
        // and only we set `prev.next`.
        // Release: pairs with the consumer's Acquire load of `next`.
        unsafe { (*prev).next.store(node, Ordering::Release) };
    }

    /// In the child of a `fork()`: takes every callback still reachable from
    /// the consumer's end, in order, frees their nodes, and makes the queue
    /// empty again. A producer of the parent that had swapped the tail but
    /// not yet linked its node at the instant of fork left the queue broken
    /// at that point: its node and every node pushed after it are
    /// unreachable, and leaked (see `fork.rs`).
    ///
    /// # Safety
    /// No other thread uses the queue during the call (the child's fork
    /// handler: the only thread, with the consumer's lock held), and the
    /// queue was initialised.
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    pub(crate) unsafe fn take_all_after_fork(&self) -> Vec<Callback> {
        let stub = ptr::from_ref(&self.stub).cast_mut();
        let mut taken = Vec::new();
        let mut cur = self.head.get();
        while !cur.is_null() {
            // SAFETY: `cur` is the consumer's head or was linked from a node
            // before it: the stub or a pushed node not yet handed out, which
            // only we (the sole thread) touch now.
            // Relaxed: no other thread exists.
            let next = unsafe { (*cur).next.load(Ordering::Relaxed) };
            if cur != stub {
                // SAFETY: a pushed node (from `Box::into_raw` in `push`),
                // reachable once from the head: we own it now.
                taken.extend(unsafe { Box::from_raw(cur) }.batch.callbacks);
            }
            cur = next;
        }
        // Relaxed: no other thread exists; the lock the fork handler
        // releases publishes it to the threads the child starts later.
        self.stub.next.store(ptr::null_mut(), Ordering::Relaxed);
        self.head.set(stub);
        self.tail.store(stub, Ordering::Relaxed);
        taken
    }

    /// Dequeues one batch, waiting for a producer that is between its
    /// count and its push, or between its swap and its link. The caller must
    /// know that a batch is queued or coming (the pending count says so);
    /// the consumer only (the token's holder, under its lock).
    pub(crate) fn pop(&self) -> Chunk {
        let stub = ptr::from_ref(&self.stub).cast_mut();
        let mut backoff = Backoff::new();
        loop {
            let head = self.head.get();
            // SAFETY: `head` is the stub or a pushed node the consumer has not
            // handed out; it stays allocated until we hand it out.
            // Acquire: pairs with the producer's Release store of `next`.
            let next = unsafe { (*head).next.load(Ordering::Acquire) };
            if head == stub {
                if next.is_null() {
                    backoff.snooze();
                    continue;
                }
                self.head.set(next);
                continue;
            }
            if !next.is_null() {
                self.head.set(next);
                // SAFETY: `head` is a pushed node (not the stub), from
                // `Box::into_raw` in `push`, now unlinked from the consumer's
                // end: we own it.
                return unsafe { Box::from_raw(head) }.batch;
            }
            // `head` is the last linked node. If a producer has swapped the
            // tail but not yet linked, wait for it.
            // Acquire: pairs with the producers' swap.
            if self.tail.load(Ordering::Acquire) != head {
                backoff.snooze();
                continue;
            }
            // Re-queue the stub behind `head` so `head` can be taken.
            // Relaxed: the stub is out of the queue (head != stub) and only the
            // consumer re-queues it; the swap in `push_head` publishes it.
            self.stub.next.store(ptr::null_mut(), Ordering::Relaxed);
            self.push_head(stub);
            // Loop: `head.next` is now the stub or a node pushed before it.
        }
    }
}
