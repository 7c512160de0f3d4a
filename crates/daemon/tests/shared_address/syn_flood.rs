//! A SYN flood from one sender (spoofed sources, `robustness/synflood.py` unpaced) while
//! one real client loops HTTPS requests (curl, one after the other), side by side: nginx
//! (the kernel's own SYN cookies), Kracauer with its SYN cookies in the kernel (`[tun]
//! fastpath = "on"`), and Kracauer on the TUN path alone (`fastpath = "off"`, figures only).
//!
//! Asserted, as issue 18 asks: with the kernel path, at least 99 % of the real client's
//! requests succeed, it completes at least 0.8× the requests nginx does, RSS stays flat
//! and the half-open state within its bound. Printed: requests, p50/p99 connect time, and
//! the CPU the machine spent (user, system and softirq) for each.

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{CLIENT_V4, SERVICE_V4};
use kracauer_testbed::{Topology, Variant};

use super::origin::{Origin, StreamPeer};
use super::{KRACAUER, figure, metric, output_text, require_privileged_with, serial};

const SYNFLOOD: &str = include_str!("../robustness/synflood.py");
const SECS: u64 = 12;
const MAX_HALF_OPEN: u64 = 1024;

/// What one peer's run measured.
#[derive(Debug, Default)]
struct Run {
    offered: f64,
    attempts: u32,
    /// Connect times of the requests that got a 200, sorted.
    ok: Vec<Duration>,
    /// The peer's RSS (KiB) every half second (Kracauer only).
    rss: Vec<(Duration, u64)>,
    /// Busy share of the machine's CPU time over the run (user, system, softirq).
    cpu: f64,
}

impl Run {
    fn success(&self) -> f64 {
        self.ok.len() as f64 / f64::from(self.attempts.max(1))
    }

    fn report(&self, peer: &str) {
        let pct = |p: f64| {
            if self.ok.is_empty() {
                Duration::ZERO
            } else {
                self.ok[((self.ok.len() - 1) as f64 * p).round() as usize]
            }
        };
        figure(&format!(
            "syn flood via {peer}: {:.0} SYN/s offered for {SECS} s; requests {}/{} ok ({:.1}%); \
             connect p50 {:?} p99 {:?}; machine CPU busy {:.0}%",
            self.offered,
            self.ok.len(),
            self.attempts,
            100.0 * self.success(),
            pct(0.5),
            pct(0.99),
            100.0 * self.cpu
        ));
    }
}

/// The machine's (busy, total) CPU ticks from /proc/stat.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One HTTPS request from the client: its connect time when it got a 200.
fn https_get(tb: &Topology) -> Option<Duration> {
    let out = tb
        .client
        .command("curl")
        .args(["-sSk", "--max-time", "15", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{time_connect}"])
        .args(["--resolve", &format!("n.example:443:{SERVICE_V4}")])
        .arg("https://n.example/")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    if words.next() != Some("200") {
        return None;
    }
    Some(Duration::from_secs_f64(words.next()?.parse().ok()?))
}

/// Floods 443 for [`SECS`] while the client loops requests; samples `pid`'s RSS.
fn flood(tb: &Topology, pid: Option<u32>) -> Run {
    let started = Instant::now();
    let until = started + Duration::from_secs(SECS);
    let cpu_before = cpu_ticks();
    let (out, (attempts, mut ok), rss) = thread::scope(|s| {
        let flooder = s.spawn(|| {
            tb.client
                .command("python3")
                .args(["-c", SYNFLOOD, &SERVICE_V4.to_string(), "443"])
                .args([&SECS.to_string(), "50000000", &CLIENT_V4.to_string(), "0"])
                .stdin(Stdio::null())
                .output()
                .expect("run the flooder")
        });
        let legit = s.spawn(|| {
            let (mut attempts, mut ok) = (0u32, Vec::new());
            while Instant::now() < until {
                attempts += 1;
                ok.extend(https_get(tb));
            }
            (attempts, ok)
        });
        let mut rss = Vec::new();
        while Instant::now() < until {
            if let Some(pid) = pid {
                rss.push((started.elapsed(), rss_kib(pid)));
            }
            thread::sleep(Duration::from_millis(500));
        }
        (
            flooder.join().expect("flooder"),
            legit.join().expect("client"),
            rss,
        )
    });
    let cpu_after = cpu_ticks();
    let text = output_text(&out);
    let w: Vec<&str> = text.split_whitespace().collect();
    let (sent, secs) = match w.as_slice() {
        ["sent", n, "seconds", t, ..] => {
            (n.parse::<f64>().unwrap_or(0.0), t.parse().unwrap_or(1.0))
        }
        _ => panic!("flooder said: {text}"),
    };
    ok.sort();
    let busy = cpu_after.0.saturating_sub(cpu_before.0) as f64;
    let total = cpu_after.1.saturating_sub(cpu_before.1).max(1) as f64;
    Run {
        offered: sent / secs,
        attempts,
        ok,
        rss,
        cpu: busy / total,
    }
}

/// Kracauer with `[tun] fastpath = fastpath` under the flood.
fn kracauer_run(tb: &Topology, fastpath: &str) -> (Run, u64, String) {
    let extra = format!("[limits]\nmax_half_open = {MAX_HALF_OPEN}\nmax_flows = 20000\n");
    let c = Origin::kracauer_config(tb, &extra);
    assert!(c.contains("mtu = 1500\n"), "{c}");
    let c = c.replace(
        "mtu = 1500\n",
        &format!("mtu = 1500\nfastpath = \"{fastpath}\"\n"),
    );
    let k = tb.start_kracauer(KRACAUER, &c).expect("start kracauer");
    assert!(https_get(tb).is_some(), "served before the flood");
    let run = flood(tb, Some(k.pid()));
    let half_open = metric(&k, "kracauer_flows_half_open");
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    let sc: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("kracauer_syncookie_") && !l.starts_with('#'))
        .collect();
    let sc = sc.join("; ");
    k.terminate().expect("stop kracauer");
    (run, half_open, sc)
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx, openssl, python3 and curl (run with --include-ignored)"]
fn under_a_syn_flood_kernel_cookies_serve_a_real_client_at_least_four_fifths_as_well_as_nginx() {
    require_privileged_with(
        "under_a_syn_flood_kernel_cookies_serve_a_real_client_at_least_four_fifths_as_well_as_nginx",
        &["python3", "curl"],
    );
    super::origin::require_nginx_and_openssl();
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // Spoofed sources arrive on the client link: no reverse-path filter in the router.
    for key in ["all", "default", "to-client"] {
        tb.router
            .sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0")
            .unwrap();
    }
    // Answers to the spoofed sources go to the client's router-side neighbour, as on the
    // Internet they go to the next hop: no address resolution per spoofed source, whose
    // unresolved queue would hold the answers (and, for an answer made from the flooder's
    // own packet in the kernel, the flooder's socket memory). The client does not forward.
    tb.client.sysctl("net.ipv4.ip_forward", "0").unwrap();
    for half in ["198.51.100.0/25", "198.51.100.128/25"] {
        tb.router
            .ip(["route", "add", half, "via", &CLIENT_V4.to_string()])
            .unwrap();
    }
    let _origin = Origin::start(&tb);

    let (kernel, half_open, sc) = kracauer_run(&tb, "on");
    kernel.report("kracauer, SYN cookies in the kernel");
    figure(&format!(
        "kracauer (kernel path): half-open at the end {half_open}; {sc}"
    ));
    let (tun, _, _) = kracauer_run(&tb, "off");
    tun.report("kracauer, TUN path only");
    // Each side twice, the requests summed: one 12 s run under an unpaced flood moves by
    // ±20% with what else the 2 cores do (single-run ratios from 0.75 to 1.34 on a quiet
    // machine). Kracauer's runs before nginx's: a Kracauer started after nginx would meet
    // nginx's TIME_WAIT sockets (the bench report's early-demux finding).
    let (kernel2, _, _) = kracauer_run(&tb, "on");
    kernel2.report("kracauer, SYN cookies in the kernel (second run)");

    let peer = StreamPeer::start(&tb);
    let nginx = flood(&tb, None);
    nginx.report("nginx");
    let nginx2 = flood(&tb, None);
    nginx2.report("nginx (second run)");
    drop(peer);

    let ratio = (kernel.ok.len() + kernel2.ok.len()) as f64
        / (nginx.ok.len() + nginx2.ok.len()).max(1) as f64;
    figure(&format!(
        "syn flood: kracauer (kernel path) / nginx requests, two runs each = {ratio:.2}; TUN path / nginx (one run) = {:.2}",
        tun.ok.len() as f64 / nginx.ok.len().max(1) as f64
    ));
    for k in [&kernel, &kernel2] {
        assert!(
            k.success() >= 0.99,
            "real client's success through the kernel path: {}/{}",
            k.ok.len(),
            k.attempts
        );
    }
    assert!(
        ratio >= 0.8,
        "kracauer completed {ratio:.2}x nginx's requests"
    );
    let after = kernel
        .rss
        .iter()
        .filter(|(t, _)| *t >= Duration::from_secs(3));
    let (lo, hi) = (
        after.clone().map(|(_, r)| *r).min().unwrap_or(0),
        after.map(|(_, r)| *r).max().unwrap_or(0),
    );
    assert!(hi <= lo + 4 * 1024, "RSS flat after 3 s: {lo}..{hi} KiB");
    assert!(
        half_open <= MAX_HALF_OPEN,
        "half-open within its bound: {half_open}"
    );
    assert!(
        sc.contains("kracauer_syncookie_flood_mode_changes_total{to=\"on\"} 1"),
        "{sc}"
    );
}
