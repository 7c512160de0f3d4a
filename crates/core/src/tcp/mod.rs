//! TCP as Kracauer plays it: its own ISNs and SYN cookies, the peek buffer, the segments
//! it builds, the per-segment summary the engine decides on, and the [`splice::Splice`]
//! rewrite of a spliced flow. Uses `wire` and the leaf `base`, nothing above.

pub mod emit;
pub mod isn;
pub mod reasm;
pub mod seg;
pub mod splice;

#[cfg(test)]
mod splice_tests;
