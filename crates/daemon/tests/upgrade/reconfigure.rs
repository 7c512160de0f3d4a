//! An upgrade picks up a changed configuration as a reload would, listen addresses and
//! ports and the prefix included (flows that began under the old prefix keep it).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT, ROUTER_V6, TUN};
use kracauer_testbed::{Topology, Variant, client, pattern, require_privileged};

use super::{connect, eventually, install, metric, serial, start_with, terminate, usr2};

/// The testbed's configuration with HTTP also on `port`, which `c.example` reaches at
/// backend a's port 80.
fn with_http_port(tb: &Topology, port: u16) -> String {
    let route = format!(
        "[[route]]\nhosts = [\"c.example\"]\nbackend = \"{BACKEND_A}\"\nports = {{ {port} = 80 }}\n"
    );
    tb.config(&route)
        .replace("http = [80]", &format!("http = [80, {port}]"))
}

/// The status of `GET /` for `c.example` on `port`, or the error's kind.
fn get_c(tb: &Topology, port: u16) -> Result<u16, ErrorKind> {
    match tb
        .client
        .run(|| client::http_get(Topology::service(port), "c.example", "/"))
        .unwrap()
    {
        Ok(r) => Ok(r.status),
        Err(kracauer_testbed::Error::Io(e)) => Err(e.kind()),
        Err(e) => panic!("{e}"),
    }
}

/// Starts `POST /sink` of `total` bytes on `s` and sends the first half.
pub(super) fn half_upload(s: &mut TcpStream, total: u64) {
    write!(
        s,
        "POST /sink HTTP/1.1\r\nHost: a.example\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    send(s, 0, total / 2);
}

pub(super) fn send(s: &mut TcpStream, from: u64, to: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        pattern::fill(at, &mut buf[..n]);
        s.write_all(&buf[..n]).unwrap();
        at += n as u64;
    }
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn an_upgrade_applies_a_listen_change_while_a_transfer_on_another_port_runs() {
    require_privileged("an_upgrade_applies_a_listen_change_while_a_transfer_on_another_port_runs");
    let _serial = serial();
    // The service address is the router's own: each port is a policy rule.
    let tb = Topology::build(Variant::Shared).unwrap();
    let (k, exe, _reaper) = start_with(&tb, &with_http_port(&tb, 8080));
    assert_eq!(get_c(&tb, 8080), Ok(200));
    let total = 20_000_000;
    let mut upload = connect(&tb, HTTP_PORT);
    half_upload(&mut upload, total);

    std::fs::write(k.config_path(), with_http_port(&tb, 8081)).unwrap();
    install(&exe, None);
    let pid = usr2(k.pid() as i32, &k, 1);
    let status = eventually("port 8081 to be served", Duration::from_secs(10), || {
        get_c(&tb, 8081).ok()
    });
    assert_eq!(status, 200);
    assert_eq!(get_c(&tb, 8080), Err(ErrorKind::ConnectionRefused));
    send(&mut upload, total / 2, total);
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert!(
        answer.ends_with(&format!("sink={total} mismatch=none\n")),
        "{answer}"
    );
    terminate(pid);
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn an_upgrade_to_another_prefix_and_mtu_keeps_running_flows_on_theirs() {
    require_privileged("an_upgrade_to_another_prefix_and_mtu_keeps_running_flows_on_theirs");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    for ns in [&tb.backend_a, &tb.backend_b] {
        ns.ip([
            "-6",
            "route",
            "add",
            "2001:db8:65::/96",
            "via",
            &ROUTER_V6.to_string(),
        ])
        .unwrap();
    }
    let config = tb.config("[timeouts]\nlinger = \"1s\"\n");
    let (k, exe, _reaper) = start_with(&tb, &config);
    let mut upload = connect(&tb, HTTP_PORT);
    half_upload(&mut upload, 1_000_000);
    std::fs::write(
        k.config_path(),
        config
            .replace("2001:db8:64::/96", "2001:db8:65::/96")
            .replace("mtu = 1500", "mtu = 1400"),
    )
    .unwrap();
    install(&exe, None);
    let pid = usr2(k.pid() as i32, &k, 1);
    let link = tb.router.ip(["-o", "link", "show", TUN]).unwrap();
    assert!(link.contains(" mtu 1400 "), "{link}");
    // New connections come from the new prefix.
    let seen = tb.http_get("a.example", "/").unwrap().seen().unwrap();
    assert_eq!(seen.peer.ip().to_string(), "2001:db8:65::c633:6402");
    // The upload under way finishes under the old one.
    send(&mut upload, 500_000, 1_000_000);
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("sink=1000000 mismatch=none\n"), "{answer}");
    drop(upload);
    let old_routed = || {
        !tb.router
            .ip(["-6", "route", "show", "2001:db8:64::/96"])
            .unwrap()
            .trim()
            .is_empty()
    };
    eventually(
        "the old prefix's route to go",
        Duration::from_secs(30),
        || (!old_routed()).then_some(()),
    );
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    terminate(pid);
}

/// The testbed's configuration with `[tun] workers = n` (the fast path off: the flows'
/// packets are to reach the workers that hold them).
fn with_workers(tb: &Topology, n: usize) -> String {
    tb.config("").replacen(
        "mtu = 1500\n",
        &format!("mtu = 1500\nworkers = {n}\nfastpath = \"off\"\n"),
        1,
    )
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn upgrades_to_more_workers_and_to_fewer_divide_the_flows_and_break_none() {
    require_privileged("upgrades_to_more_workers_and_to_fewer_divide_the_flows_and_break_none");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (k, exe, _reaper) = start_with(&tb, &with_workers(&tb, 1));
    let total = 2_000_000;
    // Uploads from 24 client ports, each half sent: flows the new division spreads over
    // every worker.
    let mut uploads: Vec<TcpStream> = (0..24).map(|_| connect(&tb, HTTP_PORT)).collect();
    for u in &mut uploads {
        half_upload(u, total);
    }
    let mut pid = k.pid() as i32;
    for (n, workers) in [(1, 3), (2, 2)] {
        std::fs::write(k.config_path(), with_workers(&tb, workers)).unwrap();
        install(&exe, None);
        pid = usr2(pid, &k, n);
        assert_eq!(metric(&k, "kracauer_workers"), workers as u64);
        assert!(
            k.log().contains(&format!(
                "divided among {workers}, as the kernel steers them"
            )),
            "{}",
            k.log()
        );
    }
    for u in &mut uploads {
        send(u, total / 2, total);
    }
    for mut u in uploads {
        let mut answer = String::new();
        u.read_to_string(&mut answer).unwrap();
        assert!(
            answer.ends_with(&format!("sink={total} mismatch=none\n")),
            "{answer}"
        );
    }
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    terminate(pid);
}
