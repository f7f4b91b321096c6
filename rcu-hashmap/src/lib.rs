//! `RcuHashMap`: a concurrent hash map for read-mostly workloads, built on
//! userspace RCU ([`rcu_core`]).
//!
//! # Summary
//! Lookups take no lock, write no shared memory and never wait: a guard
//! ([`rcu_core::read_lock`], about a nanosecond), one hash, one load of the
//! table, a walk of one bucket's chain comparing stored hashes before keys.
//! Writers lock one bucket (a bit in the bucket word), so writers to
//! different buckets run in parallel, and never wait for a grace period:
//! what they unlink is retired through [`rcu_core`] after the lock is
//! released. The table grows and shrinks by itself, bucket by bucket, while
//! readers and writers go on.
//!
//! ```
//! use rcu_hashmap::RcuHashMap;
//!
//! let map = RcuHashMap::new();
//! map.insert("config", 1);
//! let guard = rcu_core::read_lock();
//! let v = map.get("config", &guard).unwrap();
//! map.insert("config", 2);         // replaces; `v` still reads 1
//! assert_eq!(*v, 1);
//! assert_eq!(map.get("config", &guard), Some(&2));
//! ```
//!
//! # Trade-offs
//! - Reads are as cheap as a pointer chase can be; a lookup that finds its
//!   key out of cache costs two dependent loads (bucket word, node; the
//!   bucket's filter byte comes first, from a small array that stays in
//!   cache, and the bucket load is issued on the predicted branch), where
//!   `std::collections::HashMap` costs one and a probe of its small control
//!   array. So `get` is close to `std`'s when the table is in cache and
//!   slower when it is not (numbers below). A lookup of an absent key
//!   mostly stops at the bucket's one-byte filter and touches no node.
//! - Every entry is its own allocation (32 bytes of node for `u64 -> u64`)
//!   plus 18 bytes of bucket array and filters at the usual load: 50 bytes
//!   per entry at 1 M entries, against 52 for papaya and 34 for dashmap and
//!   `std` (`cargo run --release -p rcu-bench --example map_memory`).
//! - Replacing a value allocates a new node (copy-update): the old one stays
//!   readable for readers that hold it. `update` needs `K: Clone`.
//! - `K` and `V` are dropped after a grace period on the domain's reclaim
//!   thread, or on the writer that retired them, at a later write (rcu-core's
//!   `Config::offload_callbacks`), hence `Send + 'static` for writes. (Under
//!   a domain's memory limit, a writer retiring an entry while the domain is
//!   over it may help run other writers' callbacks too:
//!   `Config::memory_limit`.)
//! - References from reads live as long as the guard *and* the borrow of
//!   the map, so dropping a map frees it at once (no reader can hold a
//!   reference into it).
//!
//! # How it works
//! The design is Linux's `rhashtable` (per-bucket bit locks; an old and a
//! new table during a rehash, lookups falling back from the old to the new)
//! with QEMU `qht`'s idea of keeping the full hash next to the entry so
//! that most mismatches are rejected without touching the key.
//!
//! - **Buckets.** A table is a power-of-two array of words, each the address
//!   of its chain's first node, with a `LOCKED` and a `MOVED` tag bit.
//!   Bucket `i` holds the hashes whose top bits are `i`, so every table,
//!   whatever its size, cuts the hash space into ordered ranges.
//! - **Filters.** Beside the words, a byte per bucket is a Bloom filter of
//!   its chain (bit `hash & 7` of each node), written under the bucket's
//!   lock: set before a node is linked, recomputed when the chain's tail is
//!   unlinked (other removals leave a stale bit; a resize rebuilds all).
//!   A lookup whose bit is clear stops there. Without it, ReadHeavy's
//!   quarter of misses walked chains from memory and mispredicted the
//!   branch that ends the walk; with it, misses on 98 K keys went from 21
//!   to 7 ns and ReadHeavy at one thread from 0.81-0.96x papaya to
//!   0.91-1.05x, for 3-4 ns more on lookups that all hit. Writes look at
//!   it too, under the bucket's lock (where it has the bit of every linked
//!   node): an insert of a new key or a removal of an absent one whose bit
//!   is clear skips the walk. (They still lock first: a removal that
//!   missed without the lock would be a lookup, and two threads each
//!   inserting a key and then removing the other's could both miss, which
//!   the locks rule out.) A scratch loop of the runner's Exchange mix
//!   (98 K keys, one thread, foldhash, the builds before and after in
//!   turn, three runs each) went from 82-85 to 70-75 ns per operation
//!   (papaya 64-71 ns); in the runner (`--filter papaya --duration 1`,
//!   two runs each) Exchange on one thread from 0.72-0.81x papaya to
//!   0.77-0.87x and RapidGrow from 0.80-0.91x to 0.90-1.10x.
//! - **Nodes.** `{hash, next, key, value}` in one allocation, published by
//!   Release stores and read with Acquire loads. Writers insert at the head,
//!   replace a node by linking a new one in its place, and unlink; the old
//!   node is retired with [`rcu_core::RcuDomain::defer_free`] (or handed to
//!   the caller as a [`Removed`] handle that retires it when dropped).
//! - **Resize.** When the load factor leaves [1/8, 3/4], the writer that
//!   notices publishes a future table (the next power of two that makes the
//!   load at most 1/2) in the current table's `future` field. Threads claim
//!   chunks of 64 old buckets; moving one old bucket, under its lock, pushes
//!   its nodes one at a time, **tail first**, onto the heads of their new
//!   buckets and only then cuts each off the old chain, then marks the old
//!   bucket `MOVED`. The thread that finishes the last chunk makes the
//!   future table current and retires the old one through `defer_free`. The
//!   thread that started the resize runs it to the end; every other writer
//!   that meets it helps with one chunk. No step waits for a grace period:
//!   a reader that misses in the old table searches the future one, and
//!   tail-first moves guarantee that whatever it skipped is there (the
//!   argument is in the `raw` module's docs; a loom model checks it). The
//!   only grace period is the old table's reclamation, through a callback.
//! - **Writers during a resize.** A key's home is its old bucket until that
//!   bucket is `MOVED`, then its new bucket; writers lock the home, so two
//!   writers of one key always meet at one lock and a key never has two
//!   entries.
//! - **Iteration** walks the hash space range by range (a bucket of the
//!   current table at a time), collecting that range's nodes from the
//!   current table and, during a resize, from the future table, keeping one
//!   node per key. So it is weakly consistent like Java's
//!   `ConcurrentHashMap`: an entry present throughout is yielded exactly
//!   once even across resizes, nothing is yielded twice, and it never blocks
//!   writers.
//! - **Length** is a sum of 8 striped counters (writers on different
//!   threads do not share a counter line), clamped at zero while writers
//!   run, exact once they stop.
//!
//! # Why this design (measurements)
//! Chains of nodes with inline hashes keep the read path at two dependent
//! loads and a handful of instructions, and make a lock-free resize simple
//! enough to model-check; open addressing with in-place entries (`std`,
//! papaya's tag bytes) saves a load but needs values to be swapped through
//! a pointer anyway for RCU (papaya's entries are pointers too). Measured
//! on the shared 2-CPU development machine (AMD EPYC, under heavy load from
//! other builds; `cargo run --release -p rcu-bench --example map_get`,
//! fastest of 200 interleaved samples of 65 536 random hits, one
//! `read_lock` per `get`):
//!
//! | table | hasher | `RcuHashMap::get` | `std` `HashMap::get` | ratio | papaya `get` |
//! |---|---|---|---|---|---|
//! | 4 K keys (in cache) | foldhash | 9.8 ns | 7.7 ns | 1.27x | 19.3 ns |
//! | 4 K keys (in cache) | std `RandomState` | 23.5 ns | 22.2 ns | 1.06x | 40.5 ns |
//! | 64 K keys | foldhash | 82 ns | 32 ns | 2.5x | 175 ns |
//!
//! At 64 K keys (4 MiB of nodes and buckets) the machine's shared cache was
//! thrashed by other jobs, and the two dependent misses show: the 1.5x
//! target against `std` is met for cache-resident tables and not met
//! there.
//!
//! Nor would another layout of out-of-line entries meet it there.
//! `cargo run --release -p rcu-bench --example map_floor` times, against
//! `std`'s `HashMap` on the same 64 K keys (foldhash), toy tables with no
//! synchronisation at all, each timed after an untimed pass over its keys.
//! Ten runs on 2026-12-05 (AMD VM) gave `std`'s time over theirs (about
//! 6.9 ns) as:
//!
//! | toy table | `std`/toy |
//! |---|---|
//! | chains of boxed nodes | 0.48-0.53x |
//! | the same with the filter byte | 0.50-0.52x |
//! | `qht`'s cache-line buckets of four (32-bit hash, pointer) pairs | 0.58-0.63x |
//! | two cells per slot in the table, behind a tag word, linear probing | 0.48-0.50x |
//! | two cells per slot in `std`'s layout (control bytes, 32-byte entries), SSE2 probing | 0.66-0.70x |
//! | one cell per slot, the same way (`std`'s layout) | 0.78-0.83x |
//! | `RcuHashMap` | 0.49-0.51x |
//!
//! Since a reference from `get` outlives a replacement, an entry cannot be
//! overwritten in place: it lives out of line (as here and in papaya), or
//! the table keeps a spare cell per slot for replacements (as
//! `rcu-radix`'s bottom nodes do). Every out-of-line layout misses the 1.5x
//! bar (0.67x), and `RcuHashMap` is at the floor of its design (within
//! noise of the bare chains). Two cells per slot, probed as `std` probes,
//! reach the bar with no synchronisation and no room to spare. One cell
//! per slot leaves room: a table that keeps each entry in its slot until
//! the key is first replaced, and sends replacements out of line (the slot
//! freed a grace period later), would read never-replaced entries at that
//! speed. That is a different map, not a change to this one: a new core,
//! resize included, and its own loom model. And a resize copies entries
//! that live in the table, which a reference from `get` must not see: a
//! bitwise copy of a value with interior mutability (a `Mutex`, an atomic)
//! would let writes through an old reference miss the new copy
//! (`rcu-radix` never moves a value that readers may see, for that
//! reason). A `Copy` type holds no `UnsafeCell`, so such a table would
//! keep `Copy` keys and values in its slots and box the rest.
//!
//! Writes cost more than papaya's: a replacing `insert` took 80–82 ns
//! against papaya's 58 ns (foldhash, 4 K keys, fastest of 20 samples, two
//! runs: `MAP_GET_KEYS=4096 cargo run --release -p rcu-bench --example
//! map_get`), and 64–68 ns without retiring the replaced node; at 64 K
//! keys 140–161 ns against 118–144 ns. Most of the gap is the node
//! allocation of copy-update and the retirement. Retired nodes are freed
//! on the writer's own thread as it goes on writing (rcu-core's
//! `Config::offload_callbacks`): freed on the reclaim thread, as they were
//! before, a replacing insert at 64 K keys cost 272–318 ns, glibc's arena
//! lock passing between the writer's allocations and the reclaim thread's
//! frees (187–203 ns at 4 K keys). Nor is a node's size what a lookup
//! pays for at the runner's ReadHeavy size (96 K entries): with `()`
//! values a node is 24 bytes, in glibc's 32-byte chunks as papaya's
//! entries are, instead of 32 in 48-byte ones, and lookups alone ran
//! 1.25–1.46x faster than papaya's, as with `u64` values (1.25–1.39x;
//! `cargo run --release -p rcu-bench --example map_mix -- unit`, ten runs
//! of each in turn, 2026-12-06). The head-to-head workloads against
//! papaya, dashmap, scc and `RwLock<HashMap>` are the `map` group of
//! `rcu-bench`.
//!
//! # How to use
//! - Read with a guard: [`RcuHashMap::get`], [`get_key_value`],
//!   [`contains_key`], [`iter`], [`keys`], [`values`]; or pin once for a
//!   run of reads: [`RcuHashMap::pin`] ([`MapRef`]), or
//!   [`RcuHashMap::pin_owned`] for a `Send` handle in async code; or take no
//!   guard at all: [`RcuHashMap::get_cloned`], [`RcuHashMap::with`].
//! - Write from any thread: [`insert`], [`remove`], [`update`] (copy-update,
//!   atomic per key), [`get_or_insert_with`], [`retain`], [`clear`].
//!   Closures passed to them run without any lock held, so they may read and
//!   write the map. (A key's `Eq` runs under its bucket's lock: it must not
//!   write to the map. A write from it to its own bucket panics (checked
//!   up to four nested writes deep); one to
//!   another bucket may deadlock with a writer or a resize that holds that
//!   bucket and waits for this one.)
//! - Load many entries at once with `collect` or `extend`: they size the
//!   table by the iterator's hint and insert in batches whose cache misses
//!   overlap: for 1 M keys 4.1-4.2x faster than `insert`s that grow the
//!   table, 2.6-3.3x faster than `insert`s after a `reserve`, and about as
//!   fast as `std`'s `HashMap` (`cargo run --release -p rcu-bench --example
//!   map_fill`, five runs).
//! - Size it by hand when you know better than its load-factor checks:
//!   [`RcuHashMap::with_capacity`], [`RcuHashMap::reserve`] (1.3-1.6x
//!   faster `insert`s of 1 M keys than growing by resizes), and
//!   [`RcuHashMap::shrink_to_fit`] after removing most of them. The table
//!   grows and shrinks by itself otherwise.
//! - Bind a map to another [`rcu_core::RcuDomain`] with
//!   [`RcuHashMap::new_in`] / [`RcuHashMap::with_capacity_and_hasher_in`];
//!   read it with that domain's guards (a guard of another domain panics).
//! - Features: `serde` (`Serialize`, `Deserialize`), `rayon` (parallel
//!   iteration and `ParallelExtend`).
//!
//! [`get_key_value`]: RcuHashMap::get_key_value
//! [`contains_key`]: RcuHashMap::contains_key
//! [`iter`]: RcuHashMap::iter
//! [`keys`]: RcuHashMap::keys
//! [`values`]: RcuHashMap::values
//! [`insert`]: RcuHashMap::insert
//! [`remove`]: RcuHashMap::remove
//! [`update`]: RcuHashMap::update
//! [`get_or_insert_with`]: RcuHashMap::get_or_insert_with
//! [`retain`]: RcuHashMap::retain
//! [`clear`]: RcuHashMap::clear
//!
//! # References
//! - Thomas Graf, Herbert Xu: Linux `lib/rhashtable.c` (resizable,
//!   scalable, concurrent hash tables; per-bucket bit locks, `future_tbl`).
//! - Emilio G. Cota: QEMU `util/qht.c` (inline hashes, lock-free lookups).
//! - Josh Triplett, Paul E. McKenney, Jonathan Walpole: "Resizable,
//!   Scalable, Concurrent Hash Tables via Relativistic Programming", USENIX
//!   ATC 2011 (the relativistic alternative: unzip/zip with a grace period
//!   per step, which this design avoids by moving nodes tail first).

#![cfg_attr(rcu_loom, allow(dead_code))]

mod raw;
mod sync;

#[cfg(not(rcu_loom))]
mod features;
#[cfg(not(rcu_loom))]
mod map;

#[cfg(not(rcu_loom))]
pub use map::{IntoIter, Iter, Keys, LocalGuard, MapRef, RcuHashMap, Removed, Values};

/// The fewest buckets a table has (a table never shrinks below this, nor
/// below the capacity the map was made with).
pub const MIN_BUCKETS: usize = raw::MIN_BUCKETS;
