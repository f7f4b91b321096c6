//! loom models of the lists' reader/writer protocol (`--cfg rcu_loom`).
//!
//! ```text
//! RUSTFLAGS="--cfg rcu_loom" cargo test --release -p rcu-list --lib --target-dir target/loom
//! ```
//!
//! Reclamation is modelled by a pointer kind whose drop overwrites a loom
//! `UnsafeCell` in the element (the "free"); the memory itself is leaked,
//! so an unordered read is a loom race report, not real undefined
//! behaviour. The models run with no preemption bound.

use crate::adapter::OwningPointer;
use crate::{ListLink, RcuList, RcuSList, SListLink, intrusive_adapter};
use loom::cell::UnsafeCell;
use rcu_core::{Config, RcuDomain};
use std::sync::Arc;

const LIVE: u32 = 1;
const FREED: u32 = 0xdead;

struct Node {
    val: u32,
    payload: UnsafeCell<u32>,
    link: ListLink,
    slink: SListLink,
}

impl Node {
    fn leak(val: u32) -> &'static Node {
        Box::leak(Box::new(Node {
            val,
            payload: UnsafeCell::new(LIVE),
            link: ListLink::new(),
            slink: SListLink::new(),
        }))
    }

    /// A reader's look at the element.
    fn read(&self) -> u32 {
        // SAFETY: loom checks this read against the "free" in `Tracked`'s
        // drop; the memory is leaked, never really freed.
        let v = self.payload.with(|p| unsafe { *p });
        assert_eq!(v, LIVE, "a reader saw element {} reclaimed", self.val);
        self.val
    }
}

// SAFETY: `Node`'s loom cell is only written by `Tracked`'s drop, which the
// lists run after a grace period; loom checks every access.
unsafe impl Sync for Node {}

/// An owning pointer whose drop "frees" the element.
struct Tracked(&'static Node);

// SAFETY: a `&'static Node` underneath: valid, immovable, shared only; the
// drop writes through the element's `UnsafeCell`, asserting no unique
// access.
unsafe impl OwningPointer for Tracked {
    type Target = Node;
    fn into_raw(this: Self) -> *const Node {
        let p = std::ptr::from_ref(this.0);
        std::mem::forget(this);
        p
    }
    unsafe fn from_raw(ptr: *const Node) -> Self {
        // SAFETY: `ptr` came from `into_raw`, from a `&'static Node`.
        Tracked(unsafe { &*ptr })
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // SAFETY: loom checks this write against readers' reads.
        self.0.payload.with_mut(|p| unsafe { *p = FREED });
    }
}

intrusive_adapter!(ListA = Tracked: Node { link => ListLink });
intrusive_adapter!(SListA = Tracked: Node { slink => SListLink });

fn domain() -> RcuDomain {
    RcuDomain::with_config(Config::default().max_polls(1).callback_threshold(1 << 20))
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    bounded_model(None, f);
}

fn bounded_model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    builder.check(f);
}

/// What a reader of `[0, 1, 2]` may see while 1 is removed: all of it or
/// the list without 1, never less (a reader standing on 1 moves on to 2).
fn check_seen(seen: &[u32]) {
    assert!(seen == [0, 1, 2] || seen == [0, 2], "reader saw {seen:?}");
}

/// Model 1: a reader walks `[0, 1, 2]` of an `RcuList` while the writer
/// removes 1, waits for the grace period (`Removed::into_inner`) and frees
/// it. The reader never reads a freed element and never loses 2.
#[test]
fn list_reader_walks_while_middle_is_removed_and_freed() {
    model(|| {
        let domain = domain();
        let list = Arc::new(RcuList::<ListA>::new_in(&domain));
        let nodes = [Node::leak(0), Node::leak(1), Node::leak(2)];
        for n in nodes {
            list.push_back(Tracked(n));
        }
        let reader = {
            let (domain, list) = (domain.clone(), Arc::clone(&list));
            loom::thread::spawn(move || {
                let r = domain.register();
                let guard = r.read_lock();
                let seen: Vec<u32> = list.iter(&guard).map(Node::read).collect();
                check_seen(&seen);
            })
        };
        let removed = list.remove(nodes[1]).expect("1 is linked");
        drop(removed.into_inner()); // the grace period, then the free
        assert!(!nodes[1].link.is_linked());
        reader.join().unwrap();
    });
}

/// Model 1 through the reclaim thread: the writer drops the `Removed`
/// handle (the usual retirement: `call_rcu`), and the domain's reclaim
/// thread frees the element after the grace period.
///
/// Bounded to 2 preemptions (3 s): a third thread (the reclaim thread,
/// with the engine's queue, events and leader election) makes the unbounded
/// search far too long; a bound of 3 also passes, in 80 s. Model 1 checks
/// the same reader/writer orderings unbounded.
#[test]
fn list_reader_walks_while_middle_is_retired_by_call_rcu() {
    bounded_model(Some(2), || {
        let domain = domain();
        let list = Arc::new(RcuList::<ListA>::new_in(&domain));
        let nodes = [Node::leak(0), Node::leak(1), Node::leak(2)];
        for n in nodes {
            list.push_back(Tracked(n));
        }
        let reader = {
            let (domain, list) = (domain.clone(), Arc::clone(&list));
            loom::thread::spawn(move || {
                let r = domain.register();
                let guard = r.read_lock();
                let seen: Vec<u32> = list.iter(&guard).map(Node::read).collect();
                check_seen(&seen);
            })
        };
        drop(list.remove(nodes[1]).expect("1 is linked"));
        domain.drain(); // the callback has run
        assert!(!nodes[1].link.is_linked());
        reader.join().unwrap();
    });
}

/// Model 2: the same on an `RcuSList` (bit-locked head, predecessor search).
#[test]
fn slist_reader_walks_while_middle_is_removed_and_freed() {
    model(|| {
        let domain = domain();
        let list = Arc::new(RcuSList::<SListA>::new_in(&domain));
        let nodes = [Node::leak(0), Node::leak(1), Node::leak(2)];
        for n in nodes.iter().rev() {
            list.push_front(Tracked(n));
        }
        let reader = {
            let (domain, list) = (domain.clone(), Arc::clone(&list));
            loom::thread::spawn(move || {
                let r = domain.register();
                let guard = r.read_lock();
                let seen: Vec<u32> = list.iter(&guard).map(Node::read).collect();
                check_seen(&seen);
            })
        };
        let removed = list.remove(nodes[1]).expect("1 is linked");
        drop(removed.into_inner());
        reader.join().unwrap();
    });
}

/// Model 1, self-check: freeing the removed element without a grace period
/// is caught (a loom race report), so the model can fail.
#[test]
fn list_model_catches_a_free_without_grace_period() {
    let result = std::panic::catch_unwind(|| {
        model(|| {
            let domain = domain();
            let list = Arc::new(RcuList::<ListA>::new_in(&domain));
            let nodes = [Node::leak(0), Node::leak(1), Node::leak(2)];
            for n in nodes {
                list.push_back(Tracked(n));
            }
            let reader = {
                let (domain, list) = (domain.clone(), Arc::clone(&list));
                loom::thread::spawn(move || {
                    let r = domain.register();
                    let guard = r.read_lock();
                    let seen: Vec<u32> = list.iter(&guard).map(Node::read).collect();
                    check_seen(&seen);
                })
            };
            let retired = list.raw_for_tests().remove(nodes[1]).expect("1 is linked");
            // SAFETY: deliberately wrong: no grace period has passed. The
            // memory stays allocated (leaked), so only the model sees it.
            drop(unsafe { retired.finish() });
            reader.join().unwrap();
        });
    });
    let payload = result.expect_err("the model was expected to fail");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains("Causality violation") || msg.contains("reclaimed"),
        "failed for another reason: {msg}"
    );
}
