//! Many users behind one address (issue 16, docs/robustness.md "Many users behind one
//! address"), end to end: the real `kracauer run` in the testbed's router namespace,
//! side by side with nginx (`stream`, `ssl_preread`, transparent `proxy_bind`) in the
//! same run, both in front of the same nginx HTTPS origin.
//!
//! - `burst`: 500 connections at once from one client address, 40,000 requests (h2load):
//!   every request succeeds, and the client retransmits no more SYNs through Kracauer than
//!   through nginx (read from `nstat` in the client namespace).
//! - `stalled`: 2,000 connections at once from one address while 50 others from it sit
//!   stalled mid-hello: the 50 are cut at the peek deadline, the 2,000 all served.
//! - `nagle`: a real Linux socket with Nagle on that writes its ClientHello in two writes
//!   (the kernel holds the second until the first is acknowledged) is served once
//!   Kracauer takes custody of the first; with custody off it is reset at the deadline.
//!
//! - `syn_flood`: a SYN flood from one sender while a real client loops HTTPS requests:
//!   with its SYN cookies in the kernel, Kracauer serves it at least 0.8× as well as
//!   nginx behind the kernel's own cookies.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics, naming what is missing, without root, `ip`, nginx, openssl, h2load
//! (nghttp2-client), python3 or nstat. They build their own namespaces (deleted also on
//! panic) and run one at a time: they measure, and must not measure each other. Figures
//! are printed as `[figures]` lines (`--nocapture`).

mod burst;
mod nagle;
mod origin;
mod stalled;
mod syn_flood;

use std::io::Write;
use std::process::Output;

use kracauer_testbed::netns::Netns;
use kracauer_testbed::{Kracauer, Topology};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The gate of every test here: root, `ip`, and the tools the test runs.
#[track_caller]
fn require_privileged_with(test: &str, tools: &[&str]) {
    kracauer_testbed::require_privileged_and(test, tools);
}

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

/// The value of the metric line starting with `name` (exact series, labels included).
fn metric(k: &Kracauer<'_>, name: &str) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// SYNs the kernel of `ns` has retransmitted since it started (`TcpExtTCPSynRetrans`).
fn syn_retransmits(ns: &Netns) -> u64 {
    let out = ns
        .command("nstat")
        .args(["-asz", "TcpExtTCPSynRetrans"])
        .output()
        .expect("run nstat");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("TcpExtTCPSynRetrans")).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no TcpExtTCPSynRetrans from nstat: {}", output_text(&out)))
}

/// What an h2load run reported.
#[derive(Debug, Clone, Copy, Default)]
struct H2load {
    succeeded: u64,
    failed: u64,
    errored: u64,
    /// Wall time of the whole run, in seconds.
    seconds: f64,
    /// Slowest connect, in seconds.
    connect_max: f64,
}

/// Runs h2load in the client namespace: `requests` over `connections` opened at once,
/// to `n.example` at the service address (the name has no route: both peers send it to
/// the origin).
fn h2load(tb: &Topology, requests: u32, connections: u32) -> (H2load, String) {
    let cmd = format!(
        "ulimit -n 16384; exec h2load -n {requests} -c {connections} -t 2 \
         --connect-to={}:443 https://n.example/",
        kracauer_testbed::topology::SERVICE_V4
    );
    let out = tb
        .client
        .command("sh")
        .args(["-c", &cmd])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run h2load (nghttp2-client)");
    let text = output_text(&out);
    (parse_h2load(&text), text)
}

fn parse_h2load(text: &str) -> H2load {
    let mut r = H2load::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            r.seconds = seconds(rest.split(',').next().unwrap_or_default());
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            let n = |what: &str| {
                rest.split(',')
                    .map(str::trim)
                    .find(|p| p.ends_with(what))
                    .and_then(|p| p.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            };
            r.succeeded = n(" succeeded");
            r.failed = n(" failed");
            r.errored = n(" errored");
        } else if let Some(rest) = line.strip_prefix("time for connect:") {
            r.connect_max = rest.split_whitespace().nth(1).map_or(0.0, seconds);
        }
    }
    r
}

/// "1.89s", "740.12ms", "13us" in seconds.
fn seconds(s: &str) -> f64 {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * scale
}

#[test]
fn h2load_output_is_read_for_requests_time_and_connect() {
    let text = "finished in 1.89s, 21164.07 req/s, 1.23MB/s\n\
                requests: 40000 total, 40000 started, 40000 done, 39998 succeeded, 2 failed, 0 errored, 0 timeout\n\
                time for connect:    12.34ms    740.12ms    120.00ms     80.00ms    70.00%\n";
    let r = parse_h2load(text);
    assert_eq!((r.succeeded, r.failed, r.errored), (39_998, 2, 0));
    assert!((r.seconds - 1.89).abs() < 1e-9);
    assert!((r.connect_max - 0.74012).abs() < 1e-9);
}
