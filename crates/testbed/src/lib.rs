//! Throwaway network-namespace testbeds for Kracauer, shared by the end-to-end tests and
//! `kracauer demo`.
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
//! the real binary in the router namespace. Dropping the topology stops what it started
//! and deletes every namespace it made, by name, also when a test panics.
//!
//! The namespace plumbing uses `ip` from iproute2: this crate is test infrastructure, not
//! the product.
#![deny(unsafe_code)]

use std::io;

pub mod client;
pub mod demo;
mod http;
pub mod kracauer;
pub mod netns;
pub mod pattern;
pub mod pki;
pub mod server;
pub mod topology;

pub use client::{Reply, Seen};
pub use kracauer::Kracauer;
pub use netns::Netns;
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

/// The gate for every privileged test: true when the test can run (root, and `ip` from
/// iproute2 present). Otherwise: with `KRACAUER_E2E=require` (CI) this panics; without it,
/// it prints a loud notice straight to the terminal and returns false so the test can
/// return early.
pub fn privileged(test: &str) -> bool {
    let why = if !is_root() {
        "needs root (network namespaces, veth pairs, a TUN device)"
    } else if std::process::Command::new("ip")
        .arg("-V")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        "needs `ip` from iproute2"
    } else {
        return true;
    };
    assert!(
        std::env::var("KRACAUER_E2E").as_deref() != Ok("require"),
        "{test}: {why}, and KRACAUER_E2E=require"
    );
    let message = format!(
        "\n*** SKIPPED {test}: {why}. Run as root, or set KRACAUER_E2E=require to make this a failure. ***\n"
    );
    // Through the stderr handle, not eprintln!, which the test harness captures.
    let _ = io::Write::write_all(&mut io::stderr(), message.as_bytes());
    false
}
