//! The `unsafe` steps of the upgrade: claiming the inherited end of the handover socket,
//! which the process that started this one named in [`super::FD_ENV`], opening more
//! queues of the TUN device handed over (an upgrade to more workers), and the TUN ioctls
//! that re-open its queues in another offload mode (`upgrade/offload.rs`).

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
/// `TUNSETOFFLOAD`: the device's offloads (`TUN_F_*`), device-wide.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `TUNSETPERSIST`: whether the device outlives its last queue.
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// `IFF_PERSIST` in the flags `TUNGETIFF` reports.
pub const IFF_PERSIST: libc::c_short = 0x0800;

/// The name and flags of the device `queue` is attached to (`TUNGETIFF`).
fn get_iff(queue: BorrowedFd<'_>) -> io::Result<libc::ifreq> {
    // SAFETY: an all-zero `ifreq` is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes at most one `ifreq` into `req`, which outlives the call;
    // `queue` is an open descriptor for the whole call.
    if unsafe { libc::ioctl(queue.as_raw_fd(), TUNGETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The flags of the device `queue` is attached to (`IFF_*`, as `TUNGETIFF` reports
/// them: `IFF_VNET_HDR`, `IFF_MULTI_QUEUE`, `IFF_PERSIST` among them).
pub fn tun_flags(queue: BorrowedFd<'_>) -> io::Result<libc::c_short> {
    let req = get_iff(queue)?;
    // SAFETY: TUNGETIFF filled the flags member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// A new descriptor of `/dev/net/tun`, non-blocking, attached to nothing yet.
pub fn open_tun() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )?)
}

/// `TUNSETIFF` with `req` on `fd` (from [`open_tun`]): `fd` becomes a queue of the device.
fn set_iff(fd: BorrowedFd<'_>, req: &libc::ifreq) -> io::Result<()> {
    // SAFETY: TUNSETIFF reads one `ifreq` from `req`, which outlives the call (the kernel
    // may write the name back into its own copy only); `fd` is open for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches `fd` (from [`open_tun`]) to the TUN device `name` with `flags` (`IFF_TUN |
/// IFF_NO_PI`, and `IFF_MULTI_QUEUE`, `IFF_VNET_HDR` as wanted). The kernel takes the
/// flags' `IFF_VNET_HDR` for the whole device only when this is its one queue.
pub fn attach(fd: BorrowedFd<'_>, name: &str, flags: libc::c_short) -> io::Result<()> {
    // SAFETY: an all-zero `ifreq` is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::other(format!("{name:?} is no interface name")));
    }
    for (to, &b) in req.ifr_name.iter_mut().zip(bytes) {
        *to = b as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    set_iff(fd, &req)
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
    // SAFETY: TUNSETPERSIST takes its argument by value (an integer), so the kernel reads
    // no memory of ours; `queue` is open for the whole call.
    if unsafe {
        libc::ioctl(
            queue.as_raw_fd(),
            TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens one more queue of the multi-queue TUN device `queue` is a queue of, with the
/// same flags (virtio-net header or not), non-blocking: a live upgrade to more workers.
pub fn attach_queue(queue: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let req = get_iff(queue)?;
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & (libc::IFF_MULTI_QUEUE as libc::c_short) == 0 {
        return Err(io::Error::other("the TUN device is not multi-queue"));
    }
    let fd = open_tun()?;
    set_iff(std::os::fd::AsFd::as_fd(&fd), &req)?;
    Ok(fd)
}
