//! End to end: the real `kracauer run` in the router namespace, real kernel TCP in the
//! client and in the backends. What the issue asks of the daemon, as the client and the
//! backends see it.
//!
//! The binary is found next to the test executable (see `kracauer_testbed::kracauer`):
//! `cargo test --workspace` builds it first. Privileged: each test skips loudly when not
//! root, and fails instead with `KRACAUER_E2E=require` (CI). Every test builds its own
//! uniquely named namespaces and deletes them on drop, also when it fails, so the tests
//! run in parallel.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{
    BACKEND_A, BACKEND_B, CLIENT_V6, HTTP_PORT, HTTPS_ALT_PORT, HTTPS_PORT, SERVICE_V4, SSH_PORT,
};
use kracauer_testbed::{Error, Reply, Topology, Variant, client, pattern, privileged};

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
fn assert_translated(reply: &Reply, backend: std::net::Ipv6Addr, port: u16) {
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

fn service(port: u16) -> SocketAddr {
    Topology::service(port)
}

/// Opens a connection from the client namespace (the socket stays there).
fn open(tb: &Topology, port: u16) -> TcpStream {
    tb.client
        .run(|| client::open(service(port)))
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

#[test]
fn http_host_routes_by_name_and_backend_sees_embedded_address_and_client_port() {
    if !privileged("http_host_routes_by_name_and_backend_sees_embedded_address_and_client_port") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
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
fn tls_sni_routes_to_two_backends_and_a_wildcard_end_to_end() {
    if !privileged("tls_sni_routes_to_two_backends_and_a_wildcard_end_to_end") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
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
fn unknown_names_are_refused_and_no_backend_is_contacted() {
    if !privileged("unknown_names_are_refused_and_no_backend_is_contacted") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
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
fn shared_address_keeps_its_other_service_answering() {
    if !privileged("shared_address_keeps_its_other_service_answering") {
        return;
    }
    let tb = Topology::build(Variant::Shared).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
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
    assert_eq!(peer.ip(), std::net::Ipv4Addr::new(198, 51, 100, 2));
    assert_eq!(
        tb.contacts_router.contacts()[0].local,
        SocketAddr::new(SERVICE_V4.into(), SSH_PORT)
    );
}

#[test]
fn hundred_megabytes_each_way_arrive_intact() {
    if !privileged("hundred_megabytes_each_way_arrive_intact") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
    let n = 100 * 1000 * 1000;
    let up = tb.upload("a.example", n).unwrap();
    assert_eq!(up.body, format!("sink={n} mismatch=none\n"));
    assert_eq!(tb.download("b.example", n).unwrap(), n);
}

#[test]
fn two_hundred_concurrent_connections_are_each_routed_and_complete() {
    if !privileged("two_hundred_concurrent_connections_are_each_routed_and_complete") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
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
fn transfers_survive_three_percent_random_loss_each_way() {
    if !privileged("transfers_survive_three_percent_random_loss_each_way") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
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
fn sighup_adds_a_route_while_a_transfer_runs_and_the_transfer_survives() {
    if !privileged("sighup_adds_a_route_while_a_transfer_runs_and_the_transfer_survives") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(&tb.config("")).unwrap();
    assert_eq!(tb.http_get("c.example", "/").unwrap().status, 421);
    let total = 20 * 1000 * 1000;
    let mut s = open(&tb, HTTP_PORT);
    start_upload(&mut s, "a.example", total, total / 2);

    let more = format!("[[route]]\nhosts = [\"c.example\"]\nbackend = \"{BACKEND_B}\"\n");
    k.reload(&tb.config(&more)).unwrap();
    let reply = eventually(
        "c.example to route after SIGHUP",
        Duration::from_secs(10),
        || {
            tb.http_get("c.example", "/")
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    assert_translated(&reply, BACKEND_B, HTTP_PORT);

    send_pattern(&mut s, total / 2, total);
    let answer = read_all(&mut s);
    assert!(
        answer.ends_with(&format!("sink={total} mismatch=none\n")),
        "{answer}"
    );
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
}

#[test]
fn invalid_reload_changes_nothing() {
    if !privileged("invalid_reload_changes_nothing") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let mut k = tb.start_kracauer(&tb.config("")).unwrap();
    // A new route for c.example, in a file that is invalid further down.
    let broken = format!(
        "[[route]]\nhosts = [\"c.example\"]\nbackend = \"{BACKEND_B}\"\n\n\
         [[route]]\nhosts = [\"d.example\"]\nbackend = \"not-an-address\"\n"
    );
    k.reload(&tb.config(&broken)).unwrap();
    eventually(
        "the daemon to refuse the reload",
        Duration::from_secs(10),
        || k.log().to_lowercase().contains("refused").then_some(()),
    );
    assert!(k.is_running(), "{}", k.log());
    assert_eq!(tb.http_get("c.example", "/").unwrap().status, 421);
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
    assert_translated(
        &tb.https_get("b.example", "/").unwrap(),
        BACKEND_B,
        HTTPS_PORT,
    );
}

#[test]
fn after_kill_9_and_restart_new_connections_work_and_old_ones_are_reset() {
    if !privileged("after_kill_9_and_restart_new_connections_work_and_old_ones_are_reset") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(&tb.config("")).unwrap();
    // An old connection, spliced to backend a, with its upload half done.
    let mut old = open(&tb, HTTP_PORT);
    start_upload(&mut old, "a.example", 1000, 10);
    eventually(
        "the old connection to reach backend a",
        Duration::from_secs(10),
        || (tb.contacts_a.len() == 1).then_some(()),
    );

    k.kill9().unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );

    // The restarted daemon knows nothing of the old flow: the client's next segment is
    // answered with a RST, well before the client's own timeouts.
    old.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reset =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe);
    match old.write_all(&[0u8; 10]) {
        Err(e) => assert!(reset(&e), "{e}"),
        Ok(()) => match old.read(&mut [0u8; 100]) {
            Err(e) => assert!(reset(&e), "{e}"),
            Ok(n) => panic!("old connection read {n} bytes instead of a reset"),
        },
    }
}

#[test]
fn remapped_port_reaches_the_backend_on_its_own_port() {
    if !privileged("remapped_port_reaches_the_backend_on_its_own_port") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let remap = format!(
        "[[route]]\nhosts = [\"alt.example\"]\nbackend = \"{BACKEND_B}\"\nports = {{ 443 = {HTTPS_ALT_PORT} }}\n"
    );
    let _k = tb.start_kracauer(&tb.config(&remap)).unwrap();
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
fn default_backend_takes_unknown_names() {
    if !privileged("default_backend_takes_unknown_names") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let top = format!("default_backend = \"{BACKEND_B}\"");
    let _k = tb.start_kracauer(&tb.config_with(&top, "")).unwrap();
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
fn demo_narration_shows_what_each_backend_saw() {
    if !privileged("demo_narration_shows_what_each_backend_saw") {
        return;
    }
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
    let mut out = Vec::new();
    let fetches = kracauer_testbed::demo::narrate(&tb, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(fetches.iter().all(|f| f.as_expected()), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("https://a.example/ "))
        .unwrap();
    assert!(
        line.contains("-> backend 2001:db8:1::2 saw 2001:db8:64::c633:6402 = 198.51.100.2 port"),
        "{text}"
    );
    assert!(
        text.contains("refused by kracauer: TLS alert unrecognized_name"),
        "{text}"
    );
    assert!(text.contains("refused by kracauer: HTTP 421"), "{text}");
}

#[test]
fn kracauer_demo_shows_each_backend_saw_the_client_and_cleans_up() {
    if !privileged("kracauer_demo_shows_each_backend_saw_the_client_and_cleans_up") {
        return;
    }
    let out = kracauer_testbed::kracauer::run_binary(&["demo"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for url in [
        "https://a.example/",
        "https://b.example/",
        "http://b.example/",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{url} ")))
            .unwrap_or_else(|| panic!("no line for {url}:\n{text}"));
        assert!(
            line.contains("saw 2001:db8:64::c633:6402 = 198.51.100.2 port")
                && line.contains("(the client's own port)"),
            "{line}"
        );
    }
    assert!(text.contains("TLS alert unrecognized_name"), "{text}");
    // Its namespaces are gone: `testbed krc-tbPID-N: ...` names them.
    let tag = text
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(tag.starts_with("krc-tb"), "{text}");
    for role in ["client", "router", "a", "b"] {
        assert!(!kracauer_testbed::netns::exists(&format!("{tag}-{role}")));
    }
}

#[test]
fn kracauer_demo_refuses_clearly_when_not_root() {
    if !privileged("kracauer_demo_refuses_clearly_when_not_root") {
        return;
    }
    // Root drops to nobody for this one run (setpriv, util-linux).
    let binary = kracauer_testbed::kracauer::binary().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .arg("demo")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if matches!(out.status.code(), Some(126 | 127)) {
        // nobody may not reach a binary under a private directory (a CI clone in /root).
        eprintln!("*** SKIPPED the not-root demo run: nobody cannot execute {binary:?}: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kracauer demo: needs root"), "{stderr}");
    assert!(out.stdout.is_empty());
}
