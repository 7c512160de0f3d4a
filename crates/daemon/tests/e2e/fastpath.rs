//! The kernel fast path end to end: with `[tun] fastpath = "on"` the data of spliced
//! flows bypasses the TUN (its packet counter stays at what the handshakes, peeks and
//! closes need) and arrives intact both ways, in both address variants, under loss and
//! with many flows at once; the metrics count its bytes, say that it runs (or, with
//! `fastpath = "off"`, that it does not), how many flows it carries and what its program
//! did with the packets; SIGTERM removes the program and its pins.

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

/// Whether `body` has the line `line`.
fn has(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

/// The program's counter of `result` in a scrape.
fn result(body: &str, result: &str) -> u64 {
    let prefix = format!("kracauer_fastpath_packets_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {prefix}in\n{body}")) as u64
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
    let ended = metric_sum(&scrape(k), "kracauer_flows_ended_total");
    assert_eq!(tb.download("a.example", n).expect("download"), n);
    let reply = tb.upload("a.example", n).expect("upload");
    assert!(
        reply.body.contains(&format!("sink={n} mismatch=none")),
        "{reply:?}"
    );
    // Both flows ended (after their linger) and none left: a snapshot the workers
    // published before the transfers (they publish once a second; 100 MB can take less)
    // also has no flow, but not the two more ended ones.
    let body = eventually("the flows to end", Duration::from_secs(90), || {
        let b = scrape(k);
        (metric_sum(&b, "kracauer_flows") == 0
            && metric_sum(&b, "kracauer_flows_ended_total") >= ended + 2)
            .then_some(b)
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
    let body = scrape(&k);
    assert!(has(&body, "kracauer_fastpath_running 1"), "{body}");
    // An upload half sent: its flow is spliced and handed to the kernel, and stays so
    // until the rest has gone through it.
    let half = 4 << 20;
    let mut s = super::open(&tb, HTTP_PORT);
    super::start_upload(&mut s, "a.example", 2 * half, half);
    eventually(
        "the flow on the kernel path",
        Duration::from_secs(30),
        || (metric_sum(&scrape(&k), "kracauer_fastpath_flows") == 1).then_some(()),
    );
    super::send_pattern(&mut s, half, 2 * half);
    let reply = super::read_all(&mut s);
    assert!(
        reply.contains(&format!("sink={} mismatch=none", 2 * half)),
        "{reply}"
    );
    drop(s);
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
    // The program's own counters (read once a second): it translated the data both ways,
    // each packet at most a 64 KiB GRO super-packet, and passed the handshakes (TCP of
    // no flow it carries) to the TUN path. Nothing was refused a hand-over, and with the
    // flows ended none is on the kernel path.
    let body = eventually("the program's counters", Duration::from_secs(30), || {
        let b = scrape(&k);
        (result(&b, "to_client") >= n / (64 * 1024)).then_some(b)
    });
    assert!(result(&body, "to_backend") >= n / (64 * 1024), "{body}");
    assert!(result(&body, "no_flow") > 0, "{body}");
    assert_eq!(result(&body, "failed"), 0, "{body}");
    assert_eq!(
        metric_sum(&body, "kracauer_fastpath_handovers_refused_total"),
        0
    );
    assert_eq!(metric_sum(&body, "kracauer_fastpath_flows"), 0, "{body}");
    assert!(has(&body, "kracauer_fastpath_running 1"), "{body}");
    // (The pins live in the daemon's own mount namespace, which `ip netns exec` gives it,
    // so they cannot be looked at from here.)
    assert!(k.terminate().unwrap().success());
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn with_the_fast_path_off_the_metrics_say_it_does_not_run_and_data_crosses_the_tun() {
    require_privileged(
        "with_the_fast_path_off_the_metrics_say_it_does_not_run_and_data_crosses_the_tun",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let c = tb.config("");
    assert!(c.contains("mtu = 1500\n"), "{c}");
    let c = c.replace("mtu = 1500\n", "mtu = 1500\nfastpath = \"off\"\n");
    let k = tb.start_kracauer(KRACAUER, &c).unwrap();
    assert!(k.log().contains("fast path: off"), "{}", k.log());
    let n = 10 * 1000 * 1000;
    assert_eq!(tb.download("a.example", n).expect("download"), n);
    // Every byte crosses the TUN, 64 KiB at most per (super-)packet (the workers publish
    // their counters once a second).
    let body = eventually("the data on the TUN", Duration::from_secs(30), || {
        let b = scrape(&k);
        (metric_sum(&b, "kracauer_tun_packets_total") >= n / (64 * 1024)).then_some(b)
    });
    assert!(has(&body, "kracauer_fastpath_running 0"), "{body}");
    assert_eq!(
        metric_sum(&body, "kracauer_fastpath_packets_total"),
        0,
        "{body}"
    );
    assert_eq!(metric_sum(&body, "kracauer_fastpath_flows"), 0, "{body}");
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
