//! The steering program: [`steer::steer_value`] from `kracauer_core::steer`, instruction
//! by instruction, with the key baked in as immediates. This file owns the program's
//! register roles and jump targets; the encoding is in `assembler.rs`.

use kracauer_core::steer::{self, ICMPV4_ERRORS, ICMPV6_INFO_FIRST, SteerKey, mix, offset};
use kracauer_core::wire::ip_proto;

use super::assembler::{Asm, AsmError, Insn, R0, R1, Reg, Target, imm, op};

/// The context, where the packet loads require it.
pub(super) const CTX: Reg = Reg(6);
/// Offset of the transport header (of the ICMP header, for an ICMP error).
const R7: Reg = Reg(7);
/// IPv4 protocol; then, for an ICMP error, both header lengths added (the quoted
/// transport header is at that plus the ICMP header).
const R8: Reg = Reg(8);
/// The client address.
const R9: Reg = Reg(9);

/// Jump targets of the steering program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Label {
    V6,
    V4Ports,
    V4Error,
    V6Ports,
    Port0,
    Hash,
    Unknown,
}

impl Target for Label {
    const COUNT: usize = 7;

    fn index(self) -> usize {
        self as usize
    }

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

/// The steering program for `key`: [`steer::steer_value`], instruction by instruction
/// (the comments name the [`steer::client_of_packet`] case).
pub(super) fn program(key: SteerKey) -> Result<Vec<Insn>, AsmError> {
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
