//! The safe public API: [`RcuHashMap`], its pinned handle [`MapRef`], the
//! [`Removed`] handle and the iterators. No `unsafe` here except the calls
//! into the raw core, each made under a guard of the map's domain.

use crate::raw::{BulkLoad, Insert, Node, RawIter, RawMap, Retired};
use rcu_core::{Guard, LocalReadGuard, OwnedReadGuard, RcuDomain, ReadGuard};
use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::iter::FusedIterator;
use std::ops::Deref;
use std::ptr;

thread_local! {
    /// The innermost [`RcuHashMap::update`] closure this thread is running
    /// (null when none); each run links to the one it runs inside.
    static UPDATING: Cell<*const UpdateRun> = const { Cell::new(ptr::null()) };
}

/// One run of an `update` closure, on the `update`'s stack. A closure that
/// inserts or updates the key it is updating makes `update` run it again
/// (the entry changed); one that does so in two runs in a row is taken for
/// one that always does (which would run forever, each run replacing the
/// entry the next must replace), so the second such write panics. The
/// records form a chain through the thread-local in stack order: `update`
/// calls nest on the stack (a closure that switched to another stack inside
/// it, as a stackful coroutine could, would break that order).
struct UpdateRun {
    map: *const (),
    node: *const (),
    /// The previous run of this `update` wrote its key.
    wrote_before: bool,
    /// This run wrote its key.
    wrote: Cell<bool>,
    outer: *const UpdateRun,
}

/// Uninstalls an [`UpdateRun`] when its closure returns or unwinds.
struct Running<'r>(&'r UpdateRun);

impl<'r> Running<'r> {
    fn install(run: &'r UpdateRun) -> Self {
        // During thread-local teardown nothing is tracked.
        let _ = UPDATING.try_with(|u| u.set(run));
        Running(run)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // Runs nest in stack order (see `UpdateRun`).
        debug_assert!(
            UPDATING
                .try_with(Cell::get)
                .map_or(true, |r| r == ptr::from_ref(self.0)),
            "rcu-hashmap: update closures ended out of stack order"
        );
        let _ = UPDATING.try_with(|u| u.set(self.0.outer));
    }
}

/// A concurrent hash map for read-mostly workloads: lookups take no lock
/// and write nothing shared; writers lock one bucket. See the
/// [crate docs](crate) for the design.
///
/// Reads take a [`Guard`] of the map's domain ([`rcu_core::read_lock`] for
/// the default, process-wide one) and hand out references that live as long
/// as both the guard and the borrow of the map. Writes need no guard and
/// never wait for a grace period: what they take out comes back as a
/// [`Removed`] handle, or is dropped a grace period later.
///
/// ```
/// use rcu_hashmap::RcuHashMap;
///
/// let map = RcuHashMap::new();
/// map.insert("a", 1);
/// map.insert("b", 2);
/// let guard = rcu_core::read_lock();
/// assert_eq!(map.get("a", &guard), Some(&1));
/// let old = map.insert("a", 10).unwrap(); // readers may still see 1
/// assert_eq!(*old, 1);
/// assert_eq!(map.get("a", &guard), Some(&10));
/// assert_eq!(map.len(), 2);
/// ```
pub struct RcuHashMap<K, V, S = RandomState> {
    raw: RawMap<K, V>,
    hasher: S,
}

/// A guard that [`RcuHashMap::pin`] takes for the map's domain: a
/// [`ReadGuard`] for the process-wide domain, a [`LocalReadGuard`]
/// otherwise (tied to the thread, so that a wait for a grace period under
/// it panics instead of waiting forever). Neither `Send` nor `Sync`.
pub struct LocalGuard {
    inner: LocalInner,
}

// The guards are held for their drop only (the critical section), never
// read.
#[allow(dead_code)]
enum LocalInner {
    Global(ReadGuard),
    Local(LocalReadGuard),
}

impl LocalGuard {
    // Inlined: on the process-wide domain this is `read_lock`'s few
    // instructions, which a call and the variant test would double
    // (callgrind, the Exchange mix: about 40 instructions per write before).
    #[inline]
    fn new(domain: &RcuDomain) -> Self {
        let inner = if domain.is_global() {
            LocalInner::Global(rcu_core::read_lock())
        } else {
            LocalInner::Local(domain.read_lock_local())
        };
        LocalGuard { inner }
    }
}

impl fmt::Debug for LocalGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            LocalInner::Global(_) => "global",
            LocalInner::Local(..) => "local",
        };
        f.debug_struct("LocalGuard").field("kind", &kind).finish()
    }
}

impl<K, V> RcuHashMap<K, V, RandomState> {
    /// An empty map in the process-wide domain. Allocates a table of
    /// [`MIN_BUCKETS`](crate::MIN_BUCKETS) buckets.
    pub fn new() -> Self {
        Self::with_capacity_and_hasher(0, RandomState::new())
    }

    /// An empty map with room for `capacity` entries before it grows; it
    /// never shrinks below that room.
    ///
    /// # Panics
    /// If the table for `capacity` would not fit in memory's address space,
    /// or cannot be allocated (`std`'s `with_capacity` aborts then; a table
    /// that grows later aborts too, as `std`'s does).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, RandomState::new())
    }

    /// An empty map bound to `domain`: read it under that domain's guards.
    ///
    /// ```
    /// let domain = rcu_core::RcuDomain::new();
    /// let map = rcu_hashmap::RcuHashMap::new_in(&domain);
    /// map.insert(1, "one");
    /// let reader = domain.register();
    /// assert_eq!(map.get(&1, &reader.read_lock()), Some(&"one"));
    /// ```
    pub fn new_in(domain: &RcuDomain) -> Self {
        Self::with_capacity_and_hasher_in(0, RandomState::new(), domain)
    }
}

impl<K, V, S> RcuHashMap<K, V, S> {
    /// An empty map that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// An empty map with room for `capacity` entries, hashing with `hasher`.
    ///
    /// # Panics
    /// As [`with_capacity`](RcuHashMap::with_capacity).
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self::with_capacity_and_hasher_in(capacity, hasher, &RcuDomain::global())
    }

    /// An empty map bound to `domain`, hashing with `hasher`.
    pub fn with_hasher_in(hasher: S, domain: &RcuDomain) -> Self {
        Self::with_capacity_and_hasher_in(0, hasher, domain)
    }

    /// The general constructor: room for `capacity` entries, `hasher`,
    /// bound to `domain`.
    ///
    /// # Panics
    /// As [`with_capacity`](RcuHashMap::with_capacity).
    pub fn with_capacity_and_hasher_in(capacity: usize, hasher: S, domain: &RcuDomain) -> Self {
        RcuHashMap {
            raw: RawMap::new_in(capacity, capacity, domain),
            hasher,
        }
    }

    /// The number of entries. Exact when no writer runs; while writers run,
    /// a value the count had recently. Cost: a sum of 8 striped counters.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the map has no entries (as [`len`](Self::len) is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current table's growth threshold: 3/4 of its buckets. The table
    /// grows once a write that checks the load factor finds more entries
    /// than this. Unlike [`HashMap::capacity`](std::collections::HashMap::capacity)
    /// it is not a bound on [`len`](Self::len): to keep writes cheap, a write
    /// (insert, remove or update, hit or miss) checks only if it is its
    /// thread's 16th since that thread's last check, or an insertion that
    /// walked a chain of two or more entries (an insertion whose filter bit
    /// is clear in its bucket skips the walk). So `len` may pass `capacity` by the
    /// writes made between checks: with one thread writing only to this map,
    /// `len <= capacity + 15` after every write made outside a key's `Eq`.
    /// A write made from inside one (to another bucket, or another map)
    /// starts no resize: the check it would make falls to the map's next
    /// write from outside an `Eq` (by any thread), so a map written only
    /// from inside other maps' `Eq`s grows at its first write from outside
    /// one. Cost: a guard and one load.
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::with_capacity(100);
    /// assert!(map.capacity() >= 100);
    /// for i in 0..1000 {
    ///     map.insert(i, i);
    ///     assert!(map.len() <= map.capacity() + 15);
    /// }
    /// ```
    pub fn capacity(&self) -> usize {
        let _guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `_guard` is a critical section of the map's domain.
        let n = unsafe { self.raw.buckets() };
        n - n / 4
    }

    /// The map's hasher.
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// The domain the map is bound to.
    pub fn domain(&self) -> &RcuDomain {
        self.raw.domain()
    }

    /// A handle that holds a guard of the map's domain, for a run of reads
    /// (like papaya's `pin`). Not `Send`: see [`pin_owned`](Self::pin_owned).
    ///
    /// ```
    /// let map: rcu_hashmap::RcuHashMap<u32, u32> = (0..10).map(|i| (i, i * i)).collect();
    /// let m = map.pin();
    /// assert_eq!(m.get(&3), Some(&9));
    /// assert_eq!(m.iter().count(), 10);
    /// ```
    pub fn pin(&self) -> MapRef<'_, K, V, S, LocalGuard> {
        MapRef {
            map: self,
            guard: LocalGuard::new(self.raw.domain()),
        }
    }

    /// A handle that holds an [`OwnedReadGuard`]: `Send` (when the map is
    /// `Sync`), so async code can keep it across `.await`. Taking one costs
    /// tens of nanoseconds. On a domain with a memory limit, a thread the
    /// handle has moved to, writing while it holds the handle, may wait up
    /// to a millisecond per write while the domain is over its limit (see
    /// [`OwnedReadGuard`]'s notes on the memory limit).
    pub fn pin_owned(&self) -> MapRef<'_, K, V, S, OwnedReadGuard> {
        MapRef {
            map: self,
            guard: self.raw.domain().read_lock_owned(),
        }
    }

    #[inline]
    #[track_caller]
    fn check(&self, guard: &impl Guard) {
        self.raw.domain().assert_guard(guard);
    }
}

impl<K, V, S: Default> Default for RcuHashMap<K, V, S> {
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

/// Reads.
impl<K: Hash + Eq, V, S: BuildHasher> RcuHashMap<K, V, S> {
    /// Notes a write of the key that hashes to `hash` and satisfies
    /// `is_key` in every [`update`](Self::update) closure of this map that
    /// this thread is running for that key, and panics if that closure's
    /// previous run wrote it too (see [`UpdateRun`]).
    #[inline]
    #[track_caller]
    fn check_not_updating(&self, hash: u64, mut is_key: impl FnMut(&K) -> bool) {
        let mut run = UPDATING.try_with(Cell::get).unwrap_or(ptr::null());
        while !run.is_null() {
            // SAFETY: an installed run lives on the stack of an `update`
            // below us on this thread, which uninstalls it (`Running`)
            // before it returns or unwinds past it.
            let r = unsafe { &*run };
            if r.map == self.identity() {
                // SAFETY: `r.node` is the entry that `update` of this map
                // (the same `K` and `V`) runs its closure for; the `update`
                // holds a critical section of the map's domain meanwhile.
                let n = unsafe { &*r.node.cast::<Node<K, V>>() };
                if n.hash == hash && is_key(&n.key) {
                    if r.wrote_before {
                        panic!(
                            "rcu-hashmap: an `update` closure inserted or updated the key it is \
                             updating in two runs in a row (each run replaces the entry the \
                             next must replace: the `update` would run it forever)"
                        );
                    }
                    r.wrote.set(true);
                }
            }
            run = r.outer;
        }
    }

    /// The map's address for [`UpdateRun`]: its core's, which holds
    /// nothing generic inline, so no other map (one nested in the hasher,
    /// say) can be at the same address while this one lives; the address
    /// of `self` could be shared with a map at the start of `S`.
    #[inline]
    fn identity(&self) -> *const () {
        ptr::from_ref(&self.raw).cast()
    }

    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// # Safety
    /// A critical section of the map's domain is held for `'g`.
    #[inline]
    unsafe fn find<'g, Q>(&'g self, key: &Q) -> Option<&'g Node<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        // SAFETY: the caller's promise.
        unsafe { self.raw.find(hash, |n| n.key.borrow() == key) }
    }

    /// The value of `key`. Lock-free: one hash, one table load, a walk of
    /// one bucket's chain (about 1.2 nodes at the usual load), comparing
    /// stored hashes before keys.
    ///
    /// # Panics
    /// If `guard` belongs to another domain than the map's.
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::new();
    /// map.insert(String::from("k"), 1);
    /// let guard = rcu_core::read_lock();
    /// assert_eq!(map.get("k", &guard), Some(&1));
    /// assert_eq!(map.get("x", &guard), None);
    /// ```
    #[inline]
    pub fn get<'g, Q>(&'g self, key: &Q, guard: &'g impl Guard) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check(guard);
        // SAFETY: `guard` is a critical section of the map's domain for 'g.
        unsafe { self.find(key) }.map(|n| &n.value)
    }

    /// The stored key and the value of `key`.
    ///
    /// # Panics
    /// As [`get`](Self::get).
    pub fn get_key_value<'g, Q>(&'g self, key: &Q, guard: &'g impl Guard) -> Option<(&'g K, &'g V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check(guard);
        // SAFETY: as in `get`.
        unsafe { self.find(key) }.map(|n| (&n.key, &n.value))
    }

    /// Whether `key` is present.
    ///
    /// # Panics
    /// As [`get`](Self::get).
    pub fn contains_key<Q>(&self, key: &Q, guard: &impl Guard) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.check(guard);
        // SAFETY: as in `get`.
        unsafe { self.find(key) }.is_some()
    }

    /// A clone of the value of `key`, read under a guard the call takes
    /// and releases: for callers that must not hold a guard (async code).
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.with(key, |v| v.cloned())
    }

    /// Calls `f` with the value of `key` (or `None`) under a guard the call
    /// takes and releases, and returns what `f` returns. `f` may read and
    /// write the map. It runs inside that guard's read-side critical
    /// section, so it must not wait for a grace period of the map's domain
    /// (`synchronize`, `drain`): that panics, on any domain.
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::new();
    /// map.insert(1, vec![1, 2, 3]);
    /// assert_eq!(map.with(&1, |v| v.map(Vec::len)), Some(3));
    /// ```
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let _guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `_guard` is a critical section of the map's domain that
        // outlives the reference given to `f`.
        f(unsafe { self.find(key) }.map(|n| &n.value))
    }
}

/// Iteration (needs only `K: Eq`: a resize in flight may show a key twice,
/// which the iterator filters).
impl<K: Eq, V, S> RcuHashMap<K, V, S> {
    /// An iterator over the entries, in no particular order, weakly
    /// consistent as Java's `ConcurrentHashMap`: an entry present when the
    /// iterator is created and not removed before the iterator reaches it
    /// is yielded exactly once, also across resizes; an entry inserted or
    /// removed meanwhile at most once. Never blocks writers.
    ///
    /// # Panics
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let map: rcu_hashmap::RcuHashMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    /// let guard = rcu_core::read_lock();
    /// assert_eq!(map.iter(&guard).map(|(_, v)| v).sum::<u32>(), 4950);
    /// ```
    pub fn iter<'g>(&'g self, guard: &'g impl Guard) -> Iter<'g, K, V> {
        self.check(guard);
        Iter {
            // SAFETY: `guard` is a critical section of the map's domain for 'g.
            raw: unsafe { self.raw.iter() },
        }
    }

    /// The keys, as [`iter`](Self::iter).
    pub fn keys<'g>(&'g self, guard: &'g impl Guard) -> Keys<'g, K, V> {
        Keys(self.iter(guard))
    }

    /// The values, as [`iter`](Self::iter).
    pub fn values<'g>(&'g self, guard: &'g impl Guard) -> Values<'g, K, V> {
        Values(self.iter(guard))
    }
}

/// Writes. `K` and `V` are dropped on the domain's reclaim thread, hence
/// `Send + 'static`. Writers retire what they unlink with
/// [`RcuDomain::call_rcu`] after releasing their bucket locks: over a
/// memory limit, a writer (or a thread dropping a [`Removed`]) may help run
/// the domain's ready callbacks on its own thread, so do not write while
/// holding a lock that a `K`'s or `V`'s `Drop` takes.
impl<K, V, S> RcuHashMap<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// Inserts `key -> value`. If the key was present, its old value is
    /// replaced and returned as a [`Removed`] handle (readers may still
    /// see it; dropping the handle defers its drop). Never waits for a
    /// grace period; may help a resize in flight with one chunk of buckets,
    /// or (rarely) run a whole resize, which other writers help.
    ///
    /// The key's `Hash` runs before, and its `Eq` under, the bucket lock:
    /// `Eq` must not write to this map. A write from it to that bucket
    /// panics rather than wait for the lock forever (the one case this
    /// thread can see; up to four such writes deep, as when one map's `Eq`
    /// writes to another map whose `Eq` writes again); a write to another
    /// bucket may deadlock with another thread (a writer, or a shrink's
    /// migration) that holds that bucket and waits for this one. Writes from
    /// `Eq` start or help no resize.
    ///
    /// # Panics
    /// From inside an [`update`](Self::update) closure for the same key
    /// whose previous run inserted it too (that `update` would run its
    /// closure forever); from inside a key's `Eq` of this map, when the
    /// write needs the bucket that `Eq` runs under.
    #[track_caller]
    pub fn insert(&self, key: K, value: V) -> Option<Removed<K, V>> {
        self.insert_hashed(self.hash(&key), key, value)
    }

    /// [`insert`](Self::insert) of a key whose hash is `hash`.
    #[track_caller]
    fn insert_hashed(&self, hash: u64, key: K, value: V) -> Option<Removed<K, V>> {
        self.check_not_updating(hash, |k| *k == key);
        let node = Node::new(hash, key, value);
        let _guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `_guard` is a critical section of the map's domain.
        match unsafe { self.raw.insert(node, true) } {
            Insert::Inserted(_) => None,
            Insert::Replaced(old) => Some(Removed(old)),
            Insert::Present(..) => unreachable!(),
        }
    }

    /// Removes `key`, returning its value as a [`Removed`] handle.
    pub fn remove<Q>(&self, key: &Q) -> Option<Removed<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let _guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `_guard` is a critical section of the map's domain.
        unsafe { self.raw.remove(hash, |n| n.key.borrow() == key) }.map(Removed)
    }

    /// As [`remove`](Self::remove): the handle gives the stored key too
    /// ([`Removed::key`], [`Removed::into_entry`]).
    pub fn remove_entry<Q>(&self, key: &Q) -> Option<Removed<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove(key)
    }

    /// The value of `key`, inserting `f()` first if it is absent. `f` runs
    /// without any lock held: it may read and write the map. If another
    /// thread inserts the key meanwhile, its value wins and `f`'s value is
    /// dropped.
    ///
    /// # Panics
    /// As [`get`](Self::get); and, inserting, as [`insert`](Self::insert)
    /// (from inside an [`update`](Self::update) closure for the same key
    /// whose previous run wrote it too).
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::new();
    /// let guard = rcu_core::read_lock();
    /// assert_eq!(*map.get_or_insert_with("k", || 1, &guard), 1);
    /// assert_eq!(*map.get_or_insert_with("k", || 2, &guard), 1);
    /// ```
    #[track_caller]
    pub fn get_or_insert_with<'g>(
        &'g self,
        key: K,
        f: impl FnOnce() -> V,
        guard: &'g impl Guard,
    ) -> &'g V {
        self.check(guard);
        // SAFETY: `guard` is a critical section of the map's domain for 'g.
        unsafe { self.get_or_insert_with_unchecked(key, f) }
    }

    /// # Safety
    /// A critical section of the map's domain is held for `'g`.
    #[track_caller]
    unsafe fn get_or_insert_with_unchecked(&self, key: K, f: impl FnOnce() -> V) -> &V {
        let hash = self.hash(&key);
        // SAFETY: the caller's promise.
        if let Some(n) = unsafe { self.raw.find(hash, |n| n.key == key) } {
            return &n.value;
        }
        let node = Node::new(hash, key, f());
        // SAFETY: the caller's promise.
        match unsafe { self.raw.insert(node, false) } {
            Insert::Inserted(n) => {
                // A write of the key, as `insert`'s; noted once it is one
                // (another thread may insert the key first: then this call
                // only read it).
                self.check_not_updating(hash, |k| *k == n.key);
                &n.value
            }
            Insert::Present(n, rejected) => {
                drop(rejected);
                &n.value
            }
            Insert::Replaced(_) => unreachable!(),
        }
    }

    /// Copy-update: replaces the value of `key` with `f(&old)`, atomically
    /// for that key (if another writer changed the entry between the read
    /// and the replacement, `f` runs again on the newer value). Returns the
    /// old value as a [`Removed`] handle, or `None` (and `f` is not called)
    /// if the key is absent. `f` runs without any lock held: it may read
    /// the map and write other keys, inside a read-side critical section
    /// (as [`with`](Self::with)'s closure). The new entry's key is a clone
    /// of the stored one.
    ///
    /// `f` may write the key it is updating too (`insert`, `update`,
    /// `get_or_insert_with`): `update` then runs it again on the value it
    /// wrote. A `remove` of the key from `f`, not followed by a write of it,
    /// ends the `update` with `None`.
    ///
    /// Only the writes `f` makes on this thread are told apart: a write of
    /// the key that `f` has another thread make (a scoped thread it joins, a
    /// rayon `par_extend` of the map) is one more concurrent writer's, so an
    /// `f` that has its key written that way in every run is run for as
    /// long as it does so.
    ///
    /// # Panics
    /// If `f` writes the key it is updating in two runs in a row (each run
    /// would replace the entry again, and `update` would run `f` forever).
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::new();
    /// map.insert("hits", 1);
    /// let old = map.update("hits", |v| v + 1).unwrap();
    /// assert_eq!(*old, 1);
    /// assert_eq!(map.get_cloned("hits"), Some(2));
    /// assert!(map.update("misses", |v| v + 1).is_none());
    /// ```
    #[track_caller]
    pub fn update<Q>(&self, key: &Q, mut f: impl FnMut(&V) -> V) -> Option<Removed<K, V>>
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.check_not_updating(hash, |k| k.borrow() == key);
        let _guard = LocalGuard::new(self.raw.domain());
        let mut wrote_before = false;
        loop {
            // SAFETY: `_guard` is a critical section of the map's domain,
            // held across the loop; `n` is a node of this map and the new
            // node has its hash.
            unsafe {
                let n = self.raw.find(hash, |n| n.key.borrow() == key)?;
                let run = UpdateRun {
                    map: self.identity(),
                    node: ptr::from_ref(n).cast(),
                    wrote_before,
                    wrote: Cell::new(false),
                    outer: UPDATING.try_with(Cell::get).unwrap_or(ptr::null()),
                };
                let value = {
                    let _running = Running::install(&run);
                    f(&n.value)
                };
                wrote_before = run.wrote.get();
                let new = Node::new(hash, n.key.clone(), value);
                match self.raw.replace_node(n, new) {
                    Ok(old) => return Some(Removed(old)),
                    Err(new) => drop(new),
                }
            }
        }
    }

    /// Keeps only the entries for which `f` returns `true`. `f` runs without
    /// any lock held (it may read and write the map), inside a read-side
    /// critical section (as [`with`](Self::with)'s closure); the walk is
    /// that of [`iter`](Self::iter). `f` sees each entry as it is when `f`
    /// is called: an entry replaced after the walk reached it (by an earlier
    /// call of `f`, or by another thread) is judged by its new value, and
    /// one removed meanwhile is skipped (one walk of its bucket's chain per
    /// entry, comparing addresses: the key's `Eq` runs only to find what
    /// replaced an entry no longer linked, and in the walk's de-duplication
    /// while a resize is in flight, as in [`iter`](Self::iter)). An entry
    /// replaced between `f`'s call and its removal is kept. The removed
    /// entries are retired once the walk is over (it keeps a handle of two
    /// words for each meanwhile).
    ///
    /// ```
    /// let map: rcu_hashmap::RcuHashMap<u32, u32> = (0..10).map(|i| (i, i)).collect();
    /// map.retain(|_, v| v % 2 == 0);
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn retain(&self, mut f: impl FnMut(&K, &V) -> bool) {
        // Retired after the walk's critical section ends, not inside it: on a
        // domain over its memory limit a retirement helps reclaim, and no
        // grace period can end inside the walk's own critical section (the
        // engine skips that help for a thread holding a guard, but retiring
        // after the walk keeps it out of the question: before both, each
        // removed entry waited 1 ms on a private domain). And retired in one
        // callback: one help for the lot, not one per entry (each may wait a
        // millisecond while a reader elsewhere holds grace periods up).
        let mut removed = Vec::new();
        let guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `guard` is a critical section of the map's domain, held
        // for the whole walk.
        let mut it = unsafe { self.raw.iter() };
        while let Some(n) = it.next_node() {
            // The walk collects a range's entries before `f` sees them: one
            // replaced or removed since (by an earlier call of `f`, or by
            // another thread) is judged by its current value, or skipped.
            // Still linked (found by address, with no `Eq`: a key unequal to
            // itself goes too, and a `clear` that no other thread races
            // runs `Eq` only to de-duplicate across a resize in flight), it
            // is current.
            // SAFETY: as above.
            let linked = unsafe { self.raw.find(n.hash, |m| ptr::eq(m, n)) }.is_some();
            let n = if linked {
                n
            } else {
                // SAFETY: as above.
                match unsafe { self.raw.find(n.hash, |m| m.key == n.key) } {
                    Some(now) => now,
                    None => continue,
                }
            };
            if !f(&n.key, &n.value) {
                // SAFETY: as above.
                removed.extend(unsafe { self.raw.remove(n.hash, |m| ptr::eq(m, n)) });
            }
        }
        drop(guard);
        Retired::retire_all(removed, self.raw.domain());
    }

    /// Removes every entry present when the walk reaches it (entries
    /// inserted meanwhile may stay). Removed values drop after a grace
    /// period.
    pub fn clear(&self) {
        self.retain(|_, _| false);
    }

    /// Makes room for at least `additional` entries more than
    /// [`len`](Self::len), so that inserting them starts no resize, and
    /// keeps it: the table no longer shrinks below that room (as it does not
    /// below [`with_capacity`](Self::with_capacity)'s) until
    /// [`shrink_to_fit`](Self::shrink_to_fit). Afterwards
    /// [`capacity`](Self::capacity) is at least `len + additional` (the
    /// `len` of the call), unless another thread shrank the table
    /// meanwhile: its [`shrink_to_fit`](Self::shrink_to_fit), or the check
    /// of a write racing with this call, which may not see the new floor
    /// yet (the next check that does grows the table back).
    ///
    /// A bigger table is built here, on the calling thread (writers that
    /// arrive meanwhile help move the entries, readers never wait): one
    /// allocation of 9 bytes a bucket, and every entry relinked, none
    /// copied. A resize already in flight is finished first. Called from
    /// inside a key's `Eq` (where no resize may start), it keeps the room
    /// and the table grows at the map's next write from outside an `Eq`.
    ///
    /// # Panics
    /// If the table would not fit in the address space ("capacity
    /// overflow"); the map is then unchanged. A table that cannot be
    /// allocated aborts the process, as `std`'s collections do.
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::new();
    /// map.reserve(1000);
    /// let room = map.capacity();
    /// assert!(room >= 1000);
    /// for i in 0..1000 {
    ///     map.insert(i, i);
    /// }
    /// map.clear();
    /// assert_eq!(map.capacity(), room); // no resize, and no shrink
    /// ```
    pub fn reserve(&self, additional: usize) {
        let _guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `_guard` is a critical section of the map's domain.
        unsafe { self.raw.reserve(additional) }
    }

    /// Marks this thread as filling the map in bulk until the guard drops
    /// (see [`grow_for_hint`](Self::grow_for_hint)).
    #[cfg(feature = "rayon")]
    pub(crate) fn bulk_load(&self) -> BulkLoad {
        self.raw.bulk_load()
    }

    /// Grows the table for `hint` more entries (a lower size hint), all of
    /// it into an empty map, half of it otherwise (some keys may be
    /// present), without keeping the room as [`reserve`](Self::reserve)
    /// does: the extending traits call it before inserting, and keep the
    /// returned guard while they insert (the checks of this thread's
    /// writes do not shrink the table meanwhile).
    pub(crate) fn grow_for_hint(&self, hint: usize) -> BulkLoad {
        let bulk = self.raw.bulk_load();
        let hint = if self.is_empty() {
            hint
        } else {
            hint.div_ceil(2)
        };
        if hint > 0 {
            let _guard = LocalGuard::new(self.raw.domain());
            // SAFETY: `_guard` is a critical section of the map's domain.
            unsafe { self.raw.grow_for(hint) };
        }
        bulk
    }

    /// Shrinks the table to the smallest that holds [`len`](Self::len)
    /// entries below its growth threshold, but not below the capacity the
    /// map was built with, and forgets the room kept by
    /// [`reserve`](Self::reserve). The table's own checks shrink it only
    /// when it is less than 1/8 full (to half full), so a map that grew
    /// and then lost most of its entries may hold up to four times the
    /// buckets this leaves. Runs as [`reserve`](Self::reserve) does (on
    /// the calling thread; from inside a key's `Eq`, at the next write).
    ///
    /// ```
    /// let map = rcu_hashmap::RcuHashMap::new();
    /// for i in 0..1000 {
    ///     map.insert(i, i);
    /// }
    /// let guard = rcu_core::read_lock();
    /// map.retain(|k, _| *k < 200);
    /// map.shrink_to_fit();
    /// assert!(map.capacity() >= 200 && map.capacity() < 1000);
    /// assert_eq!(map.get(&199, &guard), Some(&199));
    /// ```
    pub fn shrink_to_fit(&self) {
        let _guard = LocalGuard::new(self.raw.domain());
        // SAFETY: `_guard` is a critical section of the map's domain.
        unsafe { self.raw.shrink_to_fit() }
    }
}

impl<K, V, S> fmt::Debug for RcuHashMap<K, V, S>
where
    K: fmt::Debug + Eq,
    V: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = LocalGuard::new(self.raw.domain());
        let it = Iter {
            // SAFETY: `guard` is a critical section of the map's domain
            // that outlives the walk.
            raw: unsafe { self.raw.iter() },
        };
        let r = f.debug_map().entries(it).finish();
        drop(guard);
        r
    }
}

impl<K, V, S> FromIterator<(K, V)> for RcuHashMap<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Default,
{
    /// An empty map, [extended](Extend::extend) by `iter`: the table is
    /// sized for the iterator's lower size hint, as `extend` sizes it (a
    /// hint no table can meet sizes nothing), and stays free to shrink.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map = Self::with_hasher(S::default());
        (&map).extend(iter);
        map
    }
}

/// Pairs that `extend` hashes and prefetches before inserting them.
const EXTEND_BATCH: usize = 16;

impl<K, V, S> Extend<(K, V)> for &RcuHashMap<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// Inserts every pair, as [`RcuHashMap::insert`] does, in the
    /// iterator's order. The iterator's lower size hint grows the table
    /// first, as `std`'s `extend` reserves (all of it into an empty map,
    /// half of it otherwise, as some keys may be present), without keeping
    /// that room as [`RcuHashMap::reserve`] does; the load-factor checks of
    /// these insertions do not shrink it meanwhile.
    ///
    /// Pairs are taken 16 at a time, hashed, and their buckets asked of
    /// the cache before the first of them is inserted. An insertion's lock
    /// (an atomic read-modify-write) waits for every load before it, so
    /// insertions one by one each wait for their own cache miss; batched,
    /// the misses overlap. Loading 1 M `u64` keys into an empty map took
    /// 44-45 ns a key this way, against 114-145 ns for `insert`s after a
    /// `reserve` and 182-187 ns for `insert`s that grow the table (five
    /// runs of `cargo run --release -p rcu-bench --example map_fill`;
    /// `std`'s `HashMap`: 40-47 ns). So an iterator that reads the map
    /// does not see the pairs it yielded last (up to 15 are taken and
    /// hashed before any is inserted), and if the iterator, a key's `Hash`
    /// or its `Eq` panics, up to 15 pairs taken before it are dropped
    /// without being inserted.
    ///
    /// A size hint whose table cannot be allocated, or would not fit in
    /// the address space, grows nothing (`std`'s `extend` panics or aborts
    /// there): the insertions grow the table as they need.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let map: &RcuHashMap<K, V, S> = self;
        let mut iter = iter.into_iter();
        let _bulk = map.grow_for_hint(iter.size_hint().0);
        let mut batch = Vec::with_capacity(EXTEND_BATCH.min(iter.size_hint().0.max(1)));
        loop {
            batch.extend(
                iter.by_ref()
                    .take(EXTEND_BATCH)
                    .map(|(k, v)| (map.hash(&k), k, v)),
            );
            if batch.is_empty() {
                return;
            }
            if batch.len() > 1 {
                let _guard = LocalGuard::new(map.raw.domain());
                for (hash, _, _) in &batch {
                    // SAFETY: `_guard` is a critical section of the map's
                    // domain.
                    unsafe { map.raw.prefetch(*hash) };
                }
            }
            for (hash, k, v) in batch.drain(..) {
                map.insert_hashed(hash, k, v);
            }
        }
    }
}

impl<K, V, S> Extend<(K, V)> for RcuHashMap<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        (&*self).extend(iter);
    }
}

impl<K, V, S> IntoIterator for RcuHashMap<K, V, S> {
    type Item = (K, V);
    type IntoIter = IntoIter<K, V>;

    /// Takes the entries out; no grace period is needed, since owning the
    /// map means no reader holds a reference into it.
    fn into_iter(mut self) -> IntoIter<K, V> {
        IntoIter {
            inner: self.raw.take_all().into_iter(),
        }
    }
}

/// The owned iterator of an [`RcuHashMap`].
pub struct IntoIter<K, V> {
    inner: std::vec::IntoIter<Box<Node<K, V>>>,
}

impl<K, V> Iterator for IntoIter<K, V> {
    type Item = (K, V);
    fn next(&mut self) -> Option<(K, V)> {
        self.inner.next().map(|n| {
            let Node { key, value, .. } = *n;
            (key, value)
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<K, V> Drop for IntoIter<K, V> {
    /// Drops the entries not yet taken, every one even when some drops
    /// panic (the first panic resumes), as the map's own drop does.
    fn drop(&mut self) {
        crate::raw::drop_all(&mut self.inner);
    }
}

impl<K, V> ExactSizeIterator for IntoIter<K, V> {}
impl<K, V> FusedIterator for IntoIter<K, V> {}

impl<K, V> fmt::Debug for IntoIter<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("remaining", &self.inner.len())
            .finish()
    }
}

/// An entry taken out of the map that readers may still see, from
/// [`insert`](RcuHashMap::insert) (the replaced value),
/// [`remove`](RcuHashMap::remove) or [`update`](RcuHashMap::update).
/// Derefs to the value. Dropping it drops the entry a grace period later,
/// on the domain's reclaim thread (like [`rcu_core::Unlinked`]); it never
/// waits for that grace period, but over a memory limit the dropping thread
/// may help run ready callbacks (see [`RcuDomain::call_rcu`]).
pub struct Removed<K: Send + 'static, V: Send + 'static>(Retired<K, V>);

impl<K: Send + 'static, V: Send + 'static> Removed<K, V> {
    /// The entry's key.
    pub fn key(&self) -> &K {
        &self.0.node().key
    }

    /// The entry's value.
    pub fn value(&self) -> &V {
        &self.0.node().value
    }

    /// Clones of the key and the value (the entry itself may still be read
    /// by others until a grace period passes).
    pub fn into_entry(self) -> (K, V)
    where
        K: Clone,
        V: Clone,
    {
        (self.key().clone(), self.value().clone())
    }
}

impl<K: Send + 'static, V: Send + 'static> Deref for Removed<K, V> {
    type Target = V;
    fn deref(&self) -> &V {
        self.value()
    }
}

impl<K, V> fmt::Debug for Removed<K, V>
where
    K: fmt::Debug + Send + 'static,
    V: fmt::Debug + Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Removed")
            .field("key", self.key())
            .field("value", self.value())
            .finish()
    }
}

/// An iterator over a map's entries: see [`RcuHashMap::iter`].
pub struct Iter<'g, K, V> {
    raw: RawIter<'g, K, V>,
}

impl<'g, K: Eq, V> Iterator for Iter<'g, K, V> {
    type Item = (&'g K, &'g V);
    fn next(&mut self) -> Option<Self::Item> {
        self.raw.next_node().map(|n| (&n.key, &n.value))
    }
}

impl<K: Eq, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

/// An iterator over a map's keys: see [`RcuHashMap::keys`].
#[derive(Debug)]
pub struct Keys<'g, K, V>(Iter<'g, K, V>);

impl<'g, K: Eq, V> Iterator for Keys<'g, K, V> {
    type Item = &'g K;
    fn next(&mut self) -> Option<&'g K> {
        self.0.next().map(|(k, _)| k)
    }
}

impl<K: Eq, V> FusedIterator for Keys<'_, K, V> {}

/// An iterator over a map's values: see [`RcuHashMap::values`].
#[derive(Debug)]
pub struct Values<'g, K, V>(Iter<'g, K, V>);

impl<'g, K: Eq, V> Iterator for Values<'g, K, V> {
    type Item = &'g V;
    fn next(&mut self) -> Option<&'g V> {
        self.0.next().map(|(_, v)| v)
    }
}

impl<K: Eq, V> FusedIterator for Values<'_, K, V> {}

/// A map together with a guard of its domain, from [`RcuHashMap::pin`]
/// ([`LocalGuard`]) or [`RcuHashMap::pin_owned`] ([`OwnedReadGuard`],
/// `Send`). References it hands out live as long as the handle.
pub struct MapRef<'m, K, V, S, G> {
    map: &'m RcuHashMap<K, V, S>,
    guard: G,
}

impl<K, V, S, G> MapRef<'_, K, V, S, G> {
    /// The guard this handle holds.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// The number of entries, as [`RcuHashMap::len`].
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty, as [`RcuHashMap::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: Hash + Eq, V, S: BuildHasher, G> MapRef<'_, K, V, S, G> {
    /// The value of `key`, as [`RcuHashMap::get`].
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // SAFETY: `self.guard` is a critical section of the map's domain
        // (made from it by `pin`/`pin_owned`) that outlives `&self`.
        unsafe { self.map.find(key) }.map(|n| &n.value)
    }

    /// The stored key and value of `key`.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // SAFETY: as in `get`.
        unsafe { self.map.find(key) }.map(|n| (&n.key, &n.value))
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K: Eq, V, S, G> MapRef<'_, K, V, S, G> {
    /// The entries, as [`RcuHashMap::iter`].
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            // SAFETY: as in `get`.
            raw: unsafe { self.map.raw.iter() },
        }
    }

    /// The keys.
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys(self.iter())
    }

    /// The values.
    pub fn values(&self) -> Values<'_, K, V> {
        Values(self.iter())
    }
}

impl<K, V, S, G> MapRef<'_, K, V, S, G>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// As [`RcuHashMap::insert`].
    pub fn insert(&self, key: K, value: V) -> Option<Removed<K, V>> {
        self.map.insert(key, value)
    }

    /// As [`RcuHashMap::remove`].
    pub fn remove<Q>(&self, key: &Q) -> Option<Removed<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key)
    }

    /// As [`RcuHashMap::get_or_insert_with`].
    #[track_caller]
    pub fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> &V {
        // SAFETY: as in `get`.
        unsafe { self.map.get_or_insert_with_unchecked(key, f) }
    }

    /// As [`RcuHashMap::update`].
    pub fn update<Q>(&self, key: &Q, f: impl FnMut(&V) -> V) -> Option<Removed<K, V>>
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ?Sized,
    {
        self.map.update(key, f)
    }
}

impl<K, V, S, G> fmt::Debug for MapRef<'_, K, V, S, G>
where
    K: fmt::Debug + Eq,
    V: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
