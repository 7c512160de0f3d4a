//! 500 TLS connections at once from one client address, 40,000 requests, through Kracauer
//! with its defaults and through nginx, in one run.

use kracauer_testbed::{Topology, Variant};

use super::origin::{Origin, StreamPeer};
use super::{
    H2load, KRACAUER, figure, h2load, metric, require_privileged_with, serial, syn_retransmits,
};

const CONNECTIONS: u32 = 500;
const REQUESTS: u32 = 40_000;

/// One peer's run: what h2load said and the SYNs the client retransmitted.
fn report(peer: &str, r: &H2load, syn_retransmits: u64) {
    figure(&format!(
        "burst via {peer}: {CONNECTIONS} connections at once from one address, {REQUESTS} \
         requests: {} succeeded, {} failed, {} errored; {:.2} s; slowest connect {:.3} s; \
         client SYN retransmissions {syn_retransmits}",
        r.succeeded, r.failed, r.errored, r.seconds, r.connect_max
    ));
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx, openssl, h2load and nstat (run with --include-ignored)"]
fn a_burst_from_one_address_is_served_in_full_with_no_more_syn_retransmissions_than_nginx() {
    require_privileged_with(
        "a_burst_from_one_address_is_served_in_full_with_no_more_syn_retransmissions_than_nginx",
        &["h2load", "nstat"],
    );
    super::origin::require_nginx_and_openssl();
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // Many connections from one client address: the client's ports and nginx's upstream
    // ports never overlap, so a tuple one peer left on the origin is never met by the
    // other (as the bench does).
    tb.client
        .sysctl("net.ipv4.ip_local_port_range", "1024 32767")
        .unwrap();
    tb.router
        .sysctl("net.ipv4.ip_local_port_range", "32768 60999")
        .unwrap();
    let _origin = Origin::start(&tb);

    // Kracauer, with every default (peeks_per_client 64, timeouts.custody 100ms).
    let k = tb
        .start_kracauer(KRACAUER, &Origin::kracauer_config(&tb, ""))
        .unwrap();
    let before = syn_retransmits(&tb.client);
    let (via_k, text_k) = h2load(&tb, REQUESTS, CONNECTIONS);
    let syn_k = syn_retransmits(&tb.client) - before;
    report("kracauer", &via_k, syn_k);
    let counters = [
        "kracauer_syn_cookies_for_address_total",
        "kracauer_cookie_acks_deferred_total",
        "kracauer_custody_taken_total",
        "kracauer_pressure_cuts_total",
    ]
    .map(|m| format!("{m} {}", metric(&k, m)));
    let limited = metric(
        &k,
        "kracauer_drops_total{reason=\"client_peek_limit\",side=\"client\"}",
    );
    figure(&format!(
        "burst via kracauer: {}; client_peek_limit drops {limited}",
        counters.join(", ")
    ));
    k.terminate().unwrap();

    // nginx in its place.
    let peer = StreamPeer::start(&tb);
    let before = syn_retransmits(&tb.client);
    let (via_n, text_n) = h2load(&tb, REQUESTS, CONNECTIONS);
    let syn_n = syn_retransmits(&tb.client) - before;
    report("nginx", &via_n, syn_n);
    drop(peer);

    assert_eq!(
        (via_n.succeeded, via_n.failed + via_n.errored),
        (u64::from(REQUESTS), 0),
        "nginx serves the burst (the comparison needs it):\n{text_n}"
    );
    assert_eq!(
        (via_k.succeeded, via_k.failed + via_k.errored),
        (u64::from(REQUESTS), 0),
        "every request through Kracauer succeeds:\n{text_k}"
    );
    assert!(
        syn_k <= syn_n,
        "the client retransmitted {syn_k} SYNs through Kracauer, {syn_n} through nginx"
    );
}
