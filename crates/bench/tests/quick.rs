//! The quick bench as a smoke test: `kracauer-bench --quick` runs end to end against every
//! peer (Kracauer with the kernel fast path on and off, nginx, the kernel) and writes its
//! report and plots. No thresholds on speed: the figures are printed, never asserted; the
//! one check on a figure is a packet count (the fast path column's bytes did not cross
//! the TUN).
//!
//! The kracauer binary is another package's, so cargo gives this test no path to it: the
//! test asks cargo to build it (`cargo build -p kracauer --message-format=json`, in this
//! test's profile) and takes the executable's path from cargo's own report of what it
//! built. Privileged: `#[ignore]`d (run it as root with `--include-ignored`); it panics
//! when root or `ip` is missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Builds the `kracauer` binary in this test's profile (release when this test was built
/// without debug assertions, as `cargo test --release` does; dev otherwise) and returns
/// the path cargo reports for it.
fn build_kracauer() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "kracauer", "--bin", "kracauer"])
        .arg("--message-format=json-render-diagnostics");
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let out = build
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "cargo build -p kracauer failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "kracauer")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no kracauer executable")
}

#[test]
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn quick_bench_runs_end_to_end_and_writes_its_report() {
    kracauer_testbed::require_privileged("quick_bench_runs_end_to_end_and_writes_its_report");
    let kracauer = build_kracauer();
    let out = std::env::temp_dir().join(format!("kracauer-bench-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_kracauer-bench"))
        .arg("--kracauer")
        .arg(&kracauer)
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .output()
        .expect("start kracauer-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "kracauer-bench --quick failed:\n{stderr}\n{stdout}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(
        report.contains(&format!("({})", kracauer.display())),
        "the report does not name the binary under test:\n{report}"
    );
    for row in [
        "bulk download x1: Gbit/s",
        "rate c64: connections/s",
        "idle: total bytes/conn",
        "real TLS download x1: Gbit/s",
        "bulk download x1: TUN packets read per MB",
        "### Issue 21's goals, judged from this run's medians",
    ] {
        assert!(report.contains(row), "the report lacks {row:?}:\n{report}");
    }
    assert!(
        report.contains(
            "| metric | kracauer fastpath=on | kracauer fastpath=off | nginx | kernel | kracauer offload=false | fastpath=on / kernel |"
        ),
        "the report lacks a peer column:\n{report}"
    );
    // The fastpath=on column measured the kernel fast path: its bulk bytes did not cross
    // the TUN (a count of packets, not a timing).
    let row = |metric: &str| -> Vec<f64> {
        report
            .lines()
            .find(|l| l.starts_with(&format!("| {metric} |")))
            .unwrap_or_else(|| panic!("no row {metric:?}:\n{report}"))
            .split('|')
            .skip(2)
            .map(|c| c.trim().parse().unwrap_or(f64::NAN))
            .collect()
    };
    let tun = row("bulk download x1: TUN packets read per MB");
    let (on, off) = (tun[0], tun[1]);
    assert!(
        on.is_finite() && off.is_finite() && on * 10.0 < off,
        "fastpath=on read {on} TUN packets per MB, fastpath=off {off}: the fast path did \
         not carry the bytes:\n{report}"
    );
    assert!(
        out.join("throughput.png").is_file(),
        "no throughput plot:\n{report}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
