//! The access log at the benchmark's connection rate: with a sink that keeps up, every
//! flow has its line; with a sink that stalls (a pipe nobody reads, as journald under
//! back-pressure), every connection is still served, and the lines written plus the
//! lines the daemon counts as dropped are every flow. SIGUSR1 reopens a file log.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use kracauer_testbed::{Topology, Variant, require_privileged};

use super::{KRACAUER, eventually, figure, load, metric, metric_sum, scrape, serial};

/// Connections per run: a few seconds of the benchmark's rate, and fewer than the
/// client's ephemeral ports.
const N: u64 = 15_000;
/// Connections at once, as the benchmark's rate run.
const CONCURRENCY: usize = 64;

/// Configuration tables for a load run logging to `access`: closed flows leave the table
/// a second after their last FIN, and one client address may peek as often as the
/// load needs.
fn extra(access: &Path, queue: usize) -> String {
    format!(
        "[timeouts]\nlinger = \"1s\"\n\n[limits]\npeeks_per_client = 4096\n\n[log]\naccess = \"file:{}\"\nqueue = {queue}\n",
        access.display()
    )
}

/// Every daemon log of the testbed, concatenated (read after the daemon exited).
fn daemon_logs(tb: &Topology) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(tb.dir())
        .expect("testbed directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("kracauer-") && n.ends_with(".log"))
        })
        .collect();
    logs.sort();
    logs.iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// The daemon's last words on its access log: `(lines written, lines dropped)`.
fn final_count(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split("access log: ").nth(1))
        .unwrap_or_else(|| panic!("no closing access-log line:\n{log}"));
    let mut n = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok());
    (n.next().unwrap_or(0), n.next().unwrap_or(u64::MAX))
}

/// Waits until every flow of the load has ended in the engines (and so has been handed
/// to the access log or counted as dropped).
fn all_ended(k: &kracauer_testbed::Kracauer<'_>, n: u64) -> String {
    eventually("every flow to end", Duration::from_secs(120), || {
        let body = scrape(k);
        (metric_sum(&body, "kracauer_flows_ended_total") >= n).then_some(body)
    })
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn at_the_benchmark_connection_rate_every_flow_has_its_access_line() {
    require_privileged("at_the_benchmark_connection_rate_every_flow_has_its_access_line");
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let path = tb.dir().join("access.log");
    let k = tb
        .start_kracauer(KRACAUER, &tb.config(&extra(&path, 32 * 1024)))
        .unwrap();

    let run = load(&tb, N, CONCURRENCY);
    assert_eq!(run.failed, 0, "{run}\n{}", k.log());
    let body = all_ended(&k, N);
    assert_eq!(
        metric(
            &body,
            "kracauer_flows_ended_total{outcome=\"closed\",protocol=\"tcp\"}"
        ),
        Some(N)
    );
    let written = eventually(
        "the log thread to write every line",
        Duration::from_secs(60),
        || {
            let body = scrape(&k);
            (metric(&body, "kracauer_log_lines_total") == Some(N)).then_some(body)
        },
    );
    assert_eq!(metric_sum(&written, "kracauer_log_dropped_total"), 0);
    assert_eq!(
        metric(&written, "kracauer_route_flows_total{route=\"a.example\"}"),
        Some(N)
    );
    assert!(k.terminate().unwrap().success());

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, N);
    assert!(
        lines.iter().all(
            |l| l.contains(" INFO kracauer::access: closed client=198.51.100.2:")
                && l.contains(" name=a.example backend=[2001:db8:1::2]:80 ")
                && l.ends_with(" outcome=closed path=named route=a.example")
        ),
        "{}",
        lines.iter().take(3).copied().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(final_count(&daemon_logs(&tb)), (N, 0));
    figure(&format!(
        "access log, file sink: {N} connections at {:.0}/s ({CONCURRENCY} at once), {N} lines, 0 dropped",
        run.rate()
    ));
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_stalled_log_sink_never_holds_up_a_connection_and_the_drop_count_is_every_missing_line() {
    require_privileged(
        "a_stalled_log_sink_never_holds_up_a_connection_and_the_drop_count_is_every_missing_line",
    );
    let _serial = serial();
    let tb = Topology::build(Variant::Routed).unwrap();
    let fifo = tb.dir().join("access.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // The reader opens the pipe (so the daemon's open for writing returns) and then reads
    // nothing until told: the pipe fills, the logging thread blocks writing, the queue
    // fills. Once told, it reads everything until the daemon closes the pipe at exit.
    let (go, wait) = mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = File::open(&fifo).expect("open the pipe for reading");
            let _ = wait.recv();
            let mut all = String::new();
            f.read_to_string(&mut all).expect("read the pipe");
            all
        })
    };
    let queue = 1024;
    let k = tb
        .start_kracauer(KRACAUER, &tb.config(&extra(&fifo, queue)))
        .unwrap();

    let run = load(&tb, N, CONCURRENCY);
    assert_eq!(
        run.failed,
        0,
        "a connection failed while the log sink was stalled: {run}\n{}",
        k.log()
    );
    let body = all_ended(&k, N);
    let dropped = metric(&body, "kracauer_log_dropped_total{reason=\"queue_full\"}").unwrap();
    assert!(
        dropped > 0 && dropped < N,
        "the stalled sink should have cost lines: {dropped}"
    );
    assert_eq!(
        metric(&body, "kracauer_log_dropped_total{reason=\"write_error\"}"),
        Some(0)
    );
    go.send(()).unwrap();
    assert!(k.terminate().unwrap().success());
    let text = reader.join().unwrap();
    let got = text.lines().count() as u64;
    assert!(
        text.lines()
            .all(|l| l.ends_with(" outcome=closed path=named route=a.example")),
        "whole lines only"
    );
    let (written, dropped_at_exit) = final_count(&daemon_logs(&tb));
    assert_eq!(
        written, got,
        "what the daemon says it wrote is what arrived"
    );
    assert_eq!(
        dropped_at_exit, dropped,
        "nothing dropped after the flows ended"
    );
    assert_eq!(
        got + dropped,
        N,
        "every line was written or counted as dropped"
    );
    figure(&format!(
        "access log, stalled pipe (queue {queue}): {N} connections at {:.0}/s, none failed; {got} lines arrived, {dropped} counted as dropped",
        run.rate()
    ));
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn sigusr1_reopens_the_access_log_that_logrotate_moved() {
    require_privileged("sigusr1_reopens_the_access_log_that_logrotate_moved");
    let tb = Topology::build(Variant::Routed).unwrap();
    let path = tb.dir().join("access.log");
    let k = tb
        .start_kracauer(KRACAUER, &tb.config(&extra(&path, 1024)))
        .unwrap();
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    eventually("the first line", Duration::from_secs(30), || {
        (lines(&path) == 1).then_some(())
    });
    let rotated = tb.dir().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let kill = Command::new("kill")
        .args(["-USR1", &k.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    eventually("the daemon to reopen", Duration::from_secs(10), || {
        k.log().contains("reopened").then_some(())
    });
    assert_eq!(tb.http_get("a.example", "/").unwrap().status, 200);
    eventually(
        "the second line, in the new file",
        Duration::from_secs(30),
        || (lines(&path) == 1).then_some(()),
    );
    assert_eq!(lines(&rotated), 1);
}
