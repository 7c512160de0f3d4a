//! A simulated network with independent TCP stacks: a smoltcp client on IPv4 and a
//! smoltcp backend on IPv6, the engine between them, links that delay, drop, duplicate
//! and reorder with a seeded generator, and a virtual clock. Each test is one scenario
//! from docs/architecture.md, "The splice", run end to end.
//!
//! Besides the scenario's own assertions, every run checks every packet: checksums and
//! lengths, addresses, the IPv6 MTU, that an end is never acknowledged, SACKed or
//! echoed anything it did not send, and (the oracle) that each translation keeps flags
//! and payload, one δ and one timestamp offset per flow, and rescales windows without
//! overstating them. Drops and access-log events are checked at the end.
//!
//! smoltcp 0.14's Nagle is RFC 896's, which is what `Setup::client_classic_nagle` plays
//! (the custody scenarios, `custody.rs`); the other scenarios turn it off, as browsers and
//! curl do (TCP_NODELAY). On a lossy link smoltcp cannot always finish a close when the
//! FIN rides on a data segment: worked around, not tested (see
//! `Setup::close_when_acked`).

mod sim {
    pub mod device;
    pub mod hello;
    pub mod host;
    pub mod link;
    pub mod oracle;
    pub mod probe;
    pub mod rng;
    pub mod setup;
    pub mod world;

    mod custody;
    mod failures;
    mod splice;
}
