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
    Ok(format!(
        "{dir}, one stream, {moved} while profiled.\n\n\
         By thread name, the whole machine (self time, above 1%):\n\n{}\n\
         The data-path threads only, by thread and symbol (self time, share of theirs, \
         above 1%):\n\n{}\n\
         The data-path threads only, by function (inclusive time with callees, share of \
         theirs, above 2%):\n\n{}",
        report("comm", false, "1", 15, None)?,
        report("comm,sym", false, "1", 40, Some(&comms))?,
        report("sym", true, "2", 70, Some(&comms))?,
        dir = if up { "Upload" } else { "Download" },
    ))
}
