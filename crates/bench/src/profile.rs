//! Where the time goes with the kernel fast path in the path: `perf record -a -g` of the
//! whole machine during one single-stream transfer through Kracauer with `fastpath =
//! "on"`, reported by thread name (the whole machine, other work included), then, for the
//! threads on the data path only, by thread and symbol (self time) and by function
//! (inclusive time: the BPF program, tc, veth, the bridge, the TCP stacks).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use kracauer_testbed::{Error, Topology};

use crate::peers::{Peer, Running};
use crate::plan::Plan;
use crate::proto;

/// One profile: the transfer's direction and `perf report`'s three views, as text.
pub fn profile(
    plan: &Plan,
    tb: &Topology,
    hello: &Arc<Vec<u8>>,
    up: bool,
) -> Result<String, Error> {
    let running = Running::start(Peer::FASTPATH_ON, tb, &plan.kracauer)?;
    let data = tb
        .dir()
        .join(if up { "perf-up.data" } else { "perf-down.data" });
    let secs = plan.bulk.as_secs().max(2) + 1;
    let mut rec = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-g", "-a", "-o"])
        .arg(&data)
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Setup(format!("perf: {e}")))?;
    thread::sleep(Duration::from_millis(300));
    let h = Arc::clone(hello);
    let addr = Peer::FASTPATH_ON.raw_addr();
    let dur = Duration::from_secs(secs.saturating_sub(1));
    let moved = tb
        .client
        .run(move || proto::bulk_stream(addr, &h, up, dur))?;
    let _ = rec.wait();
    running.stop()?;
    let moved = match moved {
        Ok((bytes, s)) => format!("{:.1} Gbit/s", bytes as f64 * 8.0 / 1e9 / s),
        Err(e) => format!("the stream failed: {e}"),
    };
    let report = |sort: &str, children: bool, limit: &str, lines: usize, comms: Option<&str>| {
        let out = Command::new("perf")
            .arg("report")
            .args(comms)
            .arg(if children {
                "--children"
            } else {
                "--no-children"
            })
            .args(comms.map(|_| "--percentage=relative"))
            .args([
                "--stdio",
                "-g",
                "none",
                "--sort",
                sort,
                "--percent-limit",
                limit,
                "-i",
            ])
            .arg(&data)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| Error::Setup(format!("perf report: {e}")))?;
        Ok::<_, Error>(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(lines)
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
    };
    // The threads on the data path: the raw backend's (its connections' threads inherit
    // its name), the client's (the namespace thread the testbed names `in-NS`, truncated
    // to 15 characters as the kernel keeps it), the daemon's workers, and softirq threads
    // (the BPF program runs in softirq, charged to whichever of these it interrupted).
    let client_thread: String = format!("in-{}", tb.client.name())
        .chars()
        .take(15)
        .collect();
    let comms = format!(
        "--comms=raw backend,{client_thread},kracauer-w0,kracauer-w1,kracauer-w2,kracauer-w3,\
         ksoftirqd/0,ksoftirqd/1,ksoftirqd/2,ksoftirqd/3"
    );
    let names: Vec<&str> = comms.trim_start_matches("--comms=").split(',').collect();
    let script = perf_script(&data)?;
    let shares = by_owner(&script, &names);
    Ok(format!(
        "{dir}, one stream, {moved} while profiled.\n\n\
         By thread name, the whole machine (self time, above 1%):\n\n{}\n\
         The data-path threads' samples by owner: each sample goes to the innermost frame \
         of its call chain that one of these owns (so the BPF program's helpers are the \
         program's, a copy inside sendmsg is sendmsg's):\n\n{shares}\n\
         The data-path threads only, by thread and symbol (self time, share of theirs, \
         above 1%):\n\n{}",
        report("comm", false, "1", 15, None)?,
        report("comm,sym", false, "1", 30, Some(&comms))?,
        dir = if up { "Upload" } else { "Download" },
    ))
}

/// Who owns a kernel frame, from its symbol: the first rule (in order) whose pattern
/// starts the symbol names it. A frame may match several rules (every `tun_` symbol is
/// the TUN device's): the more specific come first. The BPF programs are told apart by
/// [`program_owner`].
pub const OWNERS: &[(&str, &[&str])] = &[
    ("veth devices", &["veth_"]),
    (
        "tc ingress hook (TCX) around the programs",
        &["tcx_", "sch_handle_ingress", "tcf_"],
    ),
    (
        "the testbed's bridge and br_netfilter",
        &["br_", "ip_sabotage_in", "nf_bridge"],
    ),
    ("IP forwarding", &["ip6_forward", "ip_forward"]),
    (
        "bpf() map syscalls (the daemon's map updates, lookups, deletes)",
        &[
            "__sys_bpf",
            "__x64_sys_bpf",
            "map_update_elem",
            "map_delete_elem",
            "map_lookup_elem",
        ],
    ),
    (
        "TUN read (the daemon's read)",
        &["tun_chr_read_iter", "tun_do_read", "tun_put_user"],
    ),
    (
        "TUN write (the daemon's write, and the packet's way on)",
        &["tun_chr_write_iter", "tun_get_user"],
    ),
    ("TUN device (the kernel handing packets to it)", &["tun_"]),
    (
        "TCP handshake, listen and accept",
        &[
            "tcp_conn_request",
            "tcp_v4_conn_request",
            "tcp_v6_conn_request",
            "tcp_v4_syn_recv_sock",
            "tcp_v6_syn_recv_sock",
            "tcp_check_req",
            "inet_csk_accept",
            "tcp_rcv_state_process",
        ],
    ),
    (
        "TCP connect",
        &["tcp_v4_connect", "tcp_v6_connect", "__inet_stream_connect"],
    ),
    (
        "TCP TIME_WAIT",
        &["inet_twsk_", "tcp_time_wait", "tcp_timewait_state_process"],
    ),
    (
        "TCP receive (segments in, ACK processing)",
        &[
            "tcp_v6_rcv",
            "tcp_v4_rcv",
            "tcp_v6_do_rcv",
            "tcp_v4_do_rcv",
            "tcp_rcv_established",
        ],
    ),
    (
        "TCP recvmsg (the receiver's copy to user space)",
        &["tcp_recvmsg"],
    ),
    (
        "TCP transmit (segments out, timers, IP output)",
        &[
            "tcp_write_xmit",
            "__tcp_transmit_skb",
            "tcp_tsq_handler",
            "tcp_pace_kick",
            "ip6_xmit",
            "__ip_queue_xmit",
        ],
    ),
    (
        "TCP sendmsg (the sender's copy from user space)",
        &["tcp_sendmsg"],
    ),
    (
        "socket create and close",
        &[
            "__sys_socket",
            "__sock_create",
            "tcp_close",
            "inet_release",
            "inet6_release",
            "__fput",
        ],
    ),
    (
        "IPv6/IPv4 receive",
        &["ip6_rcv", "ip_rcv", "ip6_input", "ip_local_deliver"],
    ),
    (
        "device receive (backlog, netif_receive_skb)",
        &["__netif_receive_skb", "process_backlog", "net_rx_action"],
    ),
    (
        "IPIs to other CPUs (TLB shootdowns, remote calls)",
        &[
            "smp_call_function",
            "native_flush_tlb_multi",
            "flush_tlb_mm_range",
            "x2apic_send_IPI",
            "__x2apic_send_IPI",
            "native_send_call_func",
        ],
    ),
    (
        "threads: create, exit, stacks",
        &[
            "copy_process",
            "do_exit",
            "__do_sys_clone",
            "do_mmap",
            "__vm_munmap",
            "do_mprotect_pkey",
            "mmput",
        ],
    ),
    (
        "page faults",
        &["exc_page_fault", "do_user_addr_fault", "handle_mm_fault"],
    ),
    ("futex (thread waits and wake-ups)", &["futex_", "do_futex"]),
    (
        "poll and epoll waits",
        &["do_epoll_wait", "ep_poll", "do_sys_poll", "do_select"],
    ),
    (
        "scheduler, wake-ups",
        &[
            "__schedule",
            "schedule",
            "try_to_wake_up",
            "finish_task_switch",
        ],
    ),
    ("softirq (other)", &["handle_softirqs", "__do_softirq"]),
    (
        IDLE,
        &[
            "pv_native_safe_halt",
            "native_safe_halt",
            "default_idle",
            "cpuidle_enter",
            "do_idle",
            "cpu_idle_poll",
            "acpi_idle",
            "intel_idle",
            "mwait_idle",
        ],
    ),
];

/// The owner of the idle loop's frames (no work).
pub const IDLE: &str = "idle";

/// `perf script` of the recording `data`: one line per sample and frame (command, pid,
/// address, symbol).
pub fn perf_script(data: &std::path::Path) -> Result<String, Error> {
    let script = Command::new("perf")
        .args(["script", "-F", "comm,pid,ip,sym", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Error::Setup(format!("perf script: {e}")))?;
    Ok(String::from_utf8_lossy(&script.stdout).into_owned())
}

/// The owner of a frame in one of the BPF programs (kallsyms names a program
/// `bpf_prog_<tag>_<name>`, the name cut to 15 characters), its helpers included.
pub fn program_owner(sym: &str) -> Option<&'static str> {
    let rest = sym.strip_prefix("bpf_prog_")?;
    Some(if rest.contains("syncoo") {
        "SYN cookie tc BPF program (kracauer_syncookie) and its helpers"
    } else if rest.contains("steer") {
        "TUN steering BPF program"
    } else {
        "fast path tc BPF program (kracauer_fastpath) and its helpers"
    })
}

/// One sample of `perf script -F comm,pid,ip,sym` output: the thread's name, its
/// process, and its call chain as (address, symbol), innermost first.
#[derive(Debug)]
pub struct Sample<'a> {
    pub comm: &'a str,
    pub pid: u32,
    pub frames: Vec<(&'a str, &'a str)>,
}

impl Sample<'_> {
    /// Whether the sample was taken in user space (its leaf frame is not kernel text,
    /// which lives at 0xffff...).
    pub fn user(&self) -> bool {
        self.frames
            .first()
            .is_some_and(|(ip, _)| !(ip.len() == 16 && ip.starts_with("ffff")))
    }

    /// The owner ([`program_owner`], [`OWNERS`]) of the innermost frame one owns.
    pub fn owner(&self) -> Option<&'static str> {
        self.frames.iter().find_map(|(_, sym)| {
            program_owner(sym).or_else(|| {
                OWNERS
                    .iter()
                    .find(|(_, pats)| pats.iter().any(|p| sym.starts_with(p)))
                    .map(|(name, _)| *name)
            })
        })
    }
}

/// The samples of `perf script -F comm,pid,ip,sym` output.
pub fn samples(script: &str) -> Vec<Sample<'_>> {
    script
        .split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines().filter(|l| !l.trim().is_empty());
            let head = lines.next()?.trim_end();
            // `comm pid`: the thread's name may hold spaces, the pid is the last word.
            let (comm, pid) = head.rsplit_once(char::is_whitespace)?;
            let frames = lines
                .map(|l| {
                    let mut words = l.split_whitespace();
                    (words.next().unwrap_or(""), words.next().unwrap_or(""))
                })
                .collect();
            Some(Sample {
                comm: comm.trim(),
                pid: pid.parse().ok()?,
                frames,
            })
        })
        .collect()
}

/// The data-path threads' (`names`) samples in `perf script -F comm,pid,ip,sym` output,
/// shared out by [`OWNERS`] (user-space frames: "user space"; the rest: "other kernel"),
/// as lines `share  owner`, largest first.
fn by_owner(script: &str, names: &[&str]) -> String {
    let mut counts: Vec<(&str, u64)> = Vec::new();
    let mut total = 0u64;
    for sample in samples(script) {
        if !names.contains(&sample.comm) {
            continue;
        }
        let owner = sample.owner().unwrap_or(if sample.user() {
            "user space"
        } else {
            "other kernel"
        });
        total += 1;
        match counts.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, n)) => *n += 1,
            None => counts.push((owner, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut out = String::new();
    for (owner, n) in counts {
        out.push_str(&format!(
            "    {:5.1}%  {owner}\n",
            n as f64 * 100.0 / total.max(1) as f64
        ));
    }
    out.push_str(&format!("    ({total} samples)\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "raw backend  4242\n\
\tffffffff81aa0001 bpf_skb_change_proto\n\
\tffffffffc0001234 bpf_prog_9a0411e812aaf12c_kracauer_fastpath\n\
\tffffffff81aa0002 tcx_ingress\n\
\tffffffff81aa0003 tcp_sendmsg_locked\n\
\t           1234 __send\n\
\n\
raw backend  4242\n\
\tffffffff81aa0004 _copy_from_iter\n\
\tffffffff81aa0003 tcp_sendmsg_locked\n\
\t           1234 __send\n\
\n\
rustc  99\n\
\tffffffff81aa0004 _copy_from_iter\n\
\n\
in-krc-tb1-0  77\n\
\t           5678 kracauer_bench::proto::bulk_stream\n\
\n\
in-krc-tb1-0  77\n\
\tffffffff81aa0005 some_kernel_function\n\
\t           5678 kracauer_bench::proto::bulk_stream\n";

    #[test]
    fn samples_go_to_the_innermost_owner_and_other_threads_are_left_out() {
        let out = by_owner(SCRIPT, &["raw backend", "in-krc-tb1-0"]);
        assert!(out.contains("(4 samples)"), "{out}");
        for line in [
            "25.0%  fast path tc BPF program",
            "25.0%  TCP sendmsg",
            "25.0%  user space",
            "25.0%  other kernel",
        ] {
            assert!(out.contains(line), "{line:?} in:\n{out}");
        }
    }
}
