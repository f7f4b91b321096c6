//! Bottom nodes: the nodes at shift 0, which hold small values inline.
//!
//! A bottom node is a [`Node`] (at offset 0, so navigation treats it as any
//! node) followed by a summary line and two value cells per slot. A slot of
//! a bottom node holds an inline word naming the cell of its value, or, as
//! any slot, a leaf pointer or nothing. A lookup that reaches a bottom node
//! reads the node's summary (one line for its 64 slots) and the value's
//! line, asked for together, instead of the slot's line and then a leaf;
//! a range scan reads the summary once and the values in order, as from an
//! array.
//!
//! # Why two cells
//!
//! Readers may hold `&V` into a cell until their critical sections end, so
//! a replaced or removed value stays in its cell, untouched, until a grace
//! period has passed and its handle ([`Removed`](super::Removed), or a batch
//! of `retain`/`clear`) has dropped it (or moved it out after the grace
//! period). A replacement therefore goes into the slot's other cell; if that
//! one is still held too (two replacements of one key within a grace
//! period), into a leaf of its own, as in nodes above the bottom. A value is
//! never copied or moved while readers may see it: a bitwise copy of a value
//! with interior mutability (a `Mutex<Vec<_>>`) would let a reader change
//! one copy while the other is dropped.
//!
//! # Cell states and node lifetime
//!
//! * `busy[c]` bit `i`: cell `c` of slot `i` holds a value, live (the slot's
//!   word names it) or retired (awaiting its handle). Only the writer sets
//!   bits (under the tree's lock); a retired cell's bit is cleared by whoever
//!   drops or moves its value, with `Release`, and the writer reads the bits
//!   with `Acquire` before it writes into a cell.
//! * `pins`: one for the tree (until the node is unlinked and a grace period
//!   has passed, or the tree is dropped), plus one per retired cell not yet
//!   released. The last to unpin frees the node: a handle can outlive the
//!   node's place in the tree, and even the tree.
//! * A bottom node is never collapsed while it holds an inline entry (the
//!   entry cannot move to a leaf without a copy): it stays, with one entry,
//!   until that entry is removed too, and is unlinked when it is empty.
//!
//! # Which location a reader believes
//!
//! Two locations say where slot `i`'s entry is: the slot's word, and the
//! node's summary (`inline` bit `i`, and `cell1` bit `i` for the cell). The
//! writer cannot change both at once, so every reader decides the same way,
//! whatever it is doing (`get`, `last`, a scan, a marked search): it reads
//! the summary (`inline`, then `cell1`, both `Acquire`) and, only where the
//! `inline` bit is clear, then the word (`Acquire`). While the bit is set
//! the summary decides; while it is clear, the word. The writer orders its
//! `Release` stores so that the location that decides changes last:
//!
//! * a new inline entry where there was none (an empty slot, or a leaf):
//!   the word, then `cell1`, then the `inline` bit ([`Bottom::set_inline`]);
//! * an inline entry replaced by one in the other cell: `cell1`
//!   ([`Bottom::move_cell`]), then the word;
//! * an inline entry replaced by a leaf, or removed: the `inline` bit
//!   cleared ([`Bottom::clear_inline`]), then the word (which still names
//!   the old, live, entry until then).
//!
//! So a reader that has seen any of a change's stores (and a later critical
//! section, or a later read in the same one, which sees everything it saw)
//! decides on that change's value or a later one: reads never go back to
//! an older value of a key, across lookups, nearest-key searches and scans
//! alike (`tests/concurrent.rs`). Were the word stored first on a
//! replacement, `last` (reading the word) could return the new value and a
//! later `get` (reading the summary) the old one.
//!
//! Values go inline only when they are small ([`inline_values`]); a tree of
//! large values keeps plain nodes and leaves throughout.

use super::node::{FANOUT, Kind, Node, Word};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

/// Whether a tree of `V`s stores values inline in bottom nodes: when they
/// are at most 32 bytes (a bottom node then holds at most 4 KiB of cells),
/// and a `usize` can hold a key (an inline word carries one).
#[inline(always)]
pub(crate) const fn inline_values<V>() -> bool {
    size_of::<V>() <= 32 && size_of::<usize>() == 8
}

/// A node at shift 0 with two value cells per slot.
#[repr(C)]
pub(crate) struct Bottom<V> {
    pub(crate) node: Node,
    /// What lookups and scans read instead of the slots' words, in a cache
    /// line of its own (see [`Summary`]).
    summary: Inline,
    /// `cells[c][i]`: cell `c` of slot `i`. Cell 0 of every slot comes
    /// first, so the values of a node filled once lie side by side, as in an
    /// array.
    cells: [[UnsafeCell<MaybeUninit<V>>; FANOUT]; 2],
    busy: [AtomicU64; 2],
    pins: AtomicUsize,
}

/// A summary of a bottom node's inline words: lookups and scans read it,
/// then the cells, without the words (one line for 64 slots, against eight).
#[repr(C, align(64))]
struct Inline {
    /// Bit `i`: slot `i` holds an inline entry.
    inline: AtomicU64,
    /// Bit `i`: the last inline entry published in slot `i` is in cell 1
    /// (else cell 0). Meaningful only where `inline` is set.
    cell1: AtomicU64,
    /// The node's prefix (a copy of its header's, which lies in another
    /// line), so that a lookup checks its key here.
    base: u64,
}

/// A retired cell: the value of a removed or replaced inline entry, which
/// readers may still see. It holds a pin of its node; releasing it (after
/// dropping or moving the value out) clears the cell's busy bit and unpins.
pub(crate) struct CellRef<V> {
    bottom: NonNull<Bottom<V>>,
    slot: u8,
    cell: u8,
}

impl<V> Bottom<V> {
    /// A new, empty bottom node covering `prefix..=prefix + 63`, pinned once
    /// (for the tree).
    pub(crate) fn alloc(prefix: u64) -> *mut Bottom<V> {
        Box::into_raw(Box::new(Bottom {
            node: Node::empty(0, prefix),
            summary: Inline {
                inline: AtomicU64::new(0),
                cell1: AtomicU64::new(0),
                base: prefix,
            },
            cells: [const { [const { UnsafeCell::new(MaybeUninit::uninit()) }; FANOUT] }; 2],
            busy: [const { AtomicU64::new(0) }; 2],
            pins: AtomicUsize::new(1),
        }))
    }

    /// The bottom node a node word of a tree of `V`s points to, if that node
    /// is one: shift 0 and inline values.
    #[inline(always)]
    pub(crate) fn of(node: *const Node, shift: u8) -> Option<*const Bottom<V>> {
        (shift == 0 && inline_values::<V>()).then_some(node.cast())
    }

    /// The address of cell `cell` of slot `slot`; nothing is read.
    #[inline(always)]
    pub(crate) fn cell_ptr(this: *const Bottom<V>, slot: usize, cell: usize) -> *mut V {
        // SAFETY: in bounds of the node (`slot < 64`, `cell < 2`, indexing
        // checks both); only an address is computed.
        unsafe {
            (&raw const (*this).cells[cell][slot])
                .cast::<V>()
                .cast_mut()
        }
    }

    /// The value in cell `cell` of slot `slot`.
    ///
    /// # Safety
    /// The cell holds a value (an inline word naming it was read, with
    /// `Acquire`, in a critical section, or the caller owns the cell), and
    /// stays alive and unchanged for `'a` (the critical section, or the
    /// ownership, lasts that long).
    #[inline(always)]
    pub(crate) unsafe fn value<'a>(this: *const Bottom<V>, slot: usize, cell: usize) -> &'a V {
        // SAFETY: the caller's contract.
        unsafe { &*Self::cell_ptr(this, slot, cell) }
    }

    /// The values in cell 0 of slots `first..=last`, side by side.
    ///
    /// # Safety
    /// As [`value`](Self::value) for cell 0 of each of those slots, for
    /// `'a`; `first <= last < 64`.
    #[inline(always)]
    pub(crate) unsafe fn values0<'a>(this: *const Bottom<V>, first: usize, last: usize) -> &'a [V] {
        debug_assert!(first <= last && last < FANOUT);
        // SAFETY: `cells[0]` is an array of `UnsafeCell<MaybeUninit<V>>`,
        // laid out as `V`s; the slots are in bounds, and each holds a value
        // that stays alive and unchanged for 'a (the caller's contract).
        unsafe { std::slice::from_raw_parts(Self::cell_ptr(this, first, 0), last - first + 1) }
    }

    /// The key and value of the inline entry `w` names, if `w` is an inline
    /// word: `w` was loaded from slot `slot` of the node `this` points to.
    ///
    /// # Safety
    /// As [`value`](Self::value) for the cell `w` names: `w` was loaded,
    /// with `Acquire`, from slot `slot` of this bottom node in a critical
    /// section that lasts `'a`, or the caller owns the node's entries for
    /// `'a`.
    #[inline(always)]
    pub(crate) unsafe fn entry<'a>(
        this: *const Node,
        slot: usize,
        w: Word,
    ) -> Option<(u64, &'a V)> {
        match w.kind() {
            Kind::Inline { prefix, cell } => {
                // SAFETY: the caller's contract: an inline word of this
                // slot names a cell that holds its value for 'a.
                let v = unsafe { Self::value(this.cast(), slot, cell) };
                Some((prefix | slot as u64, v))
            }
            _ => None,
        }
    }

    /// Asks the cache for cell 0 of `slot` (where most values are: cell 1
    /// holds a value only after a replacement found cell 0 held); reads
    /// nothing.
    #[inline(always)]
    pub(crate) fn prefetch(this: *const Bottom<V>, slot: usize) {
        super::prefetch(Self::cell_ptr(this, slot, 0).cast_const());
    }

    /// Asks the cache for what a scan of slots `first..=last` reads: the
    /// summary, and cell 0 of those slots (where the values of a node filled
    /// once lie, side by side). Reads nothing.
    #[inline]
    pub(crate) fn prefetch_scan(this: *const Bottom<V>, first: usize, last: usize) {
        // SAFETY: only an address is computed (in bounds of the node).
        super::prefetch(unsafe { &raw const (*this).summary });
        let per_line = Self::per_line();
        let mut s = first;
        while s <= last {
            super::prefetch(Self::cell_ptr(this, s, 0).cast_const());
            s += per_line;
        }
        if last >= first {
            super::prefetch(Self::cell_ptr(this, last, 0).cast_const());
        }
    }

    /// How many values of a cell array share a 64-byte line (at least 1).
    #[inline(always)]
    fn per_line() -> usize {
        (64 / size_of::<V>().max(1)).max(1)
    }

    /// Asks the cache for the lines of cell 1 that hold the slots of
    /// `slots` (a bitmap); reads nothing.
    #[inline]
    pub(crate) fn prefetch_cells1(this: *const Bottom<V>, slots: u64) {
        let per_line = Self::per_line();
        let mut rest = slots;
        while rest != 0 {
            let s = rest.trailing_zeros() as usize;
            super::prefetch(Self::cell_ptr(this, s, 1).cast_const());
            // The next slot past this one's line (as far as slot numbers
            // tell: the array need not start on a line).
            let next = (s / per_line + 1) * per_line;
            rest = if next >= FANOUT {
                0
            } else {
                rest & (u64::MAX << next)
            };
        }
    }

    /// A free cell of `slot`: one whose last value is gone.
    ///
    /// Writer only (under the tree's lock).
    pub(crate) fn free_cell(&self, slot: usize) -> Option<usize> {
        // Acquire: pairs with the Release clear in `CellRef::release`, so
        // the old value's drop (or move) happens before the next write.
        (0..2).find(|&c| self.busy[c].load(Ordering::Acquire) & (1 << slot) == 0)
    }

    /// Writes `value` into the free cell `cell` of `slot` and marks it busy.
    ///
    /// # Safety
    /// The caller is the writer (under the tree's lock, or owning a node not
    /// yet published) and the cell is free ([`free_cell`](Self::free_cell)).
    pub(crate) unsafe fn fill(&self, slot: usize, cell: usize, value: V) {
        // SAFETY: a free cell is read by no one (no word names it) and
        // written only by the writer, which the caller is.
        unsafe { (*self.cells[cell][slot].get()).write(value) };
        // Relaxed: only the writer sets bits, and reads its own; the value is
        // published to readers by the Release store of the slot's word, and
        // to the eventual releaser through the retire's own hand-off.
        self.busy[cell].fetch_or(1 << slot, Ordering::Relaxed);
    }

    /// Whether the summary says `slot` holds an inline entry. Writer only.
    pub(crate) fn is_inline(&self, slot: usize) -> bool {
        // Relaxed: only the writer stores it, under the lock.
        self.summary.inline.load(Ordering::Relaxed) & (1 << slot) != 0
    }

    /// Stores bit `slot` of `cell1`: set for cell 1. Writer only.
    fn store_cell1(&self, slot: usize, cell: usize) {
        let bit = 1u64 << slot;
        // Relaxed load: only the writer stores it.
        let c1 = self.summary.cell1.load(Ordering::Relaxed);
        let c1 = if cell == 1 { c1 | bit } else { c1 & !bit };
        // Release: pairs with the readers' Acquire load of `cell1`
        // (`Summary::of`): the value filled into the cell, and every store
        // the writer made before, happen before a read that sees this.
        self.summary.cell1.store(c1, Ordering::Release);
    }

    /// Records that `slot`'s word, which named no cell, now names cell
    /// `cell` (after the word's store): `cell1`, then `inline`, both
    /// `Release` (pairing with the `Acquire` loads of [`Summary::of`]), so
    /// a reader that sees the `inline` bit then reads a `cell1` that names
    /// this entry's cell or a later one's (see [`Summary`]), and the bit
    /// decides only once the word says the same (see "Which location a
    /// reader believes").
    ///
    /// Writer only.
    pub(crate) fn set_inline(&self, slot: usize, cell: usize) {
        self.store_cell1(slot, cell);
        // Relaxed load: only the writer stores it.
        let inl = self.summary.inline.load(Ordering::Relaxed);
        // Release: pairs with the Acquire load in `Summary::of`.
        self.summary
            .inline
            .store(inl | 1 << slot, Ordering::Release);
    }

    /// Moves `slot`'s inline entry to cell `cell`, already filled: the
    /// summary first (while its `inline` bit is set, it decides), then the
    /// caller stores the word. Writer only.
    pub(crate) fn move_cell(&self, slot: usize, cell: usize) {
        debug_assert!(self.is_inline(slot));
        self.store_cell1(slot, cell);
    }

    /// Records that `slot`'s word will no longer name a cell: before the
    /// store that clears it, or points it to a leaf (the word decides from
    /// here on, and names the old entry until then). Writer only.
    pub(crate) fn clear_inline(&self, slot: usize) {
        // Relaxed load: only the writer stores it. Release: pairs with the
        // Acquire load in `Summary::of`, as the stores of `set_inline`; a
        // reader that still sees the bit reads a retired cell, which stays
        // valid until a grace period after this store.
        let inl = self.summary.inline.load(Ordering::Relaxed);
        self.summary
            .inline
            .store(inl & !(1 << slot), Ordering::Release);
    }

    /// Takes cell `cell` of `slot`, just unlinked by the writer, as a
    /// retired cell, pinning the node for it.
    ///
    /// # Safety
    /// The writer holds the tree's lock, `this` points to a live bottom node
    /// with the provenance of its allocation (from a word: the handle frees
    /// the node through it), the cell holds a value that no slot's word
    /// names any more, and no other `CellRef` to it exists.
    pub(crate) unsafe fn retire(this: *const Bottom<V>, slot: usize, cell: usize) -> CellRef<V> {
        // Relaxed: as an `Arc` clone; the node is pinned by the tree while
        // the writer runs, so the count is not zero.
        // SAFETY: alive (the caller's contract).
        unsafe { (*this).pins.fetch_add(1, Ordering::Relaxed) };
        CellRef {
            // SAFETY: a live node's address is not null.
            bottom: unsafe { NonNull::new_unchecked(this.cast_mut()) },
            slot: slot as u8,
            cell: cell as u8,
        }
    }

    /// Drops one pin; the last frees the node (without dropping any cell:
    /// every value in it is gone by then, dropped, moved out, or owned by
    /// the unpinning caller).
    ///
    /// # Safety
    /// The caller holds a pin of the node, gives it up, and uses the node no
    /// more; the node came from [`alloc`](Self::alloc).
    pub(crate) unsafe fn unpin(this: *const Bottom<V>) {
        // Release: this pin holder's uses of the node happen before the free
        // (the Acquire fence below, on the thread that frees, as `Arc`).
        // SAFETY: pinned, so alive.
        if unsafe { (*this).pins.fetch_sub(1, Ordering::Release) } == 1 {
            fence(Ordering::Acquire);
            // SAFETY: the last pin is gone: no one uses the node; it came
            // from `Box::into_raw` in `alloc`. Cells are `MaybeUninit`, so
            // nothing is dropped.
            drop(unsafe { Box::from_raw(this.cast_mut()) });
        }
    }

    /// Drops the live values of the node's inline entries in place (those
    /// its slots' words name), keeping the first panic in `panicked`.
    ///
    /// # Safety
    /// The caller owns the node's live entries: the node is unreachable for
    /// readers (or every reader is gone), and nothing else drops them.
    pub(crate) unsafe fn drop_live(
        this: *const Bottom<V>,
        panicked: &mut super::reclaim::Panicked,
    ) {
        // SAFETY: owned by the caller, so alive.
        let node = unsafe { &(*this).node };
        for (i, slot) in node.slots.iter().enumerate() {
            // Relaxed: the caller owns the node, so its last stores (the
            // writer's, or the retire's hand-off) happen before this.
            if let Kind::Inline { cell, .. } = Word::load(slot, Ordering::Relaxed).kind() {
                // SAFETY: the cell holds the live value (its slot's word
                // names it), which the caller owns.
                super::reclaim::catch(panicked, || unsafe {
                    Self::cell_ptr(this, i, cell).drop_in_place()
                });
            }
        }
    }
}

/// A scan's snapshot of a bottom node: which slots held inline entries and
/// in which cells, read once when the scan enters the node.
///
/// Sound to read cells by: the scan loads `inline`, then `cell1`, both
/// `Acquire`, inside its critical section. For a slot whose `inline` bit it
/// saw set, the entry of that publication was live at the load, so its cell
/// cannot be reused before the scan's critical section ends; the `cell1`
/// bit it then sees is that publication's or a later one's (the writer
/// stores `cell1` before it sets `inline`, and a move stores `cell1` only),
/// naming a cell whose value was written before the store it sees, and
/// which is not reused before a grace period after its entry leaves, which
/// waits for the scan. The value read may be one replaced or removed during
/// the scan, which a scan may yield.
///
/// A slot whose `inline` bit is clear is read from its word, after the
/// summary: see "Which location a reader believes" in the module docs.
#[derive(Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) inline: u64,
    pub(crate) cell1: u64,
    /// The node's prefix: the key of slot 0.
    pub(crate) base: u64,
}

impl Summary {
    /// The cell of slot `slot`'s value if the summary names one (the
    /// `inline` bit is set), else `None`: then the slot's word decides.
    #[inline(always)]
    pub(crate) fn cell(&self, slot: usize) -> Option<usize> {
        (self.inline & (1 << slot) != 0).then_some(((self.cell1 >> slot) & 1) as usize)
    }

    /// The snapshot of the bottom node `this`.
    ///
    /// # Safety
    /// The node is alive (read in a critical section).
    #[inline(always)]
    pub(crate) unsafe fn of<V>(this: *const Bottom<V>) -> Summary {
        // SAFETY: the caller's contract.
        let s = unsafe { &(*this).summary };
        // Acquire, in this order: see the type's docs.
        let inline = s.inline.load(Ordering::Acquire);
        let cell1 = s.cell1.load(Ordering::Acquire);
        Summary {
            inline,
            cell1,
            base: s.base,
        }
    }
}

// SAFETY: a retired cell owns its value (moving it, or dropping it on
// another thread, needs `V: Send`) and a pin of a node that is freed with
// atomics only.
unsafe impl<V: Send> Send for CellRef<V> {}

impl<V> CellRef<V> {
    /// The node's key for the cell's slot.
    pub(crate) fn key(&self) -> u64 {
        // SAFETY: pinned, so alive; a node's prefix never changes.
        unsafe { self.bottom.as_ref().node.prefix | u64::from(self.slot) }
    }

    /// The value.
    ///
    /// # Safety
    /// The value is still in the cell (not yet dropped or moved out: the
    /// `CellRef` is not yet released), for as long as the reference is used.
    pub(crate) unsafe fn value(&self) -> &V {
        // SAFETY: the caller's contract; the pin keeps the node alive.
        unsafe {
            Bottom::value(
                self.bottom.as_ptr(),
                usize::from(self.slot),
                usize::from(self.cell),
            )
        }
    }

    /// The value's address.
    fn ptr(&self) -> *mut V {
        Bottom::cell_ptr(
            self.bottom.as_ptr(),
            usize::from(self.slot),
            usize::from(self.cell),
        )
    }

    /// Moves the value out and releases the cell.
    ///
    /// # Safety
    /// A grace period has passed since the cell was unlinked (no reader can
    /// see the value), and the value is still in it.
    pub(crate) unsafe fn take(self) -> V {
        // SAFETY: the value is there and no one else reads it (contract);
        // releasing below makes the cell free, so it is read once.
        let v = unsafe { self.ptr().read() };
        // SAFETY: the value is moved out.
        unsafe { self.release() };
        v
    }

    /// Drops the value in place and releases the cell; a panic of the drop
    /// goes into `panicked` (the first kept), after the release.
    ///
    /// # Safety
    /// As [`take`](Self::take).
    pub(crate) unsafe fn drop_into(self, panicked: &mut super::reclaim::Panicked) {
        let p = self.ptr();
        // SAFETY: as in `take`: the value is there and no one reads it.
        super::reclaim::catch(panicked, || unsafe { p.drop_in_place() });
        // SAFETY: the value is dropped (a panicking drop is over too).
        unsafe { self.release() };
    }

    /// Marks the cell free and drops the pin.
    ///
    /// # Safety
    /// The value is gone (dropped or moved out).
    unsafe fn release(self) {
        let b = self.bottom.as_ptr();
        // Release: pairs with the writer's Acquire in `free_cell`: the drop
        // or move of the value happens before the cell's reuse.
        // SAFETY: pinned, so alive.
        unsafe {
            (*b).busy[usize::from(self.cell)].fetch_and(!(1 << self.slot), Ordering::Release)
        };
        // SAFETY: this `CellRef` held the pin, and is consumed.
        unsafe { Bottom::unpin(b) };
    }
}
