//! Transfers in flight through five upgrades, each to a new binary file at the same path:
//! the shape in full, 200 concurrent downloads and one of 200 MB (about 11 s for
//! a debug build on a shared 2-core machine: Kracauer moves GSO super-packets whole).

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{daemons, install, paced_download, serial, start, terminate, usr2};

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn downloads_survive_five_upgrades_to_new_binary_files() {
    require_privileged("downloads_survive_five_upgrades_to_new_binary_files");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (k, exe, _reaper) = start(&tb);
    let (count, small, big) = (200, 1 << 20, 200 << 20);
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
