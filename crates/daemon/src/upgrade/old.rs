//! The old process's side of the upgrade: start the new binary, hand everything over,
//! and either exit (committed) or resume serving (failed).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, Command, Stdio};

use rustix::io::FdFlags;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::link::{Kind, Link, Message};
use super::state::State;
use super::{FD_ENV, HELLO_TIMEOUT, Origin, READY_TIMEOUT};
use crate::run::Running;

/// How an upgrade ended.
#[derive(Debug)]
pub enum Upgrade {
    /// The new process (this pid) runs; this one must exit without undoing the host
    /// set-up.
    Committed { pid: u32 },
    /// This process serves on, its workers resumed; why the upgrade failed.
    Failed(String),
}

/// Upgrades to `origin`'s binary: see the module's documentation for the steps. Blocks
/// the control plane until done (at most [`HELLO_TIMEOUT`] plus [`READY_TIMEOUT`]).
pub fn upgrade(origin: &Origin, running: &mut Running) -> Upgrade {
    let (child, link) = match spawn(origin) {
        Ok(started) => started,
        Err(e) => {
            return Upgrade::Failed(format!("cannot start {}: {e}", origin.exe.display()));
        }
    };
    tracing::info!(
        "upgrade: started {} (pid {}); waiting for it to load the configuration",
        origin.exe.display(),
        child.id()
    );
    if let Err(why) = expect(&link, Kind::Hello, HELLO_TIMEOUT) {
        return abandon(child, link, why, running, false);
    }
    // From here no packet is read until the commit or the resume.
    if let Err(e) = running.workers.pause() {
        return abandon(
            child,
            link,
            format!("a worker had failed: {e}"),
            running,
            true,
        );
    }
    let state = State {
        seed: running.seed,
        tun: running.tun.clone(),
        offload: running.offload,
        queues: running.workers.parked().len() as u16,
        metrics: running.metrics.is_some(),
        sysctls: running.host.saved_sysctls(),
        diverts: running.host.diverts.clone(),
        snapshots: running
            .workers
            .parked()
            .iter()
            .map(|p| p.snapshot())
            .collect(),
    };
    let mut fds: Vec<BorrowedFd<'_>> = running
        .workers
        .parked()
        .iter()
        .map(|p| p.queue().as_fd())
        .collect();
    if let Some(m) = &running.metrics {
        fds.push(m.fd.as_fd());
    }
    let flows: usize = state.snapshots.iter().map(Vec::len).sum();
    if let Err(e) = link.send(Kind::State, &state.encode(), &fds) {
        drop(fds);
        return abandon(
            child,
            link,
            format!("cannot send the state: {e}"),
            running,
            true,
        );
    }
    drop(fds);
    tracing::info!(
        "upgrade: handed over {} queues and {flows} bytes of flow state",
        state.queues
    );
    if let Err(why) = expect(&link, Kind::Ready, READY_TIMEOUT) {
        return abandon(child, link, why, running, true);
    }
    if let Err(e) = link.send(Kind::Commit, &[], &[]) {
        return abandon(child, link, format!("cannot commit: {e}"), running, true);
    }
    Upgrade::Committed { pid: child.id() }
}

/// Starts the new binary with the inherited end of a fresh socket pair.
fn spawn(origin: &Origin) -> std::io::Result<(Child, Link)> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // The child's end survives exec; ours does not. The control plane starts no other
    // process, so nothing else inherits it in the meantime.
    rustix::io::fcntl_setfd(&theirs, FdFlags::empty())?;
    let child = Command::new(&origin.exe)
        .args(&origin.args)
        .env(FD_ENV, theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()?;
    drop(theirs);
    Ok((child, Link::new(ours)))
}

/// Waits for a message of `kind`; anything else is why the upgrade failed.
fn expect(link: &Link, kind: Kind, timeout: std::time::Duration) -> Result<Message, String> {
    match link.recv(timeout) {
        Ok(m) if m.kind == kind => Ok(m),
        Ok(m) if m.kind == Kind::Fail => Err(format!(
            "the new process refused: {}",
            String::from_utf8_lossy(&m.payload)
        )),
        Ok(m) => Err(format!("unexpected {:?} from the new process", m.kind)),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(format!(
            "the new process did not answer within {} s",
            timeout.as_secs()
        )),
        Err(e) => Err(format!("the new process went away: {e}")),
    }
}

/// The upgrade failed: the child is killed and reaped (it read no packet: it waits for
/// the commit), and the workers, if `paused`, resume on the same engines.
fn abandon(
    mut child: Child,
    link: Link,
    why: String,
    running: &mut Running,
    paused: bool,
) -> Upgrade {
    let _ = child.kill();
    let status = child.wait();
    drop(link);
    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
    if paused {
        if let Err(e) = running.workers.resume() {
            return Upgrade::Failed(format!(
                "{why} (new process: {status}); and the workers could not resume: {e}"
            ));
        }
    }
    Upgrade::Failed(format!("{why} (new process: {status})"))
}
