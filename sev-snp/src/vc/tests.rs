use super::*;
use crate::cpuid_page::tests::page as cpuid_page;
use crate::ghcb::{Field, GHCB_SIZE, Ghcb, exit_code};
use std::boxed::Box;
use std::collections::BTreeMap;
use std::vec::Vec;

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RSP: u8 = 4;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 8;
const R12: u8 = 12;
const R13: u8 = 13;

// Encodings written from the Intel SDM vol. 2 opcode tables (ModRM/SIB tables 2-2, 2-3)
// and cross-checked with GNU as + objdump by hand; the assembly is in each comment.

#[test]
fn decodes_mmio_movs() {
    let mem = |base, index, disp| MemOperand {
        base,
        index,
        disp,
        rip_relative: false,
    };
    let read = |dst, dst_size, extend| MmioKind::Read {
        dst: RegOperand::Gpr(dst),
        dst_size,
        extend,
    };
    #[rustfmt::skip]
    let cases: &[(&[u8], MmioKind, u8, MemOperand)] = &[
        // mov eax, [rdi]
        (&[0x8b, 0x07], read(RAX, 4, Extend::None), 4, mem(Some(RDI), None, 0)),
        // mov rax, [rdi+8]
        (&[0x48, 0x8b, 0x47, 0x08], read(RAX, 8, Extend::None), 8, mem(Some(RDI), None, 8)),
        // mov [r12], edx   (r12 as base needs a SIB)
        (&[0x41, 0x89, 0x14, 0x24], MmioKind::WriteReg(RegOperand::Gpr(RDX)), 4, mem(Some(R12), None, 0)),
        // mov [rax], dx
        (&[0x66, 0x89, 0x10], MmioKind::WriteReg(RegOperand::Gpr(RDX)), 2, mem(Some(RAX), None, 0)),
        // movzx eax, byte [rsi]
        (&[0x0f, 0xb6, 0x06], read(RAX, 4, Extend::Zero), 1, mem(Some(RSI), None, 0)),
        // movzx ecx, word [rdi-4]
        (&[0x0f, 0xb7, 0x4f, 0xfc], read(RCX, 4, Extend::Zero), 2, mem(Some(RDI), None, -4)),
        // movsx rax, byte [rcx]
        (&[0x48, 0x0f, 0xbe, 0x01], read(RAX, 8, Extend::Sign), 1, mem(Some(RCX), None, 0)),
        // mov dword [rax+4], 0x12345678
        (&[0xc7, 0x40, 0x04, 0x78, 0x56, 0x34, 0x12], MmioKind::WriteImm(0x1234_5678), 4, mem(Some(RAX), None, 4)),
        // mov qword [rax], -1   (imm32 sign-extended)
        (&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], MmioKind::WriteImm(u64::MAX), 8, mem(Some(RAX), None, 0)),
        // mov word [rax], 0x1234
        (&[0x66, 0xc7, 0x00, 0x34, 0x12], MmioKind::WriteImm(0x1234), 2, mem(Some(RAX), None, 0)),
        // mov byte [rdi], 0x7f
        (&[0xc6, 0x07, 0x7f], MmioKind::WriteImm(0x7f), 1, mem(Some(RDI), None, 0)),
        // mov [rdi+rcx*4+0x100], eax
        (&[0x89, 0x84, 0x8f, 0x00, 0x01, 0x00, 0x00], MmioKind::WriteReg(RegOperand::Gpr(RAX)), 4, mem(Some(RDI), Some((RCX, 4)), 0x100)),
        // mov r8d, [r13+0]   (r13 as base needs mod=1)
        (&[0x45, 0x8b, 0x45, 0x00], read(R8, 4, Extend::None), 4, mem(Some(R13), None, 0)),
        // mov eax, [rsp+0x10]
        (&[0x8b, 0x44, 0x24, 0x10], read(RAX, 4, Extend::None), 4, mem(Some(RSP), None, 0x10)),
        // mov eax, [rcx*8+0x1000]   (no base)
        (&[0x8b, 0x04, 0xcd, 0x00, 0x10, 0x00, 0x00], read(RAX, 4, Extend::None), 4, mem(None, Some((RCX, 8)), 0x1000)),
        // mov [rdi], ah   (AH without REX)
        (&[0x88, 0x27], MmioKind::WriteReg(RegOperand::HighByte(0)), 1, mem(Some(RDI), None, 0)),
        // mov [rdi], spl  (REX: register 4 is SPL)
        (&[0x40, 0x88, 0x27], MmioKind::WriteReg(RegOperand::Gpr(RSP)), 1, mem(Some(RDI), None, 0)),
        // ds: mov eax, [rdi]   (segment no-op prefix)
        (&[0x3e, 0x8b, 0x07], read(RAX, 4, Extend::None), 4, mem(Some(RDI), None, 0)),
    ];
    for (bytes, kind, size, m) in cases {
        let d = decode_mmio(bytes).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
        assert_eq!(
            (d.kind, d.size, d.mem, usize::from(d.len)),
            (*kind, *size, *m, bytes.len()),
            "{bytes:02x?}"
        );
        // Trailing bytes (the next instruction) are not consumed.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0x90; 8]);
        assert_eq!(decode_mmio(&longer).unwrap().len, d.len);
        // Any shorter prefix of the bytes is truncated, never misread.
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_mmio(&bytes[..cut]),
                Err(DecodeError::Truncated),
                "{bytes:02x?} cut at {cut}"
            );
        }
    }
    // mov eax, [rip+0x10]
    let d = decode_mmio(&[0x8b, 0x05, 0x10, 0, 0, 0]).unwrap();
    assert!(d.mem.rip_relative && d.mem.disp == 0x10 && d.len == 6);
    let regs = Regs {
        rip: 0x1000,
        ..Default::default()
    };
    assert_eq!(effective_address(&d, &regs), 0x1000 + 6 + 0x10);
}

#[test]
fn refuses_what_it_does_not_emulate() {
    #[rustfmt::skip]
    let cases: &[(&[u8], DecodeError)] = &[
        (&[0x89, 0xc0], DecodeError::NotMemory),             // mov eax, eax
        (&[0x64, 0x8b, 0x07], DecodeError::Unsupported),     // mov eax, fs:[rdi]
        (&[0x65, 0x8b, 0x07], DecodeError::Unsupported),     // gs:
        (&[0xf0, 0x89, 0x07], DecodeError::Unsupported),     // lock
        (&[0xf3, 0xa5], DecodeError::Unsupported),           // rep movsd
        (&[0x67, 0x8b, 0x07], DecodeError::Unsupported),     // addr32
        (&[0x48, 0x66, 0x8b, 0x07], DecodeError::Unsupported), // REX before a legacy prefix
        (&[0xa1, 0, 0, 0, 0, 0, 0, 0, 0], DecodeError::Unsupported), // mov eax, moffs
        (&[0xc7, 0x48, 0x04, 0, 0, 0, 0], DecodeError::Unsupported), // C7 /1
        (&[0x01, 0x07], DecodeError::Unsupported),           // add [rdi], eax
        (&[], DecodeError::Truncated),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode_mmio(bytes), Err(*want), "{bytes:02x?}");
    }
    // 14 segment prefixes, then the opcode at byte 15: too long.
    let mut long = [0x3e; 16];
    long[14] = 0x8b;
    long[15] = 0x07;
    assert_eq!(decode_mmio(&long), Err(DecodeError::TooLong));
    // 13 prefixes + 2 bytes = 15: fine.
    let mut ok = [0x3e; 15];
    ok[13] = 0x8b;
    ok[14] = 0x07;
    assert_eq!(decode_mmio(&ok).unwrap().len, 15);
}

#[test]
fn decodes_in_and_out() {
    #[rustfmt::skip]
    let cases: &[(&[u8], Port, u8, bool)] = &[
        (&[0xee], Port::Dx, 1, false),           // out dx, al
        (&[0xec], Port::Dx, 1, true),            // in al, dx
        (&[0xef], Port::Dx, 4, false),           // out dx, eax
        (&[0x66, 0xed], Port::Dx, 2, true),      // in ax, dx
        (&[0xe4, 0x60], Port::Imm(0x60), 1, true), // in al, 0x60
        (&[0xe7, 0x43], Port::Imm(0x43), 4, false), // out 0x43, eax
        (&[0x66, 0xe5, 0x40], Port::Imm(0x40), 2, true), // in ax, 0x40
    ];
    for (bytes, port, size, is_in) in cases {
        let d = decode_ioio(bytes).unwrap();
        assert_eq!(
            (d.port, d.size, d.is_in, usize::from(d.len)),
            (*port, *size, *is_in, bytes.len())
        );
    }
    for bad in [&[0x6c][..], &[0xf3, 0x6e], &[0x6f], &[0xe4], &[0x90]] {
        assert!(decode_ioio(bad).is_err(), "{bad:02x?}");
    }
}

/// Assembles `lines` (Intel syntax) with GNU `as --64` and returns each instruction's
/// bytes as `objdump` lists them, or `None` when the tools are missing.
/// Whether GNU `as` and `objdump` (binutils) run here.
fn binutils_present() -> bool {
    ["as", "objdump"].iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Assembles `lines` (Intel syntax) with GNU as; the bytes of each instruction.
fn assemble(name: &str, lines: &[&str]) -> Vec<Vec<u8>> {
    use std::process::Command;
    let dir = std::env::temp_dir().join(std::format!("sev-snp-vc-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, obj) = (dir.join("t.s"), dir.join("t.o"));
    let mut text = std::string::String::from(".intel_syntax noprefix\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&src, text).unwrap();
    let out = Command::new("as")
        .arg("--64")
        .arg("-o")
        .arg(&obj)
        .arg(&src)
        .output()
        .expect("run GNU as");
    assert!(
        out.status.success(),
        "as: {}",
        std::string::String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("objdump")
        .args(["-d", "--insn-width=15"])
        .arg(&obj)
        .output()
        .expect("run objdump");
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    let listing = std::string::String::from_utf8(out.stdout).unwrap();
    // "   0:\t8b 07                \tmov    (%rdi),%eax"
    let insns: Vec<Vec<u8>> = listing
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let addr = f.next()?.trim();
            (addr.ends_with(':') && u64::from_str_radix(&addr[..addr.len() - 1], 16).is_ok())
                .then_some(())?;
            Some(
                f.next()?
                    .split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        insns.len(),
        lines.len(),
        "one listing line per instruction:\n{listing}"
    );
    insns
}

#[test]
fn decoder_agrees_with_gnu_as() {
    if omega_test_support::require(
        binutils_present().then_some(()),
        "GNU as and objdump (package binutils) are not installed",
    )
    .is_none()
    {
        return;
    }
    let mem = |base, index, disp| MemOperand {
        base,
        index,
        disp,
        rip_relative: false,
    };
    let rd = |dst, dst_size, extend| MmioKind::Read {
        dst: RegOperand::Gpr(dst),
        dst_size,
        extend,
    };
    let wr = |src| MmioKind::WriteReg(RegOperand::Gpr(src));
    let (rbx, rbp, r9, r10, r11, r14, r15) = (3u8, 5u8, 9u8, 10u8, 11u8, 14u8, 15u8);
    // What each line means, written from the assembly text.
    #[rustfmt::skip]
    let mmio: &[(&str, MmioKind, u8, MemOperand)] = &[
        ("mov eax, dword ptr [rdi]", rd(RAX, 4, Extend::None), 4, mem(Some(RDI), None, 0)),
        ("mov rax, qword ptr [rdi+8]", rd(RAX, 8, Extend::None), 8, mem(Some(RDI), None, 8)),
        ("mov dword ptr [r12], edx", wr(RDX), 4, mem(Some(R12), None, 0)),
        ("mov word ptr [rax], dx", wr(RDX), 2, mem(Some(RAX), None, 0)),
        ("mov byte ptr [rbx+rcx*2-0x10], al", wr(RAX), 1, mem(Some(rbx), Some((RCX, 2)), -0x10)),
        ("mov r15, qword ptr [r13+r14*8+0x12345678]", rd(r15, 8, Extend::None), 8, mem(Some(R13), Some((r14, 8)), 0x1234_5678)),
        ("mov r9w, word ptr [rsp+rbp*1]", rd(r9, 2, Extend::None), 2, mem(Some(RSP), Some((rbp, 1)), 0)),
        ("mov esi, dword ptr [rax+r12*2]", rd(RSI, 4, Extend::None), 4, mem(Some(RAX), Some((R12, 2)), 0)),
        ("mov al, byte ptr [r8]", rd(RAX, 1, Extend::None), 1, mem(Some(R8), None, 0)),
        ("mov ah, byte ptr [rsi]", MmioKind::Read { dst: RegOperand::HighByte(0), dst_size: 1, extend: Extend::None }, 1, mem(Some(RSI), None, 0)),
        ("mov byte ptr [rdx], bh", MmioKind::WriteReg(RegOperand::HighByte(3)), 1, mem(Some(RDX), None, 0)),
        ("mov byte ptr [rdx], dil", wr(RDI), 1, mem(Some(RDX), None, 0)),
        ("mov byte ptr [rdx], r11b", wr(r11), 1, mem(Some(RDX), None, 0)),
        ("movzx eax, byte ptr [rsi]", rd(RAX, 4, Extend::Zero), 1, mem(Some(RSI), None, 0)),
        ("movzx r10, word ptr [rcx-0x80]", rd(r10, 8, Extend::Zero), 2, mem(Some(RCX), None, -0x80)),
        ("movsx rax, word ptr [rcx+rdx*4]", rd(RAX, 8, Extend::Sign), 2, mem(Some(RCX), Some((RDX, 4)), 0)),
        ("movsx ecx, byte ptr [rdi-1]", rd(RCX, 4, Extend::Sign), 1, mem(Some(RDI), None, -1)),
        ("movsx dx, byte ptr [rdi]", rd(RDX, 2, Extend::Sign), 1, mem(Some(RDI), None, 0)),
        ("mov dword ptr [rax+4], 0x12345678", MmioKind::WriteImm(0x1234_5678), 4, mem(Some(RAX), None, 4)),
        ("mov qword ptr [rax], -2", MmioKind::WriteImm(u64::MAX - 1), 8, mem(Some(RAX), None, 0)),
        ("mov qword ptr [r9+0x10], 0x7fffffff", MmioKind::WriteImm(0x7fff_ffff), 8, mem(Some(r9), None, 0x10)),
        ("mov word ptr [rdi], 0x1234", MmioKind::WriteImm(0x1234), 2, mem(Some(RDI), None, 0)),
        ("mov byte ptr [rdi+0x7f], 0x80", MmioKind::WriteImm(0x80), 1, mem(Some(RDI), None, 0x7f)),
        ("mov eax, dword ptr [0x1000]", rd(RAX, 4, Extend::None), 4, mem(None, None, 0x1000)),
        ("mov qword ptr [rsp+8], r11", wr(r11), 8, mem(Some(RSP), None, 8)),
        ("mov eax, dword ptr [rbp]", rd(RAX, 4, Extend::None), 4, mem(Some(rbp), None, 0)),
        ("mov eax, dword ptr [r13]", rd(RAX, 4, Extend::None), 4, mem(Some(R13), None, 0)),
        ("mov dword ptr [rdi+rcx*4+0x100], eax", wr(RAX), 4, mem(Some(RDI), Some((RCX, 4)), 0x100)),
        ("mov edx, dword ptr [rsi+rbx*8-0x80000000]", rd(RDX, 4, Extend::None), 4, mem(Some(RSI), Some((rbx, 8)), -0x8000_0000)),
    ];
    let lines: Vec<&str> = mmio.iter().map(|c| c.0).collect();
    let bytes = assemble("mmio", &lines);
    for ((text, kind, size, m), b) in mmio.iter().zip(&bytes) {
        let d = decode_mmio(b).unwrap_or_else(|e| panic!("{text} = {b:02x?}: {e}"));
        assert_eq!(
            (d.kind, d.size, d.mem, usize::from(d.len)),
            (*kind, *size, *m, b.len()),
            "{text} = {b:02x?}"
        );
    }
    // RIP-relative: relative to the end of the instruction.
    let b = &assemble("rip", &["mov ecx, dword ptr [rip+0x100]"])[0];
    let d = decode_mmio(b).unwrap();
    assert!(d.mem.rip_relative && d.mem.base.is_none() && d.mem.disp == 0x100);
    let regs = Regs {
        rip: 0x40_0000,
        ..Default::default()
    };
    assert_eq!(
        effective_address(&d, &regs),
        0x40_0000 + b.len() as u64 + 0x100
    );

    #[rustfmt::skip]
    let io: &[(&str, Port, u8, bool)] = &[
        ("in al, dx", Port::Dx, 1, true),
        ("in ax, dx", Port::Dx, 2, true),
        ("in eax, dx", Port::Dx, 4, true),
        ("out dx, al", Port::Dx, 1, false),
        ("out dx, ax", Port::Dx, 2, false),
        ("out dx, eax", Port::Dx, 4, false),
        ("in al, 0x60", Port::Imm(0x60), 1, true),
        ("in ax, 0x40", Port::Imm(0x40), 2, true),
        ("in eax, 0xff", Port::Imm(0xff), 4, true),
        ("out 0x80, al", Port::Imm(0x80), 1, false),
        ("out 0x43, ax", Port::Imm(0x43), 2, false),
        ("out 0x71, eax", Port::Imm(0x71), 4, false),
    ];
    let lines: Vec<&str> = io.iter().map(|c| c.0).collect();
    for ((text, port, size, is_in), b) in io.iter().zip(&assemble("io", &lines)) {
        let d = decode_ioio(b).unwrap_or_else(|e| panic!("{text} = {b:02x?}: {e}"));
        assert_eq!(
            (d.port, d.size, d.is_in, usize::from(d.len)),
            (*port, *size, *is_in, b.len()),
            "{text}"
        );
    }

    // Refused, with the reason.
    #[rustfmt::skip]
    let bad: &[(&str, DecodeError)] = &[
        ("mov eax, ecx", DecodeError::NotMemory),
        ("mov eax, dword ptr fs:[rdi]", DecodeError::Unsupported),
        ("mov rax, qword ptr gs:[0x28]", DecodeError::Unsupported),
        ("mov eax, dword ptr [edi]", DecodeError::Unsupported),
        ("lock add dword ptr [rdi], 1", DecodeError::Unsupported),
        ("xchg dword ptr [rdi], eax", DecodeError::Unsupported),
        ("add dword ptr [rdi], eax", DecodeError::Unsupported),
        ("rep movsb", DecodeError::Unsupported),
        ("movabs eax, dword ptr [0x1000]", DecodeError::Unsupported),
    ];
    let lines: Vec<&str> = bad.iter().map(|c| c.0).collect();
    for ((text, want), b) in bad.iter().zip(&assemble("bad", &lines)) {
        assert_eq!(decode_mmio(b).map(|_| ()), Err(*want), "{text} = {b:02x?}");
    }
    let lines = [
        "rep insb",
        "insw",
        "outsd",
        "rep outsb",
        "mov eax, dword ptr [rdi]",
    ];
    for (text, b) in lines.iter().zip(&assemble("string-io", &lines)) {
        assert_eq!(
            decode_ioio(b).map(|_| ()),
            Err(DecodeError::Unsupported),
            "{text} = {b:02x?}"
        );
    }
}

/// A fake hypervisor with ports and device memory, answering in its own GHCB page.
struct Devices {
    page: Box<[u8; GHCB_SIZE]>,
    ports: BTreeMap<u16, u32>,
    mmio: BTreeMap<u64, u8>,
    fail: bool,
    exits: usize,
}

const GHCB_GPA: u64 = 0x7000;

impl Devices {
    fn new() -> Self {
        Self {
            page: Box::new([0; GHCB_SIZE]),
            ports: BTreeMap::new(),
            mmio: BTreeMap::new(),
            fail: false,
            exits: 0,
        }
    }
}

impl GhcbPlatform for Devices {
    fn ghcb_gpa(&self) -> u64 {
        GHCB_GPA
    }
    fn ghcb_page(&mut self) -> &mut [u8; GHCB_SIZE] {
        &mut self.page
    }
    fn vmgexit(&mut self) {
        self.exits += 1;
        let mut g = Ghcb::new(&mut self.page);
        let code = g.get(Field::SwExitCode).unwrap();
        let info1 = g.get(Field::SwExitInfo1).unwrap();
        let info2 = g.get(Field::SwExitInfo2).unwrap();
        let rax = g.get(Field::Rax).unwrap_or(0);
        g.clear_valid_bitmap();
        match code {
            exit_code::IOIO => {
                let port = (info1 >> 16) as u16;
                let size_mask = match (info1 >> 4) & 7 {
                    1 => 0xFF,
                    2 => 0xFFFF,
                    4 => 0xFFFF_FFFF,
                    _ => panic!("bad size bits {info1:#x}"),
                };
                if info1 & 1 == 1 {
                    // High garbage: the guest must mask and merge.
                    g.set(
                        Field::Rax,
                        0xDEAD_0000_0000_0000 | u64::from(*self.ports.get(&port).unwrap_or(&0)),
                    );
                } else {
                    self.ports.insert(port, (rax & size_mask) as u32);
                }
            }
            exit_code::MMIO_READ => {
                let len = info2 as usize;
                for k in 0..len {
                    g.shared_buffer_mut()[k] = *self.mmio.get(&(info1 + k as u64)).unwrap_or(&0);
                }
            }
            exit_code::MMIO_WRITE => {
                for k in 0..info2 as usize {
                    let b = g.shared_buffer()[k];
                    self.mmio.insert(info1 + k as u64, b);
                }
            }
            other => panic!("unexpected exit {other:#x}"),
        }
        if self.fail {
            g.set(Field::SwExitInfo1, 2);
            g.set(Field::SwExitInfo2, 7);
        } else {
            g.set(Field::SwExitInfo1, 0);
        }
    }
}

const WINDOW_VA: u64 = 0xffff_c000_0000_0000;

struct Env;
impl VcEnv for Env {
    fn mmio_gpa(&self, va: u64, len: u64) -> Option<u64> {
        let pa = va.checked_sub(WINDOW_VA)?;
        (pa >= 0xfe00_0000 && pa + len <= 0xff00_0000).then_some(pa)
    }
    fn cpu_state(&self) -> CpuState {
        CpuState {
            cr4_osxsave: true,
            ..Default::default()
        }
    }
}

fn table() -> CpuidTable {
    CpuidTable::parse(&cpuid_page(&[
        (0, 0, [0xD, 0x6874_7541, 0x444D_4163, 0x6974_6E65]),
        (1, 0, [0xA00F11, 0x800, 0x0, 0x178BFBFF]),
    ]))
    .unwrap()
}

fn run(exit: u64, regs: &mut Regs, insn: &[u8], dev: &mut Devices) -> Result<(), VcError> {
    handle(exit, regs, insn, &table(), &Env, dev, 2)
}

#[test]
fn cpuid_comes_from_the_table_without_asking_the_host() {
    let mut dev = Devices::new();
    let mut r = Regs {
        rip: 0x1000,
        ..Default::default()
    };
    r.gpr = [
        0xFFFF_FFFF_0000_0000,
        0,
        0x55,
        0x66,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
        7,
    ];
    run(EXIT_CPUID, &mut r, &[0x0f, 0xa2, 0x90], &mut dev).unwrap();
    assert_eq!(dev.exits, 0);
    // Leaf 0 ignores the high half of RAX; outputs zero-extend.
    assert_eq!(&r.gpr[..4], &[0xD, 0x444D_4163, 0x6974_6E65, 0x6874_7541]);
    assert_eq!(&r.gpr[4..], &[7; 12]);
    assert_eq!(r.rip, 0x1002);
    let mut r = Regs {
        rip: 0x1000,
        ..Default::default()
    };
    r.gpr[0] = 1;
    run(EXIT_CPUID, &mut r, &[0x0f, 0xa2], &mut dev).unwrap();
    assert_ne!(r.gpr[1] & (1 << 27), 0, "OSXSAVE from CR4");
    // Not a CPUID instruction at RIP: refused, registers untouched.
    let before = r;
    assert!(run(EXIT_CPUID, &mut r, &[0x90, 0x90], &mut dev).is_err());
    assert_eq!(r, before);
    // Out of range (no 0x80000000 in the table): zeros.
    r.gpr[0] = 0x8000_0000;
    r.gpr[3] = 5;
    run(EXIT_CPUID, &mut r, &[0x0f, 0xa2], &mut dev).unwrap();
    assert_eq!(&r.gpr[..4], &[0; 4]);
    // The sub-leaf comes from ECX: 0xD sub-leaf 1 is absent, so no compacted size.
    let mut r = Regs {
        rip: 0x1000,
        ..Default::default()
    };
    (r.gpr[0], r.gpr[1]) = (0xD, 0xFFFF_FFFF_0000_0001);
    let before = r;
    assert_eq!(
        run(EXIT_CPUID, &mut r, &[0x0f, 0xa2], &mut dev),
        Err(VcError::Cpuid(CpuidError::NoCompaction))
    );
    assert_eq!(r, before);
    r.gpr[1] = 0;
    run(EXIT_CPUID, &mut r, &[0x0f, 0xa2], &mut dev).unwrap();
    assert_eq!(r.gpr[3], 0x240, "0xD sub-leaf 0 computed");
    assert_eq!(dev.exits, 0);
}

#[test]
fn port_io_goes_through_the_ghcb_with_x86_merge_rules() {
    let mut dev = Devices::new();
    let mut r = Regs {
        rip: 0x2000,
        ..Default::default()
    };
    r.gpr[0] = 0x1111_2222_3333_4455;
    r.gpr[2] = 0x3f8;
    run(EXIT_IOIO, &mut r, &[0xee], &mut dev).unwrap(); // out dx, al
    assert_eq!(dev.ports[&0x3f8], 0x55);
    assert_eq!(r.rip, 0x2001);
    run(EXIT_IOIO, &mut r, &[0xe7, 0x80], &mut dev).unwrap(); // out 0x80, eax
    assert_eq!(dev.ports[&0x80], 0x3333_4455);
    let rip = r.rip;
    run(EXIT_IOIO, &mut r, &[0x66, 0xef], &mut dev).unwrap(); // out dx, ax
    assert_eq!(dev.ports[&0x3f8], 0x4455);
    run(EXIT_IOIO, &mut r, &[0xe6, 0x70], &mut dev).unwrap(); // out 0x70, al
    assert_eq!(dev.ports[&0x70], 0x55);
    run(EXIT_IOIO, &mut r, &[0x48, 0xef], &mut dev).unwrap(); // rex.w out dx, eax (W ignored)
    assert_eq!(dev.ports[&0x3f8], 0x3333_4455);
    assert_eq!(r.rip, rip + 2 + 2 + 2);
    // The port is DX's low 16 bits.
    r.gpr[2] = 0xFFFF_0000_0001_0060;
    dev.ports.insert(0x60, 0x77);
    run(EXIT_IOIO, &mut r, &[0xec], &mut dev).unwrap(); // in al, dx
    assert_eq!(r.gpr[0], 0x1111_2222_3333_4477);
    r.gpr[0] = 0x1111_2222_3333_4455;
    r.rip = 0x2001 + 2;
    dev.ports.insert(0x60, 0xABCD_EF12);
    run(EXIT_IOIO, &mut r, &[0xe4, 0x60], &mut dev).unwrap(); // in al, 0x60
    assert_eq!(r.gpr[0], 0x1111_2222_3333_4412, "IN AL merges");
    run(EXIT_IOIO, &mut r, &[0x66, 0xe5, 0x60], &mut dev).unwrap(); // in ax, 0x60
    assert_eq!(r.gpr[0], 0x1111_2222_3333_EF12, "IN AX merges");
    run(EXIT_IOIO, &mut r, &[0xe5, 0x60], &mut dev).unwrap(); // in eax, 0x60
    assert_eq!(r.gpr[0], 0xABCD_EF12, "IN EAX zero-extends");
    assert_eq!(r.rip, 0x2001 + 2 + 2 + 3 + 2);
    // A host error is reported and nothing changes.
    dev.fail = true;
    let before = r;
    assert_eq!(
        run(EXIT_IOIO, &mut r, &[0xec], &mut dev),
        Err(VcError::Ghcb(GhcbError::HostError(7)))
    );
    assert_eq!(r, before);
}

#[test]
fn mmio_reads_and_writes_in_the_window_only() {
    let mut dev = Devices::new();
    let base = WINDOW_VA + 0xfe00_1000;
    for k in 0..8 {
        dev.mmio.insert(0xfe00_1000 + k, 0xF0 + k as u8);
    }
    let mut r = Regs {
        rip: 0x3000,
        ..Default::default()
    };
    r.gpr[usize::from(RDI)] = base;
    r.gpr[0] = 0xFFFF_FFFF_FFFF_FFFF;
    run(EXIT_NPF, &mut r, &[0x8b, 0x07], &mut dev).unwrap(); // mov eax, [rdi]
    assert_eq!(r.gpr[0], 0xF3F2_F1F0);
    run(EXIT_NPF, &mut r, &[0x48, 0x8b, 0x07], &mut dev).unwrap(); // mov rax, [rdi]
    assert_eq!(r.gpr[0], 0xF7F6_F5F4_F3F2_F1F0);
    run(EXIT_NPF, &mut r, &[0x8a, 0x27], &mut dev).unwrap(); // mov ah, [rdi]
    assert_eq!(r.gpr[0], 0xF7F6_F5F4_F3F2_F0F0);
    run(EXIT_NPF, &mut r, &[0x48, 0x0f, 0xbe, 0x07], &mut dev).unwrap(); // movsx rax, byte [rdi]
    assert_eq!(r.gpr[0], 0xFFFF_FFFF_FFFF_FFF0);
    run(EXIT_NPF, &mut r, &[0x0f, 0xb7, 0x07], &mut dev).unwrap(); // movzx eax, word [rdi]
    assert_eq!(r.gpr[0], 0xF1F0);
    r.gpr[usize::from(RDX)] = 0x0102_0304_0506_0708;
    run(EXIT_NPF, &mut r, &[0x66, 0x89, 0x57, 0x10], &mut dev).unwrap(); // mov [rdi+0x10], dx
    assert_eq!(
        (dev.mmio[&0xfe00_1010], dev.mmio[&0xfe00_1011]),
        (0x08, 0x07)
    );
    assert!(!dev.mmio.contains_key(&0xfe00_1012));
    run(
        EXIT_NPF,
        &mut r,
        &[0xc7, 0x47, 0x20, 0x78, 0x56, 0x34, 0x12],
        &mut dev,
    )
    .unwrap(); // mov dword [rdi+0x20], imm
    assert_eq!(dev.mmio[&0xfe00_1023], 0x12);
    assert_eq!(r.rip, 0x3000 + 2 + 3 + 2 + 4 + 3 + 4 + 7);
    r.gpr[usize::from(RDI)] = base;
    // Byte and word reads merge; 1- and 8-byte writes.
    r.gpr[0] = 0x1111_2222_3333_4444;
    run(EXIT_NPF, &mut r, &[0x8a, 0x07], &mut dev).unwrap(); // mov al, [rdi]
    assert_eq!(r.gpr[0], 0x1111_2222_3333_44F0);
    run(EXIT_NPF, &mut r, &[0x66, 0x8b, 0x47, 0x02], &mut dev).unwrap(); // mov ax, [rdi+2]
    assert_eq!(r.gpr[0], 0x1111_2222_3333_F3F2);
    run(EXIT_NPF, &mut r, &[0x44, 0x8a, 0x47, 0x07], &mut dev).unwrap(); // mov r8b, [rdi+7]
    assert_eq!(r.gpr[8], 0xF7);
    r.gpr[usize::from(RSI)] = 0xAA55;
    run(EXIT_NPF, &mut r, &[0x40, 0x88, 0x77, 0x30], &mut dev).unwrap(); // mov [rdi+0x30], sil
    assert_eq!(
        (dev.mmio[&0xfe00_1030], dev.mmio.get(&0xfe00_1031)),
        (0x55, None)
    );
    r.gpr[usize::from(RCX)] = 0x8877_6655_4433_2211;
    run(EXIT_NPF, &mut r, &[0x48, 0x89, 0x4f, 0x40], &mut dev).unwrap(); // mov [rdi+0x40], rcx
    let stored: Vec<u8> = (0..9)
        .map(|k| dev.mmio.get(&(0xfe00_1040 + k)).copied().unwrap_or(0))
        .collect();
    assert_eq!(stored, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0]);
    run(EXIT_NPF, &mut r, &[0xc6, 0x47, 0x50, 0xab], &mut dev).unwrap(); // mov byte [rdi+0x50], 0xab
    assert_eq!(
        (dev.mmio[&0xfe00_1050], dev.mmio.get(&0xfe00_1051)),
        (0xab, None)
    );
    // A host error: reported, registers untouched.
    dev.fail = true;
    let before = r;
    assert_eq!(
        run(EXIT_NPF, &mut r, &[0x8b, 0x07], &mut dev),
        Err(VcError::Ghcb(GhcbError::HostError(7)))
    );
    assert_eq!(
        run(EXIT_NPF, &mut r, &[0x89, 0x07], &mut dev),
        Err(VcError::Ghcb(GhcbError::HostError(7)))
    );
    assert_eq!(r, before);
    dev.fail = false;
    // Register operand, truncated bytes: decode errors, nothing sent.
    let exits = dev.exits;
    assert_eq!(
        run(EXIT_NPF, &mut r, &[0x89, 0xc7], &mut dev),
        Err(VcError::Decode(DecodeError::NotMemory))
    );
    assert_eq!(
        run(EXIT_NPF, &mut r, &[0x8b, 0x47], &mut dev),
        Err(VcError::Decode(DecodeError::Truncated))
    );
    assert_eq!(dev.exits, exits);
    // Private RAM (the direct map) is never sent to the host.
    let exits = dev.exits;
    r.gpr[usize::from(RDI)] = 0xffff_8000_0010_0000;
    assert_eq!(
        run(EXIT_NPF, &mut r, &[0x8b, 0x07], &mut dev),
        Err(VcError::NotMmio(0xffff_8000_0010_0000))
    );
    // Straddling the window's end is refused too.
    r.gpr[usize::from(RDI)] = WINDOW_VA + 0xff00_0000 - 2;
    assert!(matches!(
        run(EXIT_NPF, &mut r, &[0x8b, 0x07], &mut dev),
        Err(VcError::NotMmio(_))
    ));
    assert_eq!(dev.exits, exits);
    // Unknown exit codes.
    assert_eq!(
        run(0x7C, &mut r, &[0x0f, 0x32], &mut dev),
        Err(VcError::Unsupported(0x7C))
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut dev = Devices::new();
    let t = table();
    let mut decoded = 0;
    for _ in 0..200_000 {
        let mut b = [0u8; 15];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&next().to_le_bytes()[..c.len()]);
        }
        let len = (next() % 16) as usize;
        let insn: Vec<u8> = b[..len].to_vec();
        decoded += usize::from(decode_mmio(&insn).is_ok());
        let _ = decode_ioio(&insn);
        let mut r = Regs {
            gpr: [next(); 16],
            rip: next(),
        };
        r.gpr[7] = WINDOW_VA + 0xfe00_0000 + (next() % 0x100_0000);
        let exit = [EXIT_CPUID, EXIT_IOIO, EXIT_NPF, next()][(next() % 4) as usize];
        let _ = handle(exit, &mut r, &insn, &t, &Env, &mut dev, 2);
    }
    assert!(
        decoded > 1000,
        "the random inputs should reach the decoder's success paths ({decoded})"
    );
}
