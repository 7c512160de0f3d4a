//! TCP as Kracauer plays it: its own ISNs and SYN cookies, the peek buffer, the segments
//! it builds, and the per-segment summary the engine decides on.

pub mod emit;
pub mod isn;
pub mod reasm;
pub mod seg;
