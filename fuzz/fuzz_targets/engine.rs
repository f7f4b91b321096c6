//! Fuzzes rcu-core's grace-period engine.
//!
//! # Input
//! A small [`Config`](rcu_core::Config) (callback threshold, polls before
//! forcing, membarrier or fences) and 2 or 3 per-thread scripts of at most
//! [`MAX_OPS`] operations each: nested read locks and unlocks in any order,
//! owned guards taken, dropped and moved between threads (through a shared
//! mailbox, with what was loaded under them), loads of an RCU-published
//! object, replacements of that object retired in each way the engine offers
//! (`defer_free`, `defer_drop`, `call_rcu`, `cookie` + `poll`, `cookie` +
//! `synchronize_since`, `start_poll` + `poll` (which must complete on its
//! own), `synchronize`, `synchronize_expedited`), plain
//! `call_rcu` and `defer_drop` work, `drain`, force-quiescent notifiers added
//! and removed, `quiescent`, and short sleeps (windows for the reclaim
//! thread). The scripts start together at a barrier. Every input runs on its own
//! [`RcuDomain`](rcu_core::RcuDomain), so inputs are independent.
//!
//! # Checks (all real assertions; a failure aborts the process)
//! * No retired object is dropped while a reader that loaded it is still in
//!   the critical section it loaded it in: every load is remembered with its
//!   section, and before that section ends (unlock of the last nested guard,
//!   `quiescent`, drop of an owned guard, on whichever thread holds it) the
//!   object's alive flag and its payload are checked.
//! * Every callback and every deferred drop runs exactly once: a second run
//!   aborts at once (an assertion inside a callback would be caught by the
//!   engine, so callbacks abort instead), and after the domain is dropped
//!   (which joins its reclaim thread) every one has run.
//! * `drain` returns, and every callback whose `call_rcu` returned before the
//!   drain started (on any thread) has run when it returns.
//! * `poll(cookie)` is true after `synchronize` or `synchronize_since(cookie)`;
//!   a `start_poll` cookie polls true eventually with no other help.
//! * `quiescent` succeeds exactly when one guard is held.
//! * The engine's statistics agree: after the final drain, callbacks queued
//!   == run == what the input queued, none pending, none panicked.
//! * Every notifier closure is dropped exactly once.
//!
//! # Progress
//! A thread drops every guard it holds, and empties the shared mailbox of
//! owned guards, before it waits (`synchronize*`, `drain`) and when its script
//! ends; so every grace period waits only for threads that are running, and
//! every input terminates.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rcu_core::{Config, DomainGuard, GpCookie, NotifierHandle, OwnedReadGuard, RcuDomain};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Operations per thread script.
const MAX_OPS: usize = 40;
/// Owned guards one thread may hold at once.
const MAX_OWNED: usize = 4;
/// Notifiers one thread may hold at once.
const MAX_NOTIFIERS: usize = 3;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Force the grace period at this many pending callbacks (1..=16).
    callback_threshold: u8,
    /// Normal-state sleeps before forcing (0..=3).
    max_polls: u8,
    /// Use membarrier (else the fence fallback).
    membarrier: bool,
    /// The third thread's script is used when this is set.
    three_threads: bool,
    scripts: [Vec<Op>; 3],
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// A (nested) read lock on the thread's `Reader`.
    Lock,
    /// Drops the nested guard at this index (any order).
    Unlock(u8),
    /// Takes an owned guard.
    LockOwned,
    /// Drops the owned guard at this index.
    UnlockOwned(u8),
    /// Moves the owned guard at this index, with its loads, to the mailbox.
    SendOwned(u8),
    /// Takes an owned guard (maybe another thread's) from the mailbox.
    TakeOwned,
    /// Loads the published object under the innermost section held.
    Load,
    /// Checks every object loaded under a section still held.
    Check,
    /// Publishes a new object and retires the old one.
    Replace(Retire),
    /// Frees the cookie-retired objects whose grace period has passed.
    Poll,
    /// Waits for the oldest cookie-retired object's grace period, frees it.
    SynchronizeSince,
    /// Outside any critical section, polls (sleeping between polls) until
    /// every `start_poll` cookie of this thread is done, and frees their
    /// objects: those grace periods must end without anyone else's help
    /// (a hang is reported by libFuzzer's `-timeout`).
    AwaitStarted,
    Synchronize,
    SynchronizeExpedited,
    /// `call_rcu` of a counting callback.
    CallRcu,
    /// `defer_drop` of a counting value.
    DeferDrop,
    Drain,
    AddNotifier,
    RemoveNotifier(u8),
    /// `quiescent` on the innermost nested guard.
    Quiescent,
    /// Sleeps (0 to 255 µs), inside or outside critical sections: a window
    /// for the reclaim thread and the other threads to run.
    Pause(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Retire {
    DeferFree,
    DeferDrop,
    CallRcu,
    /// `cookie`, freed later by `Poll`, `SynchronizeSince` or the script's end.
    Cookie,
    /// `start_poll`: as `Cookie`, and its grace period must complete on its
    /// own (`AwaitStarted`).
    StartPoll,
    Synchronize,
    SynchronizeExpedited,
}

const ALIVE: u8 = 1;
const DROPPED: u8 = 2;

/// The RCU-published object.
struct Obj {
    idx: usize,
    payload: u64,
    shared: Arc<Shared>,
}

fn payload_of(idx: usize) -> u64 {
    (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5
}

impl Drop for Obj {
    fn drop(&mut self) {
        // Runs on the reclaim thread for deferred drops, where a panic would
        // be caught by the engine: abort instead.
        let prev = self.shared.objs[self.idx].swap(DROPPED, Ordering::SeqCst);
        if prev != ALIVE {
            fatal(&format!("object {} dropped twice (state {prev})", self.idx));
        }
    }
}

/// A value whose drop counts as its callback's run.
struct Counted {
    id: usize,
    shared: Arc<Shared>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.ran(self.id);
    }
}

#[cold]
fn fatal(msg: &str) -> ! {
    eprintln!("engine fuzz: {msg}");
    std::process::abort();
}

/// State shared by one input's threads.
struct Shared {
    /// Each object's state: 0 (never made), ALIVE, DROPPED.
    objs: Box<[AtomicU8]>,
    next_obj: AtomicUsize,
    /// Each object whose retirement (through a callback) was queued.
    obj_queued: Box<[AtomicBool]>,
    /// Runs of each callback (or drops of each deferred value).
    runs: Box<[AtomicU32]>,
    /// Each callback whose `call_rcu` has returned.
    cb_queued: Box<[AtomicBool]>,
    next_cb: AtomicUsize,
    /// Calls of `call_rcu`, `defer_drop`, `defer_free` and `drain` (which
    /// queues one callback).
    calls: AtomicUsize,
    notifiers_added: AtomicUsize,
    notifiers_dropped: AtomicUsize,
    notifier_calls: AtomicUsize,
}

impl Shared {
    fn new(max: usize) -> Self {
        Shared {
            objs: (0..max).map(|_| AtomicU8::new(0)).collect(),
            next_obj: AtomicUsize::new(0),
            obj_queued: (0..max).map(|_| AtomicBool::new(false)).collect(),
            runs: (0..max).map(|_| AtomicU32::new(0)).collect(),
            cb_queued: (0..max).map(|_| AtomicBool::new(false)).collect(),
            next_cb: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            notifiers_added: AtomicUsize::new(0),
            notifiers_dropped: AtomicUsize::new(0),
            notifier_calls: AtomicUsize::new(0),
        }
    }

    fn ran(&self, id: usize) {
        if self.runs[id].fetch_add(1, Ordering::SeqCst) != 0 {
            fatal(&format!("callback {id} ran twice"));
        }
    }

    fn new_obj(self: &Arc<Self>) -> *mut Obj {
        let idx = self.next_obj.fetch_add(1, Ordering::SeqCst);
        self.objs[idx].store(ALIVE, Ordering::SeqCst);
        Box::into_raw(Box::new(Obj {
            idx,
            payload: payload_of(idx),
            shared: Arc::clone(self),
        }))
    }
}

/// An object loaded under a critical section that is still held, with its
/// index, read while it was surely alive (so a premature free is reported as
/// a failed assertion even without ASan).
struct Loaded(*const Obj, usize);

// SAFETY: a `Loaded` moves between threads only together with the owned guard
// whose critical section protects it (through the mailbox); `Obj` is `Sync`.
unsafe impl Send for Loaded {}

impl Loaded {
    /// Asserts the object is alive; call only while the section that loaded
    /// it is held.
    fn check(&self, shared: &Shared) {
        let idx = self.1;
        let state = shared.objs[idx].load(Ordering::SeqCst);
        assert_eq!(
            state, ALIVE,
            "object {idx} was dropped while a reader that loaded it is inside its critical section",
        );
        // SAFETY: the critical section this object was loaded in is still
        // held, so the engine must not have freed it (checked just above;
        // under ASan a premature free is also reported right here).
        let obj = unsafe { &*self.0 };
        assert_eq!(obj.idx, idx, "object {idx} corrupted");
        assert_eq!(obj.payload, payload_of(idx), "object {idx} corrupted");
    }
}

type Mailbox = Mutex<Vec<(OwnedReadGuard, Vec<Loaded>)>>;

struct World {
    domain: RcuDomain,
    slot: AtomicPtr<Obj>,
    shared: Arc<Shared>,
    mailbox: Mailbox,
}

/// One thread's state.
struct Thread<'w, 'r> {
    world: &'w World,
    reader: &'r rcu_core::Reader<'w>,
    nested: Vec<DomainGuard<'r>>,
    /// Objects loaded under the nested guards' section.
    nested_loads: Vec<Loaded>,
    owned: Vec<(OwnedReadGuard, Vec<Loaded>)>,
    /// Unlinked objects waiting for their cookie's grace period, and whether
    /// the cookie came from `start_poll`.
    pending: Vec<(GpCookie, *mut Obj, bool)>,
    notifiers: Vec<NotifierHandle>,
}

impl<'w, 'r> Thread<'w, 'r> {
    fn shared(&self) -> &Shared {
        &self.world.shared
    }

    fn check_all(&self) {
        for l in &self.nested_loads {
            l.check(self.shared());
        }
        for (_, loads) in &self.owned {
            for l in loads {
                l.check(self.shared());
            }
        }
    }

    fn drop_owned(&self, (guard, loads): (OwnedReadGuard, Vec<Loaded>)) {
        for l in &loads {
            l.check(self.shared());
        }
        drop(loads);
        drop(guard);
    }

    /// Leaves every critical section this thread holds and empties the
    /// mailbox, checking what was loaded under each first.
    fn release_all(&mut self) {
        for l in &self.nested_loads {
            l.check(self.shared());
        }
        self.nested_loads.clear();
        self.nested.clear();
        for o in std::mem::take(&mut self.owned) {
            self.drop_owned(o);
        }
        let mailed = std::mem::take(&mut *self.world.mailbox.lock().unwrap());
        for o in mailed {
            self.drop_owned(o);
        }
    }

    /// Frees an object whose grace period is known to have passed.
    fn free_now(&self, p: *mut Obj) {
        // SAFETY: `p` came from `Box::into_raw`, was unlinked, and a full grace
        // period has passed since (checked by the caller through the engine),
        // so no reader can still hold it; it is freed once.
        drop(unsafe { Box::from_raw(p) });
    }

    fn queue_cb(&self, f: impl FnOnce(usize, Arc<Shared>) + Send + 'static) {
        let id = self.shared().next_cb.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&self.world.shared);
        self.shared().calls.fetch_add(1, Ordering::SeqCst);
        self.world.domain.call_rcu(move || f(id, shared));
        self.shared().cb_queued[id].store(true, Ordering::SeqCst);
    }

    fn drain(&mut self) {
        self.release_all();
        let sh = &self.world.shared;
        let cbs: Vec<usize> = (0..sh.runs.len())
            .filter(|&i| sh.cb_queued[i].load(Ordering::SeqCst))
            .collect();
        let objs: Vec<usize> = (0..sh.objs.len())
            .filter(|&i| sh.obj_queued[i].load(Ordering::SeqCst))
            .collect();
        // `drain` queues one callback of its own.
        sh.calls.fetch_add(1, Ordering::SeqCst);
        self.world.domain.drain();
        for i in cbs {
            assert_eq!(
                sh.runs[i].load(Ordering::SeqCst),
                1,
                "callback {i} not run by drain"
            );
        }
        for i in objs {
            assert_eq!(
                sh.objs[i].load(Ordering::SeqCst),
                DROPPED,
                "retired object {i} not freed by drain"
            );
        }
    }

    fn step(&mut self, op: Op) {
        let w = self.world;
        match op {
            Op::Lock => self.nested.push(self.reader.read_lock()),
            Op::Unlock(i) => {
                if !self.nested.is_empty() {
                    if self.nested.len() == 1 {
                        for l in &self.nested_loads {
                            l.check(self.shared());
                        }
                        self.nested_loads.clear();
                    }
                    let i = i as usize % self.nested.len();
                    drop(self.nested.remove(i));
                }
            }
            Op::LockOwned => {
                if self.owned.len() < MAX_OWNED {
                    self.owned.push((w.domain.read_lock_owned(), Vec::new()));
                }
            }
            Op::UnlockOwned(i) => {
                if !self.owned.is_empty() {
                    let o = self.owned.remove(i as usize % self.owned.len());
                    self.drop_owned(o);
                }
            }
            Op::SendOwned(i) => {
                if !self.owned.is_empty() {
                    let o = self.owned.remove(i as usize % self.owned.len());
                    w.mailbox.lock().unwrap().push(o);
                }
            }
            Op::TakeOwned => {
                if self.owned.len() < MAX_OWNED {
                    let o = w.mailbox.lock().unwrap().pop();
                    if let Some(o) = o {
                        for l in &o.1 {
                            l.check(self.shared());
                        }
                        self.owned.push(o);
                    }
                }
            }
            Op::Load => {
                let loads = if !self.nested.is_empty() {
                    &mut self.nested_loads
                } else if let Some((_, loads)) = self.owned.last_mut() {
                    loads
                } else {
                    return;
                };
                // Acquire: pairs with the Release half of the swap in
                // `Replace`, so the object's fields are initialised.
                let p = w.slot.load(Ordering::Acquire);
                // SAFETY: loaded under a critical section of the domain that
                // retires it, so it is not freed before the section ends.
                let l = Loaded(p, unsafe { (*p).idx });
                l.check(&w.shared);
                loads.push(l);
            }
            Op::Check => self.check_all(),
            Op::Replace(how) => {
                let new = w.shared.new_obj();
                let blocking = matches!(how, Retire::Synchronize | Retire::SynchronizeExpedited);
                if blocking {
                    self.release_all();
                }
                // AcqRel: Release publishes `new`'s fields; Acquire pairs with
                // the previous publisher's Release, so we own `old`'s fields.
                let old = w.slot.swap(new, Ordering::AcqRel);
                // SAFETY: `old` is still allocated (only we retire it).
                let idx = unsafe { (*old).idx };
                match how {
                    Retire::DeferFree => {
                        w.shared.calls.fetch_add(1, Ordering::SeqCst);
                        // SAFETY: `old` came from `Box::into_raw`, was unlinked
                        // by the swap above, is retired once, and every reader
                        // reads it under a guard of `domain`.
                        unsafe { w.domain.defer_free(old) };
                        w.shared.obj_queued[idx].store(true, Ordering::SeqCst);
                    }
                    Retire::CallRcu => {
                        let owned = Loaded(old, idx);
                        w.shared.calls.fetch_add(1, Ordering::SeqCst);
                        w.domain.call_rcu(move || {
                            let owned = owned;
                            // SAFETY: as for `DeferFree`: unlinked, retired
                            // once, and a grace period has passed.
                            drop(unsafe { Box::from_raw(owned.0.cast_mut()) });
                        });
                        w.shared.obj_queued[idx].store(true, Ordering::SeqCst);
                    }
                    Retire::DeferDrop => {
                        /// Owns an unlinked object; frees it when dropped.
                        struct FreeOnDrop(*mut Obj);
                        // SAFETY: owns the unlinked object; `Obj` is `Send`.
                        unsafe impl Send for FreeOnDrop {}
                        impl Drop for FreeOnDrop {
                            fn drop(&mut self) {
                                // SAFETY: unlinked, retired once, and dropped
                                // only after a grace period by `defer_drop`.
                                drop(unsafe { Box::from_raw(self.0) });
                            }
                        }
                        w.shared.calls.fetch_add(1, Ordering::SeqCst);
                        w.domain.defer_drop(FreeOnDrop(old));
                        w.shared.obj_queued[idx].store(true, Ordering::SeqCst);
                    }
                    Retire::Cookie => {
                        let c = w.domain.cookie();
                        self.pending.push((c, old, false));
                    }
                    Retire::StartPoll => {
                        let c = w.domain.start_poll();
                        self.pending.push((c, old, true));
                    }
                    Retire::Synchronize => {
                        w.domain.synchronize();
                        self.free_now(old);
                    }
                    Retire::SynchronizeExpedited => {
                        w.domain.synchronize_expedited();
                        self.free_now(old);
                    }
                }
            }
            Op::Poll => {
                let mut i = 0;
                while i < self.pending.len() {
                    if w.domain.poll(self.pending[i].0) {
                        let (_, p, _) = self.pending.remove(i);
                        self.free_now(p);
                    } else {
                        i += 1;
                    }
                }
            }
            Op::SynchronizeSince => {
                if !self.pending.is_empty() {
                    self.release_all();
                    let (c, p, _) = self.pending.remove(0);
                    w.domain.synchronize_since(c);
                    assert!(w.domain.poll(c), "poll false after synchronize_since");
                    self.free_now(p);
                }
            }
            Op::Synchronize | Op::SynchronizeExpedited => {
                self.release_all();
                let c = w.domain.cookie();
                if matches!(op, Op::Synchronize) {
                    w.domain.synchronize();
                } else {
                    w.domain.synchronize_expedited();
                }
                assert!(w.domain.poll(c), "poll false after synchronize");
                // Everything unlinked before may be freed now.
                for (c, p, _) in std::mem::take(&mut self.pending) {
                    assert!(w.domain.poll(c), "poll false for an older cookie");
                    self.free_now(p);
                }
            }
            Op::AwaitStarted => {
                if self.pending.iter().any(|e| e.2) {
                    // Our own sections would hold those grace periods up.
                    self.release_all();
                    // Plain cookies stay: nothing promises they complete.
                    let (started, plain) = std::mem::take(&mut self.pending)
                        .into_iter()
                        .partition(|e| e.2);
                    self.pending = plain;
                    for (c, p, _) in started {
                        while !w.domain.poll(c) {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        self.free_now(p);
                    }
                }
            }
            Op::CallRcu => self.queue_cb(|id, shared| shared.ran(id)),
            Op::DeferDrop => {
                let id = w.shared.next_cb.fetch_add(1, Ordering::SeqCst);
                w.shared.calls.fetch_add(1, Ordering::SeqCst);
                w.domain.defer_drop(Counted {
                    id,
                    shared: Arc::clone(&w.shared),
                });
                w.shared.cb_queued[id].store(true, Ordering::SeqCst);
            }
            Op::Drain => self.drain(),
            Op::AddNotifier => {
                if self.notifiers.len() < MAX_NOTIFIERS {
                    struct Tracked(Arc<Shared>);
                    impl Drop for Tracked {
                        fn drop(&mut self) {
                            self.0.notifiers_dropped.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    w.shared.notifiers_added.fetch_add(1, Ordering::SeqCst);
                    let t = Tracked(Arc::clone(&w.shared));
                    let h = self.reader.on_force_quiescent(move || {
                        t.0.notifier_calls.fetch_add(1, Ordering::Relaxed);
                    });
                    self.notifiers.push(h);
                }
            }
            Op::RemoveNotifier(i) => {
                if !self.notifiers.is_empty() {
                    drop(self.notifiers.remove(i as usize % self.notifiers.len()));
                }
            }
            Op::Pause(us) => std::thread::sleep(Duration::from_micros(u64::from(us))),
            Op::Quiescent => {
                let n = self.nested.len();
                if n == 0 {
                    return;
                }
                if n == 1 {
                    for l in &self.nested_loads {
                        l.check(self.shared());
                    }
                }
                let done = self.nested.last_mut().unwrap().quiescent();
                assert_eq!(done, n == 1, "quiescent with {n} nested guards");
                if done {
                    self.nested_loads.clear();
                }
            }
        }
    }

    fn finish(&mut self) {
        self.release_all();
        for (c, p, _) in std::mem::take(&mut self.pending) {
            self.world.domain.synchronize_since(c);
            assert!(self.world.domain.poll(c));
            self.free_now(p);
        }
    }
}

fn run(input: &Input) {
    let threads = if input.three_threads { 3 } else { 2 };
    let scripts: Vec<&[Op]> = input.scripts[..threads]
        .iter()
        .map(|s| &s[..s.len().min(MAX_OPS)])
        .collect();
    // Objects and callbacks: at most one per op, plus the first object.
    let max = 1 + scripts.iter().map(|s| s.len()).sum::<usize>();
    let config = Config::default()
        .callback_threshold(1 + (input.callback_threshold % 16) as usize)
        .max_polls(u32::from(input.max_polls % 4))
        .poll_interval(Duration::from_micros(50))
        .membarrier(input.membarrier);
    let shared = Arc::new(Shared::new(max));
    let world = World {
        domain: RcuDomain::with_config(config),
        slot: AtomicPtr::new(std::ptr::null_mut()),
        shared: Arc::clone(&shared),
        mailbox: Mutex::new(Vec::new()),
    };
    world.slot.store(shared.new_obj(), Ordering::Release);

    // The scripts start together, so that they overlap.
    let start = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for script in &scripts {
            let world = &world;
            let start = &start;
            handles.push(s.spawn(move || {
                let reader = world.domain.register();
                start.wait();
                let mut t = Thread {
                    world,
                    reader: &reader,
                    nested: Vec::new(),
                    nested_loads: Vec::new(),
                    owned: Vec::new(),
                    pending: Vec::new(),
                    notifiers: Vec::new(),
                };
                for &op in *script {
                    t.step(op);
                }
                t.finish();
                // Leave the rest of the notifiers to the reader's
                // unregistration on odd-length scripts.
                if script.len() % 2 == 1 {
                    let notifiers = std::mem::take(&mut t.notifiers);
                    drop(t);
                    drop(reader);
                    drop(notifiers);
                }
            }));
        }
        // Joined, not left to the scope: the scope's wait ends before the
        // thread's TLS destructors run, and LeakSanitizer would report
        // glibc's destructor list of a thread that is still exiting.
        for h in handles {
            h.join().unwrap();
        }
    });

    assert!(world.mailbox.lock().unwrap().is_empty());
    shared.calls.fetch_add(1, Ordering::SeqCst);
    world.domain.drain();
    let queued = shared.calls.load(Ordering::SeqCst);
    let stats = world.domain.stats();
    assert_eq!(stats.callbacks_queued, queued as u64, "{stats:?}");
    assert_eq!(stats.callbacks_run, queued as u64, "{stats:?}");
    assert_eq!(stats.callbacks_pending, 0, "{stats:?}");
    assert_eq!(stats.callback_panics, 0, "{stats:?}");
    // No reader is left: free the published object directly.
    // SAFETY: every reader thread has ended; `slot` owns it.
    drop(unsafe { Box::from_raw(world.slot.load(Ordering::Acquire)) });
    // Dropping the last handle joins the reclaim thread.
    let World { domain, .. } = world;
    drop(domain);

    for (i, r) in shared.runs[..shared.next_cb.load(Ordering::SeqCst)]
        .iter()
        .enumerate()
    {
        assert_eq!(
            r.load(Ordering::SeqCst),
            1,
            "callback {i} did not run exactly once"
        );
    }
    for (i, o) in shared.objs[..shared.next_obj.load(Ordering::SeqCst)]
        .iter()
        .enumerate()
    {
        assert_eq!(o.load(Ordering::SeqCst), DROPPED, "object {i} leaked");
    }
    assert_eq!(
        shared.notifiers_added.load(Ordering::SeqCst),
        shared.notifiers_dropped.load(Ordering::SeqCst),
        "a notifier closure was leaked"
    );
}

fuzz_target!(|input: Input| run(&input));
