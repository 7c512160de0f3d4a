//! Where the connection rate goes: `perf record -a -g` of the whole machine during the
//! rate run (`rate.rs`), through Kracauer with the fast path on and with it off, rounds
//! alternated. Every sample of a process on the data path (the client's threads, the
//! backend, the daemon, the softirq threads, and softirq work on idle CPUs) goes to an
//! owner by the same innermost-frame rule as the bulk profile (`profile.rs`); user-space
//! samples go to their process, the daemon's by function group. Each owner's samples
//! become CPU microseconds per connection (one sample is 1/999 s of one CPU), side by
//! side, with the difference: on a machine the rate run keeps busy, that difference is
//! where the rate goes.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use kracauer_testbed::{Error, Topology};

use crate::peers::{Peer, Running};
use crate::plan::Plan;
use crate::profile::{IDLE, Sample, perf_script, samples};
use crate::rate;

/// perf's sampling frequency: one sample is this many µs of one CPU.
const FREQ: u32 = 999;

/// The owners only the fast path has: their samples are also broken down by leaf
/// function (what in the program or the syscall costs).
const OWN: [&str; 3] = [
    "tc BPF program (kracauer_",
    "bpf() map syscalls",
    "tc ingress hook",
];

/// The TUN's owners: what a packet the fast path carries no longer costs.
const TUN: [&str; 3] = ["TUN read", "TUN write", "TUN device"];

/// The two peers compared.
const PEERS: [Peer; 2] = [Peer::FASTPATH_ON, Peer::FASTPATH_OFF];

/// Samples of one peer, summed over its profiled runs.
#[derive(Debug, Default)]
struct Tally {
    conns: usize,
    secs: f64,
    /// Connections a second of each run.
    runs: Vec<f64>,
    /// Samples by owner (busy data-path work).
    owners: BTreeMap<String, u64>,
    /// Samples of the fast path's own owners ([`OWN`]), by owner and leaf function.
    leaves: BTreeMap<String, u64>,
    /// Samples by process role.
    roles: BTreeMap<String, u64>,
    /// Idle samples and samples of other machine users.
    idle: u64,
    others: u64,
    total: u64,
    /// Times SYN-flood mode turned on, SYNs the kernel answered.
    flood_on: u64,
    kernel_syns: u64,
}

/// The processes on the data path of one profiled run.
struct Pids {
    client: u32,
    backend: u32,
    daemon: Vec<u32>,
}

impl Pids {
    /// The role of a sample's process, `None` for other machine users.
    fn role(&self, s: &Sample<'_>) -> Option<&'static str> {
        if s.pid == self.client {
            Some("client (the bench's threads)")
        } else if s.pid == self.backend {
            Some("backend")
        } else if self.daemon.contains(&s.pid) {
            Some("kracauer (the daemon)")
        } else if s.comm.starts_with("ksoftirqd/") {
            Some("ksoftirqd")
        } else if s.pid == 0 {
            Some("softirq and interrupts on idle CPUs")
        } else {
            None
        }
    }
}

/// The owner of a user-space sample of process `role`: the daemon's by the crate and
/// module of its leaf function (the binary has no frame pointers, so only the leaf is
/// known), the others' by process.
fn user_owner(role: &str, s: &Sample<'_>) -> String {
    if !role.starts_with("kracauer") {
        return format!("user space: {}", role.split(' ').next().unwrap_or(role));
    }
    let sym = s.frames.first().map_or("", |f| f.1);
    let group = ["kracauer_core::", "kracauer::", "aya::", "tracing"]
        .iter()
        .find_map(|c| {
            let at = sym.find(c)?;
            let rest = &sym[at..];
            let module: Vec<&str> = rest.split("::").take(2).collect();
            Some(module.join("::"))
        })
        .unwrap_or_else(|| {
            if ["std::", "core::", "alloc::", "hashbrown::"]
                .iter()
                .any(|c| sym.contains(c))
            {
                "Rust std".to_owned()
            } else if sym == "[unknown]" || sym.is_empty() {
                "unknown".to_owned()
            } else {
                "libc and other libraries".to_owned()
            }
        });
    // Generic parameters and impl blocks leave `<` and `>` behind.
    let group: String = group.chars().filter(|c| !"<>&".contains(*c)).collect();
    format!("user space: kracauer {group}")
}

impl Tally {
    fn add(&mut self, script: &str, pids: &Pids) {
        for s in samples(script) {
            self.total += 1;
            let Some(role) = pids.role(&s) else {
                self.others += 1;
                continue;
            };
            let owner = match s.owner() {
                Some(IDLE) => {
                    self.idle += 1;
                    continue;
                }
                Some(o) => o.to_owned(),
                None if s.user() => user_owner(role, &s),
                None => "other kernel".to_owned(),
            };
            if OWN.iter().any(|o| owner.contains(o)) {
                let leaf = s.frames.first().map_or("?", |f| f.1);
                // A program's own code: `bpf_prog_<tag>_<name>`, the tag left out.
                let leaf = leaf
                    .strip_prefix("bpf_prog_")
                    .map_or(leaf, |_| "(its own code)");
                let short = owner.split(" (").next().unwrap_or(&owner);
                *self.leaves.entry(format!("{short}: {leaf}")).or_default() += 1;
            }
            *self.owners.entry(owner).or_default() += 1;
            *self.roles.entry(role.to_owned()).or_default() += 1;
        }
    }

    /// CPU µs per connection of `samples`.
    fn per_conn(&self, samples: u64) -> f64 {
        samples as f64 * 1e6 / f64::from(FREQ) / self.conns.max(1) as f64
    }
}

/// Runs `rounds` alternated pairs of profiled rate runs (fast path on, off; then off,
/// on) and returns the report's text.
pub fn profile(
    plan: &Plan,
    tb: &Topology,
    hello: &Arc<Vec<u8>>,
    backend: u32,
    rounds: usize,
) -> Result<String, Error> {
    let mut tallies: [Tally; 2] = Default::default();
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for i in order {
            eprintln!(
                "bench: rate profile, round {} / {rounds}, {}",
                round + 1,
                PEERS[i].name()
            );
            one_run(plan, tb, hello, backend, PEERS[i], &mut tallies[i])?;
        }
    }
    Ok(render(plan.rate, rounds, &tallies))
}

fn one_run(
    plan: &Plan,
    tb: &Topology,
    hello: &Arc<Vec<u8>>,
    backend: u32,
    peer: Peer,
    tally: &mut Tally,
) -> Result<(), Error> {
    let running = Running::start(peer, tb, &plan.kracauer)?;
    let addr = peer.raw_addr();
    let result = (|| {
        rate::warm_up(tb, hello, addr)?;
        let before = running.metrics();
        let data = tb.dir().join("perf-rate.data");
        let secs = plan.rate.as_secs_f64() + 0.6;
        let mut rec = Command::new("perf")
            .args(["record", "-q", "-F", &FREQ.to_string(), "-g", "-a", "-o"])
            .arg(&data)
            .args(["--", "sleep", &format!("{secs:.1}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Setup(format!("perf: {e}")))?;
        thread::sleep(Duration::from_millis(300));
        let r = rate::run(tb, hello, addr, plan.rate)?;
        let _ = rec.wait();
        if let (Some(b), Some(a)) = (before, running.metrics()) {
            tally.flood_on += a
                .sum("kracauer_syncookie_flood_mode_changes_total", "to=\"on\"")
                .saturating_sub(b.sum("kracauer_syncookie_flood_mode_changes_total", "to=\"on\""));
            tally.kernel_syns += a
                .sum("kracauer_syncookie_syns_total", "path=\"kernel\"")
                .saturating_sub(b.sum("kracauer_syncookie_syns_total", "path=\"kernel\""));
        }
        let script = perf_script(&data)?;
        let _ = std::fs::remove_file(&data);
        let pids = Pids {
            client: std::process::id(),
            backend,
            daemon: running.pids(),
        };
        // perf records 0.3 s before and about 0.3 s after the load: count the
        // connections of the whole window's rate (the samples outside the run are
        // mostly idle, which is not counted).
        tally.add(&script, &pids);
        tally.conns += r.count;
        tally.secs += r.secs;
        tally.runs.push(r.per_sec());
        Ok::<_, Error>(())
    })();
    running.stop()?;
    result
}

fn render(dur: Duration, rounds: usize, t: &[Tally; 2]) -> String {
    let mut out = String::new();
    let rate = |t: &Tally| t.conns as f64 / t.secs.max(1e-9);
    out.push_str(&format!(
        "Rate run (c{}, {:.1} s) profiled {rounds} time(s) per peer, alternated.\n\n\
         {:<62} {:>12} {:>12} {:>10}\n",
        rate::CONCURRENCY,
        dur.as_secs_f64(),
        "",
        "fastpath=on",
        "fastpath=off",
        "on − off"
    ));
    let row = |out: &mut String, what: &str, a: f64, b: f64| {
        out.push_str(&format!(
            "{what:<62} {a:>12.1} {b:>12.1} {:>+10.1}\n",
            a - b
        ));
    };
    row(
        &mut out,
        "connections/s while profiled",
        rate(&t[0]),
        rate(&t[1]),
    );
    for (t, name) in t.iter().zip(["on", "off"]) {
        let runs: Vec<String> = t.runs.iter().map(|r| format!("{r:.0}")).collect();
        out.push_str(&format!(
            "    each run, fastpath={name}: {}\n",
            runs.join(", ")
        ));
    }
    row(
        &mut out,
        "SYN-flood mode turned on (times, all runs)",
        t[0].flood_on as f64,
        t[1].flood_on as f64,
    );
    row(
        &mut out,
        "SYNs answered by the kernel program (all runs)",
        t[0].kernel_syns as f64,
        t[1].kernel_syns as f64,
    );
    let busy = |t: &Tally| t.roles.values().sum::<u64>();
    row(
        &mut out,
        "data-path CPU µs per connection (all busy samples)",
        t[0].per_conn(busy(&t[0])),
        t[1].per_conn(busy(&t[1])),
    );
    let share = |t: &Tally, n: u64| n as f64 * 100.0 / t.total.max(1) as f64;
    row(
        &mut out,
        "idle, % of all samples",
        share(&t[0], t[0].idle),
        share(&t[1], t[1].idle),
    );
    row(
        &mut out,
        "other machine users, % of all samples",
        share(&t[0], t[0].others),
        share(&t[1], t[1].others),
    );
    let sum = |t: &Tally, pats: &[&str]| -> u64 {
        t.owners
            .iter()
            .filter(|(k, _)| pats.iter().any(|p| k.contains(p)))
            .map(|(_, n)| n)
            .sum()
    };
    row(
        &mut out,
        "the fast path's own work (programs, TCX hook, map syscalls)",
        t[0].per_conn(sum(&t[0], &OWN)),
        t[1].per_conn(sum(&t[1], &OWN)),
    );
    row(
        &mut out,
        "the TUN's work (read, write, the device)",
        t[0].per_conn(sum(&t[0], &TUN)),
        t[1].per_conn(sum(&t[1], &TUN)),
    );
    out.push_str("\nCPU µs per connection by process:\n\n");
    table(&mut out, t, |t| &t.roles, false);
    out.push_str(
        "\nCPU µs per connection by owner (each sample to the innermost frame an owner \
         has; user space by process, the daemon's by the module of its leaf function), \
         largest difference first, differences under 1 µs left out:\n\n",
    );
    table(&mut out, t, |t| &t.owners, true);
    out.push_str(
        "\nThe fast path's own owners (its two tc programs, the TCX hook, the daemon's map \
         syscalls) by leaf function, CPU µs per connection (fast path on only):\n\n",
    );
    let mut leaves: Vec<(&String, f64)> = t[0]
        .leaves
        .iter()
        .map(|(k, n)| (k, t[0].per_conn(*n)))
        .filter(|(_, us)| *us >= 0.1)
        .collect();
    leaves.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (k, us) in leaves {
        out.push_str(&format!("    {k:<71} {us:>12.2}\n"));
    }
    out
}

/// One line per key of `pick`, in µs per connection: largest first, or (`by_diff`)
/// largest difference first without those under 1 µs.
fn table(
    out: &mut String,
    t: &[Tally; 2],
    pick: impl Fn(&Tally) -> &BTreeMap<String, u64>,
    by_diff: bool,
) {
    let mut keys: Vec<&String> = pick(&t[0]).keys().chain(pick(&t[1]).keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<(&String, f64, f64)> = keys
        .into_iter()
        .map(|k| {
            let v = |i: usize| t[i].per_conn(pick(&t[i]).get(k).copied().unwrap_or(0));
            (k, v(0), v(1))
        })
        .collect();
    if by_diff {
        rows.retain(|r| (r.1 - r.2).abs() >= 1.0);
        rows.sort_by(|a, b| (b.1 - b.2).abs().total_cmp(&(a.1 - a.2).abs()));
    } else {
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    }
    for (k, a, b) in rows {
        out.push_str(&format!(
            "    {k:<58} {a:>12.1} {b:>12.1} {:>+10.1}\n",
            a - b
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "kracauer-w0  500\n\
\tffffffff81aa0001 htab_map_update_elem\n\
\tffffffff81aa0002 map_update_elem\n\
\tffffffff81aa0003 __sys_bpf\n\
\t           1234 syscall\n\
\n\
kracauer-w1  500\n\
\t           5678 kracauer_core::engine::client::<impl kracauer_core::engine::Engine>::on_client\n\
\n\
raw backend  600\n\
\tffffffff81aa0004 bpf_skb_change_proto\n\
\tffffffffc0001234 bpf_prog_0123456789abcdef_kracauer_fastpa\n\
\tffffffff81aa0005 tcx_ingress\n\
\tffffffff81aa0006 tcp_sendmsg_locked\n\
\n\
swapper  0\n\
\tffffffffc0005678 bpf_prog_fedcba9876543210_kracauer_syncoo\n\
\tffffffff81aa0007 handle_softirqs\n\
\tffffffff81aa0008 pv_native_safe_halt\n\
\n\
swapper  0\n\
\tffffffff81aa0008 pv_native_safe_halt\n\
\tffffffff81aa0009 default_idle\n\
\n\
raw backend  600\n\
\tffffffff81aa000a native_write_msr\n\
\tffffffff81aa000b smp_call_function_many_cond\n\
\tffffffff81aa000c flush_tlb_mm_range\n\
\tffffffff81aa000d do_exit\n\
\n\
rustc  900\n\
\tffffffff81aa0004 _copy_from_iter\n\
\n\
in-krc-tb1-0  700\n\
\t           9abc kracauer_bench::proto::request\n";

    fn tally() -> Tally {
        let pids = Pids {
            client: 700,
            backend: 600,
            daemon: vec![500],
        };
        let mut t = Tally {
            conns: 1,
            ..Default::default()
        };
        t.add(SCRIPT, &pids);
        t
    }

    #[test]
    fn samples_of_the_data_path_go_to_their_owner_and_idle_and_other_users_are_left_out() {
        let t = tally();
        assert_eq!((t.total, t.idle, t.others), (8, 1, 1));
        let owner = |o: &str| t.owners.get(o).copied().unwrap_or(0);
        assert_eq!(
            owner("bpf() map syscalls (the daemon's map updates, lookups, deletes)"),
            1
        );
        assert_eq!(owner("user space: kracauer kracauer_core::engine"), 1);
        assert_eq!(
            owner("fast path tc BPF program (kracauer_fastpath) and its helpers"),
            1,
            "a helper's sample is its program's: {:?}",
            t.owners
        );
        assert_eq!(
            owner("SYN cookie tc BPF program (kracauer_syncookie) and its helpers"),
            1,
            "softirq on an idle CPU is work: {:?}",
            t.owners
        );
        assert_eq!(owner("user space: client"), 1);
        assert_eq!(
            owner("IPIs to other CPUs (TLB shootdowns, remote calls)"),
            1,
            "a thread's exit waiting on a TLB shootdown is the IPI's: {:?}",
            t.owners
        );
        assert_eq!(t.owners.values().sum::<u64>(), 6);
        assert_eq!(t.roles.get("kracauer (the daemon)"), Some(&2));
        assert_eq!(t.roles.get("softirq and interrupts on idle CPUs"), Some(&1));
    }

    #[test]
    fn a_sample_is_a_999th_of_a_cpu_second_shared_over_the_connections() {
        let mut t = tally();
        t.conns = 1_000;
        // 999 samples = one CPU second, over 1,000 connections: 1,000 µs each.
        assert!((t.per_conn(999) - 1_000.0).abs() < 1e-9);
    }

    #[test]
    fn the_report_puts_the_peers_side_by_side_with_the_difference() {
        let mut on = tally();
        on.conns = 1;
        on.secs = 1.0;
        let off = Tally {
            conns: 1,
            secs: 1.0,
            ..Default::default()
        };
        let text = render(Duration::from_secs(3), 1, &[on, off]);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("bpf() map syscalls"))
            .unwrap_or_else(|| panic!("no map syscall line in:\n{text}"));
        // One sample per connection: 1001.0 µs on, 0 off.
        assert!(line.ends_with("1001.0          0.0    +1001.0"), "{line:?}");
        // The fast path's own work: the map syscall and the two programs' samples.
        let own = text
            .lines()
            .find(|l| l.starts_with("the fast path's own work"))
            .unwrap_or_else(|| panic!("no own-work line in:\n{text}"));
        assert!(own.ends_with("3003.0          0.0    +3003.0"), "{own:?}");
    }
}
