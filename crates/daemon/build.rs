//! Build information for `kracauer --version` (and anything else that wants it), as
//! compile-time environment variables:
//!
//! - `KRACAUER_COMMIT`: the git commit the build started from (12 hex digits), from
//!   `git rev-parse`; a `KRACAUER_COMMIT` in the build's environment wins (a build from a
//!   source tarball can name its commit); `unknown` without either.
//! - `KRACAUER_COMMIT_DATE`: that commit's date (`YYYY-MM-DD`), or `unknown`.
//! - `KRACAUER_BUILD`: profile, target and compiler, e.g.
//!   `release, x86_64-unknown-linux-gnu, rustc 1.95.0 (...)`.
//! - `KRACAUER_FEATURES`: the cargo features enabled, or `none`.
//!
//! No dependencies, and no failure: without git (or outside a checkout) the values say
//! `unknown` and the build goes on. The script reruns when HEAD or the branch it names
//! moves, so the commit is never stale after a commit or a checkout; uncommitted changes
//! are not tracked (the commit is the one the tree started from).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KRACAUER_COMMIT");
    watch_git();

    let commit = std::env::var("KRACAUER_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let date = git(&["log", "-1", "--format=%cs", commit.as_str(), "--"])
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let compiler = output(Command::new(rustc).arg("--version"))
        .unwrap_or_else(|| "rustc (version unknown)".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_lowercase))
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(", ")
    };

    println!("cargo:rustc-env=KRACAUER_COMMIT={commit}");
    println!("cargo:rustc-env=KRACAUER_COMMIT_DATE={date}");
    println!("cargo:rustc-env=KRACAUER_BUILD={profile}, {target}, {compiler}");
    println!("cargo:rustc-env=KRACAUER_FEATURES={features}");
}

/// Reruns this script when HEAD moves: HEAD itself (a checkout), the branch it points at
/// (a commit) and `packed-refs` (a branch packed by `git gc`).
fn watch_git() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else {
        return;
    };
    let common = git(&["rev-parse", "--git-common-dir"]).map_or(git_dir.clone(), PathBuf::from);
    let mut watch = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common.join(branch));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        // Relative paths from git are relative to this package's directory, as are
        // cargo's: absolute ones are printed as they are.
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git ARGS` in this package's directory: its first line of output, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    output(Command::new("git").args(args))
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}
