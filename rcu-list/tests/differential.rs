//! Differential tests: random operation sequences (seeded, reproducible) on
//! the lists and on a `VecDeque` model must agree after every step, and
//! every element removed is dropped exactly once after `drain()`.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::{BoxList, BoxSList, Node, Rng, size};
use rcu_core::RcuDomain;
use rcu_list::{RcuList, RcuSList, Removed};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn contents<'g>(it: impl Iterator<Item = &'g Node>) -> Vec<u64> {
    it.map(|n| n.val).collect()
}

/// One run of `steps` random operations on an `RcuList<Box<Node>>`.
fn list_against_vecdeque(seed: u64, steps: usize) {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuList::<BoxList>::new_in(&domain);
    let reader = domain.register();
    let mut model: VecDeque<u64> = VecDeque::new();
    let mut rng = Rng::new(seed);
    let (mut next_val, mut removed) = (0u64, 0usize);
    // Removed elements kept a while (readable), some taken back later.
    let mut held: Vec<Removed<Box<Node>>> = Vec::new();
    // Elements taken back after their grace period, to link again.
    let mut spare: Vec<Box<Node>> = Vec::new();
    // Removals of elements that were then linked again: not reclaimed.
    let mut reused = 0usize;
    let mut fresh = |spare: &mut Vec<Box<Node>>| -> Box<Node> {
        next_val += 1;
        match spare.pop() {
            Some(mut node) => {
                assert!(!node.link.is_linked());
                reused += 1;
                node.val = next_val;
                node
            }
            None => Node::boxed(next_val, &drops),
        }
    };

    for step in 0..steps {
        if !held.is_empty() && rng.below(4) == 0 {
            // Outside any critical section: this waits for a grace period.
            spare.push(held.swap_remove(0).into_inner());
        }
        let op = rng.below(100);
        let guard = reader.read_lock();
        let pick = |rng: &mut Rng| (!model.is_empty()).then(|| rng.below(model.len()));
        let at = |i: usize| list.iter(&guard).nth(i).expect("index in range");
        // Keep some removed elements (readable) to take back later.
        macro_rules! retire {
            ($r:expr) => {{
                let r: Removed<Box<Node>> = $r;
                removed += 1;
                if rng.below(8) == 0 {
                    held.push(r);
                }
            }};
        }
        match op {
            0..=14 => {
                let n = fresh(&mut spare);
                model.push_front(n.val);
                list.push_front(n);
            }
            15..=29 => {
                let n = fresh(&mut spare);
                model.push_back(n.val);
                list.push_back(n);
            }
            30..=39 => {
                let r = list.pop_front();
                assert_eq!(r.as_ref().map(|n| n.val), model.pop_front());
                if let Some(r) = r {
                    retire!(r);
                }
            }
            40..=49 => {
                let r = list.pop_back();
                assert_eq!(r.as_ref().map(|n| n.val), model.pop_back());
                if let Some(r) = r {
                    retire!(r);
                }
            }
            50..=59 => {
                if let Some(i) = pick(&mut rng) {
                    let n = fresh(&mut spare);
                    model.insert(i + 1, n.val);
                    assert!(list.insert_after(at(i), n).is_ok());
                }
            }
            60..=69 => {
                if let Some(i) = pick(&mut rng) {
                    let n = fresh(&mut spare);
                    model.insert(i, n.val);
                    assert!(list.insert_before(at(i), n).is_ok());
                }
            }
            70..=84 => {
                if let Some(i) = pick(&mut rng) {
                    let victim = at(i);
                    let r = list.remove(victim).expect("linked");
                    assert_eq!(r.val, model.remove(i).unwrap());
                    // Removing again finds nothing.
                    assert!(list.remove(victim).is_none());
                    retire!(r);
                }
            }
            85..=96 => {
                if let Some(i) = pick(&mut rng) {
                    let n = fresh(&mut spare);
                    let new_val = n.val;
                    let r = list.replace(at(i), n).expect("linked");
                    assert_eq!(r.val, std::mem::replace(&mut model[i], new_val));
                    retire!(r);
                }
            }
            97 => {
                let m = 2 + rng.below(3) as u64;
                let before = model.len();
                model.retain(|v| v % m != 0);
                removed += before - model.len();
                list.retain(|n| n.val % m != 0);
            }
            _ => {
                removed += model.len();
                model.clear();
                list.clear();
            }
        }
        assert_eq!(
            contents(list.iter(&guard)),
            Vec::from(model.clone()),
            "seed {seed} step {step}"
        );
        assert_eq!(list.len(), model.len());
        assert_eq!(list.is_empty(), model.is_empty());
        assert_eq!(list.front(&guard).map(|n| n.val), model.front().copied());
        assert_eq!(list.back(&guard).map(|n| n.val), model.back().copied());
    }
    // The elements held back count as removed; drop them (retire). The
    // spare ones are removed but still alive, in `spare`.
    drop(held);
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed) + spare.len(),
        removed - reused,
        "seed {seed}: removed != reclaimed"
    );
    drop(spare);
    let linked = list.len();
    drop(list);
    assert_eq!(drops.load(Ordering::Relaxed), removed - reused + linked);
}

/// One run on an `RcuSList<Box<Node>>`.
fn slist_against_vecdeque(seed: u64, steps: usize) {
    let domain = RcuDomain::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let list = RcuSList::<BoxSList>::new_in(&domain);
    let reader = domain.register();
    let mut model: VecDeque<u64> = VecDeque::new();
    let mut rng = Rng::new(seed);
    let (mut next_val, mut removed) = (0u64, 0usize);
    for step in 0..steps {
        let guard = reader.read_lock();
        let pick = |rng: &mut Rng| (!model.is_empty()).then(|| rng.below(model.len()));
        let at = |i: usize| list.iter(&guard).nth(i).expect("index in range");
        next_val += 1;
        match rng.below(100) {
            0..=29 => {
                model.push_front(next_val);
                list.push_front(Node::boxed(next_val, &drops));
            }
            30..=54 => {
                if let Some(i) = pick(&mut rng) {
                    model.insert(i + 1, next_val);
                    assert!(
                        list.insert_after(at(i), Node::boxed(next_val, &drops))
                            .is_ok()
                    );
                }
            }
            55..=69 => {
                let r = list.pop_front();
                assert_eq!(r.as_ref().map(|n| n.val), model.pop_front());
                removed += usize::from(r.is_some());
            }
            70..=95 => {
                if let Some(i) = pick(&mut rng) {
                    let victim = at(i);
                    let r = list.remove(victim).expect("linked");
                    assert_eq!(r.val, model.remove(i).unwrap());
                    assert!(list.remove(victim).is_none());
                    assert!(!list.contains(victim));
                    removed += 1;
                }
            }
            96..=97 => {
                let m = 2 + rng.below(3) as u64;
                let before = model.len();
                model.retain(|v| v % m != 0);
                removed += before - model.len();
                list.retain(|n| n.val % m != 0);
            }
            _ => {
                removed += model.len();
                model.clear();
                list.clear();
            }
        }
        assert_eq!(
            contents(list.iter(&guard)),
            Vec::from(model.clone()),
            "seed {seed} step {step}"
        );
        assert_eq!(list.is_empty(), model.is_empty());
        assert_eq!(list.front(&guard).map(|n| n.val), model.front().copied());
    }
    domain.drain();
    assert_eq!(
        drops.load(Ordering::Relaxed),
        removed,
        "seed {seed}: removed != reclaimed"
    );
    drop(list);
    assert_eq!(drops.load(Ordering::Relaxed), removed + model.len());
}

#[test]
fn rcu_list_matches_vecdeque() {
    for seed in 1..=size(16, 2) as u64 {
        list_against_vecdeque(seed, size(2_000, 150));
    }
}

#[test]
fn rcu_slist_matches_vecdeque() {
    for seed in 1..=size(16, 2) as u64 {
        slist_against_vecdeque(seed, size(2_000, 150));
    }
}
