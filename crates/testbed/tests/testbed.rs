//! The testbed itself, without kracauer: the namespaces come and go by name, the
//! backends report the peer they saw over HTTP and TLS, bulk transfers check every byte,
//! the shared address's echo answers, and the loss rule loads.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or `ip` is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream};
use std::time::Duration;

use kracauer_testbed::topology::{
    BACKEND_A, BACKEND_B, HTTP_PORT, HTTPS_ALT_PORT, ROUTER_V6, SERVICE_V4, SSH_PORT,
};
use kracauer_testbed::{Topology, Variant, client, netns, require_privileged};

fn backend(addr: std::net::Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(addr, port, 0, 0))
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn namespaces_exist_while_the_topology_lives_and_are_gone_after_drop() {
    require_privileged("namespaces_exist_while_the_topology_lives_and_are_gone_after_drop");
    let tb = Topology::build(Variant::Routed).unwrap();
    let names: Vec<String> = [&tb.client, &tb.router, &tb.backend_a, &tb.backend_b]
        .iter()
        .map(|ns| ns.name().to_owned())
        .collect();
    let dir = tb.dir().to_owned();
    assert!(names.iter().all(|n| netns::exists(n)), "{names:?}");
    assert!(dir.join("ca.pem").is_file());
    drop(tb);
    assert!(names.iter().all(|n| !netns::exists(n)), "{names:?}");
    assert!(!dir.exists());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn namespaces_are_deleted_when_the_test_panics() {
    require_privileged("namespaces_are_deleted_when_the_test_panics");
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let tb = Topology::build(Variant::Shared).unwrap();
        tx.send(tb.router.name().to_owned()).unwrap();
        panic!("a failing test");
    });
    assert!(outcome.is_err());
    let router = rx.recv().unwrap();
    assert!(!netns::exists(&router), "{router} left behind");
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn backend_reports_the_peer_address_and_port_it_saw_over_http() {
    require_privileged("backend_reports_the_peer_address_and_port_it_saw_over_http");
    let tb = Topology::build(Variant::Routed).unwrap();
    let reply = tb
        .router
        .run(|| client::http_get(backend(BACKEND_A, HTTP_PORT), "a.example", "/"))
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
    let seen = reply.seen().unwrap();
    assert_eq!(seen.peer, reply.local);
    assert_eq!(seen.peer.ip(), ROUTER_V6);
    assert_eq!(seen.local, backend(BACKEND_A, HTTP_PORT));
    assert_eq!(seen.host, "a.example");
    assert_eq!(seen.sni, None);
    assert_eq!(tb.contacts_a.len(), 1);
    assert!(tb.contacts_b.is_empty());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn backend_serves_tls_for_its_names_with_a_certificate_from_the_testbed_ca() {
    require_privileged("backend_serves_tls_for_its_names_with_a_certificate_from_the_testbed_ca");
    let tb = Topology::build(Variant::Routed).unwrap();
    let tls = tb.client_tls();
    let reply = tb
        .router
        .run(|| {
            client::https_get(
                &tls,
                backend(BACKEND_B, HTTPS_ALT_PORT),
                "www.b.example",
                "/",
            )
        })
        .unwrap()
        .unwrap();
    let seen = reply.seen().unwrap();
    assert_eq!(seen.sni.as_deref(), Some("www.b.example"));
    assert_eq!(seen.local, backend(BACKEND_B, HTTPS_ALT_PORT));
    assert_eq!(seen.peer, reply.local);
    // The certificate of backend b does not cover a.example: verification fails.
    let wrong = tb
        .router
        .run(|| client::https_get(&tls, backend(BACKEND_B, HTTPS_ALT_PORT), "a.example", "/"))
        .unwrap();
    assert!(
        matches!(wrong, Err(kracauer_testbed::Error::Tls(_))),
        "{wrong:?}"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn bulk_transfers_arrive_intact_both_ways() {
    require_privileged("bulk_transfers_arrive_intact_both_ways");
    let tb = Topology::build(Variant::Routed).unwrap();
    let n = 8 * 1024 * 1024 + 17;
    let (up, down) = tb
        .router
        .run(|| {
            (
                client::upload(backend(BACKEND_A, HTTP_PORT), "a.example", n),
                client::download(backend(BACKEND_A, HTTP_PORT), "a.example", n),
            )
        })
        .unwrap();
    assert_eq!(up.unwrap().body, format!("sink={n} mismatch=none\n"));
    assert_eq!(down.unwrap(), n);
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn shared_address_echo_answers_the_client_even_with_loss() {
    require_privileged("shared_address_echo_answers_the_client_even_with_loss");
    let tb = Topology::build(Variant::Shared).unwrap();
    tb.inject_loss(3).unwrap();
    let echoed = tb
        .client
        .run(|| -> std::io::Result<Vec<u8>> {
            let ssh = SocketAddr::V4(SocketAddrV4::new(SERVICE_V4, SSH_PORT));
            let mut s = TcpStream::connect_timeout(&ssh, Duration::from_secs(10))?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            s.write_all(b"SSH-2.0-testbed\r\n")?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut got = Vec::new();
            s.read_to_end(&mut got)?;
            Ok(got)
        })
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"SSH-2.0-testbed\r\n");
    assert_eq!(tb.contacts_router.len(), 1);
    let rules = tb
        .client
        .command("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&rules.stdout).contains("numgen random mod 100 < 3"));
    let _ = tb.loss_dropped().unwrap();
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn an_owned_namespace_is_deleted_when_dropped_also_on_panic() {
    require_privileged("an_owned_namespace_is_deleted_when_dropped_also_on_panic");
    let ns = kracauer_testbed::OwnedNetns::create("owned").unwrap();
    let name = ns.name().to_owned();
    assert_eq!(name, format!("krc-owned-{}", std::process::id()));
    assert_eq!(ns.read("/proc/sys/net/ipv4/ip_forward").unwrap(), "0");
    drop(ns);
    assert!(!netns::exists(&name));
    let outcome = std::panic::catch_unwind(|| {
        let _ns = kracauer_testbed::OwnedNetns::create("owned").unwrap();
        panic!("a failing test");
    });
    assert!(outcome.is_err());
    assert!(!netns::exists(&name), "{name} left behind");
}
