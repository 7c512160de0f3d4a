//! A client that reuses its port while the kernel answers SYNs with cookies (flood mode):
//! the new connection must open a new flow, not ride the old one that still lingers as
//! closing (the engine never saw the new SYN, only the ACK with the cookie). Twice: with
//! the reset and the reconnect 0.2 s apart (the old flow is closing, its fast-path entry
//! gone), and with both while the daemon is stopped (SIGSTOP): the old flow's fast-path
//! entry is still in the kernel's map when the new connection's ACK arrives, and the
//! program must leave it to the TUN path, not translate it with the old offsets.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{CLIENT_V4, HTTP_PORT, SERVICE_V4};
use kracauer_testbed::{Kracauer, Topology, Variant};
use rustix::process::{Pid, Signal, kill_process};

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
    reuse_under_flood("0.2 s after the reset", |_, go| {
        go();
        thread::sleep(Duration::from_millis(200));
    });
}

#[test]
#[ignore = "privileged: needs root, network namespaces, python3 and curl (run with --include-ignored)"]
fn a_port_reused_before_the_daemon_read_the_reset_is_not_translated_by_the_old_fast_path_entry() {
    require_privileged_with_tools(
        "a_port_reused_before_the_daemon_read_the_reset_is_not_translated_by_the_old_fast_path_entry",
    );
    reuse_under_flood(
        "the reset and the reconnect while the daemon is stopped",
        |k, go| {
            let pid = Pid::from_raw(k.pid() as i32).expect("the daemon's pid");
            kill_process(pid, Signal::STOP).expect("stop the daemon");
            go();
            // The kernel answers the new SYN with a cookie (flood mode); the client's ACK and
            // request meet the old flow's entry, its RST still unread in the TUN queue. The
            // pause bounds how long the daemon stays stopped, nothing is timed.
            thread::sleep(Duration::from_millis(500));
            kill_process(pid, Signal::CONT).expect("continue the daemon");
        },
    );
}

/// Five requests from one client port under a SYN flood (flood mode on throughout), each
/// closed with a RST; `between` runs between two, and calls `go` for the client to reset
/// the connection and reconnect at once. Each request is served, and the backends never
/// see a segment of the new connection translated as the old one's.
fn reuse_under_flood(how: &str, mut between: impl FnMut(&Kracauer<'_>, &mut dyn FnMut())) {
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).expect("build the testbed");
    let k = tb
        .start_kracauer(KRACAUER, &tb.config(""))
        .expect("start kracauer");
    const FLOOD_SECS: u64 = 20;
    let flood_on = |k: &Kracauer<'_>| metric(k, "kracauer_syncookie_flood_mode") == 1;
    // With flood mode on throughout, the kernel answers every SYN: each flow the engine
    // makes from a cookie is a handshake the engine never saw.
    let accepted = "kracauer_syn_cookies_accepted_total";
    let off = "kracauer_syncookie_flood_mode_changes_total{to=\"off\"}";
    let (results, valid_delta, on_throughout, rsts) = thread::scope(|s| {
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
        let rsts_before = backend_rsts(&tb);
        let results = get_from_port(&tb, |go| between(&k, go));
        let rsts = backend_rsts(&tb) - rsts_before;
        let settled = Instant::now() + Duration::from_secs(5);
        while metric(&k, accepted) < before + u64::from(ROUNDS) && Instant::now() < settled {
            thread::sleep(Duration::from_millis(250));
        }
        let delta = metric(&k, accepted) - before;
        let on = flood_on(&k) && metric(&k, off) == 0;
        let _ = flooder.join();
        (results, delta, on, rsts)
    });
    figure(&format!(
        "port reuse under kernel SYN cookies, {how}: {results:?}; flows the engine made from cookies meanwhile {valid_delta}; RSTs the backends sent {rsts}"
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
    // A segment of a new connection translated as the old one's (the old flow's offsets,
    // on a backend socket the RST closed) is answered by the backend with a RST; the
    // client's retransmission may still be served once the old entry is gone, so the
    // answers alone do not show it.
    assert_eq!(
        rsts, 0,
        "the backends answered segments of no connection: a new connection's segments were translated as the old one's"
    );
}

/// RSTs both backends have sent (`TcpOutRsts` of their namespaces).
fn backend_rsts(tb: &Topology) -> u64 {
    [&tb.backend_a, &tb.backend_b]
        .iter()
        .map(|ns| {
            ns.net_counter("TcpOutRsts")
                .expect("read a backend's TCP counters")
        })
        .sum()
}

/// The client: one HTTP GET from `CLIENT_V4:PORT` a round, each connection closed with a
/// RST (SO_LINGER 0) once the answer is in, so the client keeps no TIME_WAIT and the next
/// round binds the same port; Kracauer's flow lingers as closing (30 s). It prints each
/// round's status line (or the error), then waits for a line on its standard input before
/// the reset and the next round, which follow at once.
const CLIENT: &str = r#"
import socket, sys, struct
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
    sys.stdin.readline()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
"#;

/// Runs the client's rounds; between two, `between` runs before the client resets the
/// connection and reconnects at once.
fn get_from_port(tb: &Topology, mut between: impl FnMut(&mut dyn FnMut())) -> Vec<String> {
    let mut child = tb
        .client
        .command("python3")
        .args(["-c", CLIENT, &CLIENT_V4.to_string(), &PORT.to_string()])
        .args([
            &SERVICE_V4.to_string(),
            &HTTP_PORT.to_string(),
            &ROUNDS.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the client");
    let mut stdin = child.stdin.take().expect("the client's stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("the client's stdout")).lines();
    let mut results = Vec::new();
    for round in 0..ROUNDS {
        let Some(Ok(line)) = lines.next() else {
            break;
        };
        results.push(line);
        let mut go = || {
            let _ = stdin.write_all(b"go\n");
            let _ = stdin.flush();
        };
        if round + 1 < ROUNDS {
            between(&mut go);
        } else {
            go();
        }
    }
    drop(stdin);
    let _ = child.wait();
    results
}
