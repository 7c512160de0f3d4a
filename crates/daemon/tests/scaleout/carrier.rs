//! The TUN's carrier as the signal BIRD follows (`check link`,
//! docs/scale-out/bird-instance.conf), on the ECMP topology, for an instance running the
//! kernel fast path and so a carrier keeper:
//! - `kill -9`, not restarted: the keeper keeps the carrier for `[tun] restart_grace`,
//!   then lets go; the carrier goes off, BIRD withdraws the instance by an UPDATE, and
//!   every new connection succeeds through the other instance;
//! - `kill -9`, restarted within the grace: nothing is withdrawn upstream, the new
//!   process ends the old keeper, and transfers the fast path carried through the crash
//!   are adopted and complete intact;
//! - a live upgrade: nothing is withdrawn; the new process ends the old process's
//!   keeper and holds the carrier with its own.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::scaleout::ScaleOut;
use kracauer_testbed::{BpffsHolder, require_privileged_and};

use super::bgp::{
    HOLD_TIME, build, downloads, hosts, intact, paced_download, seen_from, took_over,
    wait_announced,
};
use super::{KRACAUER, RouteWatch, eventually};

/// The carrier keeper's pid, from the line the daemon logs when it starts it.
fn keeper_pid(log: &str) -> Option<i32> {
    log.lines()
        .rev()
        .filter_map(|l| l.split("carrier keeper: pid ").nth(1))
        .find_map(|r| r.split(' ').next()?.parse().ok())
}

/// Whether process `pid` runs (a zombie does not: reaped here if this process is its
/// reaper, as the live-upgrade test makes it for orphans).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "PID (COMM) STATE ..."
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    if state == Some("Z") {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
        }
        return false;
    }
    true
}

/// The descriptors of process `pid` above standard error, as their link targets.
fn open_files(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            (n > 2).then(|| {
                std::fs::read_link(e.path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            })
        })
        .collect()
}

/// Ends the keeper `pid` if it still runs (SIGTERM, by its pid), so that the testbed's
/// namespaces do not outlive the test by the grace.
fn end_keeper(pid: i32) {
    if alive(pid) {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
    }
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device, BIRD and nsenter (run with --include-ignored)"]
fn a_crashed_instance_not_restarted_is_withdrawn_after_the_grace_and_new_connections_use_the_other()
{
    let _machine = super::beside();
    require_privileged_and(
        "a_crashed_instance_not_restarted_is_withdrawn_after_the_grace_and_new_connections_use_the_other",
        &["bird", "nsenter"],
    );
    let (_turn, so) = build();
    let holder = BpffsHolder::start(&so.hosts[0]).unwrap();
    // The default configuration: the fast path (auto) and restart_grace 5 s.
    let k1 = so
        .start_kracauer_held(1, &holder, Path::new(KRACAUER), &ScaleOut::config(1))
        .unwrap();
    let _k2 = so.start_kracauer(2, Path::new(KRACAUER)).unwrap();
    wait_announced(&so, &[1, 2]);
    let log = k1.log();
    assert!(
        log.contains("fast path: ") && !log.contains("fast path: not available"),
        "the fast path runs: {log}"
    );
    let keeper = keeper_pid(&log).unwrap_or_else(|| panic!("no carrier keeper: {log}"));
    assert!(
        log.contains("after a crash the carrier stays on for 5s"),
        "{log}"
    );
    // The keeper holds its one queue of the TUN and nothing else of the daemon's.
    assert_eq!(
        open_files(keeper),
        ["/dev/net/tun"],
        "the keeper's descriptors"
    );
    let counters = |p: &str| so.bird_upstream.protocol(p).unwrap();
    let (v4, v6) = (counters("k1_4"), counters("k1_6"));

    let at = Instant::now();
    k1.kill9().unwrap();
    // While the keeper runs the instance stays announced: each sample of the upstream
    // route taken between two sightings of the keeper alive has instance 1 in it.
    let mut samples = 0;
    loop {
        let before = alive(keeper);
        let routes = so.announced();
        if !(before && alive(keeper)) {
            break;
        }
        assert!(
            routes.contains(&ScaleOut::host_v4(1)),
            "withdrawn while the keeper held the carrier: {routes:?}"
        );
        samples += 1;
        thread::sleep(Duration::from_millis(10));
    }
    let keeper_gone = at.elapsed();
    assert!(samples > 0, "the keeper outlived the daemon");
    eventually("the upstream to drop instance 1", HOLD_TIME, || {
        (so.announced() == [ScaleOut::host_v4(2)]).then_some(())
    });
    eprintln!(
        "kill -9: the keeper let go {} ms after the signal ({samples} samples announced), \
         withdrawn upstream {} ms after the signal",
        keeper_gone.as_millis(),
        at.elapsed().as_millis()
    );
    // By an UPDATE, each address family once; the sessions stayed up.
    let (v4_after, v6_after) = (counters("k1_4"), counters("k1_6"));
    assert!(v4_after.established() && v6_after.established());
    assert_eq!(v4_after.withdraws, v4.withdraws + 1, "{v4:?} {v4_after:?}");
    assert_eq!(v6_after.withdraws, v6.withdraws + 1, "{v6:?} {v6_after:?}");
    wait_announced(&so, &[2]);
    // The kernel's side: the persistent TUN stays, without carrier, its routes linkdown.
    let k1_host = &so.hosts[0];
    let link = k1_host.ip(["link", "show", "kracauer1"]).unwrap();
    assert!(link.contains("NO-CARRIER"), "{link}");
    let routes = k1_host.ip(["route", "show", "dev", "kracauer1"]).unwrap();
    assert!(routes.contains("linkdown"), "{routes}");

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
#[ignore = "privileged: needs root, network namespaces, a TUN device, BIRD and nsenter (run with --include-ignored)"]
fn a_crashed_instance_restarted_within_the_grace_withdraws_nothing_and_its_spliced_transfers_complete()
 {
    let _machine = super::beside();
    require_privileged_and(
        "a_crashed_instance_restarted_within_the_grace_withdraws_nothing_and_its_spliced_transfers_complete",
        &["bird", "nsenter"],
    );
    let (_turn, so) = build();
    // A grace long enough for a restart on a loaded machine.
    let config = ScaleOut::config_with_tun(1, "restart_grace = \"60s\"");
    // bpffs outlives the daemon, as on a host: the restart adopts the kernel path's flows.
    let holder = BpffsHolder::start(&so.hosts[0]).unwrap();
    let k1 = so
        .start_kracauer_held(1, &holder, Path::new(KRACAUER), &config)
        .unwrap();
    let _k2 = so.start_kracauer(2, Path::new(KRACAUER)).unwrap();
    wait_announced(&so, &[1, 2]);
    let keeper = keeper_pid(&k1.log()).unwrap_or_else(|| panic!("no keeper: {}", k1.log()));
    let counters = |p: &str| so.bird_upstream.protocol(p).unwrap();
    let (v4, v6) = (counters("k1_4"), counters("k1_6"));

    // Long transfers, read slowly so that they span the crash and the restart; ECMP puts
    // some of them on instance 1.
    let size = 2 << 20;
    let slow = Arc::new(AtomicBool::new(true));
    let long: Vec<_> = (0..16)
        .map(|_| paced_download(&so, size, slow.clone()))
        .collect();
    let on_1 = eventually(
        "the transfers to reach the backends",
        Duration::from_secs(30),
        || {
            let seen = |i| {
                let (a, b) = seen_from(&so, i);
                a + b
            };
            (seen(1) + seen(2) == 16).then(|| seen(1))
        },
    );
    assert!(on_1 > 0, "ECMP put none of 16 transfers on instance 1");
    // Spliced, with data flowing: on the kernel path.
    thread::sleep(Duration::from_millis(500));

    let watch = RouteWatch::start(&so);
    k1.kill9().unwrap();
    let k1 = so
        .start_kracauer_held(1, &holder, Path::new(KRACAUER), &config)
        .unwrap();
    // The restart came within the old keeper's grace, and the new process, holding the
    // carrier itself, ended that keeper.
    let log = k1.log();
    assert!(
        log.contains(&format!(
            "carrier keeper: ended pid {keeper}, the keeper of an earlier process"
        )),
        "{log}"
    );
    eventually("the old keeper to end", Duration::from_secs(30), || {
        (!alive(keeper)).then_some(())
    });
    let adopted: usize = log
        .lines()
        .filter_map(|l| l.split(" adopted ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<usize>().ok())
        .sum();
    eprintln!(
        "the restarted instance adopted {adopted} flows from the kernel path ({on_1} transfers on it)"
    );
    assert!(adopted > 0, "the fast path carried the transfers: {log}");

    slow.store(false, Ordering::Relaxed);
    let failed: Vec<String> = long
        .into_iter()
        .filter_map(|t| t.join().expect("a transfer thread").err())
        .collect();
    assert!(failed.is_empty(), "transfers broken: {failed:?}");
    watch.assert_nothing_withdrawn(&so, (&v4, &v6));
    assert_eq!(so.announced(), hosts());

    // An orderly stop withdraws at once (it turns the carrier off), and the TUN goes.
    assert!(k1.terminate().unwrap().success());
    wait_announced(&so, &[2]);
    let link = so.hosts[0].ip(["link", "show", "kracauer1"]);
    assert!(link.is_err(), "the TUN stayed: {link:?}");
    end_keeper(keeper);
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and BIRD (run with --include-ignored)"]
fn a_live_upgrade_of_a_fast_path_instance_withdraws_nothing_and_the_new_process_keeps_the_carrier()
{
    let _machine = super::beside();
    require_privileged_and(
        "a_live_upgrade_of_a_fast_path_instance_withdraws_nothing_and_the_new_process_keeps_the_carrier",
        &["bird"],
    );
    // The upgraded daemon is not our child: be its reaper.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let (_turn, so) = build();
    let k1 = so.start_kracauer(1, Path::new(KRACAUER)).unwrap();
    let _k2 = so.start_kracauer(2, Path::new(KRACAUER)).unwrap();
    wait_announced(&so, &[1, 2]);
    let old_keeper = keeper_pid(&k1.log()).unwrap_or_else(|| panic!("no keeper: {}", k1.log()));
    let counters = |p: &str| so.bird_upstream.protocol(p).unwrap();
    let (v4, v6) = (counters("k1_4"), counters("k1_6"));

    let watch = RouteWatch::start(&so);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(k1.pid() as i32).unwrap(),
        rustix::process::Signal::USR2,
    )
    .unwrap();
    let new = eventually("the upgrade to commit", Duration::from_secs(60), || {
        took_over(&k1.log())
    });
    let _end = super::EndOnDrop::new(new);
    let new_keeper = eventually("the new process's keeper", Duration::from_secs(30), || {
        keeper_pid(&k1.log()).filter(|&k| k != old_keeper)
    });
    // The new process, holding the carrier with its queues and its own keeper, ends the
    // old process's keeper.
    eventually("the old keeper to end", Duration::from_secs(60), || {
        (!alive(old_keeper)).then_some(())
    });
    assert!(
        k1.log().contains(&format!(
            "carrier keeper: ended pid {old_keeper}, the keeper of an earlier process"
        )),
        "{}",
        k1.log()
    );
    assert!(alive(new_keeper));
    let link = so.hosts[0].ip(["link", "show", "kracauer1"]).unwrap();
    assert!(!link.contains("NO-CARRIER"), "{link}");
    let size = 64 * 1024;
    intact(&downloads(&so, 50, size, 10), size);
    watch.assert_nothing_withdrawn(&so, (&v4, &v6));

    // SIGTERM of the new process: withdrawn at once, its keeper stopped before it exits.
    let pid = rustix::process::Pid::from_raw(new).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status =
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap();
    assert!(
        status.is_some_and(|(_, s)| s.exit_status() == Some(0)),
        "{status:?}"
    );
    assert!(!alive(new_keeper), "the keeper went before the daemon");
    wait_announced(&so, &[2]);
    assert!(
        so.hosts[0].ip(["link", "show", "kracauer1"]).is_err(),
        "the TUN is gone"
    );
}
