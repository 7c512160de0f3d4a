//! Memory per spliced flow, measured: the resident set grown by opening N spliced flows
//! in one engine (table, indexes, timers, flow state, everything), divided by N.
//!
//! `cargo run --release -p kracauer-core --example flow_memory -- 1000000`

#[path = "../benches/support.rs"]
mod support;

use kracauer_core::engine::Output;
use kracauer_core::flow::Flow;
use kracauer_core::time::Time;
use support::*;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_bytes();
    let mut engine = engine(n);
    let mut out = Output::default();
    let now = Time::from_millis(10_000);
    // 65,535 client ports per client address; as many addresses as it takes.
    for i in 0..n {
        let client = std::net::Ipv4Addr::from(u32::from(CLIENT) + (i / 65_535) as u32);
        open_flow(&mut engine, &mut out, now, client, (i % 65_535 + 1) as u16);
        while engine.poll_event().is_some() {} // the daemon drains events as they come
    }
    let after = rss_bytes();
    let flows = engine.flow_count();
    println!("size_of::<Flow>() = {} bytes", size_of::<Flow>());
    println!("flows open: {flows} (spliced: {})", engine.stats().spliced);
    println!(
        "resident set grown: {} bytes = {:.0} bytes per flow (table reserved for {n} flows)",
        after - before,
        (after - before) as f64 / flows as f64
    );
}
