//! A client that reuses its port while the kernel answers SYNs with cookies (flood mode):
//! the new connection must open a new flow, not ride the old one that still lingers as
//! closing (the engine never saw the new SYN, only the ACK with the cookie).

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{CLIENT_V4, HTTP_PORT, SERVICE_V4};
use kracauer_testbed::{Topology, Variant};

use super::{KRACAUER, figure, figure_counters, metric, require_privileged_with_tools, serial};

const SYNFLOOD: &str = include_str!("synflood.py");

/// The client port every request binds.
const PORT: u16 = 47_000;
const ROUNDS: u32 = 5;

#[test]
#[ignore = "privileged: needs root, network namespaces, python3 and curl (run with --include-ignored)"]
fn a_reused_client_port_under_kernel_syn_cookies_opens_a_new_connection_each_time() {
    require_privileged_with_tools(
        "a_reused_client_port_under_kernel_syn_cookies_opens_a_new_connection_each_time",
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    const FLOOD_SECS: u64 = 20;
    let flood_on =
        |k: &kracauer_testbed::Kracauer<'_>| metric(k, "kracauer_syncookie_flood_mode") == 1;
    // With flood mode on throughout, the kernel answers every SYN: each flow the engine
    // makes from a cookie is a handshake the engine never saw.
    let accepted = "kracauer_syn_cookies_accepted_total";
    let off = "kracauer_syncookie_flood_mode_changes_total{to=\"off\"}";
    let (results, valid_delta, on_throughout) = thread::scope(|s| {
        let flooder = s.spawn(|| {
            tb.client
                .command("python3")
                .args(["-c", SYNFLOOD, &SERVICE_V4.to_string(), "443"])
                .args([&FLOOD_SECS.to_string(), "50000000", &CLIENT_V4.to_string()])
                .stdin(Stdio::null())
                .output()
                .expect("run the flooder")
        });
        let until = Instant::now() + Duration::from_secs(10);
        while !flood_on(&k) {
            assert!(Instant::now() < until, "flood mode never turned on");
            thread::sleep(Duration::from_millis(100));
        }
        // The workers publish their counters every second: read them settled.
        thread::sleep(Duration::from_millis(1500));
        let before = metric(&k, accepted);
        let results = get_from_port(&tb);
        let settled = Instant::now() + Duration::from_secs(5);
        while metric(&k, accepted) < before + u64::from(ROUNDS) && Instant::now() < settled {
            thread::sleep(Duration::from_millis(250));
        }
        let delta = metric(&k, accepted) - before;
        let on = flood_on(&k) && metric(&k, off) == 0;
        let _ = flooder.join();
        (results, delta, on)
    });
    figure(&format!(
        "port reuse under kernel SYN cookies: {results:?}; flows the engine made from cookies meanwhile {valid_delta}"
    ));
    figure_counters(&k);
    assert!(on_throughout, "flood mode stayed on across the requests");
    assert!(
        valid_delta >= u64::from(ROUNDS),
        "each request's handshake went through the kernel's cookies: {results:?}"
    );
    assert_eq!(results.len(), ROUNDS as usize, "{results:?}");
    for (i, r) in results.iter().enumerate() {
        assert!(r.contains(" 200 "), "request {i} from port {PORT}: {r}");
    }
}

/// The client: one HTTP GET from `CLIENT_V4:PORT` a round, each connection closed with a
/// RST (SO_LINGER 0) once the answer is in, so the client keeps no TIME_WAIT and the next
/// round binds the same port; Kracauer's flow lingers as closing (30 s). The next round
/// starts 0.2 s later, once the daemon has read the RST and taken the old flow off the
/// fast path: a reconnect within microseconds can still meet the old map entry (open,
/// see the session note). Prints each round's status line, or the error.
const CLIENT: &str = r#"
import socket, sys, struct, time
src, port, dst, dport, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
for _ in range(rounds):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(8)
    try:
        s.bind((src, port))
        s.connect((dst, dport))
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(data.split(b"\r\n")[0].decode(errors="replace") or "no answer", flush=True)
    except Exception as e:
        print("error: %s" % e, flush=True)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    time.sleep(0.2)
"#;

fn get_from_port(tb: &Topology) -> Vec<String> {
    let out = tb
        .client
        .command("python3")
        .args(["-c", CLIENT, &CLIENT_V4.to_string(), &PORT.to_string()])
        .args([
            &SERVICE_V4.to_string(),
            &HTTP_PORT.to_string(),
            &ROUNDS.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run the client");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
