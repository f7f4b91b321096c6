//! Userspace RCU for Rust, after QEMU's "unify force quiescent state" design.
//!
//! # Summary
//!
//! Read-copy-update lets readers walk shared data with no locks, no atomic
//! read-modify-write and (on Linux) no memory fence, while writers publish new
//! versions and reclaim old ones only after a *grace period*: once every
//! reader that might still see an old version has left its read-side
//! critical section.
//!
//! * Readers: [`read_lock`] returns a [`ReadGuard`]; the critical section
//!   lasts until it is dropped. Entering and leaving cost two plain stores and
//!   a predicted branch each (see [How it works](#how-it-works)).
//! * Writers: [`synchronize`] waits for a grace period; [`call_rcu`] and
//!   [`defer_drop`] queue work for a background reclaim thread to run after
//!   one; [`drain`] waits for everything queued so far.
//! * Pointers: [`RcuPtr`] (atomic owning pointer) and [`RcuCell`] (always
//!   holds a value; copy-update) are the safe building blocks.
//! * Long readers: a thread that stays inside a critical section for long (an
//!   event loop) registers a notifier with [`on_force_quiescent`]; when a
//!   grace period is *forced*, the notifier asks it to step out, so it can
//!   never stall reclamation.
//!
//! ```
//! use rcu_core::{RcuCell, read_lock};
//!
//! let config = RcuCell::new(vec!["a".to_string()]);
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let guard = read_lock();
//!         assert!(!config.read(&guard).is_empty()); // no lock, no RMW
//!     });
//!     // The old vector is dropped by the reclaim thread after a grace period.
//!     config.update(|old| { let mut v = old.clone(); v.push("b".into()); v });
//! });
//! rcu_core::drain();
//! ```
//!
//! # Trade-offs
//!
//! * Readers are as cheap as reading gets; writers pay instead. A grace
//!   period costs one `membarrier(2)` system call (about 0.2 µs on an idle
//!   process, more when the process's other threads are running), and it
//!   waits for the slowest reader in a critical section.
//! * Memory is reclaimed in batches, after grace periods, not at once.
//!   Callbacks pile up while a reader holds a grace period up; the forced
//!   state (below) bounds how long that lasts for readers that cooperate
//!   through notifiers.
//! * A guard must not be held across blocking waits for other RCU writers on
//!   the same thread: [`synchronize`] inside a critical section would wait for
//!   itself, and panics instead.
//! * A grace period waits for readers to be *scheduled*. With one busy
//!   reader per CPU it takes about 10 µs; with more busy readers than CPUs
//!   it takes as long as the scheduler needs to run each of them once:
//!   milliseconds (measured on 2 CPUs with 4 busy readers: median 4–20 ms,
//!   99th percentile up to 245 ms). Prefer [`call_rcu`], [`start_poll`] or
//!   [`synchronize_async`] to blocking in [`synchronize`] there.
//! * What a writer pays: [`RcuCell::update`] takes the cell's writer lock,
//!   runs the closure, allocates the new value, and queues the old one to
//!   be dropped after a grace period (one `call_rcu`); it waits for no
//!   grace period.
//!   [`synchronize`] waits for one. [`call_rcu`] appends to the calling
//!   thread's batch with plain stores (no lock, no fence with membarrier,
//!   one swap of a domain-wide flag at the first append after each harvest;
//!   no allocation for a closure of up to three words, such as a
//!   [`defer_drop`] of a `Box`); a full batch (256
//!   callbacks) moves to the domain's queue with two allocations and one
//!   swap, and the reclaim thread harvests every thread's batch before each
//!   grace period, so nothing waits on its thread to flush it. A batch is a
//!   10 KiB ring (2.5 KiB on 32-bit targets), one per thread and domain from
//!   the thread's first [`call_rcu`] there, kept until a harvest finds it
//!   empty after the thread has exited (in the child of a `fork()`, the
//!   batches of the parent's other threads are kept for good). Over
//!   [`Config::memory_limit`] the caller helps run callbacks.
//!
//! # Deployment notes
//!
//! * **Sandboxes**: membarrier refused at start means fence mode (reported
//!   once through the event hook, [`RcuEvent::MembarrierUnavailable`], or
//!   refused with [`Config::require_membarrier`]); refused after start, the
//!   heavy barrier switches to an `mprotect` IPI on x86-64, and elsewhere
//!   (arm64) to a signal to every thread whose handler fences, liburcu's
//!   signal flavour, which takes the real-time signal `SIGRTMAX - 3` for the
//!   process ([`RcuEvent::MembarrierRevoked`], [`Stats::membarrier_revoked`]).
//!   Where neither can work (the signal in use or kept blocked by a thread,
//!   no `/proc/self/task`) the process stops with a message rather than run
//!   readers unordered.
//! * **Thread-local teardown**: destructors may run in any order; a guard
//!   kept in a thread-local outlives the thread's registration safely, and
//!   its record is released when it drops.
//! * **`fork()`** (Unix; handlers installed with `pthread_atfork` when the
//!   first domain starts): the child can use RCU at once. Only the forking
//!   thread exists there, so the records of every other thread are freed,
//!   even inside a critical section, and so are those of the
//!   [`LocalReadGuard`]s they held at the fork (only their taker can drop
//!   them): none holds up a grace period (their notifiers are leaked, not
//!   dropped); the
//!   forking thread's critical sections, and [`OwnedReadGuard`]s (which exist
//!   in the child's memory), stay open until they are dropped there (an
//!   owned guard that only a vanished thread could drop holds up the child's
//!   grace periods forever, like a leaked guard). A grace period that another
//!   thread was running does not count as ended in the child. Callbacks
//!   pending at fork (queued, batched by any thread, or waiting for their
//!   grace period on the reclaim thread) run in the child too: each process
//!   frees its own copy, and **a callback with outside effects (I/O, a
//!   message) has them twice**. The child's reclaim thread starts on demand
//!   (its next [`call_rcu`], [`drain`], [`start_poll`] or
//!   [`synchronize_async`]; a [`poll`] starts none); if the forking thread is
//!   a reclaim thread (a fork from a callback), it goes on being one. The
//!   prepare handler waits for no grace period, no reclaim thread and no
//!   user code: it takes the engine's internal locks, each held elsewhere
//!   only for a few instructions or a system call, so the child inherits
//!   none held and no half-made change; the parent handler releases them
//!   and changes nothing else. Every fork pays for this (a lock per domain,
//!   record and batch; in the child, a walk of the registries and pending
//!   callbacks). Limits: in the child, callbacks that another thread was
//!   running at the instant of fork (the rest of its chunk, at most 256) are
//!   leaked, not run, and so are those of a push another thread had half
//!   done at that instant, with every push behind it (those are left out
//!   of `callbacks_queued`, which is recounted; the rest of a running chunk
//!   counts as run); a domain whose
//!   last handle was dropped before the fork runs its pending callbacks in
//!   the parent only; the membarrier registration is inherited (the kernel
//!   clears it only at `exec`) and renewed in the child. Locks outside the
//!   engine are not covered: Rust's standard library takes a process-wide
//!   lock while any thread starts or exits, and a fork at that instant
//!   leaves the child unable to start threads (the reclaim thread too). As
//!   with any multi-threaded `fork`, prefer `exec` in the child when you
//!   can. `std::process::Command` usually starts children with the C
//!   library's `posix_spawn` (no fork handlers run); with a `pre_exec`
//!   closure (among other settings) it forks, and they run as above.
//! * **Exit**: callbacks still pending in the process-wide domain at exit
//!   do not run; [`drain`] first if they matter.
//!
//! # How it works
//!
//! A global 64-bit counter `gp_ctr` (odd, +2 per grace period) and one
//! cache-line-sized record per reader thread, in a registry:
//!
//! * **Lock**: one load of the reader's own `ctr` decides. 0 (outermost
//!   level): copy `gp_ctr` into it, then a *light* barrier. A snapshot (odd):
//!   count one nesting level. Anything else goes out of line: a fence-mode
//!   record (it idles at an even value that is not 0), or a thread with no
//!   record yet (its thread-local pointer names a shared sentinel record
//!   until the out-of-line path registers it: no null check). **Unlock**: the
//!   owner-only nesting word is 0 at the outermost level in membarrier mode:
//!   store 0, light barrier, then one test of the record's flags byte, zero
//!   on the fast path (its slow path signals a forced grace period that set
//!   `waiting`, or releases a record whose thread let go of it). A fence-mode
//!   record carries a bit in its nesting word, so its outermost unlock goes
//!   out of line, where the fence is. A reader holds up a grace period when
//!   its `ctr` is a snapshot other than `gp_ctr`. In membarrier mode an outer
//!   pair costs 13 instructions, a nested one 12, an `RcuCell::read` with
//!   its lock 15 (callgrind, with the probe `benches/examples/read_path.rs`;
//!   crossbeam-epoch's `pin` 41 there).
//! * **Barriers**: on Linux the process registers for
//!   `MEMBARRIER_CMD_PRIVATE_EXPEDITED` once; the light barrier is then only a
//!   compiler fence, and the grace period's *heavy* barrier is the membarrier
//!   system call, which executes a full fence on every running thread of the
//!   process. Elsewhere (or under Miri, loom, seccomp, or with
//!   `RCU_NO_MEMBARRIER=1`) both are `fence(SeqCst)`. [`Stats::membarrier`]
//!   says which.
//! * **Grace period**: heavy barrier, `gp_ctr += 2`, then wait for the
//!   readers that hold it up, in two states (the seed's unification):
//!   - *Normal*: rescan a few times (spinning, then yielding), then sleep
//!     `poll_interval` (10 ms) between scans. Readers are never asked to
//!     signal, so their unlock never leaves its fast path.
//!   - *Forced*, entered when ≥ `callback_threshold` (30) callbacks are
//!     pending (or they hold `memory_limit` bytes), after `max_polls` (5)
//!     sleeps, while a [`drain`] runs, or for
//!     [`synchronize_expedited`]: call the force-quiescent notifiers of the
//!     readers still holding it up, then loop: reset the event, set `waiting`
//!     on each of them, heavy barrier, rescan, block on the event. `waiting`
//!     is re-armed on *every* iteration: the seed patch set it once, and a
//!     reader that clears it and re-enters with a stale counter would leave
//!     the writer blocked forever. The sleep of the normal state is
//!     interruptible, so a forcing condition acts at once.
//! * **Sharing**: concurrent [`synchronize`] callers share grace periods
//!   (a sequence snapshot, as in Linux): a caller waits for the end of the
//!   first grace period that starts after it arrived, whoever runs it.
//! * **Callbacks**: [`call_rcu`] appends to the thread's own batch; the
//!   reclaim thread harvests every batch and starts a grace period as soon
//!   as a callback arrives while it is idle and no reader runs (the seed
//!   removed QEMU's 10–50 ms batching delay), then runs the callbacks
//!   counted before it, in order, catching panics. Under a stream of
//!   callbacks (some arrived while the last batch waited for its grace
//!   period), or while readers run (the domain's latest grace period found
//!   one inside a critical section), it *paces*: it gathers for up to
//!   [`Config::callback_pacing`] (1 ms) after the last grace period ended,
//!   or until half the memory limit, a [`drain`], a [`start_poll`] or a
//!   task awaiting [`synchronize_async`] want one now. Back-to-back grace
//!   periods would otherwise cost every running thread a membarrier IPI
//!   each, tens of thousands a second. The forcing threshold does not end
//!   the gathering (a writer retiring a node every 100 ns reaches it every
//!   few microseconds); the grace period that follows counts everything
//!   gathered for it. A [`drain`] that finds the reclaim thread not
//!   collecting a batch (idle, gathering, or running one) collects the
//!   pending callbacks itself, waits for their grace period and runs them
//!   up to its marker on its own thread, as crossbeam's `flush` runs
//!   deferred functions on the caller's: no hand-off to the reclaim thread
//!   and back, two thread wake-ups that cost 55–70 µs on a VM, against a
//!   grace period of a few microseconds. A thread that keeps calling
//!   [`call_rcu`] runs its own callbacks whose grace period has ended, a
//!   chunk or two each time its batch fills, and under a stream the
//!   reclaim thread leaves each batch to its producers for the first 1 ms
//!   of its pacing: memory is freed on the thread that allocated it, as
//!   crossbeam's `defer` and Linux's per-CPU callback lists do
//!   ([`Config::offload_callbacks`] turns that off). Over the memory limit,
//!   producers help run anyone's callbacks whose grace period has ended
//!   ([`Config::memory_limit`]). Never are two chunks of one thread's
//!   callbacks run at once: each thread's callbacks run in the order it
//!   queued them.
//!
//! Two orderings make a grace period sound, and both are argued where they
//! happen:
//!
//! * *Readers' accesses before reclamation*: `Release` stores of `ctr` in
//!   lock and unlock pair with `Acquire` loads in the scans, so no extra
//!   heavy barrier is needed after the last scan.
//! * *Every updater's unpublish before a reader's snapshot of the new
//!   counter*: the updater's [`cookie`] (also taken inside [`synchronize`])
//!   is a `Release` read-modify-write of the grace-period sequence, which the
//!   leader's `Acquire` RMW at the start of a grace period reads, before it
//!   `Release`-stores the new `gp_ctr`; a reader's snapshot is an `Acquire`
//!   load. So a reader that snapshots the new counter also sees the unpublish,
//!   even when the leader is another thread (on x86 these are plain moves;
//!   the loom model `engine_updater_distinct_from_the_leader` checks it).
//!
//! # Where each part lives
//!
//! A reader following [`synchronize`] or [`call_rcu`] goes down this list,
//! never back up:
//!
//! | module | what it holds |
//! |---|---|
//! | `global` | the process-wide domain's free functions and its thread-local records |
//! | `domain` | [`RcuDomain`], [`Reader`], and `Inner`: one domain's engine, made of the two below |
//! | `callbacks` | `call_rcu`, the reclaim thread (restarted on demand), the queue's consumer token, the ready list producers and drains help run, `drain`, shutdown, `start_poll` |
//! | `grace_period` | the sequence and its sharing, the normal and forced states, notifiers, stall checks |
//! | `guard` | the [`Guard`] trait, [`ReadGuard`], [`DomainGuard`], [`OwnedReadGuard`], [`LocalReadGuard`] |
//! | `registry` | reader records, the registry the scans walk, the owned-guard pool |
//! | `fork` | the `fork()` handlers: what they do to each piece of state, and why the prepare handler never waits |
//! | `barrier`, `event`, `queue`, `sync` | membarrier/fence and the revocation fallback, a one-bit event, the callback queue, the std/loom facade |
//! | `config`, `stats` | tunables and their ranges; statistics, stall warnings and the events of the event hook |
//! | `ptr`, `future` | [`RcuCell`], [`RcuPtr`], [`Unlinked`]; [`SynchronizeFuture`] |
//!
//! # How to use
//!
//! * Read-mostly values: [`RcuCell`]. Nullable or hand-managed: [`RcuPtr`].
//! * Any guard works with any reader-facing API: everything takes
//!   `&'g impl` [`Guard`] and checks that the guard belongs to the data's
//!   domain. [`read_lock`] (this thread, the process-wide domain) is the
//!   cheapest; [`read_lock_owned`] gives a guard that is `Send + Sync`.
//! * Your own structures: see [below](#your-own-structure).
//! * Async services: see [below](#async-services).
//! * Long-running readers: keep the [`NotifierHandle`] from
//!   [`on_force_quiescent`] and leave the critical section (or call
//!   [`ReadGuard::quiescent`]) when it fires.
//! * Non-blocking updaters: take a cookie with [`start_poll`] after
//!   unlinking (it also starts the grace period that completes it), [`poll`]
//!   it later, free once it says a grace period has passed; or await
//!   [`synchronize_async`] from async code. A plain [`cookie`] starts
//!   nothing: on an idle process it completes only when something else runs
//!   a grace period.
//! * Operations: [`stats`] (grace periods by cause, a duration histogram,
//!   callbacks and bytes pending, the barrier in use), [`set_event_hook`]
//!   for what the engine reports ([`RcuEvent`]: readers that hold a grace
//!   period up longer than [`Config::stall_timeout`], membarrier missing or
//!   revoked, panicking callbacks), and [`Config::memory_limit`] to bound
//!   what pending callbacks hold. [`Config::require_membarrier`] refuses to
//!   start without the fast read side.
//! * Isolation and tests: [`RcuDomain`] is an independent domain with its own
//!   grace periods and reclaim thread; its threads register a [`Reader`].
//!   Waiting for one domain (`synchronize`, `drain`, dropping its last
//!   handle) inside a critical section of another is allowed, as taking a
//!   lock while holding another is, with the same rule against cycles: what
//!   the wait waits for (the domain's readers, its callbacks) must not wait
//!   for a grace period of the domain whose critical section the waiter
//!   holds. A callback of `a` that calls `b.synchronize()` and a thread that
//!   calls `a.drain()` inside a critical section of `b` wait for each other
//!   forever. The engine refuses the cycles it sees on the calling thread
//!   (a wait inside a critical section of the same domain, a drain inside
//!   any domain's callback, a wait inside
//!   [`RcuDomain::no_grace_period_waits`] of the same domain, where the
//!   structures run closures under their writer locks) with a panic.
//! * Tunables: [`configure`] before the process-wide domain starts.
//!
//! # Your own structure
//!
//! Publish with a `Release` store, read with an `Acquire` load under a
//! guard, unlink, then retire the old node with [`defer_free`] (or
//! [`RcuDomain::defer_free`]): it drops the `Box` after a grace period and
//! makes nothing that asserts unique access before then. Never
//! `defer_drop(unsafe { Box::from_raw(old) })`: that `Box` claims unique
//! access while readers may still hold `&T`.
//!
//! ```
//! use rcu_core::{Guard, RcuDomain};
//! use std::sync::Mutex;
//! use std::sync::atomic::{AtomicPtr, Ordering};
//!
//! struct Node { value: u64, next: AtomicPtr<Node> }
//!
//! /// A tiny RCU stack: lock-free readers, one writer at a time.
//! struct Stack { head: AtomicPtr<Node>, writer: Mutex<()>, domain: RcuDomain }
//!
//! impl Stack {
//!     fn push(&self, value: u64) {
//!         let _w = self.writer.lock().unwrap();
//!         let next = AtomicPtr::new(self.head.load(Ordering::Relaxed));
//!         let node = Box::into_raw(Box::new(Node { value, next }));
//!         self.head.store(node, Ordering::Release); // publish
//!     }
//!     fn pop_and_retire(&self) {
//!         let old = {
//!             let _w = self.writer.lock().unwrap();
//!             let old = self.head.load(Ordering::Relaxed);
//!             if old.is_null() { return; }
//!             // SAFETY: `old` is published and only this writer frees nodes.
//!             let next = unsafe { &*old }.next.load(Ordering::Relaxed);
//!             self.head.store(next, Ordering::Release); // unlink
//!             old
//!         };
//!         // SAFETY: from `Box::into_raw`, unlinked above, retired once,
//!         // read under this domain's guards. Retired after the lock is
//!         // released.
//!         unsafe { self.domain.defer_free(old) };
//!     }
//!     fn top<'g>(&self, guard: &'g impl Guard) -> Option<&'g u64> {
//!         self.domain.assert_guard(guard);
//!         let p = self.head.load(Ordering::Acquire);
//!         // SAFETY: nodes are freed only a grace period after unlinking,
//!         // and `guard`'s critical section of this domain covers the load.
//!         unsafe { p.as_ref() }.map(|n| &n.value)
//!     }
//! }
//!
//! let stack = Stack { head: AtomicPtr::default(), writer: Mutex::new(()), domain: RcuDomain::global() };
//! stack.push(1);
//! stack.push(2);
//! let guard = rcu_core::read_lock();
//! let top = stack.top(&guard).unwrap();
//! stack.pop_and_retire(); // readers may still hold `top`
//! assert_eq!(*top, 2);
//! drop(guard);
//! stack.pop_and_retire();
//! rcu_core::drain(); // both nodes are freed now
//! ```
//!
//! # Async services
//!
//! Never hold a [`ReadGuard`] across `.await`: the task may resume on
//! another thread, and a guard left open on a worker thread holds up every
//! grace period (it is `!Send`, so a multi-threaded runtime refuses such a
//! future anyway). Either copy what you need out before the `.await`
//! ([`RcuCell::get`]), or take an [`OwnedReadGuard`] ([`read_lock_owned`]),
//! which is `Send + Sync` and may be dropped on any thread. Wait for grace
//! periods with [`synchronize_async`] or [`Unlinked::into_inner_async`],
//! never with [`synchronize`] on an executor thread; and never wait for a
//! grace period in a task that holds an owned guard of the same domain (it
//! would wait for itself).
//!
//! Dropping the last handle of an independent [`RcuDomain`] is such a wait
//! too: it runs every queued callback, each after its grace period, and
//! joins the domain's reclaim thread, blocking the executor thread for
//! that long. A data structure bound to the domain (the structures'
//! `new_in`, [`RcuCell::new_in`]) holds a handle, so dropping the last such
//! structure in a task does the same. Keep a handle outside the tasks (in
//! the service's state), or drop the last one with the runtime's blocking
//! facility (`tokio::task::spawn_blocking`). The process-wide domain never
//! shuts down, so dropping its handles costs nothing.
//!
//! clippy can enforce the first rule: list the guard in `clippy.toml`,
//!
//! ```toml
//! await-holding-invalid-types = [
//!     { path = "rcu_core::ReadGuard", reason = "a read-side critical section must not span an .await" },
//!     { path = "rcu_core::DomainGuard", reason = "a read-side critical section must not span an .await" },
//! ]
//! ```
//!
//! and deny `clippy::await_holding_invalid_type`.

#[macro_use]
mod sync;
mod barrier;
mod batch;
mod callbacks;
mod config;
mod domain;
mod event;
#[cfg(all(unix, not(rcu_loom), not(miri)))]
mod fork;
#[cfg(not(rcu_loom))]
mod future;
#[cfg(not(rcu_loom))]
mod global;
mod grace_period;
mod guard;
#[cfg(all(test, rcu_loom))]
mod loom_tests;
#[cfg(not(rcu_loom))]
mod ptr;
mod queue;
mod registry;
mod stats;

pub use config::{Config, ConfigError};
pub use domain::{GpCookie, RcuDomain, Reader};
#[cfg(not(rcu_loom))]
pub use future::SynchronizeFuture;
#[cfg(not(rcu_loom))]
pub use global::*;
pub use guard::{DomainGuard, DomainId, Guard, LocalReadGuard, OwnedReadGuard, ReadGuard};
#[cfg(not(rcu_loom))]
pub use ptr::{CompareExchangeError, RcuCell, RcuPtr, Unlinked};
pub use registry::NotifierHandle;
pub use stats::{ForcedCauses, GpHistogram, HISTOGRAM_BUCKETS, RcuEvent, StallWarning, Stats};

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
