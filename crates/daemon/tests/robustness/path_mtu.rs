//! Path MTU: large transfers cross links smaller than the TUN's MTU through translated
//! Packet Too Big messages.

use std::thread;
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT, SERVICE_V4};
use kracauer_testbed::{Topology, Variant};

use super::{KRACAUER, figure, require_privileged_with_tools, serial};

/// A counter from `/proc/net/netstat` or `/proc/net/snmp` in the client namespace
/// (`group` such as `TcpExt`, `name` such as `OutOfWindowIcmps`).
fn client_counter(tb: &Topology, file: &str, group: &str, name: &str) -> u64 {
    let out = tb
        .client
        .command("cat")
        .arg(file)
        .output()
        .expect("read the client's counters");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{group}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        panic!("no {group} in {file}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {group} {name} in {file}"))
}

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
    tb.client
        .ip(["link", "set", "eth0", "mtu", "1400"])
        .unwrap();
    tb.router
        .ip(["link", "set", "to-client", "mtu", "1400"])
        .unwrap();
    for dev in ["to-a", "to-b", "br0"] {
        tb.router.ip(["link", "set", dev, "mtu", "1280"]).unwrap();
    }
    for ns in [&tb.backend_a, &tb.backend_b] {
        ns.ip(["link", "set", "eth0", "mtu", "1280"]).unwrap();
    }
    // The links were just changed: wait (bounded) until the router reaches backend a, so
    // a neighbour-discovery hiccup is not taken for Kracauer's failure.
    let backend = std::net::SocketAddr::from((BACKEND_A, HTTP_PORT));
    let reachable = (0..10).any(|_| {
        let ok = tb
            .router
            .run(move || std::net::TcpStream::connect_timeout(&backend, Duration::from_secs(1)))
            .is_ok_and(|r| r.is_ok());
        if !ok {
            thread::sleep(Duration::from_millis(500));
        }
        ok
    });
    assert!(
        reachable,
        "backend a unreachable from the router after the MTU change"
    );
    // The TUN path's translation of the errors is what is checked here (the kernel fast
    // path passes ICMP to the TUN path too, but carries the data: its own MTU handling
    // is the fast-path tests' and the differential test's).
    let config = tb
        .config("")
        .replacen("mtu = 1500\n", "mtu = 1500\nfastpath = \"off\"\n", 1);
    let _k = tb.start_kracauer(KRACAUER, &config).unwrap();
    let oow_before = client_counter(&tb, "/proc/net/netstat", "TcpExt", "OutOfWindowIcmps");
    let unreach_before = client_counter(&tb, "/proc/net/snmp", "Icmp", "InDestUnreachs");

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

    let oow = client_counter(&tb, "/proc/net/netstat", "TcpExt", "OutOfWindowIcmps") - oow_before;
    let unreach = client_counter(&tb, "/proc/net/snmp", "Icmp", "InDestUnreachs") - unreach_before;
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
