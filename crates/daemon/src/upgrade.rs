//! The live upgrade (SIGUSR2): a new process takes over the TUN queues and the state of
//! every flow, and the old one exits only once the new one is ready
//! (docs/architecture.md, "Upgrades"; docs/operator-guide.md, "Upgrades and restarts").
//!
//! The old process starts the new binary as a **child that takes over**, not by
//! re-executing itself: until the new process says it is ready, the old one still holds
//! everything and can go on serving, so an upgrade that fails (the binary crashes, the
//! configuration is invalid, the snapshot is refused) leaves the address served. The
//! binary is the file at the path this process was started from (`argv[0]` made
//! absolute against the start's working directory, symlinks not followed, so a
//! symlink switched to a new release is followed; `/proc/self/exe` at start when
//! `argv[0]` has no `/`), started with this process's own arguments.
//!
//! The handover, over a socket pair whose one end the child inherits (its number in
//! `KRACAUER_UPGRADE_FD`):
//! 1. the new process loads and validates the configuration, then says **Hello** (or
//!    **Fail** with the reason); the old one serves on meanwhile;
//! 2. the old one pauses its workers (no packet is read; the kernel keeps them queued),
//!    snapshots each worker's engine and sends the **State**: the seed, the TUN's name
//!    and offloads, the host set-up (the sysctls to put back, the diversions), one
//!    snapshot per worker in queue order, and, by `SCM_RIGHTS`, the queue descriptors and
//!    the metrics listener;
//! 3. the new process restores every engine, adopts the host set-up (it removes and adds
//!    nothing) and the queues, and says **Ready**, reading nothing yet;
//! 4. the old one answers **Commit** and exits without undoing the host set-up; the new
//!    one starts its workers on the queues. The steering program stays attached to the
//!    device, which never lost a queue. With another `[tun] offload`, the new process
//!    first waits for the old one's exit and re-opens every queue in the new mode
//!    (`upgrade/offload.rs`: the device's mode changes only while it has no queue).
//!    Only now does the new process bring the host's diversions to its configuration's
//!    listen addresses and ports, if they changed (its engines serve them already, and
//!    end the flows of removed ones).
//!
//! A new `[tun] name` or `instance` is refused (a **Fail** before ready): the device is the
//! instance's identity (`reload::how_to_apply`).
//!
//! Any failure before the commit (a **Fail**, the socket closing, no answer within
//! [`HELLO_TIMEOUT`] or [`READY_TIMEOUT`]) and the old process kills the child, waits
//! for it, resumes its workers on the same engines and logs why.

mod link;
mod new;
mod offload;
mod old;
mod state;
#[allow(unsafe_code)]
mod syscalls;
mod workers;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use self::new::{inherited, take_over};
pub use self::old::{Upgrade, upgrade};

/// The environment variable naming the inherited end of the handover socket.
pub const FD_ENV: &str = "KRACAUER_UPGRADE_FD";
/// For tests of a refused snapshot: the engine snapshot version the new process accepts
/// instead of its own. Never set in production.
pub const TESTING_SNAPSHOT_VERSION_ENV: &str = "KRACAUER_TESTING_ACCEPT_SNAPSHOT_VERSION";
/// How long the new process has to load its configuration and say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the new process has to restore the state and say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary and arguments an upgrade starts, as this process was started.
#[derive(Debug, Clone)]
pub struct Origin {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
}

impl Origin {
    /// This process's binary path and arguments; call it at the start, before any
    /// change of working directory.
    pub fn at_start() -> Self {
        let mut argv = std::env::args_os();
        let argv0 = argv.next().map(PathBuf::from);
        let exe = match argv0 {
            Some(p) if p.as_os_str().as_encoded_bytes().contains(&b'/') => {
                if p.is_absolute() {
                    p
                } else {
                    std::env::current_dir().map_or(p.clone(), |d| d.join(p))
                }
            }
            _ => std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
        };
        Self {
            exe,
            args: argv.collect(),
        }
    }
}
