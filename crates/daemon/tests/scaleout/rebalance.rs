//! Rebalancing (docs/scale-out.md, "Rebalancing"): instance 2 stops and comes back while
//! long transfers run through instance 1, and the upstream router's hash-threshold ECMP
//! moves some of them to instance 2, which does not hold them. With second chance
//! (`[scale_out]`) instance 2 passes their segments to instance 1, and every transfer
//! completes intact; without it instance 2 resets them, as before.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kracauer_testbed::scaleout::ScaleOut;
use kracauer_testbed::{Kracauer, require_privileged_and};

use super::bgp::{build, paced_download, seen_from, wait_announced};
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
    let so = build();
    let binary = Path::new(KRACAUER);
    let k1 = so.start_kracauer_with(1, binary, &config(1)).unwrap();
    let k2 = so.start_kracauer_with(2, binary, &config(2)).unwrap();
    wait_announced(&so, &[1, 2]);
    assert!(k2.terminate().unwrap().success());
    wait_announced(&so, &[1]);

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
    check(&k1, &k2);
    failed
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn with_second_chance_a_returning_instance_breaks_no_running_transfer() {
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
