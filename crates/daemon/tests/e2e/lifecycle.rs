//! Reloads, restarts and stops: SIGHUP adds routes under load and a refused file changes
//! nothing, a start after `kill -9` cleans up what the killed run left, SIGTERM undoes the
//! set-up, and the demo's narration against the real binary.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, BACKEND_B, HTTP_PORT, HTTPS_PORT, TUN};
use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{KRACAUER, assert_translated, eventually, open, read_all, send_pattern, start_upload};

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn sighup_adds_a_route_while_a_transfer_runs_and_the_transfer_survives() {
    require_privileged("sighup_adds_a_route_while_a_transfer_runs_and_the_transfer_survives");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
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
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn refused_reloads_change_nothing_and_keep_the_last_good_routes() {
    require_privileged("refused_reloads_change_nothing_and_keep_the_last_good_routes");
    let tb = Topology::build(Variant::Routed).unwrap();
    let mut k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    // A good reload: c.example goes to backend b.
    let with_c = format!("[[route]]\nhosts = [\"c.example\"]\nbackend = \"{BACKEND_B}\"\n");
    k.reload(&tb.config(&with_c)).unwrap();
    eventually(
        "c.example to route after SIGHUP",
        Duration::from_secs(10),
        || {
            tb.http_get("c.example", "/")
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    // Two bad files, each without c.example and with a new route for d.example that is
    // valid itself: one has a malformed name further down, one a backend that is no
    // address. Neither takes any effect.
    let d = "[[route]]\nhosts = [\"d.example\"]\nbackend = \"2001:db8:1::2\"\n\n";
    for (n, bad) in [
        "[[route]]\nhosts = [\"e..example\"]\nbackend = \"2001:db8:1::3\"\n",
        "[[route]]\nhosts = [\"e.example\"]\nbackend = \"not-an-address\"\n",
    ]
    .into_iter()
    .enumerate()
    {
        k.reload(&tb.config(&format!("{d}{bad}"))).unwrap();
        eventually(
            "the daemon to refuse the reload",
            Duration::from_secs(10),
            || (k.log().to_lowercase().matches("refused").count() > n).then_some(()),
        );
        assert!(k.is_running(), "{}", k.log());
        assert_eq!(tb.http_get("d.example", "/").unwrap().status, 421);
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
        assert_translated(
            &tb.https_get("b.example", "/").unwrap(),
            BACKEND_B,
            HTTPS_PORT,
        );
    }
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn after_kill_9_and_restart_new_connections_work_and_old_ones_are_reset() {
    require_privileged("after_kill_9_and_restart_new_connections_work_and_old_ones_are_reset");
    let tb = Topology::build(Variant::Routed).unwrap();
    // The TUN path: with the fast path the old flow moves on in the kernel and the next
    // daemon adopts it (survival.rs). Here each start has a bpffs of its own, so the
    // killed run's program would carry the old flow until its carrier keeper's mount
    // namespace goes, a race with the write below.
    let off = super::survival::config(&tb, "off");
    let k = tb.start_kracauer(KRACAUER, &off).unwrap();
    // An old connection, spliced to backend a, with its upload half done.
    let mut old = open(&tb, HTTP_PORT);
    start_upload(&mut old, "a.example", 1000, 10);
    eventually(
        "the old connection to reach backend a",
        Duration::from_secs(10),
        || (tb.contacts_a.len() == 1).then_some(()),
    );

    k.kill9().unwrap();
    let _k = tb.start_kracauer(KRACAUER, &off).unwrap();
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
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn start_after_kill_9_removes_the_rules_the_killed_run_left_and_a_stop_restores_the_router() {
    require_privileged(
        "start_after_kill_9_removes_the_rules_the_killed_run_left_and_a_stop_restores_the_router",
    );
    // The shared variant: the service address is the router's own, so kracauer diverts
    // it with policy rules, which outlive a killed process (its TUN and routes do not).
    let tb = Topology::build(Variant::Shared).unwrap();
    let pristine = tb.router.ip(["rule", "show"]).unwrap();
    tb.start_kracauer(KRACAUER, &tb.config(""))
        .unwrap()
        .kill9()
        .unwrap();
    let left = tb.router.ip(["rule", "show"]).unwrap();
    assert!(left.contains("proto 107"), "{left}");
    assert!(
        !left.lines().any(|l| l.starts_with("0:")),
        "the local rule was moved: {left}"
    );

    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    // Two divert rules (ports 443 and 80), the moved local rule, and the local route of
    // the health-check source (on `lo`, so it outlives the TUN). With the fast path (on
    // by default where it can run) the TUN is persistent, so its two routes (the prefix
    // and the divert table's default) outlived the killed run too.
    let left = if k.log().contains("fast path: on") {
        6
    } else {
        4
    };
    assert!(
        k.log().contains(&format!(
            "removed {left} rules and routes left by an earlier run"
        )),
        "{}",
        k.log()
    );
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
    let status = k.terminate().unwrap();
    assert!(status.success(), "kracauer exited with {status}");
    assert_eq!(tb.router.ip(["rule", "show"]).unwrap(), pristine);
    // The TUN goes at the stop, also one a killed run had made persistent.
    assert!(
        tb.router.ip(["link", "show", TUN]).is_err(),
        "the TUN stayed"
    );
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn demo_narration_shows_what_each_backend_saw() {
    require_privileged("demo_narration_shows_what_each_backend_saw");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
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
