//! Callbacks: the `call_rcu` front end, the reclaim thread that runs them
//! after grace periods, `drain`, and the domain's shutdown.
//!
//! `call_rcu` appends to its thread's batch for the domain (`batch.rs`:
//! Linux's per-CPU callback lists, per thread, with a lock-free append),
//! which moves to the domain's queue as one node when it fills or holds a
//! sixteenth of the memory limit, or when the reclaim thread or a `drain`
//! harvests every thread's batch. A batch that reaches the forcing
//! threshold kicks the forcing checks (which count batched callbacks) and
//! stays where it is until the harvest.
//!
//! The reclaim thread waits for the first callback, harvests the batches,
//! starts a grace period at once when it was idle and no reader was running
//! (the seed removed QEMU's batching delay), or after gathering for up to
//! `callback_pacing` when callbacks kept arriving or the last grace period
//! found a reader in a critical section ([`pace`](Callbacks::pace)), then
//! runs exactly the callbacks it took off the queue before the grace period
//! began, in FIFO order. Their count stays in the grace-period machine's
//! [`Pressure`](crate::grace_period::Pressure) until the grace period ends,
//! so the forcing threshold sees the batch in flight (and the batches not
//! yet harvested). It also runs the grace periods that
//! [`start_poll`](Callbacks::start_poll) asks for.
//!
//! The queue has one consumer at a time, the holder of a token
//! ([`InFlight`]): the reclaim thread for each of its batches, or a
//! `drain` that finds the token free (the reclaim thread idle, gathering or
//! running callbacks), which then collects the batch, waits for its grace
//! period and runs it up to its marker on its own thread, instead of
//! waking the reclaim thread and sleeping until it is done: on the
//! development VM a drain went from 55–70 µs (two thread wake-ups) to 2 µs
//! (a grace period), and one that follows 4 096 callbacks from 35 µs to
//! 18 µs. The reclaim thread runs what the drain left after its marker.
//!
//! A batch whose grace period has ended moves from the queue to `ready`,
//! from which it is run a chunk at a time: by the reclaim thread, by a
//! drain (up to its marker), by each producer for its own callbacks, up to
//! two chunks each time its batch fills ([`run_own`](Callbacks::run_own), unless
//! the domain offloads callbacks), and by producers of any callbacks while
//! the domain is over its memory limit (`help`). While callbacks keep
//! arriving, the reclaim thread leaves its latest batch in `ready` to their
//! producers for the first part of its pacing ([`PRODUCERS_WINDOW`]) and
//! then runs what they left (at once when the stream stops, a drain runs,
//! pending bytes reach half the limit, or a task awaits one of them): a producer then frees on its own thread what it
//! allocated there (crossbeam-epoch's `defer` and Linux's per-CPU callback
//! lists do the same), instead of the allocator passing every free across
//! threads (a replacing `RcuHashMap::insert` loop spent a third of its time
//! on glibc's arena lock, taken by the writer's mallocs and the reclaim
//! thread's frees in turn). Chunks are
//! taken in queue order, except that a chunk whose thread has one running
//! waits for it (each thread's callbacks run in order, one at a time), and
//! carry tickets in the order taken. `drain`'s marker is a barrier: it runs
//! after every chunk queued before it has finished.
//!
//! # The reclaim thread's life
//!
//! The queue has one consumer at a time, so at most one reclaim thread runs
//! at a time, and `running` says whether one does (or is being started). It is
//! started on demand, by the first `call_rcu`, `drain` or `start_poll` that
//! finds `running` false, under the `reclaim` lock. It exits only after the
//! domain's shutdown (its last [`RcuDomain`](crate::RcuDomain) handle went
//! away), once nothing is pending; it decides so under the same lock, and
//! clears `running` *before* its last look at the queue (and at the token
//! and `ready`, where a drain may have left callbacks after its marker),
//! while a producer
//! bumps `pending` *before* it looks at `running` (a Dekker pair, all
//! SeqCst): either the thread sees the new work and stays, or the producer
//! sees `running` false and starts a new thread. So work queued after a
//! shutdown (a [`SynchronizeFuture`](crate::SynchronizeFuture) first polled
//! after the domain's last handle was dropped, say) still runs, and two
//! consumers never overlap: the old thread has stopped touching the queue
//! before it releases the lock under which a new one is started.
//!
//! In the child of a `fork()` the reclaim thread does not exist (unless it is
//! the forking thread: a fork from a callback): the fork handlers clear
//! `running`, put the batch it had in flight back in the queue and recount
//! `pending`, `pending_bytes` and the queued statistic (`fork.rs`), so the
//! next caller starts one.

use crate::barrier::AtomicCounter;
#[cfg(not(rcu_loom))]
use crate::batch::Owned;
use crate::event::Event;
use crate::grace_period::{
    AbortOnUnwind, GracePeriods, Panicked, Raised, UserCode, current_user_code, run_user,
};
use crate::queue::{Callback, Chunk, Origin, Queue};
use crate::stats::RcuEvent;
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, MutexGuard, Ordering, lock, report, thread};

/// Callback statistics.
#[derive(Default)]
pub(crate) struct CbCounters {
    pub(crate) queued: AtomicCounter,
    pub(crate) run: AtomicCounter,
    pub(crate) panics: AtomicCounter,
    pub(crate) max_pending_bytes: AtomicCounter,
}

/// Spawns a domain's reclaim thread (the domain layer knows how to hand the
/// thread its domain).
pub(crate) type Spawn<'a> = &'a dyn Fn() -> std::io::Result<thread::JoinHandle<()>>;

/// One domain's callback queue and reclaim thread.
pub(crate) struct Callbacks {
    pub(crate) queue: Queue,
    /// Set when the reclaim thread may have something to do: the first
    /// callback of a batch, a count crossing the forcing threshold or half
    /// the memory limit, a drain, a `start_poll`, a task's hurry, shutdown.
    pub(crate) call_ready: Event,
    /// A reclaim thread runs (or is being started): see the module docs.
    pub(crate) running: AtomicBool,
    /// The running (or last) reclaim thread; its lock serialises starting
    /// a thread and a thread's decision to exit.
    pub(crate) reclaim: Mutex<Option<thread::JoinHandle<()>>>,
    shutdown: AtomicBool,
    /// How many times a task has waited for a callback it queued
    /// ([`hurry`](Self::hurry)): a count the reclaim thread has not seen
    /// ends its pacing. Read for pacing only (were one lost, a callback
    /// would wait at most `callback_pacing`), so a `std` atomic even under
    /// loom, whose models do not pace.
    hurries: std::sync::atomic::AtomicUsize,
    /// The reclaim thread is gathering (in [`pace`](Self::pace)), and
    /// harvests every batch and looks at `pending` when the pacing ends:
    /// a producer's first callback, in its batch or in the queue, wakes
    /// no one then ([`wake_for_callbacks`](Self::wake_for_callbacks)).
    /// Pacing only (loom models do not pace), so a `std` atomic.
    pacing: std::sync::atomic::AtomicBool,
    /// Drains that collected a batch (`InFlight`), counted as they return:
    /// a gathering that sees it change ends at its next look
    /// ([`pace`](Self::pace)), with no wake-up. Pacing only, so a `std`
    /// atomic.
    drain_collections: std::sync::atomic::AtomicUsize,
    /// The queue's consumer, and the batch it has taken off the queue and
    /// waits a grace period for (see [`InFlight`]). Shared state (not a
    /// thread's local) so that the child of a `fork()` finds it
    /// (`fork.rs`). Never held across a grace period.
    pub(crate) in_flight: Mutex<InFlight>,
    /// Callbacks whose grace period has ended, waiting for a runner (the
    /// reclaim thread, or producers helping while over the memory limit).
    pub(crate) ready: Mutex<Ready>,
    /// Set when callbacks are added to `ready`.
    pub(crate) ready_added: Event,
    /// Notified (under `ready`'s lock) when a runner finishes a chunk. A
    /// condition variable, not an [`Event`]: several drains may wait at
    /// once, and one's reset of an event could erase the wake-up meant for
    /// another.
    chunk_done: Condvar,
    pub(crate) stats: CbCounters,
}

/// Who consumes the queue now, and what it took.
///
/// The queue has one consumer at a time: whoever holds the *consumer
/// token* (`consumer` is `Some`), taken and given back under the lock. The
/// reclaim thread takes it for each batch; so does a `drain` that finds it
/// free (the reclaim thread idle, gathering, or running callbacks), which
/// then collects the batch, waits for its grace period and runs it on its
/// own thread instead of waking the reclaim thread and sleeping until it
/// is done (two thread wake-ups, 55–70 µs on the development VM, against
/// a grace period of about 3 µs). The holder pops only under the lock and
/// gives the token back with the batch moved to `ready`, so the pending
/// count it reads while holding the token counts exactly what is still in
/// the queue.
pub(crate) struct InFlight {
    /// The batch taken off the queue, waiting for its grace period.
    pub(crate) chunks: Vec<Chunk>,
    /// The token's holder (its thread, for the child of a `fork()`, which
    /// keeps the batch only if the forking thread holds the token).
    pub(crate) consumer: Option<std::thread::ThreadId>,
    /// The reclaim thread found the token taken and waits for `call_ready`,
    /// which the holder sets when it gives the token back.
    wanted: bool,
}

/// Callbacks whose grace period has ended, and the chunks being run.
pub(crate) struct Ready {
    /// Chunks of at most [`CHUNK`] callbacks, in queue order.
    pub(crate) list: std::collections::VecDeque<Chunk>,
    /// The next chunk's ticket, in the order chunks are taken (queue order,
    /// but for chunks waiting for their thread's running one: `takeable`).
    next_ticket: u64,
    /// Tickets of the chunks being run now (one per runner at most), with
    /// their runners (the child of a `fork()` forgets the chunks of the
    /// threads it does not have) and origins.
    pub(crate) running: Vec<(u64, std::thread::ThreadId, Origin)>,
    /// Drains, and a reclaim thread waiting for a helper's chunk, waiting
    /// on `chunk_done` (a runner notifies only when there is one: a
    /// notification is a system call).
    pub(crate) waiting: usize,
}

/// Callbacks a runner takes from `ready` at a time: one lock per chunk, and
/// at most this many callbacks' memory is uncounted while they run. As
/// large as a per-thread batch, so a queue node is one chunk (no copy).
const CHUNK: usize = crate::batch::CAPACITY;

impl Ready {
    /// The chunk a runner may take now, if any: the first of its origin in
    /// the list whose origin has no chunk running, so that each thread's
    /// callbacks run one chunk after the other, in queue order, while
    /// other threads' run alongside. A chunk of unknown origin is a
    /// barrier: taken only first in the list with nothing running, and
    /// nothing else is taken before it or while it runs (so it runs after
    /// every chunk before it, and before every chunk after it).
    fn takeable(&self) -> Option<usize> {
        if self.running.iter().any(|&(_, _, o)| o == Origin::UNKNOWN) {
            return None;
        }
        let mut blocked: Vec<Origin> = Vec::new();
        for (i, chunk) in self.list.iter().enumerate() {
            if chunk.origin == Origin::UNKNOWN {
                return (i == 0 && self.running.is_empty()).then_some(0);
            }
            if blocked.contains(&chunk.origin) {
                continue;
            }
            if self.running.iter().any(|&(_, _, o)| o == chunk.origin) {
                blocked.push(chunk.origin);
                continue;
            }
            return Some(i);
        }
        None
    }

    /// The first chunk of `origin` a runner may take now, if any: none
    /// while a chunk of `origin` or of unknown origin runs, or when a chunk
    /// of unknown origin (a barrier) comes before it.
    fn takeable_of(&self, origin: Origin) -> Option<usize> {
        if self
            .running
            .iter()
            .any(|&(_, _, o)| o == Origin::UNKNOWN || o == origin)
        {
            return None;
        }
        for (i, chunk) in self.list.iter().enumerate() {
            if chunk.origin == Origin::UNKNOWN {
                return None;
            }
            if chunk.origin == origin {
                return Some(i);
            }
        }
        None
    }

    /// Appends the queue nodes whose grace period has ended, in order, each
    /// as a chunk (a per-thread batch is at most
    /// [`CAPACITY`](crate::batch::CAPACITY) callbacks: no copy); a larger
    /// node (from a `fork()` child's rebuilt queue) is cut into chunks, each
    /// moved with one copy of its callbacks, taken from the back so no
    /// callback is copied twice.
    fn push_batch(&mut self, nodes: Vec<Chunk>) {
        for mut node in nodes {
            let origin = node.origin;
            let mut tails = Vec::new();
            while node.len() > CHUNK {
                let at = (node.len() - 1) / CHUNK * CHUNK;
                tails.push(Chunk {
                    origin,
                    callbacks: node.callbacks.split_off(at),
                });
            }
            if node.len() > 0 {
                self.list.push_back(node);
            }
            self.list.extend(tails.into_iter().rev());
        }
    }
}

/// How long a producer over the memory limit helps, at most, per
/// `call_rcu`: running ready callbacks and waiting for more (a grace period
/// to end), in all, plus the end of the chunk it is running then.
#[cfg(not(rcu_loom))]
const HELP_WAIT: std::time::Duration = std::time::Duration::from_millis(1);
#[cfg(rcu_loom)]
const HELP_WAIT: std::time::Duration = std::time::Duration::ZERO;

/// How long the reclaim thread leaves a batch whose grace period has ended
/// to its producers (`run_own`) while callbacks keep arriving, at most: the
/// first part of its pacing (all of the default's), after which it runs
/// what they left. So under load a callback runs at most
/// `callback_pacing` plus this (plus grace periods) after its `call_rcu`.
const PRODUCERS_WINDOW: std::time::Duration = std::time::Duration::from_millis(1);

/// How long a gathering reclaim thread sleeps at most between two looks
/// ([`Callbacks::pace`]) for a drain that took its batch (which wakes no
/// one): so a pacing longer than this ends within it after such a drain.
/// The default pacing is no longer, so it adds no wake-up there.
#[cfg(not(rcu_loom))]
const PACING_LOOK: std::time::Duration = std::time::Duration::from_millis(1);

/// Chunks a producer runs of its own, at most, each time its batch fills:
/// two, so that one that keeps its pace clears a backlog of chunks in
/// half the time it took to queue them.
const OWN_CHUNKS: usize = 2;

/// What a batch needs after an append (see `Callbacks::batch_is_due`).
#[cfg(not(rcu_loom))]
enum Due {
    No,
    Wake,
    Queue,
}

/// Clears a flag when dropped (on every return path of a loop).
#[cfg(not(rcu_loom))]
struct ClearOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

#[cfg(not(rcu_loom))]
impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        // SeqCst: the reclaim thread's side of the Dekker pair with a
        // producer's flag or count then load of `pacing`
        // (`wake_for_callbacks`): a producer that read `true` made its
        // change before this store, and the harvest and the load of
        // `pending` after it see the change.
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the reclaim thread's look before exiting found ([`Callbacks::try_exit`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Nothing to do: it exits.
    Yes,
    /// Work to do: it looks again.
    No,
    /// A drain holds the consumer token: it waits for `call_ready`, which
    /// the drain sets when it gives the token back.
    AfterTheToken,
}

/// Whether this thread may run callbacks and wait here: in no user code
/// of any domain, in no scope that refuses waits, inside no critical
/// section of any domain (see [`Callbacks::help`]).
fn may_run_callbacks(gp: &GracePeriods) -> bool {
    current_user_code().is_none()
        && !crate::grace_period::refusing_waits(None)
        && !thread_may_be_reading(gp)
}

/// Whether this thread may be inside a critical section of any domain
/// (`gp`'s among them). Natively the thread's own counts answer (local
/// guards, owned guards it took, records it registered: no lock); loom
/// models, which keep no thread-locals, scan `gp`'s registry for records
/// this thread owns (a lock and a pass over every record, once paid here
/// natively too, on every batch a producer filled).
fn thread_may_be_reading(gp: &GracePeriods) -> bool {
    #[cfg(not(rcu_loom))]
    {
        let _ = gp;
        crate::registry::reading_in_any_domain()
    }
    #[cfg(rcu_loom)]
    {
        lock(&gp.readers.registry).current_thread_may_be_reading()
    }
}

/// Who runs ready callbacks.
#[derive(Clone, Copy)]
enum Runner<'a> {
    /// The reclaim thread: until `ready` is empty.
    ReclaimThread,
    /// A producer over the memory limit: while it is exceeded, and no
    /// chunk after `until`.
    Helper { until: std::time::Instant },
    /// A `drain`: until its marker has run (`done`), or no chunk may be
    /// taken now.
    Drainer { done: &'a AtomicBool },
    /// A producer at a batch boundary: up to [`OWN_CHUNKS`] chunks of its
    /// own callbacks ([`Callbacks::run_own`]), while one may be taken.
    /// (Loom models have no per-thread batches.)
    #[cfg_attr(rcu_loom, allow(dead_code))]
    Owner { origin: Origin },
}

impl Callbacks {
    loom_const_fn! {
        pub(crate) fn new() -> Self {
            Callbacks {
                queue: Queue::new(),
                call_ready: Event::new(),
                running: AtomicBool::new(false),
                reclaim: Mutex::new(None),
                shutdown: AtomicBool::new(false),
                hurries: std::sync::atomic::AtomicUsize::new(0),
                pacing: std::sync::atomic::AtomicBool::new(false),
                drain_collections: std::sync::atomic::AtomicUsize::new(0),
                in_flight: Mutex::new(InFlight {
                    chunks: Vec::new(),
                    consumer: None,
                    wanted: false,
                }),
                ready: Mutex::new(Ready {
                    list: std::collections::VecDeque::new(),
                    next_ticket: 0,
                    running: Vec::new(),
                    waiting: 0,
                }),
                ready_added: Event::new(),
                chunk_done: Condvar::new(),
                stats: CbCounters {
                    queued: AtomicCounter::new(),
                    run: AtomicCounter::new(),
                    panics: AtomicCounter::new(),
                    max_pending_bytes: AtomicCounter::new(),
                },
            }
        }
    }

    /// Points the queue at its stub. Once, when the domain starts (after it
    /// has reached its final address).
    pub(crate) fn init(&self) {
        self.queue.init();
    }

    /// `call_rcu`: queues `f` to run after a grace period. It counts toward
    /// the memory limit with its own size plus `extra_bytes`.
    ///
    /// It goes into this thread's batch for the domain (see `batch.rs`),
    /// which moves to the queue when it fills or when the reclaim thread or
    /// a `drain` harvests it.
    ///
    /// # Panics
    /// If the reclaim thread cannot be started (with the spawn error); then
    /// nothing was queued or counted, and `f` is leaked, not dropped.
    #[inline]
    pub(crate) fn call_rcu<F: FnOnce() + Send + 'static>(
        &self,
        gp: &GracePeriods,
        spawn: Spawn<'_>,
        f: F,
        extra_bytes: usize,
    ) {
        // Leaked, not dropped, if the reclaim thread cannot be started: what
        // it captures may be what readers still see (a retired node, a
        // batch whose drop frees one), which must not be freed before a
        // grace period.
        let f = std::mem::ManuallyDrop::new(f);
        self.ensure_reclaim_thread(spawn);
        let f = std::mem::ManuallyDrop::into_inner(f);
        let bytes = size_of::<F>().saturating_add(extra_bytes);
        #[cfg(not(rcu_loom))]
        match gp.pressure.batches.mine(gp.readers.id) {
            Some(mine) => self.append(gp, &mine, f, bytes),
            None => self.enqueue_unbatched(gp, Callback::new(f, bytes)),
        }
        #[cfg(rcu_loom)]
        self.enqueue_one(gp, Callback::new(f, bytes));
        // A thread that was running at the check above may have exited
        // since (only after a shutdown): see the module docs. Should this
        // second start fail, `f` stays queued and runs once a later
        // `call_rcu`, `drain` or `start_poll` starts a thread.
        self.ensure_reclaim_thread(spawn);
        // A stale value only skips or adds one round of help.
        if gp.pressure.pending_bytes.load() > gp.memory_limit() {
            self.help(gp);
        }
    }

    /// Appends `f`, counted as `bytes`, to this thread's batch (built in
    /// place), and does what the batch then needs (`batch_is_due`).
    #[cfg(not(rcu_loom))]
    #[inline(always)]
    fn append<F: FnOnce() + Send + 'static>(
        &self,
        gp: &GracePeriods,
        mine: &Owned<'_>,
        f: F,
        bytes: usize,
    ) {
        let mode = gp.readers.mode();
        if mine.is_full() {
            // Run up to two chunks of this thread's callbacks whose grace
            // period has ended, if one is ready; then to the queue, to make room. In
            // that order: a callback that calls `call_rcu` appends to this
            // batch (and moves it to the queue itself when it fills), and
            // the move after it leaves the ring empty for the push below.
            self.run_own(gp, mine);
            self.move_to_queue(gp, mine);
        }
        let pushed = mine.push(Callback::new(f, bytes), mode);
        match self.batch_is_due(gp, pushed.len, pushed.bytes) {
            Due::Queue => self.move_to_queue(gp, mine),
            Due::Wake => self.wake_for_threshold(gp),
            Due::No => {
                if pushed.first && gp.pressure.batches.mark_dirty() {
                    // The first callback since the batch was last taken:
                    // wake the reclaim thread.
                    self.wake_for_callbacks();
                }
            }
        }
    }

    /// A batch reached the forcing threshold: flags it for the next
    /// harvest, wakes the reclaim thread if the flag was clear (an append
    /// that raced a harvest did not set it: `batch.rs`), and kicks the
    /// forcing checks of a grace period in progress (as `enqueue` does
    /// when the queued count crosses it). A flag already set has woken the
    /// thread, which has not harvested since; a pacing would only look
    /// again and go on (the threshold does not end it), and each wake-up
    /// is a system call here and a context switch there (it once cost 9%
    /// of a `call_rcu` stream's time). Out of line: once per threshold's
    /// worth of appends.
    #[cfg(not(rcu_loom))]
    #[cold]
    #[inline(never)]
    fn wake_for_threshold(&self, gp: &GracePeriods) {
        if gp.pressure.batches.mark_dirty() {
            self.wake_for_callbacks();
        }
        gp.kick.set();
    }

    /// Wakes the reclaim thread for callbacks a producer has just flagged
    /// (its batch's dirty flag) or counted (`pending`), unless the thread
    /// is gathering ([`pace`](Self::pace)): a pacing ends at its deadline,
    /// not for a callback (the forcing threshold does not end it either),
    /// and is followed by a harvest of every batch and a look at `pending`.
    /// Woken, it would only look and sleep again, and each wake-up of a
    /// thread asleep on another CPU cost its waker 10 µs on the 2-CPU
    /// development VM (an IPI from a guest): per round of a producer that
    /// queues 4 096 callbacks and drains (the runner's "reclaim
    /// throughput" rows), a pacing the drain ended and the next round's
    /// first callback woke again.
    ///
    /// The caller's flag or count comes first, then this SeqCst load (a
    /// Dekker pair with the store that ends a pacing, `ClearOnDrop`): a
    /// producer that reads `true` made its change before the pacing ended,
    /// so the harvest after it takes the callback (the flag's swaps carry
    /// the append) and its load of `pending` counts the chunk; one that
    /// reads `false` wakes the thread. (Loom models do not pace: it always
    /// wakes there.)
    fn wake_for_callbacks(&self) {
        if !self.pacing.load(std::sync::atomic::Ordering::SeqCst) {
            self.call_ready.set();
        }
    }

    /// `call_rcu` during thread teardown, when the thread's batch is gone:
    /// the batch may still hold the thread's earlier callbacks, which go to
    /// the queue first so that its callbacks keep their order (a harvest:
    /// rare, only from thread-local destructors), then `cb` alone.
    #[cfg(not(rcu_loom))]
    #[cold]
    #[inline(never)]
    fn enqueue_unbatched(&self, gp: &GracePeriods, cb: Callback) {
        self.harvest(gp);
        self.enqueue_one(gp, cb);
    }

    /// Moves this thread's batch to the queue, under the batch's lock
    /// (module docs of `batch.rs`); a harvest may have taken it meanwhile.
    ///
    /// Out of line: once per `batch::CAPACITY` appends at most, and its
    /// lock loop inlined would cost every append registers to save.
    #[cfg(not(rcu_loom))]
    #[inline(never)]
    fn move_to_queue(&self, gp: &GracePeriods, mine: &Owned<'_>) {
        let mut held = mine.lock();
        if let Some((items, bytes)) = held.take() {
            let origin = held.origin();
            self.enqueue(
                gp,
                Chunk {
                    origin,
                    callbacks: items,
                },
                bytes,
            );
        }
    }

    /// Runs ready chunks of this thread's own callbacks, [`OWN_CHUNKS`] at
    /// most, if one is ready, the domain does not offload callbacks
    /// ([`Config::offload_callbacks`]), and this thread may run callbacks
    /// here (as for [`help`](Self::help)).
    ///
    /// [`Config::offload_callbacks`]: crate::Config::offload_callbacks
    #[cfg(not(rcu_loom))]
    #[inline(never)]
    fn run_own(&self, gp: &GracePeriods, mine: &Owned<'_>) {
        let origin = mine.origin();
        if gp.offload_callbacks()
            || !may_run_callbacks(gp)
            || lock(&self.ready).takeable_of(origin).is_none()
        {
            return;
        }
        self.run_ready(gp, Runner::Owner { origin });
    }

    /// What a batch that has just grown to `len` callbacks holding `bytes`
    /// needs: to go to the queue now when it alone holds a sixteenth of the
    /// memory limit or takes the queued bytes across the limit (so that
    /// helping starts at once: helpers look at queued bytes); a kick of the
    /// forcing checks (and a wake-up of the reclaim thread) when it reaches
    /// the forcing threshold, alone or with the queued callbacks (as if
    /// nothing were batched: the forcing checks count batched callbacks;
    /// batches of other threads are counted at the grace period's next
    /// check).
    #[cfg(not(rcu_loom))]
    #[inline]
    fn batch_is_due(&self, gp: &GracePeriods, len: usize, bytes: usize) -> Due {
        let p = &gp.pressure;
        let limit = gp.memory_limit();
        // SeqCst (`pending`; `ByteCount` is SeqCst): a snapshot; a stale
        // value delays or advances one flush or wake-up, which the grace
        // period's own checks make up for.
        let queued_bytes = p.pending_bytes.load();
        if bytes >= limit / 16
            || (queued_bytes < limit && queued_bytes.saturating_add(bytes) >= limit)
        {
            return Due::Queue;
        }
        let threshold = gp.callback_threshold();
        let queued = p.pending.load(Ordering::SeqCst);
        // Once, when the count reaches the threshold (not at every append
        // after it).
        if len == threshold || (queued < threshold && queued.saturating_add(len) == threshold) {
            Due::Wake
        } else {
            Due::No
        }
    }

    /// Queues `cb` alone, of unknown origin (a barrier to the runners: see
    /// [`Origin::UNKNOWN`]), counting the bytes it will release when it
    /// runs (its own count, which is capped).
    fn enqueue_one(&self, gp: &GracePeriods, cb: Callback) {
        let bytes = cb.bytes();
        let chunk = Chunk {
            origin: Origin::UNKNOWN,
            callbacks: vec![cb],
        };
        self.enqueue(gp, chunk, bytes);
    }

    /// Counts `chunk` (holding `bytes`) as pending, then queues it as one
    /// node; wakes the reclaim thread and kicks the forcing checks when the
    /// counts cross their marks.
    fn enqueue(&self, gp: &GracePeriods, chunk: Chunk, bytes: usize) {
        let n = chunk.len();
        let p = &gp.pressure;
        // Counts first, node second: a runner subtracts only what it took,
        // so neither count can drop below what is queued (the byte count
        // saturates rather than wrap, and then may read low: `ByteCount`).
        let held_before = p.pending_bytes.add(bytes);
        let held = held_before.saturating_add(bytes);
        self.stats.max_pending_bytes.max(held as u64);
        // Counted as queued before it is counted as pending (`stats` reads
        // `pending` first: a snapshot counts no more pending than queued)
        // and before it can run (`stats` reads `run` first).
        self.stats.queued.add(n as u64);
        // SeqCst: the reclaim thread's `reset; load pending; wait` and our
        // `increment; set` form a Dekker pair; the count is also read by
        // `force_cause`; and `stats`'s load of it that sees this increment
        // sees the `queued` one above (a release, as every SeqCst write).
        let before = p.pending.fetch_add(n, Ordering::SeqCst);
        self.queue.push(chunk);
        let limit = gp.memory_limit();
        let threshold = gp.callback_threshold();
        let crossed_threshold = before < threshold && before + n >= threshold;
        // Wake the reclaim thread for the first callback and when the
        // count or half the memory limit is crossed (the latter ends its
        // pacing: `pace`; the others do not, and wake no pacing thread).
        if held >= limit / 2 && held_before < limit / 2 {
            self.call_ready.set();
        } else if before == 0 || crossed_threshold {
            self.wake_for_callbacks();
        }
        // Kick the normal-state sleep when a count crosses its mark; the
        // forced state, once entered, does not need more kicks.
        if (held >= limit && held_before < limit) || crossed_threshold {
            gp.kick.set();
        }
    }

    /// Says that a task waits for a callback just queued (a
    /// `synchronize_async` future): the reclaim thread ends its pacing, or
    /// does not pace, for the batch that takes it.
    ///
    /// A count, not a flag: the reclaim thread remembers the count it saw
    /// when its last pacing ended, and nothing else ever lowers it, so no
    /// task's hurry is spent on a batch without its callback. The load that
    /// sees a task's increment makes the task's append visible to the
    /// harvest after it, which takes the callback into that batch; a load
    /// that misses it leaves a count unseen, and the next pacing ends at
    /// once (see [`reclaim_loop`]). (The count wraps; only exactly
    /// `usize::MAX + 1` hurries between two looks would go unseen.)
    ///
    /// It was a flag that the end of a pacing cleared: a pacing that ended
    /// for another reason could clear it just after a task set it, without
    /// synchronising with the task, and spend it on a batch that its
    /// callback had missed (Miri found the task waiting the whole pacing).
    #[cfg_attr(rcu_loom, allow(dead_code))] // the futures are not built under loom
    pub(crate) fn hurry(&self) {
        // SeqCst: after the task's append in program order; the reclaim
        // thread's SeqCst load that reads it synchronises with it (see
        // above), and the event's set orders it before the pacing's next
        // look.
        self.hurries.fetch_add(1, Ordering::SeqCst);
        self.call_ready.set();
    }

    /// The count of [`hurry`](Self::hurry) calls, as the reclaim thread
    /// reads it when a pacing ends, before the harvest whose batch then
    /// holds the callbacks it was for.
    fn hurries(&self) -> usize {
        // SeqCst: see `hurry`.
        self.hurries.load(Ordering::SeqCst)
    }

    /// Pacing (see [`Config::callback_pacing`](crate::Config::callback_pacing)):
    /// called by a reclaim thread that is busy, or whose last grace period
    /// found a reader running, before it starts the next grace period. It
    /// waits until `deadline` (the pacing after the last one ended), gathering
    /// callbacks, unless something needs the grace period sooner: half the
    /// memory limit held, a drain, a `start_poll`, a task waiting for a
    /// callback ([`hurry`](Self::hurry)), the domain's shutdown. Each of
    /// those sets `call_ready` when it arises, ending the wait.
    ///
    /// A drain that collected the batch ([`InFlight`]) ends it too, so that
    /// the next callback is paced or not by what the grace periods find
    /// then, but without a wake-up: the pacing sees the drain at its next
    /// look, at most [`PACING_LOOK`] later (the default pacing is no
    /// longer), and gathers what arrives meanwhile. The drain used to wake
    /// this thread; a producer that queues callbacks and drains in rounds
    /// (the runner's "reclaim throughput" rows) then paid that wake-up,
    /// or the one of its next first callback, once per round: 10 µs each
    /// on the 2-CPU VM (see [`wake_for_callbacks`](Self::wake_for_callbacks)).
    ///
    /// The forcing threshold does not end it: it decides how the grace
    /// period that follows waits (forced, when that many are pending), not
    /// when it starts. It ended the gathering once, as QEMU's `call_rcu`
    /// thread ends its wait at `RCU_CALL_MIN_SIZE`; a writer retiring a
    /// node every 100 ns then reached it every few microseconds, and the
    /// grace periods back to back (tens of thousands a second, each a
    /// membarrier IPI to the writer's CPU) made a replacing
    /// `RcuHashMap::insert` cost 258–263 ns against 187–203 ns without them
    /// (4 K keys, foldhash; README).
    #[cfg_attr(rcu_loom, allow(unused_variables))]
    ///
    /// `drains` is `drain_collections` as the thread read it when it
    /// collected its last batch: a drain that has taken a batch since ends
    /// the pacing (also one that ended the producers' window before it).
    fn pace(
        &self,
        gp: &GracePeriods,
        deadline: std::time::Instant,
        seen_hurries: usize,
        drains: usize,
    ) {
        // Under loom time does not pass: no pacing.
        #[cfg(not(rcu_loom))]
        {
            let p = &gp.pressure;
            // SeqCst: a producer that reads it (`wake_for_callbacks`) wakes
            // no one, which is right from here to the store that clears it
            // (`ClearOnDrop`), after which the harvest looks.
            self.pacing.store(true, std::sync::atomic::Ordering::SeqCst);
            let _done = ClearOnDrop(&self.pacing);
            // Whether to check the conditions that set `call_ready`: first,
            // and after each wake-up, not at the looks for a drain's count
            // (a drain that is running its batch must not be taken for one
            // that needs this thread: that one sets `call_ready`). The event
            // is reset only before such a check, so a `set` that comes
            // after a timed-out wait stays set and ends the next wait at
            // once, and is checked then.
            let mut woken = true;
            loop {
                // Reset, check, wait: a `set` after the reset ends the wait.
                // SeqCst (all): each pairs with the store its producer makes
                // before it sets `call_ready` (the event's Dekker pair).
                let urgent = woken && {
                    self.call_ready.reset();
                    let (_, batched_bytes) = p.batches.pending();
                    p.drains.load(Ordering::SeqCst) > 0
                        || p.pending_bytes.load().saturating_add(batched_bytes)
                            >= gp.memory_limit() / 2
                        || !gp.poll(gp.requested.load(Ordering::SeqCst))
                        || self.hurries() != seen_hurries
                        || self.shutdown.load(Ordering::SeqCst)
                };
                // Relaxed: a drain's count read late ends the pacing one
                // look later; what the drain left is found by the harvest
                // and the loads of `pending` after the pacing.
                let drained = self
                    .drain_collections
                    .load(std::sync::atomic::Ordering::Relaxed)
                    != drains;
                let now = std::time::Instant::now();
                if urgent || drained || now >= deadline {
                    return;
                }
                woken = self
                    .call_ready
                    .wait_timeout((deadline - now).min(PACING_LOOK));
            }
        }
    }

    /// In the child of a `fork()` whose reclaim thread is gone: it was
    /// perhaps gathering, and no thread is now (`fork.rs`).
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    pub(crate) fn end_pacing_after_fork(&self) {
        // Relaxed: the child's only thread, before it returns from `fork`.
        self.pacing
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Moves every thread's batch to the queue.
    fn harvest(&self, gp: &GracePeriods) {
        gp.pressure.batches.harvest(|origin, callbacks, bytes| {
            self.enqueue(gp, Chunk { origin, callbacks }, bytes);
        });
    }

    /// Over the memory limit: a producer that may wait helps. It runs
    /// callbacks whose grace period has ended, and waits for more, for at
    /// most [`HELP_WAIT`] per call in all (plus the end of the chunk it is
    /// running then): a producer that helps alone while others flood, say
    /// from inside critical sections, where they may not help, is not held
    /// for the whole flood (one call ran for 3 s before the bound covered
    /// running too; its own callbacks are one per call, so what it runs in
    /// that time keeps them in check). One that may not wait (inside a critical
    /// section of any domain: of this one a grace period would wait for it,
    /// and a helped callback could wait for a grace period of another; in
    /// any domain's user code, which includes the reclaim thread and
    /// notifiers; in a scope of any domain that refuses waits, a closure
    /// under a structure's writer lock, where helped callbacks would run
    /// under that lock) only forces, through the kick the bytes already gave. A
    /// thread holding an owned guard of this domain that it took counts as
    /// inside a critical section here: the grace period its help would wait
    /// for waits for that guard (before, each such call waited the full
    /// `HELP_WAIT`).
    fn help(&self, gp: &GracePeriods) {
        if !may_run_callbacks(gp) {
            return;
        }
        let limit = gp.memory_limit();
        let over = || gp.pressure.pending_bytes.load() > limit;
        let deadline = std::time::Instant::now() + HELP_WAIT;
        // (The loads in `over` are SeqCst, read with the producers' adds and
        // the runners' subtractions; a stale value only ends the help early
        // or runs one more chunk.)
        while over() {
            let ran = self.run_ready(gp, Runner::Helper { until: deadline });
            let now = std::time::Instant::now();
            if now >= deadline {
                return;
            }
            if ran > 0 {
                continue;
            }
            gp.kick.set();
            // Reset, check, wait: a batch added after the check sets it.
            // (Chunks waiting for their thread's running one are left to
            // the reclaim thread: see `run_ready`.)
            self.ready_added.reset();
            if lock(&self.ready).takeable().is_some() {
                continue;
            }
            self.ready_added.wait_timeout(deadline - now);
        }
    }

    /// Runs ready callbacks, a chunk at a time, until `ready` is empty (or,
    /// for a helper, the memory limit is no longer exceeded, its time is
    /// up, or no chunk may be taken now). Returns how many it ran.
    ///
    /// Runners take chunks in queue order, but never one whose thread has
    /// a chunk running ([`Ready::takeable`]): each thread's callbacks run
    /// in the order it queued them, one after the other. When every ready
    /// chunk waits for one that runs, a helper leaves them to the reclaim
    /// thread (its call still waits, see `help`), and the reclaim thread
    /// waits for that chunk to end. (Runners once took consecutive chunks
    /// of one thread at once: under memory pressure its callbacks ran
    /// side by side and finished out of order.)
    fn run_ready(&self, gp: &GracePeriods, runner: Runner<'_>) -> usize {
        let mut ran = 0;
        let mut chunks = 0;
        // Once per call, not per chunk: `thread::current` clones an `Arc`.
        let me = std::thread::current().id();
        loop {
            let (ticket, mut chunk) = {
                let mut r = lock(&self.ready);
                let at = loop {
                    if r.list.is_empty() {
                        return ran;
                    }
                    // A drain whose marker has run (on any runner) takes
                    // nothing more: what follows was queued after it began,
                    // and may wait for it to return (a reviewer's test ran
                    // such a callback on the drain's thread, which then
                    // waited for itself). Checked under the lock the
                    // marker's runner returns its chunk under. Acquire: see
                    // the marker.
                    if let Runner::Drainer { done } = runner
                        && done.load(Ordering::Acquire)
                    {
                        return ran;
                    }
                    let at = match runner {
                        Runner::Owner { origin } => r.takeable_of(origin),
                        _ => r.takeable(),
                    };
                    if let Some(at) = at {
                        break at;
                    }
                    match runner {
                        Runner::Helper { .. } | Runner::Drainer { .. } | Runner::Owner { .. } => {
                            return ran;
                        }
                        Runner::ReclaimThread => r = self.wait_chunk(r),
                    }
                };
                let chunk = r.list.remove(at).expect("a takeable chunk is in the list");
                let ticket = r.next_ticket;
                r.next_ticket += 1;
                r.running.push((ticket, me, chunk.origin));
                (ticket, chunk.callbacks)
            };
            // Counted as run, and its bytes as released, before it runs: a
            // `drain` may return as soon as its marker has run.
            let bytes = chunk.iter().map(Callback::bytes).sum::<usize>();
            // Release: pairs with the Acquire fence after `stats` reads the
            // count, so a snapshot that counts these callbacks as run also
            // sees them counted as queued (which preceded their push, and so
            // their pop here).
            std::sync::atomic::fence(Ordering::Release);
            self.stats.run.add(chunk.len() as u64);
            // Every node's bytes were added before it was pushed.
            gp.pressure.pending_bytes.sub(bytes);
            ran += chunk.len();
            chunks += 1;
            // One user-code context (and one catch) for the whole chunk; a
            // panic ends it, is reported, and the rest of the chunk runs in
            // a new one. The callback that panicked was taken out of the
            // iterator before it ran, so none runs twice.
            let mut rest = chunk.drain(..);
            while let Err(Panicked(message)) = run_user(gp, UserCode::Callback, || {
                rest.by_ref().for_each(Callback::run);
            }) {
                self.stats.panics.bump();
                gp.emit(&RcuEvent::CallbackPanic { message });
            }
            drop(rest);
            let waiting = {
                let mut r = lock(&self.ready);
                r.running.retain(|&(t, _, _)| t != ticket);
                r.waiting
            };
            // After the unlock, so that a woken drain does not block at
            // once on the lock this thread still holds (a second futex
            // wait and wake, about 8 µs each on a VM). None misses it: a
            // waiter counts itself in `waiting`, and checks what it waits
            // for, under the lock this thread changed `running` under; one
            // that counted itself before the check above was waiting (the
            // condvar released the lock when it slept), one after it sees
            // the change.
            if waiting > 0 {
                self.chunk_done.notify_all();
            }
            match runner {
                Runner::Helper { until }
                    if gp.pressure.pending_bytes.load() <= gp.memory_limit()
                        || std::time::Instant::now() >= until =>
                {
                    break;
                }
                // Once its marker has run: what follows was queued after
                // the drain (a flood would keep it here).
                // Acquire: see the marker in `drain`.
                Runner::Drainer { done } if done.load(Ordering::Acquire) => break,
                Runner::Owner { .. } if chunks >= OWN_CHUNKS => break,
                _ => {}
            }
        }
        ran
    }

    /// `start_poll`: a cookie for `gp`, and a grace period that completes it
    /// started on the reclaim thread if none has been asked for yet. Never
    /// waits (but may start the reclaim thread).
    ///
    /// # Panics
    /// If the reclaim thread cannot be started (with the spawn error).
    pub(crate) fn start_poll(&self, gp: &GracePeriods, spawn: Spawn<'_>) -> u64 {
        let target = gp.cookie();
        if gp.poll(target) {
            return target;
        }
        self.ensure_reclaim_thread(spawn);
        // SeqCst: with `running` below and the reclaim thread's store of
        // `running` then load of `requested`, a Dekker pair (module docs);
        // the event's fences order it before the thread's next look too.
        if gp.requested.fetch_max(target, Ordering::SeqCst) < target {
            self.call_ready.set();
            self.ensure_reclaim_thread(spawn);
        }
        target
    }

    /// `drain()`: waits until every callback queued before it has run.
    #[track_caller]
    pub(crate) fn drain(&self, gp: &GracePeriods, spawn: Spawn<'_>) {
        gp.check_caller("drain", true);
        let _raised = Raised::new(&gp.pressure.drains);
        gp.kick.set();
        // Set by the marker. A flag read under `ready`'s lock, not an event
        // of its own: a drainer of the parent of a `fork()` may have held
        // an event's lock at the instant of fork, and the child runs its
        // marker too.
        let done = Arc::new(AtomicBool::new(false));
        let signal = Arc::clone(&done);
        self.ensure_reclaim_thread(spawn);
        // Every thread's batch goes to the queue first, the marker behind
        // them (see `batch.rs` for why that covers callbacks still batched).
        // The queue is FIFO and the marker, of unknown origin, is a barrier
        // (`Ready::takeable`): it is taken only when every chunk before it
        // has been taken and none runs, so when it runs, everything before
        // it has finished (its runner took it under the lock the others
        // returned theirs under).
        self.harvest(gp);
        // Release: pairs with the Acquire load below: the marker ran after
        // every callback before it in its chunk and the chunks before.
        let marker = move || signal.store(true, Ordering::Release);
        // Alone, of unknown origin: a barrier (see above).
        self.enqueue_one(gp, Callback::new(marker, 0));
        // With the reclaim thread not collecting (idle, gathering, or
        // running callbacks), collect the batch here, up to the marker and
        // maybe a little after it, and wait for its grace period on this
        // thread ([`InFlight`]). Otherwise the reclaim thread's next batch
        // takes the marker.
        // Not where a helper may not run callbacks either (`help`): inside
        // a critical section of any domain (a callback waiting for that
        // domain's grace period would wait for this thread), or in a scope
        // that refuses waits (a structure's writer lock). There the drain
        // waits for the reclaim thread as before.
        let may_run = !(crate::grace_period::refusing_waits(None) || thread_may_be_reading(gp));
        let collected = may_run && self.try_consume(false) && {
            // Nothing below unwinds (a grace period aborts rather than
            // unwind); were it to, the token would be lost and with it
            // every later callback.
            let _bomb = AbortOnUnwind("a drain holding the callback queue");
            // SeqCst: as in the reclaim loop. 0 when the reclaim thread has
            // collected the marker since (its batch is in `ready` now).
            let n = gp.pressure.pending.load(Ordering::SeqCst);
            if n > 0 {
                let taken = self.collect(gp, n);
                self.hand_over(gp, taken);
            } else {
                self.give_back_token(self.lock_in_flight());
            }
            true
        };
        if !collected {
            // End the reclaim thread's pacing, if it is gathering: it
            // collects the marker.
            self.call_ready.set();
        }
        // A thread that was running at the check above may have exited
        // since (only after a shutdown, and only with nothing left to do:
        // `try_exit`); the marker, or what this drain left after it, needs
        // one.
        self.ensure_reclaim_thread(spawn);
        // Run the chunks before the marker, and the marker, as they become
        // takeable, here or on other runners (whose chunk ends come with a
        // notification under `ready`'s lock when a drain waits: a check
        // here that misses the flag is followed by that wake-up).
        loop {
            if may_run {
                self.run_ready(gp, Runner::Drainer { done: &done });
                // In the child of a `fork()` from a callback run above
                // there is no reclaim thread, and the marker may still be
                // in the queue: start one (before `ready`'s lock, which is
                // taken after `reclaim`'s elsewhere).
                self.ensure_reclaim_thread(spawn);
            }
            let mut r = lock(&self.ready);
            // Acquire: see the marker.
            if done.load(Ordering::Acquire) {
                break;
            }
            if !may_run || r.takeable().is_none() {
                r = self.wait_chunk(r);
            }
            drop(r);
        }
        // What this drain collected after its marker, and what was queued
        // after the marker, is the reclaim thread's. Woken only now, not
        // when the batch was collected: it would run chunks side by side
        // with this thread, one waiting for the other. And only then: a
        // wake-up is a system call (SeqCst: see the loads of `pending`
        // elsewhere). Not for a pacing thread that only has callbacks to
        // harvest, which it does when the pacing ends (`wake_for_callbacks`);
        // a gathering this drain took the batch of sees this count at its
        // next look and ends then (`pace`).
        if collected {
            // Relaxed: see `pace`.
            self.drain_collections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !lock(&self.ready).list.is_empty() {
                self.call_ready.set();
            } else if gp.pressure.pending.load(Ordering::SeqCst) > 0 {
                self.wake_for_callbacks();
            }
        }
        // Nothing more to wait for: every callback queued before the marker
        // has finished (it is a barrier). Chunks taken since were queued
        // after it; a drain that waited for them too (as it did until the
        // marker became a barrier) deadlocked with a callback queued after
        // the drain began that waits for the drain to return.
    }

    /// Locks the in-flight batch (see the field).
    pub(crate) fn lock_in_flight(&self) -> MutexGuard<'_, InFlight> {
        lock(&self.in_flight)
    }

    /// Takes the consumer token if no one holds it ([`InFlight`]). The
    /// reclaim thread (`wait`) that finds it taken is woken through
    /// `call_ready` when it is given back.
    fn try_consume(&self, wait: bool) -> bool {
        let mut f = self.lock_in_flight();
        if f.consumer.is_some() {
            f.wanted |= wait;
            return false;
        }
        f.consumer = Some(std::thread::current().id());
        true
    }

    /// Gives the token back (the batch, if any, already moved out), waking
    /// the reclaim thread if it wanted it.
    fn give_back_token(&self, mut f: MutexGuard<'_, InFlight>) {
        f.consumer = None;
        let wanted = std::mem::take(&mut f.wanted);
        drop(f);
        if wanted {
            self.call_ready.set();
        }
    }

    /// As the queue's consumer (the token held, `n` read from `pending`
    /// while holding it): takes the `n` counted callbacks off the queue
    /// (nodes hold several callbacks, so this may take a little more;
    /// producers count each node before pushing it, and `pop` waits for a
    /// push in progress), then waits for a grace period that starts after
    /// the take: every node taken was queued before it started. Returns
    /// how many it took; [`hand_over`](Self::hand_over) finishes.
    fn collect(&self, gp: &GracePeriods, n: usize) -> usize {
        let mut taken = 0;
        {
            let mut f = self.lock_in_flight();
            while taken < n {
                let node = self.queue.pop();
                taken += node.len();
                // Kept as it came (no copy, no allocation of a merged batch).
                f.chunks.push(node);
            }
        }
        gp.wait_grace_period();
        // Appends that found their batch not empty did not flag it; if a
        // taker had emptied it meanwhile, this look (after the grace
        // period's heavy barrier) sees them (module docs of `batch.rs`).
        // Flagged, and the reclaim thread woken: a drain collecting here
        // is not the thread that harvests, and an append that finds the
        // flag set wakes no one (a reviewer injected the interleaving: a
        // callback waited with no bound).
        if gp.pressure.batches.any_waiting() && gp.pressure.batches.mark_dirty() {
            self.call_ready.set();
        }
        taken
    }

    /// Ends a [`collect`](Self::collect): no longer counts the `taken`
    /// callbacks as pending (only now, so the forcing threshold saw them
    /// in flight), moves them to `ready` and gives the token back.
    fn hand_over(&self, gp: &GracePeriods, taken: usize) {
        // SeqCst: as the loads of `pending`; only a token holder lowers it.
        gp.pressure.pending.fetch_sub(taken, Ordering::SeqCst);
        let mut f = self.lock_in_flight();
        lock(&self.ready).push_batch(std::mem::take(&mut f.chunks));
        self.give_back_token(f);
        self.ready_added.set();
    }

    /// Waits for a runner to finish a chunk (`drain`; the reclaim thread
    /// in `run_ready`).
    fn wait_chunk<'a>(&self, mut r: MutexGuard<'a, Ready>) -> MutexGuard<'a, Ready> {
        r.waiting += 1;
        r = match self.chunk_done.wait(r) {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        r.waiting -= 1;
        r
    }

    /// Makes sure a reclaim thread runs, starting one if none does.
    ///
    /// # Panics
    /// If the thread cannot be started; `running` stays false, so the next
    /// caller tries again.
    #[inline]
    fn ensure_reclaim_thread(&self, spawn: Spawn<'_>) {
        // SeqCst: the producer's side of the Dekker pair with the exiting
        // thread's store (module docs); callers bump `pending` or
        // `requested` before their second call.
        if !self.running.load(Ordering::SeqCst) {
            self.start_reclaim_thread(spawn);
        }
    }

    /// The slow path of [`ensure_reclaim_thread`](Self::ensure_reclaim_thread).
    #[cold]
    #[inline(never)]
    fn start_reclaim_thread(&self, spawn: Spawn<'_>) {
        let mut slot = lock(&self.reclaim);
        // SeqCst: as above (under `reclaim`, which the exiting thread holds
        // while it decides).
        if self.running.load(Ordering::SeqCst) {
            return;
        }
        match spawn() {
            // The old handle, if any, is of a thread that has exited (or is
            // past its last touch of the queue): dropping it detaches it.
            Ok(handle) => *slot = Some(handle),
            Err(e) => {
                drop(slot);
                panic!("rcu: cannot start the reclaim thread: {e}");
            }
        }
        // SeqCst: as above; the new thread reads the queue only after its
        // spawn, which happens after this store.
        self.running.store(true, Ordering::SeqCst);
    }

    /// The reclaim thread's exit after a shutdown: under `reclaim`, clears
    /// `running`, then looks once more for work. Returns whether it may
    /// exit (nothing pending, no grace period asked for, nothing a drain
    /// collected still to run).
    fn try_exit(&self, gp: &GracePeriods) -> Exit {
        let _slot = lock(&self.reclaim);
        // SeqCst: the thread's side of the Dekker pair (module docs).
        self.running.store(false, Ordering::SeqCst);
        // SeqCst (both): as above. Then nothing collected by a drain (the
        // token free: what its holder took is in `ready` by then) may be
        // left in `ready` (chunks after a drain's marker are this thread's
        // to run). A drain holding the token wakes this thread when it
        // gives it back (`wanted`): waiting for that, not looking again at
        // once, since nothing else may change until then (loom found the
        // spin).
        let exit = if gp.pressure.pending.load(Ordering::SeqCst) != 0
            || gp.pressure.batches.is_dirty()
            || !gp.poll(gp.requested.load(Ordering::SeqCst))
        {
            Exit::No
        } else if !self.try_consume(true) {
            Exit::AfterTheToken
        } else {
            self.give_back_token(self.lock_in_flight());
            if lock(&self.ready).list.is_empty() {
                Exit::Yes
            } else {
                Exit::No
            }
        };
        if exit != Exit::Yes {
            // SeqCst: as above. Under the lock, so no producer started a
            // thread in between.
            self.running.store(true, Ordering::SeqCst);
        }
        exit
    }

    /// Stops the reclaim thread after it has run every queued callback.
    pub(crate) fn shutdown(&self, gp: &GracePeriods) {
        // SeqCst: read by the reclaim thread after it finds nothing pending.
        self.shutdown.store(true, Ordering::SeqCst);
        self.call_ready.set();
        let thread = lock(&self.reclaim).take();
        // Joining could wait for itself from user code run by an engine
        // (this domain's reclaim thread, or another domain's, which this
        // one's callbacks might be waiting for), and inside a critical
        // section of this domain on this thread (a local guard: the
        // thread's grace periods wait for it). The thread is then left to
        // finish the queue and exit on its own. (An owned guard may be
        // held anywhere: its holder is expected to drop it, as for
        // `synchronize`.)
        if let Some(t) = thread
            && current_user_code().is_none()
            && !lock(&gp.readers.registry).current_thread_reading()
        {
            let _ = t.join();
        }
    }
}

/// The reclaim thread: waits for callbacks, starts a grace period (at once
/// from idle with no reader running, paced otherwise), then runs the batch
/// counted before it. Nothing in it can unwind: every callback (and its
/// panic payload) runs inside a catch.
pub(crate) fn reclaim_loop(cb: &Callbacks, gp: &GracePeriods) {
    let _bomb = AbortOnUnwind("the reclaim thread");
    // For the child of a fork from one of this thread's callbacks.
    #[cfg(all(unix, not(rcu_loom), not(miri)))]
    crate::fork::mark_reclaim_thread(cb);
    let p = &gp.pressure;
    // When the last callback grace period ended (`None`: none yet).
    let mut last_end: Option<std::time::Instant> = None;
    // `drain_collections` when this thread collected its last batch: a
    // drain that took a batch since ends the pacing (`pace`).
    let mut drains_seen = 0;
    // Whether callbacks arrived while the last batch waited for its grace
    // period: a stream, which this thread paces. A callback queued after
    // the last one ran is paced too if the domain's latest grace period
    // (this thread's or a `synchronize` caller's) found a reader in a
    // critical section (`readers_seen`, membarrier mode only): a stream
    // slower than a grace period would otherwise interrupt the running
    // readers once per callback. With no reader running (a caller that
    // waits for each callback in turn, an occasional `call_rcu`) it starts
    // at once; so does a callback a task awaits (`hurry`).
    let mut busy = false;
    // The `hurry` count as the last pacing ended (0 at first: a count left
    // from before this thread, a reclaim thread that exited after a
    // shutdown or one of a fork's parent, spares one pacing).
    let mut seen_hurries = 0;
    // The last batch is in `ready`, left to its producers (`run_own`) for
    // the first `PRODUCERS_WINDOW` of the pacing, or until the stream stops.
    let mut left = false;
    // A task awaits a callback of the batch to come (`hurry`): that batch
    // is not left to the producers, whose window would hold it up to 1 ms
    // (a reviewer measured `synchronize_async` at 1.1-1.3 ms beside a
    // stream, 8-33 µs without the window). Kept from a pacing that saw the
    // hurry to the batch it is for, even when a drain holding the token
    // sends this thread round again before it collects (a second reviewer).
    let mut hurried = false;
    loop {
        loop {
            cb.call_ready.reset();
            // Per-thread batches that gained callbacks since the last look
            // go to the queue (and into `pending`) now.
            if p.batches.take_dirty() {
                cb.harvest(gp);
            }
            // What a drain collected and left after its marker (the marker
            // of a drain that runs no callback itself among them): run
            // first, before a batch of its own adds a grace period.
            if !left && !lock(&cb.ready).list.is_empty() {
                cb.run_ready(gp, Runner::ReclaimThread);
                continue;
            }
            // SeqCst: see `enqueue`.
            let n = p.pending.load(Ordering::SeqCst);
            if n > 0 {
                break;
            }
            if left {
                // The stream stopped: no producer comes back for them.
                left = false;
                continue;
            }
            // SeqCst: see `start_poll`.
            let asked = gp.requested.load(Ordering::SeqCst);
            if !gp.poll(asked) {
                // A grace period asked for by `start_poll`: run it (or share
                // one that runs), then look again.
                gp.wait_until(asked);
                continue;
            }
            // SeqCst (Acquire is what matters): pairs with the store in
            // `shutdown`, which follows every `call_rcu` that must still run.
            // `try_exit` re-reads `pending` after it: the load above may
            // predate a callback queued just before shutdown (loom found this
            // exit with a callback still queued).
            if cb.shutdown.load(Ordering::SeqCst) {
                #[cfg(rcu_loom)]
                if crate::grace_period::LoomDefects::get(&gp.defects.exit_without_recheck) {
                    return;
                }
                match cb.try_exit(gp) {
                    Exit::Yes => return,
                    Exit::No => continue,
                    Exit::AfterTheToken => {}
                }
            }
            cb.call_ready.wait();
        }
        match last_end {
            Some(end) if busy || gp.readers_seen() => {
                let pacing = gp.callback_pacing();
                let hurries_before = seen_hurries;
                if left {
                    // The producers' window (it ends early as the pacing
                    // does), then what they left, in order.
                    cb.pace(
                        gp,
                        end + pacing.min(PRODUCERS_WINDOW),
                        seen_hurries,
                        drains_seen,
                    );
                    left = false;
                    cb.run_ready(gp, Runner::ReclaimThread);
                }
                cb.pace(gp, end + pacing, seen_hurries, drains_seen);
                // Read after the pacing's last look, before the harvest:
                // every hurry counted here is for a callback this harvest
                // sees (`hurry`).
                seen_hurries = cb.hurries();
                hurried |= seen_hurries != hurries_before;
                // What arrived while it gathered goes into this batch too:
                // every batch, flagged or not. An append that raced the
                // last harvest is not flagged (`batch.rs`), and what ended
                // the pacing may have been raised right after it: a drain
                // raises its count before its own harvest, a task its
                // hurry count. `pace` read that with SeqCst, so the append
                // is visible to this harvest, which takes it into this
                // batch instead of the next one (Miri found both: a task
                // that waited the whole pacing, a gathered callback left
                // to a grace period of its own).
                let _ = p.batches.take_dirty();
                cb.harvest(gp);
            }
            _ => {}
        }
        // Take the batch off the queue as its consumer, *before* the grace
        // period (`collect`). A drain may hold the token, collecting a
        // batch of its own: it sets `call_ready` when it gives the token
        // back, and this thread looks again then (`n` was read before).
        if !cb.try_consume(true) {
            cb.call_ready.wait();
            continue;
        }
        // SeqCst: as above. Read again with the token held: a drain may
        // have collected since.
        let n = p.pending.load(Ordering::SeqCst);
        if n == 0 {
            cb.give_back_token(cb.lock_in_flight());
            continue;
        }
        let taken = cb.collect(gp, n);
        last_end = Some(std::time::Instant::now());
        // Relaxed: see `pace`.
        drains_seen = cb
            .drain_collections
            .load(std::sync::atomic::Ordering::Relaxed);
        // SeqCst: as the loads above; a stale value only changes whether
        // the next grace period is paced.
        busy = p.pending.load(Ordering::SeqCst) > taken || p.batches.is_dirty();
        // (`left` implies `busy`, so the pacing above ran what was left.)
        debug_assert!(!left, "a batch left to the producers was not run");
        // Into `ready`, where producers (their own chunks; anyone's over
        // the memory limit) and drains can run it.
        cb.hand_over(gp, taken);
        let awaited = std::mem::take(&mut hurried);
        left = busy
            && !awaited
            && !gp.offload_callbacks()
            && p.drains.load(Ordering::SeqCst) == 0
            && p.pending_bytes.load() < gp.memory_limit() / 2;
        if !left {
            cb.run_ready(gp, Runner::ReclaimThread);
        }
        // A callback that left a critical section of this domain open on
        // this thread (a leaked guard) would make every later grace period
        // wait for this thread, which is the one that must run them.
        if lock(&gp.readers.registry).current_thread_reading() {
            report(format_args!(
                "rcu: fatal: a call_rcu callback left a read-side critical section open on the \
                 reclaim thread (a leaked guard); its grace periods could never end"
            ));
            std::process::abort();
        }
    }
}

#[cfg(all(test, not(rcu_loom)))]
mod tests {
    use crate::RcuDomain;
    use crate::domain::FAIL_SPAWN;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A `call_rcu` that cannot start the reclaim thread leaks its closure
    /// instead of dropping it: what the closure owns may be a retired value
    /// that readers still hold (a batch of unlinked nodes whose drop frees
    /// them, say), which a drop at once would free under them. It was
    /// dropped during the panic's unwinding.
    #[test]
    fn a_call_rcu_that_cannot_start_the_reclaim_thread_leaks_its_closure() {
        struct FreesOnDrop(Arc<AtomicBool>);
        impl Drop for FreesOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let domain = RcuDomain::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let value = FreesOnDrop(Arc::clone(&dropped));
        FAIL_SPAWN.set(true);
        let r = catch_unwind(AssertUnwindSafe(|| domain.defer_drop(value)));
        FAIL_SPAWN.set(false);
        let msg = r.expect_err("queued without a reclaim thread");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("cannot start the reclaim thread"), "{msg}");
        assert!(
            !dropped.load(Ordering::SeqCst),
            "the retired value was dropped at once"
        );
        assert_eq!(domain.stats().callbacks_queued, 0);
        // The next call starts the thread and works as usual.
        let later = FreesOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&later.0);
        domain.defer_drop(later);
        domain.drain();
        assert!(flag.load(Ordering::SeqCst));
    }
}
