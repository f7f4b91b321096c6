//! Optional integrations: `serde` and `rayon`.

#[cfg(feature = "serde")]
mod serde_impl {
    use crate::RcuHashMap;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde::ser::{Serialize, Serializer};
    use std::fmt;
    use std::hash::{BuildHasher, Hash};
    use std::marker::PhantomData;

    /// Serialises a weakly consistent snapshot (as [`RcuHashMap::iter`]) as
    /// a map.
    impl<K, V, S> Serialize for RcuHashMap<K, V, S>
    where
        K: Serialize + Eq,
        V: Serialize,
    {
        fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
            let m = self.pin();
            serializer.collect_map(m.iter())
        }
    }

    /// Deserialises a map into a new map in the process-wide domain (a
    /// repeated key: the last value wins).
    impl<'de, K, V, S> Deserialize<'de> for RcuHashMap<K, V, S>
    where
        K: Deserialize<'de> + Hash + Eq + Send + 'static,
        V: Deserialize<'de> + Send + 'static,
        S: BuildHasher + Default,
    {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MapVisitor<K, V, S>(PhantomData<Entries<K, V, S>>);
            type Entries<K, V, S> = fn() -> (K, V, S);
            impl<'de, K, V, S> Visitor<'de> for MapVisitor<K, V, S>
            where
                K: Deserialize<'de> + Hash + Eq + Send + 'static,
                V: Deserialize<'de> + Send + 'static,
                S: BuildHasher + Default,
            {
                type Value = RcuHashMap<K, V, S>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut access: A,
                ) -> Result<Self::Value, A::Error> {
                    let map = RcuHashMap::with_hasher(S::default());
                    // The format's entry count, if it gives one, capped as
                    // serde caps `std`'s preallocation: 1 MiB of what the
                    // entries take (a node's pair and its hash and link, a
                    // bucket word and filter byte at 3/4 load, rounded up
                    // to 32 bytes besides the pair; 4 KiB under Miri, where
                    // big tables are slow), none for zero-sized pairs. A
                    // count in untrusted input must not size the table.
                    let bytes: usize = if cfg!(miri) { 4 << 10 } else { 1 << 20 };
                    let pair = size_of::<(K, V)>();
                    let cap = if pair == 0 { 0 } else { bytes / (pair + 32) };
                    let _bulk = map.grow_for_hint(access.size_hint().unwrap_or(0).min(cap));
                    while let Some((k, v)) = access.next_entry()? {
                        map.insert(k, v);
                    }
                    Ok(map)
                }
            }
            deserializer.deserialize_map(MapVisitor(PhantomData))
        }
    }
}

#[cfg(feature = "rayon")]
mod rayon_impl {
    use crate::RcuHashMap;
    use rayon::iter::{
        FromParallelIterator, IntoParallelIterator, ParallelExtend, ParallelIterator,
    };
    use rcu_core::Guard;
    use std::hash::{BuildHasher, Hash};

    impl<K: Eq + Sync, V: Sync, S> RcuHashMap<K, V, S> {
        /// A parallel iterator over the entries: the snapshot of
        /// [`iter`](RcuHashMap::iter) under `guard`, collected on the calling
        /// thread, then spread over rayon's pool (the guard's critical
        /// section covers the workers, since the references cannot outlive
        /// it).
        ///
        /// # Panics
        /// If `guard` belongs to another domain than the map's.
        ///
        /// ```
        /// use rayon::prelude::*;
        /// let map: rcu_hashmap::RcuHashMap<u64, u64> = (0..1000).map(|i| (i, i)).collect();
        /// let guard = rcu_core::read_lock();
        /// assert_eq!(map.par_iter(&guard).map(|(_, v)| *v).sum::<u64>(), 499_500);
        /// ```
        pub fn par_iter<'g>(
            &'g self,
            guard: &'g impl Guard,
        ) -> rayon::vec::IntoIter<(&'g K, &'g V)> {
            self.iter(guard).collect::<Vec<_>>().into_par_iter()
        }
    }

    /// Inserts in parallel: `insert` takes `&self`, so rayon's workers
    /// write to the map at once (per-bucket locks).
    impl<K, V, S> ParallelExtend<(K, V)> for &RcuHashMap<K, V, S>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        S: BuildHasher + Sync,
    {
        fn par_extend<I: IntoParallelIterator<Item = (K, V)>>(&mut self, par_iter: I) {
            let map: &RcuHashMap<K, V, S> = self;
            let par_iter = par_iter.into_par_iter();
            // An indexed iterator's length grows the table first, as
            // `extend`'s size hint does.
            // (The guard marks this thread only: each worker marks its
            // own, for as long as it runs a piece of the iterator.)
            let _bulk = map.grow_for_hint(par_iter.opt_len().unwrap_or(0));
            par_iter.for_each_init(|| map.bulk_load(), |_, (k, v)| drop(map.insert(k, v)));
        }
    }

    impl<K, V, S> ParallelExtend<(K, V)> for RcuHashMap<K, V, S>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        S: BuildHasher + Sync,
    {
        fn par_extend<I: IntoParallelIterator<Item = (K, V)>>(&mut self, par_iter: I) {
            (&*self).par_extend(par_iter);
        }
    }

    impl<K, V, S> FromParallelIterator<(K, V)> for RcuHashMap<K, V, S>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        S: BuildHasher + Default + Sync,
    {
        fn from_par_iter<I: IntoParallelIterator<Item = (K, V)>>(par_iter: I) -> Self {
            let mut map = RcuHashMap::with_hasher(S::default());
            map.par_extend(par_iter);
            map
        }
    }
}
