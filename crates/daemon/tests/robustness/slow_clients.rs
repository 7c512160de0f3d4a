//! Slow clients: thousands of stalled ClientHellos and a one-byte-a-second trickler are
//! cut at the peek deadline while other clients are served.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::client::minimal_client_hello;
use kracauer_testbed::topology::{CLIENT_V4, HTTPS_PORT, SERVICE_V4};
use kracauer_testbed::{Topology, Variant};

use super::{
    KRACAUER, curl_get, figure, figure_counters, legit_until, metric, output_text, percentile,
    require_privileged_with_tools, serial,
};

const SLOW_HELLOS: &str = include_str!("slowhellos.py");

/// The first half of a TLS ClientHello for `a.example`, as hex.
fn half_hello_hex() -> String {
    let hello = minimal_client_hello("a.example");
    hello[..hello.len() / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
#[ignore = "privileged: needs root, network namespaces, python3 and curl (run with --include-ignored)"]
fn stalled_hellos_and_a_trickler_are_cut_at_the_peek_deadline_and_others_are_served() {
    require_privileged_with_tools(
        "stalled_hellos_and_a_trickler_are_cut_at_the_peek_deadline_and_others_are_served",
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // The slow clients use .2; a legitimate client .3, the trickler .4.
    let legit_src = Ipv4Addr::new(198, 51, 100, 3);
    let trickle_src = Ipv4Addr::new(198, 51, 100, 4);
    for a in [legit_src, trickle_src] {
        tb.client
            .ip(["addr", "add", &format!("{a}/24"), "dev", "eth0"])
            .unwrap();
    }
    // Unbound sockets (the trickler's) leave from .4; the others bind their address.
    tb.client
        .ip([
            "route",
            "add",
            &format!("{SERVICE_V4}/32"),
            "via",
            "198.51.100.1",
        ])
        .unwrap();
    tb.client
        .ip([
            "route",
            "change",
            &format!("{SERVICE_V4}/32"),
            "via",
            "198.51.100.1",
            "src",
            &trickle_src.to_string(),
        ])
        .unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    assert!(curl_get(&tb, legit_src).is_some());

    const RUN_SECS: u64 = 14;
    let started = Instant::now();
    let until = started + Duration::from_secs(RUN_SECS);
    let (slow, legit, trickle, flows_peak) = thread::scope(|s| {
        let slow = s.spawn(|| {
            tb.client
                .command("python3")
                .args(["-c", SLOW_HELLOS, &CLIENT_V4.to_string()])
                .args([&SERVICE_V4.to_string(), &HTTPS_PORT.to_string(), "5000"])
                .args([&RUN_SECS.to_string(), &half_hello_hex()])
                .stdin(Stdio::null())
                .output()
                .expect("run the slow clients")
        });
        let trickle = s.spawn(|| {
            tb.client
                .run(move || trickle_hello(trickle_src))
                .expect("enter the client namespace")
        });
        thread::sleep(Duration::from_secs(1));
        let legit = s.spawn(|| legit_until(&tb, legit_src, until));
        let mut peak = 0;
        while Instant::now() < until {
            peak = peak.max(metric(&k, "kracauer_flows"));
            thread::sleep(Duration::from_millis(500));
        }
        (
            slow.join().expect("slow thread"),
            legit.join().expect("legit thread"),
            trickle.join().expect("trickle thread"),
            peak,
        )
    });
    let slow_text = output_text(&slow);
    let field = |name: &str| -> f64 {
        let mut w = slow_text.split_whitespace();
        while let Some(x) = w.next() {
            if x == name {
                return w.next().and_then(|v| v.parse().ok()).unwrap_or(-1.0);
            }
        }
        -1.0
    };
    let (connected, reset, first, last) = (
        field("connected"),
        field("reset"),
        field("first_reset"),
        field("last_reset"),
    );
    let limited = metric(
        &k,
        "kracauer_drops_total{reason=\"client_peek_limit\",side=\"client\"}",
    );
    let peek_timeouts = metric(
        &k,
        "kracauer_flows_ended_total{outcome=\"peek_timeout\",protocol=\"tcp\"}",
    );
    let (attempts, ok) = legit;
    figure_counters(&k);
    figure(&format!(
        "slow hellos: 5000 attempted from one address; connected {connected}, reset {reset} \
         (first at {first:.1} s, last at {last:.1} s); SYNs over the per-address cap {limited}; \
         peek timeouts {peek_timeouts}; most flows in the table {flows_peak}"
    ));
    figure(&format!(
        "slow hellos: trickler {trickle:?}; legitimate {}/{attempts} ok, connect p50 {:?} max {:?}",
        ok.len(),
        percentile(&ok, 0.5),
        ok.last().copied().unwrap_or_default()
    ));

    assert!(connected >= 64.0, "the cap's worth connected: {slow_text}");
    assert!(limited > 0, "the per-address cap refused the rest");
    assert!(reset >= 64.0, "stalled hellos are reset: {slow_text}");
    assert!(first >= 4.0, "not before the peek deadline: {slow_text}");
    // 64 peeking from .2, one from the trickler, the legitimate client's (lingering) flows.
    assert!(
        flows_peak <= 64 + 1 + u64::from(attempts) + 8,
        "the per-address cap holds: {flows_peak} flows"
    );
    let (cut_after, bytes_sent) = trickle.expect("the trickler was cut");
    assert!(
        cut_after <= Duration::from_secs(10)
            && bytes_sent < minimal_client_hello("a.example").len(),
        "trickler cut at the deadline: {cut_after:?}, {bytes_sent} bytes"
    );
    assert!(attempts >= 10);
    assert_eq!(ok.len() as u32, attempts, "legitimate clients unaffected");
    // Everything the slow clients held is gone once they stop.
    let end = Instant::now() + Duration::from_secs(15);
    while metric(&k, "kracauer_peek_bytes") > 0 {
        assert!(Instant::now() < end, "peek buffers outlived the deadline");
        thread::sleep(Duration::from_millis(250));
    }
}

/// Connects (from `src`, the route's source address) and sends a ClientHello one byte a
/// second until the connection fails: how long it lasted and how many bytes went out, or `None` if never cut.
fn trickle_hello(src: Ipv4Addr) -> Option<(Duration, usize)> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((SERVICE_V4, HTTPS_PORT)),
        Duration::from_secs(10),
    )
    .ok()?;
    assert_eq!(s.local_addr().ok()?.ip(), std::net::IpAddr::V4(src));
    let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
    let start = Instant::now();
    let hello = minimal_client_hello("a.example");
    let mut buf = [0u8; 64];
    for (i, b) in hello.iter().enumerate() {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            return Some((start.elapsed(), i));
        }
        match s.read(&mut buf) {
            Ok(0) => return Some((start.elapsed(), i + 1)),
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                return Some((start.elapsed(), i + 1));
            }
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(20) {
            return None;
        }
    }
    None
}
