//! Failed upgrades: the old daemon serves on with its flows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{KRACAUER, daemons, install, paced_download, serial, start, usr2_fails};

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn failed_upgrades_leave_the_old_daemon_serving_its_flows() {
    require_privileged("failed_upgrades_leave_the_old_daemon_serving_its_flows");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (mut k, exe, _reaper) = start(&tb);
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
