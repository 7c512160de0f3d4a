//! An OpenSSL server behind Kracauer (issue 19): nginx in a namespace of its own on the
//! backend bridge, at 2001:db8:1::9, serving HTTP on 80 and TLS on 443. The router
//! reaches it directly; clients reach it through Kracauer as the default backend. A probe
//! sends bytes, closes its sending side and reads the answer to its end, so the same
//! probe can be compared on both paths.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kracauer_testbed::Topology;
use kracauer_testbed::netns::Netns;
use kracauer_testbed::topology::{PREFIX, ROUTER_V6};

use super::eventually;

/// nginx's address on the backend bridge.
pub const ORIGIN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);

/// Longest a probe may wait for its answer: a bound that turns a stall into a failure,
/// not a timed assertion.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// nginx in its own namespace; stopped and the namespace deleted on drop.
pub struct Origin<'tb> {
    tb: &'tb Topology,
    ns: Netns,
    nginx: Option<Child>,
    dir: PathBuf,
}

impl<'tb> Origin<'tb> {
    /// Panics, naming what is missing, unless nginx and openssl run (`.ci/run` installs
    /// them): the tests that use the origin fail, never skip.
    #[track_caller]
    pub fn require_tools() {
        let runs = |program: &str, arg: &str| {
            Command::new(program)
                .arg(arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let missing: Vec<&str> = [("nginx", "-v"), ("openssl", "version")]
            .into_iter()
            .filter(|(p, a)| !runs(p, a))
            .map(|(p, _)| p)
            .collect();
        assert!(
            missing.is_empty(),
            "this test needs {missing:?} on the PATH (.ci/run installs them)"
        );
    }

    /// Starts nginx beside `tb`'s backends and waits until it answers on port 80.
    pub fn start(tb: &'tb Topology) -> Self {
        let ns = Netns::create(&format!("{}-n", tb.tag())).expect("create the origin namespace");
        let dir = tb.dir().join("origin");
        let mut origin = Origin {
            tb,
            ns,
            nginx: None,
            dir,
        };
        origin
            .wire()
            .expect("link the origin to the backend bridge");
        std::fs::create_dir_all(&origin.dir).expect("origin directory");
        origin.certificate();
        let conf = origin.dir.join("nginx.conf");
        std::fs::write(&conf, nginx_config(&origin.dir)).expect("write nginx.conf");
        let child = origin
            .ns
            .command("nginx")
            .arg("-p")
            .arg(&origin.dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx (installed by .ci/run)");
        origin.nginx = Some(child);
        eventually("nginx to listen", Duration::from_secs(20), || {
            tb.router
                .run(|| TcpStream::connect(SocketAddr::new(ORIGIN.into(), 80)).ok())
                .ok()
                .flatten()
        });
        origin
    }

    fn wire(&self) -> Result<(), kracauer_testbed::Error> {
        let r = &self.tb.router;
        r.ip([
            "link",
            "add",
            "to-n",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.ns.name(),
        ])?;
        r.ip(["link", "set", "to-n", "master", "br0", "up"])?;
        let addr = format!("{ORIGIN}/64");
        self.ns.ip(["addr", "add", &addr, "dev", "eth0", "nodad"])?;
        self.ns.ip(["link", "set", "eth0", "up"])?;
        let via = ROUTER_V6.to_string();
        self.ns.ip(["-6", "route", "add", PREFIX, "via", &via])?;
        Ok(())
    }

    /// A self-signed RSA certificate for n.example, made by `openssl`.
    fn certificate(&self) {
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=n.example",
                "-addext",
                "subjectAltName=DNS:n.example",
            ])
            .arg("-keyout")
            .arg(self.dir.join("key.pem"))
            .arg("-out")
            .arg(self.dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl req failed");
    }

    /// The configuration with `default_backend` set to the origin.
    pub fn default_backend() -> String {
        format!("default_backend = \"{ORIGIN}\"")
    }

    /// Sends `bytes` to the origin directly (from the router) and reads its answer.
    pub fn direct(&self, port: u16, bytes: &[u8]) -> Answer {
        let addr = SocketAddr::new(ORIGIN.into(), port);
        self.tb
            .router
            .run(|| probe(addr, bytes))
            .expect("enter the router")
    }

    /// Sends `bytes` to the service address from the client, through Kracauer.
    pub fn through(&self, port: u16, bytes: &[u8]) -> Answer {
        let addr = Topology::service(port);
        self.tb
            .client
            .run(|| probe(addr, bytes))
            .expect("enter the client")
    }
}

impl Drop for Origin<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.nginx.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.ns.delete() {
            eprintln!("origin: cannot delete namespace {}: {e}", self.ns.name());
        }
    }
}

fn nginx_config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   server {{\n\
         \x20       listen [::]:80 default_server;\n\
         \x20       listen [::]:443 ssl default_server;\n\
         \x20       server_name _;\n\
         \x20       ssl_certificate {d}/cert.pem;\n\
         \x20       ssl_certificate_key {d}/key.pem;\n\
         \x20       location / {{ return 200 \"origin $request_uri\\n\"; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// What a client saw in answer to a probe, as far as the comparison goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A TLS handshake record starting with a ServerHello.
    ServerHello,
    /// A TLS alert record, by description.
    Alert(u8),
    /// HTTP responses, by status code, in order.
    Http(Vec<u16>),
    /// The connection ended (FIN or RST) without a byte.
    Nothing,
    /// Anything else: its first bytes.
    Other(Vec<u8>),
}

impl Answer {
    fn classify(out: &[u8]) -> Self {
        match out {
            [] => Answer::Nothing,
            [0x16, _, _, _, _, 2, ..] => Answer::ServerHello,
            [0x15, _, _, _, _, _, desc, ..] => Answer::Alert(*desc),
            _ if out.starts_with(b"HTTP/1.") => Answer::Http(statuses(out)),
            _ => Answer::Other(out[..out.len().min(16)].to_vec()),
        }
    }
}

/// The status code of every HTTP response in `out` (responses start at a line start;
/// nginx's bodies here end in a bare LF).
fn statuses(out: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(out);
    text.split('\n')
        .filter_map(|line| {
            let rest = line.strip_prefix("HTTP/1.")?;
            rest.get(2..5)?.parse().ok()
        })
        .collect()
}

/// Connects to `addr`, sends `bytes`, closes the sending side and reads to the end.
fn probe(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, ANSWER_LIMIT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(ANSWER_LIMIT))
        .expect("read timeout");
    s.set_write_timeout(Some(ANSWER_LIMIT))
        .expect("write timeout");
    // The server may answer and close before taking everything: that is its answer.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "{addr}: no end of the answer within {ANSWER_LIMIT:?} (a stall), after {out:?}"
                )
            }
            Err(e) => panic!("{addr}: read: {e}"),
        }
    }
    Answer::classify(&out)
}
