//! Telling the service manager where the daemon is (`Type=notify`, `sd_notify(3)`):
//! `READY=1` once the host is set up and the workers run, `RELOADING=1` (with
//! `MONOTONIC_USEC`, which systemd 253 and later want beside it) when a SIGHUP reload
//! starts and `READY=1` when it has ended, either way; `STOPPING=1` when the daemon stops.
//! Each also sets `STATUS=`, the line `systemctl status` shows. On a live upgrade the old
//! process hands the service over with `MAINPID=` of the new one and waits, with
//! `BARRIER=1`, until the service manager has read it, so that its own exit is not taken
//! for the service's end ([`hand_over`]).
//!
//! Outside systemd (no `NOTIFY_SOCKET` in the environment) every call does nothing. A
//! notification that cannot be sent is logged and otherwise ignored: it never stops the
//! daemon.

use std::os::fd::AsFd;
use std::time::Duration;

use sd_notify::NotifyState;

/// How long [`hand_over`] waits for the service manager to read the new main PID.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);

/// The host is set up and the data plane runs; `status` says how.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts. Followed by [`ready`] when it has ended, applied or refused.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => tracing::warn!("cannot read the monotonic clock for systemd: {e}"),
    }
    states.push(NotifyState::Status("reloading the configuration"));
    send(&states);
}

/// The daemon is stopping: it undoes the host set-up and exits.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: undoing the host set-up"),
    ]);
}

/// A live upgrade committed: `pid` is the service's main process from now on. Returns
/// once the service manager has read that (or after five seconds).
pub fn hand_over(pid: u32) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    send(&[
        NotifyState::MainPid(pid),
        NotifyState::Status("upgraded: the new process serves"),
    ]);
    barrier();
}

/// `BARRIER=1` (`sd_notify_barrier(3)`): the manager closes the pipe's write end it was
/// sent once it has processed every earlier message, which the read end sees as EOF.
fn barrier() {
    let (reader, writer) = match rustix::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return tracing::warn!("cannot make a pipe for BARRIER=1: {e}"),
    };
    let sent = sd_notify::notify_with_fds(&[NotifyState::Custom("BARRIER=1")], &[writer.as_fd()]);
    drop(writer);
    if let Err(e) = sent {
        return tracing::warn!("cannot send BARRIER=1 to the service manager: {e}");
    }
    let (done, wait) = std::sync::mpsc::channel();
    let reading = std::thread::Builder::new()
        .name("kracauer-barrier".into())
        .spawn(move || {
            let _ = rustix::io::read(&reader, &mut [0u8; 1]);
            let _ = done.send(());
        });
    if reading.is_err() || wait.recv_timeout(BARRIER_TIMEOUT).is_err() {
        tracing::warn!("the service manager did not confirm the new main PID");
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
    }
}
