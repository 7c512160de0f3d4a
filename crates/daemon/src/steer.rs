//! The eBPF program that tells the kernel which queue of the multi-queue TUN device,
//! and so which worker, gets each packet: both directions of a flow and the ICMP errors
//! about it go to the worker that owns the flow.
//!
//! The program is C (`crates/daemon/bpf/steer.c`), compiled by `bpf/build.sh` to the
//! object committed beside it and embedded here, so a build needs only cargo. It
//! computes [`steer::steer_value`], the reference in `kracauer_core::steer`, IPv6
//! extension headers walked, with the daemon's random [`SteerKey`] written into its
//! read-only data before it is loaded. aya loads it as a socket filter (the program type
//! `TUNSETSTEERINGEBPF` takes); the ioctl attaches it, and the kernel then uses
//! `result % queues` (16 bits of it).
//!
//! This file owns [`Steering`] (load, attach, detach, test-run and self-check),
//! [`SteerError`] and [`random_key`]. The rest is split by concern:
//! - `syscalls.rs`: the TUN ioctl and `bpf(BPF_PROG_TEST_RUN)` (aya has no test run),
//!   the `unsafe` code; each block says why it is sound;
//! - `samples.rs`: the packets of the self-check and the tests.
//!
//! Loading needs `CAP_BPF` (or `CAP_SYS_ADMIN`) unless unprivileged BPF is enabled, and
//! a kernel with BPF global data (Linux 5.2); attaching needs only the
//! TUN descriptor. The device holds its own reference to an attached program, so
//! dropping [`Steering`] afterwards does not detach it.

mod samples;
#[allow(unsafe_code)]
mod syscalls;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use aya::programs::{ProgramError, SocketFilter};
use aya::{Ebpf, EbpfError, EbpfLoader};
use kracauer_core::steer::{self, SteerKey};

/// The compiled program (`bpf/steer.c`, built by `bpf/build.sh`).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/steer.o");
/// The program's function in the object (also its name in `bpftool prog`).
const PROGRAM: &str = "kracauer_steer";
/// The globals that hold the key ([`SteerKey::k0`], [`SteerKey::k1`]).
const KEY_GLOBALS: [&str; 2] = ["steer_k0", "steer_k1"];

/// Why steering could not be set up or checked.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// The operating system gave no random key.
    #[error("no random key for the steering program: {0}")]
    Key(#[from] getrandom::Error),
    /// The object could not be read, or its read-only data (the key) not created.
    #[error("cannot load the steering eBPF object: {}", chain(.0))]
    Object(#[source] EbpfError),
    /// The object has no steering program (a build of another source).
    #[error("the steering eBPF object has no socket-filter program {PROGRAM}")]
    NoProgram,
    /// The kernel refused the program; the message carries the verifier's log.
    #[error("the kernel refused the steering eBPF program: {}", chain(.0))]
    Program(#[source] ProgramError),
    /// The TUN device refused the program.
    #[error("cannot attach the steering eBPF program to the TUN device: {0}")]
    Attach(#[source] io::Error),
    /// A test run could not be made.
    #[error("cannot test-run the steering eBPF program: {0}")]
    TestRun(#[source] io::Error),
    /// The kernel ran the program to another result than the reference's.
    #[error("the steering eBPF program returned {got:#x} where {want:#x} was expected")]
    Mismatch { got: u32, want: u32 },
}

/// `e` and its sources, with a hint when one of them is a permission error.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut denied = false;
    let mut source = e.source();
    while let Some(s) = source {
        denied |= s
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied);
        text = format!("{text}: {s}");
        source = s.source();
    }
    if denied {
        text.push_str(" (it needs CAP_BPF)");
    }
    text
}

/// The loaded steering program.
#[derive(Debug)]
pub struct Steering {
    /// The object: the program and the read-only data holding the key, alive while
    /// this is (an attached program stays alive in the device on its own).
    ebpf: Ebpf,
    key: SteerKey,
}

impl Steering {
    /// Loads the program with `key` into the kernel. A verifier refusal carries the
    /// verifier's log in the error.
    pub fn load(key: SteerKey) -> Result<Self, SteerError> {
        let mut ebpf = EbpfLoader::new()
            .set_global(KEY_GLOBALS[0], &key.k0, true)
            .set_global(KEY_GLOBALS[1], &key.k1, true)
            .load(OBJECT)
            .map_err(SteerError::Object)?;
        let program: &mut SocketFilter = ebpf
            .program_mut(PROGRAM)
            .ok_or(SteerError::NoProgram)?
            .try_into()
            .map_err(|_| SteerError::NoProgram)?;
        program.load().map_err(SteerError::Program)?;
        Ok(Self { ebpf, key })
    }

    /// The key the program was loaded with.
    pub fn key(&self) -> SteerKey {
        self.key
    }

    /// The loaded program's descriptor.
    fn program(&self) -> Result<BorrowedFd<'_>, SteerError> {
        let program = self.ebpf.program(PROGRAM).ok_or(SteerError::NoProgram)?;
        Ok(program.fd().map_err(SteerError::Program)?.as_fd())
    }

    /// Makes the program steer the TUN device that `tun` (any of its queues) belongs to,
    /// replacing any program attached before.
    pub fn attach(&self, tun: BorrowedFd<'_>) -> Result<(), SteerError> {
        syscalls::set_steering(tun, Some(self.program()?)).map_err(SteerError::Attach)
    }

    /// Removes the steering program from the TUN device that `tun` belongs to; the kernel
    /// goes back to its own flow hashing.
    pub fn detach(tun: BorrowedFd<'_>) -> Result<(), SteerError> {
        syscalls::set_steering(tun, None).map_err(SteerError::Attach)
    }

    /// Runs the loaded program once in the kernel on `ip_packet` (an IPv4 or IPv6 packet,
    /// as the TUN device would carry it) and returns its result: for tests and
    /// self-checks, never on the packet path.
    pub fn test_run(&self, ip_packet: &[u8]) -> Result<u32, SteerError> {
        // The test run takes an Ethernet frame and strips the header, so the program
        // sees the IP header at offset 0, as when it steers. The EtherType is the local
        // experimental one: with IPv4's or IPv6's the kernel refuses a packet shorter
        // than that header, and the program does not look at it.
        let mut frame = Vec::with_capacity(14 + ip_packet.len());
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0xb5]);
        frame.extend_from_slice(ip_packet);
        crate::bpfrun::test_run(self.program()?, &frame, 0, None)
            .map(|r| r.retval)
            .map_err(SteerError::TestRun)
    }

    /// Checks the loaded program against the reference [`steer::steer_value`] on
    /// built-in packets of one flow (both directions, an ICMP error each way, and the
    /// backend's segment behind IPv6 extension headers; whole and cut short), so a
    /// kernel that ran it differently is caught before it steers anything.
    pub fn self_check(&self) -> Result<(), SteerError> {
        let flow = samples::packets();
        let cut = flow.iter().map(|p| &p[..p.len().saturating_sub(7)]);
        for packet in flow.iter().map(Vec::as_slice).chain(cut) {
            let want = steer::steer_value(packet, self.key);
            let got = self.test_run(packet)?;
            if got != want {
                return Err(SteerError::Mismatch { got, want });
            }
        }
        Ok(())
    }
}

/// A fresh random key from the operating system, for [`Steering::load`].
pub fn random_key() -> Result<SteerKey, SteerError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(SteerKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests;
