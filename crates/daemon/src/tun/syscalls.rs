//! The TUN device's `unsafe` ioctls: reading a queue's device name and flags
//! (`TUNGETIFF`), attaching a new descriptor to an existing device as one more queue
//! (`TUNSETIFF`), disabling a queue (`TUNSETQUEUE` with `IFF_DETACH_QUEUE`) and turning
//! the device's carrier off (`TUNSETCARRIER`), its offloads (`TUNSETOFFLOAD`) and
//! persistence (`TUNSETPERSIST`). A live upgrade to more workers opens queues with the
//! first two, one to another `[tun] offload` re-opens them all with the offload and
//! persistence ioctls too ([`crate::upgrade`]); the carrier keeper holds a disabled
//! queue with the first three ([`crate::keeper`]); an orderly stop drops the carrier.
//! Every block says why it is sound; what this module exports is safe to call.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `TUNGETIFF`: the name and flags of the device a TUN descriptor is attached to.
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
/// `TUNSETIFF`: attaches a descriptor of `/dev/net/tun` to a device (a queue of it).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNSETQUEUE`: enables or disables the queue of a multi-queue device a descriptor is.
const TUNSETQUEUE: libc::c_ulong = 0x4004_54d9;
/// `TUNSETCARRIER`: turns the device's carrier on or off (Linux 5.0 and later).
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
/// `TUNSETOFFLOAD`: the device's offloads (`TUN_F_*`), device-wide.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `TUNSETPERSIST`: whether the device outlives its last queue.
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `IFF_DETACH_QUEUE` of `TUNSETQUEUE`.
const IFF_DETACH_QUEUE: libc::c_short = 0x0400;
/// `IFF_PERSIST` in the flags [`device`] reports.
pub const IFF_PERSIST: libc::c_short = 0x0800;

/// The name and flags (`IFF_TUN`, `IFF_NO_PI`, `IFF_MULTI_QUEUE`, `IFF_VNET_HDR`, ...) of
/// the device `queue` is a queue of; every attach must repeat the flags.
pub fn device(queue: BorrowedFd<'_>) -> io::Result<(String, libc::c_short)> {
    // SAFETY: an all-zero `ifreq` is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes at most one `ifreq` into `req`, which outlives the call;
    // `queue` is an open descriptor for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNGETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let name: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok((String::from_utf8_lossy(&name).into_owned(), flags))
}

/// Opens `/dev/net/tun` (close-on-exec, non-blocking) and attaches it to the existing
/// device `name` as one more queue, with `flags`. The kernel rewrites the device's
/// features (`IFF_VNET_HDR`, ...) from every attach, so `flags` must be the device's own
/// ([`device`], or its `tun_flags` in sysfs). The queue is enabled: it takes its share of
/// the device's packets until disabled ([`disable_queue`]).
pub fn attach(name: &str, flags: libc::c_short) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero `ifreq` is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    for (to, from) in req.ifr_name.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    let fd = open_unattached()?;
    // SAFETY: TUNSETIFF reads one `ifreq` (a NUL-terminated name, checked above, and the
    // flags) from `req`, which outlives the call; `fd` is open for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Disables the queue `queue` of a multi-queue device: it gets no more packets (those
/// waiting in it are dropped), but it still counts as attached, so the device keeps its
/// carrier and, not persistent, its existence while the descriptor is open.
pub fn disable_queue(queue: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an all-zero `ifreq` is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_ifru.ifru_flags = IFF_DETACH_QUEUE;
    // SAFETY: TUNSETQUEUE reads one `ifreq` (only its flags) from `req`, which outlives
    // the call; `queue` is an open descriptor for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNSETQUEUE, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns the carrier of the device `queue` is a queue of on or off (routes through it
/// are then marked `linkdown`; a routing daemon watching the link withdraws them).
pub fn set_carrier(queue: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let value = libc::c_int::from(on);
    // SAFETY: TUNSETCARRIER reads one `int` from the pointer, which points at `value`
    // for the whole call; `queue` is an open descriptor for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNSETCARRIER, &value) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new descriptor of `/dev/net/tun` (close-on-exec, non-blocking), attached to nothing.
pub fn open_unattached() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )?)
}

/// `TUNSETOFFLOAD` with `TUN_F_*` `bits` on the device `queue` is a queue of.
pub fn set_offload(queue: BorrowedFd<'_>, bits: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an integer), so the kernel reads
    // no memory of ours; `queue` is open for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(bits)) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `TUNSETPERSIST`: the device `queue` is a queue of outlives its last queue, or not.
pub fn set_persist(queue: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    let value = libc::c_ulong::from(persist);
    // SAFETY: TUNSETPERSIST takes its argument by value (an integer), so the kernel reads
    // no memory of ours; `queue` is open for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNSETPERSIST, value) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
