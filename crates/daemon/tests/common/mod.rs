//! Helpers for the privileged tests: network namespaces that clean up after themselves,
//! running code inside one, and the root check that skips loudly (or fails, when
//! `KRACAUER_E2E=require`).
#![allow(dead_code)] // each test file uses its own part

use std::fs::File;
use std::io::Write as _;
use std::process::{Command, Output};

/// Whether this test may run: root and `ip` are needed. Without them the test is skipped
/// with a loud message, unless `KRACAUER_E2E=require`, where it fails.
pub fn privileged(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    let why = if root {
        "`ip` (iproute2) is missing"
    } else {
        "not running as root"
    };
    if std::env::var("KRACAUER_E2E").as_deref() == Ok("require") {
        panic!("{test}: {why}, and KRACAUER_E2E=require");
    }
    let message = format!(
        "\n!!! SKIPPED {test}: {why}; run as root (KRACAUER_E2E=require makes this fail) !!!\n"
    );
    // Through the stderr handle, not eprintln!, which the test harness captures.
    let _ = std::io::stderr().write_all(message.as_bytes());
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A network namespace named `krc-TAG-PID`, deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("krc-{tag}-{}", std::process::id());
        // A namespace of that name can only be a leftover of this very pid: replace it.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, checked; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let o = run(Command::new("ip").arg("-n").arg(&self.name).args(args));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A command run inside the namespace (`ip netns exec NAME PROGRAM`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Reads a file inside the namespace (e.g. a sysctl under /proc/sys/net).
    pub fn read(&self, path: &str) -> String {
        let o = run(self.command("cat").arg(path));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
