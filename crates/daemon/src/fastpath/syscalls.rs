//! The fast path's `unsafe`: the [`aya::Pod`] promises for the map structs and the
//! `TUNSETPERSIST` ioctl; and, for the differential tests, a tc test run with GSO metadata
//! (through [`crate::bpfrun`]). Every block says why it is sound; what this module exports
//! is safe to call.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::maps::{FlowEntry, V4Key, V6Key};

// SAFETY: `repr(C)` structs of integers and byte arrays with no padding (their sizes are
// asserted in `maps.rs` to be the sums of their fields), so every bit pattern is a valid
// value and none has uninitialised bytes.
unsafe impl aya::Pod for V4Key {}
// SAFETY: as for `V4Key`.
unsafe impl aya::Pod for V6Key {}
// SAFETY: as for `V4Key` (the explicit `pad` and `pad2` fields fill the gaps before the
// addresses and the name: the `u64`s start at an offset of 48, the name at 104, and the
// size, 360, is a multiple of 8).
unsafe impl aya::Pod for FlowEntry {}

/// `TUNSETPERSIST`: `_IOW('T', 203, int)`.
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// Makes the TUN device whose queue `fd` is persistent (`persist`: it outlives its last
/// descriptor, with its routes) or not (it goes with its last descriptor).
pub fn set_tun_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor for the duration of the call (it is
    // borrowed), and TUNSETPERSIST takes its argument by value (an integer, not a
    // pointer), so the kernel reads no memory of ours.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETPERSIST as _,
            libc::c_ulong::from(persist),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
/// Size of `struct __sk_buff` (uapi, kernel 6.x).
const SKB_CTX_LEN: usize = 192;
#[cfg(test)]
/// Offset of `gso_segs` in `struct __sk_buff`.
const GSO_SEGS_AT: usize = 164;
#[cfg(test)]
/// Offset of `gso_size` in `struct __sk_buff`.
const GSO_SIZE_AT: usize = 176;

#[cfg(test)]
pub use crate::bpfrun::TestRun;

#[cfg(test)]
/// `BPF_PROG_TEST_RUN` of the tc program `prog` once on the Ethernet frame `frame`,
/// with the skb's `gso_size` and `gso_segs` set (0: not a GSO packet).
pub fn test_run(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    gso_size: u32,
    gso_segs: u32,
) -> io::Result<TestRun> {
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[GSO_SEGS_AT..GSO_SEGS_AT + 4].copy_from_slice(&gso_segs.to_ne_bytes());
    ctx[GSO_SIZE_AT..GSO_SIZE_AT + 4].copy_from_slice(&gso_size.to_ne_bytes());
    // Room for the frame grown by IPv4→IPv6 and then some.
    crate::bpfrun::test_run(prog, frame, frame.len() + 256, Some(&ctx))
}
