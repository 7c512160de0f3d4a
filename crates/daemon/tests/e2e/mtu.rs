//! `[tun] mtu` changed by a reload (SIGHUP): the device takes the new MTU, new
//! connections agree their MSS from it, and a transfer under way goes on.

use std::time::Duration;

use kracauer_testbed::topology::{HTTP_PORT, TUN};
use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{KRACAUER, eventually, open, read_all, send_pattern, start_upload};

/// The TUN device's MTU, as `ip link` says.
fn tun_mtu(tb: &Topology) -> u16 {
    let link = tb
        .router
        .ip(["-o", "link", "show", TUN])
        .expect("ip link show");
    let mtu = link
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok());
    mtu.unwrap_or_else(|| panic!("no mtu in {link:?}"))
}

/// The MSS the client's kernel keeps for a new connection to the HTTP port (what the
/// SYN-ACK offered, less the timestamp option's 12 bytes).
fn client_mss(tb: &Topology) -> u32 {
    let s = open(tb, HTTP_PORT);
    socket2::SockRef::from(&s).tcp_mss().expect("TCP_MAXSEG")
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_tun_mtu_changed_by_reload_sets_the_mss_of_new_connections() {
    require_privileged("a_tun_mtu_changed_by_reload_sets_the_mss_of_new_connections");
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = tb.config("");
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();
    assert_eq!(tun_mtu(&tb), 1500);
    assert_eq!(client_mss(&tb), 1500 - 60 - 12);
    let total = 20 * 1000 * 1000;
    let mut upload = open(&tb, HTTP_PORT);
    start_upload(&mut upload, "a.example", total, total / 2);

    let smaller = config.replace("mtu = 1500", "mtu = 1400");
    assert_ne!(smaller, config);
    k.reload(&smaller).unwrap();
    eventually("the new MSS", Duration::from_secs(10), || {
        (client_mss(&tb) == 1400 - 60 - 12).then_some(())
    });
    assert_eq!(tun_mtu(&tb), 1400);
    send_pattern(&mut upload, total / 2, total);
    let answer = read_all(&mut upload);
    assert!(
        answer.ends_with(&format!("sink={total} mismatch=none\n")),
        "{answer}"
    );
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    assert!(
        k.log().contains("reload: applied [tun] mtu 1500 -> 1400"),
        "{}",
        k.log()
    );
}
