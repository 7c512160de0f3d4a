//! Transfers in flight through five upgrades, each to a new binary file at the same path.
//!
//! Scale: `KRACAUER_UPGRADE_FULL=1` runs the shape in full (200 concurrent
//! downloads and one of 200 MB); by default it is 40 downloads and one of 20 MB, which a
//! debug build on a small shared CI machine moves in reasonable time.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{daemons, install, paced_download, start, terminate, usr2};

fn full() -> bool {
    std::env::var_os("KRACAUER_UPGRADE_FULL").is_some()
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn downloads_survive_five_upgrades_to_new_binary_files() {
    require_privileged("downloads_survive_five_upgrades_to_new_binary_files");
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
