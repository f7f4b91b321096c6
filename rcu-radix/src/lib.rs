//! An ordered radix tree keyed by `u64` whose reads take no lock:
//! [`RcuRadixTree`], in the spirit of the Linux XArray and QEMU's
//! RCU-published page maps, built on `rcu-core`.
//!
//! # Summary
//!
//! * **Reads** (`get`, `first`, `last`, `next_after`, `prev_before`, `range`,
//!   `iter`, the marked searches) run under any [`rcu_core::Guard`] of the
//!   tree's domain: no lock, no atomic read-modify-write, no fence; plain
//!   `Acquire` loads down at most 11 nodes. References live as long as the
//!   guard. Reads never go back: once a read has seen a state of a key
//!   (its value, its absence, a mark set or clear), every read of that key
//!   that happens after it (later on the same thread, or ordered after it
//!   through any synchronisation), by any of these methods, sees that
//!   state or a newer one. A scan (`range`, `iter` and their marked forms)
//!   reads a block of 64 keys (a bottom node) as it enters it, so its read
//!   of a key happens somewhere between its entry into the key's block and
//!   its step to the key: a scan paused inside a block may yield a value
//!   replaced, or a key removed, since it entered, and miss a key inserted
//!   or marked since.
//! * **Writes** (`insert`, `remove`, `get_or_insert_with`, `retain`, `clear`,
//!   marks) come from any thread and are serialised by one lock inside the
//!   tree. They never wait for a grace period; what they unlink (values,
//!   nodes) is retired through `rcu-core` after the lock is released and
//!   dropped on the reclaim thread after a grace period (over a domain's
//!   memory limit, a retiring writer may help run ready callbacks on its
//!   own thread, for up to about a millisecond per object it retires, so
//!   about two for a `remove` that also unlinks a node: rcu-core's
//!   `call_rcu`).
//! * **Ordered**: iteration and ranges (any `RangeBounds<u64>`) yield keys in
//!   ascending order; nearest-key searches are strict and exact at the
//!   edges (`next_after(u64::MAX)` is `None`, never a wrap).
//! * **Marks**: three mark bits per entry ([`Mark`]), with a summary bitmap
//!   per mark in every node, so "the next marked entry" skips unmarked
//!   subtrees (the XArray's `XA_MARK_0..2` and `xa_find`).
//!
//! ```
//! use rcu_radix::{Mark, RcuRadixTree};
//!
//! let pages = RcuRadixTree::new();
//! for pfn in [3u64, 4, 9, 1 << 40] {
//!     pages.insert(pfn, format!("page {pfn}"));
//! }
//! pages.set_mark(9, Mark::M0); // e.g. "dirty"
//!
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let guard = rcu_core::read_lock(); // readers: no lock
//!         assert_eq!(pages.get(4, &guard).map(String::as_str), Some("page 4"));
//!         let dirty: Vec<u64> = pages.iter_marked(Mark::M0, &guard).map(|(k, _)| k).collect();
//!         assert_eq!(dirty, [9]);
//!     });
//!     // A writer meanwhile; the old value is dropped after a grace period.
//!     drop(pages.remove(3));
//! });
//! let guard = rcu_core::read_lock();
//! let keys: Vec<u64> = pages.range(4.., &guard).map(|(k, _)| k).collect();
//! assert_eq!(keys, [4, 9, 1 << 40]);
//! ```
//!
//! # Trade-offs
//!
//! * Reads scale with the readers; writers share one lock. This is the
//!   XArray's choice (one `xa_lock` per array), right for read-mostly maps
//!   (page caches, ID maps, routing tables); a write-heavy map wants per-node
//!   locks (an ART with optimistic lock coupling, such as `congee`).
//! * Small values (up to 32 bytes) live inline in the bottom nodes, two
//!   cells per slot: a lookup reads the value next to its slot, and a range
//!   scan reads values side by side, as from an array. A replaced value
//!   stays in its cell until a grace period has passed and its handle is
//!   dropped, so a reader's `&V` stays valid and unchanged, without copying
//!   nodes or values; the replacement goes into the slot's other cell, or
//!   into an entry of its own when both are held (two replacements of one
//!   key within a grace period). The price: a bottom node is 576 bytes plus
//!   a line of bitmaps, two cells per slot and three words of bookkeeping,
//!   padded to whole lines (1 728 bytes for `u64`s), and it is never collapsed
//!   while it holds an inline entry (one cannot move while readers may hold
//!   it), so a tree of `n` keys has fewer than `2n` nodes, not `n`.
//! * Other entries (larger values, keys alone in their block of 64, the
//!   first key of a bottom node) are allocations of their own (key, marks,
//!   value). The first key of a bottom node is the one already there when
//!   a second key of its block split the slot; its value cannot move while
//!   readers may see it, so a scan of keys inserted in ascending order
//!   would wait for one such leaf per 64 keys. `collect`, and an `extend`
//!   of at least half the tree's entries, then move them into their cells
//!   (`&mut self` proves that no reader holds a reference), except where
//!   both cells of the slot still hold values replaced within a grace
//!   period.
//! * Inner nodes have a fixed 64 slots (576 bytes with the header). Dense
//!   key sets fill them; sparse ones leave slots empty but, thanks to path
//!   compression, never build chains of one-child nodes. Small nodes, as
//!   an ART's `Node4`/`Node16`, would halve the nodes of 1M random keys
//!   (97.8 to 50.5 MiB) but take at most 8% off a random-key lookup, 20%
//!   if they also held their entries inline: unsynchronised toy trees in
//!   `benches/examples/radix_floor.rs`, on the development VM. A try of
//!   five-child nodes in this tree ran the runner's radix group 5-20%
//!   slower (`benches/MEASUREMENTS.md`), so it has one node kind.
//! * A large tree spreads its nodes over many pages, so its lookups pay
//!   for address translation more than a B-tree's: on the development VM,
//!   glibc's malloc on transparent huge pages
//!   (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) made `get` on 1M keys
//!   25–36% faster (dense 50 → 32 ns, random 213 → 160 ns), against 16–21%
//!   for congee and `RwLock<BTreeMap>`. The tree allocates through the
//!   global allocator, so an allocator on huge pages is the way to it.
//!
//! # How it works
//!
//! **Nodes and entries.** A node indexes six bits of the key at its `shift`
//! (0, 6, ..., 60), holds 64 slots, a bitmap of present slots, and three
//! mark-summary bitmaps. A slot is empty, points to a node, or points to an
//! entry (a leaf: `key`, `marks`, `value`; tagged with the pointer's low
//! bit). An entry can sit in any slot, at any level.
//!
//! **Bottom nodes** (shift 0, values of at most 32 bytes) add two value
//! cells per slot. A slot of a bottom node may hold an *inline* word
//! instead of a pointer: the entry's key without its last six bits, and
//! which cell holds the value (an inline entry's marks are its node's mark
//! bits). A lookup that reaches a bottom node compares the key with the
//! word, so it reads neither the node's header nor a leaf, and asks for the
//! value's cache line while it loads the word. Each bottom node also keeps
//! a bitmap of its inline slots and one of their cells: a scan reads both
//! once per node, then reads the cells alone, in order. A cell is written
//! only while free; a removed or replaced value stays in its cell, pinning
//! the node, until its handle drops it after a grace period (the node is
//! freed by the last of its pins: the tree's, and one per held cell).
//!
//! **Path compression** (per node `shift` and `prefix`, as in an ART's
//! "pessimistic" prefixes and the XArray's per-node `shift`). A node exists
//! only where two keys differ: its shift is the six-bit digit of their
//! highest differing bit, and its prefix holds the key bits above it. The
//! root is just a slot, so a one-entry tree has no node at all, and the
//! height follows the keys: it grows when a key differs from the root's
//! prefix above the root's digit (a new root is put above the old one) and
//! shrinks when the root is left with one child (the child becomes the root).
//! Why: 64-bit keys would need 11 levels without it. 1M random keys would
//! then put each key at the end of a chain of about seven one-child nodes,
//! 4 KiB of nodes per key; with compression, a tree of `n` keys has fewer
//! than `n` nodes (1M random keys: 178 160 nodes, height at most 6, most
//! paths 4 or 5 nodes; 1M dense keys: 16 645 nodes, height 4). Lookups compare no
//! prefix on the way down ("optimistic" compression): they index by the
//! node's shift and compare the key of the entry they reach, so a lookup is
//! one load per level and one key compare. Ordered searches do use the
//! prefixes, to skip nodes wholly outside their range.
//!
//! **Updates in place, never copies.** The writer changes the tree with
//! single `Release` stores, and every intermediate state is a well-formed
//! tree:
//! * insert into an empty slot: store the new entry, then set the slot's
//!   present bit;
//! * insert where an entry or a node of another prefix sits: build a node
//!   holding the old occupant and the new entry, then store it (a *split*;
//!   at the root, the height grows);
//! * replace: store a new entry over the old one (marks carry over); in a
//!   bottom node, into the slot's free cell, or a leaf if none is free;
//! * remove: clear the slot and its bit; if the node is left with one child,
//!   store that child into the node's parent slot (a *collapse*; at the root,
//!   the height shrinks). The node is retired with its slots untouched, so
//!   a reader standing on it still reaches the child. A bottom node left
//!   with one inline entry stays (as does one that a replacement into a
//!   leaf left with one child: replacements never collapse); left with
//!   none, it is unlinked from its parent (which may then collapse).
//!
//! A node's `shift` and `prefix` never change, and nothing reachable from a
//! node a reader can stand on is freed before that reader's critical section
//! ends (unlink, then retire through `rcu-core`: the grace period waits for
//! every reader that might have loaded the pointer). So a reader sees
//! either the old or the new state of each slot, and ordered scans, which
//! keep the smallest key they may still yield and descend only into slots
//! whose key range lies ahead, yield strictly ascending keys with every key
//! present for the whole scan exactly once.
//!
//! **Ordered searches** walk a cursor (a stack of `(node, slots left)`, at
//! most 11 deep) through the nodes' bitmaps with `trailing_zeros` (or
//! `leading_zeros` backwards), so empty slots cost nothing. Entering a node,
//! the cursor asks the cache for what it will read next (the leaves of the
//! next slots; a bottom node's bitmaps and the cells in range), and
//! internal iteration (`sum`, `for_each`, `fold`) reads a bottom node's
//! inline run in a tight loop. Marked searches
//! use a mark's summary bitmap instead of the present bitmap: a node's mark
//! bit `i` says that slot `i` holds an entry or a subtree with an entry that
//! carries the mark. Marks cost lookups nothing: a lookup reads a node's
//! shift and one slot, never the bitmaps.
//!
//! **Memory orderings.** Publication is `Release` (slot stores) paired with
//! `Acquire` (slot loads). Bitmaps are hints, re-checked against the slot
//! (or the entry's marks) they point to; a bit is set after what it
//! describes, both `Release`, so a reader that sees the bit (`Acquire`) sees
//! the slot. See the `raw` module.
//!
//! **Reclamation.** Removed and replaced values come back as [`Removed`]
//! handles (dropping one retires the value; `into_inner` waits for a grace
//! period and returns it). Nodes unlinked by a collapse are retired with
//! `RcuDomain::defer_free` after the writer lock is released; `retain` and
//! `clear` retire everything they unlinked in one callback.
//!
//! # Costs
//!
//! * `get`: one `Acquire` load per level (height = number of six-bit digits
//!   in which the keys differ, at most 11; 4 for 1M dense keys, up to 6 for
//!   1M random keys), plus the entry's key (a leaf); in a bottom node, its
//!   summary line instead of the slot's, and the value's cell, asked for
//!   together. A node word carries the node's shift in its low bits, so a
//!   lookup touches one cache line per node above the bottom.
//! * Ordered step: amortised one bitmap scan and one load.
//! * `insert`: no allocation for an inline value; otherwise one (the
//!   entry), plus one node on a split. `remove`: no allocation; a collapse
//!   retires one node (two when a bottom node empties).
//! * Memory, measured with a counting allocator (`cargo run --release -p
//!   rcu-bench --example radix_memory`; bytes per key, 2^20 `u64 -> u64`
//!   entries, glibc chunk sizes included):
//!
//!   | keys   | `RcuRadixTree` | `BTreeMap` | congee |
//!   |--------|---------------:|-----------:|-------:|
//!   | dense  | 27.4           | 19.6       | 12.4   |
//!   | random | 132.6          | 19.6       | 118.5  |
//!
//!   Dense keys: full bottom nodes, 576 bytes plus a line of bitmaps plus two
//!   8-byte cells per slot and bookkeeping, 1 728 bytes (27 bytes a key; 41.4 when every entry was a
//!   24-byte allocation of its own). Random keys: no two share a bottom
//!   node, so every entry is a leaf; the nodes at the fringe are mostly
//!   empty (a fixed
//!   64 slots, against an ART's 4/16/48/256-slot nodes); adaptive node sizes
//!   would bring this down, at the price of copying a node when it grows.

//! # How to use
//!
//! Use the process-wide domain ([`RcuRadixTree::new`], read under
//! [`rcu_core::read_lock`]) or bind the tree to another with
//! [`RcuRadixTree::new_in`]. A guard of another domain makes reads panic.
//! Writes may be made while the same thread holds a guard.
//!
//! # References
//!
//! * Matthew Wilcox, the Linux XArray (`lib/xarray.c`,
//!   `Documentation/core-api/xarray.rst`): 64-slot nodes, per-node shift,
//!   three marks with per-node summaries, RCU-protected lookups, one lock.
//! * Leis, Kemper, Neumann, "The Adaptive Radix Tree: ARTful Indexing for
//!   Main-Memory Databases", ICDE 2013: path compression and lazy expansion.
//! * McKenney and Slingwine, "Read-Copy Update: Using Execution History to
//!   Solve Concurrency Problems", PDCS 1998.

mod raw;
mod tree;

pub use raw::Removed;
pub use tree::{Iter, Mark, RcuRadixTree, TreeStats};
