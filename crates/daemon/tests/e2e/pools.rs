//! Backend pools end to end: a name served by backends a and b (and a third address of
//! b's host after a reload). A backend taken out of service (its host answers every TCP
//! packet with RST, or drops it) costs the client nothing: the same SYN goes to the other
//! backend. Established flows to it end as its kernel decides, new ones go to the
//! survivor, and health (passive or active) brings it back. Metrics say which are up.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, TcpStream};
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, BACKEND_B, BACKEND_C, HTTP_PORT, PREFIX};
use kracauer_testbed::{Kracauer, Outage, Topology, Variant, pattern, require_privileged};

use super::{KRACAUER, eventually, open, read_all, send_pattern, start_upload};

const NAME: &str = "pool.example";

/// `pool.example` on backends `backends`, placed by `hash`, with `health` lines (a
/// `[route.health]` table's body) if any.
fn pool(backends: &[Ipv6Addr], hash: &str, health: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    let mut s = format!(
        "[[route]]\nhosts = [\"{NAME}\"]\nbackend = [{}]\nhash = \"{hash}\"\n",
        list.join(", ")
    );
    if !health.is_empty() {
        s.push_str(&format!("\n[route.health]\n{health}\n"));
    }
    s
}

/// One request to each backend through its own route (a pool of one, which waits for a
/// slow first answer): a fresh testbed's first packet to a host waits about a second
/// for neighbour discovery, which a pool would take for a failed attempt.
fn warm_up(tb: &Topology) {
    for name in ["a.example", "b.example"] {
        let reply = tb.http_get(name, "/").expect("a warm-up request");
        assert_eq!(reply.status, 200);
    }
}

/// The backend that answered a `GET` for the pool's name.
fn served_by(tb: &Topology) -> Option<Ipv6Addr> {
    let reply = tb.http_get(NAME, "/").ok()?;
    if reply.status != 200 {
        return None;
    }
    match reply.seen()?.local.ip() {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// `kracauer_backend_up` for `backend` of the pool, from the metrics.
fn backend_up(k: &Kracauer<'_>, backend: Ipv6Addr) -> Option<bool> {
    let body = k.metrics().ok()?.body;
    let line = format!("kracauer_backend_up{{route=\"{NAME}\",backend=\"{backend}\"}} ");
    let value = body.lines().find_map(|l| l.strip_prefix(line.as_str()))?;
    Some(value.trim() == "1")
}

/// A counter without labels from the metrics.
fn counter(k: &Kracauer<'_>, name: &str) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("kracauer_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn other(backend: Ipv6Addr) -> Ipv6Addr {
    if backend == BACKEND_A {
        BACKEND_B
    } else {
        BACKEND_A
    }
}

fn host_of(tb: &Topology, backend: Ipv6Addr) -> &kracauer_testbed::Netns {
    if backend == BACKEND_A {
        &tb.backend_a
    } else {
        &tb.backend_b
    }
}

/// Which backend accepted the connection from local port `port`.
fn backend_of(tb: &Topology, port: u16) -> Option<Ipv6Addr> {
    for (log, addr) in [(&tb.contacts_a, BACKEND_A), (&tb.contacts_b, BACKEND_B)] {
        if log.contacts().iter().any(|c| c.peer.port() == port) {
            return Some(addr);
        }
    }
    None
}

/// Sends the rest of an upload and reads the answer, without panicking on a reset.
fn finish_upload(s: &mut TcpStream, from: u64, to: u64) -> std::io::Result<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let len = (to - at).min(buf.len() as u64) as usize;
        pattern::fill(at, &mut buf[..len]);
        s.write_all(&buf[..len])?;
        at += len as u64;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_name_with_two_backends_one_refusing_serves_100_connections_all_on_the_other() {
    require_privileged(
        "a_name_with_two_backends_one_refusing_serves_100_connections_all_on_the_other",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = tb.config(&pool(&[BACKEND_A, BACKEND_B], "address", ""));
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();
    warm_up(&tb);
    // The client's own backend (placement by address) is the one that stops.
    let favourite = served_by(&tb).expect("the pool answers");
    tb.backend_outage(host_of(&tb, favourite), Outage::Refuse)
        .unwrap();
    for n in 0..100 {
        let reply = tb.http_get(NAME, "/").unwrap();
        assert_eq!(reply.status, 200, "connection {n}: {reply:?}");
        let seen = reply.seen().expect("an answer line");
        assert_eq!(
            seen.local.ip(),
            IpAddr::V6(other(favourite)),
            "connection {n}"
        );
        assert_eq!(
            seen.peer.port(),
            reply.local.port(),
            "the client's own port"
        );
    }
    eventually(
        "the failover to show in the metrics",
        Duration::from_secs(5),
        || (counter(&k, "backend_failovers_total") >= 1).then_some(()),
    );
    assert_eq!(backend_up(&k, favourite), Some(false), "{}", k.log());
    assert_eq!(backend_up(&k, other(favourite)), Some(true));
    assert!(k.log().contains("backend down"), "{}", k.log());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_silent_backend_costs_one_attempt_then_clients_go_straight_to_the_other() {
    require_privileged("a_silent_backend_costs_one_attempt_then_clients_go_straight_to_the_other");
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = tb.config(&pool(&[BACKEND_A, BACKEND_B], "address", ""));
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();
    warm_up(&tb);
    let favourite = served_by(&tb).expect("the pool answers");
    tb.backend_outage(host_of(&tb, favourite), Outage::Silent)
        .unwrap();
    for n in 0..10 {
        let reply = tb.http_get(NAME, "/").unwrap();
        assert_eq!(reply.status, 200, "connection {n}: {reply:?}");
        assert_eq!(
            reply.seen().map(|s| s.local.ip()),
            Some(IpAddr::V6(other(favourite)))
        );
    }
    assert_eq!(backend_up(&k, favourite), Some(false), "{}", k.log());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_backend_stopped_mid_run_resets_its_flows_and_new_ones_go_to_the_survivor() {
    require_privileged(
        "a_backend_stopped_mid_run_resets_its_flows_and_new_ones_go_to_the_survivor",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = tb.config(&pool(&[BACKEND_A, BACKEND_B], "tuple", ""));
    let _k = tb.start_kracauer(KRACAUER, &config).unwrap();
    warm_up(&tb);
    let total = 2_000_000;
    // Uploads half done, placed per connection, until both backends hold some.
    let mut flows: Vec<(TcpStream, Ipv6Addr)> = Vec::new();
    for _ in 0..64 {
        let mut s = open(&tb, HTTP_PORT);
        start_upload(&mut s, NAME, total, total / 2);
        let port = s.local_addr().unwrap().port();
        let backend = eventually(
            "the upload to reach a backend",
            Duration::from_secs(10),
            || backend_of(&tb, port),
        );
        flows.push((s, backend));
        let on = |b| flows.iter().any(|(_, x)| *x == b);
        if flows.len() >= 4 && on(BACKEND_A) && on(BACKEND_B) {
            break;
        }
    }
    tb.backend_outage(&tb.backend_a, Outage::Refuse).unwrap();
    for (mut s, backend) in flows {
        let answer = finish_upload(&mut s, total / 2, total);
        let ok = format!("sink={total} mismatch=none\n");
        if backend == BACKEND_A {
            assert!(
                answer.as_ref().map_or(true, |a| !a.ends_with(&ok)),
                "a flow to the stopped backend cannot complete: {answer:?}"
            );
        } else {
            let answer = answer.expect("the survivor's flow completes");
            assert!(answer.ends_with(&ok), "{answer}");
        }
    }
    for n in 0..20 {
        assert_eq!(served_by(&tb), Some(BACKEND_B), "new connection {n}");
    }
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_stopped_backend_comes_back_through_active_checks_from_the_prefix() {
    require_privileged("a_stopped_backend_comes_back_through_active_checks_from_the_prefix");
    let tb = Topology::build(Variant::Routed).unwrap();
    let health = "check_interval = \"300ms\"\ncheck_timeout = \"250ms\"\ncheck_port = 80";
    let config = tb.config(&pool(&[BACKEND_A, BACKEND_B], "tuple", health));
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();
    warm_up(&tb);
    let check_source: Ipv6Addr = PREFIX
        .trim_end_matches("/96")
        .parse::<Ipv6Addr>()
        .map(|p| Ipv6Addr::from(u128::from(p) | 1))
        .unwrap();
    eventually(
        "a check from the prefix to reach backend a",
        Duration::from_secs(10),
        || {
            tb.contacts_a
                .contacts()
                .iter()
                .any(|c| c.peer.ip() == IpAddr::V6(check_source) && c.local.port() == 80)
                .then_some(())
        },
    );
    eventually(
        "both backends to pass their checks",
        Duration::from_secs(10),
        || {
            (backend_up(&k, BACKEND_A) == Some(true) && backend_up(&k, BACKEND_B) == Some(true))
                .then_some(())
        },
    );
    tb.backend_outage(&tb.backend_a, Outage::Refuse).unwrap();
    eventually("backend a to be down", Duration::from_secs(10), || {
        (backend_up(&k, BACKEND_A) == Some(false)).then_some(())
    });
    for n in 0..20 {
        assert_eq!(
            served_by(&tb),
            Some(BACKEND_B),
            "connection {n} while a is down"
        );
    }
    tb.end_outage(&tb.backend_a).unwrap();
    eventually("backend a to be up", Duration::from_secs(10), || {
        (backend_up(&k, BACKEND_A) == Some(true)).then_some(())
    });
    eventually(
        "a connection to reach backend a again",
        Duration::from_secs(10),
        || (served_by(&tb) == Some(BACKEND_A)).then_some(()),
    );
    assert!(k.log().contains("backend up"), "{}", k.log());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_stopped_backend_comes_back_through_passive_health_when_its_time_down_ends() {
    require_privileged(
        "a_stopped_backend_comes_back_through_passive_health_when_its_time_down_ends",
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = tb.config(&pool(
        &[BACKEND_A, BACKEND_B],
        "tuple",
        "fail_timeout = \"1s\"",
    ));
    let k = tb.start_kracauer(KRACAUER, &config).unwrap();
    warm_up(&tb);
    tb.backend_outage(&tb.backend_a, Outage::Refuse).unwrap();
    eventually(
        "a failure to mark backend a down",
        Duration::from_secs(10),
        || {
            assert_eq!(served_by(&tb), Some(BACKEND_B));
            (backend_up(&k, BACKEND_A) == Some(false)).then_some(())
        },
    );
    tb.end_outage(&tb.backend_a).unwrap();
    eventually(
        "a connection to reach backend a again",
        Duration::from_secs(10),
        || {
            let by = served_by(&tb);
            assert!(by.is_some(), "every connection is served");
            (by == Some(BACKEND_A)).then_some(())
        },
    );
    assert_eq!(backend_up(&k, BACKEND_A), Some(true));
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_reload_adds_a_third_backend_without_dropping_a_flow() {
    require_privileged("a_reload_adds_a_third_backend_without_dropping_a_flow");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb
        .start_kracauer(
            KRACAUER,
            &tb.config(&pool(&[BACKEND_A, BACKEND_B], "tuple", "")),
        )
        .unwrap();
    let total = 4_000_000;
    let mut flows = Vec::new();
    for _ in 0..4 {
        let mut s = open(&tb, HTTP_PORT);
        start_upload(&mut s, NAME, total, total / 2);
        flows.push(s);
    }
    tb.add_backend_address(&tb.backend_b, BACKEND_C).unwrap();
    k.reload(&tb.config(&pool(&[BACKEND_A, BACKEND_B, BACKEND_C], "tuple", "")))
        .unwrap();
    eventually(
        "a connection to reach the third backend",
        Duration::from_secs(10),
        || (served_by(&tb) == Some(BACKEND_C)).then_some(()),
    );
    for mut s in flows {
        send_pattern(&mut s, total / 2, total);
        let answer = read_all(&mut s);
        assert!(
            answer.ends_with(&format!("sink={total} mismatch=none\n")),
            "{answer}"
        );
    }
    assert_eq!(backend_up(&k, BACKEND_C), Some(true), "{}", k.log());
}
