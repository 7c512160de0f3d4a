//! The metrics real traffic leaves: flows, bytes and connect failures per route, the
//! peek and connect histograms, reloads by result, build and process metrics.

use std::time::Duration;

use kracauer_testbed::topology::BACKEND_B;
use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{KRACAUER, eventually, metric, scrape};

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn flows_are_counted_per_route_with_their_bytes_connect_failures_and_times() {
    require_privileged("flows_are_counted_per_route_with_their_bytes_connect_failures_and_times");
    let tb = Topology::build(Variant::Routed).unwrap();
    // c.example goes to backend b on a port nobody listens on: b refuses the SYN.
    let extra = format!(
        "[[route]]\nhosts = [\"c.example\", \"*.c.example\"]\nbackend = \"{BACKEND_B}\"\nports = {{ 80 = 8081 }}\n\n[timeouts]\nlinger = \"1s\"\n"
    );
    let k = tb.start_kracauer(KRACAUER, &tb.config(&extra)).unwrap();
    for _ in 0..3 {
        assert_eq!(tb.http_get("x.a.example", "/").unwrap().status, 200);
    }
    for _ in 0..2 {
        assert_eq!(tb.https_get("b.example", "/").unwrap().status, 200);
    }
    assert!(
        tb.http_get("c.example", "/").is_err(),
        "backend b refuses port 8081"
    );
    assert_eq!(tb.http_get("unknown.example", "/").unwrap().status, 421);

    let body = eventually("every flow to end", Duration::from_secs(60), || {
        let body = scrape(&k);
        (metric(&body, "kracauer_route_flows_total{route=\"a.example\"}") == Some(3)
            && metric(&body, "kracauer_route_flows_total{route=\"b.example\"}") == Some(2)
            && metric(&body, "kracauer_route_flows_total{route=\"c.example\"}") == Some(1))
        .then_some(body)
    });
    for (series, want) in [
        (
            "kracauer_route_connect_failures_total{route=\"a.example\"}",
            0,
        ),
        (
            "kracauer_route_connect_failures_total{route=\"c.example\"}",
            1,
        ),
        ("kracauer_route_refused_total{route=\"c.example\"}", 1),
        (
            "kracauer_flows_ended_total{outcome=\"unknown_name\",protocol=\"tcp\"}",
            1,
        ),
        ("kracauer_peek_duration_seconds_count", 5),
        ("kracauer_backend_connect_duration_seconds_count", 5),
        (
            "kracauer_backend_connect_duration_seconds_bucket{le=\"+Inf\"}",
            5,
        ),
    ] {
        assert_eq!(metric(&body, series), Some(want), "{series}\n{body}");
    }
    let to_client = metric(
        &body,
        "kracauer_route_bytes_total{route=\"a.example\",direction=\"to_client\"}",
    )
    .unwrap();
    assert!(to_client > 3 * 100, "three answers: {to_client}");
    assert!(
        !body.contains("route=\"unknown.example\""),
        "no label per unknown name"
    );
    assert!(body.contains("kracauer_build_info{version=\""), "{body}");
    assert!(body.contains("\nprocess_start_time_seconds "), "{body}");
    assert!(body.contains("\nprocess_resident_memory_bytes "), "{body}");
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn reloads_are_counted_by_result() {
    require_privileged("reloads_are_counted_by_result");
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    k.reload(&tb.config("[[route]]\nhosts = [\"d..example\"]\nbackend = \"2001:db8:1::3\"\n"))
        .unwrap();
    eventually("the refused reload", Duration::from_secs(10), || {
        let body = scrape(&k);
        (metric(&body, "kracauer_config_reloads_total{result=\"refused\"}") == Some(1))
            .then_some(())
    });
    let body = scrape(&k);
    assert_eq!(
        metric(&body, "kracauer_config_last_reload_successful"),
        Some(0)
    );
    k.reload(&tb.config("")).unwrap();
    eventually("the applied reload", Duration::from_secs(10), || {
        let body = scrape(&k);
        (metric(&body, "kracauer_config_reloads_total{result=\"applied\"}") == Some(1)
            && metric(&body, "kracauer_config_last_reload_successful") == Some(1))
        .then_some(())
    });
}
