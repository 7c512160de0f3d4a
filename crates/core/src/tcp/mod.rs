//! TCP as Kracauer plays it: its own ISNs and SYN cookies, the peek buffer, the handshake
//! with the client and the backend, and the splice that rewrites every segment after.

pub mod isn;
pub mod reasm;
