//! Peekers: read the name a client asked for from the first bytes of its connection.
//!
//! Each peeker takes the contiguous bytes received so far and says whether it needs more,
//! found a name, or gave up. They never allocate per call beyond the name they return.

pub mod http;
pub mod tls;
