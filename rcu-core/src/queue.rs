//! The callback queue: wait-free for producers, single consumer.
//!
//! An intrusive multi-producer single-consumer queue in the style of
//! Vyukov's and liburcu's `wfqueue`: a producer exchanges the tail with its
//! node, then links the old tail to it. Between those two steps the queue is
//! briefly "broken" at that point; the consumer, which knows from the pending
//! count that a node is coming, waits there for the link. Each callback is one
//! allocation: the closure lives in the node, next to a type-erased `run`.

use crate::sync::{AtomicPtr, Backoff, Ordering};
use std::cell::Cell;
use std::ptr;

/// The type-erased part of a queued callback.
#[repr(C)]
pub(crate) struct Head {
    next: AtomicPtr<Head>,
    /// Runs and frees the node. Null only for the stub.
    run: Option<unsafe fn(*mut Head)>,
    /// Bytes the callback holds, counted toward the domain's memory limit.
    bytes: usize,
}

#[repr(C)]
struct Node<F> {
    head: Head,
    f: F,
}

/// Runs and frees a `Node<F>`.
///
/// # Safety
/// `head` must come from `Box::into_raw(Box<Node<F>>)` in [`Queue::push`], for
/// this same `F`, and must not be used again.
unsafe fn run_node<F: FnOnce()>(head: *mut Head) {
    // SAFETY: by the contract above, `head` is the first field of a
    // `#[repr(C)] Node<F>` allocated as a `Box`, so the cast recovers it, and
    // we are its only owner.
    let node = unsafe { Box::from_raw(head.cast::<Node<F>>()) };
    (node.f)();
}

/// A callback taken off the queue.
pub(crate) struct Callback(*mut Head);

impl Callback {
    /// The bytes it was queued with.
    pub(crate) fn bytes(&self) -> usize {
        // SAFETY: `self.0` is a popped, not yet run node that we own.
        unsafe { (*self.0).bytes }
    }

    /// Runs the callback and frees it.
    pub(crate) fn run(self) {
        let head = self.0;
        // SAFETY: `head` was pushed by `Queue::push` (never the stub: `pop`
        // never returns it) and popped exactly once, so we own it; `run` was
        // set for its concrete type.
        unsafe {
            let run = (*head).run.expect("the stub is never handed out");
            run(head);
        }
    }
}

// SAFETY: a `Callback` owns its node, whose closure is `Send` (enforced by
// `Queue::push`).
unsafe impl Send for Callback {}

pub(crate) struct Queue {
    /// The consumer's end. Touched only by the single consumer.
    head: Cell<*mut Head>,
    tail: AtomicPtr<Head>,
    /// Lives in the queue itself; the queue is pinned once `init` ran.
    stub: Head,
}

// SAFETY: `head` is accessed only by the single consumer (the domain's
// reclaim thread, or the domain's `Drop` after that thread is joined); the
// other fields are atomics. Queued closures are `Send`.
unsafe impl Sync for Queue {}
// SAFETY: as above.
unsafe impl Send for Queue {}

impl Queue {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            Queue {
                head: Cell::new(ptr::null_mut()),
                tail: AtomicPtr::new(ptr::null_mut()),
                stub: Head { next: AtomicPtr::new(ptr::null_mut()), run: None, bytes: 0 },
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

    /// Enqueues `f`, holding `bytes`. Wait-free: one allocation, one swap,
    /// one store.
    pub(crate) fn push<F: FnOnce() + Send + 'static>(&self, f: F, bytes: usize) {
        let node = Box::into_raw(Box::new(Node {
            head: Head {
                next: AtomicPtr::new(ptr::null_mut()),
                run: Some(run_node::<F>),
                bytes,
            },
            f,
        }))
        .cast::<Head>();
        self.push_head(node);
    }

    fn push_head(&self, node: *mut Head) {
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

    /// Dequeues one callback, waiting for a producer that is between its
    /// swap and its link. The caller must know that an element is queued
    /// (the pending count says so); single consumer only.
    pub(crate) fn pop(&self) -> Callback {
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
                return Callback(head);
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
