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
//! This is one of the few files of the daemon that hold `unsafe`: the `bpf(2)` system
//! call and the TUN ioctl have no safe wrapper among the dependencies. Each block says
//! why it is sound.
//!
//! Loading needs `CAP_BPF` (or `CAP_SYS_ADMIN`) unless unprivileged BPF is enabled;
//! attaching needs only the TUN descriptor. The device holds its own reference to an
//! attached program, so dropping [`Steering`] afterwards does not detach it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use kracauer_core::steer::{self, ICMPV4_ERRORS, ICMPV6_INFO_FIRST, SteerKey, mix, offset};
use kracauer_core::wire::ip_proto;

/// `bpf(2)` command: load a program.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `bpf(2)` command: run a loaded program once on given data.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// Program type whose packet loads see the packet from the network header on.
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `_IOR('T', 224, int)`: set (fd) or clear (-1) a TUN device's steering program.
const TUNSETSTEERINGEBPF: libc::Ioctl = 0x8004_54e0;
/// Shown by `bpftool prog` (at most 15 bytes: letters, digits, `_` and `.`).
const PROG_NAME: &[u8] = b"kracauer_steer";
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
        let fd = match load_program(&code, None) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot load the steering eBPF program ({e}): it needs CAP_BPF"),
                ));
            }
            Err(e) => {
                let mut log = vec![0u8; LOG_SIZE];
                let detail = match load_program(&code, Some(&mut log)) {
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
        set_steering(tun, self.fd.as_raw_fd())
    }

    /// Removes the steering program from the TUN device that `tun` belongs to; the kernel
    /// goes back to its own flow hashing.
    pub fn detach(tun: BorrowedFd<'_>) -> io::Result<()> {
        set_steering(tun, -1)
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
        let size = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: size,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        // SAFETY: `attr` is the BPF_PROG_TEST_RUN prefix of `union bpf_attr`; its only
        // pointer is `data_in`, to `frame`, which is alive and `size` bytes long for the
        // whole call. No output buffers are given, so the kernel writes only `attr`.
        unsafe { sys_bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
        Ok(attr.retval)
    }

    /// Checks the loaded program against the reference [`steer::steer_value`] on a few
    /// built-in packets of one flow (both directions and an ICMP error each way, whole
    /// and cut short), so a kernel that ran it differently is caught before it steers
    /// anything.
    pub fn self_check(&self) -> io::Result<()> {
        let flow = sample::packets();
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

/// `BPF_PROG_LOAD` of `code` as a socket filter, with the verifier's log in `log` if
/// given.
fn load_program(code: &[u8], log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    let license = b"MIT OR Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: (code.len() / INSN_LEN) as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `attr` is the BPF_PROG_LOAD prefix of `union bpf_attr`, zero after
    // `prog_name`. `insns` points at `code`, `insn_cnt` whole instructions long;
    // `license` at a NUL-terminated string; `log_buf`, when set, at a live buffer of
    // `log_size` bytes that only the kernel writes during the call.
    let fd = unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) }?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that nothing else in
    // this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `TUNSETSTEERINGEBPF` on `tun` with `prog` (-1 clears).
fn set_steering(tun: BorrowedFd<'_>, prog: RawFd) -> io::Result<()> {
    let prog: libc::c_int = prog;
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

/// The `BPF_PROG_LOAD` prefix of `union bpf_attr`, padded with zeros to 128 bytes.
#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u64; 8],
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

const _: () = assert!(size_of::<ProgLoadAttr>() == 128);
const _: () = assert!(size_of::<TestRunAttr>() == 128);

/// Bytes per eBPF instruction.
const INSN_LEN: usize = 8;

/// Opcode parts (`linux/bpf_common.h`, `linux/bpf.h`).
mod op {
    /// Class: legacy packet loads.
    pub const LD: u8 = 0x00;
    /// Class: 32-bit arithmetic (results zero-extended).
    pub const ALU: u8 = 0x04;
    /// Class: jumps comparing 64 bits.
    pub const JMP: u8 = 0x05;
    /// Class: 64-bit arithmetic.
    pub const ALU64: u8 = 0x07;

    /// Load size: 32 bits.
    pub const W: u8 = 0x00;
    /// Load size: 16 bits.
    pub const H: u8 = 0x08;
    /// Load size: 8 bits.
    pub const B: u8 = 0x10;
    /// Load mode: at a constant offset in the packet.
    pub const ABS: u8 = 0x20;
    /// Load mode: at a register plus a constant offset.
    pub const IND: u8 = 0x40;

    /// Operand: the immediate.
    pub const K: u8 = 0x00;
    /// Operand: the source register.
    pub const X: u8 = 0x08;

    pub const ADD: u8 = 0x00;
    pub const MUL: u8 = 0x20;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;

    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const EXIT: u8 = 0x90;
}

/// An eBPF register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reg(u8);

/// Return value; where the packet loads put what they read.
const R0: Reg = Reg(0);
/// First argument (the packet's context) on entry; scratch, as r2..r5: the packet loads
/// clobber them.
const R1: Reg = Reg(1);
/// The context, where the packet loads require it.
const CTX: Reg = Reg(6);
/// Offset of the transport header (of the ICMP header, for an ICMP error).
const R7: Reg = Reg(7);
/// IPv4 protocol; then, for an ICMP error, both header lengths added (the quoted
/// transport header is at that plus the ICMP header).
const R8: Reg = Reg(8);
/// The client address.
const R9: Reg = Reg(9);

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    dst: Reg,
    src: Reg,
    off: i16,
    imm: i32,
}

impl Insn {
    /// The wire form: opcode, registers (destination in the low nibble), offset and
    /// immediate little-endian.
    fn to_bytes(self) -> [u8; INSN_LEN] {
        let [o0, o1] = self.off.to_le_bytes();
        let [i0, i1, i2, i3] = self.imm.to_le_bytes();
        [
            self.code,
            (self.src.0 << 4) | self.dst.0,
            o0,
            o1,
            i0,
            i1,
            i2,
            i3,
        ]
    }
}

/// Instructions in the kernel's form.
fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// Jump targets of the steering program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    V6,
    V4Ports,
    V4Error,
    V6Ports,
    Port0,
    Hash,
    Unknown,
}

const LABELS: usize = 7;

/// Why the assembler could not finish a program (a defect in [`program`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum AsmError {
    #[error("jump to {0:?}, which is never placed")]
    Unplaced(&'static str),
    #[error("label {0:?} placed twice")]
    PlacedTwice(&'static str),
    #[error("jump to {0:?} goes backwards or too far")]
    BadJump(&'static str),
}

impl Label {
    fn name(self) -> &'static str {
        match self {
            Label::V6 => "V6",
            Label::V4Ports => "V4Ports",
            Label::V4Error => "V4Error",
            Label::V6Ports => "V6Ports",
            Label::Port0 => "Port0",
            Label::Hash => "Hash",
            Label::Unknown => "Unknown",
        }
    }
}

/// A forward-only assembler: jumps name a label, resolved by [`Asm::finish`].
#[derive(Debug, Default)]
struct Asm {
    insns: Vec<Insn>,
    placed: [Option<usize>; LABELS],
    jumps: Vec<(usize, Label)>,
}

/// An offset in the packet, or a 32-bit constant, as an immediate (bit pattern kept).
fn imm(v: impl Into<u64>) -> i32 {
    v.into() as u32 as i32
}

impl Asm {
    fn push(&mut self, code: u8, dst: Reg, src: Reg, imm: i32) {
        self.insns.push(Insn {
            code,
            dst,
            src,
            off: 0,
            imm,
        });
    }

    /// r0 = the `size` bytes at `at`, big-endian (ends the program with 0 past the end).
    fn load_abs(&mut self, size: u8, at: usize) {
        self.push(op::LD | op::ABS | size, R0, R0, imm(at as u64));
    }

    /// r0 = the `size` bytes at `base + at`, big-endian (ends with 0 past the end).
    fn load_ind(&mut self, size: u8, base: Reg, at: usize) {
        self.push(op::LD | op::IND | size, R0, base, imm(at as u64));
    }

    /// 32-bit `dst = dst OP k`.
    fn alu(&mut self, op: u8, dst: Reg, k: i32) {
        self.push(op::ALU | op | op::K, dst, R0, k);
    }

    /// 32-bit `dst = dst OP src`.
    fn alu_reg(&mut self, op: u8, dst: Reg, src: Reg) {
        self.push(op::ALU | op | op::X, dst, src, 0);
    }

    /// 64-bit `dst = src` (for the context pointer).
    fn mov64(&mut self, dst: Reg, src: Reg) {
        self.push(op::ALU64 | op::MOV | op::X, dst, src, 0);
    }

    /// Jumps to `to` if `reg OP k`.
    fn jump_if(&mut self, op: u8, reg: Reg, k: impl Into<u64>, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.push(op::JMP | op | op::K, reg, R0, imm(k));
    }

    fn jump(&mut self, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.push(op::JMP | op::JA, R0, R0, 0);
    }

    fn exit(&mut self) {
        self.push(op::JMP | op::EXIT, R0, R0, 0);
    }

    /// `dst ^= dst >> shift`, through r1.
    fn fold(&mut self, dst: Reg, shift: u32) {
        self.alu_reg(op::MOV, R1, dst);
        self.alu(op::RSH, R1, imm(shift));
        self.alu_reg(op::XOR, dst, R1);
    }

    fn place(&mut self, label: Label) -> Result<(), AsmError> {
        let slot = &mut self.placed[label as usize];
        if slot.is_some() {
            return Err(AsmError::PlacedTwice(label.name()));
        }
        *slot = Some(self.insns.len());
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, label) in &self.jumps {
            let target = self.placed[label as usize].ok_or(AsmError::Unplaced(label.name()))?;
            let off = target
                .checked_sub(at + 1)
                .and_then(|d| i16::try_from(d).ok())
                .ok_or(AsmError::BadJump(label.name()))?;
            if let Some(insn) = self.insns.get_mut(at) {
                insn.off = off;
            }
        }
        Ok(self.insns)
    }
}

/// The steering program for `key`: [`steer::steer_value`], instruction by instruction
/// (the comments name the [`steer::client_of_packet`] case).
fn program(key: SteerKey) -> Result<Vec<Insn>, AsmError> {
    use Label::*;
    use op::{ADD, AND, B, H, JEQ, JGE, JNE, JSET, LSH, MOV, MUL, RSH, W, XOR};
    let mut a = Asm::default();
    a.mov64(CTX, R1);
    a.load_abs(B, offset::VERSION);
    a.alu_reg(MOV, R7, R0);
    a.alu(RSH, R7, 4);
    a.jump_if(JEQ, R7, 6u8, V6);
    a.jump_if(JNE, R7, 4u8, Unknown);

    // IPv4: r7 = header length, r8 = protocol, r9 = source address.
    a.alu(AND, R0, 0x0f);
    a.alu(LSH, R0, 2);
    a.alu_reg(MOV, R7, R0);
    a.load_abs(B, offset::V4_PROTOCOL);
    a.alu_reg(MOV, R8, R0);
    a.load_abs(W, offset::V4_SRC);
    a.alu_reg(MOV, R9, R0);
    a.load_abs(H, offset::V4_FLAGS_FRAG);
    a.jump_if(JSET, R0, steer::V4_FRAGMENT_MASK, Port0);
    a.jump_if(JEQ, R8, ip_proto::TCP, V4Ports);
    a.jump_if(JEQ, R8, ip_proto::UDP, V4Ports);
    a.jump_if(JNE, R8, ip_proto::ICMP, Port0);
    a.load_ind(B, R7, 0);
    for ty in ICMPV4_ERRORS {
        a.jump_if(JEQ, R0, ty, V4Error);
    }
    a.jump(Port0);

    // ICMPv4 error: the quoted packet's destination and destination port.
    a.place(V4Error)?;
    a.load_ind(B, R7, offset::ICMP_QUOTE + offset::VERSION);
    a.alu(AND, R0, 0x0f);
    a.alu(LSH, R0, 2);
    a.alu_reg(ADD, R0, R7);
    a.alu_reg(MOV, R8, R0);
    a.load_ind(W, R7, offset::ICMP_QUOTE + offset::V4_DST);
    a.alu_reg(MOV, R9, R0);
    a.load_ind(H, R8, offset::ICMP_QUOTE + offset::DST_PORT);
    a.jump(Hash);

    // IPv4 TCP or UDP: the source port.
    a.place(V4Ports)?;
    a.load_ind(H, R7, offset::SRC_PORT);
    a.jump(Hash);

    // IPv6: r9 = the destination's low 32 bits.
    a.place(V6)?;
    a.load_abs(W, offset::V6_DST_LOW32);
    a.alu_reg(MOV, R9, R0);
    a.load_abs(B, offset::V6_NEXT_HEADER);
    a.jump_if(JEQ, R0, ip_proto::TCP, V6Ports);
    a.jump_if(JEQ, R0, ip_proto::UDP, V6Ports);
    a.jump_if(JNE, R0, ip_proto::ICMPV6, Port0);
    a.load_abs(B, offset::V6_PAYLOAD);
    a.jump_if(JGE, R0, ICMPV6_INFO_FIRST, Port0);
    // ICMPv6 error: the quoted packet's source (low 32 bits) and source port.
    let quote = offset::V6_PAYLOAD + offset::ICMP_QUOTE;
    a.load_abs(W, quote + offset::V6_SRC_LOW32);
    a.alu_reg(MOV, R9, R0);
    a.load_abs(H, quote + offset::V6_PAYLOAD + offset::SRC_PORT);
    a.jump(Hash);

    // IPv6 TCP or UDP: the destination port.
    a.place(V6Ports)?;
    a.load_abs(H, offset::V6_PAYLOAD + offset::DST_PORT);
    a.jump(Hash);

    // Anything else: the address with port 0.
    a.place(Port0)?;
    a.alu(MOV, R0, 0);

    // steer::queue_hash(r9, r0, key).
    a.place(Hash)?;
    a.alu(XOR, R9, imm(key.k0));
    a.alu(MUL, R9, imm(mix::MUL_ADDR));
    a.fold(R9, mix::SHIFT_ADDR);
    a.alu_reg(XOR, R9, R0);
    a.alu(XOR, R9, imm(key.k1));
    a.alu(MUL, R9, imm(mix::MUL_PORT));
    a.fold(R9, mix::SHIFT_PORT);
    a.alu(MUL, R9, imm(mix::MUL_FINAL));
    a.fold(R9, mix::SHIFT_FINAL);
    a.alu(AND, R9, imm(mix::OUT_MASK));
    a.alu_reg(MOV, R0, R9);
    a.exit();

    // Neither IPv4 nor IPv6.
    a.place(Unknown)?;
    a.alu(MOV, R0, 0);
    a.exit();
    a.finish()
}

/// Packets for [`Steering::self_check`] and the tests: one flow, 198.51.100.2:40000 to
/// the service 203.0.113.10:443, reaching the backend 2001:db8:1::10:443 from
/// 2001:db8:64::c633:6402 (the prefix 2001:db8:64::/96).
mod sample {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use kracauer_core::wire::ip_proto;

    pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    pub const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    pub const BACKEND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

    /// `client` embedded in 2001:db8:64::/96.
    pub fn embed(client: Ipv4Addr) -> Ipv6Addr {
        let [a, b, c, d] = client.octets();
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x64,
            0,
            0,
            0,
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
        )
    }

    /// An IPv4 header (checksum left 0: steering does not read it) with `options`,
    /// then `payload`.
    pub fn ipv4(
        protocol: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let header_len = 20 + options.len();
        let total = (header_len + payload.len()) as u16;
        let mut p = vec![0x40 | (header_len / 4) as u8, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(options);
        p.extend_from_slice(payload);
        p
    }

    /// An IPv6 header, then `payload`.
    pub fn ipv6(next_header: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next_header, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    /// A TCP header (SYN, no options) from `src` to `dst` port.
    pub fn tcp(src: u16, dst: u16) -> Vec<u8> {
        let mut t = Vec::with_capacity(20);
        t.extend_from_slice(&src.to_be_bytes());
        t.extend_from_slice(&dst.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        t
    }

    /// An ICMP (v4 or v6) message: type, code, 4 bytes of `rest`, then the quote.
    pub fn icmp(ty: u8, code: u8, rest: [u8; 4], quote: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(quote);
        m
    }

    /// The flow's packets in both directions and an ICMP error about each direction.
    pub fn packets() -> [Vec<u8>; 4] {
        let to_client = ipv4(ip_proto::TCP, SERVICE, CLIENT, &[], &tcp(443, 40000));
        let to_backend = ipv6(ip_proto::TCP, embed(CLIENT), BACKEND, &tcp(40000, 443));
        [
            ipv4(ip_proto::TCP, CLIENT, SERVICE, &[], &tcp(40000, 443)),
            ipv6(ip_proto::TCP, BACKEND, embed(CLIENT), &tcp(443, 40000)),
            // Fragmentation needed, next-hop MTU 1400.
            ipv4(
                ip_proto::ICMP,
                ROUTER_V4,
                SERVICE,
                &[],
                &icmp(3, 4, [0, 0, 0x05, 0x78], &to_client[..28]),
            ),
            // Packet too big, MTU 1280.
            ipv6(
                ip_proto::ICMPV6,
                ROUTER_V6,
                embed(CLIENT),
                &icmp(2, 0, [0, 0, 0x05, 0], &to_backend[..48]),
            ),
        ]
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
