//! Routing by name: HTTP Host and TLS SNI to two backends, unknown names refused, the
//! shared address's other service untouched, an owned and a routed service address,
//! remapped ports, the default backend, and transfers that arrive intact (large, many at
//! once, under loss).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use kracauer_testbed::topology::{
    BACKEND_A, BACKEND_B, CLIENT_V6, HTTP_PORT, HTTPS_ALT_PORT, HTTPS_PORT, SERVICE_V4, SSH_PORT,
    TUN,
};
use kracauer_testbed::{Error, Topology, Variant, client, require_privileged, rustls};

use super::{KRACAUER, assert_translated, eventually, open, read_all, send_pattern, start_upload};

/// A second service address, not the router's: only routed to it, as 203.0.113.10 is in
/// the routed variant.
const ROUTED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn http_host_routes_by_name_and_backend_sees_embedded_address_and_client_port() {
    require_privileged(
        "http_host_routes_by_name_and_backend_sees_embedded_address_and_client_port",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
    assert_translated(
        &tb.http_get("b.example", "/").unwrap(),
        BACKEND_B,
        HTTP_PORT,
    );
    let seen = tb.http_get("B.Example", "/").unwrap().seen().unwrap();
    assert_eq!(seen.local.ip(), BACKEND_B, "names are case-insensitive");
    let curl = tb.curl("http://b.example/").unwrap();
    assert!(
        curl.contains("local=[2001:db8:1::3]:80") && curl.contains("host=b.example"),
        "{curl}"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn tls_sni_routes_to_two_backends_and_a_wildcard_end_to_end() {
    require_privileged("tls_sni_routes_to_two_backends_and_a_wildcard_end_to_end");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    for (name, backend) in [
        ("a.example", BACKEND_A),
        ("www.a.example", BACKEND_A),
        ("b.example", BACKEND_B),
    ] {
        let reply = tb.https_get(name, "/").unwrap();
        assert_translated(&reply, backend, HTTPS_PORT);
        assert_eq!(reply.seen().unwrap().sni.as_deref(), Some(name));
    }
    // curl verifies the backend's certificate against the testbed CA: TLS is end to end.
    let curl = tb.curl("https://www.a.example/").unwrap();
    assert!(
        curl.contains("local=[2001:db8:1::2]:443")
            && curl.contains("peer=[2001:db8:64::c633:6402]"),
        "{curl}"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn unknown_names_are_refused_and_no_backend_is_contacted() {
    require_privileged("unknown_names_are_refused_and_no_backend_is_contacted");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let tls = tb.https_get("c.example", "/");
    assert!(
        matches!(
            tls,
            Err(Error::Tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnrecognisedName
            )))
        ),
        "{tls:?}"
    );
    let http = tb.http_get("c.example", "/").unwrap();
    assert_eq!(http.status, 421, "{http:?}");
    assert!(tb.contacts_a.is_empty() && tb.contacts_b.is_empty());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn shared_address_keeps_its_other_service_answering() {
    require_privileged("shared_address_keeps_its_other_service_answering");
    let tb = Topology::build(Variant::Shared).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    assert_translated(
        &tb.https_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTPS_PORT,
    );
    assert_translated(
        &tb.http_get("b.example", "/").unwrap(),
        BACKEND_B,
        HTTP_PORT,
    );
    let mut ssh = open(&tb, SSH_PORT);
    ssh.write_all(b"SSH-2.0-client\r\n").unwrap();
    ssh.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut ssh), "SSH-2.0-client\r\n");
    assert_eq!(tb.contacts_router.len(), 1);
    let peer = tb.contacts_router.contacts()[0].peer;
    assert_eq!(peer.ip(), Ipv4Addr::new(198, 51, 100, 2));
    assert_eq!(
        tb.contacts_router.contacts()[0].local,
        SocketAddr::new(SERVICE_V4.into(), SSH_PORT)
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn remapped_port_reaches_the_backend_on_its_own_port() {
    require_privileged("remapped_port_reaches_the_backend_on_its_own_port");
    let tb = Topology::build(Variant::Routed).unwrap();
    let remap = format!(
        "[[route]]\nhosts = [\"alt.example\"]\nbackend = \"{BACKEND_B}\"\nports = {{ 443 = {HTTPS_ALT_PORT} }}\n"
    );
    let _k = tb.start_kracauer(KRACAUER, &tb.config(&remap)).unwrap();
    // Backend b's certificate does not name alt.example: the TLS error proves the
    // handshake reached backend b on 8443, and its contact log says the same.
    let tls = tb.https_get("alt.example", "/");
    assert!(matches!(tls, Err(Error::Tls(_))), "{tls:?}");
    let contacts = tb.contacts_b.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(
        contacts[0].local,
        SocketAddr::new(BACKEND_B.into(), HTTPS_ALT_PORT)
    );
    assert_eq!(contacts[0].peer.ip(), CLIENT_V6);
    assert!(tb.contacts_a.is_empty());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn default_backend_takes_unknown_names() {
    require_privileged("default_backend_takes_unknown_names");
    let tb = Topology::build(Variant::Routed).unwrap();
    let top = format!("default_backend = \"{BACKEND_B}\"");
    let _k = tb
        .start_kracauer(KRACAUER, &tb.config_with(&top, ""))
        .unwrap();
    assert_translated(
        &tb.http_get("c.example", "/").unwrap(),
        BACKEND_B,
        HTTP_PORT,
    );
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn hundred_megabytes_each_way_arrive_intact() {
    require_privileged("hundred_megabytes_each_way_arrive_intact");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let n = 100 * 1000 * 1000;
    let up = tb.upload("a.example", n).unwrap();
    assert_eq!(up.body, format!("sink={n} mismatch=none\n"));
    assert_eq!(tb.download("b.example", n).unwrap(), n);
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn two_hundred_concurrent_connections_are_each_routed_and_complete() {
    require_privileged("two_hundred_concurrent_connections_are_each_routed_and_complete");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    const N: usize = 200;
    // Every connection sends its head and one of two body bytes, so all 200 are open at
    // the backends at once; then each sends its last byte and reads its answer.
    let mut conns: Vec<(TcpStream, &str)> = (0..N)
        .map(|i| {
            let host = if i % 2 == 0 { "a.example" } else { "b.example" };
            let mut s = open(&tb, HTTP_PORT);
            start_upload(&mut s, host, 2, 1);
            (s, host)
        })
        .collect();
    eventually("200 backend connections", Duration::from_secs(30), || {
        (tb.contacts_a.len() + tb.contacts_b.len() >= N).then_some(())
    });
    assert_eq!(tb.contacts_a.len(), N / 2);
    assert_eq!(tb.contacts_b.len(), N / 2);
    for (s, _) in &mut conns {
        send_pattern(s, 1, 2);
    }
    for (s, _) in &mut conns {
        let reply = read_all(s);
        assert!(reply.ends_with("sink=2 mismatch=none\n"), "{reply}");
    }
    let mut ports: Vec<u16> = tb
        .contacts_a
        .contacts()
        .iter()
        .chain(tb.contacts_b.contacts().iter())
        .map(|c| {
            assert_eq!(c.peer.ip(), CLIENT_V6);
            c.peer.port()
        })
        .collect();
    let mut ours: Vec<u16> = conns
        .iter()
        .map(|(s, _)| s.local_addr().unwrap().port())
        .collect();
    ports.sort_unstable();
    ours.sort_unstable();
    assert_eq!(
        ports, ours,
        "each backend connection carries a client's own port"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn transfers_survive_three_percent_random_loss_each_way() {
    require_privileged("transfers_survive_three_percent_random_loss_each_way");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    tb.inject_loss(3).unwrap();
    let n = 10 * 1000 * 1000;
    let up = tb.upload("a.example", n).unwrap();
    assert_eq!(up.body, format!("sink={n} mismatch=none\n"));
    assert_eq!(tb.download("b.example", n).unwrap(), n);
    for _ in 0..5 {
        assert_translated(
            &tb.https_get("www.a.example", "/").unwrap(),
            BACKEND_A,
            HTTPS_PORT,
        );
    }
    assert!(
        tb.loss_dropped().unwrap() > 0,
        "the loss rules dropped nothing"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn one_daemon_serves_an_owned_and_a_routed_address_and_sigterm_undoes_its_set_up() {
    require_privileged(
        "one_daemon_serves_an_owned_and_a_routed_address_and_sigterm_undoes_its_set_up",
    );
    // 203.0.113.10 is the router's own address (diverted by policy rules); 203.0.113.20
    // is only routed to the router (a /32 into the TUN).
    let tb = Topology::build(Variant::Shared).unwrap();
    let pristine = tb.router.ip(["rule", "show"]).unwrap();
    let routed = format!("[[listen]]\naddress = \"{ROUTED_V4}\"\nhttp = [{HTTP_PORT}]\n");
    let k = tb.start_kracauer(KRACAUER, &tb.config(&routed)).unwrap();
    let diverted = tb.router.ip(["rule", "show"]).unwrap();
    assert!(diverted.contains(&format!("to {SERVICE_V4}")), "{diverted}");
    assert!(!diverted.contains(&format!("to {ROUTED_V4}")), "{diverted}");

    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
    let via_routed = tb
        .client
        .run(|| {
            client::http_get(
                SocketAddr::new(ROUTED_V4.into(), HTTP_PORT),
                "a.example",
                "/",
            )
        })
        .unwrap()
        .unwrap();
    assert_translated(&via_routed, BACKEND_A, HTTP_PORT);
    eventually(
        "the metrics to count both flows",
        Duration::from_secs(10),
        || {
            let body = k.metrics().ok()?.body;
            body.lines()
                .any(|l| l == "kracauer_flows_spliced_total 2")
                .then_some(())
        },
    );

    let status = k.terminate().unwrap();
    assert!(status.success(), "kracauer exited with {status}");
    assert_eq!(tb.router.ip(["rule", "show"]).unwrap(), pristine);
    assert!(!tb.router.ip(["link", "show"]).unwrap().contains(TUN));
}
