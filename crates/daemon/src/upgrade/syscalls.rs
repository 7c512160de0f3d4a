//! The `unsafe` steps of the upgrade: claiming the inherited end of the handover socket,
//! which the process that started this one named in [`super::FD_ENV`], and opening more
//! queues of the TUN device handed over (an upgrade to more workers). The TUN ioctls
//! themselves, also those that re-open the queues in another offload mode
//! (`upgrade/offload.rs`), are in `tun/syscalls.rs`.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
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

/// Opens one more queue of the multi-queue TUN device `queue` is a queue of, with the
/// same flags (virtio-net header or not), non-blocking: a live upgrade to more workers.
pub fn attach_queue(queue: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let (name, flags) = crate::tun::syscalls::device(queue)?;
    if flags & (libc::IFF_MULTI_QUEUE as libc::c_short) == 0 {
        return Err(io::Error::other("the TUN device is not multi-queue"));
    }
    crate::tun::syscalls::attach(&name, flags)
}
