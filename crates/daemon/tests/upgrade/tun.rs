//! `[tun]` changes by a live upgrade: `offload` turned off and on again while transfers
//! run (the new process re-opens the queues in the new mode), and a new `name`, which a
//! reload, an upgrade and `kracauer check` refuse, naming it, while the old daemon serves
//! on.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kracauer_testbed::topology::HTTP_PORT;
use kracauer_testbed::{
    Kracauer, Topology, Variant, prom, require_privileged, require_privileged_and,
};

use super::fastpath::{count_rsts, rsts};
use super::{
    KRACAUER, connect, daemons, eventually, install, metric, paced_download, serial, start_with,
    terminate, usr2, usr2_fails,
};

/// The testbed's configuration with `[tun] offload` as given, two workers (the queues
/// re-opened keep the steering), and the fast path off (every packet crosses the TUN).
fn with_offload(tb: &Topology, offload: bool) -> String {
    tb.config("").replacen(
        "mtu = 1500\n",
        &format!("mtu = 1500\noffload = {offload}\nworkers = 2\nfastpath = \"off\"\n"),
        1,
    )
}

/// Whether the kernel's TUN device carries the virtio-net header (`IFF_VNET_HDR` in its
/// `tun_flags`).
fn vnet_hdr(tb: &Topology) -> bool {
    tun_flags(tb) & 0x4000 != 0
}

/// The kernel's flags of the TUN device (`/sys/class/net/<tun>/tun_flags`).
fn tun_flags(tb: &Topology) -> u32 {
    let tun = kracauer_testbed::topology::TUN;
    let out = tb
        .router
        .command("cat")
        .arg(format!("/sys/class/net/{tun}/tun_flags"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap()
}

/// GSO super-packets read from the TUN so far, all workers.
fn super_packets(k: &Kracauer<'_>) -> u64 {
    let body = k.metrics().map(|r| r.body).unwrap_or_default();
    prom::samples(&body, "kracauer_tun_super_packets_total")
        .iter()
        .map(|s| s.1)
        .sum()
}

/// Uploads of `total` bytes from many client ports, each half sent.
fn half_uploads(tb: &Topology, n: usize, total: u64) -> Vec<TcpStream> {
    let mut uploads: Vec<TcpStream> = (0..n).map(|_| connect(tb, HTTP_PORT)).collect();
    for u in &mut uploads {
        super::reconfigure::half_upload(u, total);
    }
    uploads
}

#[test]
#[ignore = "privileged: needs root, network namespaces and nft (run with --include-ignored)"]
fn offload_turned_off_and_on_by_upgrades_reopens_the_queues_and_breaks_no_transfer() {
    require_privileged_and(
        "offload_turned_off_and_on_by_upgrades_reopens_the_queues_and_breaks_no_transfer",
        &["nft"],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (k, exe, _reaper) = start_with(&tb, &with_offload(&tb, true));
    count_rsts(&tb);
    assert_eq!(metric(&k, "kracauer_tun_offload"), 1);
    assert!(vnet_hdr(&tb));
    let (small, big, total) = (1 << 20, 40 << 20, 2_000_000);
    let slow = Arc::new(AtomicBool::new(true));
    let mut downloads: Vec<_> = (0..16)
        .map(|_| paced_download(&tb, small, slow.clone()))
        .collect();
    downloads.push(paced_download(&tb, big, slow.clone()));
    let mut uploads = half_uploads(&tb, 8, total);
    // A reload leaves it to an upgrade, and says so.
    k.reload(&with_offload(&tb, false)).unwrap();
    eventually("the reload's warning", Duration::from_secs(30), || {
        k.log()
            .contains("reload: [tun] offload changed; that takes an upgrade (SIGUSR2) or a restart")
            .then_some(())
    });
    assert!(vnet_hdr(&tb));
    let mut pid = k.pid() as i32;
    for (n, offload) in [(1, false), (2, true)] {
        std::fs::write(k.config_path(), with_offload(&tb, offload)).unwrap();
        install(&exe, None);
        pid = usr2(pid, &k, n);
        // The new process re-opens the queues once the old one (which logged the
        // commit) has exited.
        let said = format!(
            "re-opened with offloads {}",
            if offload { "on" } else { "off" }
        );
        eventually("the queues re-opened", Duration::from_secs(60), || {
            (k.log().matches(&said).count() == 1
                && metric(&k, "kracauer_tun_offload") == u64::from(offload))
            .then_some(())
        });
        assert_eq!(vnet_hdr(&tb), offload, "the device's own flag");
        // New connections work in the new mode, while the old ones wait.
        assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
        assert_eq!(tb.download("a.example", 300_000).unwrap(), 300_000);
    }
    for u in &mut uploads {
        super::reconfigure::send(u, total / 2, total);
    }
    slow.store(false, Ordering::Relaxed);
    for t in downloads {
        t.join()
            .expect("the download completed intact, with no reset");
    }
    for mut u in uploads {
        let mut answer = String::new();
        u.read_to_string(&mut answer)
            .expect("the upload saw no reset");
        assert!(
            answer.ends_with(&format!("sink={total} mismatch=none\n")),
            "{answer}"
        );
    }
    // Offloads on again in the kernel, not only in the metric: a backend's burst reaches
    // the workers as super-packets.
    let before = super_packets(&k);
    assert_eq!(tb.download("a.example", 8 << 20).unwrap(), 8 << 20);
    eventually("super-packets read", Duration::from_secs(30), || {
        (super_packets(&k) > before).then_some(())
    });
    // No packet was read in a mode its queue was not opened with.
    let body = k.metrics().unwrap().body;
    assert_eq!(
        prom::one(&body, "kracauer_tun_header_errors_total"),
        0,
        "{body}"
    );
    assert!(!k.log().contains("could not change"), "{}", k.log());
    assert_eq!(rsts(&tb), 0, "RSTs seen by the client");
    assert_eq!(daemons(k.config_path()), [pid]);
    terminate(pid);
}

/// A queue of the testbed's TUN held, disabled, by another process (`hold_queue.py`)
/// until dropped.
struct HeldQueue(std::process::Child);

impl HeldQueue {
    fn new(tb: &Topology) -> Self {
        let mut child = tb
            .router
            .command("python3")
            .args(["-c", include_str!("hold_queue.py")])
            .arg(kracauer_testbed::topology::TUN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
        Self(child)
    }
}

impl Drop for HeldQueue {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "privileged: needs root, network namespaces, python3 and nft (run with --include-ignored)"]
fn a_queue_held_elsewhere_keeps_the_devices_offload_mode_and_the_workers_read_it() {
    require_privileged_and(
        "a_queue_held_elsewhere_keeps_the_devices_offload_mode_and_the_workers_read_it",
        &["nft", "python3"],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (k, exe, _reaper) = start_with(&tb, &with_offload(&tb, true));
    count_rsts(&tb);
    let slow = Arc::new(AtomicBool::new(true));
    let download = paced_download(&tb, 8 << 20, slow.clone());
    let held = HeldQueue::new(&tb);
    std::fs::write(k.config_path(), with_offload(&tb, false)).unwrap();
    install(&exe, None);
    let mut pid = usr2(k.pid() as i32, &k, 1);
    eventually("the queues re-opened", Duration::from_secs(60), || {
        k.log()
            .contains("re-opened with offloads on as the device has them")
            .then_some(())
    });
    // The device kept its header, and so do the workers: everything parses.
    assert!(vnet_hdr(&tb));
    assert_eq!(metric(&k, "kracauer_tun_offload"), 1);
    assert_eq!(tb.download("a.example", 300_000).unwrap(), 300_000);
    // Once the other process lets go, the next upgrade applies it.
    drop(held);
    install(&exe, None);
    pid = usr2(pid, &k, 2);
    eventually("the queues re-opened", Duration::from_secs(60), || {
        (k.log()
            .contains("re-opened with offloads off ([tun] offload = false)")
            && metric(&k, "kracauer_tun_offload") == 0)
            .then_some(())
    });
    assert!(!vnet_hdr(&tb));
    slow.store(false, Ordering::Relaxed);
    download.join().expect("the download completed intact");
    assert_eq!(tb.download("a.example", 300_000).unwrap(), 300_000);
    assert_eq!(rsts(&tb), 0, "RSTs seen by the client");
    let body = k.metrics().unwrap().body;
    assert_eq!(
        prom::one(&body, "kracauer_tun_header_errors_total"),
        0,
        "{body}"
    );
    terminate(pid);
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF and nft (run with --include-ignored)"]
fn offload_turned_on_by_an_upgrade_with_the_fast_path_keeps_its_flow_and_device() {
    require_privileged_and(
        "offload_turned_on_by_an_upgrade_with_the_fast_path_keeps_its_flow_and_device",
        &["nft"],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = |offload: bool| {
        tb.config("").replacen(
            "mtu = 1500\n",
            &format!("mtu = 1500\noffload = {offload}\nfastpath = \"on\"\n"),
            1,
        )
    };
    let (k, exe, _reaper) = start_with(&tb, &config(false));
    count_rsts(&tb);
    assert!(!vnet_hdr(&tb));
    let slow = Arc::new(AtomicBool::new(true));
    let download = paced_download(&tb, 40 << 20, slow.clone());
    let request = paced_download(&tb, 1 << 20, slow.clone());
    std::fs::write(k.config_path(), config(true)).unwrap();
    install(&exe, None);
    let pid = usr2(k.pid() as i32, &k, 1);
    eventually("the queues re-opened", Duration::from_secs(60), || {
        (k.log().contains("re-opened with offloads on") && metric(&k, "kracauer_tun_offload") == 1)
            .then_some(())
    });
    assert!(vnet_hdr(&tb), "the device's own flag");
    assert!(
        tun_flags(&tb) & 0x0800 != 0,
        "the fast path's device stays persistent"
    );
    assert_eq!(tb.download("a.example", 300_000).unwrap(), 300_000);
    slow.store(false, Ordering::Relaxed);
    download.join().expect("the download completed intact");
    request.join().expect("the download completed intact");
    assert_eq!(rsts(&tb), 0, "RSTs seen by the client");
    // The stop makes the device transient again through the descriptor the fast path
    // took from the new queues: it goes with the daemon.
    terminate(pid);
    let tun = kracauer_testbed::topology::TUN;
    let gone = tb
        .router
        .command("ip")
        .args(["link", "show", tun])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "{tun} outlived the daemon");
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_new_tun_name_is_refused_by_reload_upgrade_and_check_and_the_daemon_serves_on() {
    require_privileged(
        "a_new_tun_name_is_refused_by_reload_upgrade_and_check_and_the_daemon_serves_on",
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let good = tb.config("");
    let (k, exe, _reaper) = start_with(&tb, &good);
    let pid = k.pid() as i32;
    let slow = Arc::new(AtomicBool::new(true));
    let transfer = paced_download(&tb, 4 << 20, slow.clone());
    let tun = kracauer_testbed::topology::TUN;
    let renamed = good.replacen(&format!("name = \"{tun}\""), "name = \"krc-renamed\"", 1);
    assert_ne!(renamed, good);

    // `kracauer check` on the running configuration's file says it takes a restart.
    std::fs::write(k.config_path(), &renamed).unwrap();
    let dir = k.config_path().parent().unwrap().to_owned();
    let out = tb
        .router
        .command(KRACAUER)
        .env("RUNTIME_DIRECTORY", &dir)
        .arg("check")
        .arg("--config")
        .arg(k.config_path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("[tun] name:"), "{said}");
    assert!(said.contains("refuses a new name"), "{said}");

    // A reload keeps the running name and says what applies it.
    k.reload(&renamed).unwrap();
    eventually("the reload's warning", Duration::from_secs(30), || {
        k.log()
            .contains("reload: [tun] name changed; that takes a restart")
            .then_some(())
    });

    // A live upgrade refuses it, naming the setting; the old daemon serves on.
    install(&exe, None);
    let why = usr2_fails(pid, &k, 1);
    assert!(why.contains("[tun] name is \"krc-renamed\""), "{why}");
    assert!(why.contains("takes a restart"), "{why}");
    assert_eq!(daemons(k.config_path()), [pid]);
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    slow.store(false, Ordering::Relaxed);
    transfer.join().expect("the transfer completed intact");
    std::fs::write(k.config_path(), &good).unwrap();
    k.terminate().unwrap();
}
