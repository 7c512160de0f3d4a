//! A simulated network with independent TCP stacks: a smoltcp client on IPv4 and a
//! smoltcp backend on IPv6, the engine between them, links that delay, drop, duplicate
//! and reorder with a seeded generator, and a virtual clock. Each test is one scenario
//! from DESIGN.md "The TCP splice", run end to end.

mod sim {
    pub mod device;
    pub mod hello;
    pub mod host;
    pub mod link;
    pub mod oracle;
    pub mod probe;
    pub mod rng;
    pub mod world;

    mod failures;
    mod splice;
}
