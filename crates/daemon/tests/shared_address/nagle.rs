//! A real Linux socket with Nagle on whose ClientHello goes in two writes: the kernel
//! sends the first piece and holds the short second one until the first is
//! acknowledged. The client namespace runs without tail loss probes
//! (`net.ipv4.tcp_early_retrans = 0`), as older Java and Windows stacks do: a modern
//! Linux would send the held piece as its probe after about 200 ms. Kracauer acknowledges
//! the first piece itself after `timeouts.custody` and delivers it to the backend; with
//! custody off the client waits for the peek deadline and is reset.

use std::time::{Duration, Instant};

use kracauer_testbed::topology::{BACKEND_A, HTTPS_PORT};
use kracauer_testbed::{Topology, Variant, client};

use super::{KRACAUER, figure, metric, require_privileged_with, serial};

/// The first write: 100 bytes of the hello (rustls's is a few hundred).
const FIRST: usize = 100;

fn nagle_get(tb: &Topology) -> (Result<client::Reply, kracauer_testbed::Error>, Duration) {
    let config = tb.client_tls();
    let started = Instant::now();
    let reply = tb
        .client
        .run(move || {
            let addr = Topology::service(HTTPS_PORT);
            client::https_get_split_hello(&config, addr, "a.example", "/", FIRST)
        })
        .expect("enter the client namespace");
    (reply, started.elapsed())
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_nagle_client_that_writes_its_hello_in_two_pieces_is_served_once_kracauer_takes_custody() {
    require_privileged_with(
        "a_nagle_client_that_writes_its_hello_in_two_pieces_is_served_once_kracauer_takes_custody",
        &[],
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    tb.client.sysctl("net.ipv4.tcp_early_retrans", "0").unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    // A first request warms the path up (neighbour discovery towards the backend).
    assert_eq!(tb.https_get("a.example", "/").unwrap().status, 200);

    let (reply, took) = nagle_get(&tb);
    let reply = reply.expect("served");
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.seen().expect("the backend's answer line");
    assert_eq!(seen.local.ip(), std::net::IpAddr::V6(BACKEND_A));
    assert_eq!(seen.sni.as_deref(), Some("a.example"));
    // The metrics snapshot is at most a second old.
    let mut taken = 0;
    for _ in 0..40 {
        taken = metric(&k, "kracauer_custody_taken_total");
        if taken > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(taken, 1, "Kracauer took custody of the first piece");
    figure(&format!(
        "nagle, hello in two writes ({FIRST} bytes first), no tail loss probes: served in \
         {took:?} with custody (timeouts.custody 100ms)"
    ));

    // The same client with custody off waits for an acknowledgement that never comes.
    k.reload(&tb.config("[timeouts]\ncustody = \"0s\"\n"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (reply, took) = nagle_get(&tb);
    figure(&format!(
        "nagle, hello in two writes, custody off: {} after {took:?}",
        match &reply {
            Ok(r) => format!("status {}", r.status),
            Err(e) => format!("error ({e})"),
        }
    ));
    assert!(
        reply.is_err(),
        "without custody it is not served: {reply:?}"
    );
    assert!(
        took >= Duration::from_secs(4),
        "reset at the peek deadline, after {took:?}"
    );
}
