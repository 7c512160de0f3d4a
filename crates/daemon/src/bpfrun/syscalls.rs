//! `bpf(BPF_PROG_TEST_RUN)`: the one `unsafe` call behind [`test_run`]. The block says
//! why it is sound; what this module exports is safe to call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `bpf(2)` command: run a loaded program once on given data.
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// What one run gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value.
    pub retval: u32,
    /// The packet as the program left it (empty unless room for it was asked for).
    pub data: Vec<u8>,
}

/// Runs the program `prog` once on `data` (an Ethernet frame for tc programs and socket
/// filters), with `ctx` as its context (`struct __sk_buff` for tc) if given, and room for
/// `out_room` bytes of the packet as the program left it (0: none kept).
pub fn test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    out_room: usize,
    ctx: Option<&[u8]>,
) -> io::Result<TestRun> {
    let too_long = |_| io::Error::new(io::ErrorKind::InvalidInput, "too long for a test run");
    let size = u32::try_from(data.len()).map_err(too_long)?;
    let out_size = u32::try_from(out_room).map_err(too_long)?;
    let ctx = ctx.unwrap_or_default();
    let ctx_size = u32::try_from(ctx.len()).map_err(too_long)?;
    let mut out = vec![0u8; out_room];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: size,
        data_size_out: out_size,
        data_in: data.as_ptr() as u64,
        data_out: if out_room == 0 {
            0
        } else {
            out.as_mut_ptr() as u64
        },
        repeat: 1,
        ctx_size_in: ctx_size,
        ctx_in: if ctx.is_empty() {
            0
        } else {
            ctx.as_ptr() as u64
        },
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is the BPF_PROG_TEST_RUN prefix of `union bpf_attr`, zero-padded to
    // its 128 bytes, and lives through the call. Its pointers are `data_in` (`data`,
    // `size` bytes), `data_out` (`out`, `out_size` bytes, which the kernel writes at most
    // that far; 0 when no room is asked for) and `ctx_in` (`ctx`, `ctx_size` bytes; 0
    // when empty), all alive for the whole call; `ctx_out` is 0, so the kernel writes no
    // context back.
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
    out.truncate((attr.data_size_out as usize).min(out_room));
    Ok(TestRun {
        retval: attr.retval,
        data: out,
    })
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
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    rest: [u32; 13],
}

const _: () = assert!(size_of::<TestRunAttr>() == 128);
