//! The knobs of one run, from the command line.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How to call `kracauer-bench`.
pub const USAGE: &str = "usage: kracauer-bench --kracauer PATH [--quick] [--out DIR] [--rounds N] [--no-perf] [--rate-only]\n\
     \n  --kracauer PATH  the kracauer binary to measure (required: the bench never guesses\n                   which build it measures; e.g. target/release/kracauer after\n                   `cargo build --release -p kracauer`)\n  --rate-only      only the connection-rate run, Kracauer with the fast path on and off,\n                   and (unless --no-perf) its profile, one per round";

/// The knobs of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `kracauer` binary under test.
    pub kracauer: PathBuf,
    /// What `kracauer --version` said, for the report.
    pub kracauer_version: String,
    pub quick: bool,
    pub rounds: usize,
    pub bulk: Duration,
    pub rate: Duration,
    pub idle: usize,
    pub tls_bytes: u64,
    /// Bytes of the HTTP/3 download.
    pub h3_bytes: u64,
    pub perf: bool,
    /// Only the rate run, of the fast path on and off, and its profile.
    pub rate_only: bool,
    pub out: PathBuf,
}

impl Plan {
    /// The plan the arguments (without the program name) ask for, or what is wrong with
    /// them.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Plan, String> {
        let mut plan = Plan {
            kracauer: PathBuf::new(),
            kracauer_version: String::new(),
            quick: false,
            rounds: 3,
            bulk: Duration::from_secs(3),
            rate: Duration::from_secs(3),
            idle: 10_000,
            tls_bytes: 256 << 20,
            h3_bytes: 64 << 20,
            perf: true,
            rate_only: false,
            out: PathBuf::from("bench/results"),
        };
        let mut args = args.into_iter();
        let mut rounds = None;
        let mut kracauer = None;
        while let Some(a) = args.next() {
            match a.as_str() {
                "--kracauer" => {
                    kracauer = Some(PathBuf::from(
                        args.next().ok_or("--kracauer needs the binary's path")?,
                    ));
                }
                "--quick" => {
                    plan.quick = true;
                    plan.bulk = Duration::from_millis(400);
                    plan.rate = Duration::from_millis(500);
                    plan.idle = 300;
                    plan.tls_bytes = 16 << 20;
                    plan.h3_bytes = 8 << 20;
                    plan.perf = false;
                    plan.rounds = 1;
                }
                "--no-perf" => plan.perf = false,
                "--rate-only" => plan.rate_only = true,
                "--out" => plan.out = args.next().ok_or("--out needs a directory")?.into(),
                "--rounds" => {
                    rounds = Some(
                        args.next()
                            .and_then(|n| n.parse().ok())
                            .ok_or("--rounds needs a number")?,
                    );
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if let Some(r) = rounds {
            plan.rounds = r;
        }
        plan.kracauer = kracauer.ok_or_else(|| format!("--kracauer PATH is required\n{USAGE}"))?;
        plan.kracauer_version = version(&plan.kracauer)?;
        Ok(plan)
    }
}

/// `BINARY --version`, which also proves the binary runs.
fn version(binary: &std::path::Path) -> Result<String, String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && text.starts_with("kracauer ") {
        Ok(text)
    } else {
        Err(format!(
            "{} --version said {text:?} ({}): not a kracauer binary",
            binary.display(),
            out.status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn without_kracauer_path_the_bench_refuses_and_says_so() {
        let e = Plan::from_args(args(&["--quick"])).unwrap_err();
        assert!(e.contains("--kracauer PATH is required"), "{e}");
    }

    #[test]
    fn a_binary_that_is_not_kracauer_is_refused() {
        let e = Plan::from_args(args(&["--kracauer", "/bin/true"])).unwrap_err();
        assert!(e.contains("not a kracauer binary"), "{e}");
        let e = Plan::from_args(args(&["--kracauer", "/nonexistent/kracauer"])).unwrap_err();
        assert!(e.contains("cannot run /nonexistent/kracauer"), "{e}");
    }
}
