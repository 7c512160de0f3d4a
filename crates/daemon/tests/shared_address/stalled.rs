//! 2,000 connections at once from one client address while 50 others from the same
//! address sit stalled mid-hello: the 50 are cut at the peek deadline, the 2,000 served.

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use kracauer_testbed::client::minimal_client_hello;
use kracauer_testbed::topology::{CLIENT_V4, SERVICE_V4};
use kracauer_testbed::{Topology, Variant};

use super::origin::Origin;
use super::{
    KRACAUER, figure, h2load, metric, output_text, require_privileged_with, serial, syn_retransmits,
};

/// The robustness tests' slow-client generator: N connections from one address, each
/// sends half a ClientHello and nothing more; it reports when each was reset.
const SLOW_HELLOS: &str = include_str!("../robustness/slowhellos.py");

const STALLED: u32 = 50;
const PROMPT: u32 = 2_000;

/// The first half of a TLS ClientHello naming n.example, as hex.
fn half_hello_hex() -> String {
    let rec = minimal_client_hello("n.example");
    rec[..rec.len() / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx, openssl, h2load, nstat and python3 (run with --include-ignored)"]
fn stalled_hellos_among_2000_connections_from_one_address_are_cut_and_the_rest_served() {
    require_privileged_with(
        "stalled_hellos_among_2000_connections_from_one_address_are_cut_and_the_rest_served",
        &["h2load", "nstat", "python3"],
    );
    super::origin::require_nginx_and_openssl();
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    tb.client
        .sysctl("net.ipv4.ip_local_port_range", "1024 60999")
        .unwrap();
    let _origin = Origin::start(&tb);
    let k = tb
        .start_kracauer(KRACAUER, &Origin::kracauer_config(&tb, ""))
        .unwrap();
    let before = syn_retransmits(&tb.client);
    const RUN_SECS: u64 = 12;
    let (slow, (prompt, text)) = thread::scope(|s| {
        let slow = s.spawn(|| {
            tb.client
                .command("python3")
                .args(["-c", SLOW_HELLOS, &CLIENT_V4.to_string()])
                .args([&SERVICE_V4.to_string(), "443", &STALLED.to_string()])
                .args([&RUN_SECS.to_string(), &half_hello_hex()])
                .stdin(Stdio::null())
                .output()
                .expect("run the stalled clients")
        });
        // The stalled ones are in first and hold their place in the address's allowance.
        thread::sleep(Duration::from_secs(1));
        let prompt = h2load(&tb, PROMPT, PROMPT);
        (slow.join().expect("stalled clients"), prompt)
    });
    let syn = syn_retransmits(&tb.client) - before;
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
    // The metrics snapshot is at most a second old.
    let mut peek_timeouts = 0;
    for _ in 0..30 {
        peek_timeouts = metric(
            &k,
            "kracauer_flows_ended_total{outcome=\"peek_timeout\",protocol=\"tcp\"}",
        );
        if peek_timeouts >= u64::from(STALLED) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    figure(&format!(
        "stalled among many: {STALLED} stalled mid-hello, connected {connected}, reset {reset} \
         (first at {first:.1} s, last at {last:.1} s); peek timeouts {peek_timeouts}"
    ));
    figure(&format!(
        "stalled among many: {PROMPT} at once from the same address: {} succeeded, {} failed, \
         {} errored, {:.2} s, slowest connect {:.3} s; client SYN retransmissions {syn}; SYN \
         cookies for the address {}",
        prompt.succeeded,
        prompt.failed,
        prompt.errored,
        prompt.seconds,
        prompt.connect_max,
        metric(&k, "kracauer_syn_cookies_for_address_total")
    ));
    assert_eq!(connected, f64::from(STALLED), "{slow_text}");
    assert_eq!(
        reset,
        f64::from(STALLED),
        "every stalled hello is cut: {slow_text}"
    );
    // The deadline is 5 s from each SYN; the generator's clock starts before its SYNs.
    assert!(
        first >= 4.5 && last <= 7.0,
        "cut at the peek deadline: {slow_text}"
    );
    assert!(peek_timeouts >= u64::from(STALLED));
    assert_eq!(
        (prompt.succeeded, prompt.failed + prompt.errored),
        (u64::from(PROMPT), 0),
        "the rest unaffected:\n{text}"
    );
}
