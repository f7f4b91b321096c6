//! (under construction: this crate's issue builds it)
