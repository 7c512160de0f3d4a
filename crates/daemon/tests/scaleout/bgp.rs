//! Two Kracauer instances behind an upstream router that spreads flows over them by
//! ECMP, each announced by its own BIRD over BGP with BFD (the testbed's
//! [`ScaleOut`]): flows spread over both and arrive intact; SIGTERM withdraws an
//! instance by a BGP UPDATE and new connections go to the other; a live upgrade under
//! load withdraws nothing and drops nothing. (A crash: `crash`.) (A returning instance still breaks the flows
//! hash-threshold ECMP moves to it without second chance: `rebalance`.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::scaleout::{ScaleOut, from_instance, prefix};
use kracauer_testbed::{Error, client, pattern, require_privileged_and};
use rustix::process::{Pid, Signal, WaitOptions};

use super::{KRACAUER, RouteWatch, eventually};

/// The BGP hold time of the guide's configurations: a withdrawal seen before it passes
/// came by an UPDATE, not by the session timing out.
pub(super) const HOLD_TIME: Duration = Duration::from_secs(9);

pub(super) fn hosts() -> Vec<Ipv4Addr> {
    vec![ScaleOut::host_v4(1), ScaleOut::host_v4(2)]
}

/// Waits until the upstream router routes the service address over exactly `want`
/// (the hosts of those instances), and the /96 of each of them towards its host.
pub(super) fn wait_announced(so: &ScaleOut, want: &[u8]) {
    let gws: Vec<Ipv4Addr> = want.iter().map(|&i| ScaleOut::host_v4(i)).collect();
    eventually(
        "the upstream router's routes",
        Duration::from_secs(60),
        || {
            let prefixes = so.prefix_routes();
            let all = (1..=2).all(|i| prefixes.contains(&prefix(i)) == want.contains(&i));
            (so.announced() == gws && all).then_some(())
        },
    );
}

fn bird_ready(so: &ScaleOut) {
    eventually("BGP sessions", Duration::from_secs(60), || {
        ["k1_4", "k2_4", "k1_6", "k2_6"]
            .iter()
            .all(|p| {
                so.bird_upstream
                    .protocol(p)
                    .is_some_and(|p| p.established())
            })
            .then_some(())
    });
}

/// `count` downloads of `size` bytes each from the client, `parallel` at a time, a.example
/// and b.example in turn: how many arrived intact, and the errors.
pub(super) fn downloads(
    so: &ScaleOut,
    count: usize,
    size: u64,
    parallel: usize,
) -> Vec<Result<u64, Error>> {
    let per = count.div_ceil(parallel);
    let mut handles = Vec::new();
    for t in 0..parallel {
        let client = so.client.clone();
        handles.push(thread::spawn(move || {
            (0..per)
                .filter(|k| t * per + k < count)
                .map(|k| {
                    let host = if (t + k) % 2 == 0 {
                        "a.example"
                    } else {
                        "b.example"
                    };
                    client
                        .run(|| client::download(ScaleOut::service(), host, size))
                        .and_then(|r| r)
                })
                .collect::<Vec<_>>()
        }));
    }
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("a download thread"))
        .collect()
}

/// The connections the backends accepted from instance `i`'s prefix.
pub(super) fn seen_from(so: &ScaleOut, i: u8) -> (usize, usize) {
    let count = |log: &kracauer_testbed::server::ContactLog| {
        log.contacts()
            .iter()
            .filter(|c| from_instance(c.peer, i))
            .count()
    };
    (count(&so.contacts_a), count(&so.contacts_b))
}

/// The testbed, with BGP up, and this test's turn: the tests on the ECMP topology take
/// turns (each runs three BIRDs with BFD at 100 ms and dozens of transfers; several at
/// once on a small shared machine starve BFD and the sessions go down). Hold the turn
/// as long as the testbed: `let (_turn, so) = build();`.
pub(super) fn build() -> (std::sync::MutexGuard<'static, ()>, ScaleOut) {
    static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = TURNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let so = ScaleOut::build().unwrap();
    bird_ready(&so);
    (turn, so)
}

pub(super) fn intact(results: &[Result<u64, Error>], size: u64) {
    let bad: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r, Ok(n) if *n == size))
        .map(|r| format!("{r:?}"))
        .collect();
    assert!(bad.is_empty(), "{} transfers failed: {bad:?}", bad.len());
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn ecmp_spreads_200_connections_over_both_instances_and_every_transfer_is_intact() {
    let _machine = super::beside();
    require_privileged_and(
        "ecmp_spreads_200_connections_over_both_instances_and_every_transfer_is_intact",
        &["bird"],
    );
    let (_turn, so) = build();
    let _k1 = so.start_kracauer(1, Path::new(KRACAUER)).unwrap();
    let _k2 = so.start_kracauer(2, Path::new(KRACAUER)).unwrap();
    wait_announced(&so, &[1, 2]);
    let bfd = so
        .bird_upstream
        .birdc(&["show", "bfd", "sessions"])
        .unwrap();
    assert_eq!(bfd.matches(" Up ").count(), 4, "{bfd}");

    let size = 256 * 1024;
    intact(&downloads(&so, 200, size, 20), size);
    let (a1, b1) = seen_from(&so, 1);
    let (a2, b2) = seen_from(&so, 2);
    eprintln!("instance 1: {a1} + {b1} connections, instance 2: {a2} + {b2}");
    assert_eq!(
        a1 + b1 + a2 + b2,
        200,
        "every connection from one of the prefixes"
    );
    assert!(
        a1 > 0 && b1 > 0 && a2 > 0 && b2 > 0,
        "both backends see both prefixes: {a1} {b1} {a2} {b2}"
    );
}

/// Stops instance 1 by `stop` and checks its routes are withdrawn by an UPDATE (the
/// session stays up) before the hold time, then that every new connection succeeds
/// through instance 2.
fn withdrawn_when(stop: impl FnOnce(kracauer_testbed::Kracauer<'_>), what: &str) {
    let (_turn, so) = build();
    let k1 = so.start_kracauer(1, Path::new(KRACAUER)).unwrap();
    let _k2 = so.start_kracauer(2, Path::new(KRACAUER)).unwrap();
    wait_announced(&so, &[1, 2]);
    let before = so.bird_upstream.protocol("k1_4").unwrap();
    let at = Instant::now();
    stop(k1);
    eventually("the upstream to drop instance 1", HOLD_TIME, || {
        (so.announced() == [ScaleOut::host_v4(2)]).then_some(())
    });
    let took = at.elapsed();
    eprintln!(
        "{what}: withdrawn upstream {} ms after the signal",
        took.as_millis()
    );
    let after = so.bird_upstream.protocol("k1_4").unwrap();
    assert!(after.established(), "the session stayed up: {after:?}");
    assert_eq!(
        after.withdraws,
        before.withdraws + 1,
        "{before:?} {after:?}"
    );
    wait_announced(&so, &[2]);
    let (a, b) = seen_from(&so, 2);
    let size = 64 * 1024;
    intact(&downloads(&so, 100, size, 10), size);
    let (a2, b2) = seen_from(&so, 2);
    assert_eq!(
        a2 + b2 - a - b,
        100,
        "every new connection went through instance 2"
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn sigterm_withdraws_the_instance_and_every_new_connection_succeeds_through_the_other() {
    let _machine = super::beside();
    require_privileged_and(
        "sigterm_withdraws_the_instance_and_every_new_connection_succeeds_through_the_other",
        &["bird"],
    );
    withdrawn_when(|k| assert!(k.terminate().unwrap().success()), "SIGTERM");
}

/// A download read slowly while `slow` is set (so it spans the events), then at full
/// speed; checks every byte. Its connection is made before this returns.
pub(super) fn paced_download(
    so: &ScaleOut,
    n: u64,
    slow: Arc<AtomicBool>,
) -> thread::JoinHandle<Result<u64, String>> {
    let s: TcpStream = so
        .client
        .run(|| client::open(ScaleOut::service()))
        .unwrap()
        .unwrap();
    read_paced(s, n, slow)
}

/// [`paced_download`] on the connected `s`.
pub(super) fn read_paced(
    mut s: TcpStream,
    n: u64,
    slow: Arc<AtomicBool>,
) -> thread::JoinHandle<Result<u64, String>> {
    thread::spawn(move || {
        write!(
            s,
            "GET /source/{n} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => return Err(format!("in the head: {other:?}")),
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let want = if slow.load(Ordering::Relaxed) {
                2048
            } else {
                buf.len()
            };
            let k = s
                .read(&mut buf[..want])
                .map_err(|e| format!("after {got} bytes: {e}"))?;
            if k == 0 {
                break;
            }
            if let Some(at) = pattern::first_mismatch(got, &buf[..k]) {
                return Err(format!("damaged at {at}"));
            }
            got += k as u64;
            if slow.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
            }
        }
        if got == n {
            Ok(got)
        } else {
            Err(format!("{got} of {n} bytes"))
        }
    })
}

/// The pid of the process the log says the last upgrade handed over to.
pub(super) fn took_over(log: &str) -> Option<i32> {
    log.lines()
        .rev()
        .filter_map(|l| l.split("upgrade: pid ").nth(1))
        .find_map(|r| r.split(' ').next()?.parse().ok())
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn a_live_upgrade_under_load_withdraws_nothing_and_drops_nothing() {
    let _machine = super::alone();
    require_privileged_and(
        "a_live_upgrade_under_load_withdraws_nothing_and_drops_nothing",
        &["bird"],
    );
    // The upgraded daemon is not our child: be its reaper.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let (_turn, so) = build();
    // The TUN path: under this load (100 slow transfers and 100 new connections) a run
    // with the kernel fast path on fails now and then here, with or without a carrier
    // keeper. In every failing run looked at, a BGP session (BFD: 100 ms x 3) went down
    // 1 to 5 s after the SIGUSR2, of either instance, the upgraded one or the other; the
    // upstream router then sent that instance's flows to the other, which does not hold
    // them (`client_no_flow`, no second chance here), and the failed transfers were
    // exactly that instance's. The handover itself kept every flow (each fast-path entry
    // adopted, none refused; `upgrade/fastpath.rs` runs the same load on one instance).
    // A fast-path instance's upgrade, keeper and all, is `carrier`'s test.
    let config = |i| ScaleOut::config_with_tun(i, "fastpath = \"off\"");
    let k1 = so
        .start_kracauer_with(1, Path::new(KRACAUER), &config(1))
        .unwrap();
    let _k2 = so
        .start_kracauer_with(2, Path::new(KRACAUER), &config(2))
        .unwrap();
    wait_announced(&so, &[1, 2]);
    let counters = |p: &str| so.bird_upstream.protocol(p).unwrap();
    let (v4, v6) = (counters("k1_4"), counters("k1_6"));

    let slow = Arc::new(AtomicBool::new(true));
    let long: Vec<_> = (0..100)
        .map(|_| paced_download(&so, 2 << 20, slow.clone()))
        .collect();
    eventually(
        "some of the load on instance 1",
        Duration::from_secs(30),
        || (seen_from(&so, 1).0 > 0).then_some(()),
    );

    // Watch the upstream router's routes through the whole upgrade.
    let watch = RouteWatch::start(&so);
    rustix::process::kill_process(Pid::from_raw(k1.pid() as i32).unwrap(), Signal::USR2).unwrap();
    let new = eventually("the upgrade to commit", Duration::from_secs(60), || {
        took_over(&k1.log())
    });
    let _end = super::EndOnDrop::new(new);
    // New connections during and after the handover succeed too.
    let size = 64 * 1024;
    intact(&downloads(&so, 100, size, 10), size);
    slow.store(false, Ordering::Relaxed);
    let failed: Vec<String> = long
        .into_iter()
        .filter_map(|t| t.join().expect("a transfer thread").err())
        .collect();
    assert!(failed.is_empty(), "transfers dropped: {failed:?}");
    watch.assert_nothing_withdrawn(&so, (&v4, &v6));
    assert_eq!(so.announced(), hosts());

    let pid = Pid::from_raw(new).unwrap();
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    let status = rustix::process::waitpid(Some(pid), WaitOptions::empty()).unwrap();
    assert!(
        status.is_some_and(|(_, s)| s.exit_status() == Some(0)),
        "{status:?}"
    );
    wait_announced(&so, &[2]);
}
