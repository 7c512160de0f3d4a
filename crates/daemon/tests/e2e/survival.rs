//! State that outlives the daemon (docs/operator-guide.md, "Upgrades and restarts"): a
//! download on the kernel fast path goes on through a `kill -9` and is adopted by the
//! next daemon, without a reset; without the fast path the same crash resets it.
//!
//! The daemons run in a [`BpffsHolder`]'s mount namespace (entered with `nsenter`): under
//! plain `ip netns exec` each daemon's bpffs, and its pins, would die with it, which a
//! host's bpffs does not.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use kracauer_testbed::require_privileged_and;
use kracauer_testbed::topology::{HTTP_PORT, TUN};
use kracauer_testbed::{BpffsHolder, Kracauer, Netns, Topology, Variant, client, pattern};

use super::{KRACAUER, eventually};

const N: u64 = 200 * 1000 * 1000;

/// The testbed configuration with `[tun] fastpath = mode`.
pub(super) fn config(tb: &Topology, mode: &str) -> String {
    let c = tb.config("");
    c.replace(
        "mtu = 1500\n",
        &format!("mtu = 1500\nfastpath = \"{mode}\"\n"),
    )
}

/// Counts the RSTs the client's stack receives (nftables, in the client namespace).
fn count_rsts(ns: &Netns) {
    let script = "table inet krc_rst {\n\
        chain input { type filter hook input priority 0; tcp flags & rst == rst counter; }\n\
        }\n";
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
    assert!(child.wait().unwrap().success());
}

fn rsts(ns: &Netns) -> u64 {
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "krc_rst"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("the RST counter")
}

/// A download of [`N`] bytes whose reader goes slowly while `slow` is set (64 KB every
/// 20 ms, so the connection spans the crash), then at full speed; checks every byte.
/// `got` is its progress. Returns what the client's stack said at the end.
fn paced_download(
    tb: &Topology,
    slow: Arc<AtomicBool>,
    got: Arc<AtomicU64>,
) -> thread::JoinHandle<std::io::Result<u64>> {
    let mut s = tb
        .client
        .run(|| client::open(Topology::service(HTTP_PORT)))
        .unwrap()
        .unwrap();
    thread::spawn(move || {
        write!(
            s,
            "GET /source/{N} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"));
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let k = match s.read(&mut buf) {
                // Nothing comes (the backend was reset and the client, having nothing to
                // send, is never told): the client's next segment learns what became of
                // the connection.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    s.write_all(b"?")?;
                    s.read(&mut buf)?
                }
                other => other?,
            };
            if k == 0 {
                return Ok(n);
            }
            assert_eq!(pattern::first_mismatch(n, &buf[..k]), None, "damaged");
            n += k as u64;
            got.store(n, Ordering::Relaxed);
            if slow.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
            }
        }
    })
}

/// Adopted flows, as the log of the daemon that adopted them says.
fn adopted(k: &Kracauer<'_>) -> usize {
    k.log()
        .lines()
        .filter_map(|l| l.split(" adopted ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<usize>().ok())
        .sum()
}

/// Starts a paced download, waits until it is under way, `kill -9`s the daemon, starts
/// a new one and lets the download finish. Returns its result, the new daemon, and the
/// RSTs the client received.
fn crash_during_download<'tb>(
    tb: &'tb Topology,
    holder: &BpffsHolder,
    mode: &str,
) -> (std::io::Result<u64>, Kracauer<'tb>, u64) {
    count_rsts(&tb.client);
    let k = Kracauer::start_held(tb, holder, KRACAUER.as_ref(), &config(tb, mode)).unwrap();
    let (slow, got) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
    let download = paced_download(tb, slow.clone(), got.clone());
    eventually(
        "the download to be under way",
        Duration::from_secs(30),
        || (got.load(Ordering::Relaxed) >= 1 << 20).then_some(()),
    );
    k.kill9().unwrap();
    // The reader goes on while no daemon runs (the kernel keeps a fast-path flow moving).
    let before = got.load(Ordering::Relaxed);
    eventually(
        "the download to move without a daemon",
        Duration::from_secs(30),
        || (mode == "off" || got.load(Ordering::Relaxed) > before + (1 << 20)).then_some(()),
    );
    let k = Kracauer::start_held(tb, holder, KRACAUER.as_ref(), &config(tb, mode)).unwrap();
    slow.store(false, Ordering::Relaxed);
    let result = download.join().unwrap();
    (result, k, rsts(&tb.client))
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF, nft and nsenter (run with --include-ignored)"]
fn kill_9_during_a_fast_path_download_leaves_it_moving_and_the_next_daemon_adopts_it() {
    require_privileged_and(
        "kill_9_during_a_fast_path_download_leaves_it_moving_and_the_next_daemon_adopts_it",
        &["nft", "nsenter"],
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let holder = BpffsHolder::start(&tb.router).unwrap();
    let (result, k, rsts) = crash_during_download(&tb, &holder, "on");
    assert_eq!(result.expect("the client sees no reset"), N);
    assert_eq!(rsts, 0, "RSTs seen by the client");
    assert_eq!(adopted(&k), 1, "{}", k.log());
    // New connections work.
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    // The adopted flow ended in the new daemon's table (after the linger), with its
    // access-log line: its name, and the bytes the program forwarded for it.
    eventually("the adopted flow to end", Duration::from_secs(120), || {
        k.log()
            .lines()
            .filter(|l| l.contains("closed client=") && l.contains("name=a.example"))
            .filter_map(|l| {
                l.split(" to_client=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .any(|bytes| bytes >= N)
            .then_some(())
    });
    // SIGTERM still removes everything: the TUN the fast path made persistent goes too.
    assert!(k.terminate().unwrap().success());
    assert!(
        tb.router.ip(["link", "show", TUN]).is_err(),
        "the TUN device stayed"
    );
    let pins = holder.command("ls").arg("/sys/fs/bpf").output().unwrap();
    let pins = String::from_utf8_lossy(&pins.stdout);
    assert!(!pins.contains("kracauer"), "pins left: {pins}");
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nft and nsenter (run with --include-ignored)"]
fn kill_9_during_a_download_without_the_fast_path_resets_it() {
    require_privileged_and(
        "kill_9_during_a_download_without_the_fast_path_resets_it",
        &["nft", "nsenter"],
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let holder = BpffsHolder::start(&tb.router).unwrap();
    let (result, k, rsts) = crash_during_download(&tb, &holder, "off");
    let e = result.expect_err("the download should have been reset");
    assert!(
        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "{e}"
    );
    assert!(rsts >= 1, "the client saw no RST");
    assert_eq!(adopted(&k), 0);
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
}
