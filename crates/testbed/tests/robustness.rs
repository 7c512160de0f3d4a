//! Robustness end to end: the real `kracauer run` in the router namespace under a SYN
//! flood from spoofed sources, under thousands of stalled ClientHellos and a one-byte-a-
//! second trickle, and across links with small MTUs. Each test prints its figures (run
//! with `--nocapture` to see them; docs/robustness.md has a run's figures) and asserts
//! what the issue asks: real clients served, memory bounded, limits held.
//!
//! Privileged like `e2e.rs`: each test skips loudly when not root, fails instead under
//! `KRACAUER_E2E=require`, and builds (and deletes, also on panic) its own namespaces.
//! The load generators are python3 scripts (raw sockets, non-blocking sockets) run inside
//! the client namespace; every one is bounded in time and in packets.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{BACKEND_A, CLIENT_V4, HTTP_PORT, HTTPS_PORT, SERVICE_V4};
use kracauer_testbed::{Kracauer, Topology, Variant, privileged};

/// The tests here load the machine on purpose: they run one at a time, so one's flood is
/// not another's slow client.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`privileged`], and the load generators' tools (`python3`, `curl`) present: skips
/// loudly without them, fails under `KRACAUER_E2E=require`.
fn ready(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let missing: Vec<&str> = ["python3", "curl"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("KRACAUER_E2E").as_deref() != Ok("require"),
        "{test}: needs {missing:?}, and KRACAUER_E2E=require"
    );
    let _ = std::io::stderr().write_all(
        format!("\n*** SKIPPED {test}: needs {missing:?} on the PATH. ***\n").as_bytes(),
    );
    false
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SYNFLOOD: &str = include_str!("robustness/synflood.py");
const SLOW_HELLOS: &str = include_str!("robustness/slowhellos.py");
const FRAGMENTS: &str = include_str!("robustness/fragments.py");

/// Writes a line of figures straight to stderr (the harness captures `eprintln!`).
fn figure(line: &str) {
    let _ = std::io::stderr().write_all(format!("[figures] {line}\n").as_bytes());
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One HTTP GET for `a.example` with curl from `src` in the client namespace: its
/// connect time when it got a 200.
fn curl_get(tb: &Topology, src: Ipv4Addr) -> Option<Duration> {
    let out = tb
        .client
        .command("curl")
        .args(["-sS", "--max-time", "15", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{time_connect}"])
        .args(["--interface", &src.to_string(), "-H", "Host: a.example"])
        .arg(format!("http://{SERVICE_V4}:{HTTP_PORT}/"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    if words.next() != Some("200") {
        return None;
    }
    let secs: f64 = words.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

/// Resident memory of process `pid` in KiB.
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

/// The value of the metric line starting with `name` (exact series, labels included),
/// from the daemon's snapshot, which is at most a second old.
fn metric(k: &Kracauer<'_>, name: &str) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Runs legitimate GETs from `src` one after the other until `until`; returns
/// (attempts, connect times of the successes).
fn legit_until(tb: &Topology, src: Ipv4Addr, until: Instant) -> (u32, Vec<Duration>) {
    let mut attempts = 0;
    let mut ok = Vec::new();
    while Instant::now() < until {
        attempts += 1;
        if let Some(t) = curl_get(tb, src) {
            ok.push(t);
        }
        thread::sleep(Duration::from_millis(50));
    }
    ok.sort();
    (attempts, ok)
}

/// What one flood phase measured.
struct Flood {
    sent: u64,
    secs: f64,
    attempts: u32,
    /// Connect times of the legitimate GETs that got a 200, sorted.
    ok: Vec<Duration>,
    /// Kracauer's RSS (KiB) every half second.
    rss: Vec<(Duration, u64)>,
    cookies: u64,
    /// Flows in the table at the end (snapshot up to a second old).
    flows_end: u64,
}

impl Flood {
    fn success(&self) -> f64 {
        self.ok.len() as f64 / f64::from(self.attempts.max(1))
    }

    /// Lowest and highest RSS from `from` on.
    fn rss_range(&self, from: Duration) -> (u64, u64) {
        let after = self.rss.iter().filter(|(t, _)| *t >= from).map(|(_, r)| *r);
        (after.clone().min().unwrap_or(0), after.max().unwrap_or(0))
    }

    fn report(&self, label: &str) {
        figure(&format!(
            "{label}: {} spoofed SYNs in {:.1} s ({:.0}/s offered); cookies sent {}",
            self.sent,
            self.secs,
            self.sent as f64 / self.secs,
            self.cookies
        ));
        figure(&format!(
            "{label}: legitimate {}/{} ok ({:.1}%), connect p50 {:?} p99 {:?} max {:?}",
            self.ok.len(),
            self.attempts,
            100.0 * self.success(),
            percentile(&self.ok, 0.5),
            percentile(&self.ok, 0.99),
            self.ok.last().copied().unwrap_or_default()
        ));
        figure(&format!(
            "{label}: flows at the end {}; RSS KiB every 0.5 s {:?}",
            self.flows_end,
            self.rss.iter().map(|(_, r)| r).collect::<Vec<_>>()
        ));
    }
}

/// Floods port 443 for `secs` at `rate` packets a second (0: as fast as one raw socket
/// goes) while four legitimate clients GET in a loop, sampling Kracauer's memory.
fn flood(tb: &Topology, k: &Kracauer<'_>, secs: u64, rate: u64) -> Flood {
    let cookies_before = metric(k, "kracauer_syn_cookies_sent_total");
    let pid = k.pid();
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let (out, legit, rss) = thread::scope(|s| {
        let flooder = s.spawn(|| {
            tb.client
                .command("python3")
                .args(["-c", SYNFLOOD, &SERVICE_V4.to_string(), "443"])
                .args([&secs.to_string(), "50000000", &CLIENT_V4.to_string()])
                .arg(rate.to_string())
                .stdin(Stdio::null())
                .output()
                .expect("run the flooder")
        });
        let legit: Vec<_> = (0..4)
            .map(|_| s.spawn(|| legit_until(tb, CLIENT_V4, until)))
            .collect();
        let mut rss = Vec::new();
        while Instant::now() < until {
            rss.push((started.elapsed(), rss_kib(pid)));
            thread::sleep(Duration::from_millis(500));
        }
        let legit = legit
            .into_iter()
            .map(|l| l.join().expect("legit thread"))
            .fold((0, Vec::new()), |(n, mut all), (a, ok)| {
                all.extend(ok);
                (n + a, all)
            });
        (flooder.join().expect("flooder thread"), legit, rss)
    });
    let text = output_text(&out);
    let mut words = text.split_whitespace();
    let (sent, secs) = match (words.next(), words.next(), words.next(), words.next()) {
        (Some("sent"), Some(n), Some("seconds"), Some(t)) => (
            n.parse::<u64>().unwrap_or(0),
            t.parse::<f64>().unwrap_or(1.0),
        ),
        _ => panic!("flooder said: {text}"),
    };
    let (attempts, mut ok) = legit;
    ok.sort();
    Flood {
        sent,
        secs,
        attempts,
        ok,
        rss,
        cookies: metric(k, "kracauer_syn_cookies_sent_total") - cookies_before,
        flows_end: metric(k, "kracauer_flows"),
    }
}

#[test]
fn syn_flood_from_spoofed_sources_is_carried_by_cookies_while_real_clients_connect() {
    if !ready("syn_flood_from_spoofed_sources_is_carried_by_cookies_while_real_clients_connect") {
        return;
    }
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // Spoofed sources arrive on the client link: no reverse-path filter in the router.
    for key in ["all", "default", "to-client"] {
        tb.router
            .sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0")
            .unwrap();
    }
    // A half-open bound of 1,024 puts nearly the whole flood on cookies. The flow table
    // reserves its indexes for `max_flows` at start and the keyed hash scatters entries
    // over them, so with the default (1,000,000) RSS creeps up as untouched pages of that
    // reserve are first used; 20,000 keeps the reserve small enough to show the rest flat.
    let k = tb
        .start_kracauer(&tb.config("[limits]\nmax_half_open = 1024\nmax_flows = 20000\n"))
        .unwrap();
    assert!(
        curl_get(&tb, CLIENT_V4).is_some(),
        "served before the flood"
    );
    let base_rss = rss_kib(k.pid());
    figure(&format!("syn flood: RSS before {base_rss} KiB"));

    // Phase 1: as fast as the flooder goes, past what the machine can process.
    let full = flood(&tb, &k, 10, 0);
    full.report("syn flood, unpaced");
    let half_open = metric(&k, "kracauer_flows_half_open");
    assert!(full.sent >= 10_000, "the flood ran");
    assert!(
        full.cookies > 0,
        "cookies carried the flood past the half-open bound"
    );
    assert!(half_open <= 1024, "state only up to the bound: {half_open}");
    assert!(!full.ok.is_empty(), "real clients still get through");

    // Phase 2: a flood the machine can process: real clients must not notice.
    let paced = flood(&tb, &k, 10, 20_000);
    paced.report("syn flood, 20k/s");
    assert!(paced.cookies > 0);
    assert!(
        paced.attempts >= 8,
        "enough legitimate attempts: {}",
        paced.attempts
    );
    assert!(
        paced.success() >= 0.99,
        "legitimate success {}/{}",
        paced.ok.len(),
        paced.attempts
    );

    // Memory: bounded and flat after the first seconds, across both phases.
    let (lo, hi) = full.rss_range(Duration::from_secs(3));
    let (_, hi2) = paced.rss_range(Duration::ZERO);
    assert!(
        hi.max(hi2) <= lo + 4 * 1024,
        "memory flat after the first seconds: {lo}..{} KiB",
        hi.max(hi2)
    );
    // The flood's half-open state goes at the peek deadline.
    let end = Instant::now() + Duration::from_secs(15);
    while metric(&k, "kracauer_flows_half_open") > 0 {
        assert!(
            Instant::now() < end,
            "half-open state outlived the peek deadline"
        );
        thread::sleep(Duration::from_millis(250));
    }
    assert!(curl_get(&tb, CLIENT_V4).is_some(), "served after the flood");
}

/// The first half of a TLS ClientHello for `a.example`, as hex.
fn half_hello_hex() -> String {
    let hello = tls_hello("a.example");
    hello[..hello.len() / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A minimal TLS 1.3-shaped ClientHello record naming `sni`.
fn tls_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let list = (name.len() + 3) as u16;
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list + 2).to_be_bytes());
    ext.extend_from_slice(&list.to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn stalled_hellos_and_a_trickler_are_cut_at_the_peek_deadline_and_others_are_served() {
    if !ready("stalled_hellos_and_a_trickler_are_cut_at_the_peek_deadline_and_others_are_served") {
        return;
    }
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // The slow clients use .2; a legitimate client .3, the trickler .4.
    let legit_src = Ipv4Addr::new(198, 51, 100, 3);
    let trickle_src = Ipv4Addr::new(198, 51, 100, 4);
    for a in [legit_src, trickle_src] {
        tb.client
            .ip(["addr", "add", &format!("{a}/24"), "dev", "eth0"])
            .unwrap();
    }
    // Unbound sockets (the trickler's) leave from .4; the others bind their address.
    tb.client
        .ip([
            "route",
            "add",
            &format!("{SERVICE_V4}/32"),
            "via",
            "198.51.100.1",
        ])
        .unwrap();
    tb.client
        .ip([
            "route",
            "change",
            &format!("{SERVICE_V4}/32"),
            "via",
            "198.51.100.1",
            "src",
            &trickle_src.to_string(),
        ])
        .unwrap();
    let k = tb.start_kracauer(&tb.config("")).unwrap();
    assert!(curl_get(&tb, legit_src).is_some());

    const RUN_SECS: u64 = 14;
    let started = Instant::now();
    let until = started + Duration::from_secs(RUN_SECS);
    let (slow, legit, trickle, flows_peak) = thread::scope(|s| {
        let slow = s.spawn(|| {
            tb.client
                .command("python3")
                .args(["-c", SLOW_HELLOS, &CLIENT_V4.to_string()])
                .args([&SERVICE_V4.to_string(), &HTTPS_PORT.to_string(), "5000"])
                .args([&RUN_SECS.to_string(), &half_hello_hex()])
                .stdin(Stdio::null())
                .output()
                .expect("run the slow clients")
        });
        let trickle = s.spawn(|| {
            tb.client
                .run(move || trickle_hello(trickle_src))
                .expect("enter the client namespace")
        });
        thread::sleep(Duration::from_secs(1));
        let legit = s.spawn(|| legit_until(&tb, legit_src, until));
        let mut peak = 0;
        while Instant::now() < until {
            peak = peak.max(metric(&k, "kracauer_flows"));
            thread::sleep(Duration::from_millis(500));
        }
        (
            slow.join().expect("slow thread"),
            legit.join().expect("legit thread"),
            trickle.join().expect("trickle thread"),
            peak,
        )
    });
    let slow_text = output_text(&slow);
    let field = |name: &str| -> f64 {
        let mut w = slow_text.split_whitespace();
        while let Some(x) = w.next() {
            if x == name {
                return w.next().and_then(|v| v.parse().ok()).unwrap_or(-1.0);
            }
        }
        -1.0
    };
    let (connected, reset, first, last) = (
        field("connected"),
        field("reset"),
        field("first_reset"),
        field("last_reset"),
    );
    let limited = metric(
        &k,
        "kracauer_drops_total{reason=\"client_peek_limit\",side=\"client\"}",
    );
    let peek_timeouts = metric(&k, "kracauer_flows_ended_total{outcome=\"peek_timeout\"}");
    let (attempts, ok) = legit;
    figure(&format!(
        "slow hellos: 5000 attempted from one address; connected {connected}, reset {reset} \
         (first at {first:.1} s, last at {last:.1} s); SYNs over the per-address cap {limited}; \
         peek timeouts {peek_timeouts}; most flows in the table {flows_peak}"
    ));
    figure(&format!(
        "slow hellos: trickler {trickle:?}; legitimate {}/{attempts} ok, connect p50 {:?} max {:?}",
        ok.len(),
        percentile(&ok, 0.5),
        ok.last().copied().unwrap_or_default()
    ));

    assert!(connected >= 64.0, "the cap's worth connected: {slow_text}");
    assert!(limited > 0, "the per-address cap refused the rest");
    assert!(reset >= 64.0, "stalled hellos are reset: {slow_text}");
    assert!(first >= 4.0, "not before the peek deadline: {slow_text}");
    // 64 peeking from .2, one from the trickler, the legitimate client's (lingering) flows.
    assert!(
        flows_peak <= 64 + 1 + u64::from(attempts) + 8,
        "the per-address cap holds: {flows_peak} flows"
    );
    let (cut_after, bytes_sent) = trickle.expect("the trickler was cut");
    assert!(
        cut_after <= Duration::from_secs(10) && bytes_sent < tls_hello("a.example").len(),
        "trickler cut at the deadline: {cut_after:?}, {bytes_sent} bytes"
    );
    assert!(attempts >= 10);
    assert_eq!(ok.len() as u32, attempts, "legitimate clients unaffected");
    // Everything the slow clients held is gone once they stop.
    let end = Instant::now() + Duration::from_secs(15);
    while metric(&k, "kracauer_peek_bytes") > 0 {
        assert!(Instant::now() < end, "peek buffers outlived the deadline");
        thread::sleep(Duration::from_millis(250));
    }
}

/// Connects (from `src`, the route's source address) and sends a ClientHello one byte a
/// second until the connection fails: how long it lasted and how many bytes went out, or `None` if never cut.
fn trickle_hello(src: Ipv4Addr) -> Option<(Duration, usize)> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((SERVICE_V4, HTTPS_PORT)),
        Duration::from_secs(10),
    )
    .ok()?;
    assert_eq!(s.local_addr().ok()?.ip(), std::net::IpAddr::V4(src));
    let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
    let start = Instant::now();
    let hello = tls_hello("a.example");
    let mut buf = [0u8; 64];
    for (i, b) in hello.iter().enumerate() {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            return Some((start.elapsed(), i));
        }
        match s.read(&mut buf) {
            Ok(0) => return Some((start.elapsed(), i + 1)),
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                return Some((start.elapsed(), i + 1));
            }
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(20) {
            return None;
        }
    }
    None
}

/// A counter from `/proc/net/netstat` or `/proc/net/snmp` in the client namespace
/// (`group` such as `TcpExt`, `name` such as `OutOfWindowIcmps`).
fn client_counter(tb: &Topology, file: &str, group: &str, name: &str) -> u64 {
    let out = tb
        .client
        .command("cat")
        .arg(file)
        .output()
        .expect("read the client's counters");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{group}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        panic!("no {group} in {file}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {group} {name} in {file}"))
}

#[test]
fn large_transfers_cross_small_mtus_through_translated_packet_too_big() {
    if !ready("large_transfers_cross_small_mtus_through_translated_packet_too_big") {
        return;
    }
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // Client link 1400, backend link 1280 (the IPv6 minimum); the TUN stays at 1500, so
    // Kracauer announces MSS 1440 and the small links must be found by PMTUD.
    tb.client
        .ip(["link", "set", "eth0", "mtu", "1400"])
        .unwrap();
    tb.router
        .ip(["link", "set", "to-client", "mtu", "1400"])
        .unwrap();
    for dev in ["to-a", "to-b", "br0"] {
        tb.router.ip(["link", "set", dev, "mtu", "1280"]).unwrap();
    }
    for ns in [&tb.backend_a, &tb.backend_b] {
        ns.ip(["link", "set", "eth0", "mtu", "1280"]).unwrap();
    }
    // The links were just changed: wait (bounded) until the router reaches backend a, so
    // a neighbour-discovery hiccup is not taken for Kracauer's failure.
    let backend = std::net::SocketAddr::from((BACKEND_A, HTTP_PORT));
    let reachable = (0..10).any(|_| {
        let ok = tb
            .router
            .run(move || std::net::TcpStream::connect_timeout(&backend, Duration::from_secs(1)))
            .is_ok_and(|r| r.is_ok());
        if !ok {
            thread::sleep(Duration::from_millis(500));
        }
        ok
    });
    assert!(
        reachable,
        "backend a unreachable from the router after the MTU change"
    );
    let _k = tb.start_kracauer(&tb.config("")).unwrap();
    let oow_before = client_counter(&tb, "/proc/net/netstat", "TcpExt", "OutOfWindowIcmps");
    let unreach_before = client_counter(&tb, "/proc/net/snmp", "Icmp", "InDestUnreachs");

    const SIZE: u64 = 8 * 1024 * 1024;
    let up = tb
        .upload("a.example", SIZE)
        .expect("upload across the small MTUs");
    assert!(
        up.body.contains(&format!("sink={SIZE}")) && up.body.contains("mismatch=none"),
        "{up:?}"
    );
    let down = tb
        .download("a.example", SIZE)
        .expect("download across the small MTUs");
    assert_eq!(down, SIZE);

    let oow = client_counter(&tb, "/proc/net/netstat", "TcpExt", "OutOfWindowIcmps") - oow_before;
    let unreach = client_counter(&tb, "/proc/net/snmp", "Icmp", "InDestUnreachs") - unreach_before;
    let route = tb
        .client
        .ip(["route", "get", &SERVICE_V4.to_string()])
        .unwrap_or_default();
    figure(&format!(
        "path MTU: {SIZE} bytes up and down intact; Fragmentation Needed received by the client \
         {unreach}; TcpExtOutOfWindowIcmps +{oow}; client route: {}",
        route.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    assert!(
        unreach >= 1,
        "the client got the translated Fragmentation Needed"
    );
    assert_eq!(oow, 0, "the kernel accepted every translated error");
    assert!(
        route.contains("mtu 1260"),
        "the client learned 1280 − 20: {route}"
    );
}

#[test]
fn fragment_spray_is_dropped_and_counted_while_a_transfer_runs() {
    if !ready("fragment_spray_is_dropped_and_counted_while_a_transfer_runs") {
        return;
    }
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(&tb.config("")).unwrap();
    const SIZE: u64 = 16 * 1024 * 1024;
    const COUNT: u64 = 60_000;
    let (spray, down) = thread::scope(|s| {
        let spray = s.spawn(|| {
            let mut text = String::new();
            for port in [HTTPS_PORT, HTTP_PORT] {
                let out = tb
                    .client
                    .command("python3")
                    .args(["-c", FRAGMENTS, &CLIENT_V4.to_string()])
                    .args([&SERVICE_V4.to_string(), &port.to_string()])
                    .arg((COUNT / 2).to_string())
                    .stdin(Stdio::null())
                    .output()
                    .expect("run the fragment sprayer");
                text.push_str(&output_text(&out));
            }
            text
        });
        let down = tb.download("a.example", SIZE);
        (spray.join().expect("spray thread"), down)
    });
    // The metrics snapshot is written once a second.
    thread::sleep(Duration::from_millis(1500));
    let dropped = metric(
        &k,
        "kracauer_drops_total{reason=\"client_fragment\",side=\"client\"}",
    );
    let (flows, peek) = (
        metric(&k, "kracauer_flows"),
        metric(&k, "kracauer_peek_bytes"),
    );
    figure(&format!(
        "fragments: {} ; client_fragment drops {dropped}; download {down:?}; flows after {flows}, \
         peek bytes {peek}",
        spray.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    assert_eq!(down.expect("download intact during the spray"), SIZE);
    assert!(
        dropped >= COUNT / 2,
        "fragments reached Kracauer and were counted: {dropped}"
    );
    assert_eq!(peek, 0, "no fragment is held");
    assert!(flows <= 2, "no flow made by fragments: {flows}");
    assert!(curl_get(&tb, CLIENT_V4).is_some(), "served after the spray");
}
