//! Requests sent after an upgrade on connections whose handshake finished before it.
//!
//! Kracauer never acknowledges peeked bytes, so a client that sends part of its request
//! and waits longer than its retransmission timeout before the rest goes into loss
//! recovery: Linux then retransmits only the unacknowledged part and sends nothing new
//! until it is acknowledged, which it never is, and the peek times out. That happens
//! with or without an upgrade ([`a_request_split_past_the_clients_timeout_ends_alike_with_or_without_an_upgrade`]);
//! an upgrade takes longer than the shortest timeout (200 ms), so the test of a request
//! split by an upgrade gives the client a longer one, as a client on a longer path has.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT};
use kracauer_testbed::{Seen, Topology, Variant, require_privileged};

use super::{
    client_rto_min, connect, eventually, install, metric, read_to_close, serial, start, start_with,
    terminate, usr2,
};

/// The request each connection sends, in one piece or in two.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";
/// Where a split request is cut: inside the `Host` header.
const CUT: usize = 20;

/// Sends the rest of [`REQUEST`] after its first `sent` bytes, reads the answer to the
/// end, and checks it is backend a's, reporting this very connection.
fn finish_and_check(mut s: TcpStream, sent: usize, what: &str) {
    let local = s.local_addr().unwrap();
    s.write_all(&REQUEST[sent..]).unwrap();
    let answer = read_to_close(&mut s).unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let seen = Seen::parse(body).unwrap_or_else(|| panic!("{what}: {text}"));
    assert_eq!(seen.host, "a.example", "{what}");
    assert_eq!(seen.local.ip(), std::net::IpAddr::V6(BACKEND_A), "{what}");
    assert_eq!(
        seen.peer.port(),
        local.port(),
        "{what}: the client's own port"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn requests_sent_after_an_upgrade_on_connections_made_before_it_are_named() {
    require_privileged("requests_sent_after_an_upgrade_on_connections_made_before_it_are_named");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    client_rto_min(&tb, "5s");
    let (k, exe, _reaper) = start(&tb);
    // Enough connections that every worker holds some: the steering key spreads them.
    let idle: Vec<TcpStream> = (0..8).map(|_| connect(&tb, HTTP_PORT)).collect();
    let split: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = connect(&tb, HTTP_PORT);
            s.write_all(&REQUEST[..CUT]).unwrap();
            s
        })
        .collect();
    eventually(
        "the daemon to hold 16 peeking flows",
        Duration::from_secs(20),
        || {
            (metric(&k, "kracauer_flows") == 16
                && metric(&k, "kracauer_flows_half_open") == 0
                && metric(&k, "kracauer_peek_bytes") > 0)
                .then_some(())
        },
    );
    install(&exe, None);
    let pid = usr2(k.pid() as i32, &k, 1);
    for (i, s) in idle.into_iter().enumerate() {
        finish_and_check(s, 0, &format!("request {i} sent whole after the upgrade"));
    }
    for (i, s) in split.into_iter().enumerate() {
        finish_and_check(s, CUT, &format!("request {i} split by the upgrade"));
    }
    terminate(pid);
}

/// What the client saw of a request split by a pause: the answer's status line, or the
/// error that ended the connection.
fn split_request_with_pause(s: &mut TcpStream, pause: impl FnOnce()) -> String {
    s.write_all(&REQUEST[..CUT]).unwrap();
    pause();
    s.write_all(&REQUEST[CUT..]).unwrap();
    match read_to_close(s) {
        Ok(answer) => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_request_split_past_the_clients_timeout_ends_alike_with_or_without_an_upgrade() {
    require_privileged(
        "a_request_split_past_the_clients_timeout_ends_alike_with_or_without_an_upgrade",
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = tb.config("\n[timeouts]\npeek = \"2s\"\n");
    let (k, exe, _reaper) = start_with(&tb, &config);
    // The client's own timeout (200 ms here) passes in either pause.
    let mut plain = connect(&tb, HTTP_PORT);
    let without = split_request_with_pause(&mut plain, || {
        std::thread::sleep(Duration::from_millis(800))
    });
    let mut upgraded = connect(&tb, HTTP_PORT);
    install(&exe, None);
    let mut pid = 0;
    let with = split_request_with_pause(&mut upgraded, || {
        pid = usr2(k.pid() as i32, &k, 1);
        std::thread::sleep(Duration::from_millis(800));
    });
    assert_eq!(with, without, "the same end with an upgrade as without");
    terminate(pid);
}
