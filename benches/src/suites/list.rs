//! The list group: reader threads walking a 1 000-element list while a
//! writer adds and removes elements on another thread.
//!
//! Every subject walks 1 000 elements of the same size (32 bytes: a value
//! and three words of links) and sums their values; the number is the mean
//! time of one walk per reader thread. Each writer step adds a freshly
//! allocated element at the back and removes the front one.
//!
//! * "no writer": the read path alone.
//! * "in the background": a writer step, then a 20 µs sleep (about 15 000
//!   steps a second here, timer slack included), for every subject alike:
//!   the list rotates every few tens of milliseconds.
//! * "in a tight loop": writer steps back to back. This measures something
//!   else too: a locked baseline's readers hold the writer off for a whole
//!   walk, so its list barely changes, while RCU readers let the writer run,
//!   so they keep walking elements that another core has just written (cache
//!   misses), on a machine where the writer and the reclaim thread compete
//!   with them for the two CPUs.
//! * Rotation scrambles an RCU list's layout: its removed elements are
//!   freed later, on the reclaim thread, so the writer's new elements land
//!   wherever the allocator has room, and the walk becomes a random chase
//!   rather than a strided one. Measured once (`RcuList`, 1 000 elements,
//!   no writer during the walks): 3.1 µs per walk fresh, 9.5 µs after
//!   20 000 rotations. The locked list frees and reallocates on the writer's
//!   thread (the allocator hands the old front's memory to the new back
//!   element), and the floor never rotates, so part of the gap in the writer
//!   rows is placement, not synchronisation.
//! * "writer step": the writer's time per step (add + remove) while one
//!   reader walks in a loop. A locked writer waits for the walk in
//!   progress, an RCU writer never does, but it pays for retirement: each
//!   removed element goes to the reclaim thread through `call_rcu` (an
//!   allocation, a queue push, a grace period per batch), which on this
//!   machine costs more than the locked writers' waits.
//!
//! * `rcu-list RcuList::iter`: a `read_lock()` per walk, no lock, one
//!   `Acquire` load per element; removed elements are dropped by the
//!   reclaim thread after a grace period.
//! * `std RwLock<Vec<Box<T>>>`: a read lock per walk; the writer takes the
//!   write lock for a push and a `swap_remove(0)`.
//! * `std Mutex<LinkedList<T>>`: the lock per walk; the writer pushes and
//!   pops under it.
//! * `pointer chase (floor)`: a plain chain of `&'static` nodes walked with
//!   no synchronisation at all, while the same writer as ours runs on a list
//!   of its own (an unsynchronised walk cannot share a list with a writer),
//!   so the machine is equally busy.

use super::{Chart, GroupDef, Settings, Task};
use crate::harness::{ns_per_op_threads, ns_per_op_with};
use rcu_list::{ListLink, RcuList, intrusive_adapter};
use std::collections::LinkedList;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// The list group.
pub const GROUP: GroupDef = GroupDef {
    name: "list",
    unit: "ns per walk of a 1 000-element list (per reader thread; per step in the writer row), lower is better",
    chart: Chart::Bars,
    tasks,
};

const G: &str = GROUP.name;

/// Elements in every list.
const LEN: u64 = 1_000;

/// An element of the RCU list (32 bytes).
struct Node {
    val: u64,
    link: ListLink,
}

intrusive_adapter!(NodeAdapter = Box<Node>: Node { link => ListLink });

fn node(val: u64) -> Box<Node> {
    Box::new(Node {
        val,
        link: ListLink::new(),
    })
}

/// An element of the locked baselines (32 bytes, as `Node`).
struct Plain {
    val: u64,
    _links: [usize; 3],
}

fn plain(val: u64) -> Plain {
    Plain {
        val,
        _links: [0; 3],
    }
}

/// An element of the pointer chase (32 bytes, as `Node`).
struct Chased {
    val: u64,
    next: Option<&'static Chased>,
    _links: [usize; 2],
}

/// How the writer runs.
#[derive(Clone, Copy)]
enum Writer {
    /// No writer: the read path alone.
    Idle,
    /// A step, then a 20 µs sleep.
    Background,
    /// Steps back to back.
    TightLoop,
}

/// Runs `readers` threads of `make()` while `writer` steps on another
/// thread; returns the mean nanoseconds per walk per reader.
fn walks_against_writer<F: FnMut(u64)>(
    s: &Settings,
    (readers, pace): (usize, Writer),
    make: impl Fn() -> F + Sync,
    mut writer: impl FnMut() + Send,
) -> f64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let stop = &stop;
        sc.spawn(move || {
            // Relaxed: a stop request only.
            while !stop.load(Ordering::Relaxed) {
                match pace {
                    Writer::Idle => std::thread::sleep(Duration::from_millis(1)),
                    Writer::Background => {
                        writer();
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    Writer::TightLoop => writer(),
                }
            }
        });
        let r = ns_per_op_threads(readers, s.duration, make);
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// `n` operations of `f`.
fn times(mut f: impl FnMut()) -> impl FnMut(u64) {
    move |n| {
        for _ in 0..n {
            f();
        }
    }
}

// --- rcu-list -------------------------------------------------------------

fn rcu_list() -> RcuList<NodeAdapter> {
    let list = RcuList::new();
    for v in 0..LEN {
        list.push_back(node(v));
    }
    list
}

fn rcu_walk(list: &RcuList<NodeAdapter>) {
    let guard = rcu_core::read_lock();
    let sum: u64 = list.iter(&guard).map(|e| e.val).sum();
    black_box(sum);
}

/// A new element at the back, the front one retired (dropped by the
/// reclaim thread after a grace period).
fn rcu_step(list: &RcuList<NodeAdapter>) -> impl FnMut() + Send + '_ {
    let mut v = LEN;
    move || {
        v += 1;
        list.push_back(node(v));
        drop(list.pop_front());
    }
}

fn ours(s: &Settings, row: (usize, Writer)) -> f64 {
    let list = rcu_list();
    walks_against_writer(s, row, || times(|| rcu_walk(&list)), rcu_step(&list))
}

fn ours_writer(s: &Settings) -> f64 {
    let list = rcu_list();
    ns_per_op_with(s.duration, times(rcu_step(&list)), || rcu_walk(&list))
}

// --- std RwLock<Vec<Box<T>>> ----------------------------------------------

type LockedVec = RwLock<Vec<Box<Plain>>>;

fn locked_vec() -> LockedVec {
    RwLock::new((0..LEN).map(|v| Box::new(plain(v))).collect())
}

fn vec_walk(vec: &LockedVec) {
    let guard = vec.read().unwrap();
    let sum: u64 = guard.iter().map(|e| e.val).sum();
    drop(guard);
    black_box(sum);
}

/// A push and a `swap_remove(0)` under the write lock; the old element is
/// freed after it.
fn vec_step(vec: &LockedVec) -> impl FnMut() + Send + '_ {
    let mut v = LEN;
    move || {
        v += 1;
        let new = Box::new(plain(v));
        let mut w = vec.write().unwrap();
        w.push(new);
        let old = w.swap_remove(0);
        drop(w);
        drop(old);
    }
}

fn rwlock_vec(s: &Settings, row: (usize, Writer)) -> f64 {
    let vec = locked_vec();
    walks_against_writer(s, row, || times(|| vec_walk(&vec)), vec_step(&vec))
}

fn rwlock_vec_writer(s: &Settings) -> f64 {
    let vec = locked_vec();
    ns_per_op_with(s.duration, times(vec_step(&vec)), || vec_walk(&vec))
}

// --- std Mutex<LinkedList<T>> ---------------------------------------------

type LockedList = Mutex<LinkedList<Plain>>;

fn locked_list() -> LockedList {
    Mutex::new((0..LEN).map(plain).collect())
}

fn list_walk(list: &LockedList) {
    let guard = list.lock().unwrap();
    let sum: u64 = guard.iter().map(|e| e.val).sum();
    drop(guard);
    black_box(sum);
}

/// A push and a pop under the lock (the list allocates and frees its
/// nodes there).
fn list_step(list: &LockedList) -> impl FnMut() + Send + '_ {
    let mut v = LEN;
    move || {
        v += 1;
        let mut l = list.lock().unwrap();
        l.push_back(plain(v));
        black_box(l.pop_front());
        drop(l);
    }
}

fn mutex_linked_list(s: &Settings, row: (usize, Writer)) -> f64 {
    let list = locked_list();
    walks_against_writer(s, row, || times(|| list_walk(&list)), list_step(&list))
}

fn mutex_linked_list_writer(s: &Settings) -> f64 {
    let list = locked_list();
    ns_per_op_with(s.duration, times(list_step(&list)), || list_walk(&list))
}

// --- the floor ------------------------------------------------------------

fn chase_walk(head: Option<&'static Chased>) {
    let (mut p, mut sum) = (head, 0u64);
    while let Some(e) = p {
        sum += e.val;
        p = e.next;
    }
    black_box(sum);
}

fn pointer_chase(s: &Settings, row: (usize, Writer)) -> f64 {
    // Allocated front to back like the lists' elements, then linked
    // (leaked: 32 KB per run).
    let mut nodes: Vec<&'static mut Chased> = (0..LEN)
        .map(|val| {
            Box::leak(Box::new(Chased {
                val,
                next: None,
                _links: [0; 2],
            }))
        })
        .collect();
    let mut head: Option<&'static Chased> = None;
    while let Some(n) = nodes.pop() {
        n.next = head;
        head = Some(n);
    }
    // The same writer as ours, on a list of its own.
    let busy = rcu_list();
    walks_against_writer(s, row, || times(move || chase_walk(head)), rcu_step(&busy))
}

fn tasks(_: &Settings) -> Vec<Task> {
    let mut t = Vec::new();
    let rows = [
        (1, Writer::Idle),
        (1, Writer::Background),
        (2, Writer::Background),
        (1, Writer::TightLoop),
    ];
    for row in rows {
        let (readers, pace) = row;
        let threads = format!(
            "{readers} reader thread{}",
            if readers == 1 { "" } else { "s" }
        );
        let op = match pace {
            Writer::Idle => format!("{threads}, no writer"),
            Writer::Background => {
                format!("{threads}, a writer adding and removing in the background")
            }
            Writer::TightLoop => format!("{threads}, a writer adding and removing in a tight loop"),
        };
        t.push(Task::ours(
            G,
            op.clone(),
            "rcu-list RcuList::iter",
            move |s| ours(s, row),
        ));
        t.push(Task::peer(
            G,
            op.clone(),
            "std RwLock<Vec<Box<T>>>",
            move |s| rwlock_vec(s, row),
        ));
        t.push(Task::peer(
            G,
            op.clone(),
            "std Mutex<LinkedList<T>>",
            move |s| mutex_linked_list(s, row),
        ));
        t.push(Task::peer(
            G,
            op,
            "pointer chase, no sync (floor)",
            move |s| pointer_chase(s, row),
        ));
    }
    let op = "writer step (add + remove), 1 reader walking in a loop";
    t.push(Task::ours(
        G,
        op,
        "rcu-list push_back + pop_front",
        ours_writer,
    ));
    t.push(Task::peer(
        G,
        op,
        "std RwLock<Vec<Box<T>>>",
        rwlock_vec_writer,
    ));
    t.push(Task::peer(
        G,
        op,
        "std Mutex<LinkedList<T>>",
        mutex_linked_list_writer,
    ));
    t
}
