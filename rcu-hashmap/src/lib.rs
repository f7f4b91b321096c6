//! `RcuHashMap`: a concurrent hash map for read-mostly workloads, built on
//! userspace RCU ([`rcu_core`]).
//!
//! (Design notes: see below; written with the measurements.)

#![cfg_attr(rcu_loom, allow(dead_code))]

mod raw;
mod sync;

#[cfg(not(rcu_loom))]
mod map;

#[cfg(not(rcu_loom))]
pub use map::{IntoIter, Iter, Keys, LocalGuard, MapRef, RcuHashMap, Removed, Values};

/// The fewest buckets a table has (a table never shrinks below this, nor
/// below the capacity the map was made with).
pub const MIN_BUCKETS: usize = raw::MIN_BUCKETS;
