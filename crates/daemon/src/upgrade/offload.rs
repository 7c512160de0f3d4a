//! A live upgrade to another `[tun] offload`: once the old process has let go, the new
//! one re-opens every queue of the TUN device in the new mode before its workers start.
//!
//! Whether reads and writes carry the virtio-net header is a flag of the device
//! (`IFF_VNET_HDR`), which the kernel adds to each packet as it is read; it takes the flag
//! from `TUNSETIFF` only when the queue being attached is the device's only one, attached
//! or disabled (`tun_set_iff` returns early for any later queue). The offloads
//! (`TUNSETOFFLOAD`) are device-wide too. So no queue changes mode while another is open,
//! and the steps, after the commit, are:
//! 1. wait for the old process to exit (it holds the same queues until then);
//! 2. make the device persistent, unless it is already (the fast path's, or the
//!    operator's), so that it and its routes, rules, steering and fast-path programs
//!    outlive the moment with no queue; with offloads going off, turn them off first, so
//!    that no GSO super-packet is queued for a reader without the header;
//! 3. close every queue: the packets waiting in them are dropped by the kernel, and so
//!    are those routed into the device until the first new queue is attached (the
//!    device has no carrier meanwhile): the peers' TCP sends them again;
//! 4. attach a queue with the new flags and read back what the device took; attach the
//!    others beside it; turn the offloads on if the header is;
//! 5. put persistence back as it was.
//!
//! Each worker then parses in the mode its queue has, read from the device, not assumed:
//! if another process still holds a queue of the device (so the flag cannot change), the
//! new queues have the device's mode, the workers read that, and the log says why.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::process::Pid;

use crate::runtime::DataPlane;
use crate::tun::Queue;
use crate::tun::syscalls::{self, IFF_PERSIST};

/// How long the new process waits for the old one to exit.
const LET_GO: Duration = Duration::from_secs(10);
/// How long, once it has, the new process tries to attach its first queue in the new
/// mode while some other descriptor of a queue is still open.
const RETRY: Duration = Duration::from_secs(2);
/// `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`: what the device is opened with at a start.
const TCP_OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
/// `TUN_F_USO4 | TUN_F_USO6`, asked for beside them where the kernel has them (6.2).
const UDP_OFFLOADS: libc::c_uint = libc::TUN_F_USO4 | libc::TUN_F_USO6;
const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;

/// Re-opens the queues of the parked `planes` (attached to the TUN device `name`) with
/// offloads on or off as `want` says, once `old` (the process that handed them over) has
/// exited. Returns whether the queues carry the virtio-net header now; an error (the
/// device could not be opened at all) leaves the workers with no queue.
pub fn reopen(
    planes: &mut [DataPlane],
    name: &str,
    want: bool,
    old: Option<Pid>,
) -> Result<bool, String> {
    let Some(first) = planes.first() else {
        return Ok(want);
    };
    let handed = first.queue().as_fd();
    let flags = tun_flags(handed).map_err(|e| format!("TUNGETIFF: {e}"))?;
    let persistent = flags & IFF_PERSIST != 0;
    if !persistent {
        syscalls::set_persist(handed, true)
            .map_err(|e| format!("cannot keep the TUN device while re-opening it: {e}"))?;
    }
    if !want {
        if let Err(e) = syscalls::set_offload(handed, 0) {
            tracing::warn!("upgrade: cannot turn the TUN offloads off before re-opening: {e}");
        }
    }
    wait_for_exit(old);
    // A carrier keeper's disabled queue would keep the device in its mode: the old
    // process's goes now (this process starts its own once it runs).
    crate::keeper::end_earlier(name, None);
    let plain = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short
        | (flags & libc::IFF_MULTI_QUEUE as libc::c_short);
    let mut result = close_all(planes).and_then(|()| attach_all(planes.len(), name, plain, want));
    if let Ok((fds, _)) = &result {
        if !persistent {
            if let Err(e) = syscalls::set_persist(fds[0].as_fd(), false) {
                result = Err(format!("cannot make the TUN device transient again: {e}"));
            }
        }
    }
    let (fds, got) = result?;
    for (plane, fd) in planes.iter_mut().zip(fds) {
        drop(plane.replace_queue(Queue::adopt(fd, got)));
    }
    let on = |b: bool| if b { "on" } else { "off" };
    if got == want {
        tracing::info!(
            "upgrade: the TUN queues re-opened with offloads {} ([tun] offload = {want})",
            on(got)
        );
    } else {
        tracing::warn!(
            "upgrade: the TUN queues re-opened with offloads {} as the device has them, not \
             [tun] offload = {want}: another process held a queue of {name:?} for {} s, so \
             its mode could not change; a restart applies it",
            on(got),
            RETRY.as_secs()
        );
    }
    Ok(got)
}

/// Waits (at most [`LET_GO`]) until `old` is no longer this process's parent: it has
/// exited, and its descriptors are closed.
fn wait_for_exit(old: Option<Pid>) {
    let Some(old) = old else { return };
    let end = Instant::now() + LET_GO;
    while rustix::process::getppid() == Some(old) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Closes every plane's queue, leaving in its place a descriptor attached to nothing
/// (no worker runs: they are parked).
fn close_all(planes: &mut [DataPlane]) -> Result<(), String> {
    for plane in planes {
        let placeholder =
            syscalls::open_unattached().map_err(|e| format!("cannot open /dev/net/tun: {e}"))?;
        drop(plane.replace_queue(Queue::adopt(placeholder, false)));
    }
    Ok(())
}

/// Attaches `n` queues to `name`, the first with the header if `want`; returns them and
/// whether the device took the header. While another queue is still open the device
/// keeps its mode: the attempt is undone and made again, for at most [`RETRY`].
fn attach_all(
    n: usize,
    name: &str,
    plain: libc::c_short,
    want: bool,
) -> Result<(Vec<OwnedFd>, bool), String> {
    let open = |flags| -> Result<OwnedFd, String> {
        syscalls::attach(name, flags)
            .map_err(|e| format!("cannot attach a queue to the TUN device {name:?}: {e}"))
    };
    let flags = plain | if want { IFF_VNET_HDR } else { 0 };
    let end = Instant::now() + RETRY;
    let (first, got) = loop {
        let fd = open(flags)?;
        let got = tun_flags(fd.as_fd()).map_err(|e| format!("TUNGETIFF: {e}"))? & IFF_VNET_HDR != 0;
        if got == want || Instant::now() >= end {
            break (fd, got);
        }
        drop(fd);
        std::thread::sleep(Duration::from_millis(20));
    };
    // Refused offloads leave the header on and the kernel segmenting for us: the
    // workers parse the same either way.
    let bits = if got { TCP_OFFLOADS } else { 0 };
    if let Err(e) = syscalls::set_offload(first.as_fd(), bits) {
        tracing::warn!("upgrade: cannot set the TUN offloads to {bits:#x}: {e}");
    } else if got && syscalls::set_offload(first.as_fd(), TCP_OFFLOADS | UDP_OFFLOADS).is_err() {
        tracing::debug!("upgrade: no UDP segmentation offload on the TUN");
    }
    let mut fds = vec![first];
    while fds.len() < n {
        fds.push(open(flags)?);
    }
    Ok((fds, got))
}

/// The flags of the device `queue` is a queue of.
fn tun_flags(queue: std::os::fd::BorrowedFd<'_>) -> std::io::Result<libc::c_short> {
    syscalls::device(queue).map(|(_, flags)| flags)
}
