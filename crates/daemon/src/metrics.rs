//! The Prometheus endpoint: `GET /metrics` (and `HEAD`, query strings ignored) at
//! `[metrics] listen`, in the Prometheus text format 0.0.4, encoded by `prometheus-client`.
//!
//! Scraping never touches a worker or its engine: it renders the [`Snapshot`]s the workers
//! publish about once a second (a worker only `try_lock`s to publish, so a scrape cannot
//! make it wait), the access log's and the control plane's atomic counters (among them
//! the kernel fast path's, looked at once a second: [`crate::fastpath::counters`]), and the
//! process's own figures from `/proc/self` ([`process`]). The HTTP side stays small and
//! runs on the control plane's runtime: one request per connection, a request head of at
//! most 8 KiB read within 5 seconds, the whole exchange within 10, and at most
//! [`MAX_SCRAPES`] at once (a connection past that is closed unanswered).

pub mod process;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use kracauer_core::engine::{DropReason, Outcome, PeekPath, Protocol};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::accesslog::LogCounters;
use crate::health::BackendState;
use crate::observe::Histogram;
use crate::runtime::{Published, Snapshot};

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a whole exchange may take (a client that does not read its answer is cut).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes answered at once.
pub const MAX_SCRAPES: usize = 4;

/// The control plane's own counters.
#[derive(Debug)]
pub struct Control {
    /// SIGHUPs whose file was valid and applied.
    pub reloads_applied: AtomicU64,
    /// SIGHUPs whose file was refused (nothing changed).
    pub reloads_refused: AtomicU64,
    /// Whether the last SIGHUP was applied (true before any).
    pub last_reload_ok: AtomicBool,
    /// The kernel's SYN cookies (`fastpath::syncookie`).
    pub syncookie: Arc<crate::fastpath::syncookie::Counters>,
    /// The kernel fast path's program (`fastpath::counters`).
    pub fastpath: Arc<crate::fastpath::counters::Counters>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            reloads_applied: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            last_reload_ok: AtomicBool::new(true),
            syncookie: Arc::default(),
            fastpath: Arc::default(),
        }
    }
}

impl Control {
    /// Counts a reload, applied (`true`) or refused.
    pub fn reloaded(&self, applied: bool) {
        let n = if applied {
            &self.reloads_applied
        } else {
            &self.reloads_refused
        };
        n.fetch_add(1, Ordering::Relaxed);
        self.last_reload_ok.store(applied, Ordering::Relaxed);
    }
}

/// Everything the endpoint reads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub published: Published,
    pub log: Arc<LogCounters>,
    pub control: Arc<Control>,
}

/// The registry the endpoint encodes: the daemon's metrics, `kracauer_build_info` and
/// the process metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The metrics of `sources`.
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "kracauer_build",
            "Kracauer's version and the commit it was built from (value 1)",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "commit",
                    option_env!("KRACAUER_COMMIT").unwrap_or("unknown"),
                ),
            ]),
        );
        registry.register_collector(Box::new(Daemon(sources)));
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Self { registry }
    }

    /// The exposition, text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; a collector's error would cut the output short.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!("metrics: encoding failed: {e}");
        }
        out
    }
}

/// Binds `addr` and serves `/metrics` from `metrics` on a task of the current runtime.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<JoinHandle<()>> {
    Ok(serve_on(TcpListener::bind(addr).await?, metrics))
}

/// Serves `/metrics` from `metrics` on `listener`, on a task of the current runtime.
pub fn serve_on(listener: TcpListener, metrics: Metrics) -> JoinHandle<()> {
    let metrics = Arc::new(metrics);
    let permits = Arc::new(Semaphore::new(MAX_SCRAPES));
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Past the cap the connection is closed at once (dropped).
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::debug!("metrics: {MAX_SCRAPES} scrapes running, one refused");
                        continue;
                    };
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(EXCHANGE_TIMEOUT, answer(stream, &metrics)).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) {
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
    let response = respond(&head, || metrics.render());
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The whole HTTP response to request head `head`; `body` renders the metrics. `GET` and
/// `HEAD` of `/metrics`, with or without a query string.
pub fn respond(head: &[u8], body: impl FnOnce() -> String) -> String {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    let head_only = method == Some(b"HEAD");
    let (status, ctype, body) = match (method, path) {
        (Some(b"GET" | b"HEAD"), Some(b"/metrics")) => (
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            body(),
        ),
        (Some(b"GET" | b"HEAD"), _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET or HEAD /metrics\n".to_owned(),
        ),
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body.as_str() }
    )
}

/// The daemon's metrics, read from their sources at each scrape.
#[derive(Debug)]
struct Daemon(Sources);

/// Label pairs.
type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &Histogram,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum(), h.count(), &h.buckets(), None)
}

/// One sample without labels.
fn one(v: u64) -> [(Labels<'static>, u64); 1] {
    [(Vec::new(), v)]
}

fn int(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Every backend's health: `kracauer_backend_up{route,backend}` (1 up, 0 down) and the
/// failed connect attempts workers reported for it.
fn encode_backends(
    e: &mut DescriptorEncoder<'_>,
    backends: &[BackendState],
) -> Result<(), std::fmt::Error> {
    let names: Vec<(String, String)> = backends
        .iter()
        .map(|b| (b.route.to_string(), b.backend.to_string()))
        .collect();
    let labels = |i: usize| {
        vec![
            ("route", names[i].0.as_str()),
            ("backend", names[i].1.as_str()),
        ]
    };
    let mut m = e.encode_descriptor(
        "kracauer_backend_up",
        "1 if the backend is up (health checks and connect failures), 0 if down.",
        None,
        MetricType::Gauge,
    )?;
    for (i, b) in backends.iter().enumerate() {
        ConstGauge::new(i64::from(b.up)).encode(m.encode_family(&labels(i))?)?;
    }
    let failures: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (labels(i), b.failures))
        .collect();
    counter(
        e,
        "kracauer_backend_connect_failures",
        "Failed connect attempts to the backend (RST, ICMPv6 error, silence).",
        &failures,
    )
}

impl Collector for Daemon {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Sources {
            published,
            log,
            control,
        } = &self.0;
        let workers = published
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let offload = published.offload.load(Ordering::Relaxed);
        let e = &mut e;
        let s = Snapshot::total(&workers);
        let st = &s.stats;
        let dir = |i: usize, protocol: &'static str, v: u64| {
            let direction = ["to_backend", "to_client"][i];
            (vec![("direction", direction), ("protocol", protocol)], v)
        };

        counter(
            e,
            "kracauer_packets",
            "Packets translated and forwarded, by direction and protocol (tcp, quic; a GSO super-packet counts once).",
            &[
                dir(0, "tcp", st.packets[0]),
                dir(1, "tcp", st.packets[1]),
                dir(0, "quic", st.quic_packets[0]),
                dir(1, "quic", st.quic_packets[1]),
            ],
        )?;
        counter(
            e,
            "kracauer_bytes",
            "Payload bytes forwarded (TCP payload, or UDP payload of QUIC), by direction and protocol.",
            &[
                dir(0, "tcp", st.bytes[0]),
                dir(1, "tcp", st.bytes[1]),
                dir(0, "quic", st.quic_bytes[0]),
                dir(1, "quic", st.quic_bytes[1]),
            ],
        )?;
        counter(
            e,
            "kracauer_packets_made",
            "Packets Kracauer made itself (SYN-ACKs, RSTs, backend SYNs, peeked data, refusals).",
            &one(st.made),
        )?;
        let drops: Vec<_> = DropReason::ALL
            .iter()
            .map(|r| {
                (
                    vec![("reason", r.name()), ("side", r.side().name())],
                    st.drops(*r),
                )
            })
            .collect();
        counter(
            e,
            "kracauer_drops",
            "Packets dropped, by reason and by whose packet it was.",
            &drops,
        )?;
        let outcomes: Vec<_> = Outcome::ALL
            .iter()
            .map(|o| {
                (
                    vec![("outcome", o.name()), ("protocol", "tcp")],
                    st.outcomes(*o),
                )
            })
            .chain(Outcome::ALL.iter().map(|o| {
                (
                    vec![("outcome", o.name()), ("protocol", "quic")],
                    st.quic_outcomes(*o),
                )
            }))
            .collect();
        counter(
            e,
            "kracauer_flows_ended",
            "Flows that ended, by outcome and protocol (tcp, quic).",
            &outcomes,
        )?;
        let peeks: Vec<_> = Protocol::ALL
            .iter()
            .map(|&p| (p, p.name()))
            .flat_map(|(p, name)| {
                PeekPath::ALL.iter().map(move |&path| {
                    (
                        vec![("protocol", name), ("path", path.name())],
                        st.peeks(p, path),
                    )
                })
            })
            .collect();
        counter(
            e,
            "kracauer_peeks",
            "Peeks ended, by protocol (tls, http, quic) and path: named (a route matched), default_unnamed (no name or an unknown one, sent to the default backend), default_unparsable (bytes that could not be read to a name, sent to the default backend as they are), refused (alert, 421, 400 or 431), reset (not the protocol, no default).",
            &peeks,
        )?;
        counter(
            e,
            "kracauer_backend_failovers",
            "Backend SYNs moved to the next backend of a pool after a RST, an ICMPv6 error or silence.",
            &one(st.failovers),
        )?;
        counter(
            e,
            "kracauer_flows_no_backend",
            "Flows refused (as for an unknown name) because no backend of their route was up.",
            &one(st.no_backend),
        )?;
        encode_backends(
            e,
            &published
                .backends
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )?;
        counter(
            e,
            "kracauer_flows_spliced",
            "Flows that reached their backend.",
            &one(st.spliced),
        )?;
        counter(
            e,
            "kracauer_quic_flows_routed",
            "QUIC flows whose Initials named a route (or the default) and went to its backend.",
            &one(st.quic_opened),
        )?;
        counter(
            e,
            "kracauer_quic_rebinds",
            "New mappings for rebinding QUIC clients: a packet on a new 4-tuple to a connection ID a backend chose.",
            &one(st.quic_rebinds),
        )?;
        counter(
            e,
            "kracauer_quic_cids_from_clients",
            "Connection IDs learned from QUIC clients' short headers (a client moved to an ID its backend gave it), for rebinding.",
            &one(st.quic_cids_from_clients),
        )?;
        counter(
            e,
            "kracauer_quic_version_negotiations",
            "Version Negotiation packets sent for Initials of a QUIC version Kracauer cannot read.",
            &one(st.quic_version_negotiations),
        )?;
        counter(
            e,
            "kracauer_syn_cookies_sent",
            "SYN-ACKs answered with a cookie: the half-open bound or the flow table reached, or the client address holding its allowance of unnamed connections.",
            &one(st.cookies_sent),
        )?;
        counter(
            e,
            "kracauer_syn_cookies_accepted",
            "Connections established from a valid SYN cookie.",
            &one(st.cookies_accepted),
        )?;
        // Many users behind one address, custody, RFC 5961 (docs/robustness.md).
        for (name, help, n) in [
            (
                "kracauer_syn_cookies_for_address",
                "SYN cookies sent because the client address held its allowance of unnamed connections (limits.peeks_per_client).",
                st.cookies_for_address,
            ),
            (
                "kracauer_cookie_acks_deferred",
                "Bare cookie ACKs from an address holding its allowance, taken without a flow (the client's first bytes make it).",
                st.deferred,
            ),
            (
                "kracauer_pressure_cuts",
                "Stalled unnamed flows cut under pressure (peek memory or half-open at half their bound), heaviest address first.",
                st.pressure_cuts,
            ),
            (
                "kracauer_custody_taken",
                "Peeks whose bytes Kracauer acknowledged itself after timeouts.custody (classic-Nagle clients).",
                st.custody_taken,
            ),
            (
                "kracauer_custody_retransmits",
                "Segments of bytes in Kracauer's custody sent again to a backend.",
                st.custody_retransmits,
            ),
            (
                "kracauer_challenge_acks_sent",
                "RFC 5961 challenge ACKs sent while Kracauer is the endpoint.",
                st.challenge_acks,
            ),
            (
                "kracauer_challenge_acks_limited",
                "RFC 5961 challenge ACKs not sent: over the rate limit.",
                st.challenge_acks_limited,
            ),
        ] {
            counter(e, name, help, &one(n))?;
        }
        secondchance::encode(e, st, &self.0.published.second_chance)?;
        gauge(
            e,
            "kracauer_flows",
            "Flows in the table, any state.",
            int(s.flows),
        )?;
        gauge(
            e,
            "kracauer_quic_flows",
            "QUIC flows in their table (pending and routed).",
            int(s.quic_flows),
        )?;
        gauge(
            e,
            "kracauer_flows_half_open",
            "Flows whose SYN was answered and whose handshake has not completed.",
            int(s.half_open),
        )?;
        gauge(
            e,
            "kracauer_peek_bytes",
            "Bytes held in peek buffers.",
            int(s.peek_bytes),
        )?;
        gauge(
            e,
            "kracauer_workers",
            "Data-plane workers, one TUN queue each.",
            int(workers.len()),
        )?;
        gauge(
            e,
            "kracauer_tun_offload",
            "1 if the TUN carries virtio-net headers with TCP offloads (GSO super-packets), 0 if not.",
            i64::from(offload),
        )?;
        let index: Vec<String> = (0..workers.len()).map(|i| i.to_string()).collect();
        let per_worker = |f: fn(&Snapshot) -> u64| -> Vec<(Labels<'_>, u64)> {
            workers
                .iter()
                .zip(&index)
                .map(|(w, i)| (vec![("worker", i.as_str())], f(w)))
                .collect()
        };
        counter(
            e,
            "kracauer_tun_packets",
            "Packets read from the TUN, by worker.",
            &per_worker(|w| w.tun_packets),
        )?;
        counter(
            e,
            "kracauer_tun_super_packets",
            "GSO super-packets read from the TUN (translated whole), by worker.",
            &per_worker(|w| w.tun_super_packets),
        )?;
        counter(
            e,
            "kracauer_tun_header_errors",
            "Packets dropped because their virtio-net header made no sense.",
            &one(s.tun_header_errors),
        )?;
        counter(
            e,
            "kracauer_tun_write_errors",
            "Packets not written: the TUN refused them, or no virtio-net header fitted them.",
            &one(s.tun_write_errors),
        )?;
        counter(
            e,
            "kracauer_reloads",
            "Route tables installed by SIGHUP (as the workers took them).",
            &one(s.reloads),
        )?;
        counter(
            e,
            "kracauer_config_reloads",
            "SIGHUPs by result: applied, or refused (an invalid file changes nothing).",
            &[
                (
                    vec![("result", "applied")],
                    control.reloads_applied.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "refused")],
                    control.reloads_refused.load(Ordering::Relaxed),
                ),
            ],
        )?;
        gauge(
            e,
            "kracauer_config_last_reload_successful",
            "1 if the last SIGHUP was applied (or there was none), 0 if it was refused.",
            i64::from(control.last_reload_ok.load(Ordering::Relaxed)),
        )?;
        fastpath::encode(e, &s.fastpath, &control.fastpath)?;
        let sc = &control.syncookie;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            e,
            "kracauer_syncookie_flood_mode",
            "1 while SYNs to service ports are answered with cookies in the kernel (flood mode), 0 otherwise or without the kernel program.",
            i64::from(sc.flood.load(Ordering::Relaxed)),
        )?;
        counter(
            e,
            "kracauer_syncookie_flood_mode_changes",
            "Times flood mode turned on and off.",
            &[
                (vec![("to", "on")], load(&sc.turned_on)),
                (vec![("to", "off")], load(&sc.turned_off)),
            ],
        )?;
        gauge(
            e,
            "kracauer_syncookie_flood_mode_changed_time_seconds",
            "When flood mode last turned on or off (Unix time; 0: never).",
            i64::try_from(load(&sc.changed_at)).unwrap_or(i64::MAX),
        )?;
        gauge(
            e,
            "kracauer_syncookie_syn_rate",
            "SYNs a second to service ports, as the kernel program counted them at the last look.",
            i64::try_from(load(&sc.syn_rate)).unwrap_or(i64::MAX),
        )?;
        let k = |i: usize| load(&sc.kernel[i]);
        counter(
            e,
            "kracauer_syncookie_syns",
            "SYNs to service ports the kernel program saw: answered in the kernel with a cookie (flood mode), or passed to the TUN path.",
            &[
                (vec![("path", "kernel")], k(1)),
                (vec![("path", "tun")], k(2)),
            ],
        )?;
        counter(
            e,
            "kracauer_syncookie_cookies_checked",
            "ACKs of no known connection the kernel program checked in flood mode: valid (passed on) or failed (dropped).",
            &[
                (vec![("result", "valid")], k(3)),
                (vec![("result", "failed")], k(4)),
            ],
        )?;
        counter(
            e,
            "kracauer_syncookie_passed",
            "SYNs and segments the kernel program did not answer: left to the TUN path (unsure: options that do not parse, SYN with data; route: a route back it cannot use), or dropped (failed: a helper failed; no_route: in flood mode, a SYN whose answer has no way out).",
            &[
                (vec![("reason", "unsure")], k(5)),
                (vec![("reason", "route")], k(6)),
                (vec![("reason", "failed")], k(7)),
                (vec![("reason", "no_route")], k(8)),
            ],
        )?;
        gauge(
            e,
            "kracauer_uptime_seconds",
            "Seconds since the data plane started.",
            i64::try_from(s.uptime.as_secs()).unwrap_or(i64::MAX),
        )?;

        let f = &s.flow_stats;
        histogram(
            e,
            "kracauer_peek_duration_seconds",
            "From the client's SYN to the host name, per flow spliced to a backend.",
            &f.peek,
        )?;
        histogram(
            e,
            "kracauer_backend_connect_duration_seconds",
            "From the SYN to the backend to its SYN-ACK (retransmissions included), per flow spliced.",
            &f.connect,
        )?;
        let route = |v: fn(&crate::observe::RouteStats) -> u64| -> Vec<(Labels<'_>, u64)> {
            f.routes
                .iter()
                .map(|(label, r)| (vec![("route", &**label)], v(r)))
                .collect()
        };
        counter(
            e,
            "kracauer_route_flows",
            "Flows that chose the route (its first host as written; (default): default_backend), counted when they end.",
            &route(|r| r.flows),
        )?;
        counter(
            e,
            "kracauer_route_connect_failures",
            "Flows of the route whose backend did not answer the SYN in time or refused it.",
            &route(|r| r.connect_failures),
        )?;
        counter(
            e,
            "kracauer_route_refused",
            "Flows of the route whose backend refused the SYN (RST or ICMPv6 error); part of the connect failures.",
            &route(|r| r.refused),
        )?;
        let bytes: Vec<_> = f
            .routes
            .iter()
            .flat_map(|(label, r)| {
                [
                    (
                        vec![("route", &**label), ("direction", "to_backend")],
                        r.bytes[0],
                    ),
                    (
                        vec![("route", &**label), ("direction", "to_client")],
                        r.bytes[1],
                    ),
                ]
            })
            .collect();
        counter(
            e,
            "kracauer_route_bytes",
            "TCP payload bytes of the route's flows, by direction, counted when they end.",
            &bytes,
        )?;

        counter(
            e,
            "kracauer_log_lines",
            "Access-log lines written.",
            &one(log.written.load(Ordering::Relaxed)),
        )?;
        counter(
            e,
            "kracauer_log_dropped",
            "Access-log lines dropped: the queue to the logging thread was full (queue_full), or the write failed (write_error).",
            &[
                (
                    vec![("reason", "queue_full")],
                    log.dropped_queue_full.load(Ordering::Relaxed),
                ),
                (
                    vec![("reason", "write_error")],
                    log.dropped_write_error.load(Ordering::Relaxed),
                ),
            ],
        )?;
        Ok(())
    }
}

mod fastpath;
mod secondchance;
#[cfg(test)]
mod tests;
