//! The scale-out testbed (docs/scale-out.md): an IPv4 client, an upstream router running
//! BIRD with ECMP over two Kracauer hosts, each with its own BIRD and its own /96, and
//! two IPv6 backends behind the upstream router.
//!
//! ```text
//! client 198.51.100.2 ── .1 upstream ─┬─ .65/30 ── .66 k1 (kracauer instance 1, BIRD, 2001:db8:64::1:0:0/96)
//!   (IPv4 only)        (BIRD, ECMP)   ├─ .69/30 ── .70 k2 (kracauer instance 2, BIRD, 2001:db8:64::2:0:0/96)
//!                                     └─ br0 2001:db8:1::1 ─┬─ ::2 backend a
//!                                                           └─ ::3 backend b
//! ```
//!
//! The BIRD configurations are the guide's own files (`docs/scale-out/`), the second
//! instance's made from the first's by changing its addresses, prefix and route tag. The
//! upstream router hashes on the L4 4-tuple (`fib_multipath_hash_policy = 1`). Dropping
//! the testbed stops every daemon and deletes its namespaces.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::bird::Bird;
use crate::kracauer::{BpffsHolder, Kracauer};
use crate::netns::Netns;
use crate::server::{ContactLog, Mode, Server};
use crate::topology::{BACKEND_A, BACKEND_B, CLIENT_V4, Guard, HTTP_PORT, ROUTER_V4, SERVICE_V4};
use crate::{Error, is_root};

/// The guide's BIRD configuration of instance 1's host.
pub const BIRD_INSTANCE: &str = include_str!("../../../docs/scale-out/bird-instance.conf");
/// The guide's BIRD configuration of the upstream router.
pub const BIRD_UPSTREAM: &str = include_str!("../../../docs/scale-out/bird-upstream.conf");
/// The backends' router (the upstream router's bridge address).
pub const UPSTREAM_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Instance `i`'s host: its address on the upstream link, the upstream router's, and
/// the same for IPv6.
fn link(i: u8) -> (Ipv4Addr, Ipv4Addr, Ipv6Addr, Ipv6Addr) {
    let base = 64 + 4 * (i - 1);
    let v6 = |h| Ipv6Addr::new(0x2001, 0xdb8, 0xff, u16::from(i), 0, 0, 0, h);
    (
        Ipv4Addr::new(203, 0, 113, base + 2),
        Ipv4Addr::new(203, 0, 113, base + 1),
        v6(2),
        v6(1),
    )
}

/// Instance `i`'s translation prefix, `2001:db8:64::I:0:0/96`.
pub fn prefix(i: u8) -> String {
    format!("2001:db8:64::{i}:0:0/96")
}

/// Whether `peer` (as a backend saw it) is inside instance `i`'s prefix.
pub fn from_instance(peer: SocketAddr, i: u8) -> bool {
    matches!(peer.ip(), std::net::IpAddr::V6(a) if a.segments()[..6] == [0x2001, 0xdb8, 0x64, 0, 0, u16::from(i)])
}

/// The built scale-out testbed.
#[derive(Debug)]
pub struct ScaleOut {
    pub client: Netns,
    pub upstream: Netns,
    /// The Kracauer hosts, instance 1 and instance 2.
    pub hosts: [Netns; 2],
    pub backend_a: Netns,
    pub backend_b: Netns,
    /// Connections each backend accepted, with the peer address it saw.
    pub contacts_a: ContactLog,
    pub contacts_b: ContactLog,
    /// BIRD on the upstream router.
    pub bird_upstream: Bird,
    /// BIRD on each Kracauer host (instance 1, instance 2).
    pub birds: [Bird; 2],
    servers: Vec<Server>,
    starts: AtomicU32,
    guard: Guard,
}

impl ScaleOut {
    /// Builds the namespaces, links and routes, starts the backends and the three BIRDs.
    pub fn build() -> Result<Self, Error> {
        if !is_root() {
            return Err(Error::NotRoot);
        }
        let tag = format!(
            "krc-so{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::SeqCst)
        );
        let mut guard = Guard {
            made: Vec::new(),
            dir: std::env::temp_dir().join(&tag),
        };
        std::fs::create_dir_all(&guard.dir)?;
        let client = guard.make(&tag, "client")?;
        let upstream = guard.make(&tag, "up")?;
        let k1 = guard.make(&tag, "k1")?;
        let k2 = guard.make(&tag, "k2")?;
        let backend_a = guard.make(&tag, "a")?;
        let backend_b = guard.make(&tag, "b")?;
        let hosts = [k1, k2];
        wire(&client, &upstream, &hosts, [&backend_a, &backend_b])?;
        let (contacts_a, contacts_b) = (ContactLog::default(), ContactLog::default());
        let mut servers = Vec::new();
        for (ns, log) in [(&backend_a, &contacts_a), (&backend_b, &contacts_b)] {
            let any = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, HTTP_PORT, 0, 0));
            servers.push(Server::start(ns, any, Mode::Http, log.clone())?);
        }
        let dir = guard.dir.clone();
        let bird_upstream = Bird::start(&upstream, &dir, "upstream", BIRD_UPSTREAM)?;
        let birds = [
            Bird::start(&hosts[0], &dir, "k1", &instance_bird(1)?)?,
            Bird::start(&hosts[1], &dir, "k2", &instance_bird(2)?)?,
        ];
        Ok(Self {
            client,
            upstream,
            hosts,
            backend_a,
            backend_b,
            contacts_a,
            contacts_b,
            bird_upstream,
            birds,
            servers,
            starts: AtomicU32::new(0),
            guard,
        })
    }

    /// The testbed's directory (configurations, logs, BIRD sockets).
    pub fn dir(&self) -> &Path {
        &self.guard.dir
    }

    /// Kracauer's configuration for instance `i` (1 or 2): its number, its prefix, two
    /// workers, the kernel fast path as by default (`auto`) and the default
    /// `restart_grace`, the service address routed to it (HTTP on port 80), a.example to
    /// backend a and b.example to backend b, metrics on 127.0.0.1:9641 in its namespace.
    pub fn config(i: u8) -> String {
        Self::config_with_tun(i, "")
    }

    /// [`config`](Self::config) with more `[tun]` lines (e.g. `restart_grace = "60s"`).
    pub fn config_with_tun(i: u8, tun: &str) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "instance = {i}\nprefix = \"{}\"\n", prefix(i));
        let _ = writeln!(c, "[tun]\nworkers = 2\n{tun}\n");
        let _ = writeln!(
            c,
            "[[listen]]\naddress = \"{SERVICE_V4}\"\nhttp = [{HTTP_PORT}]\n"
        );
        let _ = writeln!(
            c,
            "[[route]]\nhosts = [\"a.example\"]\nbackend = \"{BACKEND_A}\"\n"
        );
        let _ = writeln!(
            c,
            "[[route]]\nhosts = [\"b.example\"]\nbackend = \"{BACKEND_B}\"\n"
        );
        let _ = writeln!(c, "[metrics]\nlisten = \"{}\"", crate::topology::METRICS);
        c
    }

    /// [`config`](Self::config) with second chance between the two instances: the
    /// guide's `[scale_out]`, each host's address on its upstream link, both instances
    /// as peers (an instance skips its own address).
    pub fn config_with_second_chance(i: u8) -> String {
        format!(
            "{}\n[scale_out]\naddress = \"{}\"\npeers = [\"{}\", \"{}\"]\n",
            Self::config(i),
            link(i).0,
            link(1).0,
            link(2).0
        )
    }

    /// Starts `binary run` for instance `i` (1 or 2) on its host and waits until it is
    /// set up.
    pub fn start_kracauer(&self, i: u8, binary: &Path) -> Result<Kracauer<'_>, Error> {
        self.start_kracauer_with(i, binary, &Self::config(i))
    }

    /// [`start_kracauer`](Self::start_kracauer) with the configuration `config`.
    pub fn start_kracauer_with(
        &self,
        i: u8,
        binary: &Path,
        config: &str,
    ) -> Result<Kracauer<'_>, Error> {
        self.start_instance(i, None, binary, config)
    }

    /// [`start_kracauer_with`](Self::start_kracauer_with) inside `holder`'s mount
    /// namespace (a [`BpffsHolder`] started in instance `i`'s host): its bpffs, and the
    /// fast path's pins, outlive the daemon as a host's do, for a restart to adopt.
    pub fn start_kracauer_held(
        &self,
        i: u8,
        holder: &BpffsHolder,
        binary: &Path,
        config: &str,
    ) -> Result<Kracauer<'_>, Error> {
        self.start_instance(i, Some(holder), binary, config)
    }

    fn start_instance(
        &self,
        i: u8,
        holder: Option<&BpffsHolder>,
        binary: &Path,
        config: &str,
    ) -> Result<Kracauer<'_>, Error> {
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        Kracauer::start_in(
            &self.hosts[usize::from(i - 1)],
            holder,
            self.dir(),
            &format!("kracauer{i}-{n}"),
            &format!("kracauer{i}.toml"),
            binary,
            config,
            &format!("kracauer{i}"),
        )
    }

    /// The gateways BIRD installed for the service address on the upstream router,
    /// sorted: the instances that announce it.
    pub fn announced(&self) -> Vec<Ipv4Addr> {
        let out = self
            .upstream
            .ip(["-4", "route", "show", &SERVICE_V4.to_string()])
            .unwrap_or_default();
        let mut gws: Vec<Ipv4Addr> = out
            .split("via ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect();
        gws.sort();
        gws.dedup();
        gws
    }

    /// The address of instance `i`'s host on its upstream link (its next hop upstream).
    pub fn host_v4(i: u8) -> Ipv4Addr {
        link(i).0
    }

    /// The prefixes the upstream router routes towards the Kracauer hosts, each with the
    /// host it routes it to (`ip -6 route`), as text lines.
    pub fn prefix_routes(&self) -> String {
        self.upstream
            .ip(["-6", "route", "show", "proto", "bird"])
            .unwrap_or_default()
    }

    /// The service address and port 80, as the client dials it.
    pub fn service() -> SocketAddr {
        SocketAddr::from((SERVICE_V4, HTTP_PORT))
    }

    /// The client's address.
    pub fn client_v4() -> Ipv4Addr {
        CLIENT_V4
    }
}

impl Drop for ScaleOut {
    fn drop(&mut self) {
        // The backends stop before the namespaces go.
        self.servers.clear();
    }
}

/// Instance `i`'s BIRD configuration: the guide's (instance 1) with the addresses,
/// prefix and route tag of instance `i`.
fn instance_bird(i: u8) -> Result<String, Error> {
    if i == 1 {
        return Ok(BIRD_INSTANCE.to_owned());
    }
    let (l4, u4, l6, u6) = link(i);
    let (l4_1, u4_1, l6_1, u6_1) = link(1);
    let mut text = BIRD_INSTANCE.to_owned();
    for (from, to) in [
        (l4_1.to_string(), l4.to_string()),
        (u4_1.to_string(), u4.to_string()),
        (l6_1.to_string(), l6.to_string()),
        (u6_1.to_string(), u6.to_string()),
        (prefix(1), prefix(i)),
        (
            "via \"kracauer1\"".to_owned(),
            format!("via \"kracauer{i}\""),
        ),
    ] {
        if !text.contains(&from) {
            return Err(Error::Setup(format!(
                "the guide's bird-instance.conf no longer says {from}"
            )));
        }
        text = text.replace(&from, &to);
    }
    Ok(text)
}

/// Links, addresses, routes and sysctls.
fn wire(
    client: &Netns,
    up: &Netns,
    hosts: &[Netns; 2],
    backends: [&Netns; 2],
) -> Result<(), Error> {
    for ns in [up, &hosts[0], &hosts[1], backends[0], backends[1]] {
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    }
    up.ip([
        "link",
        "add",
        "to-client",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        client.name(),
    ])?;
    client.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
    client.ip(["addr", "add", &format!("{CLIENT_V4}/24"), "dev", "eth0"])?;
    client.ip(["link", "set", "eth0", "up"])?;
    client.ip(["route", "add", "default", "via", &ROUTER_V4.to_string()])?;
    up.ip([
        "addr",
        "add",
        &format!("{ROUTER_V4}/24"),
        "dev",
        "to-client",
    ])?;
    up.ip(["link", "set", "to-client", "up"])?;
    for (n, host) in hosts.iter().enumerate() {
        let i = n as u8 + 1;
        let (l4, u4, l6, u6) = link(i);
        let port = format!("to-k{i}");
        up.ip([
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            host.name(),
        ])?;
        up.ip(["addr", "add", &format!("{u4}/30"), "dev", &port])?;
        up.ip(["addr", "add", &format!("{u6}/64"), "dev", &port, "nodad"])?;
        up.ip(["link", "set", &port, "up"])?;
        host.ip(["addr", "add", &format!("{l4}/30"), "dev", "up0"])?;
        host.ip(["addr", "add", &format!("{l6}/64"), "dev", "up0", "nodad"])?;
        host.ip(["link", "set", "up0", "up"])?;
        host.ip(["route", "add", "default", "via", &u4.to_string()])?;
        host.ip(["-6", "route", "add", "default", "via", &u6.to_string()])?;
    }
    up.ip([
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    up.ip([
        "addr",
        "add",
        &format!("{UPSTREAM_V6}/64"),
        "dev",
        "br0",
        "nodad",
    ])?;
    up.ip(["link", "set", "br0", "up"])?;
    for (port, ns, addr) in [
        ("to-a", backends[0], BACKEND_A),
        ("to-b", backends[1], BACKEND_B),
    ] {
        up.ip([
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
        up.ip(["link", "set", port, "master", "br0", "up"])?;
        ns.ip(["addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"])?;
        ns.ip(["link", "set", "eth0", "up"])?;
        ns.ip([
            "-6",
            "route",
            "add",
            "default",
            "via",
            &UPSTREAM_V6.to_string(),
        ])?;
    }
    up.sysctl("net.ipv4.ip_forward", "1")?;
    up.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    up.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
    Ok(())
}
