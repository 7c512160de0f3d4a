//! The router-side and machine-wide accounting: CPU from `/proc/stat` and
//! `/proc/PID/stat`, the machine's load, memory from `/proc/PID/status`, the router
//! namespace's `/proc/net/sockstat` and the TCP slab sizes, socket states, and the
//! machine's description for the report.

use std::fmt::Write as _;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::Netns;

/// What the bench reads of a process: its parent and its CPU ticks (user + system).
pub struct ProcStat {
    pub ppid: u32,
    pub ticks: u64,
}

/// `/proc/PID/stat`'s parent and CPU ticks, if the process exists.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
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

/// The kernel's softirq threads (`ksoftirqd/N`): they carry the network receive work
/// that does not run in the context of the task that raised it.
pub fn softirq_threads() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
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
