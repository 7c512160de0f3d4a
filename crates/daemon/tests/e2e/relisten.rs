//! Listen addresses and ports changed by a reload (SIGHUP), a live re-setup: what is
//! added is served, what is removed is no longer diverted and its connections end, and
//! connections on what stays carry on.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT, SSH_PORT};
use kracauer_testbed::{Topology, Variant, client, require_privileged};

use super::{KRACAUER, assert_translated, eventually, open, read_all, send_pattern, start_upload};

/// The testbed's configuration with HTTP also on `port`, which `c.example` reaches at
/// backend a's port 80.
fn with_http_port(tb: &Topology, port: u16) -> String {
    let route = format!(
        "[[route]]\nhosts = [\"c.example\"]\nbackend = \"{BACKEND_A}\"\nports = {{ {port} = 80 }}\n"
    );
    tb.config(&route)
        .replace("http = [80]", &format!("http = [80, {port}]"))
}

/// `GET /` for `c.example` on `port` of the service address.
fn get_c(tb: &Topology, port: u16) -> std::io::Result<kracauer_testbed::Reply> {
    tb.client
        .run(|| client::http_get(Topology::service(port), "c.example", "/"))
        .expect("enter the client namespace")
        .map_err(|e| match e {
            kracauer_testbed::Error::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
}

/// Whether the router's policy rules divert TCP `port`.
fn diverted(tb: &Topology, port: u16) -> bool {
    let rules = tb.router.ip(["-4", "rule", "show"]).expect("ip rule show");
    rules
        .lines()
        .any(|l| l.contains(&format!("dport {port} ")) || l.ends_with(&format!("dport {port}")))
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_listen_port_added_and_one_removed_by_reload_leave_a_transfer_on_another_port_running() {
    require_privileged(
        "a_listen_port_added_and_one_removed_by_reload_leave_a_transfer_on_another_port_running",
    );
    // The service address is the router's own: each port is a policy rule.
    let tb = Topology::build(Variant::Shared).unwrap();
    let k = tb
        .start_kracauer(KRACAUER, &with_http_port(&tb, 8080))
        .unwrap();
    assert!(diverted(&tb, 8080) && !diverted(&tb, 8081));
    let total = 20 * 1000 * 1000;
    let mut upload = open(&tb, HTTP_PORT);
    start_upload(&mut upload, "a.example", total, total / 2);
    // A download on the port about to go, spliced and under way.
    let mut going = open(&tb, 8080);
    write!(
        going,
        "GET /source/50000000 HTTP/1.1\r\nHost: c.example\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1000];
    going.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));

    k.reload(&with_http_port(&tb, 8081)).unwrap();
    let reply = eventually("port 8081 to be served", Duration::from_secs(10), || {
        get_c(&tb, 8081).ok().filter(|r| r.status == 200)
    });
    assert_translated(&reply, BACKEND_A, HTTP_PORT);
    // The removed port's diversion goes once every worker has ended its flows.
    eventually(
        "the removed port's diversion to go",
        Duration::from_secs(10),
        || (!diverted(&tb, 8080)).then_some(()),
    );
    // Port 8080 is the host's own again: nothing listens there.
    let refused = get_c(&tb, 8080).expect_err("nothing serves 8080 now");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    // The download on it ended: its next segment is reset (by whichever write or read
    // meets the reset first: the error is reported once).
    going
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reset =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe);
    match going.write_all(b"x") {
        Err(e) => assert!(reset(&e), "{e}"),
        Ok(()) => {
            let mut rest = Vec::new();
            match going.read_to_end(&mut rest) {
                Err(e) => assert!(reset(&e), "{e}"),
                Ok(n) => panic!("a clean end after {n} more bytes instead of a reset"),
            }
        }
    }
    // The upload on port 80 completes.
    send_pattern(&mut upload, total / 2, total);
    let answer = read_all(&mut upload);
    assert!(
        answer.ends_with(&format!("sink={total} mismatch=none\n")),
        "{answer}"
    );
    // The host's own port still answers.
    let mut ssh = open(&tb, SSH_PORT);
    ssh.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    ssh.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    let log = k.log();
    assert!(log.contains("reload: applied [[listen]]"), "{log}");
    assert!(
        log.contains("service=203.0.113.10:8080") && log.contains("outcome=service_removed"),
        "{log}"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_service_address_added_by_reload_is_routed_and_one_removed_is_not() {
    require_privileged("a_service_address_added_by_reload_is_routed_and_one_removed_is_not");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let second = Ipv4Addr::new(203, 0, 113, 11);
    let listen = format!("[[listen]]\naddress = \"{second}\"\nhttp = [80]\n\n[[route]]");
    let both = tb.config("").replacen("[[route]]", &listen, 1);
    k.reload(&both).unwrap();
    let at = SocketAddr::V4(SocketAddrV4::new(second, HTTP_PORT));
    let reply = eventually(
        "the second address to be served",
        Duration::from_secs(10),
        || {
            tb.client
                .run(move || client::http_get(at, "a.example", "/"))
                .unwrap()
                .ok()
        },
    );
    assert_translated(&reply, BACKEND_A, HTTP_PORT);
    let routed = |a: Ipv4Addr| {
        !tb.router
            .ip(["-4", "route", "show", &format!("{a}/32")])
            .unwrap()
            .trim()
            .is_empty()
    };
    assert!(routed(second));
    // Back to the one address: its route goes, the first one's stays.
    k.reload(&tb.config("")).unwrap();
    eventually(
        "the second address's route to go",
        Duration::from_secs(10),
        || (!routed(second)).then_some(()),
    );
    assert!(routed(kracauer_testbed::topology::SERVICE_V4));
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_metrics_address_changed_by_reload_moves_the_endpoint() {
    require_privileged("a_metrics_address_changed_by_reload_moves_the_endpoint");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let moved = tb.config("").replace("127.0.0.1:9641", "127.0.0.1:9642");
    k.reload(&moved).unwrap();
    let at: SocketAddr = "127.0.0.1:9642".parse().unwrap();
    let get = move || client::http_get(at, "127.0.0.1", "/metrics");
    let reply = eventually(
        "metrics on the new address",
        Duration::from_secs(10),
        || tb.router.run(get).unwrap().ok(),
    );
    assert!(reply.body.contains("kracauer_workers"), "{}", reply.body);
    assert!(k.metrics().is_err(), "the old address is closed");
}
