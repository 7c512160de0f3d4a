//! The quick bench as a smoke test: `kracauer-bench --quick` runs end to end against every
//! peer (Kracauer, nginx, the kernel) and writes its report and plots. No thresholds: the
//! figures are printed, never asserted. Privileged: skips loudly when not root, fails
//! under `KRACAUER_E2E=require` (the testbed's gate). The kracauer binary is found next to
//! the bench binary (`cargo test --workspace` builds both).

use std::process::Command;

#[test]
fn quick_bench_runs_end_to_end_and_writes_its_report() {
    if !kracauer_testbed::privileged("quick_bench_runs_end_to_end_and_writes_its_report") {
        return;
    }
    let out = std::env::temp_dir().join(format!("kracauer-bench-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_kracauer-bench"))
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
    for row in [
        "bulk download x1: Gbit/s",
        "rate c64: connections/s",
        "idle: total bytes/conn",
        "real TLS download x1: Gbit/s",
    ] {
        assert!(report.contains(row), "the report lacks {row:?}:\n{report}");
    }
    assert!(
        report.contains(
            "| metric | kracauer | nginx | kernel | kracauer offload=false | kracauer/nginx |"
        ),
        "the report lacks a peer column:\n{report}"
    );
    assert!(
        out.join("throughput.png").is_file(),
        "no throughput plot:\n{report}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
