//! QEMU's `tests/unit/test-rcu-list.c` scenarios, on both list kinds:
//! 1, 5 and 20 reader threads walk the list while one updater inserts and
//! removes at random for about a second (a fixed number of updates under
//! Miri). Every element carries an `alive` flag that its reclamation clears:
//! no reader may ever see a cleared flag, no element may be reclaimed twice,
//! and after `drain()` the elements reclaimed equal the elements removed.
//!
//! Elements are owned through `Tracked`, a pointer kind whose drop marks
//! the element reclaimed and counts it, while the memory itself is kept
//! until the test ends, so a reader that reaches a reclaimed element sees
//! `alive == false` instead of undefined behaviour. (The differential tests
//! free for real, under Miri too.)

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{Rng, size};
use rcu_core::{Guard, RcuDomain};
use rcu_list::{ListLink, OwningPointer, RcuList, RcuSList, SListLink, intrusive_adapter};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Elem {
    alive: AtomicBool,
    reclaimed: Arc<AtomicUsize>,
    link: ListLink,
    slink: SListLink,
}

/// Owns an element without freeing it: its drop is the reclamation.
struct Tracked(&'static Elem);

// SAFETY: a `&'static Elem` underneath (leaked by the test until it ends):
// valid, immovable, shared only; the drop touches only atomics.
unsafe impl OwningPointer for Tracked {
    type Target = Elem;
    fn into_raw(this: Self) -> *const Elem {
        let p = std::ptr::from_ref(this.0);
        std::mem::forget(this);
        p
    }
    unsafe fn from_raw(ptr: *const Elem) -> Self {
        // SAFETY: `ptr` came from `into_raw`, from a `&'static Elem`.
        Tracked(unsafe { &*ptr })
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let was = self.0.alive.swap(false, Ordering::AcqRel);
        assert!(was, "an element was reclaimed twice");
        self.0.reclaimed.fetch_add(1, Ordering::Relaxed);
    }
}

intrusive_adapter!(TList = Tracked: Elem { link => ListLink });
intrusive_adapter!(TSList = Tracked: Elem { slink => SListLink });

/// The operations a scenario needs of a list kind.
trait Kind: Send + Sync + 'static {
    fn new_in(domain: &RcuDomain) -> Self;
    /// Walks the list, checking every element is alive; returns the count.
    fn walk(&self, guard: &impl Guard) -> usize;
    /// Inserts `e` somewhere (`len` elements are linked).
    fn insert(&self, e: Tracked, len: usize, rng: &mut Rng, guard: &impl Guard);
    /// Removes some element (`len > 0` are linked).
    fn remove(&self, len: usize, rng: &mut Rng, guard: &impl Guard);
    fn clear(&self);
}

fn check_alive(e: &Elem) {
    // Acquire: pairs with the reclamation's swap, so seeing `true` means
    // the element had not been reclaimed when we read it.
    assert!(
        e.alive.load(Ordering::Acquire),
        "a reader saw a reclaimed element"
    );
}

impl Kind for RcuList<TList> {
    fn new_in(domain: &RcuDomain) -> Self {
        RcuList::new_in(domain)
    }
    fn walk(&self, guard: &impl Guard) -> usize {
        self.iter(guard).inspect(|e| check_alive(e)).count()
    }
    fn insert(&self, e: Tracked, len: usize, rng: &mut Rng, guard: &impl Guard) {
        match rng.below(4) {
            0 => self.push_front(e),
            1 => self.push_back(e),
            k if len > 0 => {
                let pos = self.iter(guard).nth(rng.below(len)).unwrap();
                let r = if k == 2 {
                    self.insert_after(pos, e)
                } else {
                    self.insert_before(pos, e)
                };
                assert!(r.is_ok(), "only this thread writes");
            }
            _ => self.push_back(e),
        }
    }
    fn remove(&self, len: usize, rng: &mut Rng, guard: &impl Guard) {
        let removed = match rng.below(3) {
            0 => self.pop_front(),
            1 => self.pop_back(),
            _ => self.remove(self.iter(guard).nth(rng.below(len)).unwrap()),
        };
        drop(removed.expect("only this thread writes"));
    }
    fn clear(&self) {
        RcuList::clear(self);
    }
}

impl Kind for RcuSList<TSList> {
    fn new_in(domain: &RcuDomain) -> Self {
        RcuSList::new_in(domain)
    }
    fn walk(&self, guard: &impl Guard) -> usize {
        self.iter(guard).inspect(|e| check_alive(e)).count()
    }
    fn insert(&self, e: Tracked, len: usize, rng: &mut Rng, guard: &impl Guard) {
        if len > 0 && rng.below(2) == 0 {
            let pos = self.iter(guard).nth(rng.below(len)).unwrap();
            assert!(self.insert_after(pos, e).is_ok(), "only this thread writes");
        } else {
            self.push_front(e);
        }
    }
    fn remove(&self, len: usize, rng: &mut Rng, guard: &impl Guard) {
        let removed = if rng.below(2) == 0 {
            self.pop_front()
        } else {
            self.remove(self.iter(guard).nth(rng.below(len)).unwrap())
        };
        drop(removed.expect("only this thread writes"));
    }
    fn clear(&self) {
        RcuSList::clear(self);
    }
}

const MAX_LEN: usize = 100;

fn scenario<K: Kind>(readers: usize, seed: u64) {
    let readers = if cfg!(miri) { readers.min(2) } else { readers };
    let domain = RcuDomain::new();
    let list = Arc::new(K::new_in(&domain));
    let stop = Arc::new(AtomicBool::new(false));
    let reclaimed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (domain, list, stop) = (domain.clone(), Arc::clone(&list), Arc::clone(&stop));
            std::thread::spawn(move || {
                let reader = domain.register();
                let (mut walks, mut seen) = (0u64, 0u64);
                loop {
                    let guard = reader.read_lock();
                    // No bound on the count: a walk that stalls on an
                    // element may see many elements inserted ahead of it.
                    seen += list.walk(&guard) as u64;
                    drop(guard);
                    walks += 1;
                    // Relaxed: a stop request; nothing else is read through it.
                    if stop.load(Ordering::Relaxed) {
                        return (walks, seen);
                    }
                }
            })
        })
        .collect();

    // The updater.
    let mut rng = Rng::new(seed);
    let reader = domain.register();
    let mut all: Vec<*mut Elem> = Vec::new();
    let (mut len, mut removed) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(1);
    let updates = size(usize::MAX, 40);
    let mut done = 0;
    while done < updates && (cfg!(miri) || Instant::now() < deadline) {
        let guard = reader.read_lock();
        if len < MAX_LEN && (len == 0 || rng.below(2) == 0) {
            let e = Box::into_raw(Box::new(Elem {
                alive: AtomicBool::new(true),
                reclaimed: Arc::clone(&reclaimed),
                link: ListLink::new(),
                slink: SListLink::new(),
            }));
            all.push(e);
            // SAFETY: freshly leaked; freed only at the end of the test.
            list.insert(Tracked(unsafe { &*e }), len, &mut rng, &guard);
            len += 1;
        } else {
            list.remove(len, &mut rng, &guard);
            len -= 1;
            removed += 1;
        }
        drop(guard);
        done += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut walks, mut seen) = (0, 0);
    for t in threads {
        let (w, s) = t.join().unwrap();
        walks += w;
        seen += s;
    }
    assert!(walks >= readers as u64);
    eprintln!("{readers} readers: {walks} walks, {seen} elements seen, {done} updates");
    list.clear();
    removed += len;
    domain.drain();
    assert_eq!(
        reclaimed.load(Ordering::Relaxed),
        removed,
        "removed != reclaimed"
    );
    assert_eq!(removed, all.len(), "every element created was removed");
    drop(list);
    for e in all {
        // SAFETY: from `Box::into_raw` above; every reader has joined and
        // every element was reclaimed (the asserts above), so nothing uses it.
        drop(unsafe { Box::from_raw(e) });
    }
}

#[test]
fn list_1_reader() {
    scenario::<RcuList<TList>>(1, 1);
}

#[test]
fn list_5_readers() {
    scenario::<RcuList<TList>>(5, 5);
}

#[test]
#[cfg_attr(miri, ignore = "the same as 5 readers under Miri (2 threads)")]
fn list_20_readers() {
    scenario::<RcuList<TList>>(20, 20);
}

#[test]
fn slist_1_reader() {
    scenario::<RcuSList<TSList>>(1, 101);
}

#[test]
fn slist_5_readers() {
    scenario::<RcuSList<TSList>>(5, 105);
}

#[test]
#[cfg_attr(miri, ignore = "the same as 5 readers under Miri (2 threads)")]
fn slist_20_readers() {
    scenario::<RcuSList<TSList>>(20, 120);
}
