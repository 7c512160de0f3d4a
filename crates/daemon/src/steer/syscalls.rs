//! The system call behind [`Steering`](super::Steering) that has no safe wrapper among
//! the dependencies: the `TUNSETSTEERINGEBPF` ioctl that attaches the program (its test
//! run is [`crate::bpfrun`]'s). The crate denies `unsafe_code` outside its syscall
//! modules; every block here says why it is sound, and what this module exports is safe
//! to call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IOR('T', 224, int)`: set (fd) or clear (-1) a TUN device's steering program.
const TUNSETSTEERINGEBPF: libc::Ioctl = 0x8004_54e0;

/// `TUNSETSTEERINGEBPF` on `tun` with `prog` (`None` clears).
pub(super) fn set_steering(tun: BorrowedFd<'_>, prog: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let prog: libc::c_int = prog.map_or(-1, |p| p.as_raw_fd());
    // SAFETY: the ioctl reads one `int` through the pointer, which points at `prog`,
    // alive for the call; `tun` is an open descriptor (the kernel refuses one that is
    // not a TUN device with an error).
    let rc = unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            TUNSETSTEERINGEBPF,
            &prog as *const libc::c_int,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
