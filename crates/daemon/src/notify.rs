//! Telling the service manager where the daemon is (`Type=notify`, `sd_notify(3)`):
//! `READY=1` once the host is set up and the workers run, `RELOADING=1` (with
//! `MONOTONIC_USEC`, which systemd 253 and later want beside it) when a SIGHUP reload
//! starts and `READY=1` when it has ended, either way; `STOPPING=1` when the daemon stops.
//! Each also sets `STATUS=`, the line `systemctl status` shows.
//!
//! Outside systemd (no `NOTIFY_SOCKET` in the environment) every call does nothing. A
//! notification that cannot be sent is logged and otherwise ignored: it never stops the
//! daemon.

use sd_notify::NotifyState;

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

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {e}");
    }
}
