//! End to end over QUIC: the real `kracauer run` in the testbed's router namespace with
//! `quic = [443]`, HTTP/3 backends (quinn + h3, `kracauer_testbed::quic`) in IPv6-only
//! namespaces that say which address and UDP port they saw, and HTTP/3 clients in the
//! IPv4-only client namespace: the in-process quinn client and headless Chromium.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or a tool is missing. Each test builds its own uniquely named
//! namespaces and deletes them on drop.

mod chromium;
mod rebind;

use std::process::Stdio;
use std::time::{Duration, Instant};

use kracauer_testbed::quic::{H3Error, H3Reply, Request};
use kracauer_testbed::topology::{BACKEND_A, BACKEND_B, CLIENT_V6, HTTPS_PORT};
use kracauer_testbed::{Netns, Topology, Variant, pattern, require_privileged};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// The backend's `/whoami` answer: the address and UDP port it saw.
fn seen(reply: &H3Reply) -> (String, u16) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let text = String::from_utf8_lossy(&reply.body);
    let (ip, port) = text.trim().rsplit_once(' ').expect("IP PORT");
    (ip.to_owned(), port.parse().expect("port"))
}

/// Runs `nft` in `ns` with `rules` (a file's text).
fn nft(ns: &Netns, rules: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(rules.as_bytes())
        .expect("write the rules");
    assert!(child.wait().expect("nft").success(), "nft -f: {rules}");
}

/// Counts the UDP datagrams to port 443 that reach `ns` (nftables counter).
fn count_udp_443(ns: &Netns) {
    nft(
        ns,
        "table inet krc_seen {\n chain input { type filter hook input priority -300; udp dport 443 counter; }\n}\n",
    );
}

fn counted_udp_443(ns: &Netns) -> u64 {
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "krc_seen"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("a counter")
}

fn metrics(k: &kracauer_testbed::Kracauer<'_>) -> String {
    k.metrics().expect("metrics").body
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{body}"))
}

/// Waits until metric `name` satisfies `ok` (workers publish their counters between
/// batches, so a scrape may lag the traffic a little).
fn metric_reaches(k: &kracauer_testbed::Kracauer<'_>, name: &str, ok: impl Fn(u64) -> bool) {
    eventually(name, Duration::from_secs(10), || {
        ok(metric(&metrics(k), name))
    });
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn http3_reaches_an_ipv6_backend_from_the_embedded_address_and_the_client_port() {
    require_privileged(
        "http3_reaches_an_ipv6_backend_from_the_embedded_address_and_the_client_port",
    );
    // A routed service address (a /32 into the TUN) and the host's own (UDP rules).
    for (variant, port) in [(Variant::Routed, 40_443), (Variant::Shared, 40_444)] {
        let tb = Topology::build(variant).unwrap();
        let _h3 = tb.start_h3().unwrap();
        let k = tb.start_kracauer(KRACAUER, &tb.quic_config("")).unwrap();
        let reply = tb.h3_get("a.example", "/whoami", port).unwrap().unwrap();
        assert_eq!(reply.local_port, port);
        assert_eq!(
            seen(&reply),
            (CLIENT_V6.to_string(), port),
            "the backend sees 2001:db8:64::c633:6402 and the client's own port ({variant:?})"
        );
        // TCP on 443 beside it still works.
        assert_eq!(tb.https_get("a.example", "/").unwrap().status, 200);
        metric_reaches(&k, "kracauer_quic_flows_routed_total", |n| n == 1);
        metric_reaches(
            &k,
            "kracauer_packets_total{direction=\"to_client\",protocol=\"quic\"}",
            |n| n > 0,
        );
        if variant == Variant::Shared {
            let rules = tb.router.ip(["-4", "rule", "show"]).unwrap();
            assert!(
                rules.contains("ipproto udp") && rules.contains("dport 443"),
                "{rules}"
            );
        }
    }
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn http3_names_go_to_their_own_backends_and_the_access_log_says_quic() {
    require_privileged("http3_names_go_to_their_own_backends_and_the_access_log_says_quic");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _h3 = tb.start_h3().unwrap();
    let log = tb.dir().join("access.log");
    let extra = format!("[log]\naccess = \"file:{}\"\n", log.display());
    let k = tb
        .start_kracauer(KRACAUER, &tb.quic_config(&extra))
        .unwrap();
    for (name, backend) in [
        ("a.example", BACKEND_A),
        ("www.a.example", BACKEND_A),
        ("b.example", BACKEND_B),
    ] {
        let reply = tb.h3_get(name, "/whoami", 0).unwrap().unwrap();
        assert_eq!(seen(&reply).0, CLIENT_V6.to_string());
        // Which backend answered: its certificate names `name` (each backend has only
        // its own), and the flow's log line below names the backend.
        let _ = backend;
    }
    // An orderly stop logs every flow still in the table.
    assert!(k.terminate().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for (name, backend) in [("a.example", BACKEND_A), ("b.example", BACKEND_B)] {
        let line = text
            .lines()
            .find(|l| l.contains("protocol=quic") && l.contains(&format!("name={name} ")))
            .unwrap_or_else(|| panic!("no QUIC line for {name}:\n{text}"));
        assert!(line.contains(&format!("backend=[{backend}]:443")), "{line}");
    }
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn an_unknown_name_gets_connection_close_and_no_backend_sees_a_packet() {
    require_privileged("an_unknown_name_gets_connection_close_and_no_backend_sees_a_packet");
    let tb = Topology::build(Variant::Routed).unwrap();
    let h3 = tb.start_h3().unwrap();
    count_udp_443(&tb.backend_a);
    count_udp_443(&tb.backend_b);
    let k = tb.start_kracauer(KRACAUER, &tb.quic_config("")).unwrap();
    let answer = tb.h3_get("nope.example", "/whoami", 0).unwrap();
    assert_eq!(
        answer,
        Err(H3Error::Closed(0x170)),
        "crypto error unrecognized_name"
    );
    assert_eq!(
        (
            counted_udp_443(&tb.backend_a),
            counted_udp_443(&tb.backend_b)
        ),
        (0, 0)
    );
    assert_eq!((h3[0].incoming(), h3[1].incoming()), (0, 0));
    metric_reaches(
        &k,
        "kracauer_flows_ended_total{outcome=\"unknown_name\",protocol=\"quic\"}",
        |n| n >= 1,
    );
    // A known name right after still goes through.
    assert!(tb.h3_get("a.example", "/whoami", 0).unwrap().is_ok());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn http3_downloads_arrive_whole_with_three_percent_loss_each_way() {
    require_privileged("http3_downloads_arrive_whole_with_three_percent_loss_each_way");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _h3 = tb.start_h3().unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.quic_config("")).unwrap();
    tb.inject_loss(3).unwrap();
    const N: u64 = 2_000_000;
    for _ in 0..3 {
        let reply = tb
            .h3_get("a.example", &format!("/bytes/{N}"), 0)
            .unwrap()
            .unwrap();
        let body = &reply.body;
        assert!(body.len() as u64 > N, "{} bytes", body.len());
        assert_eq!(pattern::first_mismatch(0, &body[..N as usize]), None);
        let tail = String::from_utf8_lossy(&body[N as usize..]);
        assert_eq!(tail, format!("\n--\n{CLIENT_V6} {}", reply.local_port));
    }
    assert!(
        tb.loss_dropped().unwrap() > 0,
        "the loss rules dropped packets"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn two_hundred_concurrent_http3_connections_each_reach_the_backend_with_their_own_port() {
    require_privileged(
        "two_hundred_concurrent_http3_connections_each_reach_the_backend_with_their_own_port",
    );
    let tb = Topology::build(Variant::Shared).unwrap();
    let h3 = tb.start_h3().unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.quic_config("")).unwrap();
    let reqs: Vec<Request> = (0..200)
        .map(|i| Request {
            sni: if i % 2 == 0 { "a.example" } else { "b.example" }.into(),
            path: "/whoami".into(),
            port: 41_000 + i,
        })
        .collect();
    let answers = kracauer_testbed::quic::get_many(
        &tb.client,
        &tb.client_tls(),
        Topology::service(HTTPS_PORT),
        reqs,
    )
    .unwrap();
    for (i, a) in answers.iter().enumerate() {
        let reply = a.as_ref().unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(seen(reply), (CLIENT_V6.to_string(), 41_000 + i as u16));
    }
    assert_eq!(h3[0].incoming() + h3[1].incoming(), 200);
    metric_reaches(&k, "kracauer_quic_flows_routed_total", |n| n == 200);
}

/// Polls `f` until it is true or `limit` passes (a bound on waiting, not a timed
/// assertion: the condition is what is checked).
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
