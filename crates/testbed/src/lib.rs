//! Throwaway network-namespace testbeds for Kracauer, shared by the end-to-end tests, the
//! benchmark and `kracauer-demo`.
//!
//! A [`Topology`] is four namespaces joined by veth pairs:
//!
//! ```text
//! client 198.51.100.2 ── 198.51.100.1 router 2001:db8:1::1 ── bridge ─┬─ 2001:db8:1::2 backend a
//! (IPv4 only, default via router)     (kracauer runs here)            └─ 2001:db8:1::3 backend b
//! ```
//!
//! The service address 203.0.113.10 is either routed to the router ([`Variant::Routed`])
//! or assigned to it ([`Variant::Shared`], with a TCP echo on port 22 that must keep
//! answering). Each backend runs HTTP on port 80 and HTTPS on 443 and 8443 (certificates
//! from a throwaway CA made at run time) and answers with the peer address it saw
//! ([`server`]). [`client`] holds the in-process clients and `curl`; [`kracauer`] starts
//! the real binary, whose path the caller gives, in the router namespace. Dropping the topology stops what it started
//! and deletes every namespace it made, by name, also when a test panics.
//!
//! The namespace plumbing uses `ip` from iproute2: this crate is test infrastructure, not
//! the product. The `kracauer` binary never links it (`kracauer-demo` does); the
//! end-to-end tests use it as a dev-dependency, and every privileged test starts with
//! [`require_privileged`].
#![deny(unsafe_code)]

use std::io;

pub mod bird;
pub mod client;
pub mod demo;
mod http;
pub mod kracauer;
pub mod netns;
pub mod outage;
pub mod pattern;
pub mod pki;
mod pmtu;
pub mod prom;
pub mod quic;
pub mod scaleout;
pub mod server;
pub mod topology;

pub use client::{Reply, Seen};
pub use kracauer::{BpffsHolder, Kracauer};
pub use netns::{Netns, OwnedNetns};
pub use outage::Outage;
/// The TLS library of the clients and backends, for matching on [`Error::Tls`].
pub use rustls;
pub use topology::{Topology, Variant};

/// Why a testbed operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building the testbed needs root (network namespaces, veth pairs, TUN).
    #[error("the testbed needs root (network namespaces, veth pairs, a TUN device); run as root")]
    NotRoot,
    /// An external command (`ip`, `sysctl`, `nft`, `curl`) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A program or thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn { what: String, source: io::Error },
    /// Some step of building or using the testbed went wrong.
    #[error("{0}")]
    Setup(String),
    /// Socket I/O.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// TLS, in a client or a backend.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Certificate generation.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

impl Error {
    fn spawn(what: &str, source: io::Error) -> Self {
        Error::Spawn {
            what: what.to_owned(),
            source,
        }
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The gate at the top of every privileged test: returns when the test can run (root, and
/// `ip` from iproute2 present), and panics saying what is missing otherwise. A privileged
/// test is also marked `#[ignore = "privileged: ..."]`, so a run without root lists it as
/// ignored instead of failing it, and `cargo test -- --include-ignored` (as root, what CI
/// runs) runs it: a privileged test can fail or pass, never pass without having run.
#[track_caller]
pub fn require_privileged(test: &str) {
    require_privileged_and(test, &[]);
}

/// [`require_privileged`], and each of `tools` answers `TOOL --version` (e.g. `python3`,
/// `curl`); panics naming what is missing.
#[track_caller]
pub fn require_privileged_and(test: &str, tools: &[&str]) {
    let mut missing: Vec<String> = Vec::new();
    if !is_root() {
        missing.push("root (network namespaces, veth pairs, a TUN device)".into());
    }
    if !runs("ip", "-V") {
        missing.push("`ip` from iproute2".into());
    }
    for tool in tools {
        if !runs(tool, "--version") {
            missing.push(format!("`{tool}` on the PATH"));
        }
    }
    assert!(
        missing.is_empty(),
        "{test} is privileged and cannot run here: it needs {}. Run it as root with the \
         tools installed (`.ci/run` installs them), or leave out `--include-ignored` to skip \
         it as ignored.",
        missing.join(", ")
    );
}

/// Whether `program arg` runs and exits 0.
fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "`krc-no-such-tool` on the PATH")]
    fn a_privileged_test_without_its_tools_fails_naming_them() {
        require_privileged_and("the_test", &["krc-no-such-tool"]);
    }
}
