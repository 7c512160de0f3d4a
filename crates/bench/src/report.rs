//! Samples, medians and ratios, the markdown report and the PNG plots (plotters, bitmap
//! backend; text drawn with a system TrueType font when one is found).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kracauer_testbed::Error;
use plotters::prelude::*;

use crate::Plan;
use crate::machine;
use crate::peers::Peer;

/// Every measurement, in the order metrics first appeared.
#[derive(Debug, Default)]
pub struct Samples {
    metrics: Vec<String>,
    values: Vec<(Peer, usize, f64)>,
    seen: Vec<(Peer, Option<SocketAddr>)>,
}

impl Samples {
    /// Records the client address the backend saw through `peer`.
    pub fn seen(&mut self, peer: Peer, addr: Option<SocketAddr>) {
        if !self.seen.iter().any(|(p, _)| *p == peer) {
            self.seen.push((peer, addr));
        }
    }

    pub fn add(&mut self, peer: Peer, metric: &str, value: f64) {
        let i = match self.metrics.iter().position(|m| m == metric) {
            Some(i) => i,
            None => {
                self.metrics.push(metric.to_owned());
                self.metrics.len() - 1
            }
        };
        self.values.push((peer, i, value));
    }

    fn all(&self, peer: Peer, metric: usize) -> Vec<f64> {
        self.values
            .iter()
            .filter(|(p, m, v)| *p == peer && *m == metric && v.is_finite())
            .map(|(_, _, v)| *v)
            .collect()
    }

    /// The median of `peer`'s values of `metric`, if any.
    pub fn median(&self, peer: Peer, metric: &str) -> Option<f64> {
        let i = self.metrics.iter().position(|m| m == metric)?;
        median(self.all(peer, i))
    }
}

impl Samples {
    /// `a`'s median of `metric` over `b`'s, when both have one and `b`'s is not zero.
    pub fn ratio(&self, a: Peer, b: Peer, metric: &str) -> Option<f64> {
        match (self.median(a, metric), self.median(b, metric)) {
            (Some(x), Some(y)) if y != 0.0 => Some(x / y),
            _ => None,
        }
    }
}

/// Issue 21's goals for the fast path, each judged from this run's medians, with the
/// figures it rests on.
fn goals(s: &Samples) -> String {
    let on = Peer::FASTPATH_ON;
    let mut out = String::from(
        "### Issue 21's goals, judged from this run's medians\n\n\
         | goal | figures (fastpath=on over the peer, same run) | verdict |\n|---|---|---|\n",
    );
    let mut row = |goal: &str,
                   ratio: &dyn Fn(&str) -> Option<f64>,
                   metrics: &[String],
                   ok: &dyn Fn(f64) -> bool| {
        let got: Vec<(String, Option<f64>)> =
            metrics.iter().map(|m| (m.clone(), ratio(m))).collect();
        let figures = got
            .iter()
            .map(|(m, r)| {
                let r = r.map_or("–".to_owned(), |r| format!("{r:.2}×"));
                format!("{}: {r}", m.split(':').next().unwrap_or(m))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let verdict = if got.iter().any(|(_, r)| r.is_none()) {
            "not measured"
        } else if got.iter().all(|(_, r)| r.is_some_and(ok)) {
            "**met**"
        } else {
            "**not met**"
        };
        let _ = writeln!(out, "| {goal} | {figures} | {verdict} |");
    };
    let bulk = |suffix: &str, streams: &[u32]| -> Vec<String> {
        ["download", "upload"]
            .iter()
            .flat_map(|d| {
                streams
                    .iter()
                    .map(move |n| format!("bulk {d} x{n}: {suffix}"))
            })
            .collect()
    };
    row(
        "one stream ≥ 0.9× the kernel's IPv6 forwarding, both directions",
        &|m| s.ratio(on, Peer::Kernel, m),
        &bulk("Gbit/s", &[1]),
        &|r| r >= 0.9,
    );
    row(
        "bytes per whole-machine CPU second ≥ 2× nginx, 1 and 8 streams",
        &|m| s.ratio(on, Peer::Nginx, m),
        &bulk("GB per machine CPU s", &[1, 8]),
        &|r| r >= 2.0,
    );
    row(
        "the same, counting only the data path's CPU (client, backend, router, ksoftirqd)",
        &|m| s.ratio(on, Peer::Nginx, m),
        &bulk("GB per data-path CPU s", &[1, 8]),
        &|r| r >= 2.0,
    );
    row(
        "router CPU per GB ≤ 0.5× nginx (router process CPU)",
        &|m| s.ratio(on, Peer::Nginx, m),
        &bulk("router process CPU s/GB", &[1, 8]),
        &|r| r <= 0.5,
    );
    row(
        "connection rate not below today's (fastpath=off, the TUN path)",
        &|m| s.ratio(on, Peer::FASTPATH_OFF, m),
        &["rate c64: connections/s".to_owned()],
        &|r| r >= 1.0,
    );
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The profiles of the run, as text (empty without perf).
#[derive(Debug, Default)]
pub struct Profiles {
    /// The single-stream transfers with the fast path on, each direction.
    pub bulk: Vec<String>,
    /// The rate run, fast path on and off.
    pub rate: Option<String>,
}

/// Writes `report.md` and the plots into `plan.out`; returns the markdown.
pub fn write(
    plan: &Plan,
    s: &Samples,
    peers: &[Peer],
    nginx_conf: &str,
    loads: &[(String, machine::Load)],
    perf: &Profiles,
    took: Duration,
) -> Result<String, Error> {
    let mut md = String::new();
    let mode = if plan.quick {
        "quick (smoke test, not for conclusions)"
    } else {
        "full"
    };
    let _ = writeln!(md, "# Kracauer vs nginx vs the kernel: one run\n");
    let _ = writeln!(
        md,
        "Made by `kracauer-bench` ({mode}): {} round(s), peers alternated each round \
         (order reversed every other round), each cell the median over rounds. \
         Bulk runs last {:.1} s each, the rate run {:.1} s, {} idle connections. \
         The whole run took {:.0} s.\n",
        plan.rounds,
        plan.bulk.as_secs_f64(),
        plan.rate.as_secs_f64(),
        plan.idle,
        took.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "Kracauer under test: `{}` ({}).\n",
        plan.kracauer_version,
        plan.kracauer.display()
    );
    let _ = writeln!(md, "## Machine\n\n{}", machine::describe_machine());
    let _ = writeln!(
        md,
        "Load of the shared machine, sampled with no peer carrying traffic (the busy share \
         is of all CPUs over {:.0} s; other builds and tests ran beside this bench):\n\n\
         | when | loadavg 1/5/15 min | busy share of all CPUs |\n|---|---|---:|",
        crate::LOAD_WINDOW.as_secs_f64()
    );
    for (when, l) in loads {
        let _ = writeln!(md, "| {when} | {} | {:.0}% |", l.loadavg, l.busy * 100.0);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "## Results\n");
    let ratios: [(Peer, Peer); 5] = [
        (Peer::FASTPATH_ON, Peer::Kernel),
        (Peer::FASTPATH_ON, Peer::Nginx),
        (Peer::FASTPATH_ON, Peer::FASTPATH_OFF),
        (Peer::FASTPATH_OFF, Peer::Kernel),
        (Peer::FASTPATH_OFF, Peer::Nginx),
    ];
    let short = |p: Peer| p.name().trim_start_matches("kracauer ");
    let _ = write!(md, "| metric |");
    for p in peers {
        let _ = write!(md, " {} |", p.name());
    }
    for (a, b) in ratios {
        let _ = write!(md, " {} / {} |", short(a), short(b));
    }
    let _ = write!(md, "\n|---|");
    for _ in peers.iter().chain(ratios.iter().map(|r| &r.0)) {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    for m in &s.metrics {
        let _ = write!(md, "| {m} |");
        for p in peers {
            let _ = write!(md, " {} |", fmt(s.median(*p, m)));
        }
        for (a, b) in ratios {
            let _ = write!(
                md,
                " {} |",
                s.ratio(a, b, m)
                    .map_or("–".to_owned(), |r| format!("{r:.2}"))
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "\n{}", goals(s));
    let _ = writeln!(
        md,
        "\nThe client address the backend saw through each peer (its warm-up request):\n"
    );
    for (p, a) in &s.seen {
        let a = a.map_or_else(|| "nothing".to_owned(), |a| a.to_string());
        let _ = writeln!(md, "- {}: `{a}`", p.name());
    }
    let _ = writeln!(md, "\n{}", METHOD);
    let plots = plot_all(plan, s, peers);
    let _ = writeln!(md, "## Plots\n");
    match plots {
        Ok(files) => {
            for f in files {
                let _ = writeln!(md, "![{f}]({f})");
            }
        }
        Err(e) => {
            let _ = writeln!(md, "No plots: {e}");
        }
    }
    if !perf.bulk.is_empty() {
        let _ = writeln!(
            md,
            "\n## Where the time goes with the fast path on\n\n`perf record -F 999 -g -a` of \
             the whole machine during one single-stream transfer through Kracauer with \
             `fastpath = \"on\"`, each direction. `raw backend` is the backend's process, \
             `in-krc-…` the client's threads, `kracauer-wN` the daemon's workers; softirq \
             work (the tc BPF program, forwarding, veth, the receiving TCP stack) is charged \
             to the thread it interrupted."
        );
        for p in &perf.bulk {
            let _ = writeln!(md, "\n```\n{p}```");
        }
    }
    if let Some(p) = &perf.rate {
        let _ = writeln!(
            md,
            "\n## Where the connection rate goes, fast path on and off\n\n\
             `perf record -F 999 -g -a` of the whole machine during the rate run through \
             Kracauer with `fastpath = \"on\"` and `\"off\"`, alternated. Every sample \
             of a process on the data path (the client's threads, the backend, the \
             daemon, the `ksoftirqd` threads, softirq on idle CPUs) is CPU time spent on \
             the connections, 1/999 s of one CPU; divided by the connections the run \
             made, it is CPU µs per connection. The rate run keeps the machine's CPUs \
             busy, so a peer that costs more µs per connection makes fewer a second: the \
             difference column says where the rate goes. Kernel samples go to the \
             innermost frame an owner has (softirq work is charged to the thread it \
             interrupted); the daemon's user space goes to the module of its leaf \
             function (no frame pointers in user space). The window opens 0.3 s before \
             the load and closes about 0.3 s after it; the idle samples are not \
             counted.\n\n```\n{p}```"
        );
    }
    let _ = writeln!(
        md,
        "\n## nginx configuration used\n\nRun in the router namespace as \
         `nginx -p DIR -c DIR/nginx.conf` (DIR is the testbed's directory), with \
         `ip addr add 203.0.113.10/32 dev lo` and \
         `ip -6 route add local 2001:db8:64::/96 dev lo` in that namespace while it runs:\n\n\
         ```nginx\n{nginx_conf}```"
    );
    std::fs::write(plan.out.join("report.md"), &md)?;
    Ok(md)
}

const METHOD: &str = "### How each figure is measured\n\n\
- The client (its own namespace, IPv4 only) sends a real TLS ClientHello made by rustls \
  for `bench.example`, then a 9-byte command and raw bytes; the backend (backend a's \
  namespace) answers without TLS. So the peers are measured, not TLS crypto.\n\
- kracauer fastpath=on: the daemon in the router namespace with `fastpath = \"on\"`: \
  once a connection is spliced its data and ACK segments are translated by the tc BPF \
  program at the ingress of the router's interfaces and never cross the TUN (the daemon \
  refuses to start without the program, so this column cannot silently fall back); TUN \
  offloads on, one worker per CPU. kracauer fastpath=off: the same daemon with \
  `fastpath = \"off\"`: every packet through the TUN (GSO super-packets translated \
  whole), the datapath before issue 21. kracauer offload=false: `fastpath = \"off\"` and \
  `offload = false` (one packet of at most the MTU per read and per write), to show what \
  the offloads bring. nginx: \
  `stream`, `ssl_preread`, `proxy_bind 2001:db8:64::$remote_addr transparent`, as root \
  (configuration below). kernel: the client dials the backend's IPv6 address directly and \
  the router forwards plain IPv6, no translation (the ceiling; it has no router process, \
  and no idle-memory figure).\n\
- TUN packets read per MB: `kracauer_tun_packets_total` (every worker; a GSO \
  super-packet counts once) from the daemon's metrics before and after the run, over the \
  MB moved: which datapath carried the bytes.\n\
- Gbit/s: bytes delivered over the wall time of the run (downloads: bytes the client read; \
  uploads: bytes the backend confirms). 8 streams: the sum.\n\
- machine CPU s/GB: busy time of the whole machine from `/proc/stat` (all but idle and \
  iowait) over the run, divided by GB moved. The machine is shared with other work, so \
  this figure carries their noise; the router process figure does not.\n\
- data-path CPU s/GB, GB per data-path CPU s: user + system time (`/proc/PID/stat`) of \
  every process on the data path: the bench's own (the client's threads), the backend's, \
  the router's (none for the kernel) and the `ksoftirqd/N` threads, over GB moved. With \
  tick accounting (no `CONFIG_IRQ_TIME_ACCOUNTING`, as here) softirq work is charged to \
  the task it interrupted, so the forwarding, the BPF program and the TCP stacks' receive \
  path are in it; softirq that interrupted the idle task or another machine user is not. \
  Unlike the machine figure it leaves out other work on a shared machine.\n\
- GB per machine CPU s: the machine figure the other way up (throughput per \
  whole-machine CPU second; higher is better).\n\
- router process CPU s/GB: user + system time of the kracauer process, or of nginx's \
  master and workers, from `/proc/PID/stat`. Kernel work done in softirq on behalf of a \
  peer (forwarding, nginx's two TCP stacks' receive path, and the fast path's tc BPF \
  program, which runs in softirq at the router's ingress) is in the machine figure only: \
  with the fast path on, the daemon's process does almost nothing per byte, so compare \
  the whole-machine figures too.\n\
- rate c64: 64 client threads loop connect, ClientHello + command, read a 1 KB answer, \
  close. TTFB is from before connect() to the first answer byte. The backend serves each connection on a thread it keeps for the next one (a thread made and ended per connection would add the kernel's thread creation and exit, with their TLB-shootdown IPIs, to every connection).\n\
- idle: N connections opened one after another and held, each having sent its hello (so \
  each reaches the backend). Memory by difference before and after: the peer's RSS \
  (`VmRSS` of its processes), the router namespace's TCP sockets \
  (`/proc/net/sockstat{,6}` `inuse`) times the `TCP`/`TCPv6` slab object size from \
  `/proc/slabinfo` (socket object only: file, inode and epoll entries are not counted, \
  so nginx's figure is a lower bound), and the TCP buffer pages (`mem`, machine-wide: it \
  also counts the client's and backend's sockets).\n\
- real TLS download: one HTTPS GET of the testbed's `/source/N` through rustls on both \
  ends (backend a on 443), the whole connection timed.\n\
- HTTP/3 download: one `GET /bytes/N` over QUIC (quinn + h3 on both ends, backend a on UDP \
  443; N = 64 MiB, 8 MiB quick), the whole connection timed, handshake included. kracauer: \
  `quic = [443]`, the client dials 203.0.113.10; kernel: the client dials the backend's \
  IPv6 address. nginx cannot route QUIC by name and has no figure.\n";

const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(120, 120, 120),
    RGBColor(158, 202, 225),
];

fn load_font() -> Result<(), String> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    let bytes = candidates
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no TrueType font found (DejaVu Sans or Liberation Sans)")?;
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
        .map_err(|_| "the font could not be loaded".to_owned())
}

fn plot_all(plan: &Plan, s: &Samples, peers: &[Peer]) -> Result<Vec<String>, String> {
    load_font()?;
    let groups: [(&str, &str, &str); 7] = [
        (
            "throughput.png",
            "Bulk throughput (Gbit/s, higher is better)",
            ": Gbit/s",
        ),
        (
            "bytes_per_cpu.png",
            "GB moved per whole-machine CPU second (higher is better)",
            ": GB per machine CPU s",
        ),
        (
            "bytes_per_datapath_cpu.png",
            "GB moved per data-path CPU second (higher is better)",
            ": GB per data-path CPU s",
        ),
        (
            "cpu_machine.png",
            "Whole-machine CPU seconds per GB (lower is better)",
            ": machine CPU s/GB",
        ),
        (
            "cpu_router.png",
            "Router process CPU seconds per GB (lower is better)",
            ": router process CPU s/GB",
        ),
        (
            "rate.png",
            "Connection rate at concurrency 64 (conn/s, higher is better)",
            "connections/s",
        ),
        (
            "idle_memory.png",
            "Idle connection: router-side bytes per connection (lower is better)",
            "bytes/conn",
        ),
    ];
    let mut files = Vec::new();
    for (file, title, suffix) in groups {
        let metrics: Vec<&String> = s
            .metrics
            .iter()
            .filter(|m| m.ends_with(suffix) || (suffix == "bytes/conn" && m.contains(suffix)))
            .collect();
        if metrics.is_empty() {
            continue;
        }
        let labels: Vec<String> = metrics
            .iter()
            .map(|m| {
                if suffix == "bytes/conn" {
                    m.trim_start_matches("idle: ").replace(" bytes/conn", "")
                } else {
                    m.split(": ").next().unwrap_or(m).to_owned()
                }
            })
            .collect();
        let values: Vec<Vec<f64>> = peers
            .iter()
            .map(|p| {
                metrics
                    .iter()
                    .map(|m| s.median(*p, m).unwrap_or(0.0))
                    .collect()
            })
            .collect();
        bars(&plan.out.join(file), title, &labels, peers, &values)
            .map_err(|e| format!("{file}: {e}"))?;
        files.push(file.to_owned());
    }
    Ok(files)
}

fn bars(
    path: &Path,
    title: &str,
    labels: &[String],
    peers: &[Peer],
    values: &[Vec<f64>],
) -> Result<(), Box<dyn std::error::Error>> {
    let width = (220 * labels.len() as u32).max(640);
    let root = BitMapBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let n = labels.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    let labels_owned = labels.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < labels_owned.len() {
                labels_owned[i].clone()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 13))
        .draw()?;
    let k = peers.len().max(1) as f64;
    let w = 0.8 / k;
    for (j, (peer, vals)) in peers.iter().zip(values).enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        chart
            .draw_series(vals.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 + 0.1 + w * j as f64;
                Rectangle::new([(x0, 0.0), (x0 + w * 0.95, *v)], colour.filled())
            }))?
            .label(peer.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
