//! (docs below)

mod raw;
mod tree;

pub use raw::Removed;
pub use tree::{Iter, Mark, RcuRadixTree, TreeStats};
