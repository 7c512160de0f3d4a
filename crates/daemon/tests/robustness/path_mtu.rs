//! Path MTU: large transfers cross links smaller than the TUN's MTU through translated
//! Packet Too Big messages.

use kracauer_testbed::topology::SERVICE_V4;
use kracauer_testbed::{Topology, Variant};

use super::{KRACAUER, figure, require_privileged_with_tools, serial};

#[test]
#[ignore = "privileged: needs root, network namespaces, python3 and curl (run with --include-ignored)"]
fn large_transfers_cross_small_mtus_through_translated_packet_too_big() {
    require_privileged_with_tools(
        "large_transfers_cross_small_mtus_through_translated_packet_too_big",
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // Client link 1400, backend link 1280 (the IPv6 minimum); the TUN stays at 1500, so
    // Kracauer announces MSS 1440 and the small links must be found by PMTUD.
    tb.set_link_mtus(1400, 1280).unwrap();
    // The TUN path alone here; the same with the kernel fast path carrying the data is
    // `e2e/fastpath_path_mtu.rs`.
    let config = tb
        .config("")
        .replacen("mtu = 1500\n", "mtu = 1500\nfastpath = \"off\"\n", 1);
    let _k = tb.start_kracauer(KRACAUER, &config).unwrap();
    let oow_before = tb.client.net_counter("TcpExtOutOfWindowIcmps").unwrap();
    let unreach_before = tb.client.net_counter("IcmpInDestUnreachs").unwrap();

    const SIZE: u64 = 8 * 1024 * 1024;
    let up = tb
        .upload("a.example", SIZE)
        .expect("upload across the small MTUs");
    assert!(
        up.body.contains(&format!("sink={SIZE}")) && up.body.contains("mismatch=none"),
        "{up:?}"
    );
    let down = tb
        .download("a.example", SIZE)
        .expect("download across the small MTUs");
    assert_eq!(down, SIZE);

    let oow = tb.client.net_counter("TcpExtOutOfWindowIcmps").unwrap() - oow_before;
    let unreach = tb.client.net_counter("IcmpInDestUnreachs").unwrap() - unreach_before;
    let route = tb
        .client
        .ip(["route", "get", &SERVICE_V4.to_string()])
        .unwrap_or_default();
    figure(&format!(
        "path MTU: {SIZE} bytes up and down intact; Fragmentation Needed received by the client \
         {unreach}; TcpExtOutOfWindowIcmps +{oow}; client route: {}",
        route.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    assert!(
        unreach >= 1,
        "the client got the translated Fragmentation Needed"
    );
    assert_eq!(oow, 0, "the kernel accepted every translated error");
    assert!(
        route.contains("mtu 1260"),
        "the client learned 1280 − 20: {route}"
    );
}
