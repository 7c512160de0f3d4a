//! On a router that forwards nothing itself, the daemon forwards on its own interfaces
//! (the TUN, the client link for IPv4, the backend link for IPv6) and nowhere else, and
//! puts every value back when it stops.

use kracauer_testbed::{Topology, Variant, require_privileged};

use super::KRACAUER;

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn on_a_router_without_forwarding_the_daemon_forwards_on_its_interfaces_only_and_puts_them_back() {
    require_privileged(
        "on_a_router_without_forwarding_the_daemon_forwards_on_its_interfaces_only_and_puts_them_back",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let r = &tb.router;
    // The testbed's router forwards globally; this one does not.
    r.sysctl("net.ipv4.ip_forward", "0").unwrap();
    r.sysctl("net.ipv6.conf.all.forwarding", "0").unwrap();
    let get = |path: &str| r.read(&format!("/proc/sys/net/{path}")).unwrap();
    let watched = [
        "ipv4/ip_forward",
        "ipv6/conf/all/forwarding",
        "ipv4/conf/to-client/forwarding",
        "ipv4/conf/br0/forwarding",
        "ipv6/conf/br0/force_forwarding",
        "ipv6/conf/to-client/force_forwarding",
    ];
    let before: Vec<String> = watched.iter().map(|p| get(p)).collect();
    assert!(before.iter().all(|v| v == "0"), "{before:?}");

    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    assert_eq!(tb.https_get("b.example", "/").unwrap().status, 200);
    let during: Vec<String> = watched.iter().map(|p| get(p)).collect();
    assert_eq!(
        during,
        ["0", "0", "1", "0", "1", "0"],
        "only the client link (IPv4) and the backend link (IPv6) forward:\n{}",
        k.log()
    );
    assert!(
        k.log()
            .contains("sysctl net.ipv4.conf.to-client.forwarding = 1 (was 0; put back at exit)"),
        "{}",
        k.log()
    );
    assert!(k.terminate().unwrap().success());
    let after: Vec<String> = watched.iter().map(|p| get(p)).collect();
    assert_eq!(after, before);
}
