//! The system calls behind [`Steering`](super::Steering) that have no safe wrapper among
//! the dependencies: the `TUNSETSTEERINGEBPF` ioctl that attaches the program, and
//! `bpf(BPF_PROG_TEST_RUN)` that runs it once on given bytes (aya, which loads the
//! program, has no test run). The crate denies `unsafe_code` outside its syscall
//! modules; every block here says why it is sound, and what this module exports is safe
//! to call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `bpf(2)` command: run a loaded program once on given data.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `_IOR('T', 224, int)`: set (fd) or clear (-1) a TUN device's steering program.
const TUNSETSTEERINGEBPF: libc::Ioctl = 0x8004_54e0;

/// `bpf(2)` with `attr`.
///
/// # Safety
/// `T` must be the `repr(C)` layout of the prefix of `union bpf_attr` that `cmd` reads,
/// and every pointer in `attr` must be valid, for the length given beside it, for the
/// kernel to read or write during the call.
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable `T` of `size_of::<T>()` bytes, and the caller
    // vouches for the pointers inside it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `BPF_PROG_TEST_RUN` of the program `prog` once on `data` (for a socket filter: an
/// Ethernet frame, whose header the kernel strips); the program's return value.
pub(super) fn test_run(prog: BorrowedFd<'_>, data: &[u8]) -> io::Result<u32> {
    let size = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: size,
        data_in: data.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is the BPF_PROG_TEST_RUN prefix of `union bpf_attr`; its only
    // pointer is `data_in`, to `data`, which is alive and `size` bytes long for the
    // whole call. No output buffers are given, so the kernel writes only `attr`.
    unsafe { sys_bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(attr.retval)
}

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

/// The `BPF_PROG_TEST_RUN` prefix of `union bpf_attr`, padded with zeros to 128 bytes.
#[repr(C)]
#[derive(Debug, Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    rest: [u64; 11],
}

const _: () = assert!(size_of::<TestRunAttr>() == 128);
