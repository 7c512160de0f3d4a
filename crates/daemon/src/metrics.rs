//! The Prometheus endpoint: `GET /metrics` at `[metrics] listen`, text format 0.0.4.
//!
//! It renders the [`Snapshot`] the data plane publishes about once a second, so scraping
//! never touches the engine. The HTTP side is the least that Prometheus needs: one
//! request per connection, a request head of at most 8 KiB read within 5 seconds.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kracauer_core::engine::{DropReason, Outcome, PeekPath, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::health::BackendState;
use crate::runtime::{Published, Snapshot};

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves `/metrics` from `published` on a task of the current runtime.
pub async fn serve(addr: SocketAddr, published: Published) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(serve_on(listener, published))
}

/// Serves `/metrics` from `published` on `listener` (bound here, or handed over by the
/// process this one upgraded), on a task of the current runtime.
pub fn serve_on(listener: TcpListener, published: Published) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, published.clone()));
                }
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

async fn answer(mut stream: TcpStream, published: Published) {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let response = respond(&head, || {
        let workers = published
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let backends = published
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut text = render(&workers, published.offload.load(Ordering::Relaxed));
        text.push_str(&render_backends(&backends));
        text
    });
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The whole HTTP response to request head `head`; `body` renders the metrics.
pub fn respond(head: &[u8], body: impl FnOnce() -> String) -> String {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let (status, ctype, body) = match (method, target) {
        (Some(b"GET"), Some(b"/metrics")) => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body())
        }
        (Some(b"GET"), _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_owned(),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The workers' snapshots in Prometheus text format: totals, and the TUN counters per
/// worker.
pub fn render(workers: &[Snapshot], offload: bool) -> String {
    let total = Snapshot::total(workers);
    let s = &total;
    let per_worker = |f: fn(&Snapshot) -> u64| -> Vec<(String, u64)> {
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("{{worker=\"{i}\"}}"), f(w)))
            .collect()
    };
    let tun_packets = per_worker(|w| w.tun_packets);
    let tun_super = per_worker(|w| w.tun_super_packets);
    let mut out = String::with_capacity(8 * 1024);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP kracauer_{name} {help}");
        let _ = writeln!(out, "# TYPE kracauer_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "kracauer_{name}{labels} {value}");
        }
    };
    let st = &s.stats;
    let dir = |i: usize| ["{direction=\"to_backend\"}", "{direction=\"to_client\"}"][i].to_owned();
    metric(
        "packets_total",
        "counter",
        "Packets translated and forwarded, by direction (a GSO super-packet counts once).",
        &[(dir(0), st.packets[0]), (dir(1), st.packets[1])],
    );
    metric(
        "bytes_total",
        "counter",
        "TCP payload bytes forwarded, by direction.",
        &[(dir(0), st.bytes[0]), (dir(1), st.bytes[1])],
    );
    metric(
        "packets_made_total",
        "counter",
        "Packets Kracauer made itself (SYN-ACKs, RSTs, backend SYNs, peeked data, refusals).",
        &[(String::new(), st.made)],
    );
    let drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|r| {
            (
                format!("{{reason=\"{}\",side=\"{}\"}}", r.name(), r.side().name()),
                st.drops(*r),
            )
        })
        .collect();
    metric(
        "drops_total",
        "counter",
        "Packets dropped, by reason and by whose packet it was.",
        &drops,
    );
    let outcomes: Vec<(String, u64)> = Outcome::ALL
        .iter()
        .map(|o| (format!("{{outcome=\"{}\"}}", o.name()), st.outcomes(*o)))
        .collect();
    metric(
        "flows_ended_total",
        "counter",
        "Flows that ended, by outcome.",
        &outcomes,
    );
    let peeks: Vec<(String, u64)> = [Protocol::Tls, Protocol::Http]
        .iter()
        .flat_map(|&p| PeekPath::ALL.iter().map(move |&path| (p, path)))
        .map(|(p, path)| {
            let protocol = match p {
                Protocol::Tls => "tls",
                Protocol::Http => "http",
            };
            (
                format!("{{protocol=\"{protocol}\",path=\"{}\"}}", path.name()),
                st.peeks(p, path),
            )
        })
        .collect();
    metric(
        "peeks_total",
        "counter",
        "Peeks ended, by protocol and path: named (a route matched), default_unnamed (no name or an unknown one, sent to the default backend), default_unparsable (bytes that could not be read to a name, sent to the default backend as they are), refused (alert, 421, 400 or 431), reset (not the protocol, no default).",
        &peeks,
    );
    metric(
        "flows_spliced_total",
        "counter",
        "Flows that reached their backend.",
        &[(String::new(), st.spliced)],
    );
    metric(
        "backend_failovers_total",
        "counter",
        "Backend SYNs moved to the next backend of a pool after a RST, an ICMPv6 error or silence.",
        &[(String::new(), st.failovers)],
    );
    metric(
        "flows_no_backend_total",
        "counter",
        "Flows refused (as for an unknown name) because no backend of their route was up.",
        &[(String::new(), st.no_backend)],
    );
    metric(
        "syn_cookies_sent_total",
        "counter",
        "SYN-ACKs answered with a cookie because the half-open table was full.",
        &[(String::new(), st.cookies_sent)],
    );
    metric(
        "syn_cookies_accepted_total",
        "counter",
        "Connections established from a valid SYN cookie.",
        &[(String::new(), st.cookies_accepted)],
    );
    metric(
        "flows",
        "gauge",
        "Flows in the table, any state.",
        &[(String::new(), s.flows as u64)],
    );
    metric(
        "flows_half_open",
        "gauge",
        "Flows whose SYN was answered and whose handshake has not completed.",
        &[(String::new(), s.half_open as u64)],
    );
    metric(
        "peek_bytes",
        "gauge",
        "Bytes held in peek buffers.",
        &[(String::new(), s.peek_bytes as u64)],
    );
    metric(
        "workers",
        "gauge",
        "Data-plane workers, one TUN queue each.",
        &[(String::new(), workers.len() as u64)],
    );
    metric(
        "tun_offload",
        "gauge",
        "1 if the TUN carries virtio-net headers with TCP offloads (GSO super-packets), 0 if not.",
        &[(String::new(), u64::from(offload))],
    );
    metric(
        "tun_packets_total",
        "counter",
        "Packets read from the TUN, by worker.",
        &tun_packets,
    );
    metric(
        "tun_super_packets_total",
        "counter",
        "GSO super-packets read from the TUN (translated whole), by worker.",
        &tun_super,
    );
    metric(
        "tun_header_errors_total",
        "counter",
        "Packets dropped because their virtio-net header made no sense.",
        &[(String::new(), s.tun_header_errors)],
    );
    metric(
        "tun_write_errors_total",
        "counter",
        "Packets not written: the TUN refused them, or no virtio-net header fitted them.",
        &[(String::new(), s.tun_write_errors)],
    );
    metric(
        "reloads_total",
        "counter",
        "Route tables installed by SIGHUP.",
        &[(String::new(), s.reloads)],
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the data plane started.",
        &[(String::new(), s.uptime.as_secs())],
    );
    out
}

/// Every backend's health: `kracauer_backend_up{route,backend}` (1 up, 0 down) and the
/// failed connect attempts workers reported for it.
pub fn render_backends(backends: &[BackendState]) -> String {
    let mut out = String::new();
    let label = |b: &BackendState| {
        // Route labels are host names (or `default`): nothing to escape.
        format!("{{route=\"{}\",backend=\"{}\"}}", b.route, b.backend)
    };
    let _ = writeln!(
        out,
        "# HELP kracauer_backend_up 1 if the backend is up (health checks and connect failures), 0 if down."
    );
    let _ = writeln!(out, "# TYPE kracauer_backend_up gauge");
    for b in backends {
        let _ = writeln!(out, "kracauer_backend_up{} {}", label(b), u8::from(b.up));
    }
    let _ = writeln!(
        out,
        "# HELP kracauer_backend_connect_failures_total Failed connect attempts to the backend (RST, ICMPv6 error, silence)."
    );
    let _ = writeln!(
        out,
        "# TYPE kracauer_backend_connect_failures_total counter"
    );
    for b in backends {
        let _ = writeln!(
            out,
            "kracauer_backend_connect_failures_total{} {}",
            label(b),
            b.failures
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_is_a_sample_with_its_side() {
        let text = render(&[Snapshot::default()], true);
        for r in DropReason::ALL {
            let line = format!(
                "kracauer_drops_total{{reason=\"{}\",side=\"{}\"}} 0",
                r.name(),
                r.side().name()
            );
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
        assert!(text.contains("kracauer_drops_total{reason=\"client_no_flow\",side=\"client\"} 0"));
    }

    #[test]
    fn every_peek_path_is_a_sample_for_both_protocols() {
        let text = render(&[Snapshot::default()], true);
        for protocol in ["tls", "http"] {
            for path in PeekPath::ALL {
                let line = format!(
                    "kracauer_peeks_total{{protocol=\"{protocol}\",path=\"{}\"}} 0",
                    path.name()
                );
                assert!(text.lines().any(|l| l == line), "missing {line}");
            }
        }
        for path in [
            "named",
            "default_unnamed",
            "default_unparsable",
            "refused",
            "reset",
        ] {
            assert!(text.contains(&format!("path=\"{path}\"")), "{path}");
        }
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
        let text = render(&[s, t], true);
        assert!(text.lines().any(|l| l == "kracauer_flows 5"), "{text}");
        assert!(text.lines().any(|l| l == "kracauer_workers 2"));
        assert!(text.lines().any(|l| l == "kracauer_tun_offload 1"));
        assert!(
            text.lines()
                .any(|l| l == "kracauer_tun_packets_total{worker=\"1\"} 7")
        );
        assert!(
            text.lines()
                .any(|l| l == "kracauer_tun_super_packets_total{worker=\"1\"} 4")
        );
        assert!(text.lines().any(|l| l == "kracauer_flows_half_open 1"));
        assert!(
            text.lines()
                .any(|l| l == "kracauer_packets_total{direction=\"to_client\"} 0")
        );
        assert!(
            text.lines()
                .any(|l| l == "kracauer_flows_ended_total{outcome=\"closed\"} 0")
        );
    }

    #[test]
    fn every_sample_has_help_and_type_before_it() {
        let text = render(&[Snapshot::default(), Snapshot::default()], false);
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{l}");
            }
        }
    }

    #[test]
    fn every_backend_has_an_up_gauge_and_a_failure_count_by_route_and_address() {
        let text = render_backends(&[
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
        ]);
        assert!(
            text.lines().any(
                |l| l == "kracauer_backend_up{route=\"a.example\",backend=\"2001:db8:1::2\"} 1"
            )
        );
        assert!(
            text.lines().any(
                |l| l == "kracauer_backend_up{route=\"a.example\",backend=\"2001:db8:1::3\"} 0"
            )
        );
        assert!(text.lines().any(|l| l
            == "kracauer_backend_connect_failures_total{route=\"a.example\",backend=\"2001:db8:1::3\"} 3"));
    }

    #[test]
    fn get_metrics_is_answered_with_the_body_and_its_length() {
        let r = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "a 1\n".into()
        });
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.ends_with("\r\n\r\na 1\n"));
    }

    #[test]
    fn other_paths_and_methods_are_refused_without_rendering() {
        let r = respond(b"GET / HTTP/1.1\r\n\r\n", || unreachable!());
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = respond(b"POST /metrics HTTP/1.1\r\n\r\n", || unreachable!());
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    }
}
