//! The testbed itself, without kracauer: the namespaces come and go by name, the
//! backends report the peer they saw over HTTP and TLS, bulk transfers check every byte,
//! the shared address's echo answers, and the loss rule loads.
//!
//! Privileged: each test skips loudly when not root, and fails instead with
//! `KRACAUER_E2E=require`.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream};
use std::time::Duration;

use kracauer_testbed::topology::{
    BACKEND_A, BACKEND_B, HTTP_PORT, HTTPS_ALT_PORT, ROUTER_V6, SERVICE_V4, SSH_PORT,
};
use kracauer_testbed::{Topology, Variant, client, netns, privileged};

fn backend(addr: std::net::Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(addr, port, 0, 0))
}

#[test]
fn namespaces_exist_while_the_topology_lives_and_are_gone_after_drop() {
    if !privileged("namespaces_exist_while_the_topology_lives_and_are_gone_after_drop") {
        return;
    }
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
fn namespaces_are_deleted_when_the_test_panics() {
    if !privileged("namespaces_are_deleted_when_the_test_panics") {
        return;
    }
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
fn backend_reports_the_peer_address_and_port_it_saw_over_http() {
    if !privileged("backend_reports_the_peer_address_and_port_it_saw_over_http") {
        return;
    }
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
fn backend_serves_tls_for_its_names_with_a_certificate_from_the_testbed_ca() {
    if !privileged("backend_serves_tls_for_its_names_with_a_certificate_from_the_testbed_ca") {
        return;
    }
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
fn bulk_transfers_arrive_intact_both_ways() {
    if !privileged("bulk_transfers_arrive_intact_both_ways") {
        return;
    }
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
fn shared_address_echo_answers_the_client_even_with_loss() {
    if !privileged("shared_address_echo_answers_the_client_even_with_loss") {
        return;
    }
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
