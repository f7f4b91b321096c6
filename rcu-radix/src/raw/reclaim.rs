//! Reclamation: what the writer unlinks and how it is freed after a grace
//! period. [`Place`] (one entry, a leaf or a retired cell), [`Garbage`]
//! (the nodes one removal unlinks), [`Batch`] (everything `retain` and
//! `clear` unlink, freed in one callback) and the frees of whole subtrees,
//! each of which drops every value even when one's drop panics.

use super::bottom::{Bottom, CellRef};
use super::node::{Kind, Leaf, Node, Word};
use rcu_core::RcuDomain;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

/// An entry unlinked by the writer, which readers may still see: its leaf,
/// or its retired cell.
pub(crate) enum Place<V> {
    Leaf(NonNull<Leaf<V>>),
    Cell(CellRef<V>),
}

// SAFETY: a `Place` owns the unlinked value (moving it, or dropping it
// elsewhere, needs `V: Send`); the leaf is not shared with anyone but
// readers, who only read.
unsafe impl<V: Send> Send for Place<V> {}

impl<V> Place<V> {
    /// The entry's key.
    pub(crate) fn key(&self) -> u64 {
        match self {
            // SAFETY: an unlinked leaf stays alive while its `Place` does.
            Place::Leaf(l) => unsafe { l.as_ref().head.key },
            Place::Cell(c) => c.key(),
        }
    }

    /// The value.
    ///
    /// # Safety
    /// The place is not yet dropped or taken (it is alive for as long as the
    /// reference is used).
    pub(crate) unsafe fn value(&self) -> &V {
        match self {
            // SAFETY: as in `key`.
            Place::Leaf(l) => unsafe { &l.as_ref().value },
            // SAFETY: the caller's contract.
            Place::Cell(c) => unsafe { c.value() },
        }
    }

    /// Moves the value out, freeing the leaf or releasing the cell.
    ///
    /// # Safety
    /// A grace period of the tree's domain has passed since the entry was
    /// unlinked.
    pub(crate) unsafe fn take(self) -> V {
        match self {
            // SAFETY: the leaf came from `Box::into_raw`, is owned by this
            // place alone, and no reader can see it any more.
            Place::Leaf(l) => unsafe { Box::from_raw(l.as_ptr()) }.value,
            // SAFETY: the caller's contract.
            Place::Cell(c) => unsafe { c.take() },
        }
    }

    /// Drops the value; a panic of its drop goes into `panicked`.
    ///
    /// # Safety
    /// As [`take`](Self::take).
    pub(crate) unsafe fn drop_into(self, panicked: &mut Panicked) {
        match self {
            // SAFETY: as in `take`.
            Place::Leaf(l) => drop_leaf(unsafe { Box::from_raw(l.as_ptr()) }, panicked),
            // SAFETY: the caller's contract.
            Place::Cell(c) => unsafe { c.drop_into(panicked) },
        }
    }
}

/// Nodes unlinked by a change, to retire after the writer lock is released:
/// at most two (a bottom node left empty, and its parent collapsing).
#[must_use = "unlinked nodes leak unless retired"]
pub(crate) struct Garbage {
    pub(super) nodes: [Option<NonNull<Node>>; 2],
}

impl Garbage {
    pub(super) fn push(&mut self, n: *const Node) {
        let free = self.nodes.iter_mut().find(|n| n.is_none());
        *free.expect("a change unlinks at most two nodes") = NonNull::new(n.cast_mut());
    }

    /// Retires the nodes through `domain`.
    ///
    /// # Safety
    /// `domain` is the domain the tree's readers hold guards of, and `V` is
    /// the tree's value type.
    pub(crate) unsafe fn retire<V: Send + 'static>(self, domain: &RcuDomain) {
        for n in self.nodes.into_iter().flatten() {
            // SAFETY: the node was unlinked from the tree by the writer
            // before this call (`Writer::remove`), is retired once (a
            // `Garbage` is made once per unlink and consumed here), and the
            // readers that may hold it read under `domain`'s guards.
            unsafe { retire_node::<V>(n, domain) };
        }
    }
}

/// Retires an unlinked node: frees it after a grace period (a bottom node:
/// drops the tree's pin then, so retired cells keep it until released).
///
/// # Safety
/// As [`Garbage::retire`], for the one node `n`, which holds no live entry.
unsafe fn retire_node<V: Send + 'static>(n: NonNull<Node>, domain: &RcuDomain) {
    // SAFETY: unlinked but not yet freed (the caller's contract).
    let shift = unsafe { n.as_ref().shift };
    match Bottom::<V>::of(n.as_ptr(), shift) {
        Some(b) => {
            struct Pin<V>(*const Bottom<V>);
            // SAFETY: the pin is given up on whichever thread runs the
            // callback (the reclaim thread, or one in `drain`), with atomics
            // only (and a free of a node whose cells hold nothing).
            unsafe impl<V> Send for Pin<V> {}
            let pin = Pin(b);
            domain.call_rcu(move || {
                let pin = pin;
                // SAFETY: the tree's pin, given up once, after a grace
                // period; the node holds no live entry (unlinked empty, or
                // collapsed around a leaf).
                unsafe { Bottom::unpin(pin.0) };
            });
        }
        // SAFETY: a plain node from `Box::into_raw` (`Node::pair`), retired
        // once, read under `domain`'s guards.
        None => unsafe { domain.defer_free(n.as_ptr()) },
    }
}

/// Frees an unlinked node that no reader can see any more (a bottom node:
/// gives up the tree's pin).
///
/// # Safety
/// The node is unlinked, holds no live entry, a grace period has passed
/// (or no reader exists), and it is freed once.
unsafe fn free_node<V>(n: NonNull<Node>) {
    // SAFETY: not yet freed.
    let shift = unsafe { n.as_ref().shift };
    match Bottom::<V>::of(n.as_ptr(), shift) {
        // SAFETY: the tree's pin, given up once.
        Some(b) => unsafe { Bottom::unpin(b) },
        // SAFETY: a plain node from `Box::into_raw`, freed once.
        None => drop(unsafe { Box::from_raw(n.as_ptr()) }),
    }
}

/// Entries and whole subtrees unlinked by `retain` and `clear`, dropped in
/// one callback after a grace period.
pub(crate) struct Batch<V> {
    pub(super) places: Vec<Place<V>>,
    pub(super) nodes: Vec<NonNull<Node>>,
    pub(super) subtree: Word,
}

// SAFETY: a `Batch` owns what it points to (unlinked entries and nodes, and
// a detached subtree), so it may go to the reclaim thread when the values
// may.
unsafe impl<V: Send> Send for Batch<V> {}

impl<V: Send + 'static> Batch<V> {
    pub(crate) fn new() -> Self {
        Batch {
            places: Vec::new(),
            nodes: Vec::new(),
            subtree: Word::EMPTY,
        }
    }

    fn is_empty(&self) -> bool {
        self.places.is_empty() && self.nodes.is_empty() && self.subtree == Word::EMPTY
    }

    /// Frees everything after a grace period of `domain`, in one callback.
    ///
    /// # Safety
    /// `domain` is the domain the tree's readers hold guards of.
    pub(crate) unsafe fn retire(self, domain: &RcuDomain) {
        if self.is_empty() {
            return;
        }
        domain.call_rcu(move || {
            let batch = self;
            // A value's panicking drop does not stop the others.
            let mut panicked = None;
            // SAFETY: everything in the batch was unlinked (or, for the
            // subtree, detached at the root) before the batch was retired,
            // is owned only by the batch, and a grace period of the readers'
            // domain has passed, so no reader can reach it. Entries go
            // before nodes: a retired cell pins its node anyway.
            unsafe {
                for p in batch.places {
                    p.drop_into(&mut panicked);
                }
                for n in batch.nodes {
                    free_node::<V>(n);
                }
                free_subtree_into::<V>(batch.subtree, &mut panicked);
            }
            resume(panicked);
        });
    }
}

/// Frees `w` and everything below it.
///
/// # Safety
/// The caller owns the subtree (it is unreachable for readers, or every
/// reader is gone), it is well formed (each node and leaf reachable once),
/// and it came from this crate's allocations of nodes and `Leaf<V>`s.
///
/// A value whose drop panics does not stop the others: every value is
/// dropped and every node freed, then the first panic resumes.
pub(crate) unsafe fn free_subtree<V>(w: Word) {
    let mut panicked = None;
    // SAFETY: the caller's contract.
    unsafe { free_subtree_into::<V>(w, &mut panicked) };
    resume(panicked);
}

/// A panic caught while dropping values, to resume once all are dropped.
pub(crate) type Panicked = Option<Box<dyn std::any::Any + Send>>;

/// [`free_subtree`], keeping the first panic of a value's drop in
/// `panicked` and going on.
///
/// # Safety
/// As [`free_subtree`].
unsafe fn free_subtree_into<V>(w: Word, panicked: &mut Panicked) {
    match w.kind() {
        // Inline entries are dropped by their node (below).
        Kind::Empty | Kind::Inline { .. } => {}
        Kind::Leaf(l) => {
            // SAFETY: by the contract, a `Leaf<V>` from `Box::into_raw`.
            drop_leaf(
                unsafe { Box::from_raw(l.cast_mut().cast::<Leaf<V>>()) },
                panicked,
            );
        }
        Kind::Node(n) => {
            // SAFETY: by the contract, a node of ours, owned.
            let node = unsafe { &*n };
            for slot in &node.slots {
                // Relaxed: owned, so every store to the slot happened before
                // (the retire's hand-off, or `&mut` of the tree's drop).
                // SAFETY: the children of an owned node are owned too.
                unsafe { free_subtree_into::<V>(Word::load(slot, Ordering::Relaxed), panicked) };
            }
            if let Some(b) = Bottom::<V>::of(n, w.shift()) {
                // SAFETY: the live entries of an owned node are owned too.
                unsafe { Bottom::drop_live(b, panicked) };
            }
            // SAFETY: owned, its entries dropped above, freed once.
            // (Through the word's pointer, whose provenance covers a bottom
            // node's cells and counts, not through `node`.)
            unsafe { free_node::<V>(NonNull::new_unchecked(n.cast_mut())) };
        }
    }
}

/// Runs `f` (a drop), keeping its panic, if any, in `panicked` (the first
/// one kept) instead of unwinding past the drops still to make.
pub(crate) fn catch(panicked: &mut Panicked, f: impl FnOnce()) {
    // AssertUnwindSafe: what `f` drops is gone either way; nothing of ours
    // is reachable from a value.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        panicked.get_or_insert(payload);
    }
}

/// Drops `leaf`, keeping a panic of its value's drop in `panicked`.
fn drop_leaf<V>(leaf: Box<Leaf<V>>, panicked: &mut Panicked) {
    catch(panicked, || drop(leaf));
}

/// Resumes the first panic caught while dropping values, if any.
fn resume(panicked: Panicked) {
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
}
