//! The kernel fast path end to end: with `[tun] fastpath = "on"` the data of spliced
//! flows bypasses the TUN (its packet counter stays at what the handshakes, peeks and
//! closes need) and arrives intact both ways, in both address variants, under loss and
//! with many flows at once; the metrics count its bytes; SIGTERM removes the program and
//! its pins.

use std::time::Duration;

use kracauer_testbed::topology::HTTP_PORT;
use kracauer_testbed::{Topology, Variant, client, require_privileged, require_privileged_and};

use super::{KRACAUER, eventually};

/// A testbed configuration with the fast path on, and `extra` appended.
pub(super) fn config(tb: &Topology, extra: &str) -> String {
    let c = tb.config(extra);
    assert!(c.contains("mtu = 1500\n"), "{c}");
    c.replace("mtu = 1500\n", "mtu = 1500\nfastpath = \"on\"\n")
}

/// The sum of every series of `name` in a scrape.
pub(super) fn metric_sum(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub(super) fn scrape(k: &kracauer_testbed::Kracauer<'_>) -> String {
    k.metrics().map(|r| r.body).unwrap_or_default()
}

/// Downloads and uploads `n` bytes each way, checking every byte, and returns the TUN
/// packets and the metrics' bytes by direction once the flows have ended.
pub(super) fn both_ways(
    tb: &Topology,
    k: &kracauer_testbed::Kracauer<'_>,
    n: u64,
) -> (u64, u64, u64) {
    assert_eq!(tb.download("a.example", n).expect("download"), n);
    let reply = tb.upload("a.example", n).expect("upload");
    assert!(
        reply.body.contains(&format!("sink={n} mismatch=none")),
        "{reply:?}"
    );
    let body = eventually("the flows to end", Duration::from_secs(60), || {
        let b = scrape(k);
        (metric_sum(&b, "kracauer_flows") == 0 && !b.is_empty()).then_some(b)
    });
    let bytes = |dir: &str| {
        body.lines()
            .find(|l| l.starts_with("kracauer_bytes") && l.contains(dir))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (
        metric_sum(&body, "kracauer_tun_packets_total"),
        bytes("to_backend"),
        bytes("to_client"),
    )
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn one_gib_each_way_arrives_intact_through_the_kernel_and_not_through_the_tun() {
    require_privileged(
        "one_gib_each_way_arrives_intact_through_the_kernel_and_not_through_the_tun",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &config(&tb, "")).unwrap();
    assert!(k.log().contains("fast path: on"), "{}", k.log());
    let n = 1 << 30;
    let (tun_packets, to_backend, to_client) = both_ways(&tb, &k, n);
    // Through the TUN, 2 GiB would be well over 30,000 packets even as 64 KB
    // super-packets; the handshakes, peeks and closes of two flows are a few dozen.
    // Handshakes, peeks and closes did take the TUN (so the counter is the one read).
    assert!(
        (1..1000).contains(&tun_packets),
        "TUN packets {tun_packets}"
    );
    // The metrics count what was forwarded: the bodies and the request heads, but not the
    // bytes the peek held and Kracauer replayed (as on the TUN path), which may include
    // the first bytes of the upload's body.
    assert!(
        to_client >= n && to_backend >= n - 64 * 1024,
        "{to_backend} {to_client}"
    );
    // (The pins live in the daemon's own mount namespace, which `ip netns exec` gives it,
    // so they cannot be looked at from here.)
    assert!(k.terminate().unwrap().success());
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn shared_address_transfers_take_the_kernel_path_intact() {
    require_privileged("shared_address_transfers_take_the_kernel_path_intact");
    let tb = Topology::build(Variant::Shared).unwrap();
    let k = tb.start_kracauer(KRACAUER, &config(&tb, "")).unwrap();
    let n = 100 * 1000 * 1000;
    let (tun_packets, ..) = both_ways(&tb, &k, n);
    assert!(
        (1..1000).contains(&tun_packets),
        "TUN packets {tun_packets}"
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF and nft (run with --include-ignored)"]
fn three_percent_loss_each_way_keeps_fast_path_transfers_intact() {
    require_privileged_and(
        "three_percent_loss_each_way_keeps_fast_path_transfers_intact",
        &["nft"],
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &config(&tb, "")).unwrap();
    // Set up the flow tables first, then lose 3% of the client's packets each way.
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    tb.inject_loss(3).unwrap();
    let n = 100 * 1000 * 1000;
    let (tun_packets, ..) = both_ways(&tb, &k, n);
    // The client's stack sends and receives GSO/GRO super-packets, which the rules see
    // (and drop) whole: a few thousand of them each way.
    let dropped = tb.loss_dropped().unwrap();
    eprintln!("loss rules dropped {dropped} packets; TUN packets {tun_packets}");
    assert!(dropped >= 20, "the loss rules dropped only {dropped}");
    // Retransmissions of lost handshake and peek segments go through the TUN; the data
    // does not.
    assert!(
        (1..2000).contains(&tun_packets),
        "TUN packets {tun_packets}"
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn two_hundred_concurrent_flows_arrive_intact_on_the_fast_path() {
    require_privileged("two_hundred_concurrent_flows_arrive_intact_on_the_fast_path");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb
        .start_kracauer(
            KRACAUER,
            &config(&tb, "[limits]\npeeks_per_client = 4096\n"),
        )
        .unwrap();
    let n = 2 * 1000 * 1000;
    let results = tb
        .client
        .run(|| {
            let threads: Vec<_> = (0..200)
                .map(|_| {
                    std::thread::spawn(move || {
                        client::download(Topology::service(HTTP_PORT), "a.example", n)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("download thread"))
                .collect::<Vec<_>>()
        })
        .unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r, Ok(got) if *got == n))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        failed.first()
    );
    let body = scrape(&k);
    // 200 flows of 2 MB through the TUN would be thousands of packets each.
    let tun_packets = metric_sum(&body, "kracauer_tun_packets_total");
    assert!(
        (200..200 * 40).contains(&tun_packets),
        "TUN packets {tun_packets}"
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn idle_flow_on_the_fast_path_expires_and_its_log_line_counts_every_byte() {
    require_privileged("idle_flow_on_the_fast_path_expires_and_its_log_line_counts_every_byte");
    let tb = Topology::build(Variant::Routed).unwrap();
    let log = tb.dir().join("access.log");
    let extra = format!(
        "[timeouts]\nidle = \"3s\"\n\n[log]\naccess = \"file:{}\"\n",
        log.display()
    );
    let k = tb.start_kracauer(KRACAUER, &config(&tb, &extra)).unwrap();
    let mut s = super::open(&tb, HTTP_PORT);
    let total = 5 * 1000 * 1000;
    super::start_upload(&mut s, "a.example", total, total);
    // The upload is complete and the connection stays open, idle: the flow expires
    // (the program's last-seen time stops moving) and its line has every byte.
    let line = eventually(
        "the idle flow's access-log line",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .find(|l| l.contains("outcome=idle"))
                .map(str::to_owned)
        },
    );
    let to_backend: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("to_backend="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line}"));
    // The bytes the peek held and Kracauer replayed are not in the count (as on the TUN
    // path); every byte after them is, and almost all of them took the kernel path. The
    // count is of bytes forwarded: a retransmitted segment counts again.
    assert!(
        (total - 64 * 1024..=total + 64 * 1024).contains(&to_backend),
        "{line}"
    );
    drop(s);
    drop(k);
}
