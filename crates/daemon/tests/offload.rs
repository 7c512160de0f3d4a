//! End to end: TUN offloads and multi-queue workers. The real `kracauer run` in the
//! router namespace with two workers, real kernel TCP in the client and the backends
//! (which send and take GSO super-packets through their veths), 100 MB each way with
//! offloads on and with them forced off, and many flows spread over both workers, each
//! kept whole on its own. What the daemon says it did is read from its metrics, so a
//! test cannot pass on a path it did not take.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or `ip` is missing.

use kracauer_testbed::prom::{drops, one, samples};
use kracauer_testbed::{Topology, Variant, client, require_privileged};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

const MB100: u64 = 100 * 1000 * 1000;
/// Payload bytes forwarded for 100 MB each way, at least: `kracauer_bytes_total` counts
/// translated segments, not the first bytes Kracauer peeked and replayed itself (at most
/// one peek buffer per connection).
const FORWARDED_2X100MB: u64 = 2 * MB100 - 64 * 1024;

/// The configuration with `tun` lines added to its `[tun]` table.
fn config(tb: &Topology, tun: &str) -> String {
    let c = tb.config("");
    assert!(c.contains("mtu = 1500\n"), "{c}");
    // These tests are about the TUN path: the kernel fast path would carry the data.
    c.replacen(
        "mtu = 1500\n",
        &format!("mtu = 1500\nfastpath = \"off\"\n{tun}\n"),
        1,
    )
}

/// The metrics once a snapshot counting at least `bytes` forwarded payload bytes has
/// been published (snapshots are written about once a second); the last one read if
/// none does within 10 s, for the assertions to show.
fn metrics_after(k: &kracauer_testbed::Kracauer<'_>, bytes: u64) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = k.metrics().expect("metrics").body;
        let forwarded: u64 = samples(&body, "kracauer_bytes_total")
            .iter()
            .map(|s| s.1)
            .sum();
        if forwarded >= bytes || std::time::Instant::now() > end {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn hundred_mb_each_way(tb: &Topology) {
    let up = tb.upload("a.example", MB100).expect("upload");
    assert_eq!(up.body, format!("sink={MB100} mismatch=none\n"));
    assert_eq!(tb.download("b.example", MB100).expect("download"), MB100);
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn offloads_on_carry_100_mb_each_way_intact_as_super_packets() {
    require_privileged("offloads_on_carry_100_mb_each_way_intact_as_super_packets");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb
        .start_kracauer(KRACAUER, &config(&tb, "offload = true\nworkers = 2"))
        .unwrap();
    hundred_mb_each_way(&tb);
    let body = metrics_after(&k, FORWARDED_2X100MB);
    assert_eq!(one(&body, "kracauer_tun_offload"), 1, "{body}");
    assert_eq!(one(&body, "kracauer_workers"), 2, "{body}");
    let supers: u64 = samples(&body, "kracauer_tun_super_packets_total")
        .iter()
        .map(|s| s.1)
        .sum();
    assert!(supers > 0, "no GSO super-packet was read:\n{body}");
    assert_eq!(one(&body, "kracauer_tun_header_errors_total"), 0, "{body}");
    assert_eq!(one(&body, "kracauer_tun_write_errors_total"), 0, "{body}");
    let bytes: u64 = samples(&body, "kracauer_bytes_total")
        .iter()
        .map(|s| s.1)
        .sum();
    assert!(bytes >= FORWARDED_2X100MB, "{body}");
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn offloads_forced_off_carry_100_mb_each_way_intact() {
    require_privileged("offloads_forced_off_carry_100_mb_each_way_intact");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb
        .start_kracauer(KRACAUER, &config(&tb, "offload = false\nworkers = 2"))
        .unwrap();
    hundred_mb_each_way(&tb);
    let body = metrics_after(&k, FORWARDED_2X100MB);
    assert_eq!(one(&body, "kracauer_tun_offload"), 0, "{body}");
    assert_eq!(one(&body, "kracauer_workers"), 2, "{body}");
    let supers: u64 = samples(&body, "kracauer_tun_super_packets_total")
        .iter()
        .map(|s| s.1)
        .sum();
    assert_eq!(supers, 0, "{body}");
    // Without offloads no read exceeds the MTU: 200 MB took at least 137,000 packets.
    let packets: u64 = samples(&body, "kracauer_tun_packets_total")
        .iter()
        .map(|s| s.1)
        .sum();
    assert!(packets > 2 * MB100 / 1460, "{body}");
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn flows_spread_over_both_workers_and_each_stays_whole_on_its_own() {
    require_privileged("flows_spread_over_both_workers_and_each_stays_whole_on_its_own");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb
        .start_kracauer(KRACAUER, &config(&tb, "workers = 2"))
        .unwrap();
    const FLOWS: usize = 32;
    const EACH: u64 = 2 * 1000 * 1000;
    let service = Topology::service(kracauer_testbed::topology::HTTP_PORT);
    let results: Vec<_> = tb
        .client
        .run(|| {
            // Threads started here inherit the client namespace.
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
        assert_eq!(r.unwrap(), EACH);
    }
    let body = metrics_after(&k, FLOWS as u64 * (EACH - 16 * 1024));
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
    // A packet steered to the other worker would find no flow there.
    assert_eq!(drops(&body, "backend_no_flow"), 0, "{body}");
    assert_eq!(drops(&body, "client_no_flow"), 0, "{body}");
}
