//! A live upgrade with the kernel fast path: the new process adopts the old one's
//! program, links and maps, so a download handed over before the upgrade stays on the
//! kernel path (the TUN sees next to none of its packets) and completes intact, with no
//! RST at the client; an upgrade to `fastpath = "off"` gives the flow back to the TUN
//! path, intact too. Under load (two workers, 100 slow transfers handed over, 100 new
//! connections while the upgrade runs) no transfer stalls and the client sees no RST.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kracauer_testbed::{Kracauer, Topology, Variant, require_privileged_and};

use super::{eventually, install, nft, paced_download, serial, start_with, terminate, usr2};

const BIG: u64 = 200 << 20;

fn config(tb: &Topology, mode: &str) -> String {
    tb.config("").replace(
        "mtu = 1500\n",
        &format!("mtu = 1500\nfastpath = \"{mode}\"\n"),
    )
}

/// The sum of every series of `name` in the running daemon's metrics.
fn metric_sum(k: &Kracauer<'_>, name: &str) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub(super) fn count_rsts(tb: &Topology) {
    nft(
        &tb.client,
        "table inet krc_rst {\n chain input { type filter hook input priority 0; tcp flags & rst == rst counter; }\n}\n",
    );
}

pub(super) fn rsts(tb: &Topology) -> u64 {
    let out = tb
        .client
        .command("nft")
        .args(["list", "table", "inet", "krc_rst"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("the RST counter")
}

/// Starts a paced 200 MB download with the fast path on, upgrades (SIGUSR2) once it is
/// spliced with the configuration file now `after`, lets it finish; returns the new
/// daemon's pid and its TUN packet count.
fn upgrade_during_download(tb: &Topology, after: &str) -> (i32, u64, String) {
    let (k, exe, _reaper) = start_with(tb, &config(tb, "on"));
    count_rsts(tb);
    let slow = Arc::new(AtomicBool::new(true));
    let download = paced_download(tb, BIG, slow.clone());
    // Accepted by the backend: the flow is spliced, and handed over.
    eventually(
        "the download to reach backend a",
        Duration::from_secs(30),
        || (tb.contacts_a.len() == 1).then_some(()),
    );
    std::fs::write(k.config_path(), config(tb, after)).unwrap();
    install(&exe, None);
    let pid = usr2(k.pid() as i32, &k, 1);
    slow.store(false, Ordering::Relaxed);
    download.join().expect("the download completed intact");
    assert_eq!(rsts(tb), 0, "RSTs seen by the client");
    // The new process serves the metrics now (on the listener handed over).
    let tun = metric_sum(&k, "kracauer_tun_packets_total");
    let log = k.log();
    terminate(pid);
    (pid, tun, log)
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF and nft (run with --include-ignored)"]
fn upgrade_keeps_a_fast_path_download_on_the_kernel_path_intact() {
    require_privileged_and(
        "upgrade_keeps_a_fast_path_download_on_the_kernel_path_intact",
        &["nft"],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (_, tun, log) = upgrade_during_download(&tb, "on");
    let kept: usize = log
        .lines()
        .filter_map(|l| l.split(" keeps ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(kept, 1, "{log}");
    // Through the TUN, 200 MB would be well over 3,000 packets even as 64 KB
    // super-packets: the new process's TUN saw only the close and what it needs.
    assert!(tun < 1000, "TUN packets after the upgrade: {tun}");
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF and nft (run with --include-ignored)"]
fn upgrade_to_fastpath_off_gives_the_download_back_to_the_tun_path_intact() {
    require_privileged_and(
        "upgrade_to_fastpath_off_gives_the_download_back_to_the_tun_path_intact",
        &["nft"],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (_, tun, log) = upgrade_during_download(&tb, "off");
    assert!(
        log.contains("fast path: removed the program and maps"),
        "{log}"
    );
    assert!(tun >= 3000, "TUN packets after the upgrade: {tun}");
}

/// The panic message of a joined thread, or `None` if it ended well.
fn failure(r: std::thread::Result<u64>) -> Option<String> {
    let e = r.err()?;
    Some(
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a transfer thread panicked".to_owned()),
    )
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF and nft (run with --include-ignored)"]
fn upgrade_on_the_fast_path_under_load_stalls_and_resets_nothing() {
    require_privileged_and(
        "upgrade_on_the_fast_path_under_load_stalls_and_resets_nothing",
        &["nft"],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    // Two workers, as a scale-out instance runs: two queues and the steering program.
    let two = config(&tb, "on").replace("mtu = 1500\n", "mtu = 1500\nworkers = 2\n");
    let (k, exe, _reaper) = start_with(&tb, &two);
    count_rsts(&tb);
    let slow = Arc::new(AtomicBool::new(true));
    let long: Vec<_> = (0..100)
        .map(|_| paced_download(&tb, 2 << 20, slow.clone()))
        .collect();
    eventually(
        "every transfer to reach backend a",
        Duration::from_secs(60),
        || (tb.contacts_a.len() >= 100).then_some(()),
    );
    install(&exe, None);
    let before = k.pid() as i32;
    let pid = std::thread::scope(|s| {
        // New connections before, during and after the handover.
        let fresh: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| tb.download("a.example", 64 * 1024))
                        .filter(|r| !matches!(r, Ok(n) if *n == 64 * 1024))
                        .map(|r| format!("{r:?}"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let pid = usr2(before, &k, 1);
        let bad: Vec<String> = fresh.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert!(
            bad.is_empty(),
            "new connections failed: {bad:?}\n{}",
            k.log()
        );
        pid
    });
    slow.store(false, Ordering::Relaxed);
    let failed: Vec<String> = long.into_iter().filter_map(|t| failure(t.join())).collect();
    let log = k.log();
    // The transfers were on the kernel path when the upgrade came, and every entry was
    // adopted by the worker that holds its flow.
    let kept: Vec<(usize, usize)> = log
        .lines()
        .filter_map(|l| l.split(" keeps ").nth(1))
        .filter_map(|r| {
            let kept = r.split(' ').next()?.parse().ok()?;
            let refused = r.split('(').nth(1)?.split(' ').next()?.parse().ok()?;
            Some((kept, refused))
        })
        .collect();
    assert_eq!(kept.len(), 2, "{log}");
    assert!(kept.iter().map(|k| k.0).sum::<usize>() > 0, "{log}");
    assert!(kept.iter().all(|k| k.1 == 0), "{log}");
    assert!(failed.is_empty(), "transfers failed: {failed:?}\n{log}");
    assert_eq!(rsts(&tb), 0, "RSTs seen by the client\n{log}");
    terminate(pid);
}
