//! Kracauer's sans-IO core.
//!
//! Everything that decides what happens to a packet lives here, and nothing here reads a
//! clock, opens a file or makes a syscall: time comes in as `now`, packets come in as
//! bytes, and packets to send go out through caller-owned buffers. That keeps every
//! behaviour reproducible in a unit test and fuzzable.
#![forbid(unsafe_code)]

pub mod addr;
pub mod base;
pub mod engine;
pub mod flow;
pub mod name;
pub mod offload;
pub mod peek;
pub mod quic;
pub mod route;
pub mod steer;
pub mod tcp;
pub mod time;
pub mod wire;
pub mod xlat;
