//! Live upgrades (SIGUSR2) end to end: the real binary in the testbed's router namespace,
//! real kernel TCP at both ends.
//! - `transfers`: transfers in flight survive upgrades to new binary files;
//! - `failures`: a failed upgrade leaves the old daemon serving with its flows;
//! - `phases`: connections caught by an upgrade in each phase of their life end as they
//!   would have without it;
//! - `quic`: an HTTP/3 download goes on through an upgrade;
//! - `tun`: `[tun] offload` changed by upgrades under transfers, and a new `[tun] name`
//!   refused.
//!
//! Privileged: every test is `#[ignore]`d (run as root with `--include-ignored`).

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod failures;
mod fastpath;
mod phases;
mod quic;
mod reconfigure;
mod requests;
mod transfers;
mod tun;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::HTTP_PORT;
use kracauer_testbed::{Kracauer, Topology, client, pattern};
use rustix::process::{Pid, Signal, WaitOptions};

/// The binary cargo built for this run; each upgrade installs a fresh copy of it.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// The tests here copy binaries and exec them; run side by side, one test's fork can hold
/// the other's freshly written file open for writing at the moment it is executed
/// (`ETXTBSY`). They take turns: every test holds [`serial`] from its start.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `f` until it returns `Some` or `limit` passes (a bound on waiting, not a timed
/// assertion).
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Installs `contents` (or a copy of the built binary) as a new file at `path`: written
/// beside it and renamed over it, as a package manager does, so the running binary's
/// file is never written to.
fn install(path: &Path, script: Option<&str>) {
    let tmp = path.with_extension("new");
    match script {
        Some(text) => std::fs::write(&tmp, text).unwrap(),
        None => {
            std::fs::copy(KRACAUER, &tmp).unwrap();
        }
    }
    let mut perm = std::fs::metadata(&tmp).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&tmp, perm).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A daemon started from a copy of the binary at `<testbed>/bin/kracauer`.
fn start(tb: &Topology) -> (Kracauer<'_>, PathBuf, Reaper) {
    start_with(tb, &tb.config(""))
}

/// Kills, when dropped, every daemon still running with the testbed's configuration:
/// the upgraded ones are not the testbed's child, and a test that fails after an upgrade
/// must not leave one running (orphaned, in a namespace that is gone). Dropped before
/// the `Kracauer` it was returned with.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in daemons(&self.0) {
            if let Some(p) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
                let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
            }
        }
    }
}

/// How many upgrades the log says were committed, and the last new pid.
fn took_over(log: &str) -> (usize, Option<i32>) {
    let pids: Vec<i32> = log
        .lines()
        .filter_map(|l| l.split("upgrade: pid ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    (pids.len(), pids.last().copied())
}

/// The pids of every process running a binary of `exe`'s directory with `config`.
fn daemons(config: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        let needle = config.as_os_str().as_encoded_bytes();
        if !zombie && cmd.windows(needle.len()).any(|w| w == needle) {
            out.push(pid);
        }
    }
    out
}

/// Sends SIGUSR2 to `pid` and waits until the log shows the upgrade `n` committed, or
/// one more failure than `failures` before.
fn usr2(pid: i32, k: &Kracauer<'_>, n: usize) -> i32 {
    let pid = Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(pid, Signal::USR2).unwrap();
    eventually(
        "the upgrade to commit",
        Duration::from_secs(60),
        || match took_over(&k.log()) {
            (c, Some(new)) if c == n => Some(new),
            _ => None,
        },
    )
}

/// Sends SIGUSR2 and waits for the log's `n`th "upgrade failed".
fn usr2_fails(pid: i32, k: &Kracauer<'_>, n: usize) -> String {
    rustix::process::kill_process(Pid::from_raw(pid).unwrap(), Signal::USR2).unwrap();
    eventually("the upgrade to fail", Duration::from_secs(60), || {
        let log = k.log();
        let fails: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("upgrade failed"))
            .collect();
        (fails.len() == n).then(|| fails[n - 1].to_owned())
    })
}

/// SIGTERM to `pid` (a daemon this process reaps as its subreaper) and its exit.
fn terminate(pid: i32) {
    let p = Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(p, Signal::TERM).unwrap();
    let status = rustix::process::waitpid(Some(p), WaitOptions::empty()).unwrap();
    assert!(
        status.is_some_and(|(_, s)| s.exit_status() == Some(0)),
        "{status:?}"
    );
}

/// A download whose reader goes slowly while `slow` is set (so the connection spans
/// every upgrade), then at full speed; checks every byte.
fn paced_download(
    tb: &Topology,
    n: u64,
    slow: std::sync::Arc<AtomicBool>,
) -> thread::JoinHandle<u64> {
    let mut s = tb
        .client
        .run(|| client::open(Topology::service(HTTP_PORT)))
        .unwrap()
        .unwrap();
    thread::spawn(move || {
        write!(
            s,
            "GET /source/{n} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_body(&mut s, n, &slow)
    })
}

fn read_body(s: &mut TcpStream, n: u64, slow: &AtomicBool) -> u64 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("no reset"),
            1,
            "closed in the head"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let want = if slow.load(Ordering::Relaxed) {
            4096
        } else {
            buf.len()
        };
        let k = s.read(&mut buf[..want]).expect("the client sees no reset");
        if k == 0 {
            break;
        }
        assert_eq!(pattern::first_mismatch(got, &buf[..k]), None, "damaged");
        got += k as u64;
        if slow.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(got, n, "every byte arrived");
    got
}

/// A connection from the client to the service's `port`, its handshake done (answered
/// by Kracauer itself).
fn connect(tb: &Topology, port: u16) -> TcpStream {
    tb.client
        .run(move || client::open(Topology::service(port)))
        .unwrap()
        .unwrap()
}

/// Everything until the peer closes; a reset is an error (what the client saw).
fn read_to_close(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// The value of the metric series `name` (labels included), at most a second old.
fn metric(k: &Kracauer<'_>, name: &str) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A daemon started with `config` from a copy of the binary at `<testbed>/bin/kracauer`.
fn start_with<'tb>(tb: &'tb Topology, config: &str) -> (Kracauer<'tb>, PathBuf, Reaper) {
    // Orphaned daemons (the new ones, once the old exits) become this process's children.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let dir = tb.dir().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("kracauer");
    install(&exe, None);
    let k = tb.start_kracauer(&exe, config).unwrap();
    let reaper = Reaper(k.config_path().to_owned());
    (k, exe, reaper)
}

/// Gives the client's TCP a retransmission timeout of at least `rto` towards the
/// service address (`rto_min` on its default route; new connections take it).
fn client_rto_min(tb: &Topology, rto: &str) {
    let gateway = kracauer_testbed::topology::ROUTER_V4.to_string();
    tb.client
        .ip([
            "route", "change", "default", "via", &gateway, "rto_min", rto,
        ])
        .unwrap();
}

/// Loads the nftables `script` in `ns`.
fn nft(ns: &kracauer_testbed::Netns, script: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {script}");
}
