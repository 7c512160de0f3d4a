//! `kracauer-bench`: Kracauer (with the kernel fast path on, off, and without TUN
//! offloads) against nginx (`ssl_preread`, transparent `proxy_bind` to the embedded
//! address) and against the kernel forwarding plain IPv6 (the ceiling), on the namespace
//! testbed, in one run. Workloads: bulk download and upload with 1 and 8 streams,
//! connection rate at concurrency 64, idle connections' memory, one real TLS and one
//! HTTP/3 download. Rounds alternate the peers; the report gives medians, ratios to the
//! peers of the same run, the machine's load, issue 21's goals judged, a profile with the
//! fast path on (single-stream transfers) and of the rate run (fast path on and off), and
//! PNG plots.
//!
//! `kracauer-bench --kracauer PATH [--quick] [--out DIR] [--rounds N] [--no-perf]
//! [--rate-only]`. Needs
//! root. The binary under test is always given: the bench never guesses which build of
//! kracauer it measures.
#![deny(unsafe_code)]

mod machine;
mod peers;
mod plan;
mod profile;
mod profile_rate;
mod proto;
mod rate;
mod report;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::{Error, Topology, Variant};

use peers::{Peer, Running};
use plan::Plan;
use proto::Backend;
use report::Samples;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-backend") {
        let file = PathBuf::from(args.get(2).map_or("/dev/null", String::as_str));
        return match proto::serve_backend(file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kracauer-bench backend: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let plan = match Plan::from_args(args.into_iter().skip(1)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !kracauer_testbed::is_root() {
        eprintln!("kracauer-bench needs root (network namespaces, a TUN device, nginx as root)");
        return ExitCode::from(2);
    }
    match run(&plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kracauer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the machine's load is sampled, with no peer carrying traffic, at the start,
/// before each round and at the end (for the report: the machine is shared).
const LOAD_WINDOW: Duration = Duration::from_secs(1);

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = 200_000.min(hard.max(65_536));
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard));
    }
}

fn run(plan: &Plan) -> Result<(), Error> {
    let started = Instant::now();
    raise_nofile();
    let nginx = if plan.rate_only {
        Err(Error::Setup("--rate-only".into()))
    } else {
        peers::ensure_nginx()
    };
    if let (Err(e), false) = (&nginx, plan.rate_only) {
        eprintln!("bench: nginx unavailable, it is left out of this run: {e}");
    }
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|p| *p != Peer::Nginx || nginx.is_ok())
        .filter(|p| !plan.rate_only || matches!(*p, Peer::FASTPATH_ON | Peer::FASTPATH_OFF))
        .collect();
    let tb = Topology::build(Variant::Routed)?;
    peers::wire_ceiling(&tb)?;
    let mut backend = Backend::start(&tb)?;
    let _h3 = tb.start_h3()?;
    let hello = Arc::new(proto::client_hello()?);
    let mut samples = Samples::default();
    let mut loads = vec![("start".to_owned(), machine::load(LOAD_WINDOW))];
    for round in 0..plan.rounds {
        if round > 0 {
            loads.push((
                format!("before round {}", round + 1),
                machine::load(LOAD_WINDOW),
            ));
        }
        // Alternate the order each round so no peer always runs first.
        let mut order = peers.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for peer in order {
            eprintln!(
                "bench: round {} / {}, {}",
                round + 1,
                plan.rounds,
                peer.name()
            );
            let running = Running::start(peer, &tb, &plan.kracauer)?;
            let result = measure(
                plan,
                &tb,
                &mut backend,
                &hello,
                peer,
                &running,
                &mut samples,
            );
            running.stop()?;
            result?;
        }
    }
    loads.push((
        "end of the measurements".to_owned(),
        machine::load(LOAD_WINDOW),
    ));
    let perf = if plan.perf && !plan.rate_only {
        [false, true]
            .into_iter()
            .map(|up| {
                profile::profile(plan, &tb, &hello, up)
                    .unwrap_or_else(|e| format!("perf failed: {e}\n"))
            })
            .collect()
    } else {
        Vec::new()
    };
    // The rate run profiled, fast path on and off: one pair per round with --rate-only,
    // two pairs in a full run.
    let rate_perf = plan.perf.then(|| {
        let rounds = if plan.rate_only { plan.rounds } else { 2 };
        profile_rate::profile(plan, &tb, &hello, backend.pid(), rounds)
            .unwrap_or_else(|e| format!("perf failed: {e}\n"))
    });
    drop(backend);
    let nginx_conf = peers::nginx_config(std::path::Path::new("/tmp/krc-tbPID-N"));
    std::fs::create_dir_all(&plan.out)?;
    let text = report::write(
        plan,
        &samples,
        &peers,
        &nginx_conf,
        &loads,
        &report::Profiles {
            bulk: perf,
            rate: rate_perf,
        },
        started.elapsed(),
    )?;
    println!("{text}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    plan: &Plan,
    tb: &Topology,
    backend: &mut Backend,
    hello: &Arc<Vec<u8>>,
    peer: Peer,
    running: &Running<'_>,
    samples: &mut Samples,
) -> Result<(), Error> {
    let pids = running.pids();
    let addr = peer.raw_addr();
    // Warm up (neighbour discovery, first flow) and check the path end to end.
    let _ = std::fs::remove_file(&backend.peer_file);
    rate::warm_up(tb, hello, addr).map_err(|e| Error::Setup(format!("{}: {e}", peer.name())))?;
    samples.seen(peer, backend.last_peer());
    let mut before = running.metrics();
    let bulk: &[(bool, usize)] = if plan.rate_only {
        &[]
    } else {
        &[(false, 1), (false, 8), (true, 1), (true, 8)]
    };
    for &(up, streams) in bulk {
        let what = format!("bulk {} x{streams}", if up { "upload" } else { "download" });
        let t0 = before
            .as_ref()
            .map(|m| m.sum("kracauer_tun_packets_total", ""));
        // Every process on the data path: this one (the client's threads), the backend's,
        // the router's, and the softirq threads.
        let path: Vec<u32> = pids
            .iter()
            .copied()
            .chain([std::process::id(), backend.pid()])
            .chain(machine::softirq_threads())
            .collect();
        let d0 = machine::process_cpu(&path);
        let m0 = machine::machine_cpu();
        let p0 = machine::process_cpu(&pids);
        let dur = plan.bulk;
        let h = Arc::clone(hello);
        let results = tb.client.run(move || {
            thread::scope(|s| {
                let handles: Vec<_> = (0..streams)
                    .map(|_| s.spawn(|| proto::bulk_stream(addr, &h, up, dur)))
                    .collect();
                handles
                    .into_iter()
                    .map(|t| {
                        t.join()
                            .unwrap_or_else(|_| Err(std::io::Error::other("panic")))
                    })
                    .collect::<Vec<_>>()
            })
        })?;
        let m1 = machine::machine_cpu();
        let p1 = machine::process_cpu(&pids);
        let d1 = machine::process_cpu(&path);
        let after = running.metrics();
        let t1 = after
            .as_ref()
            .map(|m| m.sum("kracauer_tun_packets_total", ""));
        before = after;
        let mut bytes = 0u64;
        let mut secs = 0f64;
        let mut failed = false;
        for r in results {
            match r {
                Ok((b, s)) => {
                    bytes += b;
                    secs = secs.max(s);
                }
                Err(e) => {
                    eprintln!("bench: {}: {what}: a stream failed: {e}", peer.name());
                    failed = true;
                }
            }
        }
        if failed {
            samples.add(peer, &format!("{what}: failed runs"), 1.0);
            continue;
        }
        let gb = bytes as f64 / 1e9;
        samples.add(peer, &format!("{what}: Gbit/s"), gb * 8.0 / secs);
        samples.add(peer, &format!("{what}: machine CPU s/GB"), (m1 - m0) / gb);
        samples.add(
            peer,
            &format!("{what}: GB per machine CPU s"),
            gb / (m1 - m0),
        );
        samples.add(peer, &format!("{what}: data-path CPU s/GB"), (d1 - d0) / gb);
        samples.add(
            peer,
            &format!("{what}: GB per data-path CPU s"),
            gb / (d1 - d0),
        );
        if peer != Peer::Kernel {
            samples.add(
                peer,
                &format!("{what}: router process CPU s/GB"),
                (p1 - p0) / gb,
            );
        }
        // Proof of which datapath carried the bytes: with the fast path the TUN sees a
        // flow's handshake, first bytes and close, not its data.
        if let (Some(t0), Some(t1)) = (t0, t1) {
            samples.add(
                peer,
                &format!("{what}: TUN packets read per MB"),
                t1.saturating_sub(t0) as f64 / (gb * 1e3),
            );
        }
    }
    // Connection rate at concurrency 64.
    {
        let r = rate::run(tb, hello, addr, plan.rate)?;
        if r.errors > 0 {
            eprintln!(
                "bench: {}: {} failed connections in the rate run ({:.1} s; \
                 the threads' last errors: {})",
                peer.name(),
                r.errors,
                r.secs,
                r.kinds.join("; ")
            );
        }
        eprintln!(
            "bench: {}: rate run: {:.0} connections/s, TTFB p50 {:.1} ms, p99 {:.1} ms",
            peer.name(),
            r.per_sec(),
            r.ttfb_ms(0.5),
            r.ttfb_ms(0.99)
        );
        samples.add(peer, "rate c64: connections/s", r.per_sec());
        samples.add(peer, "rate c64: TTFB p50 ms", r.ttfb_ms(0.5));
        samples.add(peer, "rate c64: TTFB p99 ms", r.ttfb_ms(0.99));
        samples.add(peer, "rate c64: failed connections", r.errors as f64);
        rate_diagnostics(peer, running, before.as_ref(), samples);
    }
    if plan.rate_only {
        return Ok(());
    }
    // Real TLS: one download through rustls, end to end.
    {
        let config = tb.client_tls();
        let n = plan.tls_bytes;
        let taddr = peer.tls_addr();
        match tb
            .client
            .run(move || proto::tls_download(&config, taddr, n))?
        {
            Ok((bytes, secs)) => samples.add(
                peer,
                "real TLS download x1: Gbit/s",
                bytes as f64 * 8.0 / 1e9 / secs,
            ),
            Err(e) => eprintln!("bench: {}: the real TLS download failed: {e}", peer.name()),
        }
    }
    // HTTP/3: one download over QUIC (quinn + h3 client and backend), end to end; nginx
    // cannot route QUIC by name, so it has no figure here.
    if peer != Peer::Nginx {
        let n = plan.h3_bytes;
        let req = kracauer_testbed::quic::Request {
            sni: "a.example".into(),
            path: format!("/bytes/{n}"),
            port: 0,
        };
        let start = Instant::now();
        let got = kracauer_testbed::quic::get(
            &tb.client,
            &tb.client_tls(),
            peers::h3_addr(peer),
            req,
            |_| {},
        )?;
        let secs = start.elapsed().as_secs_f64();
        match got {
            Ok(r) if r.body.len() as u64 >= n => samples.add(
                peer,
                "HTTP/3 download x1: Gbit/s",
                n as f64 * 8.0 / 1e9 / secs,
            ),
            Ok(r) => eprintln!(
                "bench: {}: the HTTP/3 download ended short ({} bytes)",
                peer.name(),
                r.body.len()
            ),
            Err(e) => eprintln!("bench: {}: the HTTP/3 download failed: {e}", peer.name()),
        }
    }
    // Idle connections: router-side memory by difference.
    if peer != Peer::Kernel {
        let (tcp_v4, tcp_v6) = machine::tcp_slab_sizes();
        let s0 = machine::sockstat(&tb.router);
        let b0 = machine::sockstat(&tb.backend_a).v6;
        let r0 = machine::rss(&pids);
        let n = plan.idle;
        let h = Arc::clone(hello);
        let (conns, failed, last): (Vec<TcpStream>, usize, String) = tb.client.run(move || {
            let mut failed = 0;
            let mut last = String::new();
            let conns = (0..n)
                .filter_map(|_| {
                    proto::open_idle(addr, &h)
                        .map_err(|e| {
                            failed += 1;
                            last = e.to_string();
                        })
                        .ok()
                })
                .collect();
            (conns, failed, last)
        })?;
        if failed > 0 {
            eprintln!(
                "bench: {}: {failed} idle connections failed to open (the last: {last})",
                peer.name()
            );
        }
        samples.add(peer, "idle: connections that failed to open", failed as f64);
        let n = conns.len();
        let deadline = Instant::now() + Duration::from_secs(30);
        let held = || machine::sockstat(&tb.backend_a).v6.saturating_sub(b0) as usize;
        while held() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let held = held().min(n);
        thread::sleep(Duration::from_millis(300));
        let pids = running.pids();
        let s1 = machine::sockstat(&tb.router);
        let r1 = machine::rss(&pids);
        let per = |x: f64| x / held.max(1) as f64;
        let process = per(r1 as f64 - r0 as f64);
        let sockets_v4 = s1.v4 as f64 - s0.v4 as f64;
        let sockets_v6 = s1.v6 as f64 - s0.v6 as f64;
        let kernel = per(sockets_v4 * tcp_v4 as f64 + sockets_v6 * tcp_v6 as f64);
        let buffers = per((s1.mem_pages as f64 - s0.mem_pages as f64) * 4096.0);
        samples.add(peer, "idle: connections held", held as f64);
        samples.add(peer, "idle: process RSS bytes/conn", process);
        samples.add(
            peer,
            "idle: router sockets/conn",
            per(sockets_v4 + sockets_v6),
        );
        samples.add(peer, "idle: kernel socket objects bytes/conn", kernel);
        samples.add(
            peer,
            "idle: TCP buffer pages bytes/conn (machine-wide)",
            buffers,
        );
        samples.add(
            peer,
            "idle: total bytes/conn",
            process + kernel + buffers.max(0.0),
        );
        // The client closes first (its FIN reaches the backend before the backend
        // closes), so the backend keeps no TIME_WAIT for tuples later runs reuse.
        drop(conns);
        let deadline = Instant::now() + Duration::from_secs(10);
        while machine::close_wait(&tb.backend_a) < held && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        backend.drop_idle()?;
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// What Kracauer's counters say about the rate run (SYN-flood mode in the kernel, drops
/// by reason), then a wait until flood mode is off again, so that the next workloads
/// start from the daemon's normal mode.
fn rate_diagnostics(
    peer: Peer,
    running: &Running<'_>,
    before: Option<&peers::Metrics>,
    samples: &mut Samples,
) {
    let (Some(before), Some(after)) = (before, running.metrics()) else {
        return;
    };
    let grew = |name: &str, label: &str| {
        after
            .sum(name, label)
            .saturating_sub(before.sum(name, label))
    };
    samples.add(
        peer,
        "rate c64: SYN-flood mode turned on (times)",
        grew("kracauer_syncookie_flood_mode_changes_total", "to=\"on\"") as f64,
    );
    samples.add(
        peer,
        "rate c64: SYNs answered by the kernel program",
        grew("kracauer_syncookie_syns_total", "path=\"kernel\"") as f64,
    );
    samples.add(
        peer,
        "rate c64: packets Kracauer dropped",
        grew("kracauer_drops_total", "") as f64,
    );
    for name in [
        "kracauer_drops_total",
        "kracauer_syncookie_cookies_checked_total",
        "kracauer_syncookie_passed_total",
        "kracauer_syn_cookies_sent_total",
        "kracauer_syn_cookies_accepted_total",
        "kracauer_flows_ended_total",
    ] {
        for (labels, n) in after.grown(before, name) {
            eprintln!("bench: {}: rate run: {name}{labels} +{n}", peer.name());
        }
    }
    match running.wait_flood_mode_off(Duration::from_secs(30)) {
        Some(d) if d > Duration::from_secs(2) => eprintln!(
            "bench: {}: SYN-flood mode went off {:.0} s after the rate run",
            peer.name(),
            d.as_secs_f64()
        ),
        Some(_) => {}
        None => eprintln!(
            "bench: {}: SYN-flood mode still on 30 s after the rate run",
            peer.name()
        ),
    }
}
