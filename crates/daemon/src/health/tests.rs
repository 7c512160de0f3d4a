//! The health rules without a clock: passive marking and its end, active checks with
//! their rise and fall, pools of one, and state kept across a reload.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::config;
use crate::routes::route_table;

const BASE: &str =
    "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n\n";

fn a() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}

fn b() -> Ipv6Addr {
    "2001:db8:1::3".parse().unwrap()
}

fn monitor(routes: &str) -> (Monitor, RouteTable) {
    let text = format!("{BASE}{routes}");
    let c = config::parse(&text, Path::new("k.toml")).expect("valid");
    let t = route_table(&c, Path::new("k.toml")).expect("routes");
    (Monitor::new(&c, &t), t)
}

fn pool(health: &str) -> (Monitor, RouteTable) {
    monitor(&format!(
        "[[route]]\nhosts = [\"a.example\"]\nbackend = [\"2001:db8:1::2\", \"2001:db8:1::3\"]\n{health}"
    ))
}

fn report(addr: Ipv6Addr) -> Report {
    Report {
        route: "a.example".into(),
        backend: SocketAddrV6::new(addr, 443, 0, 0),
        cause: ConnectFailure::Refused,
    }
}

fn up(m: &Monitor, t: &RouteTable, addr: Ipv6Addr) -> bool {
    let slot = t.routes()[0]
        .pool()
        .backends()
        .iter()
        .find(|x| x.address() == addr)
        .unwrap()
        .slot();
    m.health().is_up(slot)
}

#[test]
fn one_failure_marks_a_pool_backend_down_for_fail_timeout_then_traffic_tries_it_again() {
    let (mut m, t) = pool("");
    let t0 = Instant::now();
    let change = m.failed(&report(a()), t0).expect("a change");
    assert!(!change.up);
    assert!(!up(&m, &t, a()) && up(&m, &t, b()));
    assert_eq!(m.next_wake(), Some(t0 + Duration::from_secs(10)));
    assert!(m.tick(t0 + Duration::from_secs(9)).is_empty());
    let back = m.tick(t0 + Duration::from_secs(10));
    assert_eq!(back.len(), 1);
    assert!(back[0].up && up(&m, &t, a()));
    assert_eq!(m.states()[0].failures, 1);
}

#[test]
fn max_fails_counts_failures_within_the_window_only() {
    let (mut m, t) = pool("[route.health]\nmax_fails = 3\nfail_timeout = \"10s\"\n");
    let t0 = Instant::now();
    assert!(m.failed(&report(a()), t0).is_none());
    assert!(
        m.failed(&report(a()), t0 + Duration::from_secs(1))
            .is_none()
    );
    // The first failure has left the window by now: still two.
    assert!(
        m.failed(&report(a()), t0 + Duration::from_secs(10))
            .is_none()
    );
    assert!(up(&m, &t, a()));
    assert!(
        m.failed(&report(a()), t0 + Duration::from_millis(10_500))
            .is_some()
    );
    assert!(!up(&m, &t, a()));
}

#[test]
fn a_pool_of_one_is_never_marked_down_by_failures_but_counts_them() {
    let (mut m, t) = monitor("[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n");
    for _ in 0..10 {
        assert!(m.failed(&report(a()), Instant::now()).is_none());
    }
    assert!(up(&m, &t, a()));
    assert_eq!(m.states()[0].failures, 10);
}

#[test]
fn max_fails_zero_turns_passive_marking_off() {
    let (mut m, t) = pool("[route.health]\nmax_fails = 0\n");
    assert!(m.failed(&report(a()), Instant::now()).is_none());
    assert!(up(&m, &t, a()));
}

#[test]
fn active_checks_mark_down_after_fall_failures_and_up_after_rise_successes() {
    let (mut m, t) = pool("[route.health]\ncheck_interval = \"1s\"\n");
    assert_eq!(m.targets().len(), 2);
    assert_eq!(m.targets()[0].check.port, 443);
    for _ in 1..FALL {
        assert!(m.checked("a.example", a(), false).is_none());
    }
    assert!(m.checked("a.example", a(), false).is_some_and(|c| !c.up));
    assert!(!up(&m, &t, a()));
    for _ in 1..RISE {
        assert!(m.checked("a.example", a(), true).is_none());
    }
    assert!(m.checked("a.example", a(), true).is_some_and(|c| c.up));
    assert!(up(&m, &t, a()));
}

#[test]
fn a_good_check_ends_a_passive_down_at_once() {
    let (mut m, t) = pool("[route.health]\ncheck_interval = \"1s\"\n");
    m.failed(&report(a()), Instant::now());
    assert!(!up(&m, &t, a()));
    assert!(m.checked("a.example", a(), true).is_some_and(|c| c.up));
    assert!(up(&m, &t, a()));
}

#[test]
fn reports_about_backends_the_configuration_lacks_are_ignored() {
    let (mut m, _) = pool("");
    let mut r = report("2001:db8:1::9".parse().unwrap());
    assert!(m.failed(&r, Instant::now()).is_none());
    r = Report {
        route: "b.example".into(),
        ..report(a())
    };
    assert!(m.failed(&r, Instant::now()).is_none());
}

#[test]
fn a_reload_keeps_the_state_of_backends_it_keeps_and_starts_new_ones_up() {
    let (mut m, _) = pool("");
    m.failed(&report(a()), Instant::now());
    let text = format!(
        "{BASE}[[route]]\nhosts = [\"z.example\"]\nbackend = \"2001:db8:1::7\"\n\n[[route]]\nhosts = [\"a.example\"]\nbackend = [\"2001:db8:1::2\", \"2001:db8:1::3\", \"2001:db8:1::4\"]\n"
    );
    let c = config::parse(&text, Path::new("k.toml")).expect("valid");
    let t = route_table(&c, Path::new("k.toml")).expect("routes");
    let next = m.reload(&c, &t);
    let h = next.health();
    let slots: Vec<(Ipv6Addr, bool)> = t.routes()[1]
        .pool()
        .backends()
        .iter()
        .map(|x| (x.address(), h.is_up(x.slot())))
        .collect();
    assert_eq!(
        slots,
        [
            (a(), false),
            (b(), true),
            ("2001:db8:1::4".parse().unwrap(), true)
        ]
    );
    assert!(
        next.states()
            .iter()
            .any(|s| s.backend == a() && s.failures == 1)
    );
}
