//! End to end: the real `kracauer run` (the binary cargo built for this test run) in the
//! testbed's router namespace, real kernel TCP in the client and in the backends. What
//! the daemon promises, as the client and the backends see it: routing by name
//! (`routing`), reloads, restarts and clean stops (`lifecycle`), and hellos and heads it
//! cannot name, compared with a real OpenSSL server, nginx (`hellos`, `heads`,
//! `origin`).
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or `ip` is missing. Every test builds its own uniquely named
//! namespaces and deletes them on drop, also when it fails, so the tests run in parallel.

mod fastpath;
mod fastpath_firewall;
mod fastpath_path_mtu;
mod heads;
mod hellos;
mod lifecycle;
mod mtu;
mod origin;
mod pools;
mod relisten;
mod reprefix;
mod routing;
mod survival;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::CLIENT_V6;
use kracauer_testbed::{Reply, Topology, client, pattern};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// Writes a line of figures straight to stderr (the harness captures `eprintln!`).
fn figure(line: &str) {
    let _ = std::io::stderr().write_all(format!("[figures] {line}\n").as_bytes());
}

/// Polls `f` until it returns `Some` or `limit` passes (a bound on waiting, not a timed
/// assertion: the condition is what is checked).
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The reply came from backend `backend` on `port`, which saw the client's IPv4 address
/// embedded in the prefix and the client's own source port.
fn assert_translated(reply: &Reply, backend: Ipv6Addr, port: u16) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply
        .seen()
        .unwrap_or_else(|| panic!("no answer line: {reply:?}"));
    assert_eq!(
        seen.local,
        SocketAddr::new(backend.into(), port),
        "{seen:?}"
    );
    assert_eq!(seen.peer.ip(), CLIENT_V6, "{seen:?}");
    assert_eq!(seen.peer.port(), reply.local.port(), "{seen:?}");
}

/// Opens a connection from the client namespace (the socket stays there).
fn open(tb: &Topology, port: u16) -> TcpStream {
    tb.client
        .run(|| client::open(Topology::service(port)))
        .expect("enter the client namespace")
        .expect("connect from the client")
}

/// Starts `POST /sink` for `total` bytes and sends the first `first` of them.
fn start_upload(s: &mut TcpStream, host: &str, total: u64, first: u64) {
    write!(
        s,
        "POST /sink HTTP/1.1\r\nHost: {host}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request head");
    send_pattern(s, 0, first);
}

fn send_pattern(s: &mut TcpStream, from: u64, to: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let len = (to - at).min(buf.len() as u64) as usize;
        pattern::fill(at, &mut buf[..len]);
        s.write_all(&buf[..len]).expect("send the body");
        at += len as u64;
    }
}

fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the answer");
    String::from_utf8_lossy(&out).into_owned()
}
