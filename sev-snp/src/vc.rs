//! #VC (vector 29) handling for a 64-bit guest: decode the instruction that raised it and
//! emulate it — CPUID from the CPUID page, `IN`/`OUT` and MMIO `MOV`s through the GHCB.
//!
//! The decoder accepts exactly the forms the monitor's code compiles to (volatile loads and
//! stores, `in`/`out` with an immediate or DX port) and refuses everything else: an
//! instruction the decoder does not know is never half-emulated.

use crate::cpuid_page::{CpuState, CpuidError, CpuidTable};
use crate::ghcb::{self, GhcbError, GhcbPlatform};

/// #VC error code: CPUID intercept.
pub const EXIT_CPUID: u64 = 0x72;
/// #VC error code: IOIO intercept.
pub const EXIT_IOIO: u64 = 0x7B;
/// #VC error code: nested page fault (MMIO on a page the hypervisor marked reserved).
pub const EXIT_NPF: u64 = 0x400;

/// Longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// The interrupted context: general registers by x86 number (0 RAX, 1 RCX, 2 RDX, 3 RBX,
/// 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8..15 R8..R15) and RIP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// General-purpose registers.
    pub gpr: [u64; 16],
    /// Instruction pointer (of the faulting instruction on entry, the next one on return).
    pub rip: u64,
}

/// Why an instruction was not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the instruction does.
    #[error("instruction truncated")]
    Truncated,
    /// More than 15 bytes.
    #[error("instruction longer than 15 bytes")]
    TooLong,
    /// A valid instruction (or prefix) this emulator does not handle.
    #[error("instruction not supported by the #VC emulator")]
    Unsupported,
    /// The memory operand is a register (mod = 3): not an MMIO access.
    #[error("instruction has no memory operand")]
    NotMemory,
}

/// Why a #VC was not handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VcError {
    /// An exit code the handler does not emulate.
    #[error("unsupported #VC exit code {0:#x}")]
    Unsupported(u64),
    /// The instruction could not be decoded.
    #[error("decoding: {0}")]
    Decode(DecodeError),
    /// CPUID emulation failed.
    #[error("CPUID: {0}")]
    Cpuid(CpuidError),
    /// The GHCB exchange failed.
    #[error("GHCB: {0}")]
    Ghcb(GhcbError),
    /// An MMIO access outside the device window.
    #[error("MMIO #VC at {0:#x}, outside the device window")]
    NotMmio(u64),
}

impl From<DecodeError> for VcError {
    fn from(e: DecodeError) -> Self {
        VcError::Decode(e)
    }
}
impl From<GhcbError> for VcError {
    fn from(e: GhcbError) -> Self {
        VcError::Ghcb(e)
    }
}
impl From<CpuidError> for VcError {
    fn from(e: CpuidError) -> Self {
        VcError::Cpuid(e)
    }
}

/// What the kernel supplies besides the GHCB.
pub trait VcEnv {
    /// The guest-physical address of `[va, va + len)` if it lies entirely in the device
    /// window, else `None`.
    fn mmio_gpa(&self, va: u64, len: u64) -> Option<u64>;
    /// Live CPU state for CPUID emulation.
    fn cpu_state(&self) -> CpuState;
}

/// A register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegOperand {
    /// A general register's low `size` bytes.
    Gpr(u8),
    /// AH, CH, DH or BH (bits 8..16 of register 0..3), only without REX.
    HighByte(u8),
}

/// Where the port number of an `IN`/`OUT` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// An immediate byte.
    Imm(u8),
    /// DX.
    Dx,
}

/// A decoded `IN`/`OUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInsn {
    /// The port operand.
    pub port: Port,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    /// `IN` (else `OUT`).
    pub is_in: bool,
    /// Instruction length.
    pub len: u8,
}

/// A decoded memory operand (64-bit addressing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    /// Base register.
    pub base: Option<u8>,
    /// Index register and scale (1, 2, 4, 8).
    pub index: Option<(u8, u8)>,
    /// Displacement (sign-extended).
    pub disp: i64,
    /// RIP-relative (relative to the next instruction).
    pub rip_relative: bool,
}

/// How a read value reaches its register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// Plain `MOV`: the value is as wide as the register operand.
    None,
    /// `MOVZX`.
    Zero,
    /// `MOVSX`.
    Sign,
}

/// What an MMIO instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioKind {
    /// Load `size` bytes into `dst` (of `dst_size` bytes).
    Read {
        /// Destination register.
        dst: RegOperand,
        /// Destination width.
        dst_size: u8,
        /// Extension rule.
        extend: Extend,
    },
    /// Store a register's low `size` bytes.
    WriteReg(RegOperand),
    /// Store an immediate.
    WriteImm(u64),
}

/// A decoded MMIO `MOV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInsn {
    /// The access.
    pub kind: MmioKind,
    /// Bytes accessed in memory (1, 2, 4, 8).
    pub size: u8,
    /// The memory operand.
    pub mem: MemOperand,
    /// Instruction length.
    pub len: u8,
}

struct Prefixes {
    opsize: bool,
    rex: u8,
    len: usize,
}

fn byte(insn: &[u8], i: usize) -> Result<u8, DecodeError> {
    if i >= MAX_INSN_LEN {
        return Err(DecodeError::TooLong);
    }
    insn.get(i).copied().ok_or(DecodeError::Truncated)
}

fn prefixes(insn: &[u8]) -> Result<Prefixes, DecodeError> {
    let mut p = Prefixes {
        opsize: false,
        rex: 0,
        len: 0,
    };
    loop {
        let b = byte(insn, p.len)?;
        match b {
            // A REX must be the last prefix; one followed by a legacy prefix is refused
            // rather than (as the CPU does) silently ignored.
            _ if p.rex != 0 => return Ok(p),
            0x66 => p.opsize = true,
            // CS/SS/DS/ES overrides are no-ops in 64-bit mode.
            0x2E | 0x36 | 0x3E | 0x26 => {}
            // FS/GS bases, address-size, LOCK and REP change the meaning: refuse.
            0x64 | 0x65 | 0x67 | 0xF0 | 0xF2 | 0xF3 => return Err(DecodeError::Unsupported),
            0x40..=0x4F => p.rex = b,
            _ => return Ok(p),
        }
        p.len += 1;
    }
}

/// Decodes `IN`/`OUT` (non-string forms).
pub fn decode_ioio(insn: &[u8]) -> Result<IoInsn, DecodeError> {
    let p = prefixes(insn)?;
    let op = byte(insn, p.len)?;
    let wide = if p.opsize { 2 } else { 4 };
    let (port, size, is_in, len) = match op {
        0xE4 => (Port::Imm(byte(insn, p.len + 1)?), 1, true, p.len + 2),
        0xE5 => (Port::Imm(byte(insn, p.len + 1)?), wide, true, p.len + 2),
        0xE6 => (Port::Imm(byte(insn, p.len + 1)?), 1, false, p.len + 2),
        0xE7 => (Port::Imm(byte(insn, p.len + 1)?), wide, false, p.len + 2),
        0xEC => (Port::Dx, 1, true, p.len + 1),
        0xED => (Port::Dx, wide, true, p.len + 1),
        0xEE => (Port::Dx, 1, false, p.len + 1),
        0xEF => (Port::Dx, wide, false, p.len + 1),
        // INS/OUTS would move data between guest memory and the port: not emulated.
        _ => return Err(DecodeError::Unsupported),
    };
    Ok(IoInsn {
        port,
        size,
        is_in,
        len: len as u8,
    })
}

fn reg_operand(num: u8, size: u8, rex: u8) -> RegOperand {
    if size == 1 && rex == 0 && (4..8).contains(&num) {
        RegOperand::HighByte(num - 4)
    } else {
        RegOperand::Gpr(num)
    }
}

/// Decodes ModRM (+ SIB + displacement) at `at`; returns (reg field, operand, next index).
fn modrm(insn: &[u8], at: usize, rex: u8) -> Result<(u8, MemOperand, usize), DecodeError> {
    let m = byte(insn, at)?;
    let (md, reg, rm) = (m >> 6, ((m >> 3) & 7) | ((rex & 4) << 1), m & 7);
    if md == 3 {
        return Err(DecodeError::NotMemory);
    }
    let rex_b = (rex & 1) << 3;
    let mut i = at + 1;
    let mut mem = MemOperand {
        base: None,
        index: None,
        disp: 0,
        rip_relative: false,
    };
    let mut disp32_only = false;
    if rm == 4 {
        let sib = byte(insn, i)?;
        i += 1;
        let (scale, idx, base) = (
            1u8 << (sib >> 6),
            ((sib >> 3) & 7) | ((rex & 2) << 2),
            sib & 7,
        );
        if idx != 4 {
            mem.index = Some((idx, scale));
        }
        if base == 5 && md == 0 {
            disp32_only = true;
        } else {
            mem.base = Some(base | rex_b);
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        disp32_only = true;
    } else {
        mem.base = Some(rm | rex_b);
    }
    if md == 1 {
        mem.disp = i64::from(byte(insn, i)? as i8);
        i += 1;
    } else if md == 2 || disp32_only {
        let d = [
            byte(insn, i)?,
            byte(insn, i + 1)?,
            byte(insn, i + 2)?,
            byte(insn, i + 3)?,
        ];
        mem.disp = i64::from(i32::from_le_bytes(d));
        i += 4;
    }
    Ok((reg, mem, i))
}

/// Decodes the `MOV` forms that access memory: 88/89/8A/8B, C6/C7 /0, 0F B6/B7/BE/BF.
pub fn decode_mmio(insn: &[u8]) -> Result<MmioInsn, DecodeError> {
    let p = prefixes(insn)?;
    let opsize: u8 = if p.rex & 8 != 0 {
        8
    } else if p.opsize {
        2
    } else {
        4
    };
    let mut i = p.len;
    let op = byte(insn, i)?;
    i += 1;
    let two_byte = op == 0x0F;
    let op2 = if two_byte {
        let b = byte(insn, i)?;
        i += 1;
        b
    } else {
        0
    };
    let (reg, mem, mut i) = match (two_byte, op, op2) {
        (false, 0x88 | 0x89 | 0x8A | 0x8B | 0xC6 | 0xC7, _)
        | (true, _, 0xB6 | 0xB7 | 0xBE | 0xBF) => modrm(insn, i, p.rex)?,
        _ => return Err(DecodeError::Unsupported),
    };
    let (kind, size) = match (two_byte, op, op2) {
        (false, 0x88, _) => (MmioKind::WriteReg(reg_operand(reg, 1, p.rex)), 1),
        (false, 0x89, _) => (MmioKind::WriteReg(RegOperand::Gpr(reg)), opsize),
        (false, 0x8A, _) => (
            MmioKind::Read {
                dst: reg_operand(reg, 1, p.rex),
                dst_size: 1,
                extend: Extend::None,
            },
            1,
        ),
        (false, 0x8B, _) => (
            MmioKind::Read {
                dst: RegOperand::Gpr(reg),
                dst_size: opsize,
                extend: Extend::None,
            },
            opsize,
        ),
        (false, 0xC6 | 0xC7, _) => {
            if reg & 7 != 0 {
                return Err(DecodeError::Unsupported);
            }
            let size = if op == 0xC6 { 1 } else { opsize };
            let imm_len = size.min(4) as usize;
            let mut imm = 0u64;
            for k in 0..imm_len {
                imm |= u64::from(byte(insn, i + k)?) << (8 * k);
            }
            i += imm_len;
            if size == 8 {
                imm = imm as u32 as i32 as i64 as u64;
            }
            (MmioKind::WriteImm(imm), size)
        }
        (true, _, b) => {
            let size = if b == 0xB6 || b == 0xBE { 1 } else { 2 };
            let extend = if b < 0xBE { Extend::Zero } else { Extend::Sign };
            (
                MmioKind::Read {
                    dst: RegOperand::Gpr(reg),
                    dst_size: opsize,
                    extend,
                },
                size,
            )
        }
        _ => return Err(DecodeError::Unsupported),
    };
    if i > MAX_INSN_LEN {
        return Err(DecodeError::TooLong);
    }
    Ok(MmioInsn {
        kind,
        size,
        mem,
        len: i as u8,
    })
}

/// The virtual address the memory operand names (wrapping, as the CPU computes it).
pub fn effective_address(insn: &MmioInsn, regs: &Regs) -> u64 {
    let m = &insn.mem;
    let mut a = m.disp as u64;
    if m.rip_relative {
        a = a.wrapping_add(regs.rip.wrapping_add(u64::from(insn.len)));
    }
    if let Some(b) = m.base {
        a = a.wrapping_add(regs.gpr[usize::from(b & 15)]);
    }
    if let Some((x, scale)) = m.index {
        a = a.wrapping_add(regs.gpr[usize::from(x & 15)].wrapping_mul(u64::from(scale)));
    }
    a
}

fn mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        s => (1u64 << (8 * u32::from(s))) - 1,
    }
}

fn read_reg(regs: &Regs, r: RegOperand, size: u8) -> u64 {
    match r {
        RegOperand::Gpr(n) => regs.gpr[usize::from(n & 15)] & mask(size),
        RegOperand::HighByte(n) => (regs.gpr[usize::from(n & 3)] >> 8) & 0xFF,
    }
}

/// Writes with the x86-64 rules: 32-bit results zero-extend, 8/16-bit results merge.
fn write_reg(regs: &mut Regs, r: RegOperand, size: u8, value: u64) {
    match r {
        RegOperand::Gpr(n) => {
            let g = &mut regs.gpr[usize::from(n & 15)];
            *g = match size {
                8 => value,
                4 => value & 0xFFFF_FFFF,
                s => (*g & !mask(s)) | (value & mask(s)),
            };
        }
        RegOperand::HighByte(n) => {
            let g = &mut regs.gpr[usize::from(n & 3)];
            *g = (*g & !0xFF00) | ((value & 0xFF) << 8);
        }
    }
}

fn extend(value: u64, from: u8, how: Extend) -> u64 {
    match how {
        Extend::Sign if from < 8 => {
            let shift = 64 - 8 * u32::from(from);
            (((value << shift) as i64) >> shift) as u64
        }
        _ => value & mask(from),
    }
}

/// Handles one #VC: emulates the instruction at `regs.rip` (its bytes in `insn`, possibly
/// fewer than 15 near the end of a page), updates the registers it writes and advances
/// `regs.rip`. On error `regs` is unchanged.
pub fn handle<P: GhcbPlatform, E: VcEnv>(
    exit_code: u64,
    regs: &mut Regs,
    insn: &[u8],
    cpuid: &CpuidTable,
    env: &E,
    ghcb: &mut P,
    version: u16,
) -> Result<(), VcError> {
    let mut r = *regs;
    match exit_code {
        EXIT_CPUID => {
            if byte(insn, 0)? != 0x0F || byte(insn, 1)? != 0xA2 {
                return Err(DecodeError::Unsupported.into());
            }
            // SECURITY: answered from the PSP-checked table only; the host is never asked.
            let out = cpuid.lookup(r.gpr[0] as u32, r.gpr[1] as u32, &env.cpu_state())?;
            (r.gpr[0], r.gpr[3], r.gpr[1], r.gpr[2]) =
                (out[0].into(), out[1].into(), out[2].into(), out[3].into());
            r.rip = r.rip.wrapping_add(2);
        }
        EXIT_IOIO => {
            let io = decode_ioio(insn)?;
            let port = match io.port {
                Port::Imm(p) => u16::from(p),
                Port::Dx => r.gpr[2] as u16,
            };
            if io.is_in {
                // The general 64-bit rule (SDM vol. 1, 3.4.1.1), which IN does not except:
                // IN AL/AX merge into RAX, IN EAX zero-extends.
                let v = ghcb::io_in(ghcb, version, port, io.size)?;
                write_reg(&mut r, RegOperand::Gpr(0), io.size, u64::from(v));
            } else {
                ghcb::io_out(
                    ghcb,
                    version,
                    port,
                    io.size,
                    (r.gpr[0] & mask(io.size)) as u32,
                )?;
            }
            r.rip = r.rip.wrapping_add(u64::from(io.len));
        }
        EXIT_NPF => {
            let m = decode_mmio(insn)?;
            let va = effective_address(&m, &r);
            // SECURITY: only the device window becomes a host-visible MMIO request; any other
            // address (private RAM) means a bug or an attack, not a device access.
            let gpa = env
                .mmio_gpa(va, u64::from(m.size))
                .ok_or(VcError::NotMmio(va))?;
            let size = usize::from(m.size);
            match m.kind {
                MmioKind::Read {
                    dst,
                    dst_size,
                    extend: how,
                } => {
                    let mut buf = [0u8; 8];
                    ghcb::mmio_read(ghcb, version, gpa, &mut buf[..size])?;
                    let v = extend(u64::from_le_bytes(buf), m.size, how);
                    write_reg(&mut r, dst, dst_size, v);
                }
                MmioKind::WriteReg(src) => {
                    let v = read_reg(&r, src, m.size);
                    ghcb::mmio_write(ghcb, version, gpa, &v.to_le_bytes()[..size])?;
                }
                MmioKind::WriteImm(v) => {
                    ghcb::mmio_write(ghcb, version, gpa, &v.to_le_bytes()[..size])?;
                }
            }
            r.rip = r.rip.wrapping_add(u64::from(m.len));
        }
        other => return Err(VcError::Unsupported(other)),
    }
    *regs = r;
    Ok(())
}

#[cfg(test)]
mod tests;
