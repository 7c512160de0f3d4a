//! Robustness end to end: the real `kracauer run` (the binary cargo built for this test
//! run) in the testbed's router namespace under a SYN flood from spoofed sources
//! (`syn_flood`), under thousands of stalled ClientHellos and a one-byte-a-second trickle
//! (`slow_clients`), across links with small MTUs (`path_mtu`), under a fragment spray
//! (`fragments`), and with a client port reused under the kernel's SYN cookies
//! (`port_reuse`). Each test prints its figures (run with `--nocapture` to see them;
//! docs/robustness.md has a run's figures) and asserts what the issue asks: real clients
//! served, memory bounded, limits held.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root, `ip`, `python3` or `curl` is missing. Each builds (and deletes, also
//! on panic) its own namespaces. The load generators are the python3 scripts beside this
//! file (raw sockets, non-blocking sockets), run inside the client namespace; every one is
//! bounded in time and in packets.

mod fragments;
mod path_mtu;
mod port_reuse;
mod slow_clients;
mod syn_flood;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{HTTP_PORT, SERVICE_V4};
use kracauer_testbed::{Kracauer, Topology};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// The tests here load the machine on purpose: they run one at a time, so one's flood is
/// not another's slow client.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The gate of every test here: root, `ip`, and the load generators' tools (`python3`,
/// `curl`); panics naming what is missing.
#[track_caller]
fn require_privileged_with_tools(test: &str) {
    kracauer_testbed::require_privileged_and(test, &["python3", "curl"]);
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
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

/// One HTTP GET for `a.example` with curl from `src` in the client namespace: its
/// connect time when it got a 200.
fn curl_get(tb: &Topology, src: Ipv4Addr) -> Option<Duration> {
    let out = tb
        .client
        .command("curl")
        .args(["-sS", "--max-time", "15", "-o", "/dev/null"])
        .args([
            "-w",
            "%{http_code} %{time_connect} %{time_total} %{local_port}",
        ])
        .args(["--interface", &src.to_string(), "-H", "Host: a.example"])
        .arg(format!("http://{SERVICE_V4}:{HTTP_PORT}/"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    if words.next() != Some("200") {
        // Say why, so a lost request in a run's figures can be traced.
        figure(&format!(
            "curl from {src} failed ({}): {} {}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
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

/// Prints the daemon's non-zero drop and kernel SYN-cookie counters as a figure line, so a
/// run's figures say where packets went.
fn figure_counters(k: &Kracauer<'_>) {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| {
            (l.starts_with("kracauer_drops_total") || l.starts_with("kracauer_syncookie"))
                && !l.ends_with(" 0")
        })
        .collect();
    figure(&format!("counters: {}", lines.join("; ")));
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
