//! The testbed's shape: client, router and two backends in their own namespaces, the
//! backends' servers, and the clean-up that deletes all of it by name.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustls::ClientConfig;

use crate::client::{self, Reply};
use crate::kracauer::Kracauer;
use crate::netns::{self, Netns};
use crate::pki::Pki;
use crate::quic::{H3Backend, H3Error, H3Reply};
use crate::server::{ContactLog, Mode, Server};
use crate::{Error, is_root};

/// The client's only address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The router's address on the client link (the client's default gateway).
pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The public service address.
pub const SERVICE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The router's address on the backend link.
pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// Backend a: `a.example` and `*.a.example`.
pub const BACKEND_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Backend b: `b.example` and `*.b.example`.
pub const BACKEND_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);
/// A third backend address, for tests that add one to backend b's namespace
/// ([`Topology::add_backend_address`]).
pub const BACKEND_C: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 4);
/// The translation prefix.
pub const PREFIX: &str = "2001:db8:64::/96";
/// The client's address as the backends see it (`PREFIX` + `CLIENT_V4`).
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
/// The TUN device kracauer makes in the router namespace.
pub const TUN: &str = "kracauer0";
/// Where kracauer serves metrics, inside the router namespace.
pub const METRICS: &str = "127.0.0.1:9641";
/// The "SSH" port on the shared address: a TCP echo owned by the router's host.
pub const SSH_PORT: u16 = 22;
/// Ports each backend serves: HTTP, HTTPS, and HTTPS on a remapped port.
pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;
pub const HTTPS_ALT_PORT: u16 = 8443;

/// Names each backend holds a certificate for.
pub const NAMES_A: [&str; 2] = ["a.example", "*.a.example"];
pub const NAMES_B: [&str; 2] = ["b.example", "*.b.example"];

/// How the service address reaches the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 203.0.113.10 is not the router's: the client's route sends it to the router, and
    /// kracauer routes it into its TUN with a /32.
    Routed,
    /// 203.0.113.10 is the router's own address, with a TCP echo on port 22 that must keep
    /// answering while kracauer takes ports 80 and 443.
    Shared,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Deletes, on drop, every namespace it recorded and the testbed directory. Namespaces are
/// recorded as they are made, so a build that fails half way still cleans up.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) made: Vec<Netns>,
    pub(crate) dir: PathBuf,
}

impl Guard {
    pub(crate) fn make(&mut self, tag: &str, role: &str) -> Result<Netns, Error> {
        let ns = Netns::create(&format!("{tag}-{role}"))?;
        self.made.push(ns.clone());
        Ok(ns)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = ns.delete() {
                eprintln!("testbed: cannot delete namespace {}: {e}", ns.name());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A built testbed. Dropping it stops its servers and deletes its namespaces and its
/// directory; a [`Kracauer`] borrows it, so the daemon is always killed first.
#[derive(Debug)]
pub struct Topology {
    tag: String,
    variant: Variant,
    /// The IPv4-only client.
    pub client: Netns,
    /// Where kracauer runs.
    pub router: Netns,
    /// Backend a (2001:db8:1::2).
    pub backend_a: Netns,
    /// Backend b (2001:db8:1::3).
    pub backend_b: Netns,
    client_tls: Arc<ClientConfig>,
    /// The certificates of backends a and b (for the HTTP/3 backends).
    backend_tls: Vec<Arc<rustls::ServerConfig>>,
    /// Their certificates (DER).
    backend_certs: Vec<Vec<u8>>,
    /// Connections backend a accepted.
    pub contacts_a: ContactLog,
    /// Connections backend b accepted.
    pub contacts_b: ContactLog,
    /// Connections the router's own echo on port 22 accepted (shared variant).
    pub contacts_router: ContactLog,
    // Declared before `guard`: servers stop before the namespaces go.
    servers: Vec<Server>,
    starts: AtomicU32,
    guard: Guard,
}

impl Topology {
    /// Builds the namespaces, links, addresses and routes, and starts the servers.
    pub fn build(variant: Variant) -> Result<Self, Error> {
        if !is_root() {
            return Err(Error::NotRoot);
        }
        sweep_stale();
        let tag = format!(
            "{TAG_PREFIX}{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::SeqCst)
        );
        let mut guard = Guard {
            made: Vec::new(),
            dir: std::env::temp_dir().join(&tag),
        };
        std::fs::create_dir_all(&guard.dir)?;
        let [client, router, backend_a, backend_b] = ROLES.map(|role| guard.make(&tag, role));
        let (client, router, backend_a, backend_b) = (client?, router?, backend_a?, backend_b?);
        let pki = Pki::new()?;
        std::fs::write(guard.dir.join("ca.pem"), pki.ca_pem())?;
        let mut tb = Topology {
            tag,
            variant,
            client,
            router,
            backend_a,
            backend_b,
            client_tls: pki.client_config()?,
            backend_tls: Vec::new(),
            backend_certs: Vec::new(),
            contacts_a: ContactLog::default(),
            contacts_b: ContactLog::default(),
            contacts_router: ContactLog::default(),
            servers: Vec::new(),
            starts: AtomicU32::new(0),
            guard,
        };
        tb.wire()?;
        tb.start_servers(&pki)?;
        Ok(tb)
    }

    /// Links, addresses, routes and sysctls.
    fn wire(&self) -> Result<(), Error> {
        let (c, r) = (&self.client, &self.router);
        // No duplicate address detection on the IPv6 links: while a link-local address
        // is tentative (a second after its link comes up) the kernel sends no neighbour
        // solicitation, so the first packet to a backend would wait a second.
        for ns in [r, &self.backend_a, &self.backend_b] {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        // Client link.
        r.ip([
            "link",
            "add",
            "to-client",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            c.name(),
        ])?;
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        c.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        c.ip(["addr", "add", &format!("{CLIENT_V4}/24"), "dev", "eth0"])?;
        c.ip(["link", "set", "eth0", "up"])?;
        c.ip(["route", "add", "default", "via", &ROUTER_V4.to_string()])?;
        r.ip([
            "addr",
            "add",
            &format!("{ROUTER_V4}/24"),
            "dev",
            "to-client",
        ])?;
        r.ip(["link", "set", "to-client", "up"])?;
        if self.variant == Variant::Shared {
            r.ip([
                "addr",
                "add",
                &format!("{SERVICE_V4}/32"),
                "dev",
                "to-client",
            ])?;
        }
        // Backend link: a bridge in the router with one veth per backend.
        r.ip([
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        r.ip([
            "addr",
            "add",
            &format!("{ROUTER_V6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        r.ip(["link", "set", "br0", "up"])?;
        for (port, ns, addr) in [
            ("to-a", &self.backend_a, BACKEND_A),
            ("to-b", &self.backend_b, BACKEND_B),
        ] {
            r.ip([
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])?;
            r.ip(["link", "set", port, "master", "br0", "up"])?;
            ns.ip(["addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"])?;
            ns.ip(["link", "set", "eth0", "up"])?;
            ns.ip(["-6", "route", "add", PREFIX, "via", &ROUTER_V6.to_string()])?;
        }
        r.sysctl("net.ipv4.ip_forward", "1")?;
        r.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        Ok(())
    }

    fn start_servers(&mut self, pki: &Pki) -> Result<(), Error> {
        for (ns, names, log) in [
            (&self.backend_a, NAMES_A, &self.contacts_a),
            (&self.backend_b, NAMES_B, &self.contacts_b),
        ] {
            let (tls, cert) = pki.server_config_and_cert(&names)?;
            self.backend_tls.push(Arc::clone(&tls));
            self.backend_certs.push(cert);
            let any = |port| SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
            for (port, mode) in [
                (HTTP_PORT, Mode::Http),
                (HTTPS_PORT, Mode::Https(Arc::clone(&tls))),
                (HTTPS_ALT_PORT, Mode::Https(Arc::clone(&tls))),
            ] {
                self.servers
                    .push(Server::start(ns, any(port), mode, log.clone())?);
            }
        }
        if self.variant == Variant::Shared {
            let ssh = SocketAddr::V4(SocketAddrV4::new(SERVICE_V4, SSH_PORT));
            self.servers.push(Server::start(
                &self.router,
                ssh,
                Mode::Echo,
                self.contacts_router.clone(),
            )?);
        }
        Ok(())
    }

    /// The short unique tag in every name this testbed made (`krc-tbPID-N`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Which variant this is.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Counts daemon starts in this testbed (names their log files).
    pub(crate) fn next_start(&self) -> u32 {
        self.starts.fetch_add(1, Ordering::SeqCst)
    }

    /// The testbed's own directory (CA certificate, configurations, logs).
    pub fn dir(&self) -> &Path {
        &self.guard.dir
    }

    /// The CA certificate file, for `curl --cacert`.
    pub fn ca_file(&self) -> PathBuf {
        self.guard.dir.join("ca.pem")
    }

    /// The service address and `port`, as the client dials it.
    pub fn service(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(SERVICE_V4, port))
    }

    /// A configuration for kracauer in this testbed: prefix, TUN, the service address
    /// with TLS on 443 and HTTP on 80, `a.example`/`*.a.example` to backend a and
    /// `b.example` to backend b, metrics on 127.0.0.1:9641 in the router namespace.
    /// `extra` is appended as is (more `[[route]]` tables).
    pub fn config(&self, extra: &str) -> String {
        self.config_with("", extra)
    }

    /// [`Topology::config`] with `top` (top-level keys such as `default_backend = ...`)
    /// written right after the prefix, before the first table.
    pub fn config_with(&self, top: &str, extra: &str) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "prefix = \"{PREFIX}\"\n{top}\n");
        let _ = writeln!(c, "[tun]\nname = \"{TUN}\"\nmtu = 1500\n");
        let _ = writeln!(
            c,
            "[[listen]]\naddress = \"{SERVICE_V4}\"\ntls = [{HTTPS_PORT}]\nhttp = [{HTTP_PORT}]\n"
        );
        let _ = writeln!(
            c,
            "[[route]]\nhosts = [\"a.example\", \"*.a.example\"]\nbackend = \"{BACKEND_A}\"\n"
        );
        let _ = writeln!(
            c,
            "[[route]]\nhosts = [\"b.example\"]\nbackend = \"{BACKEND_B}\"\n"
        );
        c.push_str(extra);
        let _ = writeln!(c, "\n[metrics]\nlisten = \"{METRICS}\"");
        c
    }

    /// Starts `BINARY run` with `config` in the router namespace, `binary` being the
    /// `kracauer` executable, and waits until it is ready (see [`Kracauer::start`]).
    pub fn start_kracauer(
        &self,
        binary: impl AsRef<Path>,
        config: &str,
    ) -> Result<Kracauer<'_>, Error> {
        Kracauer::start(self, binary.as_ref(), config)
    }

    /// Whether kracauer has set the router up: its TUN device carries the prefix route
    /// and an IPv4 route (the service address's /32, or the policy table's default).
    pub fn kracauer_ready(&self) -> bool {
        let r = &self.router;
        let v6 = r.ip(["-6", "route", "show", "table", "all", "dev", TUN]);
        let v4 = r.ip(["-4", "route", "show", "table", "all", "dev", TUN]);
        let prefix = PREFIX.trim_end_matches("/96");
        matches!((v6, v4), (Ok(v6), Ok(v4)) if v6.contains(prefix) && !v4.trim().is_empty())
    }

    /// `GET path` with `Host: host` on port 80, from the client.
    pub fn http_get(&self, host: &str, path: &str) -> Result<Reply, Error> {
        let host = host.to_owned();
        let path = path.to_owned();
        self.client
            .run(move || client::http_get(Self::service(HTTP_PORT), &host, &path))?
    }

    /// `GET path` over TLS with server name `sni` on port 443, from the client, trusting
    /// the testbed's CA.
    pub fn https_get(&self, sni: &str, path: &str) -> Result<Reply, Error> {
        let config = Arc::clone(&self.client_tls);
        self.client
            .run(|| client::https_get(&config, Self::service(HTTPS_PORT), sni, path))?
    }

    /// Uploads `n` bytes to `host` over HTTP; the backend checks them.
    pub fn upload(&self, host: &str, n: u64) -> Result<Reply, Error> {
        self.client
            .run(|| client::upload(Self::service(HTTP_PORT), host, n))?
    }

    /// Downloads and checks `n` bytes from `host` over HTTP.
    pub fn download(&self, host: &str, n: u64) -> Result<u64, Error> {
        self.client
            .run(|| client::download(Self::service(HTTP_PORT), host, n))?
    }

    /// Starts an HTTP/3 backend on UDP 443 in backends a and b (their certificates,
    /// ALPN `h3`; see [`crate::quic`]). They stop when dropped.
    pub fn start_h3(&self) -> Result<[H3Backend; 2], Error> {
        let any = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, HTTPS_PORT, 0, 0));
        let tls = |i: usize| {
            self.backend_tls
                .get(i)
                .cloned()
                .ok_or_else(|| Error::Setup("no backend certificate".into()))
        };
        Ok([
            H3Backend::start(&self.backend_a, any, &*tls(0)?)?,
            H3Backend::start(&self.backend_b, any, &*tls(1)?)?,
        ])
    }

    /// The certificate (DER) backend a (0) or b (1) serves.
    pub fn backend_cert(&self, i: usize) -> Option<&[u8]> {
        self.backend_certs.get(i).map(Vec::as_slice)
    }

    /// [`Topology::config`] with QUIC on UDP 443 of the service address too.
    pub fn quic_config(&self, extra: &str) -> String {
        self.config(extra)
            .replacen("http = [80]\n", "http = [80]\nquic = [443]\n", 1)
    }

    /// An HTTP/3 `GET path` with server name `sni` to UDP 443 of the service address,
    /// from the client (its UDP port `port`, 0 for any).
    pub fn h3_get(
        &self,
        sni: &str,
        path: &str,
        port: u16,
    ) -> Result<Result<H3Reply, H3Error>, Error> {
        let req = crate::quic::Request {
            sni: sni.to_owned(),
            path: path.to_owned(),
            port,
        };
        crate::quic::get(
            &self.client,
            &self.client_tls,
            Self::service(HTTPS_PORT),
            req,
            |_| {},
        )
    }

    /// The client-side TLS configuration (trusts the testbed's CA only).
    pub fn client_tls(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client_tls)
    }

    /// Runs `curl` in the client namespace for `url`, resolving its host name to the
    /// service address and trusting the testbed's CA. Returns curl's standard output;
    /// a failing curl is an error carrying its standard error.
    pub fn curl(&self, url: &str) -> Result<String, Error> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::Setup(format!("{url:?} is not a URL")))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.to_owned()),
            None if scheme == "https" => (authority, HTTPS_PORT.to_string()),
            None => (authority, HTTP_PORT.to_string()),
        };
        let out = self
            .client
            .command("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(self.ca_file())
            .arg("--resolve")
            .arg(format!("{host}:{port}:{SERVICE_V4}"))
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::spawn("curl", e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command {
                command: format!("curl {url}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Drops `percent`% of the client's packets at random, each way, with nftables in the
    /// client namespace (`numgen random mod 100 < percent drop`).
    pub fn inject_loss(&self, percent: u32) -> Result<(), Error> {
        let rules = format!(
            "table inet krc_loss {{\n\
             chain input {{ type filter hook input priority 0; numgen random mod 100 < {percent} counter drop; }}\n\
             chain output {{ type filter hook output priority 0; numgen random mod 100 < {percent} counter drop; }}\n\
             }}\n"
        );
        let file = self.guard.dir.join("loss.nft");
        std::fs::write(&file, rules)?;
        let out = self
            .client
            .command("nft")
            .arg("-f")
            .arg(&file)
            .output()
            .map_err(|e| Error::spawn("nft", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                command: "nft -f loss.nft".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// How many packets the loss rules of [`Topology::inject_loss`] dropped so far (both
    /// ways), from their nftables counters.
    pub fn loss_dropped(&self) -> Result<u64, Error> {
        let out = self
            .client
            .command("nft")
            .args(["list", "table", "inet", "krc_loss"])
            .output()
            .map_err(|e| Error::spawn("nft", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split("packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }
}

/// The start of every name a testbed makes: `krc-tbPID-N-ROLE`.
const TAG_PREFIX: &str = "krc-tb";
/// The roles of a testbed's namespaces (the last part of their names).
const ROLES: [&str; 4] = ["client", "router", "a", "b"];

/// Deletes namespaces named exactly like a testbed's (`krc-tbPID-N-ROLE`) whose process
/// is gone: a test run killed before its clean-up ran. Namespaces of live processes, and
/// any name of another shape, are never touched.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_owner(&name) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && netns::exists(&name) {
            let _ = netns::ip(["netns", "del", &name]);
        }
    }
}

/// The pid in a testbed namespace name, if `name` has exactly that shape.
fn stale_owner(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(TAG_PREFIX)?.splitn(3, '-');
    let pid = parts.next()?;
    let n = parts.next()?;
    let role = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) || !ROLES.contains(&role) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testbed_namespace_name_yields_its_owner_pid() {
        assert_eq!(stale_owner("krc-tb4242-7-router"), Some(4242));
    }

    #[test]
    fn names_of_other_shapes_are_never_swept() {
        for name in [
            "krc-be-22737",
            "krc-tb12-3-backend",
            "krc-tbx-1-a",
            "krc-tb12--a",
            "krc-tb12-1",
            "other",
        ] {
            assert_eq!(stale_owner(name), None, "{name}");
        }
    }
}
