//! The `unsafe` steps of the upgrade: claiming the inherited end of the handover socket,
//! which the process that started this one named in [`super::FD_ENV`], and opening more
//! queues of the TUN device handed over (an upgrade to more workers).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the inherited descriptor `raw`, once per process.
pub fn claim_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 || CLAIMED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other(
            "the handover descriptor was claimed already",
        ));
    }
    // SAFETY: fcntl(F_GETFD) takes any integer and only reports whether it names an open
    // descriptor; it touches no memory.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is open (checked above) and owned by nothing else in this process: it
    // was inherited across exec, named only by the variable the parent set for us, and
    // `CLAIMED` makes sure it is taken once.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `TUNGETIFF`: the name and flags of the device a TUN descriptor is attached to.
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
/// `TUNSETIFF`: attaches a descriptor of `/dev/net/tun` to a device (a queue of it).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens one more queue of the multi-queue TUN device `queue` is a queue of, with the
/// same flags (virtio-net header or not), non-blocking: a live upgrade to more workers.
pub fn attach_queue(queue: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero `ifreq` is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes at most one `ifreq` into `req`, which outlives the call;
    // `queue` is an open descriptor for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNGETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & (libc::IFF_MULTI_QUEUE as libc::c_short) == 0 {
        return Err(io::Error::other("the TUN device is not multi-queue"));
    }
    let fd = rustix::fs::open(
        "/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: TUNSETIFF reads one `ifreq` (the name and flags TUNGETIFF gave) from `req`,
    // which outlives the call; `fd` is open for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
