//! The peers on the router: Kracauer (the real daemon, with the kernel fast path on, off,
//! and without TUN offloads), nginx `stream` with `ssl_preread` and a transparent
//! `proxy_bind` to the embedded address, and the kernel forwarding plain IPv6 (the
//! ceiling): their configurations, starting and stopping them, and their processes.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{BACKEND_A, HTTPS_PORT, METRICS, PREFIX, ROUTER_V6, SERVICE_V4};
use kracauer_testbed::{Error, Kracauer, Topology};

use crate::proto::{BENCH_NAME, RAW_PORT};

/// The client's IPv6 network for the kernel-only ceiling (client link).
pub const CLIENT_NET6: &str = "2001:db8:2::/64";
/// The client's own IPv6 address for the ceiling.
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const ROUTER_ADDR6: &str = "2001:db8:2::1";

/// Which peer carries the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The real daemon, with these `[tun]` settings.
    Kracauer(KracauerTun),
    Nginx,
    Kernel,
}

/// The `[tun]` settings that tell the Kracauer peers apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KracauerTun {
    /// `offload`: GSO super-packets on the TUN.
    pub offload: bool,
    /// `fastpath = "on"` (spliced flows' data and ACKs translated by the tc BPF program,
    /// never crossing the TUN; the daemon refuses to start without it) or `"off"` (every
    /// packet through the TUN).
    pub fastpath: bool,
}

impl Peer {
    /// Kracauer with the kernel fast path (`fastpath = "on"`) and TUN offloads.
    pub const FASTPATH_ON: Peer = Peer::Kracauer(KracauerTun {
        offload: true,
        fastpath: true,
    });
    /// Kracauer with every packet through the TUN (`fastpath = "off"`) and its offloads:
    /// the datapath before the kernel fast path.
    pub const FASTPATH_OFF: Peer = Peer::Kracauer(KracauerTun {
        offload: true,
        fastpath: false,
    });
    /// Kracauer through the TUN without offloads: one packet of at most the MTU per read
    /// and write (`offload = false`, `fastpath = "off"`).
    pub const NO_OFFLOAD: Peer = Peer::Kracauer(KracauerTun {
        offload: false,
        fastpath: false,
    });

    pub const ALL: [Peer; 5] = [
        Peer::FASTPATH_ON,
        Peer::FASTPATH_OFF,
        Peer::Nginx,
        Peer::Kernel,
        Peer::NO_OFFLOAD,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Kracauer(KracauerTun {
                offload: true,
                fastpath: true,
            }) => "kracauer fastpath=on",
            Peer::Kracauer(KracauerTun {
                offload: true,
                fastpath: false,
            }) => "kracauer fastpath=off",
            Peer::Kracauer(KracauerTun {
                offload: false,
                fastpath: false,
            }) => "kracauer offload=false",
            Peer::Kracauer(KracauerTun {
                offload: false,
                fastpath: true,
            }) => "kracauer offload=false fastpath=on",
            Peer::Nginx => "nginx",
            Peer::Kernel => "kernel",
        }
    }

    /// Where the client dials for the raw workloads.
    pub fn raw_addr(self) -> SocketAddr {
        match self {
            Peer::Kernel => SocketAddr::V6(SocketAddrV6::new(BACKEND_A, RAW_PORT, 0, 0)),
            _ => SocketAddr::V4(SocketAddrV4::new(SERVICE_V4, HTTPS_PORT)),
        }
    }

    /// Where the client dials for the real TLS run.
    pub fn tls_addr(self) -> SocketAddr {
        match self {
            Peer::Kernel => SocketAddr::V6(SocketAddrV6::new(BACKEND_A, HTTPS_PORT, 0, 0)),
            _ => SocketAddr::V4(SocketAddrV4::new(SERVICE_V4, HTTPS_PORT)),
        }
    }
}

/// Where the client dials for the HTTP/3 download (UDP).
pub fn h3_addr(peer: Peer) -> SocketAddr {
    peer.tls_addr()
}

/// Gives the client an IPv6 address and route through the router, and the backends a
/// route back, for the kernel-only ceiling. Done once per testbed.
pub fn wire_ceiling(tb: &Topology) -> Result<(), Error> {
    tb.client.sysctl("net.ipv6.conf.all.disable_ipv6", "0")?;
    tb.client.sysctl("net.ipv6.conf.eth0.disable_ipv6", "0")?;
    tb.client.ip([
        "addr",
        "add",
        &format!("{CLIENT_ADDR6}/64"),
        "dev",
        "eth0",
        "nodad",
    ])?;
    tb.client
        .ip(["-6", "route", "add", "default", "via", ROUTER_ADDR6])?;
    tb.router.ip([
        "addr",
        "add",
        &format!("{ROUTER_ADDR6}/64"),
        "dev",
        "to-client",
        "nodad",
    ])?;
    for ns in [&tb.backend_a, &tb.backend_b] {
        ns.ip([
            "-6",
            "route",
            "add",
            CLIENT_NET6,
            "via",
            &ROUTER_V6.to_string(),
        ])?;
    }
    // Many short connections from one client address. The client's ports and nginx's
    // upstream ports (the router's range) never overlap, so a tuple one peer left on the
    // backend (same embedded source address) is never met by the other.
    tb.client
        .sysctl("net.ipv4.ip_local_port_range", "1024 32767")?;
    tb.router
        .sysctl("net.ipv4.ip_local_port_range", "32768 60999")?;
    tb.client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    Ok(())
}

/// Kracauer's configuration: TLS and QUIC on 443, the bench name to the raw backend, `a.example`
/// to backend a's HTTPS on 443, metrics (the bench reads the TUN's packet count from them).
pub fn kracauer_config(tun: KracauerTun) -> String {
    let KracauerTun { offload, fastpath } = tun;
    let fastpath = if fastpath { "on" } else { "off" };
    format!(
        "prefix = \"{PREFIX}\"\n\n[tun]\nname = \"kracauer0\"\nmtu = 1500\noffload = {offload}\n\
         fastpath = \"{fastpath}\"\n\n\
         [metrics]\nlisten = \"{METRICS}\"\n\n\
         [[listen]]\naddress = \"{SERVICE_V4}\"\ntls = [{HTTPS_PORT}]\nquic = [{HTTPS_PORT}]\n\n\
         [[route]]\nhosts = [\"{BENCH_NAME}\"]\nbackend = \"{BACKEND_A}\"\nports = {{ {HTTPS_PORT} = {RAW_PORT} }}\n\n\
         [[route]]\nhosts = [\"a.example\"]\nbackend = \"{BACKEND_A}\"\n"
    )
}

/// nginx's configuration (printed in the report).
pub fn nginx_config(dir: &Path) -> String {
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
         \x20   map $ssl_preread_server_name $backend {{\n\
         \x20       {BENCH_NAME} [{BACKEND_A}]:{RAW_PORT};\n\
         \x20       a.example [{BACKEND_A}]:{HTTPS_PORT};\n\
         \x20       default [{BACKEND_A}]:{RAW_PORT};\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {SERVICE_V4}:{HTTPS_PORT} backlog=4096 reuseport;\n\
         \x20       ssl_preread on;\n\
         \x20       proxy_half_close on;\n\
         \x20       proxy_pass $backend;\n\
         \x20       proxy_bind {prefix}$remote_addr transparent;\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Installs nginx and its stream module through apt when either is missing.
pub fn ensure_nginx() -> Result<(), Error> {
    let have = Command::new("nginx").arg("-v").output().is_ok()
        && Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists();
    if have {
        return Ok(());
    }
    eprintln!("bench: installing nginx and libnginx-mod-stream through apt");
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    let _ = ok(Command::new("apt-get").args(["update", "-qq"]));
    if ok(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "nginx",
            "libnginx-mod-stream",
        ]))
    {
        Ok(())
    } else {
        Err(Error::Setup(
            "apt-get install nginx libnginx-mod-stream failed".into(),
        ))
    }
}

/// A peer running on the router.
#[derive(Debug)]
pub enum Running<'tb> {
    Kracauer { k: Kracauer<'tb>, tb: &'tb Topology },
    Nginx { child: Child, tb: &'tb Topology },
    Kernel,
}

impl<'tb> Running<'tb> {
    /// Starts `peer`; `kracauer` is the binary the Kracauer peers run.
    pub fn start(peer: Peer, tb: &'tb Topology, kracauer: &Path) -> Result<Self, Error> {
        match peer {
            Peer::Kracauer(tun) => {
                // The router forwards to the TUN; without this, a TIME_WAIT socket nginx
                // left on 203.0.113.10:443 (up to 60 s) is found by the kernel's early
                // demux, and ip_forward drops a packet that carries a socket: a client
                // SYN reusing that port is black-holed until the TIME_WAIT expires.
                tb.router.sysctl("net.ipv4.ip_early_demux", "0")?;
                Ok(Running::Kracauer {
                    k: tb.start_kracauer(kracauer, &kracauer_config(tun))?,
                    tb,
                })
            }
            Peer::Kernel => Ok(Running::Kernel),
            Peer::Nginx => {
                let r = &tb.router;
                r.ip(["addr", "add", &format!("{SERVICE_V4}/32"), "dev", "lo"])?;
                r.ip(["-6", "route", "add", "local", PREFIX, "dev", "lo"])?;
                let conf = tb.dir().join("nginx.conf");
                std::fs::write(&conf, nginx_config(tb.dir()))?;
                let child = r
                    .command("nginx")
                    .arg("-p")
                    .arg(tb.dir())
                    .arg("-c")
                    .arg(&conf)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| Error::Setup(format!("cannot start nginx: {e}")))?;
                let running = Running::Nginx { child, tb };
                let deadline = Instant::now() + Duration::from_secs(10);
                while running.pids().len() < 2 {
                    if Instant::now() > deadline {
                        return Err(Error::Setup("nginx did not start its workers".into()));
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                Ok(running)
            }
        }
    }

    /// The router-side processes of this peer (none for the kernel).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Running::Kracauer { k, .. } => vec![k.pid()],
            Running::Kernel => Vec::new(),
            Running::Nginx { tb, .. } => {
                let Some(master) = std::fs::read_to_string(tb.dir().join("nginx.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                else {
                    return Vec::new();
                };
                let mut pids = vec![master];
                pids.extend(children(master));
                pids
            }
        }
    }

    /// Kracauer's metrics now; `None` for the other peers or when they do not answer.
    /// The workers publish their counters once a second (and the kernel programs' are
    /// read as often), so this first waits a little longer than that: the counts include
    /// everything until the call.
    pub fn metrics(&self) -> Option<Metrics> {
        let Running::Kracauer { k, .. } = self else {
            return None;
        };
        thread::sleep(Duration::from_millis(1_100));
        Some(Metrics(k.metrics().ok()?.body))
    }

    /// Waits (up to `limit`) until Kracauer's SYN-flood mode is off; returns how long it
    /// waited, or `None` when it was still on at the limit or the peer has no such mode.
    pub fn wait_flood_mode_off(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let m = self.metrics()?;
            if m.sum("kracauer_syncookie_flood_mode", "") == 0 {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
        }
    }

    /// Stops the peer and undoes what it set up.
    pub fn stop(self) -> Result<(), Error> {
        match self {
            Running::Kracauer { k, tb } => {
                k.terminate()?;
                tb.router.sysctl("net.ipv4.ip_early_demux", "1")?;
            }
            Running::Kernel => {}
            Running::Nginx { mut child, tb } => {
                // SIGTERM is nginx's fast shutdown: the master stops its workers and exits.
                let workers = children(child.id());
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let deadline = Instant::now() + Duration::from_secs(5);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
                for pid in workers {
                    if Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                thread::sleep(Duration::from_millis(100));
                let r = &tb.router;
                eprintln!(
                    "bench: TCP sockets nginx left in the router namespace: {}",
                    crate::machine::socket_states(r)
                );
                r.ip(["-6", "route", "del", "local", PREFIX, "dev", "lo"])?;
                r.ip(["addr", "del", &format!("{SERVICE_V4}/32"), "dev", "lo"])?;
            }
        }
        Ok(())
    }
}

/// One scrape of Kracauer's metrics (Prometheus text).
#[derive(Debug, Clone)]
pub struct Metrics(String);

impl Metrics {
    /// The sum of `name`'s samples whose labels contain `label` (`""`: every sample).
    pub fn sum(&self, name: &str, label: &str) -> u64 {
        kracauer_testbed::prom::samples(&self.0, name)
            .iter()
            .filter(|(l, _)| l.contains(label))
            .map(|(_, n)| n)
            .sum()
    }

    /// `name`'s samples that grew since `before`, by label set, with the growth.
    pub fn grown(&self, before: &Metrics, name: &str) -> Vec<(String, u64)> {
        let old = kracauer_testbed::prom::samples(&before.0, name);
        kracauer_testbed::prom::samples(&self.0, name)
            .into_iter()
            .filter_map(|(l, n)| {
                let was = old.iter().find(|(o, _)| *o == l).map_or(0, |o| o.1);
                (n > was).then(|| (l.to_owned(), n - was))
            })
            .collect()
    }
}

/// The `ip netns exec` wrapper is the child; nginx's master is its exec'd image (same pid).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(stat) = crate::machine::proc_stat(pid) {
            if stat.ppid == parent {
                out.push(pid);
            }
        }
    }
    out
}
