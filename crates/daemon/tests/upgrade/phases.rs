//! Connections caught by an upgrade in each phase of their life end as they would have
//! without it: one daemon holds connections in every phase, is upgraded once, and each
//! connection is then carried on.
//!
//! How each is held in its phase across the upgrade (nftables rules, removed once the
//! new process has taken over):
//! - **handshake** (SYN answered, the client's ACK not seen): the client's pure ACKs to
//!   port 81 are dropped;
//! - **peeking**, with nothing yet, or half an HTTP head or half a TLS ClientHello: the
//!   client's retransmission timeout is raised, so it sends the rest after the upgrade
//!   as new data (see `requests.rs`);
//! - **connecting** (named, the backend's SYN-ACK awaited): the router drops SYNs to
//!   backend a's port 8443; and, for a backend that refuses, to its port 9, where
//!   nothing listens: that connection is reset, as one made without an upgrade is;
//! - **spliced**: a download read slowly through the upgrade, and one whose client has
//!   already sent its FIN;
//! - **refused**: a 421 sent, the client's FIN awaited;
//! - **closing** (both FINs seen, lingering): backend a's ACK of the client's FIN on
//!   port 83 is dropped, so the client sends its FIN again after the upgrade and must
//!   get it acknowledged through the new process.
//!
//! None of their segments may reach a worker that does not hold the flow (which would
//! answer with a RST and count a `*_no_flow` drop).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kracauer_testbed::rustls::pki_types::ServerName;
use kracauer_testbed::rustls::{ClientConnection, StreamOwned};
use kracauer_testbed::topology::{
    BACKEND_A, BACKEND_B, HTTP_PORT, HTTPS_PORT, METRICS, PREFIX, SERVICE_V4, TUN,
};
use kracauer_testbed::{Seen, Topology, Variant, require_privileged};

use super::{
    client_rto_min, connect, eventually, install, metric, nft, paced_download, read_body,
    read_to_close, serial, start_with, terminate, usr2,
};

/// Port 81: the client's handshake ACK is held back.
const HANDSHAKE_PORT: u16 = 81;
/// Port 83: the backend's ACK of the client's FIN is held back.
const CLOSING_PORT: u16 = 83;
/// Port 84: to backend a's port 9, where nothing listens.
const REFUSING_PORT: u16 = 84;
/// TLS port 8443: the backend's SYN-ACK is held back.
const CONNECTING_PORT: u16 = 8443;

/// The daemon's configuration: the phases' ports, and timeouts long enough for every
/// held phase to outlast the upgrade.
fn config() -> String {
    format!(
        "prefix = \"{PREFIX}\"\n\n[tun]\nname = \"{TUN}\"\nmtu = 1500\n\n\
         [[listen]]\naddress = \"{SERVICE_V4}\"\ntls = [{HTTPS_PORT}, {CONNECTING_PORT}]\n\
         http = [{HTTP_PORT}, {HANDSHAKE_PORT}, {CLOSING_PORT}, {REFUSING_PORT}]\n\n\
         [[route]]\nhosts = [\"a.example\"]\nbackend = \"{BACKEND_A}\"\n\
         ports = {{ {HANDSHAKE_PORT} = 80, {CLOSING_PORT} = 80, {REFUSING_PORT} = 9 }}\n\n\
         [[route]]\nhosts = [\"b.example\"]\nbackend = \"{BACKEND_B}\"\n\n\
         [timeouts]\npeek = \"60s\"\nconnect = \"60s\"\nlinger = \"60s\"\n\n\
         [metrics]\nlisten = \"{METRICS}\"\n"
    )
}

fn request(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// Checks an HTTP answer is backend a's `200`, and that it saw the client's own port.
fn check_answer(answer: &[u8], local_port: u16, what: &str) {
    let text = String::from_utf8_lossy(answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let seen = Seen::parse(body).unwrap_or_else(|| panic!("{what}: {text}"));
    assert_eq!(seen.local.ip(), std::net::IpAddr::V6(BACKEND_A), "{what}");
    assert_eq!(
        seen.peer.port(),
        local_port,
        "{what}: the client's own port"
    );
}

/// Sends `rest` of a plain request and checks the answer.
fn finish_http(mut s: TcpStream, rest: &[u8], what: &str) {
    let port = s.local_addr().unwrap().port();
    s.write_all(rest).unwrap();
    let answer = read_to_close(&mut s).unwrap_or_else(|e| panic!("{what}: {e}"));
    check_answer(&answer, port, what);
}

/// A TLS client for `a.example` whose ClientHello is made but not yet sent.
fn tls_client(tb: &Topology) -> (ClientConnection, Vec<u8>) {
    let name = ServerName::try_from("a.example").unwrap();
    let mut conn = ClientConnection::new(tb.client_tls(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    (conn, hello)
}

/// Completes a TLS connection whose ClientHello has been sent whole: a request, and
/// backend a's answer through the handshake.
fn finish_tls(conn: ClientConnection, s: TcpStream, what: &str) {
    let port = s.local_addr().unwrap().port();
    let mut tls = StreamOwned::new(conn, s);
    tls.write_all(request("a.example", "/").as_bytes())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // The test backends close without waiting for the client's close_notify.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => panic!("{what}: {e}"),
    }
    check_answer(&answer, port, what);
}

/// What a connection to the refusing backend ends with, as the client sees it.
fn refused_end(s: &mut TcpStream) -> String {
    match read_to_close(s) {
        Ok(bytes) => format!("closed after {} bytes", bytes.len()),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Client sockets in `state` (as `ss` names it) to the service's `port`.
fn client_sockets(tb: &Topology, state: &str, port: u16) -> usize {
    let out = tb
        .client
        .command("ss")
        .args(["-Htn", "state", state, "dport", &format!("= :{port}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The packets an nftables counter named `name` in `ns`'s table `krc_phases` counted.
fn counted(ns: &kracauer_testbed::Netns, name: &str) -> u64 {
    let out = ns
        .command("nft")
        .args(["list", "counter", "inet", "krc_phases", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn connections_in_every_phase_carry_on_through_an_upgrade() {
    require_privileged("connections_in_every_phase_carry_on_through_an_upgrade");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    client_rto_min(&tb, "4s");
    nft(
        &tb.client,
        &format!(
            "table inet krc_phases {{\n\
             counter acks_held {{}}\n\
             counter fin_acks_held {{}}\n\
             chain output {{ type filter hook output priority 0; \
               ip daddr {SERVICE_V4} tcp dport {HANDSHAKE_PORT} tcp flags == ack counter name acks_held drop; }}\n\
             chain input {{ type filter hook input priority 0; \
               ip saddr {SERVICE_V4} tcp sport {CLOSING_PORT} tcp flags == ack counter name fin_acks_held drop; }}\n\
             }}\n"
        ),
    );
    nft(
        &tb.router,
        &format!(
            "table inet krc_phases {{\n\
             counter syns_held {{}}\n\
             chain forward {{ type filter hook forward priority 0; \
               ip6 daddr {BACKEND_A} tcp dport {{ {CONNECTING_PORT}, 9 }} tcp flags & (syn | ack) == syn counter name syns_held drop; }}\n\
             }}\n"
        ),
    );
    let (k, exe, _reaper) = start_with(&tb, &config());
    let whole = request("a.example", "/");
    let whole = whole.as_bytes();
    let cut = 20;

    // Handshake: the client is established, Kracauer has not seen its ACK.
    let handshake: Vec<TcpStream> = (0..4).map(|_| connect(&tb, HANDSHAKE_PORT)).collect();
    // Peeking: nothing yet; half a head; half a ClientHello.
    let idle: Vec<TcpStream> = (0..4).map(|_| connect(&tb, HTTP_PORT)).collect();
    let half_heads: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(&tb, HTTP_PORT);
            s.write_all(&whole[..cut]).unwrap();
            s
        })
        .collect();
    let half_hellos: Vec<_> = (0..2)
        .map(|_| {
            let (conn, hello) = tls_client(&tb);
            let mut s = connect(&tb, HTTPS_PORT);
            s.write_all(&hello[..hello.len() / 2]).unwrap();
            (conn, s, hello)
        })
        .collect();
    // Connecting: named, the backend's SYN-ACK held back; and a backend that refuses.
    let connecting: Vec<_> = (0..2)
        .map(|_| {
            let (conn, hello) = tls_client(&tb);
            let mut s = connect(&tb, CONNECTING_PORT);
            s.write_all(&hello).unwrap();
            (conn, s)
        })
        .collect();
    let mut refusing = connect(&tb, REFUSING_PORT);
    refusing.write_all(whole).unwrap();
    // Spliced: a slow download; a download whose client has sent its FIN.
    let slow = Arc::new(AtomicBool::new(true));
    let download = paced_download(&tb, 4 << 20, slow.clone());
    let mut half_closed = connect(&tb, HTTP_PORT);
    let n_half_closed = 2u64 << 20;
    half_closed
        .write_all(request("a.example", &format!("/source/{n_half_closed}")).as_bytes())
        .unwrap();
    half_closed.shutdown(Shutdown::Write).unwrap();
    // Refused: a 421 answered, the client's FIN awaited.
    let mut refused = connect(&tb, HTTP_PORT);
    refused
        .write_all(request("c.example", "/").as_bytes())
        .unwrap();
    // Closing: both FINs seen; the client's FIN is not acknowledged yet.
    let mut closing = connect(&tb, CLOSING_PORT);
    let closing_port = closing.local_addr().unwrap().port();
    closing.write_all(whole).unwrap();
    let answer = read_to_close(&mut closing).unwrap();
    check_answer(&answer, closing_port, "closing, before the upgrade");
    drop(closing);

    eventually(
        "every connection to sit in its phase",
        Duration::from_secs(30),
        || {
            (metric(&k, "kracauer_flows_half_open") == 4
                && counted(&tb.router, "syns_held") >= 3
                && metric(
                    &k,
                    "kracauer_peeks_total{protocol=\"http\",path=\"refused\"}",
                ) == 1
                && client_sockets(&tb, "last-ack", CLOSING_PORT) == 1
                && counted(&tb.client, "fin_acks_held") >= 1)
                .then_some(())
        },
    );
    install(&exe, None);
    let pid = usr2(k.pid() as i32, &k, 1);
    for ns in [&tb.client, &tb.router] {
        nft(ns, "delete table inet krc_phases\n");
    }

    for (i, s) in handshake.into_iter().enumerate() {
        finish_http(s, whole, &format!("handshake {i}"));
    }
    for (i, s) in idle.into_iter().enumerate() {
        finish_http(s, whole, &format!("peeking, nothing sent {i}"));
    }
    for (i, s) in half_heads.into_iter().enumerate() {
        finish_http(s, &whole[cut..], &format!("peeking, half a head {i}"));
    }
    for (i, (conn, mut s, hello)) in half_hellos.into_iter().enumerate() {
        s.write_all(&hello[hello.len() / 2..]).unwrap();
        finish_tls(conn, s, &format!("peeking, half a ClientHello {i}"));
    }
    for (i, (conn, s)) in connecting.into_iter().enumerate() {
        finish_tls(conn, s, &format!("connecting {i}"));
    }
    // The refusing backend resets the client, as it does a connection made now.
    let caught = refused_end(&mut refusing);
    let mut fresh = connect(&tb, REFUSING_PORT);
    fresh.write_all(whole).unwrap();
    assert_eq!(caught, refused_end(&mut fresh), "refused by the backend");
    assert_eq!(caught, "ConnectionReset");
    // Spliced.
    slow.store(false, Ordering::Relaxed);
    download.join().expect("the slow download completed intact");
    assert_eq!(
        read_body(&mut half_closed, n_half_closed, &AtomicBool::new(false)),
        n_half_closed
    );
    // Refused: the 421, then the end.
    let answer = read_to_close(&mut refused).expect("the refusal, not a reset");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
    drop(refused);
    // Closing: the client's FIN, sent again, is acknowledged through the new process.
    eventually(
        "the closing connection's FIN to be acknowledged",
        Duration::from_secs(30),
        || (client_sockets(&tb, "last-ack", CLOSING_PORT) == 0).then_some(()),
    );
    // No segment of any of them reached a worker without its flow: read once the
    // workers have published their counters twice more.
    let now = metric(&k, "kracauer_uptime_seconds");
    eventually(
        "the counters to be published",
        Duration::from_secs(10),
        || (metric(&k, "kracauer_uptime_seconds") >= now + 2).then_some(()),
    );
    for side in ["client", "backend"] {
        let series = format!("kracauer_drops_total{{reason=\"{side}_no_flow\",side=\"{side}\"}}");
        assert_eq!(metric(&k, &series), 0, "{series}");
    }
    terminate(pid);
}
