//! #VC emulation on arbitrary instruction bytes, registers and CPUID pages: decoding and
//! handling never panic, never touch the host outside the device window, and leave the
//! registers untouched on error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_snp::cpuid_page::{CpuState, CpuidTable};
use sev_snp::ghcb::{Field, GHCB_SIZE, Ghcb, GhcbPlatform};
use sev_snp::vc::{self, Regs, VcEnv};

const WINDOW: core::ops::Range<u64> = 0xfe00_0000..0xff00_0000;

struct Host {
    page: Box<[u8; GHCB_SIZE]>,
    answer: u64,
}

impl GhcbPlatform for Host {
    fn ghcb_gpa(&self) -> u64 {
        0x7000
    }
    fn ghcb_page(&mut self) -> &mut [u8; GHCB_SIZE] {
        &mut self.page
    }
    fn vmgexit(&mut self) {
        let mut g = Ghcb::new(&mut self.page);
        if let (Ok(code), Ok(info1), Ok(info2)) = (
            g.get(Field::SwExitCode),
            g.get(Field::SwExitInfo1),
            g.get(Field::SwExitInfo2),
        ) {
            if code == 0x8000_0001 || code == 0x8000_0002 {
                assert!(
                    WINDOW.contains(&info1) && info1 + info2 <= WINDOW.end,
                    "MMIO outside the window"
                );
            }
        }
        g.clear_valid_bitmap();
        g.set(Field::SwExitInfo1, self.answer & 3);
        g.set(Field::SwExitInfo2, self.answer >> 2);
        g.set(Field::Rax, self.answer.rotate_left(17));
    }
}

struct Env;
impl VcEnv for Env {
    fn mmio_gpa(&self, va: u64, len: u64) -> Option<u64> {
        let pa = va.checked_sub(0xffff_c000_0000_0000)?;
        (WINDOW.contains(&pa) && pa.checked_add(len)? <= WINDOW.end).then_some(pa)
    }
    fn cpu_state(&self) -> CpuState {
        CpuState {
            cr4_osxsave: true,
            xcr0: 0x207,
            xss: 0x800,
            apic_id: 1,
            cr4_pke: false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let (head, rest) = data.split_at(24);
    let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
    let insn = &rest[..rest.len().min(15)];
    let _ = vc::decode_mmio(insn);
    let _ = vc::decode_ioio(insn);
    let mut page = [0u8; 4096];
    let tail = &rest[insn.len()..];
    page[..tail.len().min(4096)].copy_from_slice(&tail[..tail.len().min(4096)]);
    page[0] = page[0] % 66;
    page[1..4].fill(0);
    let Ok(table) = CpuidTable::parse(&page) else {
        return;
    };
    let mut regs = Regs {
        gpr: [word(0); 16],
        rip: word(1),
    };
    regs.gpr[7] = 0xffff_c000_0000_0000u64.wrapping_add(word(2) % (1 << 33));
    let before = regs;
    let exit = [vc::EXIT_CPUID, vc::EXIT_IOIO, vc::EXIT_NPF, word(2)][(word(2) >> 60) as usize & 3];
    let mut host = Host {
        page: Box::new([0; GHCB_SIZE]),
        answer: word(1),
    };
    if vc::handle(exit, &mut regs, insn, &table, &Env, &mut host, 2).is_err() {
        assert_eq!(regs, before);
    }
});
