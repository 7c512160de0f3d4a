//! A spray of IPv4 fragments is dropped and counted while a transfer runs.

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use kracauer_testbed::topology::{CLIENT_V4, HTTP_PORT, HTTPS_PORT, SERVICE_V4};
use kracauer_testbed::{Topology, Variant};

use super::{
    KRACAUER, curl_get, figure, metric, output_text, require_privileged_with_tools, serial,
};

const FRAGMENTS: &str = include_str!("fragments.py");

#[test]
#[ignore = "privileged: needs root, network namespaces, python3 and curl (run with --include-ignored)"]
fn fragment_spray_is_dropped_and_counted_while_a_transfer_runs() {
    require_privileged_with_tools("fragment_spray_is_dropped_and_counted_while_a_transfer_runs");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    const SIZE: u64 = 16 * 1024 * 1024;
    const COUNT: u64 = 60_000;
    let (spray, down) = thread::scope(|s| {
        let spray = s.spawn(|| {
            let mut text = String::new();
            for port in [HTTPS_PORT, HTTP_PORT] {
                let out = tb
                    .client
                    .command("python3")
                    .args(["-c", FRAGMENTS, &CLIENT_V4.to_string()])
                    .args([&SERVICE_V4.to_string(), &port.to_string()])
                    .arg((COUNT / 2).to_string())
                    .stdin(Stdio::null())
                    .output()
                    .expect("run the fragment sprayer");
                text.push_str(&output_text(&out));
            }
            text
        });
        let down = tb.download("a.example", SIZE);
        (spray.join().expect("spray thread"), down)
    });
    // The metrics snapshot is written once a second.
    thread::sleep(Duration::from_millis(1500));
    let dropped = metric(
        &k,
        "kracauer_drops_total{reason=\"client_fragment\",side=\"client\"}",
    );
    let (flows, peek) = (
        metric(&k, "kracauer_flows"),
        metric(&k, "kracauer_peek_bytes"),
    );
    figure(&format!(
        "fragments: {} ; client_fragment drops {dropped}; download {down:?}; flows after {flows}, \
         peek bytes {peek}",
        spray.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    assert_eq!(down.expect("download intact during the spray"), SIZE);
    assert!(
        dropped >= COUNT / 2,
        "fragments reached Kracauer and were counted: {dropped}"
    );
    assert_eq!(peek, 0, "no fragment is held");
    assert!(flows <= 2, "no flow made by fragments: {flows}");
    assert!(curl_get(&tb, CLIENT_V4).is_some(), "served after the spray");
}
