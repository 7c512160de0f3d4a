//! The engine snapshot decoder on arbitrary bytes: `Engine::restore` must refuse what it
//! cannot use and never panic. Half the inputs are sealed first (a valid header and
//! checksum around the fuzzer's bytes), so the fuzzer reaches the body's decoder rather
//! than stopping at the checksum. Whatever restores must snapshot to bytes that restore
//! again to the same snapshot.
#![no_main]
use std::sync::Arc;

use kracauer_core::engine::snapshot::seal;
use kracauer_core::engine::{Engine, EngineConfig, Service};
use kracauer_core::route::RouteTable;
use kracauer_core::time::Time;
use libfuzzer_sys::fuzz_target;

fn config() -> EngineConfig {
    let mut c = EngineConfig::new(
        "2001:db8:64::/96".parse().expect("prefix"),
        vec![Service {
            address: "203.0.113.10".parse().expect("address"),
            tls: vec![443],
            http: vec![80],
            quic: vec![],
        }],
        [7; 32],
    );
    c.max_flows = 64;
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 { seal(rest) } else { rest.to_vec() };
    let routes = Arc::new(RouteTable::builder().build());
    let now = Time::from_millis(5);
    if let Ok(engine) = Engine::restore(config(), routes.clone(), &bytes, now) {
        let again = engine.snapshot(now);
        let twice = Engine::restore(config(), routes, &again, now).expect("a snapshot restores");
        assert_eq!(twice.snapshot(now), again, "snapshots are stable");
    }
});
