//! The eBPF program that tells the kernel which queue of the multi-queue TUN device,
//! and so which worker, gets each packet: both directions of a flow and the ICMP errors
//! about it go to the worker that owns the flow.
//!
//! The program is assembled here, by hand, from the reference definition in
//! [`kracauer_core::steer`]: it computes [`steer::steer_value`] with the daemon's random
//! [`SteerKey`] baked in as immediates. It reads the packet with the socket-filter
//! packet loads (`BPF_LD | BPF_ABS` and `BPF_LD | BPF_IND`), which need no bounds checks:
//! a load past the end of the packet ends the program with 0, the value the reference
//! gives then. It is loaded with `bpf(BPF_PROG_LOAD)` as a socket filter and attached with
//! the `TUNSETSTEERINGEBPF` ioctl; the kernel uses `result % queues` (16 bits of it).
//!
//! This file owns [`Steering`] (load, attach, detach, test-run and self-check) and
//! [`random_key`]. The rest is split by concern:
//! - `syscalls.rs`: `bpf(2)` and the TUN ioctl, the daemon's only `unsafe` code (the
//!   crate denies it elsewhere); each block says why it is sound;
//! - `assembler.rs`: the eBPF instruction encoder and a forward-only assembler;
//! - `program.rs`: the steering program, instruction by instruction;
//! - `samples.rs`: the packets of the self-check and the tests.
//!
//! Loading needs `CAP_BPF` (or `CAP_SYS_ADMIN`) unless unprivileged BPF is enabled;
//! attaching needs only the TUN descriptor. The device holds its own reference to an
//! attached program, so dropping [`Steering`] afterwards does not detach it.

mod assembler;
mod program;
mod samples;
#[allow(unsafe_code)]
mod syscalls;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use kracauer_core::steer::{self, SteerKey};

use assembler::encode;
use program::program;

/// Size of the verifier log fetched when the kernel refuses the program.
const LOG_SIZE: usize = 64 * 1024;

/// The loaded steering program.
#[derive(Debug)]
pub struct Steering {
    fd: OwnedFd,
    key: SteerKey,
}

impl Steering {
    /// Assembles the program for `key` and loads it into the kernel. A verifier refusal
    /// carries the verifier's log in the error.
    pub fn load(key: SteerKey) -> io::Result<Self> {
        let code = encode(&program(key).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("steering program: {e}"),
            )
        })?);
        let fd = match syscalls::load_program(&code, None) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot load the steering eBPF program ({e}): it needs CAP_BPF"),
                ));
            }
            Err(e) => {
                let mut log = vec![0u8; LOG_SIZE];
                let detail = match syscalls::load_program(&code, Some(&mut log)) {
                    Ok(_) => String::from("(it loaded on a retry with the verifier log on)"),
                    Err(_) => {
                        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                        String::from_utf8_lossy(&log[..end]).into_owned()
                    }
                };
                return Err(io::Error::new(
                    e.kind(),
                    format!("the kernel refused the steering eBPF program ({e}): {detail}"),
                ));
            }
        };
        Ok(Self { fd, key })
    }

    /// The key baked into the program.
    pub fn key(&self) -> SteerKey {
        self.key
    }

    /// Makes the program steer the TUN device that `tun` (any of its queues) belongs to,
    /// replacing any program attached before.
    pub fn attach(&self, tun: BorrowedFd<'_>) -> io::Result<()> {
        syscalls::set_steering(tun, Some(self.fd.as_fd()))
    }

    /// Removes the steering program from the TUN device that `tun` belongs to; the kernel
    /// goes back to its own flow hashing.
    pub fn detach(tun: BorrowedFd<'_>) -> io::Result<()> {
        syscalls::set_steering(tun, None)
    }

    /// Runs the loaded program once in the kernel on `ip_packet` (an IPv4 or IPv6 packet,
    /// as the TUN device would carry it) and returns its result: for tests and
    /// self-checks, never on the packet path.
    pub fn test_run(&self, ip_packet: &[u8]) -> io::Result<u32> {
        // The test run takes an Ethernet frame and strips the header, so the program
        // sees the IP header at offset 0, as when it steers. The EtherType is the local
        // experimental one: with IPv4's or IPv6's the kernel refuses a packet shorter
        // than that header, and the packet loads do not look at it.
        let mut frame = Vec::with_capacity(14 + ip_packet.len());
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x88, 0xb5]);
        frame.extend_from_slice(ip_packet);
        syscalls::test_run(self.fd.as_fd(), &frame)
    }

    /// Checks the loaded program against the reference [`steer::steer_value`] on a few
    /// built-in packets of one flow (both directions and an ICMP error each way, whole
    /// and cut short), so a kernel that ran it differently is caught before it steers
    /// anything.
    pub fn self_check(&self) -> io::Result<()> {
        let flow = samples::packets();
        let cut = flow.iter().map(|p| &p[..p.len().saturating_sub(7)]);
        for packet in flow.iter().map(Vec::as_slice).chain(cut) {
            let want = steer::steer_value(packet, self.key);
            let got = self.test_run(packet)?;
            if got != want {
                return Err(io::Error::other(format!(
                    "the steering eBPF program returned {got:#x} where {want:#x} was expected"
                )));
            }
        }
        Ok(())
    }
}

/// A fresh random key from the operating system, for [`Steering::load`].
pub fn random_key() -> Result<SteerKey, getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(SteerKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests;
