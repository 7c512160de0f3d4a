//! Live upgrades (SIGUSR2) end to end: the real binary in the testbed's router namespace,
//! real kernel TCP at both ends. Transfers in flight survive upgrades to a new binary
//! file, and a failed upgrade leaves the old daemon serving with its flows.
//!
//! Privileged: every test is `#[ignore]`d (run as root with `--include-ignored`).
//!
//! Scale: `KRACAUER_UPGRADE_FULL=1` runs the shape in full (200 concurrent
//! downloads and one of 200 MB); by default it is 40 downloads and one of 20 MB, which a
//! debug build on a small shared CI machine moves in reasonable time.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::HTTP_PORT;
use kracauer_testbed::{Kracauer, Topology, Variant, client, pattern, require_privileged};
use rustix::process::{Pid, Signal, WaitOptions};

/// The binary cargo built for this run; each upgrade installs a fresh copy of it.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// The tests here copy binaries and exec them; run side by side, one test's fork can hold
/// the other's freshly written file open for writing at the moment it is executed
/// (`ETXTBSY`). They take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn full() -> bool {
    std::env::var_os("KRACAUER_UPGRADE_FULL").is_some()
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
fn start(tb: &Topology) -> (Kracauer<'_>, PathBuf) {
    // Orphaned daemons (the new ones, once the old exits) become this process's children.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let dir = tb.dir().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("kracauer");
    install(&exe, None);
    let k = tb.start_kracauer(&exe, &tb.config("")).unwrap();
    (k, exe)
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
fn paced_download(tb: &Topology, n: u64, slow: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
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

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn downloads_survive_five_upgrades_to_new_binary_files() {
    require_privileged("downloads_survive_five_upgrades_to_new_binary_files");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (k, exe) = start(&tb);
    let (count, small, big) = if full() {
        (200, 1 << 20, 200 << 20)
    } else {
        (40, 1 << 20, 20 << 20)
    };
    let slow = Arc::new(AtomicBool::new(true));
    let mut transfers: Vec<_> = (0..count)
        .map(|_| paced_download(&tb, small, slow.clone()))
        .collect();
    transfers.push(paced_download(&tb, big, slow.clone()));
    let mut pid = k.pid() as i32;
    for n in 1..=5 {
        install(&exe, None);
        pid = usr2(pid, &k, n);
    }
    slow.store(false, Ordering::Relaxed);
    for t in transfers {
        t.join().expect("the transfer completed intact");
    }
    // Exactly one daemon is left, running the file now at the path.
    assert_eq!(daemons(k.config_path()), [pid]);
    let running = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap().ino();
    assert_eq!(running, std::fs::metadata(&exe).unwrap().ino());
    // New connections work.
    assert_eq!(tb.download("a.example", 100_000).unwrap(), 100_000);
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    terminate(pid);
    assert!(daemons(k.config_path()).is_empty());
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn failed_upgrades_leave_the_old_daemon_serving_its_flows() {
    require_privileged("failed_upgrades_leave_the_old_daemon_serving_its_flows");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (mut k, exe) = start(&tb);
    let pid = k.pid() as i32;
    let slow = Arc::new(AtomicBool::new(true));
    let transfer = paced_download(&tb, 8 << 20, slow.clone());
    let good = tb.config("");

    // A new binary that exits at once.
    install(&exe, Some("#!/bin/sh\nexit 3\n"));
    let why = usr2_fails(pid, &k, 1);
    assert!(why.contains("went away"), "{why}");

    // A configuration made invalid just before the signal.
    install(&exe, None);
    std::fs::write(k.config_path(), "prefix = \"nonsense\"\n").unwrap();
    let why = usr2_fails(pid, &k, 2);
    assert!(why.contains("refused"), "{why}");
    std::fs::write(k.config_path(), &good).unwrap();

    // A new binary that reads another snapshot version than the old one writes.
    let wrapper = format!(
        "#!/bin/sh\nKRACAUER_TESTING_ACCEPT_SNAPSHOT_VERSION=999 exec {} \"$@\"\n",
        KRACAUER
    );
    install(&exe, Some(&wrapper));
    let why = usr2_fails(pid, &k, 3);
    assert!(why.contains("format version"), "{why}");

    // The old daemon serves on: the transfer completes, new connections work, and it
    // is the only daemon.
    assert!(k.is_running());
    assert_eq!(daemons(k.config_path()), [pid]);
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    slow.store(false, Ordering::Relaxed);
    transfer.join().expect("the transfer completed intact");
    k.terminate().unwrap();
}
