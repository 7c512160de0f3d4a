//! End to end: the steering program keeps every flow on one worker when the backends'
//! segments come behind IPv6 extension headers. The real `kracauer run` in the router
//! namespace with two workers; the backends' kernels insert a Segment Routing header
//! (a Routing header, type 4) into everything they send to the prefix (seg6 inline
//! mode), addressed to the router, whose kernel processes it and forwards the segment
//! into the TUN with the header still in place (Segments Left 0). An nftables counter
//! proves that the segments reached the TUN so; the metrics say whether any reached a
//! worker that did not hold their flow.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root, `ip` or `nft` is missing.

use std::io::Write as _;

use kracauer_testbed::prom::{drops, one, samples};
use kracauer_testbed::topology::{HTTP_PORT, PREFIX, ROUTER_V6};
use kracauer_testbed::{Netns, Topology, Variant, client, require_privileged_and};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// Counts, in the router, IPv6 packets forwarded into the TUN behind a Routing header.
const COUNTER: &str = "
table ip6 kracauer_steering_test {
    counter routed_into_tun {}
    chain forward {
        type filter hook forward priority 0; policy accept;
        oifname \"kracauer0\" rt type 4 counter name routed_into_tun
    }
}
";

/// Loads the nftables `script` in `ns`.
fn nft(ns: &Netns, script: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    assert!(child.wait().expect("nft").success(), "nft -f: {script}");
}

/// The packets the counter saw.
fn counted(ns: &Netns) -> u64 {
    let out = ns
        .command("nft")
        .args([
            "list",
            "counter",
            "ip6",
            "kracauer_steering_test",
            "routed_into_tun",
        ])
        .output()
        .expect("nft list counter");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {text}"))
}

/// The metrics once a snapshot counting `flows` spliced flows has been published
/// (snapshots are written about once a second); the last one read if none does within
/// 10 s, for the assertions to show.
fn metrics_after(k: &kracauer_testbed::Kracauer<'_>, flows: u64) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = k.metrics().expect("metrics").body;
        let spliced: u64 = samples(&body, "kracauer_flows_spliced_total")
            .iter()
            .map(|s| s.1)
            .sum();
        if spliced >= flows || std::time::Instant::now() > end {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
#[ignore = "privileged: needs root, network namespaces and nft (run with --include-ignored)"]
fn backend_segments_behind_a_routing_header_reach_the_worker_holding_their_flow() {
    require_privileged_and(
        "backend_segments_behind_a_routing_header_reach_the_worker_holding_their_flow",
        &["nft"],
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let router = ROUTER_V6.to_string();
    for backend in [&tb.backend_a, &tb.backend_b] {
        backend
            .ip([
                "-6", "route", "replace", PREFIX, "encap", "seg6", "mode", "inline", "segs",
                &router, "via", &router, "dev", "eth0",
            ])
            .expect("a Segment Routing header on everything sent to the prefix");
    }
    for conf in ["all", "br0"] {
        tb.router
            .sysctl(&format!("net.ipv6.conf.{conf}.seg6_enabled"), "1")
            .expect("the router processes Segment Routing headers");
    }
    nft(&tb.router, COUNTER);
    let config = tb.config("");
    assert!(config.contains("mtu = 1500\n"), "{config}");
    let config = config.replacen("mtu = 1500\n", "mtu = 1500\nworkers = 2\n", 1);
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();

    // Many flows from one client address: the client's side spreads them over both
    // workers by port, so a backend segment steered by the address alone would reach
    // the wrong worker for about half of them.
    const FLOWS: usize = 32;
    const EACH: u64 = 1000 * 1000;
    let service = Topology::service(HTTP_PORT);
    let results: Vec<_> = tb
        .client
        .run(|| {
            std::thread::scope(|s| {
                let joins: Vec<_> = (0..FLOWS)
                    .map(|i| {
                        let host = if i % 2 == 0 { "a.example" } else { "b.example" };
                        s.spawn(move || client::download(service, host, EACH))
                    })
                    .collect();
                joins
                    .into_iter()
                    .map(|j| j.join().expect("download thread"))
                    .collect()
            })
        })
        .unwrap();
    for r in results {
        assert_eq!(r.expect("download"), EACH);
    }
    let body = metrics_after(&k, FLOWS as u64);
    let routed = counted(&tb.router);
    assert!(
        routed >= FLOWS as u64 * 2,
        "only {routed} packets reached the TUN behind a Routing header"
    );
    let per_worker = samples(&body, "kracauer_tun_packets_total");
    assert_eq!(per_worker.len(), 2, "{body}");
    for (worker, packets) in &per_worker {
        assert!(*packets > 0, "worker {worker} read nothing:\n{body}");
    }
    assert_eq!(
        one(&body, "kracauer_flows_spliced_total"),
        FLOWS as u64,
        "{body}"
    );
    assert_eq!(drops(&body, "backend_no_flow"), 0, "{body}");
    assert_eq!(drops(&body, "client_no_flow"), 0, "{body}");
    assert_eq!(drops(&body, "backend_malformed"), 0, "{body}");
}
