//! Fuzzes `rcu-list`'s two kinds, [`RcuList`] (doubly linked) and
//! [`RcuSList`] (singly linked), each against a `VecDeque`.
//!
//! # Input
//! 0 to 7 *stable* elements per list (for an optional reader thread) and up
//! to [`MAX_OPS`] operations, each on one of the two lists: pushes and pops at
//! both ends, `insert_after`/`insert_before` at an index, `remove` and
//! `replace` at an index, `retain`, `clear`, `contains`, the same calls with a removed
//! element as the position (which must fail and give the new element back),
//! and holding, dropping or `into_inner` (then linking again) of the
//! [`Removed`] handles. Elements are `Box`es. Each input has its own
//! [`RcuDomain`].
//!
//! # Checks
//! * After every step each list's contents (front to back), `len`,
//!   `is_empty`, `front` and `back` match its model; removed values match;
//!   `retain` visits the elements front to back.
//! * An operation whose position is not linked in the list returns an error
//!   (or `None`) and changes nothing; `contains` agrees with the model.
//! * A held `Removed` keeps its value; `into_inner` gives the element back
//!   with its link free, and it can be linked again.
//! * A reader thread checks during the run that each list yields its stable
//!   elements exactly once, in order (the documented guarantee for elements
//!   that stay linked).
//! * No element is dropped while a list still links it (an abort in its
//!   `Drop`), and after both lists are dropped and the domain drained, every
//!   element made was dropped exactly once.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rcu_core::RcuDomain;
use rcu_list::{ListLink, RcuList, RcuSList, Removed, SListLink, intrusive_adapter};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const MAX_OPS: usize = 96;
const MAX_HELD: usize = 4;
/// Stable elements' values start here (churn values stay below).
const STABLE_BASE: u64 = 1 << 32;

#[derive(Arbitrary, Debug)]
struct Input {
    stable: u8,
    reader_thread: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    D(DOp),
    S(SOp),
    /// Drops the held `Removed` at this index.
    DropHeld(u8),
    /// `into_inner` of the held `Removed` at this index; the element goes
    /// to the spares, to be linked again.
    IntoInner(u8),
}

/// An operation on the doubly linked list.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum DOp {
    PushFront,
    PushBack,
    PopFront,
    PopBack,
    InsertAfter(u8),
    InsertBefore(u8),
    Remove(u8),
    Replace(u8),
    Clear,
    /// Keeps the stable elements and those whose value is not divisible by
    /// `2 + n % 5`.
    Retain(u8),
    Contains(u8),
    /// `insert_after`, `insert_before`, `replace` and `remove` at a held
    /// removed element.
    AtRemoved(u8),
}

/// An operation on the singly linked list.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SOp {
    PushFront,
    PopFront,
    InsertAfter(u8),
    Remove(u8),
    Clear,
    /// As [`DOp::Retain`].
    Retain(u8),
    Contains(u8),
    /// `insert_after` and `remove` at a held removed element.
    AtRemoved(u8),
}

struct Node {
    val: u64,
    link: ListLink,
    slink: SListLink,
    drops: Arc<AtomicUsize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.link.is_linked() || self.slink.is_linked() {
            // Maybe on the reclaim thread, where a panic would be caught.
            eprintln!(
                "list fuzz: element {} dropped while a list links it",
                self.val
            );
            std::process::abort();
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

intrusive_adapter!(DAdapter = Box<Node>: Node { link => ListLink });
intrusive_adapter!(SAdapter = Box<Node>: Node { slink => SListLink });

struct Run<'a> {
    d: &'a RcuList<DAdapter>,
    s: &'a RcuSList<SAdapter>,
    dm: VecDeque<u64>,
    sm: VecDeque<u64>,
    drops: Arc<AtomicUsize>,
    made: usize,
    next: u64,
    held: Vec<(Removed<Box<Node>>, u64)>,
    /// Elements given back by the lists, to link again: `Box`es, as the
    /// adapters link them.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Node>>,
}

impl Run<'_> {
    fn node(&mut self) -> Box<Node> {
        self.next += 1;
        match self.spare.pop() {
            Some(mut n) => {
                assert!(
                    !n.link.is_linked() && !n.slink.is_linked(),
                    "a spare is linked"
                );
                n.val = self.next;
                n
            }
            None => {
                self.made += 1;
                Box::new(Node {
                    val: self.next,
                    link: ListLink::new(),
                    slink: SListLink::new(),
                    drops: Arc::clone(&self.drops),
                })
            }
        }
    }

    fn took(&mut self, r: Option<Removed<Box<Node>>>, want: Option<u64>) {
        assert_eq!(r.as_ref().map(|n| n.val), want, "removed value");
        if let Some(r) = r {
            assert!(r.val < STABLE_BASE, "a stable element was removed");
            if self.held.len() < MAX_HELD {
                let v = r.val;
                self.held.push((r, v));
            }
        }
    }

    /// The index of the `i`-th churn (not stable) element of `model`.
    fn churn_index(model: &VecDeque<u64>, i: u8) -> Option<usize> {
        let churn: Vec<usize> = (0..model.len())
            .filter(|&j| model[j] < STABLE_BASE)
            .collect();
        (!churn.is_empty()).then(|| churn[usize::from(i) % churn.len()])
    }

    fn d_op(&mut self, op: DOp, reader: &rcu_core::Reader<'_>) {
        let g = reader.read_lock();
        let d = self.d;
        let at = |i: usize| d.iter(&g).nth(i).expect("index in range");
        let any = |m: &VecDeque<u64>, i: u8| (!m.is_empty()).then(|| usize::from(i) % m.len());
        match op {
            DOp::PushFront => {
                let n = self.node();
                self.dm.push_front(n.val);
                d.push_front(n);
            }
            DOp::PushBack => {
                let n = self.node();
                self.dm.push_back(n.val);
                d.push_back(n);
            }
            DOp::PopFront => {
                if self.dm.front().is_none_or(|&v| v < STABLE_BASE) {
                    let r = d.pop_front();
                    let want = self.dm.pop_front();
                    self.took(r, want);
                }
            }
            DOp::PopBack => {
                if self.dm.back().is_none_or(|&v| v < STABLE_BASE) {
                    let r = d.pop_back();
                    let want = self.dm.pop_back();
                    self.took(r, want);
                }
            }
            DOp::InsertAfter(i) | DOp::InsertBefore(i) => {
                if let Some(i) = any(&self.dm, i) {
                    let n = self.node();
                    let v = n.val;
                    let res = if matches!(op, DOp::InsertAfter(_)) {
                        self.dm.insert(i + 1, v);
                        d.insert_after(at(i), n)
                    } else {
                        self.dm.insert(i, v);
                        d.insert_before(at(i), n)
                    };
                    assert!(res.is_ok(), "insert at a linked element failed");
                }
            }
            DOp::Remove(i) => {
                if let Some(i) = Self::churn_index(&self.dm, i) {
                    let victim = at(i);
                    let r = d.remove(victim);
                    assert!(r.is_some(), "remove of a linked element");
                    assert!(d.remove(victim).is_none(), "removed twice");
                    assert!(!d.contains(victim));
                    let want = self.dm.remove(i);
                    self.took(r, want);
                }
            }
            DOp::Replace(i) => {
                if let Some(i) = Self::churn_index(&self.dm, i) {
                    let n = self.node();
                    let v = n.val;
                    let r = d
                        .replace(at(i), n)
                        .ok()
                        .expect("replace of a linked element");
                    let want = std::mem::replace(&mut self.dm[i], v);
                    self.took(Some(r), Some(want));
                }
            }
            DOp::Clear => {
                if self.dm.iter().all(|&v| v < STABLE_BASE) {
                    d.clear();
                    self.dm.clear();
                }
            }
            DOp::Retain(n) => {
                let m = 2 + u64::from(n % 5);
                let mut visited = Vec::new();
                d.retain(|e| {
                    visited.push(e.val);
                    e.val >= STABLE_BASE || e.val % m != 0
                });
                assert_eq!(visited, Vec::from(self.dm.clone()), "retain's order");
                self.dm.retain(|&v| v >= STABLE_BASE || v % m != 0);
            }
            DOp::Contains(i) => {
                if let Some(i) = any(&self.dm, i) {
                    assert!(d.contains(at(i)));
                }
            }
            DOp::AtRemoved(i) => {
                if !self.held.is_empty() {
                    let h = usize::from(i) % self.held.len();
                    let pos: &Node = &self.held[h].0;
                    assert!(!d.contains(pos), "contains a removed element");
                    let (a, b, c) = (self.node(), self.node(), self.node());
                    let pos: &Node = &self.held[h].0;
                    let a = d
                        .insert_after(pos, a)
                        .expect_err("insert_after a removed element");
                    let b = d
                        .insert_before(pos, b)
                        .expect_err("insert_before a removed element");
                    let c = d
                        .replace(pos, c)
                        .err()
                        .expect("replace of a removed element");
                    assert!(d.remove(pos).is_none(), "remove of a removed element");
                    self.spare.extend([a, b, c]);
                }
            }
        }
    }

    fn s_op(&mut self, op: SOp, reader: &rcu_core::Reader<'_>) {
        let g = reader.read_lock();
        let s = self.s;
        let at = |i: usize| s.iter(&g).nth(i).expect("index in range");
        match op {
            SOp::PushFront => {
                let n = self.node();
                self.sm.push_front(n.val);
                s.push_front(n);
            }
            SOp::PopFront => {
                if self.sm.front().is_none_or(|&v| v < STABLE_BASE) {
                    let r = s.pop_front();
                    let want = self.sm.pop_front();
                    self.took(r, want);
                }
            }
            SOp::InsertAfter(i) => {
                if !self.sm.is_empty() {
                    let i = usize::from(i) % self.sm.len();
                    let n = self.node();
                    self.sm.insert(i + 1, n.val);
                    assert!(
                        s.insert_after(at(i), n).is_ok(),
                        "insert at a linked element failed"
                    );
                }
            }
            SOp::Remove(i) => {
                if let Some(i) = Self::churn_index(&self.sm, i) {
                    let victim = at(i);
                    let r = s.remove(victim);
                    assert!(r.is_some(), "remove of a linked element");
                    assert!(s.remove(victim).is_none(), "removed twice");
                    assert!(!s.contains(victim));
                    let want = self.sm.remove(i);
                    self.took(r, want);
                }
            }
            SOp::Clear => {
                if self.sm.iter().all(|&v| v < STABLE_BASE) {
                    s.clear();
                    self.sm.clear();
                }
            }
            SOp::Retain(n) => {
                let m = 2 + u64::from(n % 5);
                let mut visited = Vec::new();
                s.retain(|e| {
                    visited.push(e.val);
                    e.val >= STABLE_BASE || e.val % m != 0
                });
                assert_eq!(visited, Vec::from(self.sm.clone()), "retain's order");
                self.sm.retain(|&v| v >= STABLE_BASE || v % m != 0);
            }
            SOp::Contains(i) => {
                if !self.sm.is_empty() {
                    assert!(s.contains(at(usize::from(i) % self.sm.len())));
                }
            }
            SOp::AtRemoved(i) => {
                if !self.held.is_empty() {
                    let h = usize::from(i) % self.held.len();
                    let a = self.node();
                    let pos: &Node = &self.held[h].0;
                    assert!(!s.contains(pos), "contains a removed element");
                    let a = s
                        .insert_after(pos, a)
                        .expect_err("insert_after a removed element");
                    assert!(s.remove(pos).is_none(), "remove of a removed element");
                    self.spare.push(a);
                }
            }
        }
    }

    fn check(&self, reader: &rcu_core::Reader<'_>) {
        let g = reader.read_lock();
        let dv: Vec<u64> = self.d.iter(&g).map(|n| n.val).collect();
        assert_eq!(dv, Vec::from(self.dm.clone()), "doubly linked contents");
        assert_eq!(self.d.len(), self.dm.len());
        assert_eq!(self.d.is_empty(), self.dm.is_empty());
        assert_eq!(self.d.front(&g).map(|n| n.val), self.dm.front().copied());
        assert_eq!(self.d.back(&g).map(|n| n.val), self.dm.back().copied());
        let sv: Vec<u64> = self.s.iter(&g).map(|n| n.val).collect();
        assert_eq!(sv, Vec::from(self.sm.clone()), "singly linked contents");
        assert_eq!(self.s.is_empty(), self.sm.is_empty());
        assert_eq!(self.s.front(&g).map(|n| n.val), self.sm.front().copied());
        for (h, v) in &self.held {
            assert_eq!(h.val, *v, "a held Removed changed");
        }
    }
}

fn run(input: &Input) {
    let ops = &input.ops[..input.ops.len().min(MAX_OPS)];
    let domain = RcuDomain::new();
    let d = RcuList::<DAdapter>::new_in(&domain);
    let s = RcuSList::<SAdapter>::new_in(&domain);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut r = Run {
        d: &d,
        s: &s,
        dm: VecDeque::new(),
        sm: VecDeque::new(),
        drops: Arc::clone(&drops),
        made: 0,
        next: 0,
        held: Vec::new(),
        spare: Vec::new(),
    };
    let n_stable = u64::from(input.stable % 8);
    let stable: Vec<u64> = (0..n_stable).map(|i| STABLE_BASE + i).collect();
    for &v in &stable {
        for which in 0..2 {
            let mut n = r.node();
            n.val = v;
            if which == 0 {
                d.push_back(n);
                r.dm.push_back(v);
            } else {
                // Pushed at the front: reversed.
                s.push_front(n);
                r.sm.push_front(v);
            }
        }
    }
    let done = AtomicBool::new(false);

    std::thread::scope(|sc| {
        let reader_thread = input.reader_thread.then(|| {
            let (d, s, done, domain, stable) = (&d, &s, &done, &domain, &stable);
            sc.spawn(move || {
                let reader = domain.register();
                let mut rounds = 0u32;
                while rounds < 4 || !done.load(Ordering::SeqCst) {
                    rounds += 1;
                    let g = reader.read_lock();
                    let dv: Vec<u64> = d
                        .iter(&g)
                        .map(|n| n.val)
                        .filter(|&v| v >= STABLE_BASE)
                        .collect();
                    assert_eq!(&dv, stable, "doubly linked: stable elements");
                    let mut sv: Vec<u64> = s
                        .iter(&g)
                        .map(|n| n.val)
                        .filter(|&v| v >= STABLE_BASE)
                        .collect();
                    sv.reverse();
                    assert_eq!(&sv, stable, "singly linked: stable elements");
                    drop(g);
                    if rounds > 100_000 {
                        break;
                    }
                }
            })
        });

        let reader = domain.register();
        for &op in ops {
            match op {
                Op::D(op) => r.d_op(op, &reader),
                Op::S(op) => r.s_op(op, &reader),
                Op::DropHeld(i) => {
                    if !r.held.is_empty() {
                        let i = usize::from(i) % r.held.len();
                        drop(r.held.remove(i));
                    }
                }
                Op::IntoInner(i) => {
                    if !r.held.is_empty() {
                        let i = usize::from(i) % r.held.len();
                        let (h, v) = r.held.remove(i);
                        // No guard of this domain is held on this thread here.
                        let n = h.into_inner();
                        assert_eq!(n.val, v, "into_inner");
                        assert!(
                            !n.link.is_linked() && !n.slink.is_linked(),
                            "into_inner: link still claimed"
                        );
                        r.spare.push(n);
                    }
                }
            }
            r.check(&reader);
        }
        done.store(true, Ordering::SeqCst);
        // Joined, not left to the scope: the scope's wait ends before the
        // thread's TLS destructors run, and LeakSanitizer would report
        // glibc's destructor list of a thread that is still exiting.
        if let Some(h) = reader_thread {
            h.join().unwrap();
        }
    });

    let made = r.made;
    drop(r);
    drop(d);
    drop(s);
    domain.drain();
    drop(domain);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        made,
        "elements made != elements dropped"
    );
}

fuzz_target!(|input: Input| run(&input));
