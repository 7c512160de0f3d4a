//! Tests of the QUIC module as a whole: the RFC vectors, headers, the peek and the
//! refusal. Unit tests of single pieces live beside them (varint, keys, frame, stream).

mod header;
mod peek;
mod refuse;
mod rfc;
pub(crate) mod util;
mod vectors;
