//! What an operator relies on, end to end with the real `kracauer run` (the binary cargo
//! built for this test run) in the testbed's namespaces: the access log under load, with
//! a sink that keeps up and with one that stalls (`access_log`); the metrics real traffic
//! leaves (`metrics`); forwarding scoped to the daemon's interfaces on a router that
//! forwards nothing itself (`forwarding`).
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or `ip` is missing. Each builds (and deletes, also on panic) its own
//! namespaces. The load is bounded in connections; waits are bounded in time and only
//! ever wait for a condition, never assert a duration.

mod access_log;
mod forwarding;
mod metrics;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::HTTP_PORT;
use kracauer_testbed::{Kracauer, Topology};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// The load tests load the machine on purpose: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a line of figures straight to stderr (the harness captures `eprintln!`).
fn figure(line: &str) {
    let _ = std::io::stderr().write_all(format!("[figures] {line}\n").as_bytes());
}

/// Polls `f` until it returns `Some` or `limit` passes (a bound on waiting, not a timed
/// assertion: the condition is what is checked).
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of every sample of metric `name` (all label sets) in a scrape.
fn metric_sum(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The value of the exact series `series` (labels included) in a scrape.
fn metric(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn scrape(k: &Kracauer<'_>) -> String {
    k.metrics().map(|r| r.body).unwrap_or_default()
}

/// What a load run did.
#[derive(Debug, Clone)]
struct Load {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    /// Why connections failed, with the client port and when (the first few): what a
    /// failed assertion prints, to find the packets in a capture.
    why: Vec<String>,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} failed in {:.1?}",
            self.ok, self.failed, self.elapsed
        )?;
        for why in &self.why {
            write!(f, "\n  {why}")?;
        }
        Ok(())
    }
}

impl Load {
    fn rate(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64()
    }
}

/// `n` connections from the client, `concurrency` at a time, each a `GET /` for
/// `a.example` over HTTP that reads the whole answer; as the benchmark's connection-rate
/// run does, without TLS.
fn load(tb: &Topology, n: u64, concurrency: usize) -> Load {
    let next = AtomicU64::new(0);
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let why = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    tb.client
        .run(|| {
            thread::scope(|s| {
                for _ in 0..concurrency {
                    s.spawn(|| {
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            match get_once(Topology::service(HTTP_PORT)) {
                                Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                                Err(e) => {
                                    let mut why = why.lock().unwrap_or_else(|e| e.into_inner());
                                    if why.len() < 20 {
                                        why.push(format!(
                                            "{:.3}s: {e}",
                                            start.elapsed().as_secs_f64()
                                        ));
                                    }
                                    failed.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                        }
                    });
                }
            });
        })
        .expect("enter the client namespace");
    Load {
        ok: ok.into_inner(),
        failed: failed.into_inner(),
        elapsed: start.elapsed(),
        why: why.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

/// One `GET /` for `a.example`, answered 200; or why not, with the client port.
fn get_once(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    let port = s.local_addr().map_or(0, |a| a.port());
    let exchange = |s: &mut TcpStream| -> std::io::Result<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        Ok(answer)
    };
    match exchange(&mut s) {
        Ok(a) if a.starts_with(b"HTTP/1.1 200") => Ok(()),
        Ok(a) => Err(format!(
            "port {port}: answered {:?}",
            String::from_utf8_lossy(&a[..a.len().min(40)])
        )),
        Err(e) => Err(format!("port {port}: {e}")),
    }
}
