//! An HTTP/3 download through a live upgrade: the QUIC flow travels in the snapshot
//! (with the connection IDs it learned), so the new process forwards the same
//! connection's datagrams on. Without it the new process would know neither the 4-tuple
//! nor the IDs, drop the client's short headers, and the download would time out.

use std::sync::atomic::{AtomicBool, Ordering};

use kracauer_testbed::quic::Request;
use kracauer_testbed::topology::{CLIENT_V6, HTTPS_PORT};
use kracauer_testbed::{Topology, Variant, pattern, require_privileged};

use super::{install, serial, start_with, terminate, usr2};

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn an_http3_download_goes_on_through_a_live_upgrade() {
    require_privileged("an_http3_download_goes_on_through_a_live_upgrade");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let _h3 = tb.start_h3().unwrap();
    let (k, exe, _reaper) = start_with(&tb, &tb.quic_config(""));
    const N: u64 = 8_000_000;
    let upgraded = AtomicBool::new(false);
    let mut new_pid = None;
    let req = Request {
        sni: "a.example".into(),
        path: format!("/bytes/{N}"),
        port: 43_000,
    };
    let reply = kracauer_testbed::quic::get(
        &tb.client,
        &tb.client_tls(),
        Topology::service(HTTPS_PORT),
        req,
        |got| {
            // A quarter of the way in, the client stops reading (its connection idles)
            // while the daemon upgrades, then goes on through the new process.
            if got >= N / 4 && !upgraded.swap(true, Ordering::Relaxed) {
                install(&exe, None);
                new_pid = Some(usr2(k.pid() as i32, &k, 1));
            }
        },
    )
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}\n{}", k.log()));
    let new_pid = new_pid.expect("the upgrade happened mid-download");
    assert_eq!(pattern::first_mismatch(0, &reply.body[..N as usize]), None);
    let tail = String::from_utf8_lossy(&reply.body[N as usize..]);
    assert_eq!(tail, format!("\n--\n{CLIENT_V6} 43000"));
    terminate(new_pid);
}
