//! The fast path's `unsafe`: the [`aya::Pod`] promises for the map structs, and
//! `BPF_PROG_TEST_RUN` (which aya does not expose) for the differential tests. Every block
//! says why it is sound; what this module exports is safe to call.

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
/// `bpf(2)` command: run a loaded program once on given data.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
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
/// What one test run gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (`TC_ACT_*`).
    pub retval: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
}

#[cfg(test)]
/// `BPF_PROG_TEST_RUN` of the tc program `prog` once on the Ethernet frame `frame`,
/// with the skb's `gso_size` and `gso_segs` set (0: not a GSO packet).
pub fn test_run(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    gso_size: u32,
    gso_segs: u32,
) -> io::Result<TestRun> {
    let size = u32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
    // Room for the frame grown by IPv4→IPv6 and then some.
    let mut out = vec![0u8; frame.len() + 256];
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[GSO_SEGS_AT..GSO_SEGS_AT + 4].copy_from_slice(&gso_segs.to_ne_bytes());
    ctx[GSO_SIZE_AT..GSO_SIZE_AT + 4].copy_from_slice(&gso_size.to_ne_bytes());
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: size,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: SKB_CTX_LEN as u32,
        ctx_in: ctx.as_ptr() as u64,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is the BPF_PROG_TEST_RUN prefix of `union bpf_attr`, zero-padded to
    // 128 bytes. Its pointers are `data_in` (`frame`, `size` bytes), `data_out` (`out`,
    // `data_size_out` bytes, written by the kernel at most that far) and `ctx_in` (`ctx`,
    // `ctx_size_in` bytes), all alive for the whole call; `ctx_out` is 0, so the kernel
    // writes no context back.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            size_of::<TestRunAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        retval: attr.retval,
        data: out,
    })
}

#[cfg(test)]
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
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    rest: [u32; 13],
}

#[cfg(test)]
const _: () = assert!(size_of::<TestRunAttr>() == 128);
