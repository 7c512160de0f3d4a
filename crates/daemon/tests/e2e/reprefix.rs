//! The prefix changed by a reload (SIGHUP): connections that began under the old /96
//! keep it to their end (their backends know them by it), new ones take the new /96,
//! and the old prefix's route goes once its last connection has ended.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT, PREFIX, ROUTER_V6};
use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{KRACAUER, eventually, open, read_all, send_pattern, start_upload};

const NEW_PREFIX: &str = "2001:db8:65::/96";
/// The client's address in the new prefix.
const CLIENT_V6_NEW: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x65, 0, 0, 0, 0xc633, 0x6402);

/// Whether the router routes `prefix` into the TUN.
fn routed(tb: &Topology, prefix: &str) -> bool {
    !tb.router
        .ip(["-6", "route", "show", prefix])
        .expect("ip route show")
        .trim()
        .is_empty()
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_prefix_changed_by_reload_keeps_running_flows_on_the_old_one_until_they_end() {
    require_privileged(
        "a_prefix_changed_by_reload_keeps_running_flows_on_the_old_one_until_they_end",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    // The backends route the new prefix back to the router too (as the operator would
    // before the change).
    for ns in [&tb.backend_a, &tb.backend_b] {
        ns.ip([
            "-6",
            "route",
            "add",
            NEW_PREFIX,
            "via",
            &ROUTER_V6.to_string(),
        ])
        .unwrap();
    }
    let quick_linger = "[timeouts]\nlinger = \"1s\"\n";
    let config = tb.config(quick_linger);
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();
    let total = 20 * 1000 * 1000;
    let mut upload = open(&tb, HTTP_PORT);
    start_upload(&mut upload, "a.example", total, total / 2);

    k.reload(&config.replace(PREFIX, NEW_PREFIX)).unwrap();
    let reply = eventually(
        "a new connection under the new prefix",
        Duration::from_secs(10),
        || {
            let r = tb.http_get("a.example", "/").ok()?;
            let seen = r.seen()?;
            (seen.peer.ip() == CLIENT_V6_NEW).then_some(r)
        },
    );
    let seen = reply.seen().unwrap();
    assert_eq!(seen.local, SocketAddr::new(BACKEND_A.into(), HTTP_PORT));
    assert_eq!(seen.peer.port(), reply.local.port(), "{seen:?}");
    assert!(
        routed(&tb, PREFIX),
        "the old prefix stays routed while a flow holds it"
    );
    assert!(routed(&tb, NEW_PREFIX));

    // The upload under way finishes, intact, under the old prefix.
    send_pattern(&mut upload, total / 2, total);
    let answer = read_all(&mut upload);
    assert!(
        answer.ends_with(&format!("sink={total} mismatch=none\n")),
        "{answer}"
    );
    drop(upload);
    eventually(
        "the old prefix's route to go",
        Duration::from_secs(30),
        || (!routed(&tb, PREFIX)).then_some(()),
    );
    assert!(routed(&tb, NEW_PREFIX));
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    let log = k.log();
    assert!(
        log.contains("reload: applied prefix 2001:db8:64::/96 -> 2001:db8:65::/96"),
        "{log}"
    );
    assert!(
        log.contains("prefix 2001:db8:64::/96: its last flow ended"),
        "{log}"
    );
}
