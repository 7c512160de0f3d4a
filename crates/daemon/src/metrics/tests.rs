//! The exposition as Prometheus reads it, and the small HTTP server in front of it.

use super::*;
use crate::observe::{FlowStats, RouteStats};
use crate::runtime;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn metrics(workers: Vec<Snapshot>, offload: bool) -> (Metrics, Sources) {
    let published = runtime::published(workers.len());
    *published.workers.lock().unwrap() = workers;
    published.offload.store(offload, Ordering::Relaxed);
    let sources = Sources {
        published,
        log: Arc::new(LogCounters::default()),
        control: Arc::new(Control::default()),
    };
    (Metrics::new(sources.clone()), sources)
}

fn text(workers: Vec<Snapshot>, offload: bool) -> String {
    metrics(workers, offload).0.render()
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn every_metric_name_of_the_hand_written_exposition_is_kept() {
    let t = text(vec![Snapshot::default()], true);
    for name in [
        "kracauer_packets_total",
        "kracauer_bytes_total",
        "kracauer_packets_made_total",
        "kracauer_drops_total",
        "kracauer_flows_ended_total",
        "kracauer_flows_spliced_total",
        "kracauer_syn_cookies_sent_total",
        "kracauer_syn_cookies_accepted_total",
        "kracauer_syn_cookies_for_address_total",
        "kracauer_cookie_acks_deferred_total",
        "kracauer_pressure_cuts_total",
        "kracauer_custody_taken_total",
        "kracauer_custody_retransmits_total",
        "kracauer_challenge_acks_sent_total",
        "kracauer_challenge_acks_limited_total",
        "kracauer_flows",
        "kracauer_flows_half_open",
        "kracauer_peek_bytes",
        "kracauer_workers",
        "kracauer_tun_offload",
        "kracauer_tun_packets_total",
        "kracauer_tun_super_packets_total",
        "kracauer_tun_header_errors_total",
        "kracauer_tun_write_errors_total",
        "kracauer_reloads_total",
        "kracauer_uptime_seconds",
        "kracauer_fastpath_running",
        "kracauer_fastpath_packets_total",
        "kracauer_fastpath_flows",
        "kracauer_fastpath_handovers_refused_total",
    ] {
        assert!(
            t.lines().any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "{name} missing:\n{t}"
        );
    }
}

#[test]
fn every_drop_reason_is_a_sample_with_its_side() {
    let t = text(vec![Snapshot::default()], true);
    for r in DropReason::ALL {
        let line = format!(
            "kracauer_drops_total{{reason=\"{}\",side=\"{}\"}} 0",
            r.name(),
            r.side().name()
        );
        assert!(has(&t, &line), "missing {line}");
    }
    assert!(has(
        &t,
        "kracauer_drops_total{reason=\"client_no_flow\",side=\"client\"} 0"
    ));
}

#[test]
fn counters_and_gauges_carry_the_snapshot_values() {
    let s = Snapshot {
        flows: 3,
        half_open: 1,
        tun_packets: 5,
        ..Snapshot::default()
    };
    let t = Snapshot {
        flows: 2,
        tun_packets: 7,
        tun_super_packets: 4,
        ..Snapshot::default()
    };
    let text = text(vec![s, t], true);
    for line in [
        "kracauer_flows 5",
        "kracauer_workers 2",
        "kracauer_tun_offload 1",
        "kracauer_tun_packets_total{worker=\"1\"} 7",
        "kracauer_tun_super_packets_total{worker=\"1\"} 4",
        "kracauer_flows_half_open 1",
        "kracauer_packets_total{direction=\"to_client\",protocol=\"tcp\"} 0",
        "kracauer_packets_total{direction=\"to_client\",protocol=\"quic\"} 0",
        "kracauer_flows_ended_total{outcome=\"closed\",protocol=\"tcp\"} 0",
        "kracauer_flows_ended_total{outcome=\"closed\",protocol=\"quic\"} 0",
        "kracauer_peeks_total{protocol=\"quic\",path=\"refused\"} 0",
        "kracauer_quic_flows_routed_total 0",
        "kracauer_quic_flows 0",
    ] {
        assert!(has(&text, line), "missing {line}:\n{text}");
    }
}

#[test]
fn route_counters_and_histograms_add_up_over_workers() {
    let mut a = FlowStats::default();
    a.peek.observe(Duration::from_millis(3));
    a.connect.observe(Duration::from_micros(300));
    a.routes.insert(
        Arc::from("a.example"),
        RouteStats {
            flows: 2,
            connect_failures: 1,
            refused: 1,
            bytes: [10, 20],
        },
    );
    let mut b = FlowStats::default();
    b.peek.observe(Duration::from_secs(2));
    b.routes.insert(
        Arc::from("a.example"),
        RouteStats {
            flows: 1,
            bytes: [1, 2],
            ..RouteStats::default()
        },
    );
    b.routes.insert(
        Arc::from("(default)"),
        RouteStats {
            flows: 4,
            ..RouteStats::default()
        },
    );
    let w = |flow_stats| Snapshot {
        flow_stats,
        ..Snapshot::default()
    };
    let t = text(vec![w(a), w(b)], false);
    for line in [
        "kracauer_route_flows_total{route=\"a.example\"} 3",
        "kracauer_route_flows_total{route=\"(default)\"} 4",
        "kracauer_route_connect_failures_total{route=\"a.example\"} 1",
        "kracauer_route_refused_total{route=\"a.example\"} 1",
        "kracauer_route_bytes_total{route=\"a.example\",direction=\"to_backend\"} 11",
        "kracauer_route_bytes_total{route=\"a.example\",direction=\"to_client\"} 22",
        "kracauer_peek_duration_seconds_count 2",
        "kracauer_peek_duration_seconds_bucket{le=\"0.005\"} 1",
        "kracauer_peek_duration_seconds_bucket{le=\"+Inf\"} 2",
        "kracauer_backend_connect_duration_seconds_count 1",
        "kracauer_backend_connect_duration_seconds_bucket{le=\"0.0005\"} 1",
        "# TYPE kracauer_backend_connect_duration_seconds histogram",
    ] {
        assert!(has(&t, line), "missing {line}:\n{t}");
    }
}

#[test]
fn log_drops_reloads_build_and_process_are_exposed() {
    let (m, sources) = metrics(vec![Snapshot::default()], false);
    sources.log.written.store(7, Ordering::Relaxed);
    sources.log.dropped_queue_full.store(3, Ordering::Relaxed);
    sources.control.reloaded(true);
    sources.control.reloaded(false);
    let t = m.render();
    for line in [
        "kracauer_log_lines_total 7",
        "kracauer_log_dropped_total{reason=\"queue_full\"} 3",
        "kracauer_log_dropped_total{reason=\"write_error\"} 0",
        "kracauer_config_reloads_total{result=\"applied\"} 1",
        "kracauer_config_reloads_total{result=\"refused\"} 1",
        "kracauer_config_last_reload_successful 0",
    ] {
        assert!(has(&t, line), "missing {line}:\n{t}");
    }
    let build = format!(
        "kracauer_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with(&build) && l.ends_with("\"} 1")),
        "{t}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            t.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{t}"
        );
    }
}

#[test]
fn fast_path_program_counters_and_every_workers_handovers_are_exposed() {
    let w = |flows, refused| Snapshot {
        fastpath: crate::fastpath::HandOvers { flows, refused },
        ..Snapshot::default()
    };
    let (m, sources) = metrics(vec![w(3, 1), w(2, 4)], true);
    let off = m.render();
    assert!(has(&off, "kracauer_fastpath_running 0"), "{off}");
    assert!(
        has(
            &off,
            "kracauer_fastpath_packets_total{result=\"to_client\"} 0"
        ),
        "{off}"
    );
    sources
        .control
        .fastpath
        .record(true, [10, 20, 30, 40, 50, 60, 70]);
    let t = m.render();
    for line in [
        "kracauer_fastpath_running 1",
        "kracauer_fastpath_flows 5",
        "kracauer_fastpath_handovers_refused_total 5",
        "kracauer_fastpath_packets_total{result=\"to_backend\"} 10",
        "kracauer_fastpath_packets_total{result=\"to_client\"} 20",
        "kracauer_fastpath_packets_total{result=\"no_flow\"} 30",
        "kracauer_fastpath_packets_total{result=\"unsure\"} 40",
        "kracauer_fastpath_packets_total{result=\"route\"} 50",
        "kracauer_fastpath_packets_total{result=\"too_big\"} 60",
        "kracauer_fastpath_packets_total{result=\"failed\"} 70",
    ] {
        assert!(has(&t, line), "missing {line}:\n{t}");
    }
    // The program removed: not running, its counters as last read.
    sources.control.fastpath.look(None);
    let t = m.render();
    assert!(has(&t, "kracauer_fastpath_running 0"), "{t}");
    assert!(
        has(&t, "kracauer_fastpath_packets_total{result=\"failed\"} 70"),
        "{t}"
    );
}

#[test]
fn every_sample_has_help_and_type_before_it() {
    let t = text(vec![Snapshot::default(), Snapshot::default()], false);
    let mut declared: Option<(String, String)> = None;
    for l in t.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default().to_owned();
            let kind = parts.next().unwrap_or_default().to_owned();
            declared = Some((name, kind));
        } else if !l.starts_with('#') {
            let sample = l.split(['{', ' ']).next().unwrap_or_default();
            let (name, kind) = declared.as_ref().expect("a TYPE line first");
            let ok = sample == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| sample == format!("{name}{s}")));
            assert!(ok, "{l} after TYPE {name}");
        }
    }
}

#[test]
fn get_metrics_is_answered_with_the_body_and_its_length() {
    let r = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
        "a 1\n".into()
    });
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(r.contains("Content-Length: 4\r\n"));
    assert!(r.ends_with("\r\n\r\na 1\n"));
}

#[test]
fn head_is_answered_with_the_headers_alone() {
    let r = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", || "a 1\n".into());
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Length: 4\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\n"), "{r}");
}

#[test]
fn a_query_string_is_ignored() {
    let r = respond(b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", || "a 1\n".into());
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
}

#[test]
fn other_paths_and_methods_are_refused_without_rendering() {
    let r = respond(b"GET / HTTP/1.1\r\n\r\n", || unreachable!());
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = respond(b"GET /metricsx HTTP/1.1\r\n\r\n", || unreachable!());
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = respond(b"POST /metrics HTTP/1.1\r\n\r\n", || unreachable!());
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
}

/// Sends `request` to `addr` and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn scrapes_past_the_cap_are_closed_and_the_next_is_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = serve_on(listener, metrics(vec![Snapshot::default()], true).0);
    // MAX_SCRAPES clients that connect and say nothing hold every permit.
    let mut idle = Vec::new();
    for _ in 0..MAX_SCRAPES {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Until the server has taken them all, a scrape may still be answered; once it has,
    // one more is closed unanswered.
    let refused = loop {
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        if r.is_empty() {
            break r;
        }
    };
    assert!(refused.is_empty());
    // A silent client that goes away gives its permit back.
    drop(idle.pop());
    let answered = loop {
        let r = exchange(addr, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        if !r.is_empty() {
            break r;
        }
        tokio::task::yield_now().await;
    };
    assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered}");
    assert!(
        !answered.contains("kracauer_flows"),
        "HEAD has no body: {answered}"
    );
    task.abort();
}

/// The metric names (`kracauer_*`, `process_*`) a text mentions.
fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["kracauer_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_use_is_exposed() {
    let t = text(vec![Snapshot::default()], true);
    let mut exposed = Vec::new();
    for l in t.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            exposed.push(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    exposed.push(format!("{name}{s}"));
                }
            }
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/monitoring");
    for file in [
        "grafana-dashboard.json",
        "kracauer-alerts.yml",
        "kracauer-alerts.test.yml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let used = names_in(&text);
        assert!(!used.is_empty(), "{file} uses no metric");
        for name in used {
            assert!(
                exposed.contains(&name),
                "{file} uses {name}, which is not exposed"
            );
        }
    }
}

#[test]
fn every_peek_path_of_both_protocols_is_a_sample() {
    let t = text(vec![Snapshot::default()], false);
    for protocol in ["tls", "http"] {
        for path in PeekPath::ALL {
            let line = format!(
                "kracauer_peeks_total{{protocol=\"{protocol}\",path=\"{}\"}} 0",
                path.name()
            );
            assert!(has(&t, &line), "missing {line}:\n{t}");
        }
    }
    assert!(has(&t, "kracauer_backend_failovers_total 0"), "{t}");
    assert!(has(&t, "kracauer_flows_no_backend_total 0"), "{t}");
}

#[test]
fn each_backend_says_whether_it_is_up_and_how_often_it_failed() {
    let (m, sources) = metrics(vec![Snapshot::default()], false);
    *sources.published.backends.lock().unwrap() = vec![
        BackendState {
            route: "a.example".into(),
            backend: "2001:db8:1::2".parse().unwrap(),
            up: true,
            failures: 0,
        },
        BackendState {
            route: "a.example".into(),
            backend: "2001:db8:1::3".parse().unwrap(),
            up: false,
            failures: 3,
        },
    ];
    let t = m.render();
    for line in [
        "kracauer_backend_up{route=\"a.example\",backend=\"2001:db8:1::2\"} 1",
        "kracauer_backend_up{route=\"a.example\",backend=\"2001:db8:1::3\"} 0",
        "kracauer_backend_connect_failures_total{route=\"a.example\",backend=\"2001:db8:1::3\"} 3",
    ] {
        assert!(has(&t, line), "missing {line}:\n{t}");
    }
}
