//! Path MTU with the kernel fast path on: spliced flows cross links smaller than the
//! TUN's MTU. A segment over the route's MTU is left to the TUN path, whose forwarding
//! makes the kernel's ICMP error; the error comes back into the TUN and is translated
//! for the other side, whose kernel must accept it (its quoted sequence number inside
//! its window: `TcpExtOutOfWindowIcmps` stays put), learn the smaller MTU, and send
//! segments that fit, which the kernel path carries again.

use kracauer_testbed::topology::{CLIENT_V4, CLIENT_V6, SERVICE_V4};
use kracauer_testbed::{Netns, Topology, Variant, prom, require_privileged};

use super::KRACAUER;
use super::fastpath::{both_ways, config, scrape};
use super::figure;

/// Bytes each way: through the TUN alone this is well over 6,000 packets (GSO
/// super-packets of at most 64 KB, and as many ACKs the other way).
const N: u64 = 200 * 1000 * 1000;
/// TUN packets allowed: the handshakes, peeks and closes, and the segments sent before
/// the smaller MTU was learnt.
const TUN_PACKETS: u64 = 2000;

/// What the kernel of `ns` counted of ICMP errors about TCP: (accepted as in window,
/// judged out of window). `v6` picks the IPv6 counter of errors received.
fn icmp_counters(ns: &Netns, v6: bool) -> (u64, u64) {
    let received = if v6 {
        "Icmp6InPktTooBigs"
    } else {
        "IcmpInDestUnreachs"
    };
    (
        ns.net_counter(received).expect("an ICMP counter"),
        ns.net_counter("TcpExtOutOfWindowIcmps")
            .expect("TcpExtOutOfWindowIcmps"),
    )
}

/// The route `ns` holds for `to`, on one line.
fn route(ns: &Netns, to: &str) -> String {
    let out = ns.ip(["route", "get", to]).unwrap_or_default();
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn fast_path_flows_cross_a_1280_backend_link_through_translated_packet_too_big() {
    require_privileged(
        "fast_path_flows_cross_a_1280_backend_link_through_translated_packet_too_big",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    // Client link 1400, backend links 1280 (the IPv6 minimum), TUN 1500: Kracauer
    // announces MSS 1440, the client sends 1400-byte packets, 1420 once IPv6, which the
    // router's own forwarding answers with Packet Too Big (1280) into the TUN.
    tb.set_link_mtus(1400, 1280).unwrap();
    let k = tb.start_kracauer(KRACAUER, &config(&tb, "")).unwrap();
    let (unreach0, oow0) = icmp_counters(&tb.client, false);
    let backend0 = icmp_counters(&tb.backend_a, true);

    let (tun_packets, to_backend, to_client) = both_ways(&tb, &k, N);

    let (unreach1, oow1) = icmp_counters(&tb.client, false);
    let backend1 = icmp_counters(&tb.backend_a, true);
    let client_route = route(&tb.client, &SERVICE_V4.to_string());
    let repeated = prom::drops(&scrape(&k), "backend_too_big_repeated");
    figure(&format!(
        "path MTU, fast path on (client link 1400, backend link 1280): {N} bytes each way \
         intact; TUN packets {tun_packets}; bytes counted to backend {to_backend}, to client \
         {to_client}; Fragmentation Needed received by the client +{} (repeats not passed \
         on {repeated}); client TcpExtOutOfWindowIcmps +{}; backend a \
         TcpExtOutOfWindowIcmps +{}; client route: {client_route}",
        unreach1 - unreach0,
        oow1 - oow0,
        backend1.1 - backend0.1,
    ));
    carried_by_the_kernel(tun_packets, to_backend, to_client);
    assert!(
        unreach1 > unreach0,
        "the client got the translated Fragmentation Needed"
    );
    assert_eq!(
        oow1, oow0,
        "the client's kernel accepted every translated error"
    );
    assert_eq!(
        backend1.1, backend0.1,
        "no error reached backend a out of window"
    );
    assert!(
        client_route.contains("mtu 1260"),
        "the client learned 1280 − 20: {client_route}"
    );
    assert!(k.terminate().unwrap().success());
}

#[test]
#[ignore = "privileged: needs root, network namespaces and BPF (run with --include-ignored)"]
fn fast_path_flows_cross_a_small_ipv4_mtu_through_translated_fragmentation_needed() {
    require_privileged(
        "fast_path_flows_cross_a_small_ipv4_mtu_through_translated_fragmentation_needed",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    // Every link 1500, but the router's route to the client is locked at 1280 (a tunnel
    // on the client's side, say): the client announces MSS 1460, so backend a sends
    // 1500-byte IPv6 packets, 1480 once IPv4. The program leaves them to the TUN path,
    // whose forwarding makes Fragmentation Needed (1280) to the service address, into
    // the TUN; Kracauer sends backend a Packet Too Big (1300).
    tb.router
        .ip([
            "route",
            "add",
            &format!("{CLIENT_V4}/32"),
            "dev",
            "to-client",
            "mtu",
            "lock",
            "1280",
        ])
        .unwrap();
    let k = tb.start_kracauer(KRACAUER, &config(&tb, "")).unwrap();
    let client0 = icmp_counters(&tb.client, false);
    let (too_big0, oow0) = icmp_counters(&tb.backend_a, true);

    let (tun_packets, to_backend, to_client) = both_ways(&tb, &k, N);

    let client1 = icmp_counters(&tb.client, false);
    let (too_big1, oow1) = icmp_counters(&tb.backend_a, true);
    let backend_route = route(&tb.backend_a, &CLIENT_V6.to_string());
    let repeated = prom::drops(&scrape(&k), "client_too_big_repeated");
    figure(&format!(
        "path MTU, fast path on (router's route to the client 1280): {N} bytes each way \
         intact; TUN packets {tun_packets}; bytes counted to backend {to_backend}, to client \
         {to_client}; Packet Too Big received by backend a +{} (repeats not passed on \
         {repeated}); backend a TcpExtOutOfWindowIcmps +{}; client TcpExtOutOfWindowIcmps \
         +{}; backend a's route: {backend_route}",
        too_big1 - too_big0,
        oow1 - oow0,
        client1.1 - client0.1,
    ));
    carried_by_the_kernel(tun_packets, to_backend, to_client);
    assert!(
        too_big1 > too_big0,
        "backend a got the translated Packet Too Big"
    );
    assert_eq!(
        oow1, oow0,
        "backend a's kernel accepted every translated error"
    );
    assert_eq!(
        client1.1, client0.1,
        "no error reached the client out of window"
    );
    assert!(
        backend_route.contains("mtu 1300"),
        "backend a learned 1280 + 20: {backend_route}"
    );
    assert!(k.terminate().unwrap().success());
}

/// The data took the kernel path (through the TUN it would be thousands of packets), and
/// the metrics counted every byte (the upload's first bytes are peeked, not counted).
fn carried_by_the_kernel(tun_packets: u64, to_backend: u64, to_client: u64) {
    assert!(
        (1..TUN_PACKETS).contains(&tun_packets),
        "TUN packets {tun_packets}"
    );
    assert!(
        to_client >= N && to_backend >= N - 64 * 1024,
        "{to_backend} {to_client}"
    );
}
