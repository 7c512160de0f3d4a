//! Rebalancing (docs/scale-out.md, "Rebalancing"): instance 2 stops and comes back while
//! long transfers run through instance 1, and the upstream router's hash-threshold ECMP
//! moves some of them to instance 2, which does not hold them. With second chance
//! (`[scale_out]`) instance 2 passes their segments to instance 1, and every transfer
//! completes intact; without it instance 2 resets them, as before. And a flow no
//! instance holds (its instance crashed) is still reset, once every peer has said it
//! does not hold it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kracauer_testbed::scaleout::ScaleOut;
use kracauer_testbed::{Kracauer, require_privileged_and};

use kracauer_testbed::client;
use kracauer_testbed::scaleout::from_instance;

use super::bgp::{build, paced_download, read_paced, seen_from, wait_announced};
use super::{KRACAUER, eventually};

/// Long transfers running through instance 1 when instance 2 comes back: with
/// hash-threshold ECMP over two next hops about half of them move, so that none does
/// is out of the question (2^-40).
const TRANSFERS: usize = 40;
/// Bytes per transfer: read slowly, they outlast the return of instance 2.
const SIZE: u64 = 2 << 20;

/// The value of the metric series `series` (name and labels, as the endpoint writes
/// them; 0 when absent) in `k`'s metrics, which are at most a second old.
fn metric(k: &Kracauer<'_>, series: &str) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Instance 1's BGP sessions upstream as BIRD shows them (state and since when): a
/// failure with these changed came from a session that went down (BFD's 300 ms on a
/// starved machine), not from second chance.
fn sessions_1(so: &ScaleOut) -> Vec<String> {
    ["k1_4", "k1_6"]
        .iter()
        .map(|p| {
            so.bird_upstream
                .protocol(p)
                .map(|p| p.line)
                .unwrap_or_default()
        })
        .collect()
}

/// Prints both instances' second-chance counters and drops (for a failure's record).
fn dump(k1: &Kracauer<'_>, k2: &Kracauer<'_>) {
    for (i, k) in [(1, k1), (2, k2)] {
        let body = k.metrics().map(|r| r.body).unwrap_or_default();
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| {
                (l.starts_with("kracauer_second_chance") || l.starts_with("kracauer_drops"))
                    && !l.ends_with(" 0")
            })
            .collect();
        eprintln!("instance {i}: {lines:#?}");
    }
}

const CLIENT_NO_FLOW: &str = "kracauer_drops_total{reason=\"client_no_flow\",side=\"client\"}";
const PASSED: &str = "kracauer_second_chance_passed_total";
const DELIVERED: &str = "kracauer_second_chance_delivered_total";
const ORPHANS_RESET: &str = "kracauer_second_chance_orphans_reset_total";

/// Starts both instances with `config`, stops instance 2, starts [`TRANSFERS`] slow
/// downloads (all through instance 1), starts instance 2 again and waits until
/// `moved(instance 1, instance 2)` says ECMP moved flows to it; then lets the transfers
/// run to their end. Returns the failed transfers' errors, and calls `check` with both
/// instances before they stop.
fn instance_2_comes_back(
    config: fn(u8) -> String,
    moved: impl Fn(&Kracauer<'_>, &Kracauer<'_>) -> bool,
    check: impl FnOnce(&Kracauer<'_>, &Kracauer<'_>),
) -> Vec<String> {
    let (_turn, so) = build();
    let binary = Path::new(KRACAUER);
    let k1 = so.start_kracauer_with(1, binary, &config(1)).unwrap();
    let k2 = so.start_kracauer_with(2, binary, &config(2)).unwrap();
    wait_announced(&so, &[1, 2]);
    assert!(k2.terminate().unwrap().success());
    wait_announced(&so, &[1]);

    let sessions = sessions_1(&so);
    let slow = Arc::new(AtomicBool::new(true));
    let before = seen_from(&so, 1).0;
    let long: Vec<_> = (0..TRANSFERS)
        .map(|_| paced_download(&so, SIZE, slow.clone()))
        .collect();
    eventually(
        "every transfer to reach its backend through instance 1",
        Duration::from_secs(60),
        || (seen_from(&so, 1).0 - before == TRANSFERS).then_some(()),
    );

    let k2 = so.start_kracauer_with(2, binary, &config(2)).unwrap();
    wait_announced(&so, &[1, 2]);
    eventually(
        "ECMP to move transfers to instance 2",
        Duration::from_secs(60),
        || moved(&k1, &k2).then_some(()),
    );
    slow.store(false, Ordering::Relaxed);
    let failed: Vec<String> = long
        .into_iter()
        .filter_map(|t| t.join().expect("a transfer thread").err())
        .collect();
    // The counters are published about once a second.
    std::thread::sleep(Duration::from_millis(1100));
    dump(&k1, &k2);
    check(&k1, &k2);
    if !failed.is_empty() {
        eprintln!(
            "instance 1's sessions before: {sessions:?}, after: {:?}",
            sessions_1(&so)
        );
    }
    failed
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn with_second_chance_a_returning_instance_breaks_no_running_transfer() {
    let _machine = super::beside();
    require_privileged_and(
        "with_second_chance_a_returning_instance_breaks_no_running_transfer",
        &["bird"],
    );
    let failed = instance_2_comes_back(
        ScaleOut::config_with_second_chance,
        // Instance 2 passed segments on, and instance 1 delivered some to its flows.
        |k1, k2| metric(k2, PASSED) > 0 && metric(k1, DELIVERED) > 0,
        |k1, k2| {
            let (passed, delivered) = (metric(k2, PASSED), metric(k1, DELIVERED));
            eprintln!(
                "instance 2 passed {passed} segments on; instance 1 delivered {delivered} to flows it holds"
            );
            assert_eq!(metric(k2, CLIENT_NO_FLOW), 0, "instance 2 reset nothing");
            assert_eq!(metric(k2, ORPHANS_RESET), 0, "no segment was an orphan");
            assert_eq!(
                metric(k1, "kracauer_second_chance_no_flow_total"),
                0,
                "instance 1 held the flow of every segment passed to it"
            );
        },
    );
    assert!(
        failed.is_empty(),
        "{} of {TRANSFERS} transfers broken: {failed:?}",
        failed.len()
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn without_second_chance_a_returning_instance_resets_the_transfers_moved_to_it() {
    let _machine = super::beside();
    require_privileged_and(
        "without_second_chance_a_returning_instance_resets_the_transfers_moved_to_it",
        &["bird"],
    );
    let failed = instance_2_comes_back(
        ScaleOut::config,
        |_, k2| metric(k2, CLIENT_NO_FLOW) > 0,
        |_, k2| assert_eq!(metric(k2, PASSED), 0, "second chance is off"),
    );
    eprintln!("{} of {TRANSFERS} transfers reset", failed.len());
    assert!(
        !failed.is_empty(),
        "ECMP moved transfers and they were reset"
    );
    assert!(
        failed.iter().all(|e| e.contains("reset")),
        "every failure is a reset: {failed:?}"
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn with_second_chance_a_flow_no_instance_holds_is_reset_once_every_peer_says_so() {
    let _machine = super::beside();
    require_privileged_and(
        "with_second_chance_a_flow_no_instance_holds_is_reset_once_every_peer_says_so",
        &["bird"],
    );
    let (_turn, so) = build();
    let binary = Path::new(KRACAUER);
    // Without the fast path: this is the crash that loses the instance's flows (with it
    // they would live on in the kernel and the restart would adopt them), and it is
    // withdrawn at once (no carrier keeper).
    let config = |i| {
        ScaleOut::config_with_second_chance(i).replace("[tun]\n", "[tun]\nfastpath = \"off\"\n")
    };
    let k1 = so.start_kracauer_with(1, binary, &config(1)).unwrap();
    let k2 = so.start_kracauer_with(2, binary, &config(2)).unwrap();
    wait_announced(&so, &[1, 2]);
    let sessions = sessions_1(&so);

    // Transfers over both instances. Each client sends a keepalive probe after a second
    // without data (and gives up only after a minute of them): a flow whose instance is
    // gone still sends segments, as a client with something to say would.
    let slow = Arc::new(AtomicBool::new(true));
    let mut ports = Vec::new();
    let long: Vec<_> = (0..TRANSFERS)
        .map(|_| {
            let s = so
                .client
                .run(|| client::open(ScaleOut::service()))
                .unwrap()
                .unwrap();
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(1))
                .with_interval(Duration::from_secs(1))
                .with_retries(60);
            socket2::SockRef::from(&s)
                .set_tcp_keepalive(&keepalive)
                .unwrap();
            ports.push(s.local_addr().unwrap().port());
            read_paced(s, SIZE, slow.clone())
        })
        .collect();
    let through = |i: u8| -> Vec<u16> {
        let mut contacts = so.contacts_a.contacts();
        contacts.extend(so.contacts_b.contacts());
        contacts
            .iter()
            .filter(|c| from_instance(c.peer, i) && ports.contains(&c.peer.port()))
            .map(|c| c.peer.port())
            .collect()
    };
    eventually(
        "every transfer to reach its backend",
        Duration::from_secs(60),
        || (through(1).len() + through(2).len() == TRANSFERS).then_some(()),
    );
    let on_2 = through(2);
    assert!(!on_2.is_empty() && on_2.len() < TRANSFERS, "ECMP used both");

    // Instance 2 crashes: nothing holds its flows. Their clients' probes reach instance
    // 1, which passes them on to no avail (instance 2 cannot answer), and nothing resets
    // them until instance 2 is back and says "not held".
    k2.kill9().unwrap();
    wait_announced(&so, &[1]);
    let k2 = so.start_kracauer_with(2, binary, &config(2)).unwrap();
    wait_announced(&so, &[1, 2]);
    slow.store(false, Ordering::Relaxed);
    let results: Vec<(u16, Result<u64, String>)> = ports
        .iter()
        .copied()
        .zip(
            long.into_iter()
                .map(|t| t.join().expect("a transfer thread")),
        )
        .collect();
    std::thread::sleep(Duration::from_millis(1100));
    dump(&k1, &k2);
    eprintln!(
        "instance 1's sessions before: {sessions:?}, after: {:?}",
        sessions_1(&so)
    );
    let reset = metric(&k1, ORPHANS_RESET) + metric(&k2, ORPHANS_RESET);
    eprintln!(
        "{} transfers through the crashed instance; {reset} orphans reset",
        on_2.len()
    );
    for (port, result) in &results {
        if on_2.contains(port) {
            assert!(
                matches!(result, Err(e) if e.contains("reset")),
                "port {port}, through the crashed instance, is reset: {result:?}"
            );
        } else {
            assert_eq!(
                result,
                &Ok(SIZE),
                "port {port}, through instance 1, is intact"
            );
        }
    }
    assert!(reset > 0, "the resets came from second chance's orphans");
}
