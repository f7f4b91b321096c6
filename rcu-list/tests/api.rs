//! The API's promises: misuse is refused, removed elements keep their
//! forward link, ownership kinds, guards, and the types' auto traits.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{ArcList, ArcSList, BoxList, BoxSList, Node};
use rcu_core::RcuDomain;
use rcu_list::{ListLink, RcuList, RcuSList, SListLink, intrusive_adapter};
use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

// The lists are `Send + Sync` for `Send + Sync` elements ...
assert_impl_all!(RcuList<BoxList>: Send, Sync);
assert_impl_all!(RcuList<ArcList>: Send, Sync);
assert_impl_all!(RcuSList<BoxSList>: Send, Sync);
assert_impl_all!(RcuSList<ArcSList>: Send, Sync);
assert_impl_all!(rcu_list::Removed<Box<Node>>: Send, Sync);
assert_impl_all!(ListLink: Send, Sync, Unpin, Default, Clone);
assert_impl_all!(SListLink: Send, Sync, Unpin, Default, Clone);

// ... and not `Sync` when readers on other threads could share a `!Sync`
// element.
struct CellNode {
    _c: Cell<u32>,
    link: ListLink,
}
intrusive_adapter!(CellList = Box<CellNode>: CellNode { link => ListLink });
assert_impl_all!(RcuList<CellList>: Send);
assert_not_impl_any!(RcuList<CellList>: Sync);
// An iterator is a borrowed position: not `Send` for a `!Sync` element.
assert_not_impl_any!(rcu_list::Iter<'static, CellList>: Send, Sync);

// One-word head (with the lock bit), plus the id and the domain handle.
static_assertions::const_assert_eq!(
    size_of::<RcuSList<BoxSList>>(),
    2 * size_of::<usize>() + size_of::<RcuDomain>()
);
static_assertions::const_assert_eq!(size_of::<ListLink>(), 3 * size_of::<usize>());
// Head, tail, length, id and the mutex (a futex word and a poison flag on
// Linux), plus the domain handle.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
static_assertions::const_assert_eq!(
    size_of::<RcuList<BoxList>>(),
    5 * size_of::<usize>() + size_of::<RcuDomain>()
);
static_assertions::const_assert_eq!(size_of::<SListLink>(), 2 * size_of::<usize>());

fn arc_node(val: u64, drops: &Arc<AtomicUsize>) -> Arc<Node> {
    Arc::new(Node::new(val, drops))
}

#[test]
#[should_panic(expected = "already in a list")]
fn double_insertion_into_one_list_panics() {
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<ArcList>::new();
    let n = arc_node(1, &drops);
    list.push_back(n.clone());
    list.push_front(n);
}

#[test]
#[should_panic(expected = "already in a list")]
fn insertion_into_two_lists_through_one_link_panics() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b) = (RcuSList::<ArcSList>::new(), RcuSList::<ArcSList>::new());
    let n = arc_node(1, &drops);
    a.push_front(n.clone());
    b.push_front(n);
}

#[test]
fn a_failed_insertion_leaves_both_lists_intact() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b) = (RcuList::<ArcList>::new(), RcuList::<ArcList>::new());
    let n = arc_node(1, &drops);
    a.push_back(n.clone());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.push_back(n.clone())));
    assert!(r.is_err());
    assert!(a.contains(&n) && !b.contains(&n));
    assert_eq!((a.len(), b.len()), (1, 0));
    let guard = rcu_core::read_lock();
    assert_eq!(a.iter(&guard).count(), 1);
    assert_eq!(b.iter(&guard).count(), 0);
    // The Arc the failed push took was dropped: ours, the list's.
    assert_eq!(Arc::strong_count(&n), 2);
}

#[test]
fn static_elements_link_once() {
    struct S {
        link: ListLink,
    }
    intrusive_adapter!(StaticList = &'static S: S { link => ListLink });
    static ONE: S = S {
        link: ListLink::new(),
    };
    let (a, b) = (RcuList::<StaticList>::new(), RcuList::<StaticList>::new());
    a.push_back(&ONE);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.push_back(&ONE)));
    assert!(r.is_err(), "a static element went into two lists");
    a.pop_front().unwrap().into_inner();
    assert!(!ONE.link.is_linked());
    b.push_back(&ONE);
    assert!(b.contains(&ONE));
    // Leave nothing claimed for other tests' sake (the static outlives us).
    b.clear();
}

#[test]
fn positions_of_another_list_are_refused() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (a, b) = (RcuList::<ArcList>::new(), RcuList::<ArcList>::new());
    let in_a = arc_node(1, &drops);
    a.push_back(in_a.clone());
    let new = arc_node(2, &drops);
    let back = b.insert_after(&in_a, new.clone()).unwrap_err();
    assert!(Arc::ptr_eq(&back, &new));
    assert!(!new.link.is_linked(), "a refused element stays free");
    assert!(b.insert_before(&in_a, new.clone()).is_err());
    assert!(b.replace(&in_a, new.clone()).is_err());
    assert!(b.remove(&in_a).is_none());
    assert!(b.is_empty() && a.len() == 1);
    // The refused element can be linked normally.
    assert!(a.insert_after(&in_a, new.clone()).is_ok());
    let sa = RcuSList::<ArcSList>::new();
    let sb = RcuSList::<ArcSList>::new();
    sa.push_front(in_a.clone());
    assert!(sb.insert_after(&in_a, arc_node(3, &drops)).is_err());
    assert!(sb.remove(&in_a).is_none());
    assert!(sa.contains(&in_a) && !sb.contains(&in_a));
}

#[test]
fn a_removed_element_cannot_be_relinked_before_a_grace_period() {
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<ArcList>::new();
    let n = arc_node(1, &drops);
    list.push_back(n.clone());
    let removed = list.remove(&n).unwrap();
    assert!(n.link.is_linked(), "claimed until the grace period");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| list.push_back(n.clone())));
    assert!(r.is_err());
    let back = removed.into_inner();
    assert!(Arc::ptr_eq(&back, &n) && !n.link.is_linked());
    list.push_back(back);
    assert!(list.contains(&n));
}

#[test]
fn dropped_removed_elements_are_freed_after_a_grace_period() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<ArcList>::new_in(&domain);
    let n = arc_node(1, &drops);
    list.push_back(n.clone());
    drop(list.remove(&n));
    domain.drain();
    // The list's Arc is gone and the link is free again.
    assert_eq!(Arc::strong_count(&n), 1);
    assert!(!n.link.is_linked());
    list.push_back(n);
}

/// In a domain that offloads callbacks, below its memory limit, a dropped
/// `Removed` never runs an element's drop on the writer's thread: the drops
/// are the reclaim thread's, or a drain's (`Removed`'s docs; by default the
/// writer runs its own at later drops, and over a limit it may help).
#[test]
fn with_offloaded_callbacks_dropping_a_removed_runs_no_drop_on_the_writer() {
    struct Elem {
        link: ListLink,
        writer: std::thread::ThreadId,
        on_writer: Arc<AtomicUsize>,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Elem {
        fn drop(&mut self) {
            if std::thread::current().id() == self.writer {
                self.on_writer.fetch_add(1, Ordering::SeqCst);
            }
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }
    intrusive_adapter!(ElemList = Box<Elem>: Elem { link => ListLink });

    let domain = RcuDomain::with_config(rcu_core::Config::default().offload_callbacks(true));
    let (on_writer, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let list = RcuList::<ElemList>::new_in(&domain);
    let n = if cfg!(miri) { 32 } else { 4000 };
    for _ in 0..n {
        list.push_back(Box::new(Elem {
            link: ListLink::new(),
            writer: std::thread::current().id(),
            on_writer: Arc::clone(&on_writer),
            drops: Arc::clone(&drops),
        }));
        drop(list.pop_front().expect("just pushed"));
    }
    // Before the drain, which may run the drops here.
    let on_writer = on_writer.load(Ordering::SeqCst);
    domain.drain();
    assert_eq!(drops.load(Ordering::SeqCst), n);
    assert_eq!(on_writer, 0, "drops ran on the writer's thread");
}

/// A reader standing on an element that is removed, and on whose successor
/// is removed too, still walks on to the rest of the list.
#[test]
fn readers_move_on_from_removed_elements() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<BoxList>::new_in(&domain);
    for v in 0..5 {
        list.push_back(Node::boxed(v, &drops));
    }
    let reader = domain.register();
    let guard = reader.read_lock();
    let mut it = list.iter(&guard);
    let one = it.nth(1).unwrap();
    assert_eq!(one.val, 1);
    let two = list.iter(&guard).nth(2).unwrap();
    drop(list.remove(one)); // retired: dropped after our guard
    drop(list.remove(two));
    assert_eq!(one.val, 1, "still readable under the guard");
    assert_eq!(it.map(|n| n.val).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(
        list.iter(&guard).map(|n| n.val).collect::<Vec<_>>(),
        [0, 3, 4]
    );
    // clear: a reader in the middle walks to the old end.
    let mut it = list.iter(&guard);
    it.next();
    list.clear();
    assert_eq!(it.map(|n| n.val).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        0,
        "nothing freed under a guard"
    );
    drop(guard);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 5);
}

#[test]
fn replace_swaps_in_place() {
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<BoxList>::new();
    for v in 0..3 {
        list.push_back(Node::boxed(v, &drops));
    }
    let guard = rcu_core::read_lock();
    let mid = list.iter(&guard).nth(1).unwrap();
    let old = list.replace(mid, Node::boxed(10, &drops)).expect("linked");
    assert_eq!(old.val, 1);
    let vals: Vec<u64> = list.iter(&guard).map(|n| n.val).collect();
    assert_eq!(vals, [0, 10, 2]);
    assert_eq!(list.len(), 3);
    // The ends too.
    let first = list.front(&guard).unwrap();
    drop(list.replace(first, Node::boxed(20, &drops)));
    let last = list.back(&guard).unwrap();
    drop(list.replace(last, Node::boxed(30, &drops)));
    let vals: Vec<u64> = list.iter(&guard).map(|n| n.val).collect();
    assert_eq!(vals, [20, 10, 30]);
    assert_eq!(list.back(&guard).unwrap().val, 30);
    assert_eq!(list.pop_back().unwrap().val, 30);
    assert_eq!(list.pop_front().unwrap().val, 20);
}

#[test]
#[should_panic(expected = "guard of another")]
fn a_guard_of_another_domain_is_refused() {
    let list = RcuList::<BoxList>::new_in(&RcuDomain::new());
    let guard = rcu_core::read_lock();
    let _ = list.iter(&guard).count();
}

#[test]
fn owned_guards_read_on_another_thread() {
    let drops = Arc::new(AtomicUsize::new(0));
    let list = Arc::new(RcuSList::<BoxSList>::new());
    list.push_front(Node::boxed(1, &drops));
    let guard = rcu_core::read_lock_owned();
    let list2 = Arc::clone(&list);
    let seen = std::thread::spawn(move || list2.iter(&guard).map(|n| n.val).sum::<u64>());
    assert_eq!(seen.join().unwrap(), 1);
}

#[test]
fn an_element_can_be_in_two_lists_through_two_links() {
    let drops = Arc::new(AtomicUsize::new(0));
    let all = RcuList::<ArcList>::new();
    let bucket = RcuSList::<ArcSList>::new();
    let n = arc_node(7, &drops);
    all.push_back(n.clone());
    bucket.push_front(n.clone());
    assert!(all.contains(&n) && bucket.contains(&n));
    drop(all.pop_front());
    let guard = rcu_core::read_lock();
    assert_eq!(bucket.front(&guard).unwrap().val, 7);
}

#[test]
fn dropping_a_list_drops_its_elements() {
    let drops = Arc::new(AtomicUsize::new(0));
    let list: RcuList<BoxList> = (0..4).map(|v| Node::boxed(v, &drops)).collect();
    assert_eq!(list.len(), 4);
    assert_eq!(format!("{list:?}"), "[0, 1, 2, 3]");
    drop(list);
    assert_eq!(drops.load(Ordering::Relaxed), 4);
    let slist = RcuSList::<BoxSList>::new();
    slist.push_front(Node::boxed(1, &drops));
    assert_eq!(format!("{slist:?}"), "[1]");
    drop(slist);
    assert_eq!(drops.load(Ordering::Relaxed), 5);
}

#[test]
fn a_panicking_element_drop_does_not_leak_the_rest() {
    struct Bomb {
        link: ListLink,
        boom: bool,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Bomb {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::Relaxed);
            assert!(!self.boom, "boom");
        }
    }
    intrusive_adapter!(BombList = Box<Bomb>: Bomb { link => ListLink });
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<BombList>::new();
    for boom in [false, true, false] {
        list.push_back(Box::new(Bomb {
            link: ListLink::new(),
            boom,
            drops: Arc::clone(&drops),
        }));
    }
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(list))).is_err());
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

#[test]
fn removed_into_inner_async_gives_the_element_back() {
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark()
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuSList::<BoxSList>::new();
    list.push_front(Node::boxed(3, &drops));
    let node = block_on(list.pop_front().unwrap().into_inner_async());
    assert_eq!(node.val, 3);
    assert!(!node.slink.is_linked());
}

#[test]
fn a_panicking_retain_leaves_the_list_consistent_and_retires_what_it_removed() {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<BoxList>::new_in(&domain);
    for v in 0..6 {
        list.push_back(Node::boxed(v, &drops));
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        list.retain(|n| {
            assert!(n.val != 3, "stop");
            n.val % 2 == 1
        })
    }));
    assert!(r.is_err());
    // 0 and 2 were removed before the panic; the rest is intact.
    let reader = domain.register();
    let vals: Vec<u64> = list.iter(&reader.read_lock()).map(|n| n.val).collect();
    assert_eq!(vals, [1, 3, 4, 5]);
    assert_eq!(list.len(), 4);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    // The lock was released: writers go on.
    list.retain(|n| n.val != 4);
    domain.drain();
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

/// An element whose `Debug` waits for a grace period of its list's domain.
struct Waits {
    domain: RcuDomain,
    link: ListLink,
    slink: SListLink,
}

impl std::fmt::Debug for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.domain.synchronize();
        f.write_str("Waits")
    }
}

intrusive_adapter!(WaitsList = Box<Waits>: Waits { link => ListLink });
intrusive_adapter!(WaitsSList = Box<Waits>: Waits { slink => SListLink });

/// `{:?}` of a list reads it under a guard tied to the thread, so an
/// element's `Debug` that waits for a grace period of the list's domain
/// panics, as inside any thread-tied guard (under an owned guard, which
/// the wait cannot see, it waited for itself forever).
#[test]
fn an_elements_debug_that_waits_for_a_grace_period_panics() {
    let domain = RcuDomain::new();
    let waits = || {
        Box::new(Waits {
            domain: domain.clone(),
            link: ListLink::default(),
            slink: SListLink::default(),
        })
    };
    let list = Arc::new(RcuList::<WaitsList>::new_in(&domain));
    list.push_back(waits());
    let slist = Arc::new(RcuSList::<WaitsSList>::new_in(&domain));
    slist.push_front(waits());
    let (tx, rx) = std::sync::mpsc::channel();
    for (what, fmt) in [
        (
            "RcuList",
            Box::new({
                let list = Arc::clone(&list);
                move || drop(format!("{list:?}"))
            }) as Box<dyn FnOnce() + Send>,
        ),
        (
            "RcuSList",
            Box::new({
                let slist = Arc::clone(&slist);
                move || drop(format!("{slist:?}"))
            }),
        ),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(fmt));
            let msg = r.err().map(|e| common::panic_message(&*e));
            let _ = tx.send((what, msg));
        });
    }
    for _ in 0..2 {
        let (what, msg) = rx
            .recv_timeout(std::time::Duration::from_secs(if cfg!(miri) {
                600
            } else {
                30
            }))
            .expect("a list's Debug still waits: it waits for its own guard");
        let msg = msg.unwrap_or_else(|| panic!("{what}'s Debug: the wait returned"));
        assert!(msg.contains("critical section"), "{what}: {msg}");
    }
    // Outside the lists' reads the same wait returns.
    assert_eq!(format!("{:?}", waits()), "Waits");
}
