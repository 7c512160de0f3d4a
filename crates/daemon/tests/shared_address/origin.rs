//! The two nginx roles of these tests: the HTTPS origin both peers forward to (its own
//! namespace on the backend bridge, HTTP/2 and HTTP/1.1 over TLS, a small answer), and
//! nginx as the peer beside Kracauer on the router (`stream` with `ssl_preread` and a
//! transparent `proxy_bind` to the client's embedded address, as `crates/bench` runs it).

use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::Topology;
use kracauer_testbed::netns::Netns;
use kracauer_testbed::topology::{PREFIX, ROUTER_V6, SERVICE_V4};

/// The origin's address on the backend bridge.
pub const ORIGIN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);

/// Waits until `f` is true, at most `limit` (a bound that turns a stall into a failure).
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: &mut Child) {
    let _ = nix_term(child.id());
    let end = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM to `pid` (nginx's fast shutdown) through `kill(1)`.
fn nix_term(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
}

/// Panics, naming what is missing, unless nginx (with its stream module) and openssl run
/// (`.ci/run` installs them): the tests that use them fail, never skip.
#[track_caller]
pub fn require_nginx_and_openssl() {
    let runs = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut missing: Vec<&str> = [("nginx", "-v"), ("openssl", "version")]
        .into_iter()
        .filter(|(p, a)| !runs(p, a))
        .map(|(p, _)| p)
        .collect();
    if !Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists() {
        missing.push("libnginx-mod-stream");
    }
    assert!(
        missing.is_empty(),
        "this test needs {missing:?} (.ci/run installs them)"
    );
}

/// The nginx HTTPS origin; stopped and its namespace deleted on drop.
pub struct Origin<'tb> {
    tb: &'tb Topology,
    ns: Netns,
    nginx: Option<Child>,
}

impl<'tb> Origin<'tb> {
    /// Starts the origin beside `tb`'s backends and waits until it accepts on 443.
    pub fn start(tb: &'tb Topology) -> Self {
        let ns = Netns::create(&format!("{}-o", tb.tag())).expect("create the origin namespace");
        let dir = tb.dir().join("origin");
        std::fs::create_dir_all(&dir).expect("origin directory");
        let mut origin = Origin {
            tb,
            ns,
            nginx: None,
        };
        origin
            .wire()
            .expect("link the origin to the backend bridge");
        certificate(&dir);
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, origin_config(&dir)).expect("write nginx.conf");
        let child = origin
            .ns
            .command("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        origin.nginx = Some(child);
        wait_for("the origin to listen", Duration::from_secs(20), || {
            tb.router
                .run(|| TcpStream::connect(SocketAddr::new(ORIGIN.into(), 443)).is_ok())
                .unwrap_or(false)
        });
        origin
    }

    fn wire(&self) -> Result<(), kracauer_testbed::Error> {
        let r = &self.tb.router;
        r.ip([
            "link",
            "add",
            "to-o",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.ns.name(),
        ])?;
        r.ip(["link", "set", "to-o", "master", "br0", "up"])?;
        self.ns.ip([
            "addr",
            "add",
            &format!("{ORIGIN}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        self.ns.ip(["link", "set", "eth0", "up"])?;
        self.ns.ip(["link", "set", "lo", "up"])?;
        let via = ROUTER_V6.to_string();
        self.ns.ip(["-6", "route", "add", PREFIX, "via", &via])?;
        Ok(())
    }

    /// Kracauer's configuration: every name without a route (`n.example`) to the origin.
    pub fn kracauer_config(tb: &Topology, extra: &str) -> String {
        tb.config_with(&format!("default_backend = \"{ORIGIN}\""), extra)
    }
}

impl Drop for Origin<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.nginx.take() {
            stop(&mut child);
        }
        if let Err(e) = self.ns.delete() {
            eprintln!("origin: cannot delete namespace {}: {e}", self.ns.name());
        }
    }
}

/// A self-signed P-256 certificate for n.example (cheap handshakes: the origin's CPU is
/// not what is measured).
fn certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=n.example",
            "-addext",
            "subjectAltName=DNS:n.example",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req failed");
}

fn origin_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         worker_rlimit_nofile 20000;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   keepalive_requests 100000;\n\
         \x20   http2_max_requests 100000;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   server {{\n\
         \x20       listen [::]:443 ssl http2 backlog=4096 default_server;\n\
         \x20       server_name _;\n\
         \x20       ssl_certificate {d}/cert.pem;\n\
         \x20       ssl_certificate_key {d}/key.pem;\n\
         \x20       location / {{ return 200 \"ok\\n\"; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// nginx as the peer on the router, in Kracauer's place; stopped and its addresses and
/// routes removed on drop.
pub struct StreamPeer<'tb> {
    tb: &'tb Topology,
    nginx: Option<Child>,
}

impl<'tb> StreamPeer<'tb> {
    /// Starts nginx on the router (Kracauer must not be running) and waits until the
    /// service address accepts from the client.
    pub fn start(tb: &'tb Topology) -> Self {
        let r = &tb.router;
        r.ip(["addr", "add", &format!("{SERVICE_V4}/32"), "dev", "lo"])
            .expect("service address on the router's lo");
        r.ip(["-6", "route", "add", "local", PREFIX, "dev", "lo"])
            .expect("the prefix local on the router");
        let dir: PathBuf = tb.dir().join("peer");
        std::fs::create_dir_all(&dir).expect("peer directory");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, peer_config(&dir)).expect("write nginx.conf");
        let child = r
            .command("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let peer = StreamPeer {
            tb,
            nginx: Some(child),
        };
        wait_for(
            "nginx on the service address",
            Duration::from_secs(20),
            || {
                tb.client
                    .run(|| TcpStream::connect(SocketAddr::new(SERVICE_V4.into(), 443)).is_ok())
                    .unwrap_or(false)
            },
        );
        peer
    }
}

impl Drop for StreamPeer<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.nginx.take() {
            stop(&mut child);
        }
        let r = &self.tb.router;
        let _ = r.ip(["-6", "route", "del", "local", PREFIX, "dev", "lo"]);
        let _ = r.ip(["addr", "del", &format!("{SERVICE_V4}/32"), "dev", "lo"]);
    }
}

/// The bench's nginx peer (`crates/bench/src/peers.rs`), every name to the origin.
fn peer_config(dir: &Path) -> String {
    let prefix = PREFIX.trim_end_matches("/96");
    let d = dir.display();
    format!(
        "user root;\n\
         worker_processes 2;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         worker_rlimit_nofile 20000;\n\
         load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         events {{ worker_connections 16384; }}\n\
         stream {{\n\
         \x20   server {{\n\
         \x20       listen {SERVICE_V4}:443 backlog=4096 reuseport;\n\
         \x20       ssl_preread on;\n\
         \x20       proxy_half_close on;\n\
         \x20       proxy_pass [{ORIGIN}]:443;\n\
         \x20       proxy_bind {prefix}$remote_addr transparent;\n\
         \x20   }}\n\
         }}\n"
    )
}
