//! The eBPF instruction encoder: opcodes, registers, `struct bpf_insn` in the kernel's
//! wire form, and a small forward-only assembler whose jumps name labels that
//! [`Asm::finish`] resolves. It knows nothing of steering; the program is in
//! `program.rs`.

/// Bytes per eBPF instruction.
pub(super) const INSN_LEN: usize = 8;

/// Opcode parts (`linux/bpf_common.h`, `linux/bpf.h`).
pub(super) mod op {
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
pub(super) struct Reg(pub u8);

/// Return value; where the packet loads put what they read.
pub(super) const R0: Reg = Reg(0);
/// First argument (the packet's context) on entry; scratch, as r2..r5: the packet loads
/// clobber them. [`Asm::fold`] uses it.
pub(super) const R1: Reg = Reg(1);

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Insn {
    pub code: u8,
    pub dst: Reg,
    pub src: Reg,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The wire form: opcode, registers (destination in the low nibble), offset and
    /// immediate little-endian.
    pub(super) fn to_bytes(self) -> [u8; INSN_LEN] {
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
pub(super) fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// The jump targets of one program: a fixed set, each with a name for errors.
pub(super) trait Target: Copy {
    /// How many targets there are; [`index`](Target::index) is below it.
    const COUNT: usize;
    /// This target's place among them.
    fn index(self) -> usize;
    /// This target's name.
    fn name(self) -> &'static str;
}

/// Why the assembler could not finish a program (a defect in the program).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum AsmError {
    #[error("jump to {0:?}, which is never placed")]
    Unplaced(&'static str),
    #[error("label {0:?} placed twice")]
    PlacedTwice(&'static str),
    #[error("jump to {0:?} goes backwards or too far")]
    BadJump(&'static str),
}

/// A forward-only assembler: jumps name a label, resolved by [`Asm::finish`].
#[derive(Debug)]
pub(super) struct Asm<L> {
    insns: Vec<Insn>,
    placed: Vec<Option<usize>>,
    jumps: Vec<(usize, L)>,
}

impl<L: Target> Default for Asm<L> {
    fn default() -> Self {
        Self {
            insns: Vec::new(),
            placed: vec![None; L::COUNT],
            jumps: Vec::new(),
        }
    }
}

/// An offset in the packet, or a 32-bit constant, as an immediate (bit pattern kept).
pub(super) fn imm(v: impl Into<u64>) -> i32 {
    v.into() as u32 as i32
}

impl<L: Target> Asm<L> {
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
    pub(super) fn load_abs(&mut self, size: u8, at: usize) {
        self.push(op::LD | op::ABS | size, R0, R0, imm(at as u64));
    }

    /// r0 = the `size` bytes at `base + at`, big-endian (ends with 0 past the end).
    pub(super) fn load_ind(&mut self, size: u8, base: Reg, at: usize) {
        self.push(op::LD | op::IND | size, R0, base, imm(at as u64));
    }

    /// 32-bit `dst = dst OP k`.
    pub(super) fn alu(&mut self, op: u8, dst: Reg, k: i32) {
        self.push(op::ALU | op | op::K, dst, R0, k);
    }

    /// 32-bit `dst = dst OP src`.
    pub(super) fn alu_reg(&mut self, op: u8, dst: Reg, src: Reg) {
        self.push(op::ALU | op | op::X, dst, src, 0);
    }

    /// 64-bit `dst = src` (for the context pointer).
    pub(super) fn mov64(&mut self, dst: Reg, src: Reg) {
        self.push(op::ALU64 | op::MOV | op::X, dst, src, 0);
    }

    /// Jumps to `to` if `reg OP k`.
    pub(super) fn jump_if(&mut self, op: u8, reg: Reg, k: impl Into<u64>, to: L) {
        self.jumps.push((self.insns.len(), to));
        self.push(op::JMP | op | op::K, reg, R0, imm(k));
    }

    /// Jumps to `to`.
    pub(super) fn jump(&mut self, to: L) {
        self.jumps.push((self.insns.len(), to));
        self.push(op::JMP | op::JA, R0, R0, 0);
    }

    /// Ends the program with r0.
    pub(super) fn exit(&mut self) {
        self.push(op::JMP | op::EXIT, R0, R0, 0);
    }

    /// `dst ^= dst >> shift`, through r1.
    pub(super) fn fold(&mut self, dst: Reg, shift: u32) {
        self.alu_reg(op::MOV, R1, dst);
        self.alu(op::RSH, R1, imm(shift));
        self.alu_reg(op::XOR, dst, R1);
    }

    /// Puts `label` at the next instruction.
    pub(super) fn place(&mut self, label: L) -> Result<(), AsmError> {
        let Some(slot) = self.placed.get_mut(label.index()) else {
            return Err(AsmError::Unplaced(label.name()));
        };
        if slot.is_some() {
            return Err(AsmError::PlacedTwice(label.name()));
        }
        *slot = Some(self.insns.len());
        Ok(())
    }

    /// The instructions, every jump pointing at its label.
    pub(super) fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, label) in &self.jumps {
            let target = self
                .placed
                .get(label.index())
                .copied()
                .flatten()
                .ok_or(AsmError::Unplaced(label.name()))?;
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
