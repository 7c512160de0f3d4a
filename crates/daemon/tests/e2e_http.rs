//! End to end (root): a client namespace curls `http://a.example/` at the shared IPv4
//! address; `kracauer run` (the real binary) in a router namespace translates the flow;
//! a backend namespace answers with the peer address it saw, which must be the client's
//! IPv4 embedded in the prefix. Both diversion cases run: 203.0.113.10 is the router's
//! own address (policy rules), 203.0.113.20 is only routed to it (a /32 route).
//!
//! ```text
//! client 198.51.100.2 ── router 198.51.100.1, owns 203.0.113.10 ── 2001:db8:1::1
//!                        kracauer on krc0, prefix 2001:db8:64::/96       │
//!                                                       backend 2001:db8:1::2:80
//! ```

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Netns, privileged, run};

const CONFIG: &str = r#"prefix = "2001:db8:64::/96"

[tun]
name = "krc0"
mtu = 1500

[[listen]]
address = "203.0.113.10"
http = [80]

[[listen]]
address = "203.0.113.20"
http = [80]

[[route]]
hosts = ["a.example"]
backend = "2001:db8:1::2"

[metrics]
listen = "127.0.0.1:9641"
"#;

/// The three namespaces, wired.
struct Topology {
    client: Netns,
    router: Netns,
    backend: Netns,
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    run(Command::new("ip").args([
        "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]));
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

impl Topology {
    /// Namespaces `krc-{tag}c-PID`, `krc-{tag}r-PID`, `krc-{tag}b-PID`.
    fn new(tag: &str) -> Self {
        let t = Topology {
            client: Netns::new(&format!("{tag}c")),
            router: Netns::new(&format!("{tag}r")),
            backend: Netns::new(&format!("{tag}b")),
        };
        veth(&t.client, "c0", &t.router, "r0");
        veth(&t.router, "r1", &t.backend, "b0");
        t.client
            .ip(&["addr", "add", "198.51.100.2/24", "dev", "c0"]);
        t.client
            .ip(&["route", "add", "default", "via", "198.51.100.1"]);
        t.router
            .ip(&["addr", "add", "198.51.100.1/24", "dev", "r0"]);
        t.router
            .ip(&["addr", "add", "203.0.113.10/32", "dev", "r0"]);
        t.router
            .ip(&["addr", "add", "2001:db8:1::1/64", "dev", "r1", "nodad"]);
        t.backend
            .ip(&["addr", "add", "2001:db8:1::2/64", "dev", "b0", "nodad"]);
        t.backend.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:64::/96",
            "via",
            "2001:db8:1::1",
        ]);
        t
    }
}

/// A backend on [2001:db8:1::2]:80 in `ns` that answers every request with the peer
/// address it saw. The listener lives in the namespace; the serving thread need not.
fn start_backend(ns: &Netns) -> SocketAddr {
    let listener = ns.enter(|| TcpListener::bind("[2001:db8:1::2]:80").expect("bind backend"));
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let peer = stream
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = format!("{peer}\n");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// `kracauer run` in the router namespace; stopped with SIGTERM (then SIGKILL) on drop.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
}

impl Daemon {
    fn start(router: &Netns) -> Self {
        let dir = std::env::temp_dir();
        let config = dir.join(format!("{}.toml", router.name));
        let log = dir.join(format!("{}.log", router.name));
        std::fs::write(&config, CONFIG).expect("write config");
        let child = router
            .command(env!("CARGO_BIN_EXE_kracauer"))
            .args(["run", "-v", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn kracauer");
        Daemon {
            child: Some(child),
            log,
            config,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the daemon says it runs; panics with its log otherwise.
    fn wait_running(&mut self) {
        self.wait_log("running on krc0", 1);
    }

    /// Waits (bounded) until the log holds `text` `times` times; panics with the log
    /// otherwise or if the daemon exits.
    fn wait_log(&mut self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.log().matches(text).count() >= times {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("kracauer exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kracauer did not log {text:?}:\n{}", self.log());
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = self
            .child
            .as_ref()
            .and_then(|c| rustix::process::Pid::from_raw(c.id() as i32))
            .expect("running");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Like a crash: SIGKILL, nothing undone.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status (SIGKILL after 10 s).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(child.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// curl in the client namespace: (HTTP status, body).
fn curl(client: &Netns, name: &str, address: &str) -> (String, String) {
    let o = client
        .command("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--resolve",
        ])
        .arg(format!("{name}:80:{address}"))
        .arg(format!("http://{name}/"))
        .output()
        .expect("run curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (status.to_owned(), body.to_owned())
}

/// Scrapes the metrics inside the router until `line` shows (published once a second).
fn metric_appears(router: &Netns, line: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let o = router
            .command("curl")
            .args(["-s", "--max-time", "5", "http://127.0.0.1:9641/metrics"])
            .output()
            .expect("run curl");
        if String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l == line)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn backend_sees_the_client_ipv4_embedded_in_the_prefix() {
    if !privileged("backend_sees_the_client_ipv4_embedded_in_the_prefix") {
        return;
    }
    let t = Topology::new("e");
    start_backend(&t.backend);
    let mut daemon = Daemon::start(&t.router);
    daemon.wait_running();

    let owned = curl(&t.client, "a.example", "203.0.113.10");
    assert_eq!(
        owned,
        ("200".into(), "2001:db8:64::c633:6402\n".into()),
        "via the router's own address; kracauer log:\n{}",
        daemon.log()
    );
    let routed = curl(&t.client, "a.example", "203.0.113.20");
    assert_eq!(
        routed,
        ("200".into(), "2001:db8:64::c633:6402\n".into()),
        "via a routed address; kracauer log:\n{}",
        daemon.log()
    );
    let unknown = curl(&t.client, "b.example", "203.0.113.10");
    assert_eq!(unknown.0, "421", "unknown name; log:\n{}", daemon.log());
    assert!(
        metric_appears(&t.router, "kracauer_flows_spliced_total 2"),
        "metrics; log:\n{}",
        daemon.log()
    );

    let status = daemon.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{}",
        daemon.log()
    );
    let rules = t.router.ip(&["rule", "show"]);
    assert!(rules.starts_with("0:\tfrom all lookup local"), "{rules}");
    assert!(!rules.contains("proto 107"), "{rules}");
    assert!(!t.router.ip(&["link", "show"]).contains("krc0"));
}

const EMBEDDED: &str = "2001:db8:64::c633:6402\n";

#[test]
fn sighup_routes_new_names_and_a_bad_file_changes_nothing() {
    if !privileged("sighup_routes_new_names_and_a_bad_file_changes_nothing") {
        return;
    }
    let t = Topology::new("h");
    start_backend(&t.backend);
    let mut daemon = Daemon::start(&t.router);
    daemon.wait_running();
    assert_eq!(curl(&t.client, "b.example", "203.0.113.10").0, "421");

    let with_b = CONFIG.replace("[\"a.example\"]", "[\"a.example\", \"b.example\"]");
    std::fs::write(&daemon.config, with_b).expect("write config");
    daemon.signal(rustix::process::Signal::HUP);
    daemon.wait_log("new route table in force", 1);
    assert_eq!(
        curl(&t.client, "b.example", "203.0.113.10"),
        ("200".into(), EMBEDDED.into()),
        "after reload; log:\n{}",
        daemon.log()
    );

    let broken = CONFIG.replace("[\"a.example\"]", "[\"a.example\", \"b..example\"]");
    std::fs::write(&daemon.config, broken).expect("write config");
    daemon.signal(rustix::process::Signal::HUP);
    daemon.wait_log("reload refused, nothing changed", 1);
    assert_eq!(
        curl(&t.client, "b.example", "203.0.113.10"),
        ("200".into(), EMBEDDED.into()),
        "after a refused reload; log:\n{}",
        daemon.log()
    );
    assert!(
        daemon.stop().is_some_and(|s| s.success()),
        "{}",
        daemon.log()
    );
}

#[test]
fn start_after_kill_9_removes_the_leftovers_and_works() {
    if !privileged("start_after_kill_9_removes_the_leftovers_and_works") {
        return;
    }
    let t = Topology::new("k");
    start_backend(&t.backend);
    let pristine = t.router.ip(&["rule", "show"]);
    let mut daemon = Daemon::start(&t.router);
    daemon.wait_running();
    daemon.kill_9();
    let left = t.router.ip(&["rule", "show"]);
    assert!(left.contains("proto 107"), "{left}");
    assert!(!left.lines().any(|l| l.starts_with("0:")), "{left}");
    drop(daemon);

    let mut daemon = Daemon::start(&t.router);
    daemon.wait_running();
    assert!(
        daemon
            .log()
            .contains("removed 2 rules and routes left by an earlier run"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        curl(&t.client, "a.example", "203.0.113.10"),
        ("200".into(), EMBEDDED.into()),
        "log:\n{}",
        daemon.log()
    );
    assert!(
        daemon.stop().is_some_and(|s| s.success()),
        "{}",
        daemon.log()
    );
    assert_eq!(t.router.ip(&["rule", "show"]), pristine);
}
