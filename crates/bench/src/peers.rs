//! The peers on the router and the router-side accounting: Kracauer (the real daemon,
//! with the kernel fast path on, off, and without TUN offloads), nginx `stream` with `ssl_preread` and a transparent `proxy_bind` to the
//! embedded address, and the kernel forwarding plain IPv6 (the ceiling); CPU from
//! `/proc/stat` and `/proc/PID/stat`, memory from `/proc/PID/status` and the router
//! namespace's `/proc/net/sockstat`.

use std::fmt::Write as _;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::topology::{BACKEND_A, HTTPS_PORT, METRICS, PREFIX, ROUTER_V6, SERVICE_V4};
use kracauer_testbed::{Error, Kracauer, Netns, Topology};

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

    /// Packets Kracauer has read from its TUN so far (`kracauer_tun_packets_total`, every
    /// worker; a GSO super-packet counts once); `None` for the other peers or when the
    /// metrics do not answer. The workers publish their counters once a second, so this
    /// first waits a little longer than that: the count includes every packet until the
    /// call.
    pub fn tun_packets(&self) -> Option<u64> {
        let Running::Kracauer { k, .. } = self else {
            return None;
        };
        thread::sleep(Duration::from_millis(1_100));
        let body = k.metrics().ok()?.body;
        let per_worker = kracauer_testbed::prom::samples(&body, "kracauer_tun_packets_total");
        (!per_worker.is_empty()).then(|| per_worker.iter().map(|(_, n)| n).sum())
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
                    socket_states(r)
                );
                r.ip(["-6", "route", "del", "local", PREFIX, "dev", "lo"])?;
                r.ip(["addr", "del", &format!("{SERVICE_V4}/32"), "dev", "lo"])?;
            }
        }
        Ok(())
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
        if let Some(stat) = proc_stat(pid) {
            if stat.ppid == parent {
                out.push(pid);
            }
        }
    }
    out
}

struct ProcStat {
    ppid: u32,
    ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the name: state(0) ppid(1) ... utime(11) stime(12).
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

/// Busy CPU seconds of the whole machine (all of `/proc/stat`'s `cpu` line but idle and
/// iowait).
pub fn machine_cpu() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = s.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| *x)
        .sum();
    busy as f64 / clk_tck()
}

/// How loaded the shared machine is while no peer carries traffic: `/proc/loadavg`'s
/// three averages and the busy share of all CPUs over `window` (0.0 idle, 1.0 every core
/// busy), sampled by the caller between workloads.
#[derive(Debug, Clone)]
pub struct Load {
    pub loadavg: String,
    pub busy: f64,
}

pub fn load(window: Duration) -> Load {
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let cores = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
        .max(1) as f64;
    let b0 = machine_cpu();
    let t0 = Instant::now();
    thread::sleep(window);
    let busy = (machine_cpu() - b0) / t0.elapsed().as_secs_f64() / cores;
    Load { loadavg, busy }
}

/// CPU seconds (user + system) of `pids`.
pub fn process_cpu(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|p| proc_stat(*p))
        .map(|s| s.ticks)
        .sum();
    ticks as f64 / clk_tck()
}

/// Resident memory of `pids`, in bytes.
pub fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

/// The router namespace's socket accounting: TCP sockets in use (v4 + v6) and the TCP
/// memory pages the kernel reports (`mem`, global to the machine).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sockstat {
    pub v4: u64,
    pub v6: u64,
    pub mem_pages: u64,
}

pub fn sockstat(ns: &Netns) -> Sockstat {
    let mut st = Sockstat::default();
    for file in ["/proc/net/sockstat", "/proc/net/sockstat6"] {
        let Ok(out) = ns.command("cat").arg(file).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace();
            let proto = words.next().unwrap_or_default();
            if proto != "TCP:" && proto != "TCP6:" {
                continue;
            }
            let w: Vec<&str> = words.collect();
            for pair in w.chunks(2) {
                if let [k, v] = pair {
                    let v: u64 = v.parse().unwrap_or(0);
                    match *k {
                        "inuse" if proto == "TCP:" => st.v4 += v,
                        "inuse" => st.v6 += v,
                        "mem" => st.mem_pages += v,
                        _ => {}
                    }
                }
            }
        }
    }
    st
}

/// The size of one TCP socket object in the kernel's slab (v4 and v6), in bytes, from
/// `/proc/slabinfo`; 0 when unreadable.
pub fn tcp_slab_sizes() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    let size = |name: &str| {
        s.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0)
    };
    (size("TCP"), size("TCPv6"))
}

/// The machine, for the report.
pub fn describe_machine() -> String {
    let mut out = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let cores = cpu.lines().filter(|l| l.starts_with("processor")).count();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = mem.lines().next().unwrap_or("").trim().to_owned();
    let kernel = Command::new("uname")
        .arg("-srvm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let nginx = Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "- CPU: {model}, {cores} logical cores (shared with other work during the run)"
    );
    let _ = writeln!(out, "- Memory: {total}");
    let _ = writeln!(out, "- Kernel: {kernel}");
    let _ = writeln!(out, "- nginx: {nginx}");
    out
}

/// How many TCP sockets in `ns` are in CLOSE_WAIT (their peer has closed).
pub fn close_wait(ns: &Netns) -> usize {
    ns.command("ss")
        .args(["-Htn", "state", "close-wait"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// A count of the TCP sockets in `ns` by state (`ss -Htan`), e.g. `TIME-WAIT=812`.
pub fn socket_states(ns: &Netns) -> String {
    let out = ns
        .command("ss")
        .args(["-Htan"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for state in out.lines().filter_map(|l| l.split_whitespace().next()) {
        match counts.iter_mut().find(|(s, _)| s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state.to_owned(), 1)),
        }
    }
    counts
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}
